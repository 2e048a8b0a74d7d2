/*
 * test_mailgun_parse: the pure half of the Mailgun client.  "try again
 * after" in both of Mailgun's forms, X-RateLimit-Reset in both units, and
 * the classification of every kind of answer FACTS.md records (the 401
 * text/plain "Forbidden", the 200 "Mailgun Magnificent API" page, 200
 * without an id, 420/429 with their hints, 5xx, other 4xx), on raw bytes
 * that are not NUL-terminated and cut at every position.
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

#include "redrive/mailgun.h"
#include "redrive/timeutil.h"

/* 2021-12-20T20:33:21Z, 2025-08-25T07:00:31Z, 2023-02-22T10:04:01Z. */
#define T_20211220 1640032401000LL
#define T_20250825 1756105231000LL
#define T_20230222 1677060241000LL
#define NOW 1700000000000LL

/* A heap copy of s without its NUL, so that ASan sees any over-read. */
static char *
raw(const char *s, size_t len)
{
	char *p = malloc(len > 0 ? len : 1);

	assert_non_null(p);
	memcpy(p, s, len);
	return p;
}

/* A heap copy of the first len bytes of s, NUL-terminated right there. */
static char *
cut(const char *s, size_t len)
{
	char *p = malloc(len + 1);

	assert_non_null(p);
	memcpy(p, s, len);
	p[len] = '\0';
	return p;
}

/* Copies the bytes of s, without its NUL, to dst. */
static void
put(char *dst, const char *s)
{
	while (*s != '\0')
		*dst++ = *s++;
}

/* Classifies a string body (not NUL-terminated when handed over). */
static int
classify(long status, const char *ctype, const char *body, const char *rl_reset,
    const char *retry_after, struct mailgun_result *r)
{
	size_t len = strlen(body);
	char *b = raw(body, len);
	int rc;

	rc = mailgun_classify(
	    status, ctype, b, len, rl_reset, retry_after, NOW, r);
	free(b);
	return rc;
}

static void
test_try_again_date(void **state)
{
	int64_t at = 0;

	(void)state;
	assert_int_equal(mailgun_parse_try_again(
			     "Domain example.com is not allowed to send: "
			     "request limit exceeded, try again after Mon, 20 "
			     "Dec 2021 20:33:21 UTC",
			     NOW, &at),
	    0);
	assert_int_equal(at, T_20211220);
	at = 0;
	assert_int_equal(mailgun_parse_try_again(
			     "Domain mail.cslpay.io is not allowed to send: "
			     "recipient limit exceeded, try again after Mon, "
			     "25 Aug 2025 07:00:31 UTC",
			     NOW, &at),
	    0);
	assert_int_equal(at, T_20250825);
	/* A sentence may go on after the date. */
	at = 0;
	assert_int_equal(mailgun_parse_try_again("recipient limit exceeded, "
						 "try again after Wed, 22 Feb "
						 "2023 10:04:01 UTC. Thanks",
			     NOW, &at),
	    0);
	assert_int_equal(at, T_20230222);
	/* Without the day name, and in another case. */
	at = 0;
	assert_int_equal(
	    mailgun_parse_try_again(
		"Try Again After 20 Dec 2021 20:33:21 UTC", NOW, &at),
	    0);
	assert_int_equal(at, T_20211220);
}

static void
test_try_again_seconds(void **state)
{
	int64_t at = 0;

	(void)state;
	assert_int_equal(mailgun_parse_try_again(
			     "Domain example.com is not allowed to send: "
			     "account-requests-per-sec limit exceeded, try "
			     "again after 120 seconds",
			     NOW, &at),
	    0);
	assert_int_equal(at, NOW + 120000);
	at = 0;
	assert_int_equal(
	    mailgun_parse_try_again("try again after 1 second", NOW, &at), 0);
	assert_int_equal(at, NOW + 1000);
	at = 0;
	assert_int_equal(
	    mailgun_parse_try_again("try again after 0 seconds.", NOW, &at), 0);
	assert_int_equal(at, NOW);
}

