/*
 * Unit tests of smtp_parse (relay/smtp_parse.c): command lines, MAIL and
 * RCPT paths and parameters, HELO/EHLO arguments and line framing.  Every
 * input is copied into a heap buffer of exactly its length first, so that
 * ASan catches any read past the length the parser was given; inputs are
 * also cut at every position, and random bytes are thrown at each parser.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "redrive/smtp_parse.h"

/* The length of a string literal, embedded NULs included. */
#define LIT(s) (s), (sizeof(s) - 1)

/*
 * Copies raw bytes (test inputs are byte strings, not C strings: nothing
 * here is NUL-terminated on purpose).
 */
static void
put_bytes(char *dst, const void *src, size_t n)
{
	memcpy(dst, src, n);
}

/* A heap copy of s[0..n) with no byte to spare (NULL-safe for n == 0). */
static char *
dup_exact(const char *s, size_t n)
{
	char *p = malloc(n > 0 ? n : 1);

	assert_non_null(p);
	if (n > 0)
		memcpy(p, s, n);
	return p;
}

static int
cmd(const char *s, size_t n, struct smtp_command *c, char *argout,
    size_t argoutlen)
{
	char *p = dup_exact(s, n);
	int rc = smtp_parse_command(p, n, c);

	assert_true(c->arglen < argoutlen);
	memcpy(argout, c->arg, c->arglen);
	argout[c->arglen] = '\0';
	if (c->arglen > 0)
		assert_true(c->arg >= p && c->arg + c->arglen <= p + n);
	free(p);
	return rc;
}

static int
mail(const char *s, size_t n, char *addr, struct smtp_mail_params *prm)
{
	char *p = dup_exact(s, n);
	int rc = smtp_parse_mail(p, n, addr, SMTP_PATH_MAX + 1, prm);

	free(p);
	return rc;
}

static int
rcpt(const char *s, size_t n, bool utf8, char *addr)
{
	char *p = dup_exact(s, n);
	int rc = smtp_parse_rcpt(p, n, utf8, addr, SMTP_PATH_MAX + 1);

	free(p);
	return rc;
}

static int
helo(const char *s, size_t n)
{
	char *p = dup_exact(s, n);
	int rc = smtp_parse_helo(p, n);

	free(p);
	return rc;
}

/* MAIL on a NUL-terminated argument; the address must come back. */
static void
mail_ok(const char *arg, const char *want)
{
	char addr[SMTP_PATH_MAX + 1];
	struct smtp_mail_params prm;

	assert_int_equal(mail(arg, strlen(arg), addr, &prm), SMTP_PARSE_OK);
	assert_string_equal(addr, want);
}

static int
mail_rc(const char *arg)
{
	char addr[SMTP_PATH_MAX + 1];
	struct smtp_mail_params prm;

	return mail(arg, strlen(arg), addr, &prm);
}

static void
rcpt_ok(const char *arg, bool utf8, const char *want)
{
	char addr[SMTP_PATH_MAX + 1];

	assert_int_equal(rcpt(arg, strlen(arg), utf8, addr), SMTP_PARSE_OK);
	assert_string_equal(addr, want);
}

static int
rcpt_rc(const char *arg, bool utf8)
{
	char addr[SMTP_PATH_MAX + 1];

	return rcpt(arg, strlen(arg), utf8, addr);
}

/* A string of n copies of c. */
static char *
rep(char c, size_t n)
{
	char *s = malloc(n + 1);

	assert_non_null(s);
	memset(s, c, n);
	s[n] = '\0';
	return s;
}

/* ---- smtp_parse_command ------------------------------------------------ */

static void
test_command_every_verb(void **state)
{
	static const struct {
		const char *name;
		enum smtp_verb verb;
	} verbs[] = {
		{ "HELO", SMTP_VERB_HELO },
		{ "EHLO", SMTP_VERB_EHLO },
		{ "MAIL", SMTP_VERB_MAIL },
		{ "RCPT", SMTP_VERB_RCPT },
		{ "DATA", SMTP_VERB_DATA },
		{ "RSET", SMTP_VERB_RSET },
		{ "NOOP", SMTP_VERB_NOOP },
		{ "QUIT", SMTP_VERB_QUIT },
		{ "VRFY", SMTP_VERB_VRFY },
		{ "EXPN", SMTP_VERB_EXPN },
		{ "HELP", SMTP_VERB_HELP },
		{ "STARTTLS", SMTP_VERB_STARTTLS },
		{ "AUTH", SMTP_VERB_AUTH },
		{ "BDAT", SMTP_VERB_BDAT },
	};
	struct smtp_command c;
	char line[64], arg[64];
	size_t i, j, n;

	(void)state;
	for (i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++) {
		/* Upper case, alone. */
		n = strlen(verbs[i].name);
		assert_int_equal(
		    cmd(verbs[i].name, n, &c, arg, sizeof(arg)), SMTP_PARSE_OK);
		assert_int_equal(c.verb, verbs[i].verb);
		assert_int_equal(c.arglen, 0);

		/* Lower case, with an argument. */
		for (j = 0; j < n; j++)
			line[j] = (char)(verbs[i].name[j] | 0x20);
		put_bytes(line + j, " x y", 4);
		assert_int_equal(
		    cmd(line, n + 4, &c, arg, sizeof(arg)), SMTP_PARSE_OK);
		assert_int_equal(c.verb, verbs[i].verb);
		assert_string_equal(arg, "x y");

		/* The verb with one letter missing is no verb. */
		assert_int_equal(
		    cmd(verbs[i].name, n - 1, &c, arg, sizeof(arg)),
		    SMTP_PARSE_OK);
		assert_int_equal(c.verb, SMTP_VERB_UNKNOWN);
	}
}

