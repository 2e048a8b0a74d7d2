/*
 * Unit tests for core/timeutil.c: RFC 3339 and RFC 5322 formatting and
 * parsing (leap years, offsets, fractions, impossible dates, input cut at
 * every position), durations with their overflow limits, and WHEN.
 */
#include <errno.h>
#include <locale.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "redrive/timeutil.h"

/* 2026-11-28T00:31:27.123Z */
#define T_2026 ((int64_t)1795825887 * 1000 + 123)
/* Mon, 20 Dec 2021 20:33:21 UTC */
#define T_MAILGUN ((int64_t)1640032401 * 1000)

/* Parses a heap copy of exactly n bytes so that an over-read is caught. */
static int
test_parse_n(
    int (*fn)(const char *, int64_t *), const char *s, size_t n, int64_t *ms)
{
	char *copy = malloc(n + 1);
	int rc;

	assert_non_null(copy);
	memcpy(copy, s, n);
	copy[n] = '\0';
	rc = fn(copy, ms);
	free(copy);
	return rc;
}

static void
test_time_now(void **state)
{
	int64_t a, b;

	(void)state;
	a = time_now_ms();
	assert_true(a > (int64_t)1577836800 * 1000); /* after 2020 */
	a = time_mono_ms();
	b = time_mono_ms();
	assert_true(b >= a);
}

static void
test_time_format_rfc3339(void **state)
{
	char buf[32];

	(void)state;
	assert_string_equal(
	    time_format_rfc3339(0, buf, sizeof(buf)), "1970-01-01T00:00:00Z");
	assert_string_equal(time_format_rfc3339_ms(0, buf, sizeof(buf)),
	    "1970-01-01T00:00:00.000Z");
	assert_string_equal(time_format_rfc3339(T_2026, buf, sizeof(buf)),
	    "2026-11-28T00:31:27Z");
	assert_string_equal(time_format_rfc3339_ms(T_2026, buf, sizeof(buf)),
	    "2026-11-28T00:31:27.123Z");
	/* Before the epoch the fraction still counts forward. */
	assert_string_equal(time_format_rfc3339_ms(-1, buf, sizeof(buf)),
	    "1969-12-31T23:59:59.999Z");
	assert_string_equal(time_format_rfc3339_ms(-1000, buf, sizeof(buf)),
	    "1969-12-31T23:59:59.000Z");
	assert_string_equal(
	    time_format_rfc3339_ms(
		(int64_t)1709208000 * 1000 + 5, buf, sizeof(buf)),
	    "2024-02-29T12:00:00.005Z");
	/* A short buffer is cut and still terminated. */
	assert_string_equal(time_format_rfc3339(T_2026, buf, 5), "2026");
	/* Extreme values do not crash. */
	time_format_rfc3339_ms(INT64_MAX, buf, sizeof(buf));
	assert_true(strlen(buf) < sizeof(buf));
	time_format_rfc3339_ms(INT64_MIN, buf, sizeof(buf));
	assert_true(strlen(buf) < sizeof(buf));
}

static void
test_time_format_rfc5322(void **state)
{
	char buf[40];

	(void)state;
	assert_string_equal(time_format_rfc5322(T_2026, buf, sizeof(buf)),
	    "Sat, 28 Nov 2026 00:31:27 +0000");
	assert_string_equal(time_format_rfc5322(T_MAILGUN, buf, sizeof(buf)),
	    "Mon, 20 Dec 2021 20:33:21 +0000");
	assert_string_equal(time_format_rfc5322(0, buf, sizeof(buf)),
	    "Thu, 01 Jan 1970 00:00:00 +0000");
	/* Whatever locale is set, the names stay English. */
	if (setlocale(LC_ALL, "de_DE.UTF-8") != NULL ||
	    setlocale(LC_ALL, "fr_FR.UTF-8") != NULL) {
		assert_string_equal(
		    time_format_rfc5322(T_2026, buf, sizeof(buf)),
		    "Sat, 28 Nov 2026 00:31:27 +0000");
		setlocale(LC_ALL, "C");
	}
}