static void
test_try_again_garbage(void **state)
{
	static const char *const bad[] = {
		"",
		"request limit exceeded",
		"try again later",
		"try again after",
		"try again after ",
		"try again after soon",
		"try again after 12 minutes",
		"try again after 12",
		"try again after 12 s",
		"try again after -5 seconds",
		"try again after 99999999999999999999 seconds",
		"try again after 1000000001 seconds",
		"try again after Mon, 99 Foo 2021 20:33:21 UTC",
		"try again after Mon, 20 Dec 2021 25:61:99 UTC",
		"try again after Mon,",
	};
	char long_date[300];
	int64_t at = 42;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(
		    mailgun_parse_try_again(bad[i], NOW, &at), -ENOENT);
		assert_int_equal(at, 42);
	}
	/* A "date" longer than any date, with and without spaces. */
	(void)snprintf(long_date, sizeof(long_date), "try again after ");
	memset(long_date + 16, 'x', 200);
	long_date[216] = '\0';
	assert_int_equal(mailgun_parse_try_again(long_date, NOW, &at), -ENOENT);
	for (i = 16; i < 216; i += 2)
		long_date[i] = ' ';
	assert_int_equal(mailgun_parse_try_again(long_date, NOW, &at), -ENOENT);
	assert_int_equal(at, 42);
	assert_int_equal(mailgun_parse_try_again(NULL, NOW, &at), -ENOENT);
}

/*
 * Every prefix of a seconds hint: a hint exists exactly when " second" is
 * complete; no prefix of a date hint reads past its end or crashes, and
 * the whole one gives the date.
 */
static void
test_try_again_cut(void **state)
{
	static const char secs[] = "limit exceeded, try again after 120 "
				   "seconds";
	static const char date[] = "limit exceeded, try again after Mon, 20 "
				   "Dec 2021 20:33:21 UTC";
	size_t full = strlen(secs),
	       need = strlen("limit exceeded, try again "
			     "after 120 second");
	size_t i;

	(void)state;
	for (i = 0; i <= full; i++) {
		char *p = cut(secs, i);
		int64_t at = 0;
		int rc = mailgun_parse_try_again(p, NOW, &at);

		if (i >= need) {
			assert_int_equal(rc, 0);
			assert_int_equal(at, NOW + 120000);
		} else
			assert_int_equal(rc, -ENOENT);
		free(p);
	}
	full = strlen(date);
	for (i = 0; i <= full; i++) {
		char *p = cut(date, i);
		int64_t at = 0;
		int rc = mailgun_parse_try_again(p, NOW, &at);

		assert_true(rc == 0 || rc == -ENOENT);
		if (i == full) {
			assert_int_equal(rc, 0);
			assert_int_equal(at, T_20211220);
		}
		if (i < strlen("limit exceeded, try again after Mon, 20 Dec "
			       "2021 20:33"))
			assert_int_equal(rc, -ENOENT);
		free(p);
	}
}

static void
test_ratelimit_reset(void **state)
{
	char buf[40];
	int64_t at = 0;

	(void)state;
	/* The real recording: epoch milliseconds. */
	assert_int_equal(
	    mailgun_parse_ratelimit_reset("1620637982656", &at), 0);
	assert_int_equal(at, 1620637982656LL);
	assert_string_equal(time_format_rfc3339_ms(at, buf, sizeof(buf)),
	    "2021-05-10T09:13:02.656Z");
	/* mailgun-go's reading: epoch seconds. */
	at = 0;
	assert_int_equal(mailgun_parse_ratelimit_reset("1620637982", &at), 0);
	assert_int_equal(at, 1620637982000LL);
	at = 0;
	assert_int_equal(
	    mailgun_parse_ratelimit_reset(" 1620637982 \r\n", &at), 0);
	assert_int_equal(at, 1620637982000LL);
	/* 10^12 itself is still seconds; one more is milliseconds. */
	assert_int_equal(
	    mailgun_parse_ratelimit_reset("1000000000000", &at), 0);
	assert_int_equal(at, 1000000000000000LL);
	assert_int_equal(
	    mailgun_parse_ratelimit_reset("1000000000001", &at), 0);
	assert_int_equal(at, 1000000000001LL);
}

static void
test_ratelimit_reset_garbage(void **state)
{
	static const char *const bad[] = {
		"",
		"   ",
		"abc",
		"-5",
		"+5",
		"12x",
		"1.5",
		"0",
		"0x10",
		"1620637982 1",
		"99999999999999999999",
		"9223372036854775808",
		"123456789012345678901234567890123456789",
	};
	int64_t at = 42;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(
		    mailgun_parse_ratelimit_reset(bad[i], &at), -EINVAL);
		assert_int_equal(at, 42);
	}
	assert_int_equal(mailgun_parse_ratelimit_reset(NULL, &at), -EINVAL);
}

