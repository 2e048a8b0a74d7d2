/*
 * Unit tests of message (relay/message.c): finding, unfolding, trimming
 * and cutting header fields; the Message-ID and its bare form.  Messages
 * are copied into heap buffers of exactly their length (no NUL after
 * them), so ASan catches a read past len; messages are also cut at every
 * position and random bytes are thrown at the reader.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "redrive/message.h"

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

static char *
dup_exact(const char *s, size_t n)
{
	char *p = malloc(n > 0 ? n : 1);

	assert_non_null(p);
	if (n > 0)
		memcpy(p, s, n);
	return p;
}

/* message_header() on an exact-size copy of msg[0..n). */
static char *
hdr(const char *msg, size_t n, const char *name, size_t max)
{
	char *p = dup_exact(msg, n);
	char *v = message_header(p, n, name, max);

	free(p);
	return v;
}

static char *
mid(const char *msg, size_t n)
{
	char *p = dup_exact(msg, n);
	char *v = message_id(p, n);

	free(p);
	return v;
}

static void
expect_hdr(
    const char *msg, size_t n, const char *name, size_t max, const char *want)
{
	char *v = hdr(msg, n, name, max);

	if (want == NULL) {
		assert_null(v);
		return;
	}
	assert_non_null(v);
	assert_string_equal(v, want);
	free(v);
}

static void
expect_id(const char *msg, size_t n, const char *want)
{
	char *v = mid(msg, n);

	if (want == NULL) {
		assert_null(v);
		return;
	}
	assert_non_null(v);
	assert_string_equal(v, want);
	free(v);
}

static const char sample[] = "Received: from x\r\n"
			     "\tby y; Sat, 28 Nov 2026 00:31:27 +0000\r\n"
			     "From: Alice <alice@example.com>\r\n"
			     "To: bob@example.com\r\n"
			     "Subject: Quarterly\r\n"
			     " report,\r\n"
			     "\tpart 2  \r\n"
			     "Message-ID: <abc.123@mail.example.com>\r\n"
			     "\r\n"
			     "Subject: not a header\r\n"
			     "Message-ID: <body@example.com>\r\n";

static void
test_header_basic(void **state)
{
	(void)state;
	expect_hdr(LIT(sample), "To", 998, "bob@example.com");
	expect_hdr(LIT(sample), "From", 998, "Alice <alice@example.com>");
	/* RFC 5322 2.2.3: CR LF before WSP is removed, the WSP stays. */
	expect_hdr(LIT(sample), "Subject", 998, "Quarterly report,\tpart 2");
	expect_hdr(LIT(sample), "Received", 998,
	    "from x\tby y; Sat, 28 Nov 2026 00:31:27 +0000");
	/* Case-insensitive names. */
	expect_hdr(LIT(sample), "subject", 998, "Quarterly report,\tpart 2");
	expect_hdr(LIT(sample), "SUBJECT", 998, "Quarterly report,\tpart 2");
	expect_hdr(
	    LIT(sample), "message-id", 998, "<abc.123@mail.example.com>");
	/* Missing, or only a prefix of a name. */
	expect_hdr(LIT(sample), "Cc", 998, NULL);
	expect_hdr(LIT(sample), "Subj", 998, NULL);
	expect_hdr(LIT(sample), "Subject-X", 998, NULL);
	expect_hdr(LIT(sample), "", 998, NULL);
	expect_hdr("", 0, "Subject", 998, NULL);
}

static void
test_header_body_never(void **state)
{
	(void)state;
	/* Only in the body: not found (CR LF CR LF, LF LF, mixed). */
	expect_hdr(
	    LIT("From: a\r\n\r\nSubject: body\r\n"), "Subject", 998, NULL);
	expect_hdr(LIT("From: a\n\nSubject: body\n"), "Subject", 998, NULL);
	expect_hdr(LIT("From: a\r\n\nSubject: body\n"), "Subject", 998, NULL);
	expect_hdr(LIT("\r\nSubject: body\r\n"), "Subject", 998, NULL);
	/* A folded-looking line after the blank line is body too. */
	expect_hdr(LIT("Subject: a\r\n\r\n b\r\n"), "Subject", 998, "a");
	/* A line of white space is folding, not the end of the header. */
	expect_hdr(
	    LIT("X: 1\r\n \r\nSubject: yes\r\n\r\n"), "Subject", 998, "yes");
	/* The first of two fields. */
	expect_hdr(
	    LIT("Subject: one\r\nSubject: two\r\n\r\n"), "Subject", 998, "one");
}

