/*
 * cidr: networks for the [relay] allow list: "127.0.0.0/8", "::1",
 * "10.1.2.3", "fe80::/10".  An IPv4 client that arrives as an IPv4-mapped
 * IPv6 address (::ffff:a.b.c.d) matches IPv4 networks.  Pure; any thread.
 */
#ifndef REDRIVE_CIDR_H
#define REDRIVE_CIDR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct cidr {
	int family;	  /* AF_INET or AF_INET6 */
	uint8_t addr[16]; /* network, host bits cleared */
	unsigned prefix;  /* 0..32 or 0..128 */
};

/* Parses one network; returns 0 or -EINVAL. */
int cidr_parse(const char *s, struct cidr *out);

/* True when sa (AF_INET or AF_INET6) lies in c. */
bool cidr_match(const struct cidr *c, const struct sockaddr *sa);

/* True when sa lies in any of the n networks. */
bool cidr_match_any(
    const struct cidr *list, size_t n, const struct sockaddr *sa);

/* True when sa is a loopback address (127/8, ::1, ::ffff:127.0.0.0/104). */
bool cidr_is_loopback(const struct sockaddr *sa);

/*
 * Formats sa's address (no port) into buf (INET6_ADDRSTRLEN bytes at
 * least); IPv4-mapped addresses print as IPv4.  Returns buf.
 */
char *cidr_format_addr(const struct sockaddr *sa, char *buf, size_t buflen);

#endif
