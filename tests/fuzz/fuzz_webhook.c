/*
 * fuzz_webhook: libFuzzer target for Mailgun webhook parsing
 * (tracker/webhook.c).  Byte 0 of the input picks what the rest is:
 *   0: a webhook_parse() body of type application/json;
 *   1: application/x-www-form-urlencoded;
 *   2: multipart/form-data with the boundary FUZZ_BOUNDARY;
 *   3: the Content-Type itself up to the first LF, then the body;
 *   4+: event-data JSON for webhook_event_from_data().
 * Bodies are verified against one fixed key at a fixed "now", so that the
 * seeds (tests/fuzz/seeds/webhook, signed for FUZZ_TS and FUZZ_TOKEN with
 * FUZZ_KEY) pass the signature check and the fuzzer explores what follows
 * it: any input that keeps those three fields stays verified.
 *
 * Asserted beyond "no crash":
 * - webhook_parse() returns an enum webhook_result; on anything but
 *   WEBHOOK_OK the event is left zeroed;
 * - a verified event carries exactly the signed token (nothing else can
 *   verify), a digest of 64 lowercase hex digits, and C strings;
 * - parsing is deterministic: the same bytes again give the same result
 *   and digest;
 * - webhook_event_from_data() returns 0, -EINVAL or -ENOMEM, zeroes the
 *   event on error, and on success copies the token given;
 * - its digest is the SHA-256 of jansson's json_dumps(JSON_SORT_KEYS |
 *   JSON_COMPACT) of the same data, which webhook.c has core/jdoc.c
 *   parse and write (the digests of earlier builds must stay valid).
 */
/* The assertions are the point: never compiled out. */
#undef NDEBUG
#include <assert.h>
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/evp.h>

#include "redrive/webhook.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_KEY "key-3ax6xnjp29jd6fds4gc373sgvjxteol0"
#define FUZZ_TS "1700000000"
#define FUZZ_TOKEN "c0ffee5a1e7e1c0ffee5a1e7e1c0ffee5a1e7e1c0ffee5a1e7"
#define FUZZ_NOW_MS 1700000000000LL
#define FUZZ_WINDOW_MS (5 * 60 * 1000LL)
#define FUZZ_BOUNDARY "----redriveFuzzBoundary"

/* True when n bytes at p are all zero. */
static bool
fuzz_webhook_zero(const void *p, size_t n)
{
	const unsigned char *b = p;
	size_t i;

	for (i = 0; i < n; i++)
		if (b[i] != 0)
			return false;
	return true;
}

/* Checks the strings and the digest of a filled event. */
static void
fuzz_webhook_check_event(const struct webhook_event *ev, const char *token)
{
	const char *const strs[] = { ev->event, ev->severity, ev->reason,
		ev->recipient, ev->message_id, ev->redrive_id_text,
		ev->event_id, ev->enhanced_code, ev->status_message,
		ev->storage_url };
	size_t i;

	assert(ev->token != NULL && strcmp(ev->token, token) == 0);
	for (i = 0; i < sizeof(strs) / sizeof(strs[0]); i++)
		if (strs[i] != NULL)
			(void)strlen(strs[i]);
	assert(strlen(ev->digest) == 64);
	for (i = 0; i < 64; i++)
		assert((ev->digest[i] >= '0' && ev->digest[i] <= '9') ||
		    (ev->digest[i] >= 'a' && ev->digest[i] <= 'f'));
}

/* One webhook_parse() of body (len bytes, its own allocation). */
static enum webhook_result
fuzz_webhook_parse(
    const char *ctype, const char *body, size_t len, struct webhook_event *ev)
{
	static const char *const keys[] = { "key-other", FUZZ_KEY };
	enum webhook_result r;

	memset(ev, 0, sizeof(*ev));
	r = webhook_parse(
	    ctype, body, len, keys, 2, FUZZ_WINDOW_MS, FUZZ_NOW_MS, ev);
	assert(r == WEBHOOK_OK || r == WEBHOOK_MALFORMED ||
	    r == WEBHOOK_BAD_SIGNATURE || r == WEBHOOK_STALE ||
	    r == WEBHOOK_NOMEM);
	if (r != WEBHOOK_OK)
		assert(fuzz_webhook_zero(ev, sizeof(*ev)));
	else
		fuzz_webhook_check_event(ev, FUZZ_TOKEN);
	return r;
}

