/*
 * Unit tests for relay/smtp_auth.c: base64 responses (padding, bad
 * characters, input cut at every position), PLAIN messages (RFC 4616,
 * cut at every position), the users file (comments, FILE:LINE errors),
 * crypt verification and the threadpool check with an orphaned request.
 */
#include <crypt.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <uv.h>

#include "redrive/smtp_auth.h"

static void
test_b64_valid(void **state)
{
	char out[64];
	size_t n;

	(void)state;
	assert_int_equal(smtp_auth_b64_decode("", 0, out, sizeof(out), &n), 0);
	assert_int_equal(n, 0);
	assert_int_equal(
	    smtp_auth_b64_decode("YQ==", 4, out, sizeof(out), &n), 0);
	assert_int_equal(n, 1);
	assert_string_equal(out, "a");
	assert_int_equal(
	    smtp_auth_b64_decode("YWI=", 4, out, sizeof(out), &n), 0);
	assert_int_equal(n, 2);
	assert_string_equal(out, "ab");
	assert_int_equal(
	    smtp_auth_b64_decode("YWJj", 4, out, sizeof(out), &n), 0);
	assert_int_equal(n, 3);
	assert_string_equal(out, "abc");
	/* NUL bytes inside are kept and counted. */
	assert_int_equal(smtp_auth_b64_decode(
			     "AGFsaWNlAHNlY3JldA==", 20, out, sizeof(out), &n),
	    0);
	assert_int_equal(n, 13);
	assert_memory_equal(out, "\0alice\0secret", 13);
}

static void
test_b64_invalid(void **state)
{
	static const char *bad[] = { "Y", "YQ", "YQ=", "YQ=a", "Y===", "=AAA",
		"YQ==YQ==", "YW J", "YWJ\n", "YW*j", "YWJj ", "Y\0Jj" };
	char out[64];
	size_t i, n;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		size_t len =
		    i == sizeof(bad) / sizeof(bad[0]) - 1 ? 4 : strlen(bad[i]);

		assert_int_equal(
		    smtp_auth_b64_decode(bad[i], len, out, sizeof(out), &n),
		    -EINVAL);
	}
	/* Too long for the output buffer. */
	assert_int_equal(
	    smtp_auth_b64_decode("YWJj", 4, out, 3, &n), -EOVERFLOW);
	assert_int_equal(smtp_auth_b64_decode("YWJj", 4, out, 4, &n), 0);
}

/* Every prefix: a length not a multiple of 4 is refused, others decode. */
static void
test_b64_cut(void **state)
{
	const char *enc = "aGVsbG8gd29ybGQhIQ==";
	const char *plain = "hello world!!";
	char out[64];
	size_t cut, n;
	int rc;

	(void)state;
	for (cut = 0; cut <= strlen(enc); cut++) {
		rc = smtp_auth_b64_decode(enc, cut, out, sizeof(out), &n);
		if (cut % 4 != 0) {
			assert_int_equal(rc, -EINVAL);
			continue;
		}
		assert_int_equal(rc, 0);
		if (cut < strlen(enc)) {
			assert_int_equal(n, cut / 4 * 3);
			assert_memory_equal(out, plain, n);
		} else {
			assert_int_equal(n, strlen(plain));
			assert_string_equal(out, plain);
		}
	}
}