static void
test_command_forms(void **state)
{
	struct smtp_command c;
	char arg[128];

	(void)state;
	assert_int_equal(
	    cmd(LIT("mAiL FROM:<a@b> SIZE=1"), &c, arg, sizeof(arg)),
	    SMTP_PARSE_OK);
	assert_int_equal(c.verb, SMTP_VERB_MAIL);
	assert_string_equal(arg, "FROM:<a@b> SIZE=1");

	/* Several spaces after the verb, trailing spaces and tabs. */
	assert_int_equal(
	    cmd(LIT("EHLO    host.example   \t "), &c, arg, sizeof(arg)),
	    SMTP_PARSE_OK);
	assert_int_equal(c.verb, SMTP_VERB_EHLO);
	assert_string_equal(arg, "host.example");

	assert_int_equal(
	    cmd(LIT("QUIT   "), &c, arg, sizeof(arg)), SMTP_PARSE_OK);
	assert_int_equal(c.verb, SMTP_VERB_QUIT);
	assert_int_equal(c.arglen, 0);

	assert_int_equal(cmd(LIT("AUTH PLAIN AGEAYg=="), &c, arg, sizeof(arg)),
	    SMTP_PARSE_OK);
	assert_int_equal(c.verb, SMTP_VERB_AUTH);
	assert_string_equal(arg, "PLAIN AGEAYg==");

	/* Not verbs. */
	assert_int_equal(
	    cmd(LIT("MAILX FROM:<a@b>"), &c, arg, sizeof(arg)), SMTP_PARSE_OK);
	assert_int_equal(c.verb, SMTP_VERB_UNKNOWN);
	assert_int_equal(
	    cmd(LIT("MAIL\tFROM:<a@b>"), &c, arg, sizeof(arg)), SMTP_PARSE_OK);
	assert_int_equal(c.verb, SMTP_VERB_UNKNOWN);
	assert_int_equal(
	    cmd(LIT(" MAIL FROM:<a@b>"), &c, arg, sizeof(arg)), SMTP_PARSE_OK);
	assert_int_equal(c.verb, SMTP_VERB_UNKNOWN);
	assert_int_equal(
	    cmd(LIT("GET / HTTP/1.1"), &c, arg, sizeof(arg)), SMTP_PARSE_OK);
	assert_int_equal(c.verb, SMTP_VERB_UNKNOWN);
	assert_string_equal(arg, "/ HTTP/1.1");
	assert_int_equal(cmd("", 0, &c, arg, sizeof(arg)), SMTP_PARSE_OK);
	assert_int_equal(c.verb, SMTP_VERB_UNKNOWN);
	assert_int_equal(c.arglen, 0);
	assert_int_equal(
	    cmd(LIT("\xc3\xa9HLO x"), &c, arg, sizeof(arg)), SMTP_PARSE_OK);
	assert_int_equal(c.verb, SMTP_VERB_UNKNOWN);
}

static void
test_command_nul(void **state)
{
	struct smtp_command c;
	char arg[64];

	(void)state;
	assert_int_equal(
	    cmd(LIT("NOOP\0"), &c, arg, sizeof(arg)), SMTP_PARSE_NUL);
	assert_int_equal(cmd(LIT("MAIL FROM:<a\0@b>"), &c, arg, sizeof(arg)),
	    SMTP_PARSE_NUL);
	assert_int_equal(cmd(LIT("\0"), &c, arg, sizeof(arg)), SMTP_PARSE_NUL);
	/* Other control bytes are for the argument parsers. */
	assert_int_equal(
	    cmd(LIT("NOOP \x01"), &c, arg, sizeof(arg)), SMTP_PARSE_OK);
	assert_int_equal(c.verb, SMTP_VERB_NOOP);
}

/* ---- smtp_parse_line --------------------------------------------------- */

static void
test_line(void **state)
{
	size_t ll = 99;
	char *p;

	(void)state;
	p = dup_exact(LIT("NOOP\r\nQUIT\r\n"));
	assert_int_equal(smtp_parse_line(p, 12, &ll), 6);
	assert_int_equal(ll, 4);
	assert_int_equal(smtp_parse_line(p + 6, 6, &ll), 6);
	assert_int_equal(ll, 4);
	free(p);

	p = dup_exact(LIT("NOOP\nX"));
	assert_int_equal(smtp_parse_line(p, 6, &ll), 5);
	assert_int_equal(ll, 4);
	free(p);

	p = dup_exact(LIT("\r\n"));
	assert_int_equal(smtp_parse_line(p, 2, &ll), 2);
	assert_int_equal(ll, 0);
	free(p);

	p = dup_exact(LIT("\n"));
	assert_int_equal(smtp_parse_line(p, 1, &ll), 1);
	assert_int_equal(ll, 0);
	free(p);

	/* A bare CR is no line end; CR CR LF keeps one CR in the line. */
	p = dup_exact(LIT("NO\rOP"));
	assert_int_equal(smtp_parse_line(p, 5, &ll), 0);
	free(p);
	p = dup_exact(LIT("NOOP\r\r\n"));
	assert_int_equal(smtp_parse_line(p, 7, &ll), 7);
	assert_int_equal(ll, 5);
	free(p);

	assert_int_equal(smtp_parse_line(NULL, 0, &ll), 0);
	assert_int_equal(ll, 0);
}

