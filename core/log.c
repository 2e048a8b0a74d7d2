/*
 * log: the daemon's one global, a logfmt writer (log.h).
 *
 * Each call builds its whole line in a stack buffer and hands it to the
 * kernel with a single write(2), so lines from different threads never
 * interleave (writes of up to PIPE_BUF bytes to a pipe are atomic, and
 * LOG_LINE_MAX stays below it).  The level and the target fd are atomics:
 * no lock anywhere.  Values are escaped and truncated here, never by the
 * caller, so peer input (addresses, SMTP commands, Mailgun error text) can
 * be logged as it came.  A line that would not fit is cut at a field
 * boundary and ends with "truncated=true".
 */
#include <errno.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "redrive/log.h"
#include "redrive/timeutil.h"

/* The whole line, newline included; below PIPE_BUF (4096). */
#define LOG_LINE_MAX 2048
/* Room kept free at the end for " truncated=true\n". */
#define LOG_LINE_RESERVE 24
/* Longest key written; longer keys are cut. */
#define LOG_KEY_MAX 64
/* One field: " " key "=" quoted, escaped value (4 bytes per source byte). */
#define LOG_FIELD_MAX (LOG_KEY_MAX + 8 + LOG_VALUE_MAX * 4 + 8)

static atomic_int log_level_cur = LOG_LEVEL_INFO;
static atomic_int log_fd_cur = 2;

/* A line being built. */
struct log_line {
	char buf[LOG_LINE_MAX];
	size_t len;
	bool cut;
};

static const char *const log_level_names[] = { "debug", "info", "warn",
	"error" };

void
log_set_level(enum log_level level)
{
	atomic_store(&log_level_cur, (int)level);
}

int
log_level_parse(const char *s, enum log_level *out)
{
	size_t i;

	if (s == NULL)
		return -EINVAL;
	for (i = 0; i < sizeof(log_level_names) / sizeof(log_level_names[0]);
	     i++) {
		if (strcasecmp(s, log_level_names[i]) == 0) {
			*out = (enum log_level)i;
			return 0;
		}
	}
	return -EINVAL;
}

int
log_set_fd(int fd)
{
	return atomic_exchange(&log_fd_cur, fd);
}

/*
 * The target is stderr or an fd the caller owns, so there is nothing to
 * reopen; the daemon's SIGHUP path calls this so that a file target can be
 * added later without touching the callers.
 */
void
log_reopen(void)
{
}

/* True for the bytes a bare (unquoted) logfmt value may hold. */
static bool
log_is_bare(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
	    (c >= '0' && c <= '9') || c == '.' || c == '_' || c == ':' ||
	    c == '/' || c == '@' || c == '+' || c == '-';
}

/* True for the bytes a key may hold; others are written as '_'. */
static bool
log_is_key(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
	    (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
}

/* How many bytes byte c takes once escaped. */
static size_t
log_escaped_len(unsigned char c)
{
	if (c == '"' || c == '\\')
		return 2;
	if (c < 0x20 || c >= 0x7f)
		return 4;
	return 1;
}

/*
 * Escapes: '"' and '\' get a backslash, control bytes, DEL and every byte
 * of 0x80 or more become \xNN (lowercase hex).  Output is cut at a whole
 * escape sequence, never inside one, and the cut is marked with "...".
 */
size_t
log_escape(char *dst, size_t dstlen, const void *src, size_t len, size_t max)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *s = src;
	size_t n = len < max ? len : max;
	bool cut = len > max;
	size_t need = 0;
	size_t out = 0;
	size_t i;

	if (dstlen == 0)
		return 0;
	if (s == NULL)
		n = 0;
	for (i = 0; i < n; i++)
		need += log_escaped_len(s[i]);
	if (need + (cut ? 3 : 0) + 1 > dstlen)
		cut = true;
	for (i = 0; i < n; i++) {
		unsigned char c = s[i];
		size_t el = log_escaped_len(c);

		if (out + el + (cut ? 3 : 0) + 1 > dstlen)
			break;
		if (el == 1) {
			dst[out++] = (char)c;
		} else if (el == 2) {
			dst[out++] = '\\';
			dst[out++] = (char)c;
		} else {
			dst[out++] = '\\';
			dst[out++] = 'x';
			dst[out++] = hex[c >> 4];
			dst[out++] = hex[c & 0xf];
		}
	}
	if (cut) {
		for (i = 0; i < 3 && out + 1 < dstlen; i++)
			dst[out++] = '.';
	}
	dst[out] = '\0';
	return out;
}

