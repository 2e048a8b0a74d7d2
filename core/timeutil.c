/*
 * timeutil: wall-clock and monotonic milliseconds, RFC 3339 and RFC 5322
 * formatting and parsing, durations and the CLI's WHEN arguments.
 *
 * Everything here is pure and thread-safe: gmtime_r() and timegm() do the
 * calendar arithmetic, the weekday and month names are our own tables (so
 * the process locale never leaks into a Date header), and every parser
 * validates its fields (Feb 30 is an error, not March 2) before timegm()
 * sees them.  Times are int64_t milliseconds since the Unix epoch.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "redrive/timeutil.h"

static const char time_wday_names[7][4] = { "Sun", "Mon", "Tue", "Wed", "Thu",
	"Fri", "Sat" };
static const char time_mon_names[12][4] = { "Jan", "Feb", "Mar", "Apr", "May",
	"Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };

int64_t
time_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t
time_mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * Splits ms into a broken-down UTC time and the milliseconds within the
 * second (always 0..999, also before 1970).  Returns 0 or -EOVERFLOW.
 */
static int
time_split(int64_t ms, struct tm *tm, int *frac)
{
	int64_t s = ms / 1000;
	int64_t r = ms % 1000;
	time_t t;

	if (r < 0) {
		r += 1000;
		s--;
	}
	t = (time_t)s;
	if (gmtime_r(&t, tm) == NULL)
		return -EOVERFLOW;
	*frac = (int)r;
	return 0;
}

/* RFC 3339 section 5.6 date-time, UTC, with or without milliseconds. */
static char *
time_format_3339(int64_t ms, char *buf, size_t buflen, bool with_ms)
{
	struct tm tm;
	int frac;

	if (buflen == 0)
		return buf;
	buf[0] = '\0';
	if (time_split(ms, &tm, &frac) != 0)
		return buf;
	if (with_ms)
		snprintf(buf, buflen, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
		    tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
		    tm.tm_min, tm.tm_sec, frac);
	else
		snprintf(buf, buflen, "%04d-%02d-%02dT%02d:%02d:%02dZ",
		    tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
		    tm.tm_min, tm.tm_sec);
	return buf;
}

char *
time_format_rfc3339(int64_t ms, char *buf, size_t buflen)
{
	return time_format_3339(ms, buf, buflen, false);
}

char *
time_format_rfc3339_ms(int64_t ms, char *buf, size_t buflen)
{
	return time_format_3339(ms, buf, buflen, true);
}

/*
 * RFC 5322 section 3.3 date-time in UTC ("+0000").  The names come from
 * our own tables, never from strftime(), so the locale cannot change them.
 */