/* Every prefix of a buffer: no line until the LF, then the first line. */
static void
test_line_every_cut(void **state)
{
	static const char in[] = "MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n";
	size_t n = sizeof(in) - 1, k, ll, r;
	char *p;

	(void)state;
	for (k = 0; k <= n; k++) {
		p = dup_exact(in, k);
		r = smtp_parse_line(p, k, &ll);
		if (k < 17) {
			assert_int_equal(r, 0);
		} else {
			assert_int_equal(r, 17);
			assert_int_equal(ll, 15);
		}
		free(p);
	}
}

/* ---- smtp_parse_mail --------------------------------------------------- */

static void
test_mail_basic(void **state)
{
	char addr[SMTP_PATH_MAX + 1];
	struct smtp_mail_params prm;

	(void)state;
	mail_ok("FROM:<alice@example.com>", "alice@example.com");
	mail_ok("from:<Alice@Example.COM>", "Alice@Example.COM");
	mail_ok("FrOm:<a@b>", "a@b");
	mail_ok("FROM: <a@b>", "a@b");	 /* one space after the colon */
	mail_ok("FROM:<a@b>   ", "a@b"); /* trailing spaces */
	mail_ok("FROM:<a.b+tag@sub.example.org>", "a.b+tag@sub.example.org");
	mail_ok("FROM:<!#$%&'*+-/=?^_`{|}~@x>", "!#$%&'*+-/=?^_`{|}~@x");
	mail_ok("FROM:<a@my_host.example>", "a@my_host.example");
	mail_ok("FROM:<a..b.@example.com>", "a..b.@example.com");
	mail_ok("FROM:<a@[127.0.0.1]>", "a@[127.0.0.1]");
	mail_ok("FROM:<a@[IPv6:2001:db8::1]>", "a@[IPv6:2001:db8::1]");
	mail_ok("FROM:<a@xn--bcher-kva.example>", "a@xn--bcher-kva.example");
	mail_ok("FROM:<a@1-2.3>", "a@1-2.3");

	/* The params come back zeroed when there are none. */
	memset(&prm, 0xff, sizeof(prm));
	assert_int_equal(mail(LIT("FROM:<a@b>"), addr, &prm), SMTP_PARSE_OK);
	assert_false(prm.has_size);
	assert_false(prm.body_8bit);
	assert_false(prm.smtputf8);
}

static void
test_mail_null_path_and_route(void **state)
{
	(void)state;
	mail_ok("FROM:<>", "");
	mail_ok("FROM: <>", "");
	mail_ok("FROM:<> SIZE=10", "");
	mail_ok("FROM:<@relay.example:a@b>", "a@b");
	mail_ok("FROM:<@r1.example,@r2.example:user@host.example>",
	    "user@host.example");
	assert_int_equal(
	    mail_rc("FROM:<@r1.example,user@host>"), SMTP_PARSE_SYNTAX);
	assert_int_equal(mail_rc("FROM:<@:a@b>"), SMTP_PARSE_SYNTAX);
	assert_int_equal(mail_rc("FROM:<@r1,:a@b>"), SMTP_PARSE_SYNTAX);
	assert_int_equal(mail_rc("FROM:<@r1;a@b>"), SMTP_PARSE_SYNTAX);
	assert_int_equal(mail_rc("FROM:<@r1:>"), SMTP_PARSE_SYNTAX);
	assert_int_equal(mail_rc("FROM:<@r1:postmaster>"), SMTP_PARSE_SYNTAX);
	/* The domain is required in MAIL, postmaster included. */
	assert_int_equal(mail_rc("FROM:<postmaster>"), SMTP_PARSE_SYNTAX);
	assert_int_equal(mail_rc("FROM:<alice>"), SMTP_PARSE_SYNTAX);
}

static void
test_mail_syntax(void **state)
{
	static const char *bad[] = {
		"",
		"FROM:",
		"FROM: ",
		"FROM:a@b", /* no angle brackets */
		"FROM: a@b",
		"FROM:  <a@b>", /* two spaces after the colon */
		"FROM <a@b>",
		"FROM :<a@b>",
		"TO:<a@b>",
		"FRM:<a@b>",
		"FROM:<a@b",
		"FROM:<a@b>>",
		"FROM:<<a@b>",
		"FROM:<a@b>x",
		"FROM:<a@b>SIZE=1", /* no space before the parameter */
		"FROM:<a b@c>",
		"FROM:<a@b c>",
		"FROM:<@b>",
		"FROM:<a@>",
		"FROM:<a@@b>",
		"FROM:<a@b@c>",
		"FROM:<a@b..c>",
		"FROM:<a@.b>",
		"FROM:<a@b.>",
		"FROM:<a@-->",
		"FROM:<a@-b.c>",
		"FROM:<a@b-.c>",
		"FROM:<a@b.c->",
		"FROM:<a@b!c>",
		"FROM:<a(b)@c>",
		"FROM:<a,b@c>",
		"FROM:<a@[]>",
		"FROM:<a@[1.2.3.4>",
		"FROM:<a@[1.2[3]>",
		"FROM:<a@[1.2.3.4]x>",
		"FROM:<\"a@b>",
		"FROM:<\"a\\>",
		"FROM:<\"\"x@b>",
		"FROM:<a\"b\"@c>",
		"FROM:<>x",
		"FROM:< >",
		"FROM:<",
		"FROM:>",
		"FROM:\"a\"@b",
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int rc = mail_rc(bad[i]);

		if (rc != SMTP_PARSE_SYNTAX)
			fail_msg("\"%s\": %d, want SYNTAX", bad[i], rc);
	}
}

