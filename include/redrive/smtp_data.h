/*
 * smtp_data: the DATA reader (RFC 5321 4.1.1.4, 4.5.2).  Fed the raw bytes
 * that follow "354" in whatever pieces they arrive, it finds the end of
 * data (CRLF "." CRLF, and only that), removes dot-stuffing, and appends
 * the message to a buffer of at most max_size bytes.  No I/O.  Any thread.
 *
 * Smuggling (CVE-2023-51764 and kin): only CR LF "." CR LF ends the data.
 * A bare LF is normalised to CR LF (as Postfix's smtpd_forbid_bare_newline
 * = normalize) and can never begin or end the end-of-data sequence; a bare
 * CR, or a NUL byte, makes the message rejected once its data has ended.
 * Text lines longer than SMTP_DATA_LINE_MAX octets (with CR LF) are
 * rejected, and over max_size the rest is discarded, never buffered.
 * Dot-unstuffing applies at every line start, whatever ended the line
 * before: a "." line that is not the end of data is stored as an empty
 * line.
 */
#ifndef REDRIVE_SMTP_DATA_H
#define REDRIVE_SMTP_DATA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* RFC 5321 4.5.3.1.6: 1000 octets including CR LF. */
#define SMTP_DATA_LINE_MAX 1000

enum smtp_data_error {
	SMTP_DATA_OK = 0,
	SMTP_DATA_TOO_BIG = 1,	     /* 552 5.3.4 */
	SMTP_DATA_LINE_TOO_LONG = 2, /* 550 5.6.0, see smtp_data_reply() */
	SMTP_DATA_BARE_CR = 3,	     /* 550 5.6.0 */
	SMTP_DATA_NUL = 4,	     /* 550 5.6.0 */
	SMTP_DATA_NOMEM = 5,	     /* 451 4.3.0 */
};

struct smtp_data {
	uint64_t max_size; /* the largest message accepted, after unstuffing */
	int state;	   /* private */
	size_t linelen;	   /* private: octets of the current line */
	enum smtp_data_error error; /* the first error seen */
	bool done;		    /* the end of data was seen */
	bool eight_bit;		    /* a byte >= 0x80 was seen */
	uint64_t size; /* bytes of the message (counted even past max) */
	char *buf;     /* the message, CR LF line ends, unstuffed;
			  released at the first error */
	size_t len;
	size_t cap;
};

/* Prepares d for one message of at most max_size bytes. */
void smtp_data_init(struct smtp_data *d, uint64_t max_size);

/*
 * Feeds p[0..n).  Returns the number of bytes consumed: all n until the end
 * of data is seen, then only up to and including its final LF, so that
 * whatever the client pipelined after it stays for the command parser.
 * After the end, d->done is true and d->error tells whether the message is
 * acceptable.
 */
size_t smtp_data_feed(struct smtp_data *d, const char *p, size_t n);

/*
 * The SMTP reply for d->error (SMTP_DATA_OK excepted), e.g.
 * "552 5.3.4 Message size exceeds fixed maximum message size".  Static
 * string without CR LF.
 */
const char *smtp_data_reply(enum smtp_data_error error);

/*
 * Takes the buffer out of d (the caller frees it with free()); d keeps no
 * pointer to it.  *len receives its length.  NULL (and *len 0) for an
 * empty message.
 */
char *smtp_data_take(struct smtp_data *d, size_t *len);

/* Frees what d holds; d can be initialised again. */
void smtp_data_free(struct smtp_data *d);

#endif
