/*
 * Tests of the CLI's output helpers (cli/cli_util.c, compiled in here as
 * the CLI's objects are not part of the test library): the terminal
 * escaping and truncation of cli_put() and the UTF-8 repair of
 * cli_json_str(), on raw bytes, every input cut at every position, and
 * every width.  jansson's own UTF-8 check serves as the independent
 * judge of validity.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../../cli/cli_util.c" /* NOLINT(bugprone-suspicious-include) */

/* Runs cli_put() into a buffer; returns the malloc'd, NUL-ended output. */
static char *
test_put(const char *s, size_t width, bool pad, size_t *cols)
{
	char *buf = NULL;
	size_t len = 0, n;
	FILE *fp;

	fp = open_memstream(&buf, &len);
	assert_non_null(fp);
	n = cli_put(fp, s, width, pad);
	assert_int_equal(fclose(fp), 0);
	if (cols != NULL)
		*cols = n;
	return buf;
}

static void
test_put_expect(const char *s, size_t width, bool pad, const char *want)
{
	char *got = test_put(s, width, pad, NULL);

	assert_string_equal(got, want);
	free(got);
}

/* Columns as cli_put() counts them: one per UTF-8 character. */
static size_t
test_cols(const char *s)
{
	size_t n = 0;

	for (; *s != '\0'; s++)
		if (((unsigned char)*s & 0xc0) != 0x80)
			n++;
	return n;
}

static void
test_put_escapes(void **state)
{
	(void)state;
	test_put_expect("plain text", SIZE_MAX, false, "plain text");
	test_put_expect("a\x1b[31mb", SIZE_MAX, false, "a\\x1b[31mb");
	test_put_expect("l1\nl2\r\tx", SIZE_MAX, false, "l1\\nl2\\r\\tx");
	test_put_expect("back\\slash", SIZE_MAX, false, "back\\\\slash");
	test_put_expect("del\x7f", SIZE_MAX, false, "del\\x7f");
	/* 8-bit bytes that are not UTF-8. */
	test_put_expect("Caf\xe9", SIZE_MAX, false, "Caf\\xe9");
	test_put_expect("\xc0\xaf", SIZE_MAX, false, "\\xc0\\xaf");
	test_put_expect("\xed\xa0\x80", SIZE_MAX, false, "\\xed\\xa0\\x80");
	test_put_expect("\xe2\x82", SIZE_MAX, false, "\\xe2\\x82");
	/* UTF-8 passes; C1 and bidirectional controls do not. */
	test_put_expect("Gr\xc3\xbc\xc3\x9f"
			"e \xe2\x9c\x93 \xf0\x9f\x98\x80",
	    SIZE_MAX, false,
	    "Gr\xc3\xbc\xc3\x9f"
	    "e \xe2\x9c\x93 \xf0\x9f\x98\x80");
	test_put_expect("a\xc2\x85z", SIZE_MAX, false, "a\\u0085z");
	test_put_expect("\xe2\x80\xae"
			"evil",
	    SIZE_MAX, false, "\\u202eevil");
	test_put_expect(
	    "\xe2\x81\xa6x\xe2\x81\xa9", SIZE_MAX, false, "\\u2066x\\u2069");
	test_put_expect(NULL, 5, true, "     ");
}

static void
test_put_width(void **state)
{
	size_t cols;
	char *got;

	(void)state;
	test_put_expect("abcdefghij", 10, false, "abcdefghij");
	test_put_expect("abcdefghij", 9, false, "abcdef...");
	test_put_expect("abcdefghij", 5, true, "ab...");
	test_put_expect("abc", 6, true, "abc   ");
	test_put_expect("abcdef", 2, false, "..");
	test_put_expect("abcdef", 0, true, "");
	/* Multibyte characters count one column each. */
	test_put_expect("Gr\xc3\xbc\xc3\x9f"
			"e",
	    5, false,
	    "Gr\xc3\xbc\xc3\x9f"
	    "e");
	test_put_expect("Gr\xc3\xbc\xc3\x9f"
			"en",
	    5, false, "Gr...");
	/* An escape is never cut in the middle. */
	test_put_expect("ab\x1b", 6, false, "ab\\x1b");
	test_put_expect("ab\x1b"
			"cdefgh",
	    6, false, "ab...");
	got = test_put("x", SIZE_MAX, false, &cols);
	assert_int_equal(cols, 1);
	free(got);
}

