/*
 * Unit tests for core/log.c: the logfmt line (ts, level, msg, fields),
 * bare and quoted values, escaping of quotes, backslashes, control and
 * non-ASCII bytes, truncation of values and of whole lines, levels, and
 * one intact line per call from several threads at once.  Lines are
 * captured through log_set_fd() on a temporary file.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "redrive/log.h"

/* What the test's log lines went to. */
struct test_cap {
	int fd;
	int prev;
	char path[64];
	char *text; /* after test_cap_end(); malloc'd */
	size_t len;
};

static void
test_cap_begin(struct test_cap *c)
{
	memset(c, 0, sizeof(*c));
	snprintf(c->path, sizeof(c->path), "/tmp/redrive-test-log-XXXXXX");
	c->fd = mkstemp(c->path);
	assert_true(c->fd >= 0);
	c->prev = log_set_fd(c->fd);
}

/* Restores the previous fd and reads everything written. */
static void
test_cap_end(struct test_cap *c)
{
	off_t size;
	ssize_t n;

	assert_int_equal(log_set_fd(c->prev), c->fd);
	size = lseek(c->fd, 0, SEEK_END);
	assert_true(size >= 0);
	c->text = malloc((size_t)size + 1);
	assert_non_null(c->text);
	n = pread(c->fd, c->text, (size_t)size, 0);
	assert_int_equal(n, size);
	c->text[size] = '\0';
	c->len = (size_t)size;
	close(c->fd);
	unlink(c->path);
}

/*
 * Checks the "ts=YYYY-MM-DDTHH:MM:SS.mmmZ level=L " head of line and
 * returns what follows it.
 */
static const char *
test_check_head(const char *line, const char *level)
{
	static const char shape[] = "ts=dddd-dd-ddTdd:dd:dd.dddZ level=";
	size_t i;

	for (i = 0; i < sizeof(shape) - 1; i++) {
		if (shape[i] == 'd')
			assert_true(line[i] >= '0' && line[i] <= '9');
		else
			assert_int_equal(line[i], shape[i]);
	}
	line += sizeof(shape) - 1;
	assert_memory_equal(line, level, strlen(level));
	line += strlen(level);
	assert_int_equal(*line, ' ');
	return line + 1;
}

/* Logs one info line with one field and returns the part after msg. */
static char *
test_one_field(struct log_field f, char *out, size_t outlen)
{
	struct test_cap c;
	const char *rest;
	const char *m = "msg=\"m\" ";

	test_cap_begin(&c);
	log_emit(LOG_LEVEL_INFO, "m", (const struct log_field[]){ f, LF_END });
	test_cap_end(&c);
	rest = test_check_head(c.text, "info");
	assert_memory_equal(rest, m, strlen(m));
	rest += strlen(m);
	assert_true(c.len > 0 && c.text[c.len - 1] == '\n');
	snprintf(out, outlen, "%.*s",
	    (int)(c.len - 1 - (size_t)(rest - c.text)), rest);
	free(c.text);
	return out;
}

static void
test_log_line(void **state)
{
	struct test_cap c;
	const char *rest;

	(void)state;
	log_set_level(LOG_LEVEL_INFO);
	test_cap_begin(&c);
	log_info("message queued", LF_INT("id", 42), LF_STR("from", "a@b.c"),
	    LF_UINT("size", 1024), LF_END);
	test_cap_end(&c);
	rest = test_check_head(c.text, "info");
	assert_string_equal(
	    rest, "msg=\"message queued\" id=42 from=a@b.c size=1024\n");
	free(c.text);

	test_cap_begin(&c);
	log_error("store failed", LF_END);
	log_warn("slow", LF_DBL("rate", 0.25), LF_END);
	test_cap_end(&c);
	rest = test_check_head(c.text, "error");
	assert_memory_equal(rest, "msg=\"store failed\"\n", 19);
	rest = test_check_head(strchr(c.text, '\n') + 1, "warn");
	assert_string_equal(rest, "msg=\"slow\" rate=0.25\n");
	free(c.text);
}

