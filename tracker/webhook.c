/*
 * webhook: Mailgun's webhooks, from the bytes of a request body to a
 * verified, normalised struct webhook_event.  No I/O, no store and no
 * clock (the caller passes the time), so tests feed it raw bytes.
 *
 * Two formats arrive (FACTS.md 3.1): the JSON "webhooks 2.0" body, a
 * "signature" block {timestamp, token, signature} beside an "event-data"
 * object, and the legacy form-encoded one (application/x-www-form-urlencoded
 * or multipart/form-data) whose signature fields sit at the top level
 * among the event's own fields and the custom variables.  Either way the
 * order of checks is the one DESIGN.md ("On the wire, precisely") needs:
 * a body that is not JSON or not a form is malformed; then the signature
 * (HMAC-SHA256 of timestamp||token, FACTS.md 3.8) must match one of the
 * configured keys, so that a body failing verification changes nothing;
 * then the timestamp must lie within the window; only then does a
 * well-signed body whose event-data is missing or not an object count as
 * malformed.
 *
 * Normalisation absorbs what FACTS.md 3.3, 3.4 and 6.13 list: message ids
 * with or without angle brackets, user-variables as an object, a nested
 * object or an error string, delivery-status null, code as a string or a
 * float, fields missing.  Every string kept is bounded (WEBHOOK_FIELD_MAX)
 * and valid UTF-8 without NUL bytes.  The signature covers only timestamp
 * and token, so the event carries a digest of its data: a resent event has
 * the same digest, a forged one under a replayed signature does not.
 * JSON is read by core/jdoc.c (jansson's grammar, duplicate keys refused,
 * one arena per body), which also writes the digest's canonical text.
 */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/core_names.h>
#include <openssl/hmac.h>

#include "redrive/jdoc.h"
#include "redrive/webhook.h"

/* The largest body parsed at all (the tracker's max_body is smaller). */
#define WEBHOOK_BODY_MAX ((size_t)64 * 1024 * 1024)
/* The longest string kept from an event; longer text is cut or dropped. */
#define WEBHOOK_FIELD_MAX 4096
/* The longest signature timestamp: decimal epoch seconds. */
#define WEBHOOK_TS_DIGITS_MAX 18
/* The longest timestamp webhook_verify() accepts at all. */
#define WEBHOOK_TS_MAX 32
/* A SHA-256 HMAC: 32 bytes, 64 hex digits. */
#define WEBHOOK_MAC_LEN 32
#define WEBHOOK_SIG_HEX 64
/* The largest SMTP or Mailgun status code kept (498, 550, 605 ...). */
#define WEBHOOK_CODE_MAX 999
/* Legacy forms: fields, part header block, field name, boundary. */
#define WEBHOOK_FORM_FIELDS_MAX 256
#define WEBHOOK_PART_HEADERS_MAX 8192
#define WEBHOOK_FORM_NAME_MAX 256
#define WEBHOOK_BOUNDARY_MAX 70 /* RFC 2046 section 5.1.1 */
/* The longest Content-Type parameter value looked at. */
#define WEBHOOK_PARAM_MAX 256

/* The signature block, as taken from either format. */
struct webhook_sig {
	char timestamp[WEBHOOK_TS_DIGITS_MAX + 1];
	char token[WEBHOOK_TOKEN_MAX];
	const char *sig;	/* NUL-terminated; NULL when absent */
	const char *parent_sig; /* subaccounts (FACTS.md 3.1); may be NULL */
	int64_t ts;		/* seconds */
};

/* One field of a legacy form: name and value, decoded, NUL-terminated. */
struct webhook_field {
	char *name;
	size_t namelen;
	char *value;
	size_t vlen;
};

struct webhook_form {
	struct webhook_field f[WEBHOOK_FORM_FIELDS_MAX];
	size_t n;
};

/*
 * Copies len bytes at s into a new string: every byte that is not part of
 * valid UTF-8 (a NUL included) becomes '?'.  Text over WEBHOOK_FIELD_MAX
 * bytes is cut at a character boundary when truncate is set, else dropped
 * (an identifier cut short would be wrong).  Empty text gives NULL.
 * Returns 0 (with *out NULL or the copy) or -ENOMEM.
 */
static int
webhook_text(const char *s, size_t len, bool truncate, char **out)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t i = 0, n = 0, cl;
	char *p;

	*out = NULL;
	if (s == NULL || len == 0)
		return 0;
	if (len > WEBHOOK_FIELD_MAX && !truncate)
		return 0;
	p = malloc((len > WEBHOOK_FIELD_MAX ? WEBHOOK_FIELD_MAX : len) + 1);
	if (p == NULL)
		return -ENOMEM;
	while (i < len) {
		cl = jdoc_utf8_len(u + i, len - i);
		if (cl == 0) {
			if (n + 1 > WEBHOOK_FIELD_MAX)
				break;
			p[n++] = '?';
			i++;
			continue;
		}
		if (n + cl > WEBHOOK_FIELD_MAX)
			break;
		memcpy(p + n, s + i, cl);
		n += cl;
		i += cl;
	}
	p[n] = '\0';
	*out = p;
	return 0;
}

/* webhook_text() of a JSON string value; anything else gives NULL. */
static int
webhook_json_text(const struct jdoc_value *v, bool truncate, char **out)
{
	*out = NULL;
	if (!jdoc_is_string(v))
		return 0;
	return webhook_text(jdoc_string(v), jdoc_string_len(v), truncate, out);
}

/* The value at obj.a.b.c (NULL-terminated list of up to three keys). */
static const struct jdoc_value *
webhook_json_path(
    const struct jdoc_value *obj, const char *a, const char *b, const char *c)
{
	const char *keys[3] = { a, b, c };
	size_t i;

	for (i = 0; i < 3 && keys[i] != NULL; i++)
		obj = jdoc_get(obj, keys[i]);
	return obj;
}

