/*
 * Unit tests for core/jdoc.c, with jansson as the oracle: every text here
 * is parsed by both and jdoc must accept exactly what json_loadb(
 * JSON_REJECT_DUPLICATES) accepts and write exactly what json_dumps(
 * JSON_SORT_KEYS | JSON_COMPACT) writes.  The cases also carry their own
 * expected answer, so that a change in both parsers still shows.  Then:
 * nesting at the depth limit, duplicate keys in small and large objects,
 * objects and strings that outgrow the first arena chunk, numbers at the
 * edges of long long and double, lookups and member order, every prefix
 * of a Mailgun payload, and jansson's NUL quirk, which jdoc does not
 * share.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "redrive/jdoc.h"

/* The canonical text of a parsed document, malloc'ed. */
static char *
canon_of(const struct jdoc *doc)
{
	struct jdoc_out o;
	char small[16], *text;

	jdoc_out_init(&o, small, sizeof(small));
	assert_int_equal(jdoc_canon(&o, jdoc_root(doc)), 0);
	text = malloc(o.len + 1);
	assert_non_null(text);
	memcpy(text, o.p, o.len);
	text[o.len] = '\0';
	jdoc_out_free(&o);
	return text;
}

/*
 * Parses len bytes with both; checks they agree and that jdoc says ok
 * (true) or refuses (false).  Returns jdoc's canonical text when it
 * accepted (malloc'ed), else NULL.
 */
static char *
both(const char *text, size_t len, bool ok)
{
	struct jdoc *doc = NULL;
	json_error_t jerr;
	json_t *j = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
	char *mine = NULL, *theirs;
	int rc = jdoc_parse(text, len, &doc);

	int shown = len > 200 ? 200 : (int)len;

	if ((rc == 0) != (j != NULL))
		fail_msg("jdoc %d, jansson %s (%s) for %.*s", rc,
		    j != NULL ? "accepts" : "refuses", jerr.text, shown, text);
	if ((rc == 0) != ok)
		fail_msg("expected %s for %.*s", ok ? "accept" : "refusal",
		    shown, text);
	if (rc != 0) {
		assert_int_equal(rc, -EINVAL);
		assert_null(doc);
		return NULL;
	}
	mine = canon_of(doc);
	theirs = json_dumps(j, JSON_SORT_KEYS | JSON_COMPACT);
	assert_non_null(theirs);
	if (strcmp(mine, theirs) != 0)
		fail_msg("canonical text differs:\n jdoc    %s\n jansson %s",
		    mine, theirs);
	free(theirs);
	json_decref(j);
	jdoc_free(doc);
	return mine;
}

/* both() of a NUL-terminated text, and its canonical text if given. */
static void
check(const char *text, bool ok, const char *want)
{
	char *got = both(text, strlen(text), ok);

	if (want != NULL && (got == NULL || strcmp(got, want) != 0))
		fail_msg("canonical text of %s: got %s, want %s", text,
		    got != NULL ? got : "(refused)", want);
	free(got);
}

static void
test_grammar(void **state)
{
	(void)state;
	check("{}", true, "{}");
	check("[]", true, "[]");
	check(" \t\r\n{ \"a\" : [ 1 , 2 ] }\n ", true, "{\"a\":[1,2]}");
	check("[true,false,null]", true, "[true,false,null]");
	check("", false, NULL);
	check("   ", false, NULL);
	check("1", false, NULL); /* an object or an array on top */
	check("\"s\"", false, NULL);
	check("null", false, NULL);
	check("{", false, NULL);
	check("[", false, NULL);
	check("{}}", false, NULL);
	check("[][]", false, NULL);
	check("[1,]", false, NULL);
	check("[,1]", false, NULL);
	check("{\"a\":1,}", false, NULL);
	check("{\"a\" 1}", false, NULL);
	check("{\"a\":}", false, NULL);
	check("{a:1}", false, NULL);
	check("{1:1}", false, NULL);
	check("['a']", false, NULL);
	check("[tru]", false, NULL);
	check("[truee]", false, NULL);
	check("[True]", false, NULL);
	check("[nul]", false, NULL);
	check("[\f1]", false, NULL);	      /* form feed is no white space */
	check("\xef\xbb\xbf[]", false, NULL); /* nor a byte order mark */
	check("[1]x", false, NULL);
	check("[1] [2]", false, NULL);
	check("{\"a\":1 \"b\":2}", false, NULL);
}

