/*
 * sendmail_msg: the message side of redrive-sendmail.  It reads the message
 * that a program pipes in (any mix of LF and CR LF line ends becomes CR LF,
 * which RFC 5321 2.3.8 requires on the wire; sendmail's "." line ends the
 * input unless -i was given), parses RFC 5322 3.4 address lists for -t, and
 * fixes up the header section the way sendmail and Postfix's sendmail do:
 * Bcc fields are removed (they must never reach the other recipients),
 * From, Date and Message-ID are added when the message has none.  Nothing
 * here does network I/O; everything is bounded by the caller's maximum.
 */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "redrive/sendmail.h"

/* One header field: bytes [start, end) with its CR LF, name of namelen. */
struct sendmail_field {
	size_t start;
	size_t end;
	size_t namelen;
};

#define SENDMAIL_FIELDS_MAX 10000

int
sendmail_buf_add(struct sendmail_buf *b, const void *p, size_t n)
{
	size_t cap;
	char *d;

	if (n == 0)
		return 0;
	if (b->len + n + 1 > b->cap) {
		cap = b->cap ? b->cap : 4096;
		while (cap < b->len + n + 1) {
			if (cap > SIZE_MAX / 2)
				return -ENOMEM;
			cap *= 2;
		}
		d = realloc(b->data, cap);
		if (d == NULL)
			return -ENOMEM;
		b->data = d;
		b->cap = cap;
	}
	memcpy(b->data + b->len, p, n);
	b->len += n;
	b->data[b->len] = '\0';
	return 0;
}

void
sendmail_buf_free(struct sendmail_buf *b)
{
	if (b == NULL)
		return;
	free(b->data);
	b->data = NULL;
	b->len = 0;
	b->cap = 0;
}

void
sendmail_rcpts_free(struct sendmail_rcpts *r)
{
	size_t i;

	if (r == NULL)
		return;
	for (i = 0; i < r->n; i++)
		free(r->addr[i]);
	free(r->addr);
	r->addr = NULL;
	r->n = 0;
	r->cap = 0;
}

/*
 * Appends one input line (without its LF) to out as a CR LF line.  Sets
 * *done when the line is sendmail's lone "." and dot_ends is set.
 */
static int
sendmail_msg_line(struct sendmail_buf *out, const char *p, size_t len,
    bool dot_ends, bool *first, uint64_t max, bool *done)
{
	int rc;

	if (len > 0 && p[len - 1] == '\r')
		len--;
	if (*first) {
		*first = false;
		/* An mbox "From " separator is not part of the message. */
		if (len >= 5 && memcmp(p, "From ", 5) == 0)
			return 0;
	}
	if (dot_ends && len == 1 && p[0] == '.') {
		*done = true;
		return 0;
	}
	if ((uint64_t)out->len + len + 2 > max)
		return -EFBIG;
	rc = sendmail_buf_add(out, p, len);
	if (rc == 0)
		rc = sendmail_buf_add(out, "\r\n", 2);
	return rc;
}

/*
 * Reads the whole message (see the header).  Lines are assembled in line
 * so that a CR LF split across two reads is still seen as one line end.
 */
int
sendmail_msg_read(
    FILE *in, bool dot_ends, uint64_t max, struct sendmail_buf *out)
{
	struct sendmail_buf line = { 0 };
	char chunk[65536];
	bool first = true, done = false;
	size_t n, off;
	const char *lf;
	int rc = 0;

	while (!done && (n = fread(chunk, 1, sizeof(chunk), in)) > 0) {
		off = 0;
		while (!done && off < n) {
			lf = memchr(chunk + off, '\n', n - off);
			if (lf == NULL) {
				if ((uint64_t)line.len + (n - off) > max) {
					rc = -EFBIG;
					goto out;
				}
				rc = sendmail_buf_add(
				    &line, chunk + off, n - off);
				if (rc < 0)
					goto out;
				break;
			}
			rc = sendmail_buf_add(
			    &line, chunk + off, (size_t)(lf - (chunk + off)));
			if (rc < 0)
				goto out;
			off = (size_t)(lf - chunk) + 1;
			rc = sendmail_msg_line(out, line.data ? line.data : "",
			    line.len, dot_ends, &first, max, &done);
			if (rc < 0)
				goto out;
			line.len = 0;
		}
	}
	if (!done && ferror(in)) {
		rc = -EIO;
		goto out;
	}
	if (!done && line.len > 0)
		rc = sendmail_msg_line(
		    out, line.data, line.len, dot_ends, &first, max, &done);
out:
	sendmail_buf_free(&line);
	return rc;
}