static void
test_mail_quoted(void **state)
{
	(void)state;
	mail_ok("FROM:<\"a b\"@example.com>", "\"a b\"@example.com");
	mail_ok("FROM:<\"a@b\"@example.com>", "\"a@b\"@example.com");
	mail_ok("FROM:<\"a>b\"@example.com>", "\"a>b\"@example.com");
	mail_ok("FROM:<\"a\\\"b\"@example.com>", "\"a\\\"b\"@example.com");
	mail_ok("FROM:<\"a\\\\b\"@example.com>", "\"a\\\\b\"@example.com");
	mail_ok("FROM:<\"\"@example.com>", "\"\"@example.com");
	mail_ok("FROM:<@r:\"x y\"@example.com>", "\"x y\"@example.com");
	assert_int_equal(
	    mail_rc("FROM:<\"a\\\"@example.com>"), SMTP_PARSE_SYNTAX);
	/* quoted-pairSMTP is backslash and %d32-126 only. */
	assert_int_equal(
	    mail_rc("FROM:<\"a\\\xc3\xa9\"@b> SMTPUTF8"), SMTP_PARSE_SYNTAX);
}

static void
test_mail_params(void **state)
{
	char addr[SMTP_PATH_MAX + 1];
	struct smtp_mail_params prm;

	(void)state;
	assert_int_equal(
	    mail(LIT("FROM:<a@b> SIZE=12345"), addr, &prm), SMTP_PARSE_OK);
	assert_true(prm.has_size);
	assert_int_equal(prm.size, 12345);
	assert_false(prm.body_8bit);
	assert_false(prm.smtputf8);

	assert_int_equal(mail(LIT("FROM:<a@b>  size=0   body=8bitmime  "
				  "smtputf8 "),
			     addr, &prm),
	    SMTP_PARSE_OK);
	assert_string_equal(addr, "a@b");
	assert_true(prm.has_size);
	assert_int_equal(prm.size, 0);
	assert_true(prm.body_8bit);
	assert_true(prm.smtputf8);

	assert_int_equal(
	    mail(LIT("FROM:<a@b> BODY=7BIT"), addr, &prm), SMTP_PARSE_OK);
	assert_false(prm.body_8bit);
	assert_false(prm.has_size);

	assert_int_equal(
	    mail(LIT("FROM:<a@b> SMTPUTF8 BODY=8BITMIME"), addr, &prm),
	    SMTP_PARSE_OK);
	assert_true(prm.smtputf8);
	assert_true(prm.body_8bit);
}

static void
test_mail_size_limits(void **state)
{
	char addr[SMTP_PATH_MAX + 1];
	struct smtp_mail_params prm;

	(void)state;
	/* The largest 64-bit value, with and without leading zeros. */
	assert_int_equal(
	    mail(LIT("FROM:<a@b> SIZE=18446744073709551615"), addr, &prm),
	    SMTP_PARSE_OK);
	assert_true(prm.size == UINT64_MAX);
	assert_int_equal(
	    mail(LIT("FROM:<a@b> SIZE=00000000000000000007"), addr, &prm),
	    SMTP_PARSE_OK);
	assert_int_equal(prm.size, 7);
	/* One more overflows; 21 digits is over RFC 1870's 20. */
	assert_int_equal(
	    mail(LIT("FROM:<a@b> SIZE=18446744073709551616"), addr, &prm),
	    SMTP_PARSE_PARAM);
	assert_int_equal(
	    mail(LIT("FROM:<a@b> SIZE=99999999999999999999"), addr, &prm),
	    SMTP_PARSE_PARAM);
	assert_int_equal(
	    mail(LIT("FROM:<a@b> SIZE=000000000000000000001"), addr, &prm),
	    SMTP_PARSE_PARAM);
	assert_int_equal(
	    mail(LIT("FROM:<a@b> SIZE=26214400"), addr, &prm), SMTP_PARSE_OK);
	assert_int_equal(prm.size, 26214400);
}

static void
test_mail_bad_params(void **state)
{
	static const char *bad[] = {
		"FROM:<a@b> SIZE",
		"FROM:<a@b> SIZE=",
		"FROM:<a@b> SIZE=-1",
		"FROM:<a@b> SIZE=+1",
		"FROM:<a@b> SIZE=1k",
		"FROM:<a@b> SIZE=0x10",
		"FROM:<a@b> SIZE=1=2",
		"FROM:<a@b> SIZE==1",
		"FROM:<a@b> SIZE=1 SIZE=1",
		"FROM:<a@b> BODY",
		"FROM:<a@b> BODY=",
		"FROM:<a@b> BODY=BINARYMIME",
		"FROM:<a@b> BODY=8BIT",
		"FROM:<a@b> BODY=7BIT BODY=7BIT",
		"FROM:<a@b> BODY=7BIT BODY=8BITMIME",
		"FROM:<a@b> SMTPUTF8=yes",
		"FROM:<a@b> SMTPUTF8 SMTPUTF8",
		"FROM:<a@b> AUTH=<>",
		"FROM:<a@b> RET=HDRS",
		"FROM:<a@b> ENVID=x",
		"FROM:<a@b> X-FOO",
		"FROM:<a@b> =1",
		"FROM:<a@b> -X",
		"FROM:<a@b> SI_ZE=1",
		"FROM:<a@b> SIZE=1\xc3\xa9",
		"FROM:<a@b> \xc3\xa9",
		"FROM:<> <c@d>",
		"FROM:<a@b> SIZE=1 BODY=8BITMIME x",
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int rc = mail_rc(bad[i]);

		if (rc != SMTP_PARSE_PARAM)
			fail_msg("\"%s\": %d, want PARAM", bad[i], rc);
	}
}