/* Hex digit value, or -1. */
static int
webhook_hexval(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/*
 * Decodes a signature: exactly WEBHOOK_SIG_HEX hex digits (either case)
 * and nothing after them.  Returns false on any other text.
 */
static bool
webhook_sig_decode(const char *sig, unsigned char out[WEBHOOK_MAC_LEN])
{
	size_t i;
	int hi, lo;

	for (i = 0; i < WEBHOOK_MAC_LEN; i++) {
		if (sig[2 * i] == '\0')
			return false;
		hi = webhook_hexval((unsigned char)sig[2 * i]);
		lo = webhook_hexval((unsigned char)sig[2 * i + 1]);
		if (hi < 0 || lo < 0)
			return false;
		out[i] = (unsigned char)(hi << 4 | lo);
	}
	return sig[WEBHOOK_SIG_HEX] == '\0';
}

/*
 * OpenSSL 3 looks an algorithm up by name at every use unless it is
 * fetched once: EVP_sha256() and the one-shot HMAC() each did, about a
 * microsecond of the loop thread's ~30 per webhook.  SHA-256 and HMAC are
 * fetched once per process, and each thread keeps one HMAC context that
 * is keyed again per signature (its destructor frees it when the thread
 * ends).  Any failure falls back to the one-shot calls.
 */
static pthread_once_t webhook_crypto_once = PTHREAD_ONCE_INIT;
static EVP_MD *webhook_md;
static EVP_MAC *webhook_mac;
static pthread_key_t webhook_mac_key;
static bool webhook_mac_key_ok;

static void
webhook_mac_ctx_free(void *ctx)
{
	EVP_MAC_CTX_free(ctx);
}

static void
webhook_crypto_init(void)
{
	webhook_md = EVP_MD_fetch(NULL, "SHA256", NULL);
	webhook_mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
	webhook_mac_key_ok =
	    pthread_key_create(&webhook_mac_key, webhook_mac_ctx_free) == 0;
}

/* SHA-256, fetched once. */
static const EVP_MD *
webhook_sha256(void)
{
	pthread_once(&webhook_crypto_once, webhook_crypto_init);
	return webhook_md != NULL ? webhook_md : EVP_sha256();
}

/*
 * HMAC-SHA256 of msg under key into out (32 bytes) with this thread's
 * context; false when it cannot, and the caller uses HMAC().
 */
static bool
webhook_hmac(const char *key, size_t klen, const unsigned char *msg, size_t len,
    unsigned char *out)
{
	OSSL_PARAM params[2];
	EVP_MAC_CTX *ctx;
	size_t outlen = 0;

	pthread_once(&webhook_crypto_once, webhook_crypto_init);
	if (webhook_mac == NULL || !webhook_mac_key_ok)
		return false;
	ctx = pthread_getspecific(webhook_mac_key);
	if (ctx == NULL) {
		ctx = EVP_MAC_CTX_new(webhook_mac);
		if (ctx == NULL)
			return false;
		params[0] = OSSL_PARAM_construct_utf8_string(
		    OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0);
		params[1] = OSSL_PARAM_construct_end();
		if (EVP_MAC_CTX_set_params(ctx, params) != 1 ||
		    pthread_setspecific(webhook_mac_key, ctx) != 0) {
			EVP_MAC_CTX_free(ctx);
			return false;
		}
	}
	return EVP_MAC_init(ctx, (const unsigned char *)key, klen, NULL) == 1 &&
	    EVP_MAC_update(ctx, msg, len) == 1 &&
	    EVP_MAC_final(ctx, out, &outlen, WEBHOOK_MAC_LEN) == 1 &&
	    outlen == WEBHOOK_MAC_LEN;
}

/*
 * FACTS.md 3.8: the signature is the hex HMAC-SHA256, under the signing
 * key, of the timestamp and the token concatenated without a separator.
 * The decoded bytes are compared in constant time (CRYPTO_memcmp), as
 * mailgun-go does with subtle.ConstantTimeCompare.
 */
bool
webhook_verify(
    const char *key, const char *timestamp, const char *token, const char *sig)
{
	unsigned char want[WEBHOOK_MAC_LEN], got[EVP_MAX_MD_SIZE];
	unsigned char msg[WEBHOOK_TS_MAX + WEBHOOK_TOKEN_MAX];
	unsigned int gotlen = 0;
	size_t klen, tlen, toklen;
	bool ok = false;

	if (key == NULL || timestamp == NULL || token == NULL || sig == NULL)
		return false;
	klen = strlen(key);
	tlen = strnlen(timestamp, WEBHOOK_TS_MAX + 1);
	toklen = strnlen(token, WEBHOOK_TOKEN_MAX);
	if (klen == 0 || klen > INT_MAX || tlen == 0 || tlen > WEBHOOK_TS_MAX ||
	    toklen == 0 || toklen >= WEBHOOK_TOKEN_MAX)
		return false;
	if (!webhook_sig_decode(sig, want))
		return false;
	memcpy(msg, timestamp, tlen);
	memcpy(msg + tlen, token, toklen);
	if (webhook_hmac(key, klen, msg, tlen + toklen, got))
		gotlen = WEBHOOK_MAC_LEN;
	else if (HMAC(EVP_sha256(), key, (int)klen, msg, tlen + toklen, got,
		     &gotlen) == NULL)
		goto out;
	if (gotlen != WEBHOOK_MAC_LEN)
		goto out;
	ok = CRYPTO_memcmp(got, want, WEBHOOK_MAC_LEN) == 0;
out:
	OPENSSL_cleanse(got, sizeof(got));
	return ok;
}

/*
 * Takes the signature timestamp: decimal epoch seconds, digits only (that
 * exact text is what was signed).  Returns false on anything else.
 */
static bool
webhook_sig_set_timestamp(struct webhook_sig *sig, const char *s, size_t len)
{
	char *end = NULL;
	long long v;
	size_t i;

	if (len == 0 || len > WEBHOOK_TS_DIGITS_MAX)
		return false;
	for (i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
	}
	memcpy(sig->timestamp, s, len);
	sig->timestamp[len] = '\0';
	errno = 0;
	v = strtoll(sig->timestamp, &end, 10);
	if (errno != 0 || end != sig->timestamp + len || v < 0)
		return false;
	sig->ts = v;
	return true;
}

/*
 * Takes the token: 1 to WEBHOOK_TOKEN_MAX - 1 bytes of printable ASCII
 * (Mailgun's are 50 hex digits), so that the token the caller remembers
 * is exactly the one signed and safe to log.
 */
static bool
webhook_sig_set_token(struct webhook_sig *sig, const char *s, size_t len)
{
	size_t i;

	if (len == 0 || len >= WEBHOOK_TOKEN_MAX)
		return false;
	for (i = 0; i < len; i++) {
		if (s[i] < '!' || s[i] > '~')
			return false;
	}
	memcpy(sig->token, s, len);
	sig->token[len] = '\0';
	return true;
}

/*
 * Verifies a signature block against every key (key rotation: any match
 * will do; the loop does not stop early), then the window: |now -
 * timestamp| <= window_ms.  The parent-signature of a subaccount's event
 * is the same HMAC under the parent account's key, so it counts too.
 */
static enum webhook_result
webhook_sig_check(const struct webhook_sig *sig, const char *const *keys,
    size_t nkeys, int64_t window_ms, int64_t now_ms)
{
	uint64_t diff;
	int64_t ts_ms;
	bool ok = false;
	size_t i;

	for (i = 0; keys != NULL && i < nkeys; i++) {
		if (webhook_verify(
			keys[i], sig->timestamp, sig->token, sig->sig))
			ok = true;
		if (webhook_verify(
			keys[i], sig->timestamp, sig->token, sig->parent_sig))
			ok = true;
	}
	if (!ok)
		return WEBHOOK_BAD_SIGNATURE;
	if (window_ms < 0 || sig->ts > INT64_MAX / 1000)
		return WEBHOOK_STALE;
	ts_ms = sig->ts * 1000;
	/* Both are int64_t, so their distance fits in a uint64_t. */
	if (now_ms >= ts_ms)
		diff = (uint64_t)now_ms - (uint64_t)ts_ms;
	else
		diff = (uint64_t)ts_ms - (uint64_t)now_ms;
	return diff <= (uint64_t)window_ms ? WEBHOOK_OK : WEBHOOK_STALE;
}

/* Writes the lowercase hex of n bytes into out (2n + 1 bytes). */
static void
webhook_hex(const unsigned char *md, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";
	size_t i;

	for (i = 0; i < n; i++) {
		out[2 * i] = digits[md[i] >> 4];
		out[2 * i + 1] = digits[md[i] & 0x0f];
	}
	out[2 * n] = '\0';
}

/*
 * A message id, bare (FACTS.md 1.3 and 6.8): surrounding white space and
 * one pair of angle brackets removed.
 */
static int
webhook_bare_id(const char *s, size_t len, char **out)
{
	while (len > 0 && isspace((unsigned char)s[0])) {
		s++;
		len--;
	}
	while (len > 0 && isspace((unsigned char)s[len - 1]))
		len--;
	if (len >= 2 && s[0] == '<' && s[len - 1] == '>') {
		s++;
		len -= 2;
	}
	return webhook_text(s, len, false, out);
}

/*
 * True when s is an enhanced status code (RFC 3463 section 2): class "."
 * subject "." detail, with a class of 2, 4 or 5 and one to three digits
 * in each of the other two.
 */
static bool
webhook_is_enhanced(const char *s)
{
	size_t part, nd;

	if (s[0] != '2' && s[0] != '4' && s[0] != '5')
		return false;
	s++;
	for (part = 0; part < 2; part++) {
		if (*s++ != '.')
			return false;
		for (nd = 0; s[nd] >= '0' && s[nd] <= '9'; nd++)
			;
		if (nd == 0 || nd > 3)
			return false;
		s += nd;
	}
	return *s == '\0';
}

/*
 * Parses a decimal code from text: optional white space around one to
 * three digits.  Returns the code, or 0 on anything else ("5.1.1",
 * "garbage").
 */
static int
webhook_code_text(const char *s, size_t len)
{
	int v = 0;
	size_t i = 0, nd = 0;

	while (i < len && (s[i] == ' ' || s[i] == '\t'))
		i++;
	for (; i < len && s[i] >= '0' && s[i] <= '9'; i++, nd++) {
		if (nd == 3)
			return 0;
		v = v * 10 + (s[i] - '0');
	}
	while (i < len && (s[i] == ' ' || s[i] == '\t'))
		i++;
	return (nd > 0 && i == len) ? v : 0;
}

/*
 * delivery-status.code: normally an integer, but FACTS.md 3.3 and 6.13
 * say it may not be one.  A float with an integral value and a string of
 * digits count; anything else, or a value outside 0..999, is 0.
 */
static int
webhook_json_code(const struct jdoc_value *v)
{
	long long i;
	double d;

	if (jdoc_is_integer(v)) {
		i = jdoc_integer(v);
		return (i >= 0 && i <= WEBHOOK_CODE_MAX) ? (int)i : 0;
	}
	if (jdoc_is_real(v)) {
		d = jdoc_real(v);
		if (isfinite(d) && d >= 0 && d <= WEBHOOK_CODE_MAX &&
		    d == floor(d))
			return (int)d;
		return 0;
	}
	if (jdoc_is_string(v))
		return webhook_code_text(jdoc_string(v), jdoc_string_len(v));
	return 0;
}

/*
 * event-data.timestamp, epoch seconds as a float (FACTS.md 3.1), to
 * milliseconds rounded to the nearest.  An integer or a numeric string is
 * taken too; anything else, or a time before 1970 or after the year
 * 5000, gives 0.
 */
static int64_t
webhook_json_ms(const struct jdoc_value *v)
{
	const double max_s = 95617584000.0; /* 5000-01-01 */
	char buf[64];
	char *end = NULL;
	size_t len;
	double d;

	if (jdoc_is_integer(v)) {
		d = (double)jdoc_integer(v);
	} else if (jdoc_is_real(v)) {
		d = jdoc_real(v);
	} else if (jdoc_is_string(v)) {
		len = jdoc_string_len(v);
		if (len == 0 || len >= sizeof(buf))
			return 0;
		memcpy(buf, jdoc_string(v), len + 1);
		errno = 0;
		d = strtod(buf, &end);
		if (errno != 0 || end != buf + len)
			return 0;
	} else {
		return 0;
	}
	if (!isfinite(d) || d < 0 || d > max_s)
		return 0;
	return (int64_t)llround(d * 1000.0);
}

/*
 * Parses the local id carried back in user-variables: decimal digits, a
 * positive int64.  Returns it, or 0.
 */
static int64_t
webhook_id_value(const char *s)
{
	char *end = NULL;
	long long v;
	size_t n = strlen(s);

	if (n == 0 || n > 19 || strspn(s, "0123456789") != n)
		return 0;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno != 0 || *end != '\0' || v <= 0)
		return 0;
	return v;
}