static void
test_numbers(void **state)
{
	char big[400];

	(void)state;
	check("[0,-0,1,-1,10,42]", true, "[0,0,1,-1,10,42]");
	check("[123456789012345678,-123456789012345678]", true,
	    "[123456789012345678,-123456789012345678]");
	check("[9223372036854775807,-9223372036854775808]", true,
	    "[9223372036854775807,-9223372036854775808]");
	check("[9223372036854775808]", false, NULL);
	check("[-9223372036854775809]", false, NULL);
	check("[99999999999999999999999]", false, NULL);
	check("[0.1,1.5,-0.0,0.0,2.5e-5,1E+2,1e2,1.0e-2]", true,
	    "[0.10000000000000001,1.5,-0.0,0.0,2.5000000000000001e-5,100.0,"
	    "100.0,0.01]");
	check("[1e300,-1e-300,1529692198.719,1e16,1e17]", true, NULL);
	check("[1e400]", false, NULL);	  /* overflow */
	check("[-1e400]", false, NULL);	  /* overflow */
	check("[1e-400]", true, "[0.0]"); /* underflow is fine */
	check("[01]", false, NULL);
	check("[-01]", false, NULL);
	check("[00]", false, NULL);
	check("[1.]", false, NULL);
	check("[.5]", false, NULL);
	check("[1e]", false, NULL);
	check("[1e+]", false, NULL);
	check("[1.e5]", false, NULL);
	check("[-]", false, NULL);
	check("[+1]", false, NULL);
	check("[0x10]", false, NULL);
	check("[1.5.5]", false, NULL);
	check("[NaN]", false, NULL);
	check("[Infinity]", false, NULL);
	/* A real longer than the parser's buffer for its text. */
	memset(big, 0, sizeof(big));
	memcpy(big, "[0.", 3);
	memset(big + 3, '1', 300);
	memcpy(big + 303, "e-2]", 4);
	check(big, true, NULL);
	memset(big + 1, '7', 300);
	memcpy(big + 301, "]", 2);
	check(big, false, NULL); /* a 300-digit integer */
}

static void
test_strings(void **state)
{
	(void)state;
	check("[\"\"]", true, "[\"\"]");
	check("[\"\\\" \\\\ \\/ \\b \\f \\n \\r \\t\"]", true,
	    "[\"\\\" \\\\ / \\b \\f \\n \\r \\t\"]");
	check("[\"\\u0001\\u001F\\u007f\\u0080\"]", true,
	    "[\"\\u0001\\u001F\x7f\xc2\x80\"]");
	check("[\"\\u00e9\\u20AC\\ud83d\\ude00\"]", true,
	    "[\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\"]");
	check("[\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\xf4\x8f\xbf\xbf\"]",
	    true, NULL);
	check("[\"\\u0000\"]", false, NULL);
	check("{\"\\u0000\":1}", false, NULL);
	check("[\"\\ud83d\"]", false, NULL);	    /* lone high */
	check("[\"\\ude00\"]", false, NULL);	    /* lone low */
	check("[\"\\ud83d\\u0041\"]", false, NULL); /* high, not low */
	check("[\"\\ud83d\\ud83d\"]", false, NULL); /* high, high */
	check("[\"\\ud83dx\"]", false, NULL);	    /* high, text */
	check("[\"\\ud83d\\n\"]", false, NULL);	    /* high, escape */
	check("[\"\\u12\"]", false, NULL);
	check("[\"\\u12g4\"]", false, NULL);
	check("[\"\\x41\"]", false, NULL);
	check("[\"\\a\"]", false, NULL);
	check("[\"\\'\"]", false, NULL);
	check("[\"a\nb\"]", false, NULL); /* raw control character */
	check("[\"a\tb\"]", false, NULL);
	check("[\"a\x1f\"]", false, NULL);
	check("[\"a\x7f\"]", true, "[\"a\x7f\"]");
	check("[\"abc]", false, NULL);
	check("[\"abc\\\"]", false, NULL);
	check("[\"\\", false, NULL);
	check("[\"\xc3\"]", false, NULL);	      /* cut sequence */
	check("[\"\xc0\xaf\"]", false, NULL);	      /* overlong */
	check("[\"\xe0\x80\xaf\"]", false, NULL);     /* overlong */
	check("[\"\xed\xa0\x80\"]", false, NULL);     /* surrogate */
	check("[\"\xf4\x90\x80\x80\"]", false, NULL); /* > U+10FFFF */
	check("[\"\xf5\x80\x80\x80\"]", false, NULL);
	check("[\"\xff\"]", false, NULL);
	check("[\"\x80\"]", false, NULL);
}