static void
test_mail_utf8(void **state)
{
	char addr[SMTP_PATH_MAX + 1];
	struct smtp_mail_params prm;

	(void)state;
	/* 8-bit local part or domain: only with SMTPUTF8. */
	assert_int_equal(
	    mail_rc("FROM:<j\xc3\xb6rg@example.com>"), SMTP_PARSE_SYNTAX);
	assert_int_equal(mail_rc("FROM:<a@b\xc3\xbc"
				 "cher.example>"),
	    SMTP_PARSE_SYNTAX);
	assert_int_equal(mail_rc("FROM:<a@b> SMTPUTF8 BODY=7BIT x\xc3\xb6"),
	    SMTP_PARSE_PARAM);
	assert_int_equal(mail(LIT("FROM:<j\xc3\xb6rg@b\xc3\xbc"
				  "cher.example> SMTPUTF8"),
			     addr, &prm),
	    SMTP_PARSE_OK);
	assert_string_equal(addr,
	    "j\xc3\xb6rg@b\xc3\xbc"
	    "cher.example");
	assert_true(prm.smtputf8);
	mail_ok("FROM:<\"\xe2\x82\xac x\"@example.com> SMTPUTF8",
	    "\"\xe2\x82\xac x\"@example.com");
	mail_ok("FROM:<\xf0\x9f\x93\xa7@example.com> SMTPUTF8",
	    "\xf0\x9f\x93\xa7@example.com");
	/* ASCII with SMTPUTF8 is fine too. */
	mail_ok("FROM:<a@b> SMTPUTF8", "a@b");

	/* With SMTPUTF8, still valid UTF-8 only. */
	assert_int_equal(
	    mail_rc("FROM:<a\xc3(@b> SMTPUTF8"), SMTP_PARSE_SYNTAX);
	assert_int_equal(mail_rc("FROM:<a\xc0\xaf@b> SMTPUTF8"),
	    SMTP_PARSE_SYNTAX); /* overlong */
	assert_int_equal(mail_rc("FROM:<a\xe0\x80\xaf@b> SMTPUTF8"),
	    SMTP_PARSE_SYNTAX); /* overlong */
	assert_int_equal(mail_rc("FROM:<a\xed\xa0\x80@b> SMTPUTF8"),
	    SMTP_PARSE_SYNTAX); /* surrogate */
	assert_int_equal(mail_rc("FROM:<a\xf4\x90\x80\x80@b> SMTPUTF8"),
	    SMTP_PARSE_SYNTAX); /* over U+10FFFF */
	assert_int_equal(mail_rc("FROM:<a\xff@b> SMTPUTF8"), SMTP_PARSE_SYNTAX);
	assert_int_equal(mail_rc("FROM:<a\x80@b> SMTPUTF8"), SMTP_PARSE_SYNTAX);
	assert_int_equal(mail_rc("FROM:<a@b\xe2\x82> SMTPUTF8"),
	    SMTP_PARSE_SYNTAX); /* cut sequence */
	/* A sequence cut by the end of the argument. */
	assert_int_equal(
	    mail(LIT("FROM:<a\xe2\x82"), addr, &prm), SMTP_PARSE_SYNTAX);
	assert_int_equal(
	    mail(LIT("FROM:<a@b\xf0"), addr, &prm), SMTP_PARSE_SYNTAX);
}

static void
test_mail_control_bytes(void **state)
{
	char addr[SMTP_PATH_MAX + 1];
	struct smtp_mail_params prm;

	(void)state;
	assert_int_equal(mail(LIT("FROM:<a\0@b>"), addr, &prm), SMTP_PARSE_NUL);
	assert_int_equal(mail(LIT("FROM:<a@b>\0"), addr, &prm), SMTP_PARSE_NUL);
	assert_int_equal(
	    mail(LIT("FROM:<a@b>\tSIZE=1"), addr, &prm), SMTP_PARSE_NUL);
	assert_int_equal(
	    mail(LIT("FROM:<\"a\tb\"@c>"), addr, &prm), SMTP_PARSE_NUL);
	assert_int_equal(mail(LIT("FROM:<a\r@b>"), addr, &prm), SMTP_PARSE_NUL);
	assert_int_equal(
	    mail(LIT("FROM:<a@b\x7f>"), addr, &prm), SMTP_PARSE_NUL);
	assert_int_equal(
	    mail(LIT("FROM:<a@b> SIZE=1\x1b"), addr, &prm), SMTP_PARSE_NUL);
}

