/*
 * Unit tests for core/cidr.c: parsing (prefix validation, host bits
 * cleared, input cut at every position), matching of IPv4, IPv6 and
 * IPv4-mapped clients, loopback detection and address formatting.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <cmocka.h>

#include "redrive/cidr.h"

/* A sockaddr for a numeric address, v4 or v6. */
static const struct sockaddr *
test_sa(struct sockaddr_storage *ss, const char *addr)
{
	memset(ss, 0, sizeof(*ss));
	if (strchr(addr, ':') != NULL) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;

		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons(2525);
		assert_int_equal(inet_pton(AF_INET6, addr, &s6->sin6_addr), 1);
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *)ss;

		s4->sin_family = AF_INET;
		s4->sin_port = htons(2525);
		assert_int_equal(inet_pton(AF_INET, addr, &s4->sin_addr), 1);
	}
	return (const struct sockaddr *)ss;
}

/* True when network net contains addr. */
static bool
test_match(const char *net, const char *addr)
{
	struct sockaddr_storage ss;
	struct cidr c;

	assert_int_equal(cidr_parse(net, &c), 0);
	return cidr_match(&c, test_sa(&ss, addr));
}

static void
test_cidr_parse_ok(void **state)
{
	struct cidr c;
	uint8_t want[16];

	(void)state;
	assert_int_equal(cidr_parse("127.0.0.0/8", &c), 0);
	assert_int_equal(c.family, AF_INET);
	assert_int_equal(c.prefix, 8);
	assert_int_equal(inet_pton(AF_INET, "127.0.0.0", want), 1);
	assert_memory_equal(c.addr, want, 4);

	/* Host bits are cleared. */
	assert_int_equal(cidr_parse("10.1.2.3/8", &c), 0);
	assert_int_equal(inet_pton(AF_INET, "10.0.0.0", want), 1);
	assert_memory_equal(c.addr, want, 4);
	assert_int_equal(cidr_parse("192.168.255.255/23", &c), 0);
	assert_int_equal(inet_pton(AF_INET, "192.168.254.0", want), 1);
	assert_memory_equal(c.addr, want, 4);
	assert_int_equal(cidr_parse("10.1.2.3/0", &c), 0);
	assert_int_equal(c.prefix, 0);
	assert_int_equal(inet_pton(AF_INET, "0.0.0.0", want), 1);
	assert_memory_equal(c.addr, want, 4);

	/* No prefix: a single host. */
	assert_int_equal(cidr_parse("10.1.2.3", &c), 0);
	assert_int_equal(c.prefix, 32);
	assert_int_equal(cidr_parse("::1", &c), 0);
	assert_int_equal(c.family, AF_INET6);
	assert_int_equal(c.prefix, 128);

	assert_int_equal(cidr_parse("fe80::1234/10", &c), 0);
	assert_int_equal(c.prefix, 10);
	assert_int_equal(inet_pton(AF_INET6, "fe80::", want), 1);
	assert_memory_equal(c.addr, want, 16);
	assert_int_equal(cidr_parse("2001:db8:ffff::1/33", &c), 0);
	assert_int_equal(inet_pton(AF_INET6, "2001:db8:8000::", want), 1);
	assert_memory_equal(c.addr, want, 16);
	assert_int_equal(cidr_parse("::/0", &c), 0);
	assert_int_equal(cidr_parse("::ffff:10.0.0.0/104", &c), 0);
	assert_int_equal(c.family, AF_INET6);
	assert_int_equal(cidr_parse("255.255.255.255/32", &c), 0);
	assert_int_equal(
	    cidr_parse("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128", &c), 0);
}

static void
test_cidr_parse_bad(void **state)
{
	static const char *const bad[] = { "", "/8", "1.2.3.4/", "1.2.3.4/33",
		"::1/129", "1.2.3.4/-1", "1.2.3.4/+8", "1.2.3.4/ 8",
		"1.2.3.4/8 ", " 1.2.3.4", "1.2.3", "256.0.0.1", "1.2.3.4/0008",
		"01.2.3.4", "abc", "1.2.3.4/8/8", "::1/1a",
		":::", "1.2.3.4/1000", "localhost", "1.2.3.4:25", "[::1]",
		"::1/", "1.2.3.4.5", "fe80::1%eth0",
		"0000:0000:0000:0000:0000:0000:0000:0000:0000:0000/8" };
	struct cidr c, before;
	size_t i;

	(void)state;
	memset(&before, 0x5a, sizeof(before));
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		c = before;
		assert_int_equal(cidr_parse(bad[i], &c), -EINVAL);
		/* A failed parse leaves *out alone. */
		assert_memory_equal(&c, &before, sizeof(c));
	}
	assert_int_equal(cidr_parse(NULL, &c), -EINVAL);
}