/*
 * Sets the redrive id from the value sent as v:redrive-id: a string (as
 * Mailgun returns v: values) or an integer.  Other types are ignored.
 */
static int
webhook_set_redrive_id(const struct jdoc_value *v, struct webhook_event *ev)
{
	char buf[32];
	long long i;
	int rc;

	if (jdoc_is_integer(v)) {
		i = jdoc_integer(v);
		(void)snprintf(buf, sizeof(buf), "%lld", i);
		rc =
		    webhook_text(buf, strlen(buf), false, &ev->redrive_id_text);
		if (rc == 0 && i > 0)
			ev->redrive_id = (int64_t)i;
		return rc;
	}
	if (!jdoc_is_string(v))
		return 0;
	rc = webhook_json_text(v, false, &ev->redrive_id_text);
	if (rc == 0 && ev->redrive_id_text != NULL)
		ev->redrive_id = webhook_id_value(ev->redrive_id_text);
	return rc;
}

/*
 * user-variables (FACTS.md 3.3, 6.13): an object, perhaps nested (then
 * "redrive-id" is looked for one level down too), or the error string
 * "Could not load user-variables ...", which carries no id.
 */
static int
webhook_user_variables(const struct jdoc_value *uv, struct webhook_event *ev)
{
	const struct jdoc_value *v;
	size_t i, n = jdoc_object_size(uv);

	v = jdoc_get(uv, "redrive-id");
	for (i = 0; v == NULL && i < n; i++)
		v = jdoc_get(&jdoc_object_member(uv, i)->value, "redrive-id");
	return v != NULL ? webhook_set_redrive_id(v, ev) : 0;
}

