/*
 * smtp_data: the DATA reader (smtp_data.h).  It owns the framing of the
 * message text after "354": finding the end of data, dot-unstuffing, line
 * end normalisation, the line and size limits, and the message buffer.
 * No I/O; input may be cut anywhere (byte by byte too): all that crosses a
 * cut lives in d->state and d->linelen.
 *
 * The rules, in the words of RFC 5321 4.5.2 and of the smuggling fixes
 * (CVE-2023-51764; Postfix's smtpd_forbid_bare_newline = normalize):
 *
 * - The end of data is a line holding one "." that began after CR LF (or
 *   at the very start of the data) and itself ends in CR LF.  Nothing else
 *   ends the data: not "<LF>.<LF>", "<CR><LF>.<LF>", "<LF>.<CR><LF>", nor
 *   anything with a bare CR.
 * - A bare LF ends a line all the same: it is stored as CR LF.  The line
 *   after it can never be the end of data.
 * - Dot-unstuffing applies at every line start, whatever ended the line
 *   before: a leading "." is removed (RFC 5321 4.5.2).  So a "." line that
 *   is not the end (".<LF>", or one begun after a bare LF) is stored as an
 *   empty line, and "..<CR><LF>" as ".<CR><LF>".  One rule, no exceptions:
 *   the stored text never depends on which line end the client used.
 * - A bare CR (one not followed by LF) and a NUL byte are errors that make
 *   the message rejected once its data has ended.  A bare CR does not end
 *   a line.
 * - A stored line (unstuffed) longer than SMTP_DATA_LINE_MAX octets with
 *   its CR LF is an error (RFC 5321 4.5.3.1.6).
 * - d->size counts the stored octets (unstuffed, CR LF line ends).  Over
 *   max_size is an error.
 *
 * At the first error the buffer is released and nothing more is buffered
 * (the message is going to be rejected), but the input is still scanned
 * for the end of data, so the session stays in step with its client.  The
 * buffer grows geometrically and never beyond max_size.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "redrive/smtp_data.h"

/* The first allocation; then the buffer doubles, capped at max_size. */
#define SMTP_DATA_BUF_MIN 4096

/* The longest text of a line, without its CR LF. */
#define SMTP_DATA_TEXT_MAX (SMTP_DATA_LINE_MAX - 2)

/* Values of d->state: where the reader stands between two bytes. */
enum smtp_data_state {
	SMTP_DATA_S_BOL = 0, /* start of a line begun after CR LF (or data) */
	SMTP_DATA_S_BOL_LF,  /* start of a line begun after a bare LF */
	SMTP_DATA_S_DOT,     /* "." at SMTP_DATA_S_BOL: maybe the end */
	SMTP_DATA_S_DOT_CR,  /* "." CR at SMTP_DATA_S_BOL: LF ends the data */
	SMTP_DATA_S_TEXT,    /* inside a line */
	SMTP_DATA_S_CR,	     /* a CR inside a line: LF ends the line */
	SMTP_DATA_S_DONE,    /* the end of data was seen */
};

void
smtp_data_init(struct smtp_data *d, uint64_t max_size)
{
	memset(d, 0, sizeof(*d));
	d->max_size = max_size;
	d->state = SMTP_DATA_S_BOL;
}

/*
 * Records err unless an earlier error was recorded: the first one wins.
 * The message is going to be rejected, so its buffer is released now.
 */
static void
smtp_data_fail(struct smtp_data *d, enum smtp_data_error err)
{
	if (d->error != SMTP_DATA_OK)
		return;
	d->error = err;
	free(d->buf);
	d->buf = NULL;
	d->len = 0;
	d->cap = 0;
}

/*
 * Makes room for need bytes in all.  The capacity doubles from
 * SMTP_DATA_BUF_MIN but never exceeds max_size (the caller has checked
 * that need does not).  Returns false when out of memory.
 */