static void
test_mail_lengths(void **state)
{
	char arg[1024], addr[SMTP_PATH_MAX + 1], small[8];
	struct smtp_mail_params prm;
	char *l64 = rep('l', 64), *l65 = rep('l', 65);
	char *d189 = rep('d', 189), *d190 = rep('d', 190);
	char *d256 = rep('d', 256);

	(void)state;
	/* Local part: 64 octets, not 65 (RFC 5321 4.5.3.1.1). */
	(void)snprintf(arg, sizeof(arg), "FROM:<%s@b>", l64);
	assert_int_equal(mail(arg, strlen(arg), addr, &prm), SMTP_PARSE_OK);
	assert_int_equal(strlen(addr), 66);
	(void)snprintf(arg, sizeof(arg), "FROM:<%s@b>", l65);
	assert_int_equal(
	    mail(arg, strlen(arg), addr, &prm), SMTP_PARSE_TOO_LONG);
	/* The same with quotes: the quotes count. */
	(void)snprintf(arg, sizeof(arg), "FROM:<\"%.62s\"@b>", l64);
	assert_int_equal(mail(arg, strlen(arg), addr, &prm), SMTP_PARSE_OK);
	(void)snprintf(arg, sizeof(arg), "FROM:<\"%.63s\"@b>", l64);
	assert_int_equal(
	    mail(arg, strlen(arg), addr, &prm), SMTP_PARSE_TOO_LONG);

	/* Path: 256 octets with its brackets (RFC 5321 4.5.3.1.3). */
	(void)snprintf(arg, sizeof(arg), "FROM:<%s@%s>", l64, d189);
	assert_int_equal(strlen(arg) - 5, 256);
	assert_int_equal(mail(arg, strlen(arg), addr, &prm), SMTP_PARSE_OK);
	assert_int_equal(strlen(addr), 254);
	(void)snprintf(arg, sizeof(arg), "FROM:<%s@%s>", l64, d190);
	assert_int_equal(
	    mail(arg, strlen(arg), addr, &prm), SMTP_PARSE_TOO_LONG);
	/* The source route counts in the path. */
	(void)snprintf(arg, sizeof(arg), "FROM:<@r:%.61s@%s>", l64, d189);
	assert_int_equal(strlen(arg) - 5, 256);
	assert_int_equal(mail(arg, strlen(arg), addr, &prm), SMTP_PARSE_OK);
	assert_int_equal(strlen(addr), 251);
	(void)snprintf(arg, sizeof(arg), "FROM:<@r:%.62s@%s>", l64, d189);
	assert_int_equal(
	    mail(arg, strlen(arg), addr, &prm), SMTP_PARSE_TOO_LONG);
	/* Domain over 255 octets (RFC 5321 4.5.3.1.2). */
	(void)snprintf(arg, sizeof(arg), "FROM:<a@%s>", d256);
	assert_int_equal(
	    mail(arg, strlen(arg), addr, &prm), SMTP_PARSE_TOO_LONG);
	(void)snprintf(arg, sizeof(arg), "FROM:<a@%s", d256);
	assert_int_equal(mail(arg, strlen(arg), addr, &prm), SMTP_PARSE_SYNTAX);

	/* A buffer too small for the mailbox is not overrun. */
	memset(small, 'z', sizeof(small));
	assert_int_equal(smtp_parse_mail(LIT("FROM:<abc@def>"), small, 7, &prm),
	    SMTP_PARSE_TOO_LONG);
	assert_int_equal(small[7], 'z');
	assert_int_equal(smtp_parse_mail(LIT("FROM:<abc@de>"), small, 7, &prm),
	    SMTP_PARSE_OK);
	assert_string_equal(small, "abc@de");
	assert_int_equal(smtp_parse_mail(LIT("FROM:<>"), NULL, 0, &prm),
	    SMTP_PARSE_TOO_LONG);

	free(l64);
	free(l65);
	free(d189);
	free(d190);
	free(d256);
}

/* ---- smtp_parse_rcpt --------------------------------------------------- */