/* The first of a, b, c that is a non-empty string, or NULL. */
static const struct jdoc_value *
webhook_first_text(const struct jdoc_value *a, const struct jdoc_value *b,
    const struct jdoc_value *c)
{
	if (jdoc_string_len(a) > 0)
		return a;
	if (jdoc_string_len(b) > 0)
		return b;
	if (jdoc_string_len(c) > 0)
		return c;
	return NULL;
}

/* An enhanced code taken from v when it is a string that looks like one. */
static int
webhook_enhanced_from(const struct jdoc_value *v, char **out)
{
	*out = NULL;
	if (!jdoc_is_string(v) || !webhook_is_enhanced(jdoc_string(v)))
		return 0;
	return webhook_json_text(v, false, out);
}

/*
 * delivery-status (FACTS.md 3.4), which may be null or missing: the code,
 * the enhanced code (from enhanced-code, else a delayed bounce's
 * bounce-code, else a code sent as the string "5.1.1"), and the text
 * (message, else description, else a rejected event's reject.reason).
 */
static int
webhook_delivery_status(const struct jdoc_value *data, struct webhook_event *ev)
{
	const struct jdoc_value *ds = jdoc_get(data, "delivery-status");
	const struct jdoc_value *code, *text;
	int rc;

	code = jdoc_get(ds, "code");
	ev->code = webhook_json_code(code);
	rc = webhook_json_text(
	    jdoc_get(ds, "enhanced-code"), false, &ev->enhanced_code);
	if (rc == 0 && ev->enhanced_code == NULL)
		rc = webhook_enhanced_from(
		    jdoc_get(ds, "bounce-code"), &ev->enhanced_code);
	if (rc == 0 && ev->enhanced_code == NULL)
		rc = webhook_enhanced_from(code, &ev->enhanced_code);
	if (rc != 0)
		return rc;
	text = webhook_first_text(jdoc_get(ds, "message"),
	    jdoc_get(ds, "description"),
	    webhook_json_path(data, "reject", "reason", NULL));
	return webhook_json_text(text, true, &ev->status_message);
}

/* The message id at message.headers.message-id, bare; null is absent. */
static int
webhook_json_message_id(const struct jdoc_value *data, struct webhook_event *ev)
{
	const struct jdoc_value *v;

	v = webhook_json_path(data, "message", "headers", "message-id");
	if (!jdoc_is_string(v))
		return 0;
	return webhook_bare_id(
	    jdoc_string(v), jdoc_string_len(v), &ev->message_id);
}

/*
 * The digest of the event data: SHA-256 of its canonical text, which is
 * what jansson's json_dumps(data, JSON_SORT_KEYS | JSON_COMPACT) writes
 * (jdoc_canon), so that the same event sent twice, whatever the order of
 * its keys or its white space, has the same digest, and digests recorded
 * by earlier builds stay valid.
 */
static int
webhook_json_digest(const struct jdoc_value *data, struct webhook_event *ev)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	char stack[4096];
	struct jdoc_out c;
	int rc = 0;

	jdoc_out_init(&c, stack, sizeof(stack));
	if (jdoc_canon(&c, data) != 0 ||
	    EVP_Digest(c.p, c.len, md, &mdlen, webhook_sha256(), NULL) != 1 ||
	    mdlen != 32) {
		rc = -ENOMEM;
		goto out;
	}
	webhook_hex(md, mdlen, ev->digest);
out:
	jdoc_out_free(&c);
	return rc;
}

/* Fills ev from a JSON event-data object.  Returns 0 or -ENOMEM. */
static int
webhook_from_json(const struct jdoc_value *data, struct webhook_event *ev)
{
	const struct {
		const char *key;
		char **dst;
	} strs[] = {
		{ "event", &ev->event },
		{ "severity", &ev->severity },
		{ "reason", &ev->reason },
		{ "recipient", &ev->recipient },
		{ "id", &ev->event_id },
	};
	size_t i;
	int rc = 0;

	for (i = 0; i < sizeof(strs) / sizeof(strs[0]) && rc == 0; i++)
		rc = webhook_json_text(
		    jdoc_get(data, strs[i].key), false, strs[i].dst);
	if (rc == 0)
		rc = webhook_json_message_id(data, ev);
	if (rc == 0)
		rc = webhook_user_variables(
		    jdoc_get(data, "user-variables"), ev);
	if (rc == 0)
		rc = webhook_delivery_status(data, ev);
	if (rc == 0)
		rc = webhook_json_text(
		    webhook_json_path(data, "storage", "url", NULL), false,
		    &ev->storage_url);
	if (rc == 0)
		rc = webhook_json_digest(data, ev);
	ev->at = webhook_json_ms(jdoc_get(data, "timestamp"));
	ev->delayed_bounce = jdoc_is_true(
	    webhook_json_path(data, "flags", "is-delayed-bounce", NULL));
	return rc;
}