/* Parses each prefix of a network from an exact-size heap copy. */
static void
test_cidr_parse_cut(void **state)
{
	static const char *const full[] = { "192.168.100.0/24",
		"2001:db8::ffff:1/64", "::ffff:127.0.0.1/104" };
	size_t i, n;

	(void)state;
	for (i = 0; i < sizeof(full) / sizeof(full[0]); i++) {
		for (n = 0; n <= strlen(full[i]); n++) {
			char *copy = malloc(n + 1);
			struct cidr c;
			int rc;

			assert_non_null(copy);
			memcpy(copy, full[i], n);
			copy[n] = '\0';
			rc = cidr_parse(copy, &c);
			assert_true(rc == 0 || rc == -EINVAL);
			/* Ends in '/': never valid. */
			if (n > 0 && copy[n - 1] == '/')
				assert_int_equal(rc, -EINVAL);
			if (n == strlen(full[i]))
				assert_int_equal(rc, 0);
			free(copy);
		}
	}
}

static void
test_cidr_match_v4(void **state)
{
	(void)state;
	assert_true(test_match("127.0.0.0/8", "127.0.0.1"));
	assert_true(test_match("127.0.0.0/8", "127.255.255.255"));
	assert_false(test_match("127.0.0.0/8", "128.0.0.1"));
	assert_false(test_match("127.0.0.0/8", "126.255.255.255"));
	assert_true(test_match("10.0.0.0/9", "10.127.0.1"));
	assert_false(test_match("10.0.0.0/9", "10.128.0.1"));
	assert_true(test_match("192.168.254.0/23", "192.168.255.1"));
	assert_false(test_match("192.168.254.0/23", "192.168.253.1"));
	assert_true(test_match("10.1.2.3", "10.1.2.3"));
	assert_false(test_match("10.1.2.3", "10.1.2.4"));
	assert_true(test_match("10.1.2.2/31", "10.1.2.3"));
	assert_false(test_match("10.1.2.2/31", "10.1.2.4"));
	assert_true(test_match("0.0.0.0/0", "203.0.113.9"));
	/* An IPv4 network never matches a real IPv6 client. */
	assert_false(test_match("0.0.0.0/0", "::1"));
	assert_false(test_match("0.0.0.0/0", "2001:db8::1"));
}

static void
test_cidr_match_v6(void **state)
{
	(void)state;
	assert_true(test_match("::1", "::1"));
	assert_false(test_match("::1", "::2"));
	assert_true(test_match("fe80::/10", "fe80::1"));
	assert_true(test_match("fe80::/10", "febf:ffff::1"));
	assert_false(test_match("fe80::/10", "fec0::1"));
	assert_true(test_match("2001:db8::/32", "2001:db8:1234::5"));
	assert_false(test_match("2001:db8::/32", "2001:db9::5"));
	assert_true(test_match("2001:db8:8000::/33", "2001:db8:ffff::1"));
	assert_false(test_match("2001:db8:8000::/33", "2001:db8:7fff::1"));
	assert_true(test_match("::/0", "2001:db8::1"));
}

static void
test_cidr_match_mapped(void **state)
{
	(void)state;
	/* A mapped client matches IPv4 networks. */
	assert_true(test_match("127.0.0.0/8", "::ffff:127.0.0.1"));
	assert_true(test_match("10.0.0.0/8", "::ffff:10.9.8.7"));
	assert_false(test_match("10.0.0.0/8", "::ffff:11.9.8.7"));
	assert_true(test_match("10.9.8.7", "::ffff:10.9.8.7"));
	/* ... but only mapped ones, not IPv4-compatible or others. */
	assert_false(test_match("127.0.0.0/8", "::127.0.0.1"));
	assert_false(test_match("127.0.0.0/8", "64:ff9b::127.0.0.1"));
	/* An IPv4 client matches a network written in mapped form. */
	assert_true(test_match("::ffff:10.0.0.0/104", "10.1.1.1"));
	assert_false(test_match("::ffff:10.0.0.0/104", "11.1.1.1"));
	assert_true(test_match("::ffff:10.0.0.0/104", "::ffff:10.1.1.1"));
	/* ::/0 holds every mapped address, so IPv4 clients too. */
	assert_true(test_match("::/0", "192.0.2.1"));
	/* ::1 is not 127.0.0.1. */
	assert_false(test_match("::1", "127.0.0.1"));
	assert_false(test_match("127.0.0.0/8", "::1"));
}