static void
test_header_forms(void **state)
{
	(void)state;
	/* LF-only line ends. */
	expect_hdr(LIT("Subject: lf\n continued\nTo: x\n\nbody"), "Subject",
	    998, "lf continued");
	/* No line end at all, no body. */
	expect_hdr(LIT("Subject: end"), "Subject", 998, "end");
	/* White space around the value and before the colon. */
	expect_hdr(
	    LIT("Subject:   spaced \t \r\n\r\n"), "Subject", 998, "spaced");
	expect_hdr(LIT("Subject :obs\r\n\r\n"), "Subject", 998, "obs");
	expect_hdr(LIT("Subject:\r\n  next line\r\n\r\n"), "Subject", 998,
	    "next line");
	expect_hdr(LIT("Subject:\r\n\r\n"), "Subject", 998, "");
	expect_hdr(LIT("Subject:   \r\n\t\r\n\r\n"), "Subject", 998, "");
	expect_hdr(LIT("Subject:x:y\r\n"), "Subject", 998, "x:y");
	/* Lines that are not fields are skipped. */
	expect_hdr(LIT("garbage line\r\nSubject: found\r\n\r\n"), "Subject",
	    998, "found");
	/* A continuation at the very start belongs to no field. */
	expect_hdr(LIT(" Subject: no\r\nTo: x\r\n\r\n"), "Subject", 998, NULL);
	/* A bare CR is kept as it is. */
	expect_hdr(LIT("Subject: a\rb\r\n\r\n"), "Subject", 998, "a\rb");
	/* len is the end: never past it. */
	expect_hdr("Subject: hello world", 11, "Subject", 998, "he");
	expect_hdr("Subject: hello", 8, "Subject", 998, "");
	expect_hdr("Subject: hello", 7, "Subject", 998, NULL);
}

static void
test_header_truncation(void **state)
{
	(void)state;
	expect_hdr(LIT("Subject: hello world\r\n"), "Subject", 5, "hello");
	expect_hdr(
	    LIT("Subject: hello world\r\n"), "Subject", 11, "hello world");
	expect_hdr(
	    LIT("Subject: hello world\r\n"), "Subject", 100, "hello world");
	/* A cut before a space: trimmed again. */
	expect_hdr(LIT("Subject: ab cd\r\n"), "Subject", 3, "ab");
	expect_hdr(LIT("Subject: hello\r\n"), "Subject", 0, "");
	/* Cut on a UTF-8 boundary: 2-, 3- and 4-byte sequences. */
	expect_hdr(LIT("Subject: a\xc3\xa9\r\n"), "Subject", 2, "a");
	expect_hdr(LIT("Subject: a\xc3\xa9\r\n"), "Subject", 3, "a\xc3\xa9");
	expect_hdr(LIT("Subject: a\xe2\x82\xac\r\n"), "Subject", 2, "a");
	expect_hdr(LIT("Subject: a\xe2\x82\xac\r\n"), "Subject", 3, "a");
	expect_hdr(
	    LIT("Subject: a\xe2\x82\xac\r\n"), "Subject", 4, "a\xe2\x82\xac");
	expect_hdr(LIT("Subject: \xf0\x9f\x93\xa7x\r\n"), "Subject", 1, "");
	expect_hdr(LIT("Subject: \xf0\x9f\x93\xa7x\r\n"), "Subject", 3, "");
	expect_hdr(LIT("Subject: \xf0\x9f\x93\xa7x\r\n"), "Subject", 4,
	    "\xf0\x9f\x93\xa7");
	expect_hdr(
	    LIT("Subject: \xc3\xa9\xc3\xa9\r\n"), "Subject", 3, "\xc3\xa9");
	/* Invalid UTF-8 is cut as bytes, never eaten whole. */
	expect_hdr(LIT("Subject: abcd\x80\x80\x80\x80\x80\r\n"), "Subject", 6,
	    "abcd\x80\x80");
	/* Folding counts after unfolding. */
	expect_hdr(LIT("Subject: ab\r\n cd\r\n"), "Subject", 4, "ab c");
}

static void
test_header_every_cut(void **state)
{
	size_t n = sizeof(sample) - 1, k;
	char *v;
	const char *subj_end = strstr(sample, "\r\nMessage-ID");

	(void)state;
	for (k = 0; k <= n; k++) {
		v = hdr(sample, k, "Subject", 998);
		if (k >= (size_t)(subj_end - sample)) {
			assert_non_null(v);
			assert_string_equal(v, "Quarterly report,\tpart 2");
		}
		free(v);
		v = mid(sample, k);
		if (k >= (size_t)(strstr(sample, ">\r\n\r\n") - sample) + 1) {
			assert_non_null(v);
			assert_string_equal(v, "abc.123@mail.example.com");
		} else {
			assert_null(v);
		}
		free(v);
	}
}