/* Adds addr (len bytes) to r unless it is there (case-insensitive). */
static int
sendmail_rcpts_add(struct sendmail_rcpts *r, const char *addr, size_t len,
    const char *default_domain)
{
	size_t i, dlen = 0, total;
	char **na, *a;
	bool qualify;

	qualify = memchr(addr, '@', len) == NULL && default_domain != NULL &&
	    default_domain[0] != '\0';
	if (qualify)
		dlen = strlen(default_domain) + 1;
	total = len + dlen;
	if (total > SENDMAIL_ADDR_MAX)
		return -EINVAL;
	for (i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)addr[i];

		if (ch < 32 || ch == 127 || ch == '<' || ch == '>')
			return -EINVAL;
	}
	a = malloc(total + 1);
	if (a == NULL)
		return -ENOMEM;
	memcpy(a, addr, len);
	if (qualify) {
		a[len] = '@';
		memcpy(a + len + 1, default_domain, dlen - 1);
	}
	a[total] = '\0';
	for (i = 0; i < r->n; i++) {
		if (strcasecmp(r->addr[i], a) == 0) {
			free(a);
			return 0;
		}
	}
	if (r->n >= SENDMAIL_RCPT_MAX) {
		free(a);
		return -E2BIG;
	}
	if (r->n == r->cap) {
		size_t cap = r->cap ? r->cap * 2 : 8;

		na = realloc(r->addr, cap * sizeof(*na));
		if (na == NULL) {
			free(a);
			return -ENOMEM;
		}
		r->addr = na;
		r->cap = cap;
	}
	r->addr[r->n++] = a;
	return 0;
}

/*
 * Skips an RFC 5322 3.2.2 comment starting at s[*i] == '(' (nested, with
 * quoted-pairs); leaves *i after its ")" or at len when it is unclosed.
 */
static void
sendmail_skip_comment(const char *s, size_t len, size_t *i)
{
	int depth = 0;

	while (*i < len) {
		char ch = s[*i];

		(*i)++;
		if (ch == '\\') {
			if (*i < len)
				(*i)++;
		} else if (ch == '(') {
			depth++;
		} else if (ch == ')') {
			if (--depth == 0)
				return;
		}
	}
}

/*
 * Copies an RFC 5322 3.2.4 quoted string starting at s[*i] == '"', quotes
 * and quoted-pairs kept, into cur; leaves *i after the closing quote.
 */
static int
sendmail_copy_quoted(
    const char *s, size_t len, size_t *i, struct sendmail_buf *cur)
{
	size_t start = *i;

	(*i)++;
	while (*i < len && s[*i] != '"') {
		if (s[*i] == '\\' && *i + 1 < len)
			(*i)++;
		(*i)++;
	}
	if (*i < len)
		(*i)++;
	return sendmail_buf_add(cur, s + start, *i - start);
}

/*
 * Ends one address: the angle-addr when there was one (RFC 5322 3.4
 * name-addr, an obsolete source route "@a,@b:" dropped), else the bare
 * addr-spec collected outside comments and quotes; empty ones (an empty
 * group) add nothing.
 */
static int
sendmail_addr_end(struct sendmail_buf *cur, struct sendmail_buf *angle,
    bool had_angle, const char *default_domain, struct sendmail_rcpts *r)
{
	const char *p;
	size_t len;
	int rc = 0;

	if (had_angle) {
		p = angle->data ? angle->data : "";
		len = angle->len;
		if (len > 0 && p[0] == '@') {
			const char *colon = memchr(p, ':', len);

			if (colon != NULL) {
				len -= (size_t)(colon + 1 - p);
				p = colon + 1;
			}
		}
	} else {
		p = cur->data ? cur->data : "";
		len = cur->len;
	}
	if (len > 0)
		rc = sendmail_rcpts_add(r, p, len, default_domain);
	cur->len = 0;
	angle->len = 0;
	return rc;
}

/*
 * Parses an address list (RFC 5322 3.4): address *("," address), where an
 * address is a mailbox ("a@b", "Name <a@b>") or a group ("name: a@b, c@d;").
 * White space and comments between tokens are dropped; in a mailbox
 * without angle brackets what remains is the addr-spec.
 */
int
sendmail_addr_parse(const char *s, size_t len, const char *default_domain,
    struct sendmail_rcpts *r)
{
	struct sendmail_buf cur = { 0 }, angle = { 0 };
	bool in_angle = false, had_angle = false;
	size_t i = 0;
	int rc = 0;