static void
test_plain_split(void **state)
{
	char user[SMTP_AUTH_USER_MAX + 1], pass[SMTP_AUTH_PASS_MAX + 1];
	const char msg[] = "\0alice\0secret";
	const char same[] = "alice\0alice\0pw";
	size_t cut;

	(void)state;
	assert_int_equal(smtp_auth_plain_split(msg, sizeof(msg) - 1, user,
			     sizeof(user), pass, sizeof(pass)),
	    0);
	assert_string_equal(user, "alice");
	assert_string_equal(pass, "secret");
	assert_int_equal(smtp_auth_plain_split(same, sizeof(same) - 1, user,
			     sizeof(user), pass, sizeof(pass)),
	    0);
	assert_string_equal(pass, "pw");
	/* Proxy authorization, empty parts, extra NULs: refused. */
	assert_int_equal(smtp_auth_plain_split("bob\0alice\0pw", 12, user,
			     sizeof(user), pass, sizeof(pass)),
	    -EINVAL);
	assert_int_equal(smtp_auth_plain_split("\0\0pw", 4, user, sizeof(user),
			     pass, sizeof(pass)),
	    -EINVAL);
	assert_int_equal(smtp_auth_plain_split("\0alice\0", 7, user,
			     sizeof(user), pass, sizeof(pass)),
	    -EINVAL);
	assert_int_equal(smtp_auth_plain_split("\0alice\0p\0w", 10, user,
			     sizeof(user), pass, sizeof(pass)),
	    -EINVAL);
	assert_int_equal(smtp_auth_plain_split("\0al ice\0pw", 10, user,
			     sizeof(user), pass, sizeof(pass)),
	    -EINVAL);
	assert_int_equal(smtp_auth_plain_split("alicepw", 7, user, sizeof(user),
			     pass, sizeof(pass)),
	    -EINVAL);
	/* Cut at every position: only cuts inside the password succeed. */
	for (cut = 0; cut < sizeof(msg) - 1; cut++) {
		int rc = smtp_auth_plain_split(
		    msg, cut, user, sizeof(user), pass, sizeof(pass));

		if (cut > 7) {
			assert_int_equal(rc, 0);
			assert_int_equal(strlen(pass), cut - 7);
			assert_memory_equal(pass, "secret", cut - 7);
		} else {
			assert_int_equal(rc, -EINVAL);
		}
	}
	/* A password that does not fit. */
	assert_int_equal(smtp_auth_plain_split(
			     msg, sizeof(msg) - 1, user, sizeof(user), pass, 6),
	    -EINVAL);
}

static void
test_user_valid(void **state)
{
	char longname[SMTP_AUTH_USER_MAX + 2];

	(void)state;
	assert_true(smtp_auth_user_valid("alice@example.com", 17));
	assert_false(smtp_auth_user_valid("", 0));
	assert_false(smtp_auth_user_valid("a b", 3));
	assert_false(smtp_auth_user_valid("a:b", 3));
	assert_false(smtp_auth_user_valid("a\tb", 3));
	assert_false(smtp_auth_user_valid("a\x7f", 2));
	memset(longname, 'a', sizeof(longname));
	assert_true(smtp_auth_user_valid(longname, SMTP_AUTH_USER_MAX));
	assert_false(smtp_auth_user_valid(longname, SMTP_AUTH_USER_MAX + 1));
}

/* Makes a crypt hash of pw with the given method prefix. */
static void
test_hash(const char *prefix, const char *pw, char *out, size_t outlen)
{
	char setting[CRYPT_GENSALT_OUTPUT_SIZE];
	const char *h;

	assert_non_null(crypt_gensalt_rn(
	    prefix, 0, NULL, 0, setting, (int)sizeof(setting)));
	h = crypt(pw, setting);
	assert_non_null(h);
	assert_true(strlen(h) < outlen);
	snprintf(out, outlen, "%s", h);
}

/* Copies tmpl into out with every '@' replaced by hash. */
static void
test_subst(char *out, size_t outlen, const char *tmpl, const char *hash)
{
	size_t n = 0, hl = strlen(hash);

	for (; *tmpl != '\0'; tmpl++) {
		if (*tmpl == '@') {
			assert_true(n + hl < outlen);
			memcpy(out + n, hash, hl);
			n += hl;
		} else {
			assert_true(n + 1 < outlen);
			out[n++] = *tmpl;
		}
	}
	out[n] = '\0';
}

/* Writes text to a fresh temp file; path receives its name. */
static void
test_file(char *path, size_t pathlen, const char *text)
{
	int fd;

	snprintf(path, pathlen, "/tmp/test_smtp_auth.XXXXXX");
	fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
}