/*
 * An event-data object from elsewhere than a webhook (the Events API's
 * items, core/reconcile.c): the same normalisation and digest, with the
 * token given.
 */
int
webhook_event_from_data(
    const char *json, size_t len, const char *token, struct webhook_event *ev)
{
	const struct jdoc_value *data;
	struct jdoc *doc = NULL;
	int rc;

	memset(ev, 0, sizeof(*ev));
	if (token == NULL || token[0] == '\0')
		return -EINVAL;
	rc = jdoc_parse(json, len, &doc);
	if (rc != 0)
		return rc;
	data = jdoc_root(doc);
	if (!jdoc_is_object(data)) {
		rc = -EINVAL;
		goto out;
	}
	rc = webhook_text(token, strlen(token), false, &ev->token);
	if (rc == 0)
		rc = webhook_from_json(data, ev);
	if (rc != 0)
		webhook_event_clear(ev);
out:
	jdoc_free(doc);
	return rc;
}

/*
 * Takes the signature block of a JSON body: an object whose timestamp is
 * a string of digits or a non-negative integer, whose token is a string,
 * and whose signature (or parent-signature) is a string.  Returns false
 * when it is missing or malformed.
 */
static bool
webhook_json_sig(const struct jdoc_value *obj, struct webhook_sig *sig)
{
	const struct jdoc_value *ts, *tok;
	char buf[32];

	if (!jdoc_is_object(obj))
		return false;
	ts = jdoc_get(obj, "timestamp");
	tok = jdoc_get(obj, "token");
	if (jdoc_is_integer(ts)) {
		(void)snprintf(buf, sizeof(buf), "%lld", jdoc_integer(ts));
		if (!webhook_sig_set_timestamp(sig, buf, strlen(buf)))
			return false;
	} else if (!jdoc_is_string(ts) ||
	    !webhook_sig_set_timestamp(
		sig, jdoc_string(ts), jdoc_string_len(ts))) {
		return false;
	}
	if (!jdoc_is_string(tok) ||
	    !webhook_sig_set_token(sig, jdoc_string(tok), jdoc_string_len(tok)))
		return false;
	sig->sig = jdoc_string(jdoc_get(obj, "signature"));
	sig->parent_sig = jdoc_string(jdoc_get(obj, "parent-signature"));
	return sig->sig != NULL || sig->parent_sig != NULL;
}

/*
 * The JSON webhook (FACTS.md 3.1).  Duplicate keys are refused: a body
 * that says two things at once is malformed.
 */
static enum webhook_result
webhook_parse_json(const char *body, size_t len, const char *const *keys,
    size_t nkeys, int64_t window_ms, int64_t now_ms, struct webhook_event *ev)
{
	struct webhook_sig sig;
	enum webhook_result res;
	const struct jdoc_value *root, *data;
	struct jdoc *doc = NULL;
	int rc;

	memset(&sig, 0, sizeof(sig));
	rc = jdoc_parse(body, len, &doc);
	if (rc != 0)
		return rc == -ENOMEM ? WEBHOOK_NOMEM : WEBHOOK_MALFORMED;
	root = jdoc_root(doc);
	if (!jdoc_is_object(root)) {
		res = WEBHOOK_MALFORMED;
		goto out;
	}
	if (!webhook_json_sig(jdoc_get(root, "signature"), &sig)) {
		res = WEBHOOK_BAD_SIGNATURE;
		goto out;
	}
	res = webhook_sig_check(&sig, keys, nkeys, window_ms, now_ms);
	if (res != WEBHOOK_OK)
		goto out;
	data = jdoc_get(root, "event-data");
	if (!jdoc_is_object(data)) {
		res = WEBHOOK_MALFORMED;
		goto out;
	}
	if (webhook_text(sig.token, strlen(sig.token), false, &ev->token) !=
		0 ||
	    webhook_from_json(data, ev) != 0)
		res = WEBHOOK_NOMEM;
out:
	jdoc_free(doc);
	return res;
}

/* Frees every field of a form. */
static void
webhook_form_free(struct webhook_form *form)
{
	size_t i;

	if (form == NULL)
		return;
	for (i = 0; i < form->n; i++) {
		free(form->f[i].name);
		free(form->f[i].value);
	}
	free(form);
}

/*
 * Appends a field, taking name and value (freed when not kept; a field
 * with an empty name is dropped).  Returns 0, -ENOMEM, -EINVAL for a name
 * over WEBHOOK_FORM_NAME_MAX, or -E2BIG past WEBHOOK_FORM_FIELDS_MAX.
 */
static int
webhook_form_add(struct webhook_form *form, char *name, size_t namelen,
    char *value, size_t vlen)
{
	if (name == NULL || value == NULL) {
		free(name);
		free(value);
		return -ENOMEM;
	}
	if (namelen == 0) {
		/* Nothing is read from a field without a name. */
		free(name);
		free(value);
		return 0;
	}
	if (form->n == WEBHOOK_FORM_FIELDS_MAX ||
	    namelen > WEBHOOK_FORM_NAME_MAX) {
		free(name);
		free(value);
		return form->n == WEBHOOK_FORM_FIELDS_MAX ? -E2BIG : -EINVAL;
	}
	form->f[form->n].name = name;
	form->f[form->n].namelen = namelen;
	form->f[form->n].value = value;
	form->f[form->n].vlen = vlen;
	form->n++;
	return 0;
}

/* A NUL-terminated copy of len bytes at s. */
static char *
webhook_memdup(const char *s, size_t len)
{
	char *p = malloc(len + 1);

	if (p != NULL) {
		if (len > 0)
			memcpy(p, s, len);
		p[len] = '\0';
	}
	return p;
}

/*
 * The last field called name (ASCII case ignored: legacy bodies say
 * "Message-Id" or "message-id"), or NULL.  The last one counts, as in
 * Anymail: user variables with the same name come first (FACTS.md 3.1).
 */
static const struct webhook_field *
webhook_form_get(const struct webhook_form *form, const char *name)
{
	size_t i, nlen = strlen(name);

	for (i = form->n; i > 0; i--) {
		const struct webhook_field *f = &form->f[i - 1];

		if (f->namelen == nlen && strcasecmp(f->name, name) == 0)
			return f;
	}
	return NULL;
}