	while (i < len) {
		char ch = s[i];

		if (ch == '(') {
			sendmail_skip_comment(s, len, &i);
			continue;
		}
		if (ch == '"') {
			rc = sendmail_copy_quoted(
			    s, len, &i, in_angle ? &angle : &cur);
			if (rc < 0)
				goto out;
			continue;
		}
		i++;
		if (ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n')
			continue;
		if (in_angle) {
			if (ch == '>')
				in_angle = false;
			else
				rc = sendmail_buf_add(&angle, &ch, 1);
		} else if (ch == '<') {
			in_angle = true;
			had_angle = true;
			angle.len = 0;
		} else if (ch == ':') {
			/* A group's display name ends; its members follow. */
			cur.len = 0;
		} else if (ch == ',' || ch == ';') {
			rc = sendmail_addr_end(
			    &cur, &angle, had_angle, default_domain, r);
			had_angle = false;
		} else {
			rc = sendmail_buf_add(&cur, &ch, 1);
		}
		if (rc < 0)
			goto out;
	}
	rc = sendmail_addr_end(&cur, &angle, had_angle, default_domain, r);
out:
	sendmail_buf_free(&cur);
	sendmail_buf_free(&angle);
	return rc;
}

/* True when field f of msg is called name (case-insensitive). */
static bool
sendmail_field_is(
    const char *msg, const struct sendmail_field *f, const char *name)
{
	return f->namelen == strlen(name) &&
	    strncasecmp(msg + f->start, name, f->namelen) == 0;
}

/*
 * Length of the field name at p (RFC 5322 2.2: printable US-ASCII but ":"),
 * when a ":" follows it; 0 when the line is not a header field.
 */
static size_t
sendmail_field_name(const char *p, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)p[i];

		if (ch == ':')
			return i;
		if (ch < 33 || ch > 126)
			return 0;
	}
	return 0;
}

/* Parses field f's unfolded value into the recipients (for -t). */
static int
sendmail_field_rcpts(const char *msg, const struct sendmail_field *f,
    const struct sendmail_msg_opts *o)
{
	const char *v = msg + f->start + f->namelen + 1;
	size_t vlen = f->end - (f->start + f->namelen + 1);

	/* Folding CR LF pairs are white space to the address parser. */
	return sendmail_addr_parse(v, vlen, o->hostname, o->rcpts);
}

/* Appends "Name: value CR LF" built with a printf format. */
static int sendmail_add_fieldf(struct sendmail_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int
sendmail_add_fieldf(struct sendmail_buf *b, const char *fmt, ...)
{
	char line[1024];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(line))
		return -EINVAL;
	if (sendmail_buf_add(b, line, (size_t)n) < 0 ||
	    sendmail_buf_add(b, "\r\n", 2) < 0)
		return -ENOMEM;
	return 0;
}

/*
 * Appends an RFC 5322 3.6.2 From field: the full name as a quoted string
 * (control characters made blanks, so -F cannot inject a field), then the
 * address in angle brackets.
 */
static int
sendmail_add_from(struct sendmail_buf *b, const char *name, const char *addr)
{
	char q[512];
	size_t i, n = 0;

	if (name == NULL || name[0] == '\0')
		return sendmail_add_fieldf(b, "From: %s", addr);
	for (i = 0; name[i] != '\0' && n + 3 < sizeof(q); i++) {
		unsigned char ch = (unsigned char)name[i];

		if (ch == '"' || ch == '\\')
			q[n++] = '\\';
		if (ch < 32 || ch == 127)
			q[n++] = ' ';
		else
			q[n++] = name[i];
	}
	q[n] = '\0';
	return sendmail_add_fieldf(b, "From: \"%s\" <%s>", q, addr);
}