static void
test_users_file(void **state)
{
	char y[CRYPT_OUTPUT_SIZE], s6[CRYPT_OUTPUT_SIZE], text[2048];
	char path[64], err[512];
	struct smtp_auth_users *u = NULL;

	(void)state;
	test_hash("$y$", "yes", y, sizeof(y));
	test_hash("$6$", "sha", s6, sizeof(s6));
	snprintf(text, sizeof(text), "# users\n\nalice:%s\r\nbob:%s\n# end\n",
	    y, s6);
	test_file(path, sizeof(path), text);
	assert_int_equal(smtp_auth_users_load(path, &u, err, sizeof(err)), 0);
	assert_int_equal(smtp_auth_users_count(u), 2);
	assert_true(smtp_auth_verify("yes", y));
	assert_false(smtp_auth_verify("Yes", y));
	assert_true(smtp_auth_verify("sha", s6));
	assert_false(smtp_auth_verify("", s6));
	assert_false(smtp_auth_verify("x", "*"));
	smtp_auth_users_free(u);
	unlink(path);

	struct {
		const char *fmt;
		const char *want;
	} bad[] = {
		{ "alice:@\nnocolon\n", ":2: expected user:crypt-hash" },
		{ "alice:@\nalice:@\n", ":2: user named twice" },
		{ "a b:@\n", ":1: bad user name" },
		{ ":@\n", ":1: bad user name" },
		{ "# c\nalice:plain@\n", ":2: bad hash" },
		{ "alice:$1$abc$x\n", ":1: hash method" },
		{ "alice:@ x\n", ":1: bad hash" },
	};
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char want[128];

		test_subst(text, sizeof(text), bad[i].fmt, y);
		test_file(path, sizeof(path), text);
		u = NULL;
		assert_int_equal(
		    smtp_auth_users_load(path, &u, err, sizeof(err)), -EINVAL);
		assert_null(u);
		snprintf(want, sizeof(want), "%s%s", path, bad[i].want);
		if (strncmp(err, want, strlen(want)) != 0)
			fail_msg(
			    "case %zu: got '%s', want '%s...'", i, err, want);
		unlink(path);
	}
	assert_int_equal(
	    smtp_auth_users_load("/nonexistent/users", &u, err, sizeof(err)),
	    -ENOENT);
	assert_non_null(strstr(err, "/nonexistent/users"));
}

struct test_check {
	int calls;
	bool ok;
};

static void
test_check_cb(void *arg, bool ok)
{
	struct test_check *c = arg;

	c->calls++;
	c->ok = ok;
}

static void
test_check_threadpool(void **state)
{
	char h[CRYPT_OUTPUT_SIZE], text[1024], path[64], err[256];
	struct smtp_auth_users *u = NULL;
	struct smtp_auth_req *r = NULL;
	struct test_check good = { 0, false }, bad = { 0, true },
			  unknown = { 0, true }, orphan = { 0, false };
	uv_loop_t loop;

	(void)state;
	test_hash("$y$", "pw", h, sizeof(h));
	snprintf(text, sizeof(text), "alice:%s\n", h);
	test_file(path, sizeof(path), text);
	assert_int_equal(smtp_auth_users_load(path, &u, err, sizeof(err)), 0);
	unlink(path);
	assert_int_equal(uv_loop_init(&loop), 0);
	assert_int_equal(
	    smtp_auth_check(&loop, u, "alice", "pw", test_check_cb, &good, &r),
	    0);
	assert_non_null(r);
	assert_int_equal(
	    smtp_auth_check(&loop, u, "alice", "pX", test_check_cb, &bad, &r),
	    0);
	assert_int_equal(smtp_auth_check(&loop, u, "nobody", "pw",
			     test_check_cb, &unknown, &r),
	    0);
	assert_int_equal(smtp_auth_check(&loop, u, "alice", "pw", test_check_cb,
			     &orphan, &r),
	    0);
	smtp_auth_orphan(r);
	/* The table may go before the requests end: they hold copies. */
	smtp_auth_users_free(u);
	assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
	assert_int_equal(good.calls, 1);
	assert_true(good.ok);
	assert_int_equal(bad.calls, 1);
	assert_false(bad.ok);
	assert_int_equal(unknown.calls, 1);
	assert_false(unknown.ok);
	assert_int_equal(orphan.calls, 0);
	assert_int_equal(uv_loop_close(&loop), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_b64_valid),
		cmocka_unit_test(test_b64_invalid),
		cmocka_unit_test(test_b64_cut),
		cmocka_unit_test(test_plain_split),
		cmocka_unit_test(test_user_valid),
		cmocka_unit_test(test_users_file),
		cmocka_unit_test(test_check_threadpool),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