static void
test_log_values(void **state)
{
	static const unsigned char bin[] = { 'a', 0, 'b', 0x80, 0xff };
	char out[2048];

	(void)state;
	log_set_level(LOG_LEVEL_INFO);
	/* Bare: only [A-Za-z0-9._:/@+-], non-empty. */
	assert_string_equal(
	    test_one_field(LF_STR("k", "Az09._:/@+-"), out, sizeof(out)),
	    "k=Az09._:/@+-");
	assert_string_equal(
	    test_one_field(LF_STR("k", "<a@b.c>"), out, sizeof(out)),
	    "k=\"<a@b.c>\"");
	assert_string_equal(
	    test_one_field(LF_STR("k", "two words"), out, sizeof(out)),
	    "k=\"two words\"");
	assert_string_equal(
	    test_one_field(LF_STR("k", "a=b"), out, sizeof(out)), "k=\"a=b\"");
	assert_string_equal(
	    test_one_field(LF_STR("k", ""), out, sizeof(out)), "k=\"\"");
	assert_string_equal(
	    test_one_field(LF_STR("k", NULL), out, sizeof(out)), "k=\"\"");
	/* Escapes. */
	assert_string_equal(
	    test_one_field(LF_STR("k", "say \"hi\""), out, sizeof(out)),
	    "k=\"say \\\"hi\\\"\"");
	assert_string_equal(
	    test_one_field(LF_STR("k", "a\\b"), out, sizeof(out)),
	    "k=\"a\\\\b\"");
	assert_string_equal(
	    test_one_field(LF_STR("k", "l1\r\nl2\t\x7f"), out, sizeof(out)),
	    "k=\"l1\\x0d\\x0al2\\x09\\x7f\"");
	assert_string_equal(
	    test_one_field(LF_STR("k", "caf\xc3\xa9"), out, sizeof(out)),
	    "k=\"caf\\xc3\\xa9\"");
	assert_string_equal(
	    test_one_field(LF_BYTES("k", bin, sizeof(bin)), out, sizeof(out)),
	    "k=\"a\\x00b\\x80\\xff\"");
	assert_string_equal(
	    test_one_field(LF_BYTES("k", "abc", 2), out, sizeof(out)), "k=ab");
	assert_string_equal(
	    test_one_field(LF_BYTES("k", NULL, 5), out, sizeof(out)), "k=\"\"");
	/* Numbers. */
	assert_string_equal(
	    test_one_field(LF_INT("k", INT64_MIN), out, sizeof(out)),
	    "k=-9223372036854775808");
	assert_string_equal(
	    test_one_field(LF_UINT("k", UINT64_MAX), out, sizeof(out)),
	    "k=18446744073709551615");
	assert_string_equal(
	    test_one_field(LF_DBL("k", 1e-9), out, sizeof(out)), "k=1e-09");
	/* Keys are never able to break the line. */
	assert_string_equal(
	    test_one_field(LF_STR("bad key=\"", "v"), out, sizeof(out)),
	    "bad_key__=v");
}

static void
test_log_msg_escaped(void **state)
{
	struct test_cap c;
	const char *rest;

	(void)state;
	log_set_level(LOG_LEVEL_INFO);
	test_cap_begin(&c);
	log_info("bad \"line\"\nnext", LF_END);
	log_info("plain", LF_END);
	test_cap_end(&c);
	rest = test_check_head(c.text, "info");
	assert_memory_equal(rest, "msg=\"bad \\\"line\\\"\\x0anext\"\n", 26);
	/* The msg is quoted even when it could be bare. */
	rest = test_check_head(strchr(c.text, '\n') + 1, "info");
	assert_string_equal(rest, "msg=\"plain\"\n");
	free(c.text);
}

static void
test_log_truncation(void **state)
{
	char src[LOG_VALUE_MAX + 50];
	char want[LOG_VALUE_MAX * 4 + 16];
	char out[4096];
	size_t i;

	(void)state;
	log_set_level(LOG_LEVEL_INFO);
	/* Exactly LOG_VALUE_MAX bytes: kept whole. */
	memset(src, 'a', LOG_VALUE_MAX);
	src[LOG_VALUE_MAX] = '\0';
	snprintf(want, sizeof(want), "k=%s", src);
	assert_string_equal(
	    test_one_field(LF_STR("k", src), out, sizeof(out)), want);
	/* One more: cut at LOG_VALUE_MAX source bytes, then "...". */
	memset(src, 'a', LOG_VALUE_MAX + 1);
	src[LOG_VALUE_MAX + 1] = '\0';
	src[LOG_VALUE_MAX] = '\0';
	snprintf(want, sizeof(want), "k=%s...", src);
	src[LOG_VALUE_MAX] = 'a';
	assert_string_equal(
	    test_one_field(LF_STR("k", src), out, sizeof(out)), want);
	/* Escapes count source bytes, not output bytes. */
	memset(src, '\n', sizeof(src) - 1);
	src[sizeof(src) - 1] = '\0';
	test_one_field(LF_STR("k", src), out, sizeof(out));
	assert_int_equal(strlen(out), 2 + 2 + LOG_VALUE_MAX * 4 + 3);
	assert_memory_equal(out + strlen(out) - 5, "a...\"", 5);
	for (i = 0; i < LOG_VALUE_MAX; i++)
		assert_memory_equal(out + 3 + i * 4, "\\x0a", 4);
}