/*
 * Decodes one application/x-www-form-urlencoded name or value (WHATWG URL
 * standard, "application/x-www-form-urlencoded parsing"): '+' is a space,
 * %XX a byte.  A '%' without two hex digits after it is an error here
 * (the standard would keep it; a webhook body never has one).  Returns 0,
 * -EINVAL or -ENOMEM.
 */
static int
webhook_urldecode(const char *s, size_t len, char **out, size_t *outlen)
{
	size_t i, n = 0;
	char *p;
	int hi, lo;

	*out = NULL;
	p = malloc(len + 1);
	if (p == NULL)
		return -ENOMEM;
	for (i = 0; i < len; i++) {
		if (s[i] == '+') {
			p[n++] = ' ';
			continue;
		}
		if (s[i] != '%') {
			p[n++] = s[i];
			continue;
		}
		if (len - i < 3) {
			free(p);
			return -EINVAL;
		}
		hi = webhook_hexval((unsigned char)s[i + 1]);
		lo = webhook_hexval((unsigned char)s[i + 2]);
		if (hi < 0 || lo < 0) {
			free(p);
			return -EINVAL;
		}
		p[n++] = (char)(hi << 4 | lo);
		i += 2;
	}
	p[n] = '\0';
	*out = p;
	*outlen = n;
	return 0;
}

/*
 * Splits an urlencoded body on '&' into name=value fields (a segment
 * without '=' is a name with an empty value; empty segments are skipped).
 */
static int
webhook_form_urlencoded(const char *body, size_t len, struct webhook_form *form)
{
	const char *p = body, *end = body + len, *amp, *seg_end, *eq;
	char *name = NULL, *value = NULL;
	size_t namelen = 0, vlen = 0;
	int rc = 0;

	while (p < end) {
		amp = memchr(p, '&', (size_t)(end - p));
		seg_end = amp != NULL ? amp : end;
		if (seg_end > p) {
			eq = memchr(p, '=', (size_t)(seg_end - p));
			if (eq == NULL)
				eq = seg_end;
			rc = webhook_urldecode(
			    p, (size_t)(eq - p), &name, &namelen);
			if (rc == 0 && eq < seg_end)
				rc = webhook_urldecode(eq + 1,
				    (size_t)(seg_end - eq - 1), &value, &vlen);
			else if (rc == 0)
				value = webhook_memdup("", 0);
			if (rc == 0)
				rc = webhook_form_add(
				    form, name, namelen, value, vlen);
			else
				free(name);
			name = value = NULL;
			vlen = 0;
			if (rc != 0)
				break;
		}
		if (amp == NULL)
			break;
		p = amp + 1;
	}
	return rc;
}

/*
 * Finds the parameter called want in a header value's parameter list
 * (RFC 9110 section 5.6.6: *( OWS ";" OWS name "=" ( token /
 * quoted-string ) ), the value before the first ';' skipped) and copies
 * its value, unquoted, into out.  s has len bytes and need not be
 * NUL-terminated.  Returns 0, -ENOENT, or -EINVAL on bad syntax or a
 * value that does not fit.
 */
static int
webhook_param(
    const char *s, size_t len, const char *want, char *out, size_t outlen)
{
	const char *p = memchr(s, ';', len), *end = s + len, *name;
	size_t namelen, n;
	bool match;

	while (p != NULL && p < end) {
		p++; /* the ';' */
		while (p < end && (*p == ' ' || *p == '\t'))
			p++;
		name = p;
		while (p < end && *p != '=' && *p != ';' && *p != ' ' &&
		    *p != '\t')
			p++;
		namelen = (size_t)(p - name);
		if (namelen == 0 && (p == end || *p == ';'))
			continue; /* an empty parameter: "a;;b" */
		if (p == end || *p != '=' || namelen == 0)
			return -EINVAL;
		p++;
		match = namelen == strlen(want) &&
		    strncasecmp(name, want, namelen) == 0;
		n = 0;
		if (p < end && *p == '"') {
			for (p++; p < end && *p != '"'; p++) {
				if (*p == '\\' && p + 1 < end)
					p++;
				if (match && n + 1 >= outlen)
					return -EINVAL;
				if (match)
					out[n++] = *p;
			}
			if (p == end)
				return -EINVAL;
			p++;
		} else {
			for (; p < end && *p != ';' && *p != ' ' && *p != '\t';
			     p++) {
				if (match && n + 1 >= outlen)
					return -EINVAL;
				if (match)
					out[n++] = *p;
			}
		}
		if (match) {
			out[n] = '\0';
			return 0;
		}
		while (p < end && (*p == ' ' || *p == '\t'))
			p++;
		if (p < end && *p != ';')
			return -EINVAL;
	}
	return -ENOENT;
}

/*
 * Reads a part's header block (lines ending CRLF, hdrlen bytes) for
 * Content-Disposition: form-data; name="..." (RFC 7578 section 4.2) and
 * copies the name into name.  Returns 0 or -EINVAL.
 */
static int
webhook_part_name(const char *hdr, size_t hdrlen, char *name, size_t namelen)
{
	static const char cd[] = "content-disposition:";
	const char *p = hdr, *end = hdr + hdrlen, *eol;
	size_t linelen;

	while (p < end) {
		eol = memmem(p, (size_t)(end - p), "\r\n", 2);
		if (eol == NULL)
			eol = end;
		linelen = (size_t)(eol - p);
		if (linelen >= sizeof(cd) - 1 &&
		    strncasecmp(p, cd, sizeof(cd) - 1) == 0) {
			const char *v = p + sizeof(cd) - 1;
			size_t vlen = linelen - (sizeof(cd) - 1);

			while (vlen > 0 && (*v == ' ' || *v == '\t')) {
				v++;
				vlen--;
			}
			if (vlen < 9 || strncasecmp(v, "form-data", 9) != 0)
				return -EINVAL;
			if (webhook_param(v, vlen, "name", name, namelen) != 0)
				return -EINVAL;
			return 0;
		}
		p = eol == end ? end : eol + 2;
	}
	return -EINVAL;
}

/*
 * A minimal multipart/form-data reader (RFC 7578; the framing is RFC 2046
 * section 5.1.1): a preamble, then parts that each open with
 * "--boundary", transport padding and CRLF, a header block ending in an
 * empty line, and content up to CRLF "--boundary"; "--boundary--" closes
 * the body.  A body that never closes is malformed.  Nothing past len is
 * read: every search is bounded by the end of the body.
 */