static void
test_cidr_match_odd(void **state)
{
	struct sockaddr_un sun;
	struct sockaddr_storage ss;
	struct cidr c;
	struct cidr list[3];

	(void)state;
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	assert_int_equal(cidr_parse("0.0.0.0/0", &c), 0);
	assert_false(cidr_match(&c, (const struct sockaddr *)&sun));
	assert_false(cidr_match(&c, NULL));
	assert_false(cidr_match(NULL, test_sa(&ss, "1.2.3.4")));
	assert_false(cidr_is_loopback((const struct sockaddr *)&sun));
	assert_false(cidr_is_loopback(NULL));

	assert_int_equal(cidr_parse("127.0.0.0/8", &list[0]), 0);
	assert_int_equal(cidr_parse("::1", &list[1]), 0);
	assert_int_equal(cidr_parse("10.0.0.0/8", &list[2]), 0);
	assert_true(cidr_match_any(list, 3, test_sa(&ss, "10.1.1.1")));
	assert_true(cidr_match_any(list, 3, test_sa(&ss, "::1")));
	assert_true(cidr_match_any(list, 3, test_sa(&ss, "::ffff:127.0.0.2")));
	assert_false(cidr_match_any(list, 3, test_sa(&ss, "192.0.2.1")));
	assert_false(cidr_match_any(list, 3, test_sa(&ss, "::2")));
	assert_false(cidr_match_any(list, 2, test_sa(&ss, "10.1.1.1")));
	assert_false(cidr_match_any(list, 0, test_sa(&ss, "127.0.0.1")));
}

static void
test_cidr_loopback(void **state)
{
	struct sockaddr_storage ss;

	(void)state;
	assert_true(cidr_is_loopback(test_sa(&ss, "127.0.0.1")));
	assert_true(cidr_is_loopback(test_sa(&ss, "127.255.255.254")));
	assert_true(cidr_is_loopback(test_sa(&ss, "::1")));
	assert_true(cidr_is_loopback(test_sa(&ss, "::ffff:127.0.0.1")));
	assert_true(cidr_is_loopback(test_sa(&ss, "::ffff:127.1.2.3")));
	assert_false(cidr_is_loopback(test_sa(&ss, "128.0.0.1")));
	assert_false(cidr_is_loopback(test_sa(&ss, "10.0.0.1")));
	assert_false(cidr_is_loopback(test_sa(&ss, "::2")));
	assert_false(cidr_is_loopback(test_sa(&ss, "::")));
	assert_false(cidr_is_loopback(test_sa(&ss, "::ffff:10.0.0.1")));
	assert_false(cidr_is_loopback(test_sa(&ss, "::127.0.0.1")));
}

static void
test_cidr_format(void **state)
{
	struct sockaddr_storage ss;
	char buf[INET6_ADDRSTRLEN];
	char small[4];
	struct sockaddr_un sun;

	(void)state;
	assert_string_equal(
	    cidr_format_addr(test_sa(&ss, "192.0.2.1"), buf, sizeof(buf)),
	    "192.0.2.1");
	assert_string_equal(
	    cidr_format_addr(test_sa(&ss, "2001:db8::1"), buf, sizeof(buf)),
	    "2001:db8::1");
	assert_string_equal(cidr_format_addr(test_sa(&ss, "::ffff:192.0.2.1"),
				buf, sizeof(buf)),
	    "192.0.2.1");
	assert_string_equal(
	    cidr_format_addr(test_sa(&ss, "::1"), buf, sizeof(buf)), "::1");
	/* Too small a buffer gives "", never a cut address. */
	assert_string_equal(
	    cidr_format_addr(test_sa(&ss, "192.0.2.1"), small, sizeof(small)),
	    "");
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	assert_string_equal(
	    cidr_format_addr((const struct sockaddr *)&sun, buf, sizeof(buf)),
	    "");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cidr_parse_ok),
		cmocka_unit_test(test_cidr_parse_bad),
		cmocka_unit_test(test_cidr_parse_cut),
		cmocka_unit_test(test_cidr_match_v4),
		cmocka_unit_test(test_cidr_match_v6),
		cmocka_unit_test(test_cidr_match_mapped),
		cmocka_unit_test(test_cidr_match_odd),
		cmocka_unit_test(test_cidr_loopback),
		cmocka_unit_test(test_cidr_format),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