/* A line that would overflow its buffer ends cleanly, marked. */
static void
test_log_long_line(void **state)
{
	char big[LOG_VALUE_MAX];
	struct test_cap c;
	char *nl;

	(void)state;
	memset(big, 0xff, sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	log_set_level(LOG_LEVEL_INFO);
	test_cap_begin(&c);
	log_info("wide", LF_STR("a", big), LF_STR("b", big), LF_STR("c", big),
	    LF_STR("d", big), LF_INT("after", 1), LF_END);
	test_cap_end(&c);
	nl = strchr(c.text, '\n');
	assert_non_null(nl);
	assert_true(nl == c.text + c.len - 1);
	assert_true(c.len <= 2048);
	assert_memory_equal(nl - 15, " truncated=true", 15);
	assert_non_null(strstr(c.text, " a=\""));
	assert_null(strstr(c.text, " after="));
	free(c.text);
}

static void
test_log_levels(void **state)
{
	struct test_cap c;
	enum log_level lv;

	(void)state;
	log_set_level(LOG_LEVEL_WARN);
	test_cap_begin(&c);
	log_debug("d", LF_END);
	log_info("i", LF_END);
	log_warn("w", LF_END);
	log_error("e", LF_END);
	test_cap_end(&c);
	assert_null(strstr(c.text, "msg=\"d\""));
	assert_null(strstr(c.text, "msg=\"i\""));
	assert_non_null(strstr(c.text, "level=warn msg=\"w\"\n"));
	assert_non_null(strstr(c.text, "level=error msg=\"e\"\n"));
	free(c.text);

	log_set_level(LOG_LEVEL_DEBUG);
	test_cap_begin(&c);
	log_debug("d", LF_END);
	test_cap_end(&c);
	assert_non_null(strstr(c.text, "level=debug msg=\"d\"\n"));
	free(c.text);
	log_set_level(LOG_LEVEL_INFO);

	assert_int_equal(log_level_parse("debug", &lv), 0);
	assert_int_equal(lv, LOG_LEVEL_DEBUG);
	assert_int_equal(log_level_parse("info", &lv), 0);
	assert_int_equal(lv, LOG_LEVEL_INFO);
	assert_int_equal(log_level_parse("warn", &lv), 0);
	assert_int_equal(lv, LOG_LEVEL_WARN);
	assert_int_equal(log_level_parse("ERROR", &lv), 0);
	assert_int_equal(lv, LOG_LEVEL_ERROR);
	assert_int_equal(log_level_parse("verbose", &lv), -EINVAL);
	assert_int_equal(log_level_parse("", &lv), -EINVAL);
	assert_int_equal(log_level_parse("info ", &lv), -EINVAL);
	assert_int_equal(log_level_parse(NULL, &lv), -EINVAL);
	log_reopen();
}

/* log_escape with every destination size: never half an escape. */
static void
test_log_escape(void **state)
{
	static const char src[] = "a\"b\\c\n\xe9z";
	char full[64];
	char dst[64];
	bool bound[64];
	size_t fl, len, i, n;

	(void)state;
	fl = log_escape(full, sizeof(full), src, sizeof(src) - 1, 100);
	assert_string_equal(full, "a\\\"b\\\\c\\x0a\\xe9z");
	assert_int_equal(fl, strlen(full));
	/* Where each escape sequence (or plain byte) of full starts. */
	memset(bound, 0, sizeof(bound));
	for (i = 0; i <= fl; i += full[i] != '\\' ? 1
		 : full[i + 1] == 'x'		  ? 4
						  : 2)
		bound[i] = true;
	assert_int_equal(log_escape(dst, 0, src, 3, 100), 0);
	for (len = 1; len <= fl + 1; len++) {
		memset(dst, 'X', sizeof(dst));
		n = log_escape(dst, len, src, sizeof(src) - 1, 100);
		assert_true(n < len);
		assert_int_equal(dst[n], '\0');
		assert_int_equal(strlen(dst), n);
		/* Whatever fits is a prefix of the full escape, whole
		 * sequences only, followed by the dots. */
		i = n;
		while (i > 0 && dst[i - 1] == '.')
			i--;
		assert_memory_equal(dst, full, i);
		assert_true(bound[i]);
		if (len > fl)
			assert_string_equal(dst, full);
		else if (len >= 4)
			assert_memory_equal(dst + n - 3, "...", 3);
	}
	/* max cuts at source bytes. */
	n = log_escape(dst, sizeof(dst), "abcdef", 6, 3);
	assert_string_equal(dst, "abc...");
	assert_int_equal(n, 6);
	n = log_escape(dst, sizeof(dst), "abc", 3, 3);
	assert_string_equal(dst, "abc");
	assert_int_equal(n, 3);
	n = log_escape(dst, sizeof(dst), "\n\n", 2, 1);
	assert_string_equal(dst, "\\x0a...");
	assert_int_equal(n, 7);
	n = log_escape(dst, sizeof(dst), NULL, 4, 10);
	assert_string_equal(dst, "");
	assert_int_equal(n, 0);
}

static void
test_log_errno_kept(void **state)
{
	struct test_cap c;

	(void)state;
	test_cap_begin(&c);
	errno = ENOSPC;
	log_info("x", LF_END);
	assert_int_equal(errno, ENOSPC);
	test_cap_end(&c);
	free(c.text);
	/* A bad fd drops the line, silently. */
	c.prev = log_set_fd(-1);
	errno = EPERM;
	log_info("lost", LF_END);
	assert_int_equal(errno, EPERM);
	assert_int_equal(log_set_fd(c.prev), -1);
}

#define TEST_THREADS 4
#define TEST_LINES 300

static void *
test_log_thread(void *arg)
{
	char v[200];
	int i;

	memset(v, 'a' + (int)(intptr_t)arg, sizeof(v) - 1);
	v[sizeof(v) - 1] = '\0';
	for (i = 0; i < TEST_LINES; i++)
		log_info("t", LF_INT("thread", (intptr_t)arg), LF_INT("i", i),
		    LF_STR("v", v), LF_END);
	return NULL;
}

/* Lines from several threads never interleave. */
static void
test_log_threads(void **state)
{
	pthread_t th[TEST_THREADS];
	struct test_cap c;
	char *line, *save = NULL;
	int count = 0;
	intptr_t t;

	(void)state;
	log_set_level(LOG_LEVEL_INFO);
	test_cap_begin(&c);
	for (t = 0; t < TEST_THREADS; t++)
		assert_int_equal(
		    pthread_create(&th[t], NULL, test_log_thread, (void *)t),
		    0);
	for (t = 0; t < TEST_THREADS; t++)
		pthread_join(th[t], NULL);
	test_cap_end(&c);
	for (line = strtok_r(c.text, "\n", &save); line != NULL;
	     line = strtok_r(NULL, "\n", &save)) {
		const char *rest = test_check_head(line, "info");
		char want[300];
		long th_no;
		char *end;

		assert_memory_equal(rest, "msg=\"t\" thread=", 15);
		th_no = strtol(rest + 15, &end, 10);
		assert_true(th_no >= 0 && th_no < TEST_THREADS);
		memset(want, 'a' + (int)th_no, 199);
		want[199] = '\0';
		assert_non_null(strstr(end, " v="));
		assert_string_equal(strstr(end, " v=") + 3, want);
		count++;
	}
	assert_int_equal(count, TEST_THREADS * TEST_LINES);
	free(c.text);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_log_line),
		cmocka_unit_test(test_log_values),
		cmocka_unit_test(test_log_msg_escaped),
		cmocka_unit_test(test_log_truncation),
		cmocka_unit_test(test_log_long_line),
		cmocka_unit_test(test_log_levels),
		cmocka_unit_test(test_log_escape),
		cmocka_unit_test(test_log_errno_kept),
		cmocka_unit_test(test_log_threads),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