static void
test_message_id(void **state)
{
	char *big;
	size_t i;

	(void)state;
	expect_id(LIT(sample), "abc.123@mail.example.com");
	expect_id(LIT("Message-Id: <x@y>\r\n\r\n"), "x@y");
	expect_id(LIT("MESSAGE-ID:<x@y>"), "x@y");
	expect_id(LIT("Message-ID:\r\n <folded@example.com>\r\n\r\n"),
	    "folded@example.com");
	expect_id(LIT("Message-ID: (comment) <c@d> <e@f>\r\n\r\n"), "c@d");
	expect_id(LIT("Message-ID: <\"q x\"@d>\r\n"), NULL);
	expect_id(LIT("Message-ID: bare@example.com\r\n\r\n"), NULL);
	expect_id(LIT("Message-ID: <>\r\n\r\n"), NULL);
	expect_id(LIT("Message-ID: <a b@c>\r\n\r\n"), NULL);
	expect_id(LIT("Message-ID: <a<b@c>\r\n\r\n"), NULL);
	expect_id(LIT("Message-ID: <open@example.com\r\n\r\n"), NULL);
	expect_id(LIT("Subject: x\r\n\r\nMessage-ID: <body@x>\r\n"), NULL);
	expect_id(LIT("Subject: x\r\n\r\n"), NULL);
	expect_id("", 0, NULL);
	/* An id over one line's worth is not usable. */
	big = malloc(2100);
	assert_non_null(big);
	memcpy(big, "Message-ID: <", 13);
	for (i = 13; i < 2000; i++)
		big[i] = 'i';
	put_bytes(big + 2000, "@x>\r\n\r\n", 7);
	expect_id(big, 2007, NULL);
	free(big);
}

static void
test_message_id_bare(void **state)
{
	static const struct {
		const char *in, *out;
	} cases[] = {
		{ "<a@b>", "a@b" },
		{ "  <a@b>\t", "a@b" },
		{ "< a@b >", "a@b" },
		{ "a@b", "a@b" },
		{ " a@b ", "a@b" },
		{ "<a@b", "<a@b" },
		{ "a@b>", "a@b>" },
		{ "<<a@b>>", "<a@b>" },
		{ "<>", "" },
		{ "<", "<" },
		{ "", "" },
		{ "   ", "" },
	};
	char buf[64];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		(void)memcpy(buf, cases[i].in, strlen(cases[i].in) + 1);
		assert_ptr_equal(message_id_bare(buf), buf);
		assert_string_equal(buf, cases[i].out);
	}
	assert_null(message_id_bare(NULL));
}

static uint32_t
rnd(uint32_t *s)
{
	*s = *s * 1103515245u + 12345u;
	return *s >> 8;
}

static void
test_random_input(void **state)
{
	static const char *tok[] = { "Subject", "Message-ID", ":", " ", "\t",
		"\r", "\n", "\r\n", "<", ">", "@", "a", "\xc3\xa9", "\xe2\x82",
		"\x80", "\0" };
	char buf[512] = { 0 }, *p, *v;
	uint32_t seed = 7;
	size_t n, ntok = sizeof(tok) / sizeof(tok[0]), max;
	int iter;

	(void)state;
	for (iter = 0; iter < 100000; iter++) {
		n = 0;
		while (n < sizeof(buf) - 16 && rnd(&seed) % 30 != 0) {
			const char *t = tok[rnd(&seed) % ntok];
			size_t tl = t[0] == '\0' ? 1 : strlen(t);

			put_bytes(buf + n, t, tl);
			n += tl;
		}
		p = dup_exact(buf, n);
		max = rnd(&seed) % 20;
		v = message_header(p, n, "Subject", max);
		if (v != NULL) {
			assert_true(strlen(v) <= max);
			free(v);
		}
		v = message_id(p, n);
		if (v != NULL) {
			assert_true(strlen(v) > 0);
			assert_null(strpbrk(v, "<> \t\r\n"));
			free(v);
		}
		free(p);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_header_basic),
		cmocka_unit_test(test_header_body_never),
		cmocka_unit_test(test_header_forms),
		cmocka_unit_test(test_header_truncation),
		cmocka_unit_test(test_header_every_cut),
		cmocka_unit_test(test_message_id),
		cmocka_unit_test(test_message_id_bare),
		cmocka_unit_test(test_random_input),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