static void
test_classify_ok(void **state)
{
	struct mailgun_result r;

	(void)state;
	/* The real messages.mime answer (MG-RUBY send_message.yml). */
	assert_int_equal(
	    classify(200, "application/json",
		"{\"id\": \"<20160107220803.17329.90097@DOMAIN.TEST>\", "
		"\"message\": \"Queued. Thank you.\"}",
		NULL, NULL, &r),
	    0);
	assert_int_equal(r.outcome, MAILGUN_OK);
	assert_int_equal(r.http_status, 200);
	assert_string_equal(r.id, "20160107220803.17329.90097@DOMAIN.TEST");
	assert_string_equal(r.message, "Queued. Thank you.");
	assert_int_equal(r.retry_at, 0);
	mailgun_result_clear(&r);
	assert_null(r.id);
	assert_null(r.message);
	mailgun_result_clear(&r);

	/* Already bare. */
	assert_int_equal(classify(200, "application/json",
			     "{\"message\":\"Queued. Thank you.\","
			     "\"id\":\"20111114174239.25659.5817@samples."
			     "mailgun.org\"}",
			     NULL, NULL, &r),
	    0);
	assert_int_equal(r.outcome, MAILGUN_OK);
	assert_string_equal(r.id,
	    "20111114174239.25659.5817@samples.mailgun."
	    "org");
	mailgun_result_clear(&r);
	mailgun_result_clear(NULL);
}

static void
test_classify_magnificent(void **state)
{
	struct mailgun_result r;

	(void)state;
	assert_int_equal(classify(200, "text/html; charset=utf-8",
			     "Mailgun Magnificent API", NULL, NULL, &r),
	    0);
	assert_int_equal(r.outcome, MAILGUN_PAUSE);
	assert_null(r.id);
	assert_non_null(strstr(r.message, "api_base looks wrong"));
	assert_non_null(strstr(r.message, "Mailgun Magnificent API"));
	mailgun_result_clear(&r);

	/* Any other 200 that is not a JSON object: the same. */
	assert_int_equal(
	    classify(200, NULL, "[\"id\", \"x\"]", NULL, NULL, &r), 0);
	assert_int_equal(r.outcome, MAILGUN_PAUSE);
	mailgun_result_clear(&r);
	assert_int_equal(classify(200, NULL, "", NULL, NULL, &r), 0);
	assert_int_equal(r.outcome, MAILGUN_PAUSE);
	assert_non_null(strstr(r.message, "api_base looks wrong"));
	mailgun_result_clear(&r);

	/* A redirect is not the API either. */
	assert_int_equal(
	    classify(301, "text/html", "Moved", NULL, NULL, &r), 0);
	assert_int_equal(r.outcome, MAILGUN_PAUSE);
	mailgun_result_clear(&r);
}

static void
test_classify_200_without_id(void **state)
{
	static const char *const bodies[] = {
		"{\"message\": \"Queued. Thank you.\"}",
		"{\"id\": \"\", \"message\": \"Queued. Thank you.\"}",
		"{\"id\": \"<>\", \"message\": \"Queued. Thank you.\"}",
		"{\"id\": 42}",
		"{\"id\": null}",
		"{}",
	};
	struct mailgun_result r;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
		assert_int_equal(classify(200, "application/json", bodies[i],
				     NULL, NULL, &r),
		    0);
		assert_int_equal(r.outcome, MAILGUN_RETRY);
		assert_null(r.id);
		assert_non_null(strstr(r.message, "without a message id"));
		mailgun_result_clear(&r);
	}
}

static void
test_classify_pause(void **state)
{
	struct mailgun_result r;

	(void)state;
	/* A bad key: text/plain, not JSON (exceptions-invalid-api-key.yml). */
	assert_int_equal(classify(401, "text/plain; charset=utf-8", "Forbidden",
			     NULL, NULL, &r),
	    0);
	assert_int_equal(r.outcome, MAILGUN_PAUSE);
	assert_int_equal(r.http_status, 401);
	assert_string_equal(r.message, "Forbidden");
	mailgun_result_clear(&r);
	assert_int_equal(
	    classify(401, "text/plain", "Forbidden\r\n", NULL, NULL, &r), 0);
	assert_string_equal(r.message, "Forbidden");
	mailgun_result_clear(&r);

	assert_int_equal(classify(403, "application/json",
			     "{\"message\":\"Domain DOMAIN.TEST is not allowed "
			     "to send: Sandbox subdomains are for test "
			     "purposes only.\"}",
			     NULL, NULL, &r),
	    0);
	assert_int_equal(r.outcome, MAILGUN_PAUSE);
	assert_string_equal(r.message,
	    "Domain DOMAIN.TEST is not allowed to "
	    "send: Sandbox subdomains are for test "
	    "purposes only.");
	mailgun_result_clear(&r);

	assert_int_equal(classify(404, "application/json",
			     "{\"message\": \"Domain not found: example.com\"}",
			     NULL, NULL, &r),
	    0);
	assert_int_equal(r.outcome, MAILGUN_PAUSE);
	assert_string_equal(r.message, "Domain not found: example.com");
	mailgun_result_clear(&r);

	/* Another 404 (an expired storage key) fails the message. */
	assert_int_equal(
	    classify(404, "application/json",
		"{\"message\": \"Message not found\"}", NULL, NULL, &r),
	    0);
	assert_int_equal(r.outcome, MAILGUN_REJECT);
	assert_string_equal(r.message, "Message not found");
	mailgun_result_clear(&r);
}