static void
test_objects(void **state)
{
	(void)state;
	check("{\"b\":1,\"a\":{\"c\":null,\"ab\":true,\"a\":false},\"\":0}",
	    true,
	    "{\"\":0,\"a\":{\"a\":false,\"ab\":true,\"c\":null},\"b\":1}");
	check("{\"ab\":1,\"a\":2,\"abc\":3,\"b\":4,\"A\":5,\"\\u00e9\":6}",
	    true,
	    "{\"A\":5,\"a\":2,\"ab\":1,\"abc\":3,\"b\":4,\"\xc3\xa9\":6}");
	check("{\"a\":1,\"a\":1}", false, NULL);
	check("{\"a\":1,\"b\":2,\"a\":3}", false, NULL);
	check("{\"a\":1,\"\\u0061\":2}", false, NULL); /* same key decoded */
	check("{\"a\":{\"x\":1},\"b\":{\"x\":1}}", true, NULL);
	check("[{\"a\":1},{\"a\":2}]", true, "[{\"a\":1},{\"a\":2}]");
}

/* An object of n keys "k<i>", its last key repeating key dup when >= 0. */
static char *
many_keys(size_t n, long dup)
{
	size_t cap = n * 24 + 16, len = 0, i;
	char *s = malloc(cap);

	assert_non_null(s);
	s[len++] = '{';
	for (i = 0; i < n; i++)
		len += (size_t)snprintf(s + len, cap - len, "%s\"k%zu\":%zu",
		    i > 0 ? "," : "",
		    (dup >= 0 && i == n - 1) ? (size_t)dup : (n - 1 - i), i);
	s[len++] = '}';
	s[len] = '\0';
	return s;
}

static void
test_large(void **state)
{
	struct jdoc *doc = NULL;
	const struct jdoc_value *root, *v;
	char *s, key[32];
	size_t i, n = 20000;

	(void)state;
	/* Big objects: sorted by qsort, a duplicate found among 20,000. */
	s = many_keys(n, -1);
	free(both(s, strlen(s), true));
	assert_int_equal(jdoc_parse(s, strlen(s), &doc), 0);
	root = jdoc_root(doc);
	assert_int_equal(jdoc_object_size(root), n);
	for (i = 0; i < n; i += 997) {
		(void)snprintf(key, sizeof(key), "k%zu", n - 1 - i);
		v = jdoc_get(root, key);
		assert_true(jdoc_is_integer(v));
		assert_int_equal(jdoc_integer(v), (long long)i);
		assert_string_equal(jdoc_object_member(root, i)->key, key);
	}
	assert_null(jdoc_get(root, "k20000"));
	assert_null(jdoc_get(root, "k"));
	jdoc_free(doc);
	free(s);
	s = many_keys(n, 7);
	free(both(s, strlen(s), false));
	free(s);
	s = many_keys(17, 3); /* just over the insertion sort */
	free(both(s, strlen(s), false));
	free(s);
	s = many_keys(16, 5);
	free(both(s, strlen(s), false));
	free(s);
	/* A long string, far over the first arena chunk. */
	s = malloc(3000010);
	assert_non_null(s);
	memcpy(s, "[\"", 2);
	memset(s + 2, 'x', 3000000);
	memcpy(s + 3000002, "\\n\"]", 5);
	free(both(s, strlen(s), true));
	free(s);
	/* Many small arrays: the value stack grows past its first size. */
	s = malloc(200002);
	assert_non_null(s);
	s[0] = '[';
	for (i = 0; i < 20000; i++)
		memcpy(s + 1 + 10 * i, "[1,[2,3]],", 10);
	memcpy(s + 1 + 10 * 20000 - 1, "]", 2);
	free(both(s, strlen(s), true));
	free(s);
}