/* Appends an RFC 5322 3.6.1 Date field in local time, C locale names. */
static int
sendmail_add_date(struct sendmail_buf *b)
{
	static const char *const days[] = { "Sun", "Mon", "Tue", "Wed", "Thu",
		"Fri", "Sat" };
	static const char *const months[] = { "Jan", "Feb", "Mar", "Apr", "May",
		"Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
	char zone[8];
	time_t now = time(NULL);
	struct tm tm;

	if (localtime_r(&now, &tm) == NULL)
		return -EINVAL;
	if (strftime(zone, sizeof(zone), "%z", &tm) == 0)
		return -EINVAL;
	return sendmail_add_fieldf(b, "Date: %s, %d %s %d %02d:%02d:%02d %s",
	    days[tm.tm_wday % 7], tm.tm_mday, months[tm.tm_mon % 12],
	    tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec, zone);
}

/* Appends an RFC 5322 3.6.4 Message-ID: time, pid, 64 random bits. */
static int
sendmail_add_msgid(struct sendmail_buf *b, const char *host)
{
	struct timespec ts;
	uint64_t rnd = 0;

	if (getrandom(&rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
		rnd = (uint64_t)clock();
	clock_gettime(CLOCK_REALTIME, &ts);
	return sendmail_add_fieldf(b,
	    "Message-ID: <%" PRId64 ".%09ld.%ld.%016" PRIx64 "@%s>",
	    (int64_t)ts.tv_sec, (long)ts.tv_nsec, (long)getpid(), rnd, host);
}

/*
 * Splits msg into header fields (RFC 5322 2.2: a name, ":", the value and
 * its folded continuation lines) up to the first line that is not one.
 * Returns the number of fields, and in *hdr_end where the header section
 * ends, in *sep whether an empty line is there.
 */
static int
sendmail_split(const char *msg, size_t len, struct sendmail_field *fields,
    size_t max, size_t *nfields, size_t *hdr_end, bool *sep)
{
	size_t pos = 0, n = 0, eol, nl;
	const char *p;

	*sep = false;
	while (pos < len) {
		p = memchr(msg + pos, '\n', len - pos);
		eol = p ? (size_t)(p - msg) + 1 : len;
		if (eol - pos == 2 && msg[pos] == '\r') {
			*sep = true;
			break;
		}
		if ((msg[pos] == ' ' || msg[pos] == '\t') && n > 0) {
			fields[n - 1].end = eol;
			pos = eol;
			continue;
		}
		nl = sendmail_field_name(msg + pos, eol - pos);
		if (nl == 0)
			break;
		if (n == max)
			return -E2BIG;
		fields[n].start = pos;
		fields[n].end = eol;
		fields[n].namelen = nl;
		n++;
		pos = eol;
	}
	*nfields = n;
	*hdr_end = pos;
	return 0;
}

/* Rewrites the message: see the header. */
int
sendmail_msg_prepare(
    struct sendmail_buf *msg, const struct sendmail_msg_opts *o)
{
	struct sendmail_buf nb = { 0 };
	struct sendmail_field *fields = NULL;
	bool sep, has_from = false, has_date = false, has_id = false;
	size_t nfields = 0, hdr_end = 0, i, body;
	const char *m = msg->data ? msg->data : "";
	int rc;

	fields = calloc(SENDMAIL_FIELDS_MAX, sizeof(*fields));
	if (fields == NULL)
		return -ENOMEM;
	rc = sendmail_split(
	    m, msg->len, fields, SENDMAIL_FIELDS_MAX, &nfields, &hdr_end, &sep);
	if (rc < 0)
		goto out;
	for (i = 0; i < nfields; i++) {
		const struct sendmail_field *f = &fields[i];
		bool bcc = sendmail_field_is(m, f, "Bcc");

		if (o->extract &&
		    (bcc || sendmail_field_is(m, f, "To") ||
			sendmail_field_is(m, f, "Cc"))) {
			rc = sendmail_field_rcpts(m, f, o);
			if (rc < 0)
				goto out;
		}
		has_from |= sendmail_field_is(m, f, "From");
		has_date |= sendmail_field_is(m, f, "Date");
		has_id |= sendmail_field_is(m, f, "Message-ID");
		if (bcc)
			continue;
		rc = sendmail_buf_add(&nb, m + f->start, f->end - f->start);
		if (rc < 0)
			goto out;
	}
	if (!has_from) {
		rc = sendmail_add_from(&nb, o->full_name, o->from_addr);
		if (rc < 0)
			goto out;
	}
	if (!has_date) {
		rc = sendmail_add_date(&nb);
		if (rc < 0)
			goto out;
	}
	if (!has_id) {
		rc = sendmail_add_msgid(&nb, o->hostname);
		if (rc < 0)
			goto out;
	}
	/* The body follows an empty line; the original one when there was. */
	body = sep ? hdr_end + 2 : hdr_end;
	if (sep || body < msg->len) {
		rc = sendmail_buf_add(&nb, "\r\n", 2);
		if (rc < 0)
			goto out;
	}
	rc = sendmail_buf_add(&nb, m + body, msg->len - body);
	if (rc < 0)
		goto out;
	sendmail_buf_free(msg);
	*msg = nb;
	nb.data = NULL;
out:
	sendmail_buf_free(&nb);
	free(fields);
	return rc;
}