static int
webhook_form_multipart(
    const char *ctype, const char *body, size_t len, struct webhook_form *form)
{
	char boundary[WEBHOOK_PARAM_MAX];
	char delim[WEBHOOK_BOUNDARY_MAX + 4];
	char name[WEBHOOK_FORM_NAME_MAX + 1];
	const char *p, *end = body + len, *hdr_end, *content, *hit;
	size_t blen, dlen;
	int rc;

	if (webhook_param(ctype, strlen(ctype), "boundary", boundary,
		sizeof(boundary)) != 0)
		return -EINVAL;
	blen = strlen(boundary);
	if (blen == 0 || blen > WEBHOOK_BOUNDARY_MAX)
		return -EINVAL;
	/* delim is CRLF "--" boundary; the first may lack the CRLF. */
	memcpy(delim, "\r\n--", 4);
	memcpy(delim + 4, boundary, blen);
	dlen = blen + 4;
	if (len >= dlen - 2 && memcmp(body, delim + 2, dlen - 2) == 0) {
		p = body + dlen - 2;
	} else {
		hit = memmem(body, len, delim, dlen);
		if (hit == NULL)
			return -EINVAL;
		p = hit + dlen;
	}
	for (;;) {
		if (end - p >= 2 && p[0] == '-' && p[1] == '-')
			return 0; /* the close delimiter; the rest is epilogue
				   */
		while (p < end && (*p == ' ' || *p == '\t'))
			p++;
		if (end - p < 2 || p[0] != '\r' || p[1] != '\n')
			return -EINVAL;
		p += 2;
		if (end - p >= 2 && p[0] == '\r' && p[1] == '\n') {
			hdr_end = p;
			content = p + 2;
		} else {
			size_t span = (size_t)(end - p);

			if (span > WEBHOOK_PART_HEADERS_MAX)
				span = WEBHOOK_PART_HEADERS_MAX;
			hdr_end = memmem(p, span, "\r\n\r\n", 4);
			if (hdr_end == NULL)
				return -EINVAL;
			content = hdr_end + 4;
		}
		if (webhook_part_name(
			p, (size_t)(hdr_end - p), name, sizeof(name)) != 0)
			return -EINVAL;
		hit = memmem(content, (size_t)(end - content), delim, dlen);
		if (hit == NULL)
			return -EINVAL;
		rc = webhook_form_add(form, webhook_memdup(name, strlen(name)),
		    strlen(name),
		    webhook_memdup(content, (size_t)(hit - content)),
		    (size_t)(hit - content));
		if (rc != 0)
			return rc;
		p = hit + dlen;
	}
}

/* webhook_text() of a form field; a missing field gives NULL. */
static int
webhook_form_text(const struct webhook_form *form, const char *name,
    bool truncate, char **out)
{
	const struct webhook_field *f = webhook_form_get(form, name);

	*out = NULL;
	return f != NULL ? webhook_text(f->value, f->vlen, truncate, out) : 0;
}

/*
 * The digest of a legacy form: SHA-256 over its fields sorted by name
 * (fields of the same name keep their order), each name and value
 * preceded by its length, the three signature fields left out.
 */
static int
webhook_form_digest(const struct webhook_form *form, struct webhook_event *ev)
{
	static const char *const skip[] = { "timestamp", "token", "signature" };
	unsigned char md[EVP_MAX_MD_SIZE], lenbuf[8];
	size_t order[WEBHOOK_FORM_FIELDS_MAX];
	unsigned int mdlen = 0;
	EVP_MD_CTX *ctx;
	size_t i, j, k, t;
	bool ok;

	for (i = 0; i < form->n; i++) {
		order[i] = i;
		for (j = i; j > 0; j--) {
			const struct webhook_field *a = &form->f[order[j - 1]];
			const struct webhook_field *b = &form->f[order[j]];

			if (strcmp(a->name, b->name) <= 0)
				break;
			t = order[j];
			order[j] = order[j - 1];
			order[j - 1] = t;
		}
	}
	ctx = EVP_MD_CTX_new();
	if (ctx == NULL)
		return -ENOMEM;
	ok = EVP_DigestInit_ex(ctx, webhook_sha256(), NULL) == 1;
	for (i = 0; ok && i < form->n; i++) {
		const struct webhook_field *f = &form->f[order[i]];
		bool skipped = false;

		for (j = 0; j < 3; j++)
			skipped = skipped || strcasecmp(f->name, skip[j]) == 0;
		if (skipped)
			continue;
		for (k = 0; k < 8; k++)
			lenbuf[k] = (unsigned char)(f->namelen >> (56 - 8 * k));
		ok = EVP_DigestUpdate(ctx, lenbuf, 8) == 1 &&
		    EVP_DigestUpdate(ctx, f->name, f->namelen) == 1;
		for (k = 0; k < 8; k++)
			lenbuf[k] = (unsigned char)(f->vlen >> (56 - 8 * k));
		ok = ok && EVP_DigestUpdate(ctx, lenbuf, 8) == 1 &&
		    EVP_DigestUpdate(ctx, f->value, f->vlen) == 1;
	}
	ok = ok && EVP_DigestFinal_ex(ctx, md, &mdlen) == 1 && mdlen == 32;
	EVP_MD_CTX_free(ctx);
	if (!ok)
		return -ENOMEM;
	webhook_hex(md, mdlen, ev->digest);
	return 0;
}

/*
 * Maps a legacy event name to today's (FACTS.md 3.1, 3.5): "bounced" was
 * a hard bounce, now failed/permanent/bounce; "dropped" was a permanent
 * failure whose reason (hardfail, old, ...) came in its own field.  Other
 * names are kept.
 */
static int
webhook_form_event(const struct webhook_form *form, struct webhook_event *ev)
{
	const char *sev = NULL, *reason = NULL;
	int rc;

	rc = webhook_form_text(form, "event", false, &ev->event);
	if (rc != 0 || ev->event == NULL)
		return rc;
	if (strcmp(ev->event, "bounced") == 0) {
		sev = "permanent";
		reason = "bounce";
	} else if (strcmp(ev->event, "dropped") == 0) {
		sev = "permanent";
	} else {
		return webhook_form_text(form, "reason", false, &ev->reason);
	}
	free(ev->event);
	ev->event = strdup("failed");
	ev->severity = strdup(sev);
	if (reason != NULL)
		ev->reason = strdup(reason);
	else
		rc = webhook_form_text(form, "reason", false, &ev->reason);
	if (ev->event == NULL || ev->severity == NULL ||
	    (reason != NULL && ev->reason == NULL))
		rc = -ENOMEM;
	return rc;
}