static void
test_classify_rate_limits(void **state)
{
	struct mailgun_result r;

	(void)state;
	/* 420, undocumented, with a date (mailgun-java #50). */
	assert_int_equal(classify(420, "application/json",
			     "{\"message\":\"Domain mail.cslpay.io is not "
			     "allowed to send: recipient limit exceeded, try "
			     "again after Mon, 25 Aug 2025 07:00:31 UTC\"}",
			     NULL, NULL, &r),
	    0);
	assert_int_equal(r.outcome, MAILGUN_RETRY);
	assert_int_equal(r.retry_at, T_20250825);
	assert_int_equal(r.transport, 0);
	mailgun_result_clear(&r);

	/* 429 in seconds; the text wins over both headers. */
	assert_int_equal(classify(429, "application/json",
			     "{\"message\":\"Domain example.com is not allowed "
			     "to send: account-requests-per-sec limit "
			     "exceeded, try again after 120 seconds\"}",
			     "1620637982656", "5", &r),
	    0);
	assert_int_equal(r.outcome, MAILGUN_RETRY);
	assert_int_equal(r.retry_at, NOW + 120000);
	mailgun_result_clear(&r);

	/* No text hint: X-RateLimit-Reset, in ms, then in s. */
	assert_int_equal(classify(429, "application/json",
			     "{\"message\":\"request limit exceeded\"}",
			     "1620637982656", "5", &r),
	    0);
	assert_int_equal(r.retry_at, 1620637982656LL);
	mailgun_result_clear(&r);
	assert_int_equal(classify(429, NULL, "{\"message\":\"limit\"}",
			     "1620637982", NULL, &r),
	    0);
	assert_int_equal(r.retry_at, 1620637982000LL);
	mailgun_result_clear(&r);

	/* Garbage reset: Retry-After, in seconds or as an HTTP date. */
	assert_int_equal(
	    classify(429, NULL, "{\"message\":\"limit\"}", "soon", " 30 ", &r),
	    0);
	assert_int_equal(r.retry_at, NOW + 30000);
	mailgun_result_clear(&r);
	assert_int_equal(classify(429, NULL, "{\"message\":\"limit\"}", NULL,
			     "Mon, 20 Dec 2021 20:33:21 GMT", &r),
	    0);
	assert_int_equal(r.retry_at, T_20211220);
	mailgun_result_clear(&r);

	/* No usable hint at all. */
	assert_int_equal(
	    classify(429, NULL, "{\"message\":\"limit\"}", "x", "later", &r),
	    0);
	assert_int_equal(r.outcome, MAILGUN_RETRY);
	assert_int_equal(r.retry_at, 0);
	mailgun_result_clear(&r);
}

static void
test_classify_retry(void **state)
{
	static const long codes[] = { 408, 500, 502, 503, 504, 599 };
	struct mailgun_result r;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
		assert_int_equal(classify(codes[i], "application/json",
				     "{\"message\":\"Internal error\"}",
				     "1620637982656", NULL, &r),
		    0);
		assert_int_equal(r.outcome, MAILGUN_RETRY);
		assert_int_equal(r.http_status, codes[i]);
		/* X-RateLimit-Reset is a window, not a hint, outside 429. */
		assert_int_equal(r.retry_at, 0);
		assert_string_equal(r.message, "Internal error");
		mailgun_result_clear(&r);
	}
	assert_int_equal(
	    classify(503, "text/html", "<html>Service Unavailable</html>\n",
		NULL, "7", &r),
	    0);
	assert_int_equal(r.outcome, MAILGUN_RETRY);
	assert_int_equal(r.retry_at, NOW + 7000);
	assert_string_equal(r.message, "<html>Service Unavailable</html>");
	mailgun_result_clear(&r);

	assert_int_equal(classify(502, NULL, "", NULL, NULL, &r), 0);
	assert_int_equal(r.outcome, MAILGUN_RETRY);
	assert_string_equal(r.message, "HTTP 502 with an empty body");
	mailgun_result_clear(&r);
}

