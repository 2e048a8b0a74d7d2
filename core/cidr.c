/*
 * cidr: the networks of the relay's allow list (cidr.h).
 *
 * A network is an address family, 16 bytes of address with the host bits
 * cleared, and a prefix length (RFC 4632 for IPv4, RFC 4291 section 2.3
 * for IPv6).  Addresses are parsed by inet_pton(3) only.  A client that
 * reaches a dual-stack socket as an IPv4-mapped IPv6 address
 * (::ffff:a.b.c.d, RFC 4291 section 2.5.5.2) is compared as the IPv4
 * address it is; conversely an IPv4 client matches IPv6 networks as its
 * mapped form, so "::ffff:10.0.0.0/104" and "10.0.0.0/8" mean the same.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "redrive/cidr.h"

static const uint8_t cidr_mapped_prefix[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	0xff, 0xff };

/* Clears every bit of addr past the first prefix bits. */
static void
cidr_clear_host(uint8_t *addr, size_t alen, unsigned prefix)
{
	size_t i;

	for (i = 0; i < alen; i++) {
		unsigned first = (unsigned)i * 8;

		if (first >= prefix)
			addr[i] = 0;
		else if (prefix - first < 8)
			addr[i] &= (uint8_t)(0xff << (8 - (prefix - first)));
	}
}

/* True when the first prefix bits of a and b are equal. */
static bool
cidr_prefix_eq(const uint8_t *a, const uint8_t *b, unsigned prefix)
{
	unsigned full = prefix / 8;
	unsigned rest = prefix % 8;
	uint8_t mask;

	if (memcmp(a, b, full) != 0)
		return false;
	if (rest == 0)
		return true;
	mask = (uint8_t)(0xff << (8 - rest));
	return (a[full] & mask) == (b[full] & mask);
}

/*
 * "addr" or "addr/prefix": IPv6 when the address holds a ':'.  The prefix
 * is 1 to 3 decimal digits within the family's length; no sign, no
 * spaces.
 */
int
cidr_parse(const char *s, struct cidr *out)
{
	char buf[INET6_ADDRSTRLEN + 1];
	const char *slash;
	size_t alen;
	unsigned maxp, prefix;
	struct cidr c;

	if (s == NULL)
		return -EINVAL;
	slash = strchr(s, '/');
	alen = slash != NULL ? (size_t)(slash - s) : strlen(s);
	if (alen == 0 || alen >= sizeof(buf))
		return -EINVAL;
	memcpy(buf, s, alen);
	buf[alen] = '\0';
	memset(&c, 0, sizeof(c));
	if (memchr(buf, ':', alen) != NULL) {
		c.family = AF_INET6;
		maxp = 128;
	} else {
		c.family = AF_INET;
		maxp = 32;
	}
	if (inet_pton(c.family, buf, c.addr) != 1)
		return -EINVAL;
	prefix = maxp;
	if (slash != NULL) {
		const char *p = slash + 1;
		size_t nd = 0;

		prefix = 0;
		while (p[nd] >= '0' && p[nd] <= '9') {
			if (nd == 3)
				return -EINVAL;
			prefix = prefix * 10 + (unsigned)(p[nd] - '0');
			nd++;
		}
		if (nd == 0 || p[nd] != '\0' || prefix > maxp)
			return -EINVAL;
	}
	c.prefix = prefix;
	cidr_clear_host(c.addr, c.family == AF_INET ? 4 : 16, prefix);
	*out = c;
	return 0;
}

/*
 * Reduces sa to a family and 16 address bytes: IPv4 addresses as their 4
 * bytes (v4) and as their mapped IPv6 form (v6); IPv4-mapped IPv6
 * addresses likewise.  Returns false for other families.
 */
static bool
cidr_addr_of(
    const struct sockaddr *sa, bool *is_v4, uint8_t v4[4], uint8_t v6[16])
{
	if (sa == NULL)
		return false;
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;

		memcpy(v4, &sin->sin_addr, 4);
		memcpy(v6, cidr_mapped_prefix, 12);
		memcpy(v6 + 12, v4, 4);
		*is_v4 = true;
		return true;
	}
	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 =
		    (const struct sockaddr_in6 *)sa;

		memcpy(v6, &sin6->sin6_addr, 16);
		*is_v4 = memcmp(v6, cidr_mapped_prefix, 12) == 0;
		if (*is_v4)
			memcpy(v4, v6 + 12, 4);
		return true;
	}
	return false;
}

bool
cidr_match(const struct cidr *c, const struct sockaddr *sa)
{
	uint8_t v4[4], v6[16];
	bool is_v4 = false;

	if (c == NULL || !cidr_addr_of(sa, &is_v4, v4, v6))
		return false;
	if (c->family == AF_INET)
		return is_v4 && c->prefix <= 32 &&
		    cidr_prefix_eq(c->addr, v4, c->prefix);
	if (c->family == AF_INET6)
		return c->prefix <= 128 &&
		    cidr_prefix_eq(c->addr, v6, c->prefix);
	return false;
}

bool
cidr_match_any(const struct cidr *list, size_t n, const struct sockaddr *sa)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (cidr_match(&list[i], sa))
			return true;
	return false;
}

bool
cidr_is_loopback(const struct sockaddr *sa)
{
	static const uint8_t v6_loopback[16] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
		0, 0, 0, 0, 0, 1 };
	uint8_t v4[4], v6[16];
	bool is_v4 = false;

	if (!cidr_addr_of(sa, &is_v4, v4, v6))
		return false;
	if (is_v4)
		return v4[0] == 127;
	return memcmp(v6, v6_loopback, 16) == 0;
}

/* inet_ntop(3), with IPv4-mapped addresses shown as IPv4. */
char *
cidr_format_addr(const struct sockaddr *sa, char *buf, size_t buflen)
{
	uint8_t v4[4], v6[16];
	bool is_v4 = false;
	const char *r = NULL;

	if (buflen == 0)
		return buf;
	if (cidr_addr_of(sa, &is_v4, v4, v6)) {
		if (is_v4)
			r = inet_ntop(AF_INET, v4, buf, (socklen_t)buflen);
		else
			r = inet_ntop(AF_INET6, v6, buf, (socklen_t)buflen);
	}
	if (r == NULL)
		buf[0] = '\0';
	return buf;
}