/* Fills ev from the fields of a legacy form.  Returns 0 or -ENOMEM. */
static int
webhook_from_form(const struct webhook_form *form,
    const struct webhook_sig *sig, struct webhook_event *ev)
{
	const struct webhook_field *f;
	int rc;

	rc = webhook_form_event(form, ev);
	if (rc == 0)
		rc =
		    webhook_form_text(form, "recipient", false, &ev->recipient);
	f = webhook_form_get(form, "message-id");
	if (rc == 0 && f != NULL)
		rc = webhook_bare_id(f->value, f->vlen, &ev->message_id);
	if (rc == 0)
		rc = webhook_form_text(
		    form, "redrive-id", false, &ev->redrive_id_text);
	if (rc == 0 && ev->redrive_id_text != NULL)
		ev->redrive_id = webhook_id_value(ev->redrive_id_text);
	f = webhook_form_get(form, "code");
	if (f != NULL)
		ev->code = webhook_code_text(f->value, f->vlen);
	if (rc == 0)
		rc =
		    webhook_form_text(form, "error", true, &ev->status_message);
	if (rc == 0 && ev->status_message == NULL)
		rc = webhook_form_text(
		    form, "description", true, &ev->status_message);
	if (rc == 0 && ev->status_message == NULL)
		rc = webhook_form_text(
		    form, "notification", true, &ev->status_message);
	if (rc == 0)
		rc = webhook_text(
		    sig->token, strlen(sig->token), false, &ev->token);
	if (rc == 0)
		rc = webhook_form_digest(form, ev);
	ev->at = sig->ts <= INT64_MAX / 1000 ? sig->ts * 1000 : 0;
	return rc;
}

/*
 * The legacy form webhook (FACTS.md 3.1): urlencoded or multipart, the
 * signature fields among the others, the last of each name counting.
 */
static enum webhook_result
webhook_parse_form(const char *ctype, bool multipart, const char *body,
    size_t len, const char *const *keys, size_t nkeys, int64_t window_ms,
    int64_t now_ms, struct webhook_event *ev)
{
	const struct webhook_field *ts, *tok, *s;
	struct webhook_form *form;
	struct webhook_sig sig;
	enum webhook_result res;
	int rc;

	memset(&sig, 0, sizeof(sig));
	form = calloc(1, sizeof(*form));
	if (form == NULL)
		return WEBHOOK_NOMEM;
	rc = multipart ? webhook_form_multipart(ctype, body, len, form)
		       : webhook_form_urlencoded(body, len, form);
	if (rc != 0) {
		res = rc == -ENOMEM ? WEBHOOK_NOMEM : WEBHOOK_MALFORMED;
		goto out;
	}
	ts = webhook_form_get(form, "timestamp");
	tok = webhook_form_get(form, "token");
	s = webhook_form_get(form, "signature");
	if (ts == NULL || tok == NULL || s == NULL ||
	    !webhook_sig_set_timestamp(&sig, ts->value, ts->vlen) ||
	    !webhook_sig_set_token(&sig, tok->value, tok->vlen) ||
	    strlen(s->value) != s->vlen) {
		res = WEBHOOK_BAD_SIGNATURE;
		goto out;
	}
	sig.sig = s->value;
	res = webhook_sig_check(&sig, keys, nkeys, window_ms, now_ms);
	if (res != WEBHOOK_OK)
		goto out;
	if (webhook_form_get(form, "event") == NULL) {
		res = WEBHOOK_MALFORMED;
		goto out;
	}
	if (webhook_from_form(form, &sig, ev) != 0)
		res = WEBHOOK_NOMEM;
out:
	webhook_form_free(form);
	return res;
}

/*
 * True when the media type of a Content-Type value (before any ';') is
 * type, ASCII case ignored (RFC 9110 section 8.3.1).
 */
static bool
webhook_ctype_is(const char *ctype, const char *type)
{
	size_t n = strlen(type);

	while (*ctype == ' ' || *ctype == '\t')
		ctype++;
	if (strncasecmp(ctype, type, n) != 0)
		return false;
	ctype += n;
	while (*ctype == ' ' || *ctype == '\t')
		ctype++;
	return *ctype == '\0' || *ctype == ';';
}

/*
 * Dispatches on the Content-Type: JSON (also when none is given), the two
 * legacy form encodings, anything else malformed.  ev is zeroed first and
 * emptied again on any result but WEBHOOK_OK.
 */
enum webhook_result
webhook_parse(const char *content_type, const char *body, size_t len,
    const char *const *keys, size_t nkeys, int64_t window_ms, int64_t now_ms,
    struct webhook_event *ev)
{
	enum webhook_result res;

	memset(ev, 0, sizeof(*ev));
	if (body == NULL || len == 0 || len > WEBHOOK_BODY_MAX)
		return WEBHOOK_MALFORMED;
	if (content_type == NULL || content_type[0] == '\0' ||
	    webhook_ctype_is(content_type, "application/json"))
		res = webhook_parse_json(
		    body, len, keys, nkeys, window_ms, now_ms, ev);
	else if (webhook_ctype_is(
		     content_type, "application/x-www-form-urlencoded"))
		res = webhook_parse_form(content_type, false, body, len, keys,
		    nkeys, window_ms, now_ms, ev);
	else if (webhook_ctype_is(content_type, "multipart/form-data"))
		res = webhook_parse_form(content_type, true, body, len, keys,
		    nkeys, window_ms, now_ms, ev);
	else
		res = WEBHOOK_MALFORMED;
	if (res != WEBHOOK_OK)
		webhook_event_clear(ev);
	return res;
}

void
webhook_event_clear(struct webhook_event *ev)
{
	if (ev == NULL)
		return;
	free(ev->token);
	free(ev->event);
	free(ev->severity);
	free(ev->reason);
	free(ev->recipient);
	free(ev->message_id);
	free(ev->redrive_id_text);
	free(ev->event_id);
	free(ev->enhanced_code);
	free(ev->status_message);
	free(ev->storage_url);
	memset(ev, 0, sizeof(*ev));
}
