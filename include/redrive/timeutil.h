/*
 * timeutil: wall-clock time in milliseconds since the epoch, RFC 3339 and
 * RFC 5322 formatting, and the parsing of durations ("30s", "4m", "2h",
 * "7d", also "500ms") and of WHEN arguments (a duration back from now, or an
 * RFC 3339 time).  Pure functions; any thread.
 */
#ifndef REDRIVE_TIMEUTIL_H
#define REDRIVE_TIMEUTIL_H

#include <stddef.h>
#include <stdint.h>

/* Milliseconds since the Unix epoch (CLOCK_REALTIME). */
int64_t time_now_ms(void);

/* Milliseconds from CLOCK_MONOTONIC, for measuring intervals. */
int64_t time_mono_ms(void);

/*
 * Formats ms as RFC 3339 UTC, "2026-11-28T00:31:27Z" (no fraction) into buf
 * (at least 32 bytes).  Returns buf.
 */
char *time_format_rfc3339(int64_t ms, char *buf, size_t buflen);

/* As above with milliseconds: "2026-11-28T00:31:27.123Z". */
char *time_format_rfc3339_ms(int64_t ms, char *buf, size_t buflen);

/*
 * Formats ms as an RFC 5322 date-time in UTC, "Sat, 28 Nov 2026 00:31:27
 * +0000", C locale whatever the process locale.  buf at least 40 bytes.
 */
char *time_format_rfc5322(int64_t ms, char *buf, size_t buflen);

/*
 * Parses a duration: a decimal integer followed by one unit of ms, s, m, h,
 * d (w too: weeks).  No sign, no spaces, no bare numbers, no overflow.
 * Returns 0 and *ms, or -EINVAL / -ERANGE.
 */
int time_parse_duration(const char *s, int64_t *ms);

/*
 * Parses an RFC 3339 time ("2026-11-28T00:31:27Z", with optional fraction
 * and a Z or +hh:mm / -hh:mm offset; 't' and ' ' accepted for 'T').
 * Returns 0 and *ms, or -EINVAL.
 */
int time_parse_rfc3339(const char *s, int64_t *ms);

/*
 * Parses an RFC 5322 / RFC 2822 date as Mailgun writes it in "try again
 * after Mon, 20 Dec 2021 20:33:21 UTC" (zone "UTC", "GMT" or +hhmm).
 * Returns 0 and *ms, or -EINVAL.
 */
int time_parse_rfc5322(const char *s, int64_t *ms);

/*
 * Parses a WHEN of the CLI: a duration back from now_ms, or an RFC 3339
 * time.  Returns 0 and *ms, or -EINVAL.
 */
int time_parse_when(const char *s, int64_t now_ms, int64_t *ms);

#endif