static void
test_time_duration(void **state)
{
	static const struct {
		const char *s;
		int64_t ms;
	} ok[] = {
		{ "0s", 0 },
		{ "500ms", 500 },
		{ "30s", 30000 },
		{ "4m", 240000 },
		{ "2h", 7200000 },
		{ "7d", 604800000 },
		{ "1w", 604800000 },
		{ "007s", 7000 },
		{ "9223372036854775807ms", INT64_MAX },
		{ "9223372036854775s", (int64_t)9223372036854775 * 1000 },
		{ "15250284452w", (int64_t)15250284452 * 604800000 },
	};
	static const char *const bad[] = { "", "s", "ms", "10", "-1s", "+1s",
		" 1s", "1s ", "1.5h", "1 s", "1sec", "1S", "1H", "1ms1", "01x",
		"1d2h", "1y", "0x10s", "1\ts" };
	static const char *const big[] = { "9223372036854775808ms",
		"9223372036854776s", "15250284453w",
		"99999999999999999999999999w", "106751991167301d" };
	size_t i;
	int64_t ms;

	(void)state;
	for (i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		ms = -1;
		assert_int_equal(time_parse_duration(ok[i].s, &ms), 0);
		assert_true(ms == ok[i].ms);
	}
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		ms = 42;
		assert_int_equal(time_parse_duration(bad[i], &ms), -EINVAL);
		assert_true(ms == 42);
	}
	for (i = 0; i < sizeof(big) / sizeof(big[0]); i++)
		assert_int_equal(time_parse_duration(big[i], &ms), -ERANGE);
	/* Overflowing digits followed by garbage are still garbage. */
	assert_int_equal(
	    time_parse_duration("99999999999999999999x", &ms), -EINVAL);
	assert_int_equal(time_parse_duration(NULL, &ms), -EINVAL);
}

static void
test_time_rfc3339_ok(void **state)
{
	static const struct {
		const char *s;
		int64_t ms;
	} ok[] = {
		{ "2026-11-28T00:31:27Z", (int64_t)1795825887 * 1000 },
		{ "2026-11-28T00:31:27.123Z", T_2026 },
		{ "2026-11-28t00:31:27.123z", T_2026 },
		{ "2026-11-28 00:31:27.123Z", T_2026 },
		{ "2026-11-28T00:31:27.1Z", (int64_t)1795825887 * 1000 + 100 },
		{ "2026-11-28T00:31:27.12Z", (int64_t)1795825887 * 1000 + 120 },
		{ "2026-11-28T00:31:27.123999999Z", T_2026 },
		{ "2026-11-28T01:31:27.123+01:00", T_2026 },
		{ "2026-11-27T19:01:27.123-05:30", T_2026 },
		{ "2026-11-28T00:31:27.123-00:00", T_2026 },
		{ "2026-11-28T23:59:27.123+23:28", T_2026 },
		{ "2024-02-29T12:00:00Z", (int64_t)1709208000 * 1000 },
		{ "2000-02-29T00:00:00Z", (int64_t)951782400 * 1000 },
		{ "1969-12-31T23:59:59Z", -1000 },
		{ "1970-01-01T00:00:00Z", 0 },
		{ "9999-12-31T23:59:59Z", (int64_t)253402300799 * 1000 },
		/* A leap second counts as the first second of the next minute.
		 */
		{ "2016-12-31T23:59:60Z", ((int64_t)1483228799 + 1) * 1000 },
	};
	size_t i;
	int64_t ms;

	(void)state;
	for (i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		ms = -42;
		assert_int_equal(time_parse_rfc3339(ok[i].s, &ms), 0);
		assert_true(ms == ok[i].ms);
	}
}

static void
test_time_rfc3339_bad(void **state)
{
	static const char *const bad[] = {
		"",
		"2026-11-28",
		"2026-11-28T00:31:27",	/* no offset */
		"2026-11-28T00:31Z",	/* no seconds */
		"2023-02-29T00:00:00Z", /* not a leap year */
		"1900-02-29T00:00:00Z", /* century, not a leap year */
		"2024-02-30T00:00:00Z", /* Feb 30 */
		"2026-04-31T00:00:00Z", /* April has 30 days */
		"2026-13-01T00:00:00Z",
		"2026-00-01T00:00:00Z",
		"2026-01-00T00:00:00Z",
		"2026-01-32T00:00:00Z",
		"2026-01-01T24:00:00Z",
		"2026-01-01T23:60:00Z",
		"2026-01-01T23:59:61Z",
		"2026-01-01T00:00:00.Z",     /* empty fraction */
		"2026-01-01T00:00:00+24:00", /* offset hour */
		"2026-01-01T00:00:00+01:60", /* offset minute */
		"2026-01-01T00:00:00+0100",  /* RFC 3339 needs the colon */
		"2026-01-01T00:00:00+01",
		"2026-01-01X00:00:00Z",
		"2026-01-01T00:00:00Zjunk",
		"2026-01-01T00:00:00Z ",
		" 2026-01-01T00:00:00Z",
		"26-01-01T00:00:00Z",
		"2026-1-01T00:00:00Z",
		"2026/01/01T00:00:00Z",
		"+2026-01-01T00:00:00Z",
		"2026-01-01T0:00:00Z",
		"2026-01-01T00:00:00,5Z",
	};
	size_t i;
	int64_t ms;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		ms = 42;
		assert_int_equal(time_parse_rfc3339(bad[i], &ms), -EINVAL);
		assert_true(ms == 42);
	}
	assert_int_equal(time_parse_rfc3339(NULL, &ms), -EINVAL);
}