/* depth arrays nested, with an object at the bottom. */
static char *
nested(size_t depth)
{
	char *s = malloc(2 * depth + 1);
	size_t i;

	assert_non_null(s);
	for (i = 0; i < depth - 1; i++) {
		s[i] = '[';
		s[2 * depth - 1 - i] = ']';
	}
	s[depth - 1] = '{';
	s[depth] = '}';
	s[2 * depth] = '\0';
	return s;
}

static void
test_depth(void **state)
{
	char *s;

	(void)state;
	s = nested(JDOC_DEPTH_MAX);
	free(both(s, strlen(s), true));
	free(s);
	s = nested(JDOC_DEPTH_MAX + 1);
	free(both(s, strlen(s), false));
	free(s);
	s = nested(100000);
	free(both(s, strlen(s), false));
	free(s);
}

static void
test_access(void **state)
{
	static const char text[] =
	    "{\"s\":\"caf\\u00e9\",\"i\":-5,\"r\":2.5,\"t\":true,\"f\":false,"
	    "\"n\":null,\"o\":{\"x\":[1]},\"a\":[]}";
	const struct jdoc_value *root, *o;
	struct jdoc *doc = NULL;
	static const char *const order[] = { "s", "i", "r", "t", "f", "n", "o",
		"a" };
	size_t i;

	(void)state;
	assert_int_equal(jdoc_parse(text, sizeof(text) - 1, &doc), 0);
	root = jdoc_root(doc);
	assert_true(jdoc_is_object(root));
	assert_string_equal(jdoc_string(jdoc_get(root, "s")), "caf\xc3\xa9");
	assert_int_equal(jdoc_string_len(jdoc_get(root, "s")), 5);
	assert_int_equal(jdoc_integer(jdoc_get(root, "i")), -5);
	assert_true(jdoc_real(jdoc_get(root, "r")) == 2.5);
	assert_true(jdoc_is_true(jdoc_get(root, "t")));
	assert_false(jdoc_is_true(jdoc_get(root, "f")));
	assert_int_equal(jdoc_get(root, "n")->type, JDOC_NULL);
	o = jdoc_get(root, "o");
	assert_true(jdoc_is_object(o));
	assert_int_equal(jdoc_get(o, "x")->type, JDOC_ARRAY);
	/* Wrong types and misses answer as for nothing. */
	assert_null(jdoc_string(jdoc_get(root, "i")));
	assert_int_equal(jdoc_string_len(NULL), 0);
	assert_int_equal(jdoc_integer(jdoc_get(root, "s")), 0);
	assert_true(jdoc_real(jdoc_get(root, "i")) == 0.0);
	assert_null(jdoc_get(root, "missing"));
	assert_null(jdoc_get(jdoc_get(root, "s"), "x"));
	assert_null(jdoc_get(NULL, "x"));
	assert_false(jdoc_is_object(NULL));
	assert_int_equal(jdoc_object_size(jdoc_get(root, "a")), 0);
	assert_null(jdoc_object_member(root, 8));
	/* Members in the text's order. */
	assert_int_equal(jdoc_object_size(root), 8);
	for (i = 0; i < 8; i++)
		assert_string_equal(jdoc_object_member(root, i)->key, order[i]);
	jdoc_free(doc);
	jdoc_free(NULL);
	/* The document owns its strings: the text may go. */
	{
		char *copy = strdup(text);
		const char *s;

		assert_non_null(copy);
		assert_int_equal(jdoc_parse(copy, strlen(copy), &doc), 0);
		memset(copy, 'z', strlen(copy));
		free(copy);
		s = jdoc_string(jdoc_get(jdoc_root(doc), "s"));
		assert_string_equal(s, "caf\xc3\xa9");
		jdoc_free(doc);
	}
}

