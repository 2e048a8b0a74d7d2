/*
 * fuzz_timeparse: libFuzzer target for the parsers behind the CLI's and
 * the config's time and size arguments: time_parse_duration() ("5m",
 * [retry] backoff_base), time_parse_when() (--since, --before of log,
 * stats, tail, purge), time_parse_rfc3339(), time_parse_rfc5322() (Mailgun's
 * "try again after" dates), config_parse_size() ("10M"),
 * config_parse_bool() and config_split_hostport() (listen addresses).  The
 * input, NUL-terminated, is given to each.
 *
 * Asserted beyond "no crash" (UBSan also traps any signed overflow):
 * - a failed parse leaves its output alone; results are 0, -EINVAL or
 *   -ERANGE only;
 * - a duration is >= 0 and reads back the same written as "<ms>ms";
 *   time_parse_when() of a duration is now minus it;
 * - an RFC 3339 time in years 0-9999 reads back the same after
 *   time_format_rfc3339_ms(); an RFC 5322 date after time_format_rfc5322();
 * - a size reads back the same written in decimal;
 * - a host fits its buffer (small and large), the port is 0-65535.
 */
/* The assertions are the point: never compiled out. */
#undef NDEBUG
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "redrive/config.h"
#include "redrive/timeutil.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* 0000-01-01T00:00:00Z and 9999-12-31T23:59:59.999Z in ms. */
#define FUZZ_MS_MIN (-62167219200000LL)
#define FUZZ_MS_MAX 253402300799999LL
/* A fixed "now" for time_parse_when(). */
#define FUZZ_NOW 1795000000000LL

/* Durations, WHEN and the two date formats. */
static void
fuzz_time_dates(const char *s)
{
	int64_t ms = 42, ms2 = 43, when = 44;
	char buf[64];
	int r, rw;

	r = time_parse_duration(s, &ms);
	assert(r == 0 || r == -EINVAL || r == -ERANGE);
	rw = time_parse_when(s, FUZZ_NOW, &when);
	assert(rw == 0 || rw == -EINVAL);
	if (r == 0) {
		assert(ms >= 0);
		snprintf(buf, sizeof(buf), "%" PRId64 "ms", ms);
		assert(time_parse_duration(buf, &ms2) == 0 && ms2 == ms);
		assert(rw == 0 && when == FUZZ_NOW - ms);
	} else {
		assert(ms == 42);
	}
	ms = 42;
	r = time_parse_rfc3339(s, &ms);
	assert(r == 0 || r == -EINVAL);
	if (r == 0 && ms >= FUZZ_MS_MIN && ms <= FUZZ_MS_MAX) {
		time_format_rfc3339_ms(ms, buf, sizeof(buf));
		assert(time_parse_rfc3339(buf, &ms2) == 0 && ms2 == ms);
	} else if (r != 0) {
		assert(ms == 42);
	}
	ms = 42;
	r = time_parse_rfc5322(s, &ms);
	assert(r == 0 || r == -EINVAL);
	if (r == 0 && ms >= 0 && ms <= FUZZ_MS_MAX) {
		time_format_rfc5322(ms, buf, sizeof(buf));
		assert(time_parse_rfc5322(buf, &ms2) == 0);
		assert(ms2 == ms - ms % 1000);
	} else if (r != 0) {
		assert(ms == 42);
	}
}

/* Sizes, booleans and listen addresses. */
static void
fuzz_time_config(const char *s)
{
	uint64_t v = 42, v2 = 43;
	char buf[32], host[256], tiny[4];
	bool b;
	int r, port = 7;

	r = config_parse_size(s, &v);
	assert(r == 0 || r == -EINVAL || r == -ERANGE);
	if (r == 0) {
		snprintf(buf, sizeof(buf), "%" PRIu64, v);
		assert(config_parse_size(buf, &v2) == 0 && v2 == v);
	} else {
		assert(v == 42);
	}
	r = config_parse_bool(s, &b);
	assert(r == 0 || r == -EINVAL);
	r = config_split_hostport(s, host, sizeof(host), &port);
	assert(r == 0 || r == -EINVAL);
	if (r == 0) {
		assert(strnlen(host, sizeof(host)) < sizeof(host));
		assert(port >= 0 && port <= 65535);
	}
	r = config_split_hostport(s, tiny, sizeof(tiny), &port);
	assert(r == 0 || r == -EINVAL);
	if (r == 0)
		assert(strnlen(tiny, sizeof(tiny)) < sizeof(tiny));
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s;

	if (size > 4096)
		return 0;
	s = malloc(size + 1);
	assert(s != NULL);
	memcpy(s, data, size);
	s[size] = '\0';
	fuzz_time_dates(s);
	fuzz_time_config(s);
	free(s);
	return 0;
}
