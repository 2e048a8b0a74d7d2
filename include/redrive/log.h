/*
 * log: logfmt lines on stderr, one line per event:
 *
 *	ts=2026-11-28T00:31:27.123Z level=info msg="message queued" id=42
 *
 * Every string value is escaped (quote, backslash, control and non-ASCII
 * bytes as \xNN) and truncated (LOG_VALUE_MAX bytes, then "..."), so peer
 * input can be logged safely.  Secrets must never be passed in: there is no
 * field type for them on purpose.  The logger is the one global of the
 * daemon; it is thread-safe (one write(2) per line).
 */
#ifndef REDRIVE_LOG_H
#define REDRIVE_LOG_H

#include <stddef.h>
#include <stdint.h>

enum log_level {
	LOG_LEVEL_DEBUG = 0,
	LOG_LEVEL_INFO,
	LOG_LEVEL_WARN,
	LOG_LEVEL_ERROR,
};

enum log_field_type {
	LOG_F_END = 0,
	LOG_F_STR,   /* NUL-terminated string, escaped; NULL prints "" */
	LOG_F_BYTES, /* (pointer, length) bytes, escaped */
	LOG_F_INT,   /* signed integer */
	LOG_F_UINT,  /* unsigned integer */
	LOG_F_DBL,   /* double, %g */
};

struct log_field {
	const char *key;
	enum log_field_type type;
	const void *p;
	size_t len;
	int64_t i;
	uint64_t u;
	double d;
};

#define LOG_VALUE_MAX 256

#define LF_STR(k, v) \
	((struct log_field){ .key = (k), .type = LOG_F_STR, .p = (v) })
#define LF_BYTES(k, v, n)    \
	((struct log_field){ \
	    .key = (k), .type = LOG_F_BYTES, .p = (v), .len = (n) })
#define LF_INT(k, v) \
	((struct log_field){ .key = (k), .type = LOG_F_INT, .i = (int64_t)(v) })
#define LF_UINT(k, v)        \
	((struct log_field){ \
	    .key = (k), .type = LOG_F_UINT, .u = (uint64_t)(v) })
#define LF_DBL(k, v) \
	((struct log_field){ .key = (k), .type = LOG_F_DBL, .d = (double)(v) })
#define LF_END ((struct log_field){ .key = NULL, .type = LOG_F_END })

/*
 * Usage: log_info("message queued", LF_INT("id", id), LF_STR("from", f),
 * LF_END); the field list always ends with LF_END.
 */
#define log_debug(msg, ...) \
	log_emit(           \
	    LOG_LEVEL_DEBUG, (msg), (const struct log_field[]){ __VA_ARGS__ })
#define log_info(msg, ...) \
	log_emit(          \
	    LOG_LEVEL_INFO, (msg), (const struct log_field[]){ __VA_ARGS__ })
#define log_warn(msg, ...) \
	log_emit(          \
	    LOG_LEVEL_WARN, (msg), (const struct log_field[]){ __VA_ARGS__ })
#define log_error(msg, ...) \
	log_emit(           \
	    LOG_LEVEL_ERROR, (msg), (const struct log_field[]){ __VA_ARGS__ })

/* Sets the lowest level written (default info). Any thread, before use. */
void log_set_level(enum log_level level);

/* Parses "debug", "info", "warn", "error"; returns 0 or -EINVAL. */
int log_level_parse(const char *s, enum log_level *out);

/*
 * Sends log lines to fd instead of stderr (2); tests use a pipe or file.
 * Returns the previous fd.
 */
int log_set_fd(int fd);

/*
 * Reopens the log target (SIGHUP). On stderr this is a no-op; kept so the
 * daemon's SIGHUP path has one place to call.  Loop thread.
 */
void log_reopen(void);

/*
 * Writes one line: ts, level, msg, then the fields up to LF_END.  Safe from
 * any thread.  Never fails visibly: a short write is dropped.
 */
void log_emit(
    enum log_level level, const char *msg, const struct log_field *fields);

/*
 * Escapes src[0..len) into dst (size dstlen, always NUL-terminated) the way
 * log values are escaped, truncating to at most max source bytes with a
 * trailing "...".  Returns the length written.  Exposed for tests and for
 * SMTP replies that echo peer input.
 */
size_t log_escape(
    char *dst, size_t dstlen, const void *src, size_t len, size_t max);

#endif