static void
test_rcpt(void **state)
{
	char addr[SMTP_PATH_MAX + 1];

	(void)state;
	rcpt_ok("TO:<bob@example.com>", false, "bob@example.com");
	rcpt_ok("to: <bob@example.com>  ", false, "bob@example.com");
	rcpt_ok("To:<@hop.example:bob@example.com>", false, "bob@example.com");
	rcpt_ok("TO:<\"b o b\"@example.com>", false, "\"b o b\"@example.com");
	rcpt_ok("TO:<bob@[192.0.2.1]>", false, "bob@[192.0.2.1]");

	/* Postmaster needs no domain, in any case (RFC 5321 4.5.1). */
	rcpt_ok("TO:<postmaster>", false, "postmaster");
	rcpt_ok("TO:<PostMaster>", false, "postmaster");
	rcpt_ok("TO: <POSTMASTER>", false, "postmaster");
	rcpt_ok("TO:<Postmaster@Example.com>", false, "Postmaster@Example.com");
	assert_int_equal(
	    rcpt_rc("TO:<\"postmaster\">", false), SMTP_PARSE_SYNTAX);
	assert_int_equal(
	    rcpt_rc("TO:<@r:postmaster>", false), SMTP_PARSE_SYNTAX);
	assert_int_equal(rcpt_rc("TO:<postmasters>", false), SMTP_PARSE_SYNTAX);
	assert_int_equal(rcpt_rc("TO:<bob>", false), SMTP_PARSE_SYNTAX);

	/* The null path is no forward-path; brackets are required. */
	assert_int_equal(rcpt_rc("TO:<>", false), SMTP_PARSE_SYNTAX);
	assert_int_equal(
	    rcpt_rc("TO:bob@example.com", false), SMTP_PARSE_SYNTAX);
	assert_int_equal(
	    rcpt_rc("TO:  <bob@example.com>", false), SMTP_PARSE_SYNTAX);
	assert_int_equal(
	    rcpt_rc("FROM:<bob@example.com>", false), SMTP_PARSE_SYNTAX);
	assert_int_equal(rcpt_rc("", false), SMTP_PARSE_SYNTAX);
	assert_int_equal(
	    rcpt_rc("TO:<bob@example.com>x", false), SMTP_PARSE_SYNTAX);

	/* No RCPT parameter is offered. */
	assert_int_equal(rcpt_rc("TO:<bob@example.com> NOTIFY=NEVER", false),
	    SMTP_PARSE_PARAM);
	assert_int_equal(
	    rcpt_rc("TO:<bob@example.com> ORCPT=rfc822;b@c", false),
	    SMTP_PARSE_PARAM);
	assert_int_equal(
	    rcpt_rc("TO:<postmaster> SIZE=1", false), SMTP_PARSE_PARAM);
	assert_int_equal(
	    rcpt_rc("TO:<bob@example.com> =", false), SMTP_PARSE_PARAM);

	/* 8-bit only in an SMTPUTF8 transaction, valid UTF-8 only. */
	assert_int_equal(
	    rcpt_rc("TO:<j\xc3\xb6rg@example.com>", false), SMTP_PARSE_SYNTAX);
	rcpt_ok(
	    "TO:<j\xc3\xb6rg@example.com>", true, "j\xc3\xb6rg@example.com");
	rcpt_ok("TO:<a@\xe4\xbe\x8b\xe3\x81\x88.jp>", true,
	    "a@\xe4\xbe\x8b\xe3\x81\x88.jp");
	assert_int_equal(
	    rcpt_rc("TO:<j\xf6rg@example.com>", true), SMTP_PARSE_SYNTAX);

	/* Control bytes. */
	assert_int_equal(
	    rcpt(LIT("TO:<b\0b@example.com>"), false, addr), SMTP_PARSE_NUL);
	assert_int_equal(
	    rcpt(LIT("TO:<bob@example.com>\n"), false, addr), SMTP_PARSE_NUL);
}

static void
test_rcpt_lengths(void **state)
{
	char arg[1024], addr[SMTP_PATH_MAX + 1], small[4];
	char *l65 = rep('x', 65), *d189 = rep('d', 189), *d190 = rep('d', 190);

	(void)state;
	(void)snprintf(arg, sizeof(arg), "TO:<%s@b>", l65);
	assert_int_equal(
	    rcpt(arg, strlen(arg), false, addr), SMTP_PARSE_TOO_LONG);
	(void)snprintf(arg, sizeof(arg), "TO:<%.64s@%s>", l65, d189);
	assert_int_equal(rcpt(arg, strlen(arg), false, addr), SMTP_PARSE_OK);
	(void)snprintf(arg, sizeof(arg), "TO:<%.64s@%s>", l65, d190);
	assert_int_equal(
	    rcpt(arg, strlen(arg), false, addr), SMTP_PARSE_TOO_LONG);
	/* "postmaster" does not fit in 4 bytes: refused, not cut. */
	assert_int_equal(smtp_parse_rcpt(LIT("TO:<postmaster>"), false, small,
			     sizeof(small)),
	    SMTP_PARSE_TOO_LONG);
	assert_int_equal(small[0], '\0');
	free(l65);
	free(d189);
	free(d190);
}

/* ---- smtp_parse_helo --------------------------------------------------- */

static void
test_helo(void **state)
{
	char *n255 = rep('h', 255), *n256 = rep('h', 256);

	(void)state;
	assert_int_equal(helo(LIT("client.example.com")), SMTP_PARSE_OK);
	assert_int_equal(helo(LIT("localhost")), SMTP_PARSE_OK);
	assert_int_equal(helo(LIT("my_odd-host")), SMTP_PARSE_OK);
	assert_int_equal(helo(LIT("[127.0.0.1]")), SMTP_PARSE_OK);
	assert_int_equal(helo(LIT("[IPv6:::1]")), SMTP_PARSE_OK);
	assert_int_equal(helo(LIT("h\xc3\xb6st.example")), SMTP_PARSE_OK);
	/* Only the first word counts. */
	assert_int_equal(
	    helo(LIT("client.example.com extra words")), SMTP_PARSE_OK);
	assert_int_equal(helo(LIT("  client  ")), SMTP_PARSE_OK);
	assert_int_equal(helo(LIT("[1.2.3.4] x")), SMTP_PARSE_OK);

	assert_int_equal(helo("", 0), SMTP_PARSE_SYNTAX);
	assert_int_equal(helo(LIT("   ")), SMTP_PARSE_SYNTAX);
	assert_int_equal(helo(LIT("[")), SMTP_PARSE_SYNTAX);
	assert_int_equal(helo(LIT("[]")), SMTP_PARSE_SYNTAX);
	assert_int_equal(helo(LIT("[1.2.3.4")), SMTP_PARSE_SYNTAX);
	assert_int_equal(helo(LIT("[1.2[3]")), SMTP_PARSE_SYNTAX);
	assert_int_equal(helo(LIT("[1.2.3.4]x")), SMTP_PARSE_SYNTAX);
	assert_int_equal(helo(LIT("h\xc3st")), SMTP_PARSE_SYNTAX);
	assert_int_equal(helo(LIT("h\xff")), SMTP_PARSE_SYNTAX);

	assert_int_equal(helo(LIT("host\0")), SMTP_PARSE_NUL);
	assert_int_equal(helo(LIT("host\tx")), SMTP_PARSE_NUL);
	assert_int_equal(helo(LIT("host x\r")), SMTP_PARSE_NUL);
	assert_int_equal(helo(LIT("\x1b[31mhost")), SMTP_PARSE_NUL);

	assert_int_equal(helo(n255, 255), SMTP_PARSE_OK);
	assert_int_equal(helo(n256, 256), SMTP_PARSE_TOO_LONG);
	free(n255);
	free(n256);
}