/*
 * jansson's reader skips a NUL byte right after a number or a literal
 * (it takes the byte it gave back for an empty buffer): "[1\0]" loads.
 * RFC 8259 has no NUL outside strings; jdoc refuses it.
 */
static void
test_nul_bytes(void **state)
{
	static const char *const quirks[] = { "[1\0]", "[true\0]",
		"{\"a\":null\0}" };
	static const char *const both_refuse[] = { "[\0]", "[\"a\0\"]", "{\0}",
		"[1]\0" };
	json_error_t jerr;
	struct jdoc *doc = NULL;
	json_t *j;
	size_t i, len;

	(void)state;
	for (i = 0; i < sizeof(quirks) / sizeof(quirks[0]); i++) {
		len = strlen(quirks[i]) + 1 +
		    strlen(quirks[i] + strlen(quirks[i]) + 1);
		j = json_loadb(quirks[i], len, JSON_REJECT_DUPLICATES, &jerr);
		assert_non_null(j); /* the quirk, if jansson keeps it */
		json_decref(j);
		assert_int_equal(jdoc_parse(quirks[i], len, &doc), -EINVAL);
		assert_null(doc);
	}
	for (i = 0; i < sizeof(both_refuse) / sizeof(both_refuse[0]); i++) {
		len = strlen(both_refuse[i]) + 1 +
		    strlen(both_refuse[i] + strlen(both_refuse[i]) + 1);
		free(both(both_refuse[i], len, false));
	}
}

/* Every prefix of a Mailgun webhook body is refused, the whole accepted. */
static void
test_cut_everywhere(void **state)
{
	static const char body[] =
	    "{\"signature\":{\"timestamp\":\"1529006854\",\"token\":"
	    "\"a8ce0edb2dd8301dee6c2405235584e45aa91d1e9f979f3de0\","
	    "\"signature\":\"d2271d12299f6592d9d44cd9d250f0704e4674c30d79d07c"
	    "47a66f95ce71cf55\"},\"event-data\":{\"event\":\"failed\","
	    "\"severity\":\"permanent\",\"timestamp\":1521233195.375624,"
	    "\"id\":\"G9Bn5sl1TC6nu79C8C0bwg\",\"log-level\":\"error\","
	    "\"recipient\":\"alice@example.com\",\"delivery-status\":{"
	    "\"code\":550,\"message\":\"No such user \\u2014 \\\"alice\\\"\","
	    "\"attempt-no\":1,\"description\":\"\",\"session-seconds\":0.0},"
	    "\"flags\":{\"is-routed\":false,\"is-authenticated\":true},"
	    "\"message\":{\"headers\":{\"to\":\"Alice <alice@example.com>\","
	    "\"message-id\":\"20130503182626.18666.16540@example.com\"},"
	    "\"attachments\":[],\"size\":111},\"user-variables\":{"
	    "\"redrive-id\":\"42\"},\"tags\":[\"a\",\"b\"]}}";
	size_t i, n = sizeof(body) - 1;
	char *cut;

	(void)state;
	free(both(body, n, true));
	for (i = 0; i < n; i++) {
		cut = malloc(
		    i > 0 ? i : 1); /* exact size: ASan sees over-reads */
		assert_non_null(cut);
		memcpy(cut, body, i);
		free(both(cut, i, false));
		free(cut);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_grammar),
		cmocka_unit_test(test_numbers),
		cmocka_unit_test(test_strings),
		cmocka_unit_test(test_objects),
		cmocka_unit_test(test_large),
		cmocka_unit_test(test_depth),
		cmocka_unit_test(test_access),
		cmocka_unit_test(test_nul_bytes),
		cmocka_unit_test(test_cut_everywhere),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