/* Every proper prefix of a valid time is refused, and never over-read. */
static void
test_time_rfc3339_cut(void **state)
{
	static const char *const full[] = { "2026-11-28T00:31:27.123+01:00",
		"2026-11-28T00:31:27Z" };
	size_t i, n;
	int64_t ms;

	(void)state;
	for (i = 0; i < sizeof(full) / sizeof(full[0]); i++) {
		for (n = 0; n < strlen(full[i]); n++)
			assert_int_equal(
			    test_parse_n(time_parse_rfc3339, full[i], n, &ms),
			    -EINVAL);
		assert_int_equal(test_parse_n(time_parse_rfc3339, full[i],
				     strlen(full[i]), &ms),
		    0);
	}
}

/* format(parse(x)) == x over a spread of times, leap days included. */
static void
test_time_rfc3339_roundtrip(void **state)
{
	char buf[32];
	int64_t t, back;

	(void)state;
	for (t = -(int64_t)86400000 * 366 * 3; t < (int64_t)86400000 * 366 * 80;
	     t += (int64_t)86400000 * 7 + 3600000 + 61000 + 7) {
		time_format_rfc3339_ms(t, buf, sizeof(buf));
		assert_int_equal(time_parse_rfc3339(buf, &back), 0);
		assert_true(back == t);
	}
}

static void
test_time_rfc5322(void **state)
{
	static const struct {
		const char *s;
		int64_t ms;
	} ok[] = {
		{ "Mon, 20 Dec 2021 20:33:21 UTC", T_MAILGUN },
		{ "Mon, 20 Dec 2021 20:33:21 GMT", T_MAILGUN },
		{ "Mon, 20 Dec 2021 20:33:21 UT", T_MAILGUN },
		{ "Mon, 20 Dec 2021 20:33:21 +0000", T_MAILGUN },
		{ "Mon, 20 Dec 2021 20:33:21 -0000", T_MAILGUN },
		{ "Mon, 20 Dec 2021 15:33:21 -0500", T_MAILGUN },
		{ "Tue, 21 Dec 2021 02:03:21 +0530", T_MAILGUN },
		{ "20 Dec 2021 20:33:21 UTC", T_MAILGUN },
		{ "mon, 20 dec 2021 20:33:21 utc", T_MAILGUN },
		{ "Mon,20 Dec 2021 20:33:21 UTC", T_MAILGUN },
		{ "  Mon ,  20  Dec  2021  20:33:21  UTC  ", T_MAILGUN },
		{ "Mon, 20 Dec 2021 20:33:21 +0000 (UTC)", T_MAILGUN },
		{ "Mon, 20 Dec 2021 20:33 UTC", T_MAILGUN - 21000 },
		{ "Sat, 1 Jan 2022 00:00:00 GMT", (int64_t)1640995200 * 1000 },
		{ "Sat, 01 Jan 2022 00:00:00 Z", (int64_t)1640995200 * 1000 },
		{ "Thu, 29 Feb 2024 12:00:00 +0000",
		    (int64_t)1709208000 * 1000 },
	};
	static const char *const bad[] = {
		"",
		"Mon, 20 Dec 2021 20:33:21",	   /* no zone */
		"Mon, 20 Dec 2021 20:33:21 EST",   /* unknown zone */
		"Mon, 20 Dec 2021 20:33:21 +05",   /* short offset */
		"Mon, 20 Dec 2021 20:33:21 +2400", /* offset hour */
		"Mon, 20 Dec 2021 20:33:21 +0060", /* offset minute */
		"Mon, 20 Foo 2021 20:33:21 UTC",   /* month */
		"Xyz, 20 Dec 2021 20:33:21 UTC",   /* weekday */
		"Mon 20 Dec 2021 20:33:21 UTC",	   /* weekday without comma */
		"Mon, 20 Dec 21 20:33:21 UTC",	   /* two-digit year */
		"Mon, 30 Feb 2021 20:33:21 UTC",   /* Feb 30 */
		"Mon, 29 Feb 2021 20:33:21 UTC",   /* not a leap year */
		"Mon, 00 Dec 2021 20:33:21 UTC",
		"Mon, 123 Dec 2021 20:33:21 UTC",
		"Mon, 20 Dec 2021 24:00:00 UTC",
		"Mon, 20 Dec 2021 20:60:00 UTC",
		"Mon, 20 Dec 2021 20:33:61 UTC",
		"Mon, 20 Dec 2021 20:33:21 UTC x", /* trailing garbage */
		"Mon, 20 Dec 2021 20:33:21 UTCX",
		"Mon, 20 Dec 2021 20:33:21 +0000 (UTC", /* open comment */
		"Mon, 20Dec 2021 20:33:21 UTC",
		"Mon, 20 Dec 2021 20:3:21 UTC",
		"2021-12-20T20:33:21Z",
	};
	static const char *const full = "Mon, 20 Dec 2021 15:33:21 -0500";
	size_t i, n;
	int64_t ms;

	(void)state;
	for (i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		ms = -42;
		assert_int_equal(time_parse_rfc5322(ok[i].s, &ms), 0);
		assert_true(ms == ok[i].ms);
	}
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		ms = 42;
		assert_int_equal(time_parse_rfc5322(bad[i], &ms), -EINVAL);
		assert_true(ms == 42);
	}
	assert_int_equal(time_parse_rfc5322(NULL, &ms), -EINVAL);
	for (n = 0; n < strlen(full); n++)
		assert_int_equal(
		    test_parse_n(time_parse_rfc5322, full, n, &ms), -EINVAL);
	/* What we format, we parse. */
	{
		char buf[40];

		time_format_rfc5322(T_2026, buf, sizeof(buf));
		assert_int_equal(time_parse_rfc5322(buf, &ms), 0);
		assert_true(ms == T_2026 - 123);
	}
}