static bool
smtp_data_grow(struct smtp_data *d, size_t need)
{
	size_t cap;
	char *p;

	if (need <= d->cap)
		return true;
	cap = d->cap > 0 ? d->cap : SMTP_DATA_BUF_MIN;
	while (cap < need) {
		if (cap > SIZE_MAX / 2) {
			cap = need;
			break;
		}
		cap *= 2;
	}
	if ((uint64_t)cap > d->max_size)
		cap = (size_t)d->max_size;
	p = realloc(d->buf, cap);
	if (p == NULL)
		return false;
	d->buf = p;
	d->cap = cap;
	return true;
}

/*
 * Appends p[0..n) to the message: counts it in d->size, and buffers it
 * while no error was seen and the message stays within max_size.
 */
static void
smtp_data_put(struct smtp_data *d, const char *p, size_t n)
{
	if (n == 0)
		return;
	d->size += n;
	if (d->error != SMTP_DATA_OK)
		return;
	if (d->size > d->max_size) {
		smtp_data_fail(d, SMTP_DATA_TOO_BIG);
		return;
	}
	/* d->len == d->size <= max_size here, so the sum cannot wrap. */
	if (!smtp_data_grow(d, d->len + n)) {
		smtp_data_fail(d, SMTP_DATA_NOMEM);
		return;
	}
	memcpy(d->buf + d->len, p, n);
	d->len += n;
}

/*
 * Appends text of the current line, counting it against the line limit
 * (RFC 5321 4.5.3.1.6).  The bytes within the limit are put before the
 * error is recorded and the rest after it, so that the first error is the
 * same however the input was cut.  d->linelen saturates just past the
 * limit.
 */
static void
smtp_data_text(struct smtp_data *d, const char *p, size_t n)
{
	size_t room;

	if (d->linelen > SMTP_DATA_TEXT_MAX) {
		smtp_data_put(d, p, n);
		return;
	}
	room = SMTP_DATA_TEXT_MAX - d->linelen;
	if (n <= room) {
		d->linelen += n;
		smtp_data_put(d, p, n);
		return;
	}
	smtp_data_put(d, p, room);
	d->linelen = SMTP_DATA_TEXT_MAX + 1;
	smtp_data_fail(d, SMTP_DATA_LINE_TOO_LONG);
	smtp_data_put(d, p + room, n - room);
}

/* A CR that no LF followed: an error; it stays in the line as text. */
static void
smtp_data_bare_cr(struct smtp_data *d)
{
	smtp_data_fail(d, SMTP_DATA_BARE_CR);
	smtp_data_text(d, "\r", 1);
}

/* Ends the current line with CR LF (whatever the client sent). */
static void
smtp_data_eol(struct smtp_data *d, int next)
{
	smtp_data_put(d, "\r\n", 2);
	d->linelen = 0;
	d->state = next;
}

/*
 * Scans the run of ordinary bytes (not CR, LF or NUL) at p[0..n) and
 * returns its length, noting 8-bit bytes on the way.
 */
static size_t
smtp_data_run(struct smtp_data *d, const char *p, size_t n)
{
	size_t i;
	unsigned char c;

	for (i = 0; i < n; i++) {
		c = (unsigned char)p[i];
		if (c == '\r' || c == '\n' || c == '\0')
			break;
		if (c >= 0x80)
			d->eight_bit = true;
	}
	return i;
}

/*
 * The reader's state machine, one byte (or one run of text bytes) per
 * step.  A state that hands a byte on to another state does not advance
 * i ("continue" with the new state).  Returns as soon as the LF of the
 * end-of-data line is consumed.
 */