static void
test_classify_reject(void **state)
{
	static const long codes[] = { 400, 402, 405, 413, 422, 499 };
	struct mailgun_result r;
	size_t i;

	(void)state;
	assert_int_equal(classify(400, "application/json",
			     "{\"message\":\"to parameter is not a valid "
			     "address. please check documentation\"}",
			     NULL, NULL, &r),
	    0);
	assert_int_equal(r.outcome, MAILGUN_REJECT);
	assert_int_equal(r.http_status, 400);
	assert_null(r.id);
	assert_string_equal(r.message,
	    "to parameter is not a valid address. "
	    "please check documentation");
	mailgun_result_clear(&r);
	for (i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
		assert_int_equal(classify(codes[i], NULL,
				     "{\"message\":\"no\"}", NULL, "1", &r),
		    0);
		assert_int_equal(r.outcome, MAILGUN_REJECT);
		assert_int_equal(r.retry_at, 0);
		assert_string_equal(r.message, "no");
		mailgun_result_clear(&r);
	}
}

/* A body that is not JSON is kept escaped: no control or 8-bit byte. */
static void
test_classify_non_json(void **state)
{
	static const char body[] = "request size exceeds\n52.4MiB \"limit\"\x01"
				   "\xff\xfe";
	struct mailgun_result r;
	const unsigned char *p;

	(void)state;
	assert_int_equal(classify(413, "text/plain", body, NULL, NULL, &r), 0);
	assert_int_equal(r.outcome, MAILGUN_REJECT);
	assert_non_null(r.message);
	assert_memory_equal(r.message, "request size exceeds", 20);
	for (p = (const unsigned char *)r.message; *p != '\0'; p++)
		assert_true(*p >= 0x20 && *p < 0x7f);
	assert_non_null(strstr(r.message, "\\x"));
	mailgun_result_clear(&r);

	/* JSON without "message": the raw text. */
	assert_int_equal(classify(400, "application/json", "{\"error\":\"x\"}",
			     NULL, NULL, &r),
	    0);
	assert_int_equal(r.outcome, MAILGUN_REJECT);
	assert_non_null(strstr(r.message, "error"));
	mailgun_result_clear(&r);
}

static bool
valid_utf8(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;

	while (*p != '\0') {
		size_t n, i;

		if (*p < 0x80)
			n = 0;
		else if ((*p & 0xe0) == 0xc0)
			n = 1;
		else if ((*p & 0xf0) == 0xe0)
			n = 2;
		else if ((*p & 0xf8) == 0xf0)
			n = 3;
		else
			return false;
		for (i = 1; i <= n; i++)
			if ((p[i] & 0xc0) != 0x80)
				return false;
		p += n + 1;
	}
	return true;
}

static void
test_classify_huge(void **state)
{
	size_t big = (size_t)1024 * 1024, i, n;
	struct mailgun_result r;
	char *body = malloc(big);

	(void)state;
	assert_non_null(body);
	/* 1 MiB of text: the message is bounded. */
	memset(body, 'A', big);
	assert_int_equal(
	    mailgun_classify(500, "text/plain", body, big, NULL, NULL, NOW, &r),
	    0);
	assert_int_equal(r.outcome, MAILGUN_RETRY);
	assert_true(strlen(r.message) <= MAILGUN_MESSAGE_MAX + 3);
	assert_true(strlen(r.message) >= MAILGUN_MESSAGE_MAX);
	assert_string_equal(r.message + strlen(r.message) - 3, "...");
	mailgun_result_clear(&r);

	/* A JSON body longer than MAILGUN_BODY_MAX is not parsed. */
	n = (size_t)snprintf(body, big, "{\"message\":\"");
	memset(body + n, 'b', big - n - 2);
	put(body + big - 2, "\"}");
	assert_int_equal(mailgun_classify(400, "application/json", body, big,
			     NULL, NULL, NOW, &r),
	    0);
	assert_int_equal(r.outcome, MAILGUN_REJECT);
	assert_true(strlen(r.message) <= MAILGUN_MESSAGE_MAX * 4 + 3);
	assert_memory_equal(r.message, "{\\\"message\\\":\\\"bbb", 17);
	mailgun_result_clear(&r);

	/* A long JSON message is cut at a UTF-8 boundary. */
	n = (size_t)snprintf(body, big, "{\"message\":\"a");
	for (i = 0; i < 300; i++) {
		put(body + n, "\xc3\xa9");
		n += 2;
	}
	put(body + n, "\"}");
	n += 2;
	assert_int_equal(mailgun_classify(400, "application/json", body, n,
			     NULL, NULL, NOW, &r),
	    0);
	assert_int_equal(r.outcome, MAILGUN_REJECT);
	assert_int_equal(strlen(r.message), 511 + 3);
	assert_true(valid_utf8(r.message));
	mailgun_result_clear(&r);
	free(body);
}

