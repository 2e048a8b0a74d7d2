/*
 * Unit tests of the forwarder's pure backoff (relay/forward.c):
 * min(retry_max, retry_min * 2^(k-1)) plus at most 10% jitter, with no
 * overflow for large k or large bounds.  The forwarder's behaviour against
 * Mailgun is tested end to end in tests/integration/test_forward.py.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "redrive/forward.h"

/* With rnd 0 there is no jitter: the doubling, capped. */
static void
test_backoff_doubles(void **state)
{
	(void)state;
	assert_int_equal(forward_backoff_ms(1000, 300000, 1, 0), 1000);
	assert_int_equal(forward_backoff_ms(1000, 300000, 2, 0), 2000);
	assert_int_equal(forward_backoff_ms(1000, 300000, 3, 0), 4000);
	assert_int_equal(forward_backoff_ms(1000, 300000, 9, 0), 256000);
	assert_int_equal(forward_backoff_ms(1000, 300000, 10, 0), 300000);
	assert_int_equal(forward_backoff_ms(1000, 300000, 1000000, 0), 300000);
	/* k = 0 is treated as the first failure. */
	assert_int_equal(forward_backoff_ms(100, 1000, 0, 0), 100);
	assert_int_equal(forward_backoff_ms(100, 1000, 4, 0), 800);
	assert_int_equal(forward_backoff_ms(100, 1000, 5, 0), 1000);
}

/* Jitter stays within [delay, delay + delay / 10]. */
static void
test_backoff_jitter(void **state)
{
	uint64_t r;
	int64_t d;
	unsigned k;

	(void)state;
	for (k = 1; k < 12; k++)
		for (r = 0; r < 5000; r += 7) {
			d = forward_backoff_ms(
			    1000, 300000, k, r * 0x9E3779B97F4A7C15ULL);
			int64_t base = forward_backoff_ms(1000, 300000, k, 0);
			assert_true(d >= base);
			assert_true(d <= base + base / 10);
		}
	/* The largest jitter is reached. */
	assert_int_equal(forward_backoff_ms(1000, 300000, 1, 100), 1100);
	assert_int_equal(forward_backoff_ms(1000, 300000, 1, 101), 1000);
}

/* Odd bounds: nothing overflows, min above max is max. */
static void
test_backoff_bounds(void **state)
{
	(void)state;
	assert_int_equal(forward_backoff_ms(0, 0, 1, 0), 1);
	assert_int_equal(forward_backoff_ms(5000, 1000, 3, 0), 5000);
	assert_int_equal(
	    forward_backoff_ms(INT64_MAX / 4, INT64_MAX / 2, 60, 0),
	    INT64_MAX / 2);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_backoff_doubles),
		cmocka_unit_test(test_backoff_jitter),
		cmocka_unit_test(test_backoff_bounds),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