/* ---- every cut, and random input --------------------------------------- */

static bool
valid_result(int rc)
{
	return rc == SMTP_PARSE_OK || rc == SMTP_PARSE_SYNTAX ||
	    rc == SMTP_PARSE_PARAM || rc == SMTP_PARSE_TOO_LONG ||
	    rc == SMTP_PARSE_NUL;
}

/*
 * Every prefix of a valid MAIL argument: OK exactly where a complete
 * argument ends, and the address always terminated within its buffer.
 */
static void
test_mail_every_cut(void **state)
{
	static const char in[] = "FROM:<@r.example:\"a b\"@example.com> "
				 "SIZE=100 BODY=8BITMIME";
	char addr[SMTP_PATH_MAX + 1];
	struct smtp_mail_params prm;
	size_t n = sizeof(in) - 1, k, path_end;
	int rc;

	(void)state;
	path_end = (size_t)(strchr(in, '>') - in) + 1;
	for (k = 0; k <= n; k++) {
		rc = mail(in, k, addr, &prm);
		assert_true(valid_result(rc));
		assert_true(memchr(addr, '\0', sizeof(addr)) != NULL);
		if (k < path_end) {
			assert_int_equal(rc, SMTP_PARSE_SYNTAX);
		} else if (k == path_end || k == path_end + 1 ||
		    (k >= path_end + 7 && k <= path_end + 10) || k == n) {
			/* "", " ", " SIZE=1" to " SIZE=100 ", all of it. */
			assert_int_equal(rc, SMTP_PARSE_OK);
			assert_string_equal(addr, "\"a b\"@example.com");
		} else {
			/* " SIZE", " SIZE=", " BODY=8BIT"...: cut. */
			assert_int_equal(rc, SMTP_PARSE_PARAM);
		}
	}
}

/* A small deterministic generator, so a failure can be reproduced. */
static uint32_t
rnd(uint32_t *s)
{
	*s = *s * 1103515245u + 12345u;
	return *s >> 8;
}

static void
test_random_input(void **state)
{
	static const char *tok[] = { "<", ">", "@", ":", ",", ".", "\"", "\\",
		" ", "=", "a", "Z", "9", "-", "[", "]",
		"FROM:", "TO:", "SIZE=", "BODY=8BITMIME", "SMTPUTF8",
		"postmaster", "\xc3\xa9", "\xc3", "\x80", "\0", "\t", "\r",
		"\n", "HELO", "MAIL " };
	char buf[600] = { 0 }, addr[SMTP_PATH_MAX + 1];
	struct smtp_mail_params prm;
	struct smtp_command c;
	uint32_t seed = 12345;
	size_t len, ll, ntok = sizeof(tok) / sizeof(tok[0]);
	int iter, rc;
	char *p;

	(void)state;
	for (iter = 0; iter < 200000; iter++) {
		len = 0;
		while (len < 520 && rnd(&seed) % 40 != 0) {
			const char *t = tok[rnd(&seed) % ntok];
			size_t tl = t[0] == '\0' ? 1 : strlen(t);

			put_bytes(buf + len, t, tl);
			len += tl;
		}
		p = dup_exact(buf, len);
		rc = smtp_parse_mail(p, len, addr, sizeof(addr), &prm);
		assert_true(valid_result(rc));
		if (rc == SMTP_PARSE_OK)
			assert_true(strlen(addr) <= SMTP_PATH_MAX - 2);
		rc = smtp_parse_rcpt(
		    p, len, (iter & 1) != 0, addr, sizeof(addr));
		assert_true(valid_result(rc));
		assert_true(valid_result(smtp_parse_helo(p, len)));
		rc = smtp_parse_command(p, len, &c);
		assert_true(rc == SMTP_PARSE_OK || rc == SMTP_PARSE_NUL);
		assert_true(c.arglen <= len);
		if (c.arglen > 0)
			assert_true(c.arg >= p && c.arg + c.arglen <= p + len);
		assert_true(smtp_parse_line(p, len, &ll) <= len);
		free(p);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_command_every_verb),
		cmocka_unit_test(test_command_forms),
		cmocka_unit_test(test_command_nul),
		cmocka_unit_test(test_line),
		cmocka_unit_test(test_line_every_cut),
		cmocka_unit_test(test_mail_basic),
		cmocka_unit_test(test_mail_null_path_and_route),
		cmocka_unit_test(test_mail_syntax),
		cmocka_unit_test(test_mail_quoted),
		cmocka_unit_test(test_mail_params),
		cmocka_unit_test(test_mail_size_limits),
		cmocka_unit_test(test_mail_bad_params),
		cmocka_unit_test(test_mail_utf8),
		cmocka_unit_test(test_mail_control_bytes),
		cmocka_unit_test(test_mail_lengths),
		cmocka_unit_test(test_rcpt),
		cmocka_unit_test(test_rcpt_lengths),
		cmocka_unit_test(test_helo),
		cmocka_unit_test(test_mail_every_cut),
		cmocka_unit_test(test_random_input),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