/*
 * Every prefix of a real 200 and of a real 429: only the whole 200 is OK
 * (a cut JSON body is not JSON), every 429 prefix stays a retry, and none
 * reads outside its bytes.
 */
static void
test_classify_cut(void **state)
{
	static const char ok[] = "{\"id\": \"<20160107220803.17329.90097@"
				 "DOMAIN.TEST>\", \"message\": \"Queued. Thank "
				 "you.\"}";
	static const char limit[] = "{\"message\":\"Domain example.com is not "
				    "allowed to send: request limit exceeded, "
				    "try again after Mon, 20 Dec 2021 20:33:21 "
				    "UTC\"}";
	struct mailgun_result r;
	size_t i;

	(void)state;
	for (i = 0; i <= sizeof(ok) - 1; i++) {
		char *b = raw(ok, i);

		assert_int_equal(mailgun_classify(200, "application/json", b, i,
				     NULL, NULL, NOW, &r),
		    0);
		if (i == sizeof(ok) - 1) {
			assert_int_equal(r.outcome, MAILGUN_OK);
			assert_string_equal(r.id,
			    "20160107220803.17329.90097@"
			    "DOMAIN.TEST");
		} else {
			assert_int_equal(r.outcome, MAILGUN_PAUSE);
			assert_null(r.id);
		}
		assert_non_null(r.message);
		mailgun_result_clear(&r);
		free(b);
	}
	for (i = 0; i <= sizeof(limit) - 1; i++) {
		char *b = raw(limit, i);

		assert_int_equal(mailgun_classify(429, "application/json", b, i,
				     NULL, NULL, NOW, &r),
		    0);
		assert_int_equal(r.outcome, MAILGUN_RETRY);
		assert_non_null(r.message);
		if (i == sizeof(limit) - 1)
			assert_int_equal(r.retry_at, T_20211220);
		mailgun_result_clear(&r);
		free(b);
	}
}

static void
test_classify_odd_status(void **state)
{
	struct mailgun_result r;

	(void)state;
	assert_int_equal(
	    mailgun_classify(0, NULL, NULL, 0, NULL, NULL, NOW, &r), 0);
	assert_int_equal(r.outcome, MAILGUN_RETRY);
	assert_non_null(r.message);
	mailgun_result_clear(&r);
	assert_int_equal(classify(600, NULL, "x", NULL, NULL, &r), 0);
	assert_int_equal(r.outcome, MAILGUN_RETRY);
	mailgun_result_clear(&r);
	assert_int_equal(classify(204, NULL, "", NULL, NULL, &r), 0);
	assert_int_equal(r.outcome, MAILGUN_PAUSE);
	mailgun_result_clear(&r);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_try_again_date),
		cmocka_unit_test(test_try_again_seconds),
		cmocka_unit_test(test_try_again_garbage),
		cmocka_unit_test(test_try_again_cut),
		cmocka_unit_test(test_ratelimit_reset),
		cmocka_unit_test(test_ratelimit_reset_garbage),
		cmocka_unit_test(test_classify_ok),
		cmocka_unit_test(test_classify_magnificent),
		cmocka_unit_test(test_classify_200_without_id),
		cmocka_unit_test(test_classify_pause),
		cmocka_unit_test(test_classify_rate_limits),
		cmocka_unit_test(test_classify_retry),
		cmocka_unit_test(test_classify_reject),
		cmocka_unit_test(test_classify_non_json),
		cmocka_unit_test(test_classify_huge),
		cmocka_unit_test(test_classify_cut),
		cmocka_unit_test(test_classify_odd_status),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