size_t
smtp_data_feed(struct smtp_data *d, const char *p, size_t n)
{
	size_t i = 0, k;
	char c;

	if (d->done)
		return 0;
	while (i < n) {
		c = p[i];
		switch (d->state) {
		case SMTP_DATA_S_BOL:
			if (c == '.') {
				d->state = SMTP_DATA_S_DOT;
				i++;
			} else {
				d->state = SMTP_DATA_S_TEXT;
			}
			break;
		case SMTP_DATA_S_BOL_LF:
			/* Unstuffed too, but never the end of data. */
			if (c == '.')
				i++;
			d->state = SMTP_DATA_S_TEXT;
			break;
		case SMTP_DATA_S_DOT:
			if (c == '\r') {
				d->state = SMTP_DATA_S_DOT_CR;
				i++;
			} else {
				d->state = SMTP_DATA_S_TEXT;
			}
			break;
		case SMTP_DATA_S_DOT_CR:
			if (c == '\n') {
				d->state = SMTP_DATA_S_DONE;
				d->done = true;
				return i + 1;
			}
			smtp_data_bare_cr(d);
			d->state = SMTP_DATA_S_TEXT;
			break;
		case SMTP_DATA_S_TEXT:
			k = smtp_data_run(d, p + i, n - i);
			if (k > 0) {
				smtp_data_text(d, p + i, k);
				i += k;
			} else if (c == '\r') {
				d->state = SMTP_DATA_S_CR;
				i++;
			} else if (c == '\n') {
				smtp_data_eol(d, SMTP_DATA_S_BOL_LF);
				i++;
			} else {
				smtp_data_fail(d, SMTP_DATA_NUL);
				smtp_data_text(d, p + i, 1);
				i++;
			}
			break;
		case SMTP_DATA_S_CR:
			if (c == '\n') {
				smtp_data_eol(d, SMTP_DATA_S_BOL);
				i++;
			} else {
				smtp_data_bare_cr(d);
				d->state = SMTP_DATA_S_TEXT;
			}
			break;
		default:
			/* SMTP_DATA_S_DONE, or a corrupted state: consume no
			 * more. */
			d->done = true;
			return i;
		}
	}
	return n;
}

/*
 * Replies (RFC 5321 4.2, enhanced codes from RFC 3463):
 * - too big: 552 5.3.4, as RFC 1870 6.1 prescribes for SIZE.
 * - line too long, bare CR, NUL: 550 5.6.0.  These are permanent faults of
 *   the message content, not of a command, so neither 500 (RFC 5321 4.2.2
 *   "command unrecognized") nor 5.5.x (protocol status, RFC 3463 3.6) fits;
 *   X.6.0 is "other or undefined media error" (RFC 3463 3.7), what
 *   docs/smtp.md promises for all three.
 * - out of memory: 451 4.3.0, "local error in processing" (RFC 5321 4.2.3),
 *   mail system status (RFC 3463 3.4): the client keeps the message and
 *   tries again.
 * Anything else (SMTP_DATA_OK included) also gives the 451: this function
 * never returns a 2xx, so a caller's slip cannot acknowledge a message.
 */
const char *
smtp_data_reply(enum smtp_data_error error)
{
	switch (error) {
	case SMTP_DATA_TOO_BIG:
		return "552 5.3.4 Message size exceeds fixed maximum message "
		       "size";
	case SMTP_DATA_LINE_TOO_LONG:
		return "550 5.6.0 Error: message has a line longer than 998 "
		       "characters";
	case SMTP_DATA_BARE_CR:
		return "550 5.6.0 Error: bare <CR> received in message data";
	case SMTP_DATA_NUL:
		return "550 5.6.0 Error: NUL byte received in message data";
	case SMTP_DATA_OK:
	case SMTP_DATA_NOMEM:
	default:
		return "451 4.3.0 Error: local error in processing, try again "
		       "later";
	}
}

char *
smtp_data_take(struct smtp_data *d, size_t *len)
{
	char *buf = d->buf;

	*len = d->len;
	d->buf = NULL;
	d->len = 0;
	d->cap = 0;
	return buf;
}

void
smtp_data_free(struct smtp_data *d)
{
	free(d->buf);
	memset(d, 0, sizeof(*d));
}
