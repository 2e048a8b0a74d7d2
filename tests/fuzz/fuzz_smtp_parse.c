/*
 * fuzz_smtp_parse: libFuzzer target for the SMTP command parser
 * (relay/smtp_parse.c).  The input is a stream of command lines as a
 * client would send them.  smtp_parse_line() splits it; every line goes to
 * smtp_parse_command() and its argument, copied into a buffer of exactly
 * its size (so ASan sees any read past it), to smtp_parse_mail(),
 * smtp_parse_rcpt() (with and without SMTPUTF8) and smtp_parse_helo().
 *
 * Asserted beyond "no crash":
 * - a line ends at the first LF, its length excludes CR LF / LF, and no
 *   line end is reported when the buffer holds no LF;
 * - smtp_parse_command() returns SMTP_PARSE_NUL exactly when the line holds
 *   a NUL, and a non-empty argument lies inside the line;
 * - every result is one of enum smtp_parse_result;
 * - an accepted address is a C string shorter than its buffer and at most
 *   SMTP_PATH_MAX bytes, with no control byte, ASCII only unless SMTPUTF8;
 * - the result does not depend on the buffer size once the address fits:
 *   a buffer of exactly strlen + 1 gives the same address, one byte less
 *   gives SMTP_PARSE_TOO_LONG.
 */
/* The assertions are the point: never compiled out. */
#undef NDEBUG
#include <assert.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "redrive/smtp_parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* True when r is one of enum smtp_parse_result. */
static bool
fuzz_smtp_result_ok(int r)
{
	return r == SMTP_PARSE_OK || r == SMTP_PARSE_SYNTAX ||
	    r == SMTP_PARSE_PARAM || r == SMTP_PARSE_TOO_LONG ||
	    r == SMTP_PARSE_NUL;
}

/* Checks an accepted address: length, control bytes, ASCII unless utf8. */
static void
fuzz_smtp_check_addr(const char *addr, size_t addrlen, bool utf8)
{
	size_t i, n = strnlen(addr, addrlen);

	assert(n < addrlen);
	assert(n <= SMTP_PATH_MAX);
	for (i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)addr[i];

		assert(ch >= 0x20 && ch != 0x7f);
		assert(utf8 || ch < 0x80);
	}
}

/*
 * Parses arg as MAIL (kind 0) or RCPT (kind 1, 2: with SMTPUTF8) into a
 * buffer of addrlen bytes; returns the result and fills addr.
 */
static int
fuzz_smtp_path(int kind, const char *arg, size_t arglen, char *addr,
    size_t addrlen, bool *utf8)
{
	struct smtp_mail_params mp;
	int r;

	if (kind == 0) {
		memset(&mp, 0xa5, sizeof(mp));
		r = smtp_parse_mail(arg, arglen, addr, addrlen, &mp);
		*utf8 = r == SMTP_PARSE_OK && mp.smtputf8;
		return r;
	}
	*utf8 = kind == 2;
	return smtp_parse_rcpt(arg, arglen, kind == 2, addr, addrlen);
}

/* Runs the path parsers on one argument and checks the buffer invariant. */
static void
fuzz_smtp_args(const char *arg, size_t arglen)
{
	char big[SMTP_PATH_MAX + 1];
	int kind;

	for (kind = 0; kind < 3; kind++) {
		char *small;
		size_t n;
		bool utf8, utf8b;
		int r, r2;

		r = fuzz_smtp_path(kind, arg, arglen, big, sizeof(big), &utf8);
		assert(fuzz_smtp_result_ok(r));
		if (r != SMTP_PARSE_OK)
			continue;
		fuzz_smtp_check_addr(big, sizeof(big), utf8);
		n = strlen(big);
		small = malloc(n + 1);
		assert(small != NULL);
		r2 = fuzz_smtp_path(kind, arg, arglen, small, n + 1, &utf8b);
		assert(r2 == SMTP_PARSE_OK && utf8b == utf8);
		assert(strcmp(small, big) == 0);
		r2 = fuzz_smtp_path(kind, arg, arglen, small, n, &utf8b);
		assert(r2 == SMTP_PARSE_TOO_LONG);
		free(small);
	}
	assert(fuzz_smtp_result_ok(smtp_parse_helo(arg, arglen)));
}

/* Parses one command line (no line end) held in its own buffer. */
static void
fuzz_smtp_line(const char *line, size_t len)
{
	struct smtp_command cmd;
	char *arg;
	int r;

	memset(&cmd, 0, sizeof(cmd));
	r = smtp_parse_command(line, len, &cmd);
	assert(r == SMTP_PARSE_OK || r == SMTP_PARSE_NUL);
	assert((r == SMTP_PARSE_NUL) == (memchr(line, '\0', len) != NULL));
	if (r != SMTP_PARSE_OK)
		return;
	assert(cmd.verb >= SMTP_VERB_UNKNOWN && cmd.verb <= SMTP_VERB_BDAT);
	/* An empty argument may point anywhere (a static ""). */
	assert(cmd.arg != NULL);
	if (cmd.arglen > 0) {
		assert(cmd.arg >= line && cmd.arg <= line + len);
		assert(cmd.arglen <= (size_t)(line + len - cmd.arg));
	}
	/* The argument alone, in a buffer of its exact size. */
	arg = malloc(cmd.arglen > 0 ? cmd.arglen : 1);
	assert(arg != NULL);
	if (cmd.arglen > 0)
		memcpy(arg, cmd.arg, cmd.arglen);
	fuzz_smtp_args(arg, cmd.arglen);
	free(arg);
}

/* Splits the input into lines and parses each, then the rest as a line. */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *p = (const char *)data;
	size_t n = size;

	for (;;) {
		size_t linelen = (size_t)-1, used;
		const char *lf;
		char *line;

		used = smtp_parse_line(p, n, &linelen);
		lf = memchr(p, '\n', n);
		if (used == 0) {
			assert(lf == NULL);
			break;
		}
		assert(lf != NULL && used == (size_t)(lf - p) + 1);
		assert(used <= n && linelen < used);
		assert(linelen == used - 1 ||
		    (linelen == used - 2 && p[linelen] == '\r'));
		line = malloc(linelen > 0 ? linelen : 1);
		assert(line != NULL);
		memcpy(line, p, linelen);
		fuzz_smtp_line(line, linelen);
		free(line);
		p += used;
		n -= used;
	}
	if (n > 0 && n <= SMTP_LINE_MAX * 2) {
		char *rest = malloc(n);

		assert(rest != NULL);
		memcpy(rest, p, n);
		fuzz_smtp_line(rest, n);
		free(rest);
	}
	return 0;
}