/* Parses twice and compares. */
static void
fuzz_webhook_body(const char *ctype, const char *body, size_t len)
{
	struct webhook_event a, b;
	enum webhook_result ra, rb;

	ra = fuzz_webhook_parse(ctype, body, len, &a);
	rb = fuzz_webhook_parse(ctype, body, len, &b);
	assert(ra == rb);
	if (ra == WEBHOOK_OK)
		assert(strcmp(a.digest, b.digest) == 0);
	webhook_event_clear(&a);
	webhook_event_clear(&b);
	assert(fuzz_webhook_zero(&a, sizeof(a)));
}

/* The digest must be SHA-256 of jansson's canonical text of the data. */
static void
fuzz_webhook_jansson_digest(const char *json, size_t len, const char *digest)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0, i;
	char hex[65];
	json_error_t jerr;
	json_t *v = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
	char *text;

	if (v == NULL)
		return; /* parsed with other flags by webhook.c: nothing to say
			 */
	text = json_dumps(v, JSON_SORT_KEYS | JSON_COMPACT);
	json_decref(v);
	if (text == NULL)
		return;
	assert(EVP_Digest(text, strlen(text), md, &mdlen, EVP_sha256(), NULL) ==
		1 &&
	    mdlen == 32);
	free(text);
	for (i = 0; i < 32; i++) {
		hex[2 * i] = "0123456789abcdef"[md[i] >> 4];
		hex[2 * i + 1] = "0123456789abcdef"[md[i] & 15];
	}
	hex[64] = '\0';
	assert(strcmp(hex, digest) == 0);
}

/* Event data from elsewhere (the Events API): no signature. */
static void
fuzz_webhook_data(const char *json, size_t len)
{
	struct webhook_event a, b;
	int ra, rb;

	memset(&a, 0, sizeof(a));
	memset(&b, 0, sizeof(b));
	ra = webhook_event_from_data(json, len, "tok-1", &a);
	assert(ra == 0 || ra == -EINVAL || ra == -ENOMEM);
	if (ra != 0) {
		assert(fuzz_webhook_zero(&a, sizeof(a)));
		return;
	}
	fuzz_webhook_check_event(&a, "tok-1");
	fuzz_webhook_jansson_digest(json, len, a.digest);
	rb = webhook_event_from_data(json, len, "tok-1", &b);
	assert(rb == 0 && strcmp(a.digest, b.digest) == 0);
	webhook_event_clear(&a);
	webhook_event_clear(&b);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *p, *ct, *lf;
	char *body, *ctype = NULL;
	size_t n;

	if (size < 1 || size > 256 * 1024)
		return 0;
	p = (const char *)data + 1;
	n = size - 1;
	switch (data[0]) {
	case 0:
		ct = "application/json";
		break;
	case 1:
		ct = "application/x-www-form-urlencoded";
		break;
	case 2:
		ct = "multipart/form-data; boundary=" FUZZ_BOUNDARY;
		break;
	case 3:
		lf = memchr(p, '\n', n);
		if (lf == NULL)
			return 0;
		ctype = strndup(p, (size_t)(lf - p));
		assert(ctype != NULL);
		ct = ctype;
		n -= (size_t)(lf - p) + 1;
		p = lf + 1;
		break;
	default:
		ct = NULL;
		break;
	}
	/* The body in its own allocation of its exact size. */
	body = malloc(n > 0 ? n : 1);
	assert(body != NULL);
	if (n > 0)
		memcpy(body, p, n);
	if (data[0] <= 3)
		fuzz_webhook_body(ct, body, n);
	else
		fuzz_webhook_data(body, n);
	free(body);
	free(ctype);
	return 0;
}