/*
 * Every prefix of a mix of hostile bytes, at every width: the output is
 * valid UTF-8, holds no control byte, fits the width, and pads exactly.
 */
static void
test_put_every_cut(void **state)
{
	static const char mix[] = "A\x1b\xc3\xa9\xe2\x80\xae\xf0\x9f\x98\x80"
				  "\xed\xa0\x80\xc2\x85\n\\\xff\xe2\x82"
				  "z";
	char in[sizeof(mix)];
	size_t cut, width, i, cols;
	json_t *j;
	char *got;

	(void)state;
	for (cut = 0; cut < sizeof(mix); cut++) {
		memcpy(in, mix, cut);
		in[cut] = '\0';
		for (width = 0; width <= 40; width++) {
			got = test_put(in, width, true, &cols);
			assert_int_equal(cols, width);
			assert_int_equal(test_cols(got), width);
			for (i = 0; got[i] != '\0'; i++)
				assert_true((unsigned char)got[i] >= 0x20 &&
				    got[i] != 0x7f);
			j = json_string(got);
			if (j == NULL)
				fail_msg(
				    "not UTF-8: cut %zu width %zu", cut, width);
			json_decref(j);
			free(got);
		}
	}
}

static void
test_json_str_expect(const char *in, const char *want)
{
	json_t *j = cli_json_str(in);

	assert_non_null(j);
	assert_true(json_is_string(j));
	assert_string_equal(json_string_value(j), want);
	json_decref(j);
}

#define FFFD "\xef\xbf\xbd"

static void
test_json_str_repairs(void **state)
{
	json_t *j;

	(void)state;
	j = cli_json_str(NULL);
	assert_true(json_is_null(j));
	json_decref(j);
	test_json_str_expect("", "");
	test_json_str_expect("plain \x1b ok", "plain \x1b ok");
	test_json_str_expect("Caf\xe9", "Caf" FFFD);
	test_json_str_expect("\xc0\xaf", FFFD FFFD);
	test_json_str_expect("\xed\xa0\x80", FFFD FFFD FFFD);
	test_json_str_expect("\xf4\x90\x80\x80", FFFD FFFD FFFD FFFD);
	test_json_str_expect("\xe2\x82", FFFD FFFD);
	test_json_str_expect("\xf0\x9f\x98\x80", "\xf0\x9f\x98\x80");
	test_json_str_expect("\xf4\x8f\xbf\xbf", "\xf4\x8f\xbf\xbf");
	test_json_str_expect("\xe2\x80\xae", "\xe2\x80\xae");
}

/* Every byte value, alone and after a lead byte, gives a JSON string. */
static void
test_json_str_every_byte(void **state)
{
	static const unsigned char leads[] = { 0, 0xc2, 0xe0, 0xe1, 0xed, 0xf0,
		0xf4, 0xf5 };
	unsigned char in[4];
	size_t i, b;
	json_t *j;

	(void)state;
	for (i = 0; i < sizeof(leads); i++) {
		for (b = 1; b < 256; b++) {
			memset(in, 0, sizeof(in));
			if (leads[i] != 0) {
				in[0] = leads[i];
				in[1] = (unsigned char)b;
			} else {
				in[0] = (unsigned char)b;
			}
			j = cli_json_str((const char *)in);
			assert_non_null(j);
			assert_true(json_is_string(j));
			json_decref(j);
		}
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_put_escapes),
		cmocka_unit_test(test_put_width),
		cmocka_unit_test(test_put_every_cut),
		cmocka_unit_test(test_json_str_repairs),
		cmocka_unit_test(test_json_str_every_byte),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