char *
time_format_rfc5322(int64_t ms, char *buf, size_t buflen)
{
	struct tm tm;
	int frac;

	if (buflen == 0)
		return buf;
	buf[0] = '\0';
	if (time_split(ms, &tm, &frac) != 0 || tm.tm_wday < 0 ||
	    tm.tm_wday > 6 || tm.tm_mon < 0 || tm.tm_mon > 11)
		return buf;
	snprintf(buf, buflen, "%s, %02d %s %04d %02d:%02d:%02d +0000",
	    time_wday_names[tm.tm_wday], tm.tm_mday, time_mon_names[tm.tm_mon],
	    tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
	return buf;
}

/*
 * Parses a decimal integer, then exactly one unit.  Digits are accumulated
 * by hand so that overflow is caught before it happens.
 */
int
time_parse_duration(const char *s, int64_t *ms)
{
	static const struct {
		const char *unit;
		int64_t mult;
	} units[] = {
		{ "ms", 1 },
		{ "s", 1000 },
		{ "m", (int64_t)60 * 1000 },
		{ "h", (int64_t)60 * 60 * 1000 },
		{ "d", (int64_t)24 * 60 * 60 * 1000 },
		{ "w", (int64_t)7 * 24 * 60 * 60 * 1000 },
	};
	const char *p = s;
	int64_t v = 0;
	size_t i;

	if (s == NULL || *p < '0' || *p > '9')
		return -EINVAL;
	while (*p >= '0' && *p <= '9') {
		int d = *p - '0';

		if (v > (INT64_MAX - d) / 10) {
			/* Still reject garbage with -EINVAL, not -ERANGE. */
			while (*p >= '0' && *p <= '9')
				p++;
			for (i = 0; i < sizeof(units) / sizeof(units[0]); i++)
				if (strcmp(p, units[i].unit) == 0)
					return -ERANGE;
			return -EINVAL;
		}
		v = v * 10 + d;
		p++;
	}
	for (i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		if (strcmp(p, units[i].unit) != 0)
			continue;
		if (v > INT64_MAX / units[i].mult)
			return -ERANGE;
		*ms = v * units[i].mult;
		return 0;
	}
	return -EINVAL;
}

/* Reads exactly n decimal digits at *pp into *out; advances *pp. */
static bool
time_digits(const char **pp, int n, int *out)
{
	const char *p = *pp;
	int v = 0;
	int i;

	for (i = 0; i < n; i++) {
		if (p[i] < '0' || p[i] > '9')
			return false;
		v = v * 10 + (p[i] - '0');
	}
	*pp = p + n;
	*out = v;
	return true;
}

static bool
time_is_leap(int y)
{
	return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int
time_days_in_month(int y, int m)
{
	static const int days[12] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31,
		30, 31 };

	if (m == 2 && time_is_leap(y))
		return 29;
	return days[m - 1];
}

/*
 * Validates the fields and converts them with timegm(); off_min is the
 * zone's offset east of UTC in minutes.  sec may be 60 (a leap second,
 * RFC 3339 section 5.7), which counts as the next minute's first second.
 */
static int
time_make(
    int y, int mon, int d, int h, int min, int sec, int off_min, int64_t *secs)
{
	struct tm tm;
	time_t t;

	if (y < 0 || y > 9999 || mon < 1 || mon > 12 || d < 1 ||
	    d > time_days_in_month(y, mon) || h > 23 || min > 59 || sec > 60)
		return -EINVAL;
	memset(&tm, 0, sizeof(tm));
	tm.tm_year = y - 1900;
	tm.tm_mon = mon - 1;
	tm.tm_mday = d;
	tm.tm_hour = h;
	tm.tm_min = min;
	tm.tm_sec = sec;
	t = timegm(&tm);
	*secs = (int64_t)t - (int64_t)off_min * 60;
	return 0;
}

/* Parses "YYYY-MM-DD" at *pp; advances *pp. */
static bool
time_parse_date_part(const char **pp, int *y, int *mon, int *d)
{
	const char *p = *pp;

	if (!time_digits(&p, 4, y) || *p++ != '-' || !time_digits(&p, 2, mon) ||
	    *p++ != '-' || !time_digits(&p, 2, d))
		return false;
	*pp = p;
	return true;
}

/*
 * RFC 3339 section 5.6: full-date "T" full-time, where the T may also be
 * 't' or ' ' (section 5.6's note), the fraction has any number of digits
 * (milliseconds kept, the rest truncated) and the offset is Z or +hh:mm.
 */
int
time_parse_rfc3339(const char *s, int64_t *ms)
{
	const char *p = s;
	int y, mon, d, h, min, sec, frac = 0, off = 0;
	int64_t secs;

	if (s == NULL || !time_parse_date_part(&p, &y, &mon, &d))
		return -EINVAL;
	if (*p != 'T' && *p != 't' && *p != ' ')
		return -EINVAL;
	p++;
	if (!time_digits(&p, 2, &h) || *p++ != ':' ||
	    !time_digits(&p, 2, &min) || *p++ != ':' ||
	    !time_digits(&p, 2, &sec))
		return -EINVAL;
	if (*p == '.') {
		int n = 0;

		p++;
		if (*p < '0' || *p > '9')
			return -EINVAL;
		while (*p >= '0' && *p <= '9') {
			if (n < 3)
				frac = frac * 10 + (*p - '0');
			n++;
			p++;
		}
		for (; n < 3; n++)
			frac *= 10;
	}
	if (*p == 'Z' || *p == 'z') {
		p++;
	} else if (*p == '+' || *p == '-') {
		int sign = *p == '-' ? -1 : 1;
		int oh, om;

		p++;
		if (!time_digits(&p, 2, &oh) || *p++ != ':' ||
		    !time_digits(&p, 2, &om) || oh > 23 || om > 59)
			return -EINVAL;
		off = sign * (oh * 60 + om);
	} else {
		return -EINVAL;
	}
	if (*p != '\0')
		return -EINVAL;
	if (time_make(y, mon, d, h, min, sec, off, &secs) != 0)
		return -EINVAL;
	*ms = secs * 1000 + frac;
	return 0;
}

/* Skips folding white space (spaces and tabs). */
static void
time_skip_ws(const char **pp)
{
	const char *p = *pp;

	while (*p == ' ' || *p == '\t')
		p++;
	*pp = p;
}

/* True when at least one space or tab was skipped. */
static bool
time_need_ws(const char **pp)
{
	const char *start = *pp;

	time_skip_ws(pp);
	return *pp != start;
}

/* Matches one of n three-letter names, case-insensitively. */
static int
time_match_name(const char **pp, const char (*names)[4], int n)
{
	int i;

	for (i = 0; i < n; i++) {
		if (strncasecmp(*pp, names[i], 3) == 0) {
			*pp += 3;
			return i;
		}
	}
	return -1;
}

/*
 * RFC 5322 section 3.3 date-time: [day-of-week ","] day month year
 * hour ":" minute [":" second] zone, plus the forms Mailgun writes in
 * "try again after" ("UTC" as the zone) and the obsolete "GMT"/"UT"/"Z"
 * zones of section 4.3.  A trailing comment such as "(UTC)" is allowed.
 * The day-of-week, when present, is checked for form only: a wrong one
 * does not change which instant the date names.
 */
int
time_parse_rfc5322(const char *s, int64_t *ms)
{
	const char *p = s;
	int y, mon, d, h, min, sec = 0, off = 0;
	int64_t secs;

	if (s == NULL)
		return -EINVAL;
	time_skip_ws(&p);
	if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z')) {
		if (time_match_name(&p, time_wday_names, 7) < 0)
			return -EINVAL;
		time_skip_ws(&p);
		if (*p++ != ',')
			return -EINVAL;
		time_skip_ws(&p);
	}
	if (!time_digits(&p, 1, &d))
		return -EINVAL;
	if (*p >= '0' && *p <= '9') {
		int d2;

		time_digits(&p, 1, &d2);
		d = d * 10 + d2;
	}
	if (!time_need_ws(&p))
		return -EINVAL;
	mon = time_match_name(&p, time_mon_names, 12) + 1;
	if (mon == 0 || !time_need_ws(&p) || !time_digits(&p, 4, &y) ||
	    !time_need_ws(&p))
		return -EINVAL;
	if (!time_digits(&p, 2, &h) || *p++ != ':' || !time_digits(&p, 2, &min))
		return -EINVAL;
	if (*p == ':') {
		p++;
		if (!time_digits(&p, 2, &sec))
			return -EINVAL;
	}
	if (!time_need_ws(&p))
		return -EINVAL;
	if (*p == '+' || *p == '-') {
		int sign = *p == '-' ? -1 : 1;
		int oh, om;

		p++;
		if (!time_digits(&p, 2, &oh) || !time_digits(&p, 2, &om) ||
		    oh > 23 || om > 59)
			return -EINVAL;
		off = sign * (oh * 60 + om);
	} else if (strncasecmp(p, "UTC", 3) == 0 ||
	    strncasecmp(p, "GMT", 3) == 0) {
		p += 3;
	} else if (strncasecmp(p, "UT", 2) == 0) {
		p += 2;
	} else if (*p == 'Z' || *p == 'z') {
		p++;
	} else {
		return -EINVAL;
	}
	time_skip_ws(&p);
	if (*p == '(') {
		const char *close = strchr(p, ')');

		if (close == NULL)
			return -EINVAL;
		p = close + 1;
		time_skip_ws(&p);
	}
	if (*p != '\0')
		return -EINVAL;
	if (time_make(y, mon, d, h, min, sec, off, &secs) != 0)
		return -EINVAL;
	*ms = secs * 1000;
	return 0;
}

/*
 * WHEN: a duration back from now_ms ("24h"), an RFC 3339 time, or (an
 * extension for the CLI) a bare RFC 3339 full-date "2026-11-28", which
 * means that day's midnight UTC.
 */
int
time_parse_when(const char *s, int64_t now_ms, int64_t *ms)
{
	const char *p = s;
	int64_t d, secs;
	int y, mon, day;

	if (s == NULL)
		return -EINVAL;
	if (time_parse_duration(s, &d) == 0) {
		if (now_ms < INT64_MIN + d)
			return -EINVAL;
		*ms = now_ms - d;
		return 0;
	}
	if (time_parse_rfc3339(s, ms) == 0)
		return 0;
	if (time_parse_date_part(&p, &y, &mon, &day) && *p == '\0' &&
	    time_make(y, mon, day, 0, 0, 0, 0, &secs) == 0) {
		*ms = secs * 1000;
		return 0;
	}
	return -EINVAL;
}