/* Appends n bytes unless they would eat into the reserve; else cuts. */
static void
log_line_put(struct log_line *l, const char *s, size_t n)
{
	if (l->cut)
		return;
	if (l->len + n > LOG_LINE_MAX - LOG_LINE_RESERVE) {
		l->cut = true;
		return;
	}
	memcpy(l->buf + l->len, s, n);
	l->len += n;
}

/*
 * Writes an escaped value into f (LOG_FIELD_MAX bytes at f + *off):
 * bare when it is non-empty and made only of safe bytes, quoted otherwise.
 */
static void
log_value(char *f, size_t *off, const void *p, size_t len, bool force_quote)
{
	char esc[LOG_VALUE_MAX * 4 + 8];
	size_t n = log_escape(esc, sizeof(esc), p, len, LOG_VALUE_MAX);
	bool bare = n > 0 && !force_quote;
	size_t i;

	for (i = 0; i < n && bare; i++)
		bare = log_is_bare((unsigned char)esc[i]);
	if (!bare)
		f[(*off)++] = '"';
	memcpy(f + *off, esc, n);
	*off += n;
	if (!bare)
		f[(*off)++] = '"';
}

/* Formats one field as " key=value" and appends it to the line. */
static void
log_field(struct log_line *l, const struct log_field *fl)
{
	char f[LOG_FIELD_MAX];
	size_t off = 0;
	const char *k = fl->key != NULL ? fl->key : "field";
	int n = 0;
	size_t i;

	f[off++] = ' ';
	for (i = 0; i < LOG_KEY_MAX && k[i] != '\0'; i++) {
		unsigned char c = (unsigned char)k[i];

		f[off++] = (char)(log_is_key(c) ? c : '_');
	}
	f[off++] = '=';
	switch (fl->type) {
	case LOG_F_STR:
		log_value(f, &off, fl->p,
		    fl->p != NULL ? strlen((const char *)fl->p) : 0, false);
		break;
	case LOG_F_BYTES:
		log_value(f, &off, fl->p, fl->p != NULL ? fl->len : 0, false);
		break;
	case LOG_F_INT:
		n = snprintf(f + off, sizeof(f) - off, "%" PRId64, fl->i);
		break;
	case LOG_F_UINT:
		n = snprintf(f + off, sizeof(f) - off, "%" PRIu64, fl->u);
		break;
	case LOG_F_DBL:
		n = snprintf(f + off, sizeof(f) - off, "%g", fl->d);
		break;
	default:
		log_value(f, &off, "?", 1, false);
		break;
	}
	if (n > 0)
		off += (size_t)n < sizeof(f) - off ? (size_t)n : 0;
	log_line_put(l, f, off);
}

/*
 * Builds "ts=... level=... msg="..." k=v ...\n" and writes it at once.
 * errno is preserved, so callers may log between a failing call and the
 * use of its errno.
 */
void
log_emit(enum log_level level, const char *msg, const struct log_field *fields)
{
	struct log_line l;
	char ts[40];
	char f[LOG_FIELD_MAX];
	size_t off = 0;
	const char *lname;
	int saved = errno;
	int fd;
	ssize_t w;

	if ((int)level < atomic_load(&log_level_cur))
		return;
	lname = (int)level >= 0 && (int)level <= LOG_LEVEL_ERROR
	    ? log_level_names[level]
	    : "error";
	l.len = 0;
	l.cut = false;
	time_format_rfc3339_ms(time_now_ms(), ts, sizeof(ts));
	log_line_put(&l, "ts=", 3);
	log_line_put(&l, ts, strlen(ts));
	log_line_put(&l, " level=", 7);
	log_line_put(&l, lname, strlen(lname));
	log_line_put(&l, " msg=", 5);
	log_value(f, &off, msg, msg != NULL ? strlen(msg) : 0, true);
	log_line_put(&l, f, off);
	for (; fields != NULL && fields->type != LOG_F_END; fields++)
		log_field(&l, fields);
	if (l.cut) {
		memcpy(l.buf + l.len, " truncated=true", 15);
		l.len += 15;
	}
	l.buf[l.len++] = '\n';
	fd = atomic_load(&log_fd_cur);
	do {
		w = write(fd, l.buf, l.len);
	} while (w < 0 && errno == EINTR);
	errno = saved;
}