static void
test_time_when(void **state)
{
	const int64_t now = T_2026;
	int64_t ms;

	(void)state;
	assert_int_equal(time_parse_when("15m", now, &ms), 0);
	assert_true(ms == now - (int64_t)15 * 60 * 1000);
	assert_int_equal(time_parse_when("7d", now, &ms), 0);
	assert_true(ms == now - (int64_t)7 * 86400000);
	assert_int_equal(time_parse_when("0s", now, &ms), 0);
	assert_true(ms == now);
	assert_int_equal(time_parse_when("2021-12-20T20:33:21Z", now, &ms), 0);
	assert_true(ms == T_MAILGUN);
	assert_int_equal(
	    time_parse_when("2021-12-20T21:33:21+01:00", now, &ms), 0);
	assert_true(ms == T_MAILGUN);
	/* A bare date is that day's midnight UTC. */
	assert_int_equal(time_parse_when("2021-12-20", now, &ms), 0);
	assert_true(ms == (int64_t)1639958400 * 1000);
	ms = 42;
	assert_int_equal(time_parse_when("2021-02-30", now, &ms), -EINVAL);
	assert_int_equal(time_parse_when("yesterday", now, &ms), -EINVAL);
	assert_int_equal(time_parse_when("-1h", now, &ms), -EINVAL);
	assert_int_equal(time_parse_when("", now, &ms), -EINVAL);
	assert_int_equal(time_parse_when("24", now, &ms), -EINVAL);
	assert_int_equal(
	    time_parse_when("99999999999999999999d", now, &ms), -EINVAL);
	assert_int_equal(time_parse_when(NULL, now, &ms), -EINVAL);
	assert_true(ms == 42);
	/* now - duration must not wrap around. */
	assert_int_equal(time_parse_when("1s", INT64_MIN + 999, &ms), -EINVAL);
	assert_int_equal(time_parse_when("1s", INT64_MIN + 1000, &ms), 0);
	assert_true(ms == INT64_MIN);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_time_now),
		cmocka_unit_test(test_time_format_rfc3339),
		cmocka_unit_test(test_time_format_rfc5322),
		cmocka_unit_test(test_time_duration),
		cmocka_unit_test(test_time_rfc3339_ok),
		cmocka_unit_test(test_time_rfc3339_bad),
		cmocka_unit_test(test_time_rfc3339_cut),
		cmocka_unit_test(test_time_rfc3339_roundtrip),
		cmocka_unit_test(test_time_rfc5322),
		cmocka_unit_test(test_time_when),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
