/*
 * test_webhook: tracker/webhook.c on raw bytes.  Every signature test
 * vector and every payload of shared/mailgun/fixtures (found under
 * $REDRIVE_FIXTURES, default ../shared/mailgun/fixtures from the repo
 * root) mapped to its normalised fields and its policy decision; the
 * signature checks (wrong key, rotation, parent-signature, case, length,
 * missing fields, the window on both sides, verification before anything
 * else); event-data missing or of the wrong type; user-variables,
 * delivery-status and code in every shape FACTS.md 6.13 lists; the digest;
 * the legacy urlencoded and multipart bodies; and bodies cut at every
 * position.  Bodies are handed over in heap buffers without a NUL, so that
 * ASan sees any over-read.
 */
#include <dirent.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "redrive/config.h"
#include "redrive/policy.h"
#include "redrive/webhook.h"

#define SYMFONY_KEY "key-0p6mqbf74lb20gzq9f4dhpn9rg3zyk26"
#define TEST_KEY "key-3ax6xnjp29jd6fds4gc373sgvjxteol0"
#define TEST_TS "1700000000"
#define TEST_TOKEN "c0ffee5a1e7e1c0ffee5a1e7e1c0ffee5a1e7e1c0ffee5a1e7"
#define NOW_MS 1700000000000LL
#define HOUR_MS (3600LL * 1000)
#define WINDOW_MS (24 * HOUR_MS)
#define JSON_CT "application/json"
#define FORM_CT "application/x-www-form-urlencoded"

static const char *const test_keys[] = { TEST_KEY };

/* printf into a new string. */
static char *strf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static char *
strf(const char *fmt, ...)
{
	va_list ap;
	char *s = NULL;
	int n;

	va_start(ap, fmt);
	n = vasprintf(&s, fmt, ap);
	va_end(ap);
	assert_true(n >= 0);
	return s;
}

/* The fixture directory: $REDRIVE_FIXTURES or the default. */
static const char *
fixtures_dir(void)
{
	const char *d = getenv("REDRIVE_FIXTURES");

	return d != NULL && d[0] != '\0' ? d : "../shared/mailgun/fixtures";
}

/* Reads a fixture whole; fails the test, saying where it looked. */
static char *
fixture_read(const char *name, size_t *len)
{
	char *path = strf("%s/%s", fixtures_dir(), name);
	char *buf = NULL;
	FILE *f = fopen(path, "rb");
	long n;

	if (f == NULL) {
		fail_msg("cannot open fixture %s: %s (run from the repo root "
			 "or set REDRIVE_FIXTURES)",
		    path, strerror(errno));
		abort(); /* not reached: fail_msg() jumps out */
	}
	assert_int_equal(fseek(f, 0, SEEK_END), 0);
	n = ftell(f);
	assert_true(n > 0);
	assert_int_equal(fseek(f, 0, SEEK_SET), 0);
	buf = malloc((size_t)n + 1);
	assert_non_null(buf);
	assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
	buf[n] = '\0';
	fclose(f);
	free(path);
	*len = (size_t)n;
	return buf;
}

/* Hex HMAC-SHA256(key, ts || token), computed here independently. */
static void
sign(const char *key, const char *ts, const char *token, char out[65])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	char *msg = strf("%s%s", ts, token);
	size_t i;

	assert_non_null(HMAC(EVP_sha256(), key, (int)strlen(key),
	    (const unsigned char *)msg, strlen(msg), md, &mdlen));
	assert_int_equal(mdlen, 32);
	for (i = 0; i < 32; i++)
		(void)snprintf(out + 2 * i, 3, "%02x", md[i]);
	free(msg);
}

/* A JSON body: a signature block signed with key around event_data. */
static char *
signed_body(
    const char *key, const char *ts, const char *token, const char *event_data)
{
	char sig[65];

	sign(key, ts, token, sig);
	return strf("{\"signature\":{\"timestamp\":\"%s\",\"token\":\"%s\","
		    "\"signature\":\"%s\"},\"event-data\":%s}",
	    ts, token, sig, event_data);
}

/* Parses len bytes of body from a heap copy without a NUL. */
static enum webhook_result
parse_n(const char *ctype, const char *body, size_t len,
    const char *const *keys, size_t nkeys, int64_t now,
    struct webhook_event *ev)
{
	char *b = malloc(len > 0 ? len : 1);
	enum webhook_result res;

	assert_non_null(b);
	if (len > 0)
		memcpy(b, body, len);
	res = webhook_parse(ctype, b, len, keys, nkeys, WINDOW_MS, now, ev);
	free(b);
	return res;
}

/* Parses a string body under TEST_KEY at NOW_MS. */
static enum webhook_result
parse(const char *ctype, const char *body, struct webhook_event *ev)
{
	return parse_n(ctype, body, strlen(body), test_keys, 1, NOW_MS, ev);
}

/* Signs event_data with TEST_KEY and parses it; asserts WEBHOOK_OK. */
static void
parse_event(const char *event_data, struct webhook_event *ev)
{
	char *body = signed_body(TEST_KEY, TEST_TS, TEST_TOKEN, event_data);

	assert_int_equal(parse(JSON_CT, body, ev), WEBHOOK_OK);
	free(body);
}

/* The result of a JSON signature block with these members verbatim. */
static enum webhook_result
parse_sig_block(const char *members)
{
	struct webhook_event ev;
	char *body = strf("{\"signature\":{%s},\"event-data\":"
			  "{\"event\":\"delivered\"}}",
	    members);
	enum webhook_result res = parse(JSON_CT, body, &ev);

	if (res == WEBHOOK_OK)
		webhook_event_clear(&ev);
	else
		assert_null(ev.token);
	free(body);
	return res;
}

static void
assert_str_or_null(const char *got, const char *want, const char *what)
{
	if (want == NULL && got == NULL)
		return;
	if (want == NULL || got == NULL || strcmp(got, want) != 0)
		fail_msg("%s: got \"%s\", want \"%s\"", what,
		    got != NULL ? got : "(null)",
		    want != NULL ? want : "(null)");
}

/* Every member of ev is NULL or zero (what a failed parse leaves). */
static void
assert_event_empty(const struct webhook_event *ev)
{
	struct webhook_event zero;

	memset(&zero, 0, sizeof(zero));
	assert_memory_equal(ev, &zero, sizeof(zero));
}

static void
test_vectors(void **state)
{
	size_t len, i, nvalid = 0;
	char *text = fixture_read("signature-test-vectors.json", &len);
	json_error_t jerr;
	json_t *arr = json_loadb(text, len, 0, &jerr);

	(void)state;
	assert_non_null(arr);
	assert_true(json_is_array(arr));
	assert_true(json_array_size(arr) >= 3);
	for (i = 0; i < json_array_size(arr); i++) {
		json_t *v = json_array_get(arr, i);
		const char *key = json_string_value(json_object_get(v, "key"));
		const char *ts =
		    json_string_value(json_object_get(v, "timestamp"));
		const char *tok =
		    json_string_value(json_object_get(v, "token"));
		const char *sig =
		    json_string_value(json_object_get(v, "signature"));
		bool valid = json_is_true(json_object_get(v, "valid"));
		char upper[65], mine[65];
		size_t k;

		assert_non_null(key);
		assert_non_null(ts);
		assert_non_null(tok);
		assert_non_null(sig);
		if (webhook_verify(key, ts, tok, sig) != valid)
			fail_msg("vector %zu (%s): verify != %d", i,
			    json_string_value(json_object_get(v, "source")),
			    valid);
		/* Uppercase hex decodes to the same bytes. */
		assert_int_equal(strlen(sig), 64);
		for (k = 0; k <= 64; k++)
			upper[k] = (char)(sig[k] >= 'a' && sig[k] <= 'f'
				? sig[k] - 'a' + 'A'
				: sig[k]);
		assert_int_equal(webhook_verify(key, ts, tok, upper), valid);
		/* The independent HMAC here agrees. */
		sign(key, ts, tok, mine);
		assert_int_equal(strcmp(mine, sig) == 0, valid);
		nvalid += valid;
	}
	assert_true(nvalid >= 2);
	json_decref(arr);
	free(text);
}

static void
test_verify_args(void **state)
{
	char sig[65], tok[WEBHOOK_TOKEN_MAX + 1];

	(void)state;
	sign(TEST_KEY, TEST_TS, TEST_TOKEN, sig);
	assert_true(webhook_verify(TEST_KEY, TEST_TS, TEST_TOKEN, sig));
	assert_false(webhook_verify(NULL, TEST_TS, TEST_TOKEN, sig));
	assert_false(webhook_verify(TEST_KEY, NULL, TEST_TOKEN, sig));
	assert_false(webhook_verify(TEST_KEY, TEST_TS, NULL, sig));
	assert_false(webhook_verify(TEST_KEY, TEST_TS, TEST_TOKEN, NULL));
	assert_false(webhook_verify("", TEST_TS, TEST_TOKEN, sig));
	assert_false(webhook_verify(TEST_KEY, "", TEST_TOKEN, sig));
	assert_false(webhook_verify(TEST_KEY, TEST_TS, "", sig));
	/* The separator-less concatenation is what is signed. */
	assert_false(webhook_verify(TEST_KEY, "170000000", "0" TEST_TOKEN,
	    "000000000000000000000000000000000000000000000000000000000000000"
	    "0"));
	/* A token at the bound is refused even when signed. */
	memset(tok, 'a', WEBHOOK_TOKEN_MAX);
	tok[WEBHOOK_TOKEN_MAX] = '\0';
	sign(TEST_KEY, TEST_TS, tok, sig);
	assert_false(webhook_verify(TEST_KEY, TEST_TS, tok, sig));
	tok[WEBHOOK_TOKEN_MAX - 1] = '\0';
	sign(TEST_KEY, TEST_TS, tok, sig);
	assert_true(webhook_verify(TEST_KEY, TEST_TS, tok, sig));
}

/* The expected normalisation and policy decision of one fixture. */
struct expect {
	const char *file;
	const char *token; /* symfony bodies only */
	const char *sig_ts;
	const char *event, *severity, *reason, *recipient, *message_id;
	const char *event_id;
	int64_t at;
	int code;
	const char *enhanced, *status, *storage_url;
	bool delayed;
	enum policy_decision decision;
};

#define SE_URL \
	"https://se.api.mailgun.net/v3/domains/example.org/messages/eyJwI..."
#define SF_URL                                                            \
	"https://se.api.mailgun.net/v3/domains/app.symfony.com/messages/" \
	"message_key"
#define SF_MID "20130503182626.18666.16540@app.symfony.com"
#define SF_BOUNCE_MID "20130503192659.13651.20287@app.symfony.com"
#define SF_TOK_ACC "885894756b6c371a377f5f9516d60a4db497ad27d4931ed215"
#define SF_TOK_FAIL "fff0ebc59c0516f4ce0823212a2f45e5c67814420b99fe558b"
#define MG_MID "20180622182958.1.48906CB188F1A454@exmple.org"

static const struct expect symfony_expect[] = {
	{ "symfony-accepted.json", SF_TOK_ACC, "1661621710", "accepted", NULL,
	    NULL, "alice@example.com", "##REDACTED##", "4o7-z86dSkSI54c6IudeuA",
	    1707402341912LL, 0, NULL, NULL,
	    "https://storage-us-east4.api.mailgun.net/v3/domains/##REDACTED##",
	    false, POLICY_IGNORE },
	{ "symfony-clicked.json", SF_TOK_ACC, "1661621710", "clicked", NULL,
	    NULL, "alice@example.com", SF_MID, "Ase7i2zsRYeDXztHGENqRA",
	    1521243339874LL, 0, NULL, NULL, NULL, false, POLICY_IGNORE },
	{ "symfony-complained.json",
	    "335da63647194414fe8bbb7c67b3b0585e426bcd10b258dcf4", "1661621468",
	    "complained", NULL, NULL, "alice@example.com",
	    "20110215055645.25246.63817@app.symfony.com",
	    "-Agny091SquKnsrW2NEKUA", 1521233123501LL, 0, NULL, NULL, NULL,
	    false, POLICY_IGNORE },
	{ "symfony-delivered.json",
	    "d1931d9645b65e60f6fddf94448e982ff8db9256144a7fcb15", "1661621787",
	    "delivered", NULL, NULL, "alice@example.com", SF_MID,
	    "CPgfbmQMTCKtHW6uIWtuVe", 1521472262000LL, 250, NULL, "OK", SF_URL,
	    false, POLICY_IGNORE },
	{ "symfony-failed-permanent-bounce-no-description.json", SF_TOK_FAIL,
	    "1661590666", "failed", "permanent", "bounce", "alice@example.com",
	    SF_BOUNCE_MID, "G9Bn5sl1TC6nu79C8C0bwg", 1521233195376LL, 550, NULL,
	    "No Such User Here", SF_URL, false, POLICY_GIVE_UP },
	{ "symfony-failed-permanent-bounce.json", SF_TOK_FAIL, "1661590666",
	    "failed", "permanent", "bounce", "alice@example.com", SF_BOUNCE_MID,
	    "G9Bn5sl1TC6nu79C8C0bwg", 1521233195376LL, 550, NULL,
	    "No Such User Here", SF_URL, false, POLICY_GIVE_UP },
	{ "symfony-failed-permanent-suppress-bounce.json", SF_TOK_FAIL,
	    "1661590666", "failed", "permanent", "suppress-bounce",
	    "alice@example.com", SF_BOUNCE_MID, "G9Bn5sl1TC6nu79C8C0bwg",
	    1521233195376LL, 605, NULL,
	    "Not delivering to previously bounced address", SF_URL, false,
	    POLICY_GIVE_UP },
	{ "symfony-failed-temporary-generic.json",
	    "fafa24ab7699395ccfce2847b87dce8a29f6696a79127ee77c", "1661621361",
	    "failed", "temporary", "generic", "alice@example.com", SF_MID,
	    "Fs7-5t81S2ispqxqDw2U4Q", 1521472262908LL, 452, "4.2.2",
	    "4.2.2 The email account that you tried to reach is over quota. "
	    "Please direct\n4.2.2 the recipient to\n4.2.2  "
	    "https://support.example.com/mail/?p=422",
	    SF_URL, false, POLICY_WAIT },
	{ "symfony-opened.json",
	    "bbb203bc8d6602b6b22e4ce88a074f73fecb68d3a96e9c8318", "1661621752",
	    "opened", NULL, NULL, "alice@example.com", SF_MID,
	    "Ase7i2zsRYeDXztHGENqRA", 1521243339874LL, 0, NULL, NULL, NULL,
	    false, POLICY_IGNORE },
	{ "symfony-unsubscribed.json",
	    "1483353025fd6e45b682f14b18d943c52cea11161c1721ee85", "1661621652",
	    "unsubscribed", NULL, NULL, "alice@example.com", SF_MID,
	    "Ase7i2zsRYeDXztHGENqRA", 1521243339874LL, 0, NULL, NULL, NULL,
	    false, POLICY_IGNORE },
};

static const struct expect docs_expect[] = {
	{ "mailgun-docs-event-accepted-routed.json", NULL, NULL, "accepted",
	    NULL, NULL, "john@example.com", MG_MID, "cWgTfzV6QQiXY4PqhlLClw",
	    1529692198719LL, 0, NULL, NULL, SE_URL, false, POLICY_IGNORE },
	{ "mailgun-docs-event-accepted.json", NULL, NULL, "accepted", NULL,
	    NULL, "team@example.org", MG_MID, "jxVuhYlhReaK3QsggHfFRA",
	    1529692198642LL, 0, NULL, NULL, SE_URL, false, POLICY_IGNORE },
	{ "mailgun-docs-event-clicked.json", NULL, NULL, "clicked", NULL, NULL,
	    "recipient@example.com",
	    "20130821085807.30688.67706@samples.mailgun.org",
	    "G5zMz2ysS6OxZ2C8xb2Tqg", 1377075564095LL, 0, NULL, NULL, NULL,
	    false, POLICY_IGNORE },
	{ "mailgun-docs-event-complained.json", NULL, NULL, "complained", NULL,
	    NULL, "foo@example.com", "20130718032413.263EE2E0926@example.com",
	    "ncV2XwymRUKbPek_MIM-Gw", 1377214260050LL, 0, NULL, NULL, NULL,
	    false, POLICY_IGNORE },
	{ "mailgun-docs-event-delivered.json", NULL, NULL, "delivered", NULL,
	    NULL, "john@example.com", MG_MID, "hK7mQVt1QtqRiOfQXta4sw",
	    1529692199626LL, 250, NULL, "OK",
	    "https://storage-us-west1.api.mailgun.net/v3/domains/...", false,
	    POLICY_IGNORE },
	{ "mailgun-docs-event-failed-permanent-delayed-bounce.json", NULL, NULL,
	    "failed", "permanent", "generic", "christest123@test.com",
	    "20221019211537.93011d31ea99c5a8@test.com",
	    "ZDMqRgjLTDi6rQcy7K60aA", 1666214138405LL, 550, "5.1.1",
	    "smtp; 550-5.1.1 The email account that you tried to reach does "
	    "not exist.",
	    "https://storage-us-east4.api.mailgun.net/v3/domains/...", true,
	    POLICY_GIVE_UP },
	{ "mailgun-docs-event-failed-permanent-suppress-bounce.json", NULL,
	    NULL, "failed", "permanent", "suppress-bounce", "slava@mailgun.com",
	    "20180622211249.1.2A6098970A380E12@example.org",
	    "pl271FzxTTmGRW8Uj3dUWw", 1529701969818LL, 605, NULL,
	    "Not delivering to previously bounced address", SE_URL, false,
	    POLICY_GIVE_UP },
	{ "mailgun-docs-event-failed-temporary-generic.json", NULL, NULL,
	    "failed", "temporary", "generic", "test@test.com",
	    "20221006142837.1618e01bf42da9fa@test.com",
	    "xYrATi63Rke8EC_s7EoJeA", 1665066523872LL, 451, "4.7.652",
	    "4.7.652 The mail server [xxx.xxx.xxx.xxx] has exceeded the "
	    "maximum number of connections.",
	    "https://storage-us-east4.api.mailgun.net/v3/domains/...", false,
	    POLICY_WAIT },
	{ "mailgun-docs-event-failed-temporary-nomx-498.json", NULL, NULL,
	    "failed", "temporary", "generic", "bar@example.com",
	    "20130813230036.10303.40433@samples.mailgun.org",
	    "czsjqFATSlC3QtAK-C80nw", 1376435471107LL, 498, NULL,
	    "No MX for [example.com]", NULL, false, POLICY_WAIT },
	{ "mailgun-docs-event-opened.json", NULL, NULL, "opened", NULL, NULL,
	    "recipient@example.com",
	    "20130821005614.19826.35976@samples.mailgun.org",
	    "-laxIqj9QWubsjY_3pTq_g", 1377047343042LL, 0, NULL, NULL, NULL,
	    false, POLICY_IGNORE },
	{ "mailgun-docs-event-rejected.json", NULL, NULL, "rejected", NULL,
	    NULL, NULL,
	    "20180622220256.1.B31A451A2E5422BB@"
	    "sandbox55887fac92de874df5ae0023b75fd62f1d.mailgun.org",
	    "OMTXD3-sSmKIQa1gSKkYVA", 1529704976105LL, 0, NULL,
	    "Sandbox subdomains are for test purposes only. Please add your "
	    "own domain or add the address to authorized recipients in "
	    "Account Settings.",
	    NULL, false, POLICY_IGNORE },
	{ "mailgun-docs-event-stored.json", NULL, NULL, "stored", NULL, NULL,
	    NULL, MG_MID, "WRVmVc47QYi4DHth_xpRUA", 1529692198692LL, 0, NULL,
	    NULL, SE_URL, false, POLICY_IGNORE },
	{ "mailgun-docs-event-unsubscribed.json", NULL, NULL, "unsubscribed",
	    NULL, NULL, "recipient@example.com",
	    "20130822232216.13966.79700@samples.mailgun.org",
	    "W3X4JOhFT-OZidZGKKr9iA", 1377213791421LL, 0, NULL, NULL, NULL,
	    false, POLICY_IGNORE },
};

/* Checks ev against x, and the policy's decision on it. */
static void
fixture_check(
    const struct expect *x, const struct webhook_event *ev, const char *token)
{
	struct config cfg;
	char why[256];
	size_t i;

	assert_str_or_null(ev->token, token, "token");
	assert_str_or_null(ev->event, x->event, "event");
	assert_str_or_null(ev->severity, x->severity, "severity");
	assert_str_or_null(ev->reason, x->reason, "reason");
	assert_str_or_null(ev->recipient, x->recipient, "recipient");
	assert_str_or_null(ev->message_id, x->message_id, "message_id");
	assert_str_or_null(ev->event_id, x->event_id, "event_id");
	assert_str_or_null(ev->enhanced_code, x->enhanced, "enhanced_code");
	assert_str_or_null(ev->status_message, x->status, "status_message");
	assert_str_or_null(ev->storage_url, x->storage_url, "storage_url");
	assert_null(ev->redrive_id_text);
	assert_int_equal(ev->redrive_id, 0);
	assert_int_equal(ev->at, x->at);
	assert_int_equal(ev->code, x->code);
	assert_int_equal(ev->delayed_bounce, x->delayed);
	assert_int_equal(strlen(ev->digest), 64);
	for (i = 0; i < 64; i++)
		assert_non_null(strchr("0123456789abcdef", ev->digest[i]));
	assert_int_equal(config_defaults(&cfg), 0);
	why[0] = '\0';
	if (policy_decide(&cfg, ev, why, sizeof(why)) != x->decision)
		fail_msg("%s: policy %s", x->file, why);
	assert_true(why[0] != '\0');
	config_free(&cfg);
}

static void
test_fixtures_symfony(void **state)
{
	const char *const keys[] = { SYMFONY_KEY };
	char digests[sizeof(symfony_expect) / sizeof(symfony_expect[0])][65];
	size_t i, len;

	(void)state;
	for (i = 0; i < sizeof(symfony_expect) / sizeof(symfony_expect[0]);
	     i++) {
		const struct expect *x = &symfony_expect[i];
		char *body = fixture_read(x->file, &len);
		int64_t ts = strtoll(x->sig_ts, NULL, 10) * 1000;
		struct webhook_event ev;
		enum webhook_result res;

		res = parse_n(JSON_CT, body, len, keys, 1, ts + HOUR_MS, &ev);
		if (res != WEBHOOK_OK)
			fail_msg("%s: result %d", x->file, res);
		fixture_check(x, &ev, x->token);
		memcpy(digests[i], ev.digest, 65);
		webhook_event_clear(&ev);
		/* Outside the window (the signature is of 2022): stale. */
		assert_int_equal(
		    parse_n(JSON_CT, body, len, keys, 1, NOW_MS, &ev),
		    WEBHOOK_STALE);
		assert_event_empty(&ev);
		/* Under another key only: refused. */
		assert_int_equal(parse_n(JSON_CT, body, len, test_keys, 1,
				     ts + HOUR_MS, &ev),
		    WEBHOOK_BAD_SIGNATURE);
		free(body);
	}
	/*
	 * accepted and clicked share one signature block (FACTS.md 3.8): the
	 * replayed signature verifies, the digests tell the events apart.
	 * So do the two bounces, which differ by one empty description.
	 */
	assert_string_not_equal(digests[0], digests[1]);
	assert_string_not_equal(digests[4], digests[5]);
	assert_string_not_equal(digests[5], digests[6]);
}

static void
test_fixtures_docs(void **state)
{
	size_t i, len;

	(void)state;
	for (i = 0; i < sizeof(docs_expect) / sizeof(docs_expect[0]); i++) {
		const struct expect *x = &docs_expect[i];
		char *data = fixture_read(x->file, &len);
		char *body = signed_body(TEST_KEY, TEST_TS, TEST_TOKEN, data);
		struct webhook_event ev;
		enum webhook_result res;

		res = parse(JSON_CT, body, &ev);
		if (res != WEBHOOK_OK)
			fail_msg("%s: result %d", x->file, res);
		fixture_check(x, &ev, TEST_TOKEN);
		webhook_event_clear(&ev);
		free(body);
		free(data);
	}
}

/* Every file in the fixture directory is covered by a table above. */
static void
test_fixtures_all_listed(void **state)
{
	DIR *d = opendir(fixtures_dir());
	struct dirent *de;
	size_t i, n = 0;

	(void)state;
	if (d == NULL) {
		fail_msg("cannot open %s: %s (set REDRIVE_FIXTURES)",
		    fixtures_dir(), strerror(errno));
		abort(); /* not reached: fail_msg() jumps out */
	}
	while ((de = readdir(d)) != NULL) {
		bool found = false;

		if (strstr(de->d_name, ".json") == NULL)
			continue;
		if (strcmp(de->d_name, "signature-test-vectors.json") == 0)
			continue;
		for (i = 0;
		     i < sizeof(symfony_expect) / sizeof(symfony_expect[0]);
		     i++)
			found = found ||
			    strcmp(symfony_expect[i].file, de->d_name) == 0;
		for (i = 0; i < sizeof(docs_expect) / sizeof(docs_expect[0]);
		     i++)
			found = found ||
			    strcmp(docs_expect[i].file, de->d_name) == 0;
		if (!found)
			fail_msg("fixture %s has no expectation", de->d_name);
		n++;
	}
	closedir(d);
	assert_int_equal(n,
	    sizeof(symfony_expect) / sizeof(symfony_expect[0]) +
		sizeof(docs_expect) / sizeof(docs_expect[0]));
}

static void
test_key_rotation(void **state)
{
	const char *const rotated[] = { "key-new-not-yet-used", TEST_KEY };
	const char *const first[] = { TEST_KEY, "key-old" };
	const char *const none[] = { "key-a", "key-b", "key-c" };
	const char *const with_null[] = { NULL, TEST_KEY };
	char *body = signed_body(
	    TEST_KEY, TEST_TS, TEST_TOKEN, "{\"event\":\"delivered\"}");
	struct webhook_event ev;
	size_t len = strlen(body);

	(void)state;
	assert_int_equal(
	    parse_n(JSON_CT, body, len, rotated, 2, NOW_MS, &ev), WEBHOOK_OK);
	webhook_event_clear(&ev);
	assert_int_equal(
	    parse_n(JSON_CT, body, len, first, 2, NOW_MS, &ev), WEBHOOK_OK);
	webhook_event_clear(&ev);
	assert_int_equal(parse_n(JSON_CT, body, len, none, 3, NOW_MS, &ev),
	    WEBHOOK_BAD_SIGNATURE);
	assert_int_equal(
	    parse_n(JSON_CT, body, len, with_null, 2, NOW_MS, &ev), WEBHOOK_OK);
	webhook_event_clear(&ev);
	assert_int_equal(parse_n(JSON_CT, body, len, NULL, 0, NOW_MS, &ev),
	    WEBHOOK_BAD_SIGNATURE);
	assert_int_equal(parse_n(JSON_CT, body, len, rotated, 1, NOW_MS, &ev),
	    WEBHOOK_BAD_SIGNATURE);
	free(body);
}

static void
test_bad_signatures(void **state)
{
	char sig[65], bad[80], longtok[WEBHOOK_TOKEN_MAX + 8];
	char *m;
	size_t i;

	(void)state;
	sign(TEST_KEY, TEST_TS, TEST_TOKEN, sig);
#define MEMBERS(ts, tok, s) \
	strf("\"timestamp\":%s,\"token\":%s,\"signature\":%s", ts, tok, s)
#define CHECK(members, want)                                  \
	do {                                                  \
		m = (members);                                \
		assert_int_equal(parse_sig_block(m), (want)); \
		free(m);                                      \
	} while (0)
	(void)snprintf(bad, sizeof(bad), "\"%s\"", sig);
	CHECK(
	    MEMBERS("\"" TEST_TS "\"", "\"" TEST_TOKEN "\"", bad), WEBHOOK_OK);
	/* Uppercase hex: the same bytes. */
	for (i = 1; bad[i] != '"'; i++)
		if (bad[i] >= 'a' && bad[i] <= 'f')
			bad[i] = (char)(bad[i] - 'a' + 'A');
	CHECK(
	    MEMBERS("\"" TEST_TS "\"", "\"" TEST_TOKEN "\"", bad), WEBHOOK_OK);
	/* One digit changed. */
	(void)snprintf(bad, sizeof(bad), "\"%s\"", sig);
	bad[10] = bad[10] == '0' ? '1' : '0';
	CHECK(MEMBERS("\"" TEST_TS "\"", "\"" TEST_TOKEN "\"", bad),
	    WEBHOOK_BAD_SIGNATURE);
	/* The last digit changed (the whole MAC is compared). */
	(void)snprintf(bad, sizeof(bad), "\"%s\"", sig);
	bad[64] = bad[64] == '0' ? '1' : '0';
	CHECK(MEMBERS("\"" TEST_TS "\"", "\"" TEST_TOKEN "\"", bad),
	    WEBHOOK_BAD_SIGNATURE);
	/* Short, long, not hex, empty, not a string. */
	(void)snprintf(bad, sizeof(bad), "\"%.63s\"", sig);
	CHECK(MEMBERS("\"" TEST_TS "\"", "\"" TEST_TOKEN "\"", bad),
	    WEBHOOK_BAD_SIGNATURE);
	(void)snprintf(bad, sizeof(bad), "\"%s0\"", sig);
	CHECK(MEMBERS("\"" TEST_TS "\"", "\"" TEST_TOKEN "\"", bad),
	    WEBHOOK_BAD_SIGNATURE);
	(void)snprintf(bad, sizeof(bad), "\"%s\"", sig);
	bad[5] = 'g';
	CHECK(MEMBERS("\"" TEST_TS "\"", "\"" TEST_TOKEN "\"", bad),
	    WEBHOOK_BAD_SIGNATURE);
	(void)snprintf(bad, sizeof(bad), "\" %.63s\"", sig);
	CHECK(MEMBERS("\"" TEST_TS "\"", "\"" TEST_TOKEN "\"", bad),
	    WEBHOOK_BAD_SIGNATURE);
	CHECK(MEMBERS("\"" TEST_TS "\"", "\"" TEST_TOKEN "\"", "\"\""),
	    WEBHOOK_BAD_SIGNATURE);
	CHECK(MEMBERS("\"" TEST_TS "\"", "\"" TEST_TOKEN "\"", "12"),
	    WEBHOOK_BAD_SIGNATURE);
	CHECK(MEMBERS("\"" TEST_TS "\"", "\"" TEST_TOKEN "\"", "null"),
	    WEBHOOK_BAD_SIGNATURE);
	/* The right signature for another token or timestamp. */
	(void)snprintf(bad, sizeof(bad), "\"%s\"", sig);
	CHECK(MEMBERS("\"" TEST_TS "\"", "\"x" TEST_TOKEN "\"", bad),
	    WEBHOOK_BAD_SIGNATURE);
	CHECK(MEMBERS("\"1700000001\"", "\"" TEST_TOKEN "\"", bad),
	    WEBHOOK_BAD_SIGNATURE);
	/* The timestamp as a JSON integer is the same text. */
	CHECK(MEMBERS(TEST_TS, "\"" TEST_TOKEN "\"", bad), WEBHOOK_OK);
	CHECK(MEMBERS("1700000000.0", "\"" TEST_TOKEN "\"", bad),
	    WEBHOOK_BAD_SIGNATURE);
	CHECK(MEMBERS("-1700000000", "\"" TEST_TOKEN "\"", bad),
	    WEBHOOK_BAD_SIGNATURE);
	CHECK(MEMBERS("\"+1700000000\"", "\"" TEST_TOKEN "\"", bad),
	    WEBHOOK_BAD_SIGNATURE);
	CHECK(MEMBERS("\"1700000000 \"", "\"" TEST_TOKEN "\"", bad),
	    WEBHOOK_BAD_SIGNATURE);
	CHECK(
	    MEMBERS("\"\"", "\"" TEST_TOKEN "\"", bad), WEBHOOK_BAD_SIGNATURE);
	CHECK(MEMBERS("\"99999999999999999999\"", "\"" TEST_TOKEN "\"", bad),
	    WEBHOOK_BAD_SIGNATURE);
	CHECK(
	    MEMBERS("null", "\"" TEST_TOKEN "\"", bad), WEBHOOK_BAD_SIGNATURE);
	/* Token: missing, empty, not a string, too long. */
	CHECK(strf("\"timestamp\":\"%s\",\"signature\":%s", TEST_TS, bad),
	    WEBHOOK_BAD_SIGNATURE);
	CHECK(strf("\"token\":\"%s\",\"signature\":%s", TEST_TOKEN, bad),
	    WEBHOOK_BAD_SIGNATURE);
	CHECK(
	    strf("\"timestamp\":\"%s\",\"token\":\"%s\"", TEST_TS, TEST_TOKEN),
	    WEBHOOK_BAD_SIGNATURE);
	CHECK(MEMBERS("\"" TEST_TS "\"", "\"\"", bad), WEBHOOK_BAD_SIGNATURE);
	CHECK(MEMBERS("\"" TEST_TS "\"", "42", bad), WEBHOOK_BAD_SIGNATURE);
	/* A token with a space or a non-ASCII byte, even when signed. */
	sign(TEST_KEY, TEST_TS, "to ken", sig);
	CHECK(strf("\"timestamp\":\"%s\",\"token\":\"to ken\","
		   "\"signature\":\"%s\"",
		  TEST_TS, sig),
	    WEBHOOK_BAD_SIGNATURE);
	sign(TEST_KEY, TEST_TS, "tok\xc3\xa9", sig);
	CHECK(strf("\"timestamp\":\"%s\",\"token\":\"tok\xc3\xa9\","
		   "\"signature\":\"%s\"",
		  TEST_TS, sig),
	    WEBHOOK_BAD_SIGNATURE);
	sign(TEST_KEY, TEST_TS, "tok-_.~!", sig);
	CHECK(strf("\"timestamp\":\"%s\",\"token\":\"tok-_.~!\","
		   "\"signature\":\"%s\"",
		  TEST_TS, sig),
	    WEBHOOK_OK);
	/* A token at WEBHOOK_TOKEN_MAX bytes, signed: refused; one less: OK. */
	memset(longtok, 'a', WEBHOOK_TOKEN_MAX);
	longtok[WEBHOOK_TOKEN_MAX] = '\0';
	sign(TEST_KEY, TEST_TS, longtok, sig);
	CHECK(strf("\"timestamp\":\"%s\",\"token\":\"%s\",\"signature\":"
		   "\"%s\"",
		  TEST_TS, longtok, sig),
	    WEBHOOK_BAD_SIGNATURE);
	longtok[WEBHOOK_TOKEN_MAX - 1] = '\0';
	sign(TEST_KEY, TEST_TS, longtok, sig);
	CHECK(strf("\"timestamp\":\"%s\",\"token\":\"%s\",\"signature\":"
		   "\"%s\"",
		  TEST_TS, longtok, sig),
	    WEBHOOK_OK);
	/* The block missing, or not an object. */
	{
		struct webhook_event ev;

		assert_int_equal(
		    parse(JSON_CT, "{\"event-data\":{\"event\":\"failed\"}}",
			&ev),
		    WEBHOOK_BAD_SIGNATURE);
		assert_int_equal(
		    parse(JSON_CT, "{\"signature\":[],\"event-data\":{}}", &ev),
		    WEBHOOK_BAD_SIGNATURE);
		assert_int_equal(
		    parse(JSON_CT, "{\"signature\":\"x\",\"event-data\":{}}",
			&ev),
		    WEBHOOK_BAD_SIGNATURE);
	}
#undef CHECK
#undef MEMBERS
}

/* A subaccount's parent-signature under a configured key is enough. */
static void
test_parent_signature(void **state)
{
	const char *const parent[] = { "key-parent-account" };
	char sig[65], psig[65];
	char *m;

	(void)state;
	sign(TEST_KEY, TEST_TS, TEST_TOKEN, sig);
	sign(parent[0], TEST_TS, TEST_TOKEN, psig);
	m = strf("{\"signature\":{\"timestamp\":\"%s\",\"token\":\"%s\","
		 "\"signature\":\"%s\",\"parent-signature\":\"%s\"},"
		 "\"event-data\":{\"event\":\"delivered\"}}",
	    TEST_TS, TEST_TOKEN, sig, psig);
	{
		struct webhook_event ev;

		assert_int_equal(
		    parse_n(JSON_CT, m, strlen(m), parent, 1, NOW_MS, &ev),
		    WEBHOOK_OK);
		webhook_event_clear(&ev);
		assert_int_equal(parse(JSON_CT, m, &ev), WEBHOOK_OK);
		webhook_event_clear(&ev);
	}
	free(m);
	/* The parent signature is over the same timestamp and token. */
	m = strf("\"timestamp\":\"%s\",\"token\":\"x%s\","
		 "\"parent-signature\":\"%s\"",
	    TEST_TS, TEST_TOKEN, psig);
	{
		struct webhook_event ev;
		char *body = strf("{\"signature\":{%s},\"event-data\":{}}", m);

		assert_int_equal(parse_n(JSON_CT, body, strlen(body), parent, 1,
				     NOW_MS, &ev),
		    WEBHOOK_BAD_SIGNATURE);
		free(body);
	}
	free(m);
}

static void
test_window(void **state)
{
	const char *const keys[] = { TEST_KEY };
	char *body = signed_body(
	    TEST_KEY, TEST_TS, TEST_TOKEN, "{\"event\":\"delivered\"}");
	char *badsig;
	struct webhook_event ev;
	size_t len = strlen(body);
	const int64_t ts = NOW_MS;

	(void)state;
	/* Both edges are inside; one millisecond beyond is stale. */
	assert_int_equal(
	    parse_n(JSON_CT, body, len, keys, 1, ts + WINDOW_MS, &ev),
	    WEBHOOK_OK);
	webhook_event_clear(&ev);
	assert_int_equal(
	    parse_n(JSON_CT, body, len, keys, 1, ts - WINDOW_MS, &ev),
	    WEBHOOK_OK);
	webhook_event_clear(&ev);
	assert_int_equal(
	    parse_n(JSON_CT, body, len, keys, 1, ts + WINDOW_MS + 1, &ev),
	    WEBHOOK_STALE);
	assert_event_empty(&ev);
	assert_int_equal(
	    parse_n(JSON_CT, body, len, keys, 1, ts - WINDOW_MS - 1, &ev),
	    WEBHOOK_STALE);
	assert_int_equal(parse_n(JSON_CT, body, len, keys, 1, INT64_MIN, &ev),
	    WEBHOOK_STALE);
	assert_int_equal(parse_n(JSON_CT, body, len, keys, 1, INT64_MAX, &ev),
	    WEBHOOK_STALE);
	/* Verification comes first: a stale body with a bad signature. */
	badsig = strf("{\"signature\":{\"timestamp\":\"%s\",\"token\":\"%s\","
		      "\"signature\":\"%064d\"},\"event-data\":{}}",
	    TEST_TS, TEST_TOKEN, 0);
	assert_int_equal(parse_n(JSON_CT, badsig, strlen(badsig), keys, 1,
			     ts + 10 * WINDOW_MS, &ev),
	    WEBHOOK_BAD_SIGNATURE);
	/* A huge but well-signed timestamp is stale, not an overflow. */
	free(body);
	body = signed_body(TEST_KEY, "999999999999999999", TEST_TOKEN,
	    "{\"event\":\"delivered\"}");
	assert_int_equal(
	    parse_n(JSON_CT, body, strlen(body), keys, 1, INT64_MAX, &ev),
	    WEBHOOK_STALE);
	free(body);
	free(badsig);
}

static void
test_event_data_malformed(void **state)
{
	static const char *const datas[] = { "[]", "\"x\"", "null", "42",
		"[{\"event\":\"failed\"}]", "true" };
	struct webhook_event ev;
	char *body;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(datas) / sizeof(datas[0]); i++) {
		body = signed_body(TEST_KEY, TEST_TS, TEST_TOKEN, datas[i]);
		memset(&ev, 0x5a, sizeof(ev));
		assert_int_equal(parse(JSON_CT, body, &ev), WEBHOOK_MALFORMED);
		assert_event_empty(&ev);
		free(body);
		/* The same with a bad key: the signature fails first. */
		body = signed_body("key-other", TEST_TS, TEST_TOKEN, datas[i]);
		assert_int_equal(
		    parse(JSON_CT, body, &ev), WEBHOOK_BAD_SIGNATURE);
		free(body);
	}
	/* event-data missing after a good signature. */
	body = signed_body(TEST_KEY, TEST_TS, TEST_TOKEN, "{}");
	body[strlen(body) - strlen(",\"event-data\":{}}")] = '\0';
	{
		char *b2 = strf("%s}", body);

		assert_int_equal(parse(JSON_CT, b2, &ev), WEBHOOK_MALFORMED);
		free(b2);
	}
	free(body);
	/* Not JSON, not an object, duplicates, empty. */
	assert_int_equal(parse(JSON_CT, "not json", &ev), WEBHOOK_MALFORMED);
	assert_int_equal(parse(JSON_CT, "[1,2]", &ev), WEBHOOK_MALFORMED);
	assert_int_equal(parse(JSON_CT, "\"str\"", &ev), WEBHOOK_MALFORMED);
	assert_int_equal(
	    parse(JSON_CT, "{\"a\":1,\"a\":2}", &ev), WEBHOOK_MALFORMED);
	assert_int_equal(parse(JSON_CT, "{} trailing", &ev), WEBHOOK_MALFORMED);
	assert_int_equal(parse_n(JSON_CT, "", 0, test_keys, 1, NOW_MS, &ev),
	    WEBHOOK_MALFORMED);
	assert_int_equal(webhook_parse(JSON_CT, NULL, 0, test_keys, 1,
			     WINDOW_MS, NOW_MS, &ev),
	    WEBHOOK_MALFORMED);
	/* Bytes that are not UTF-8, and a NUL inside the body. */
	assert_int_equal(
	    parse_n(JSON_CT, "{\"a\":\"\xff\"}", 9, test_keys, 1, NOW_MS, &ev),
	    WEBHOOK_MALFORMED);
	assert_int_equal(
	    parse_n(JSON_CT, "{\"a\":\"\0\"}", 9, test_keys, 1, NOW_MS, &ev),
	    WEBHOOK_MALFORMED);
	/* Duplicate keys inside event-data. */
	body = signed_body(TEST_KEY, TEST_TS, TEST_TOKEN,
	    "{\"event\":\"failed\",\"event\":\"delivered\"}");
	assert_int_equal(parse(JSON_CT, body, &ev), WEBHOOK_MALFORMED);
	free(body);
}

static void
test_content_types(void **state)
{
	char *body = signed_body(
	    TEST_KEY, TEST_TS, TEST_TOKEN, "{\"event\":\"delivered\"}");
	struct webhook_event ev;

	(void)state;
	assert_int_equal(parse(NULL, body, &ev), WEBHOOK_OK);
	webhook_event_clear(&ev);
	assert_int_equal(parse("", body, &ev), WEBHOOK_OK);
	webhook_event_clear(&ev);
	assert_int_equal(
	    parse("Application/JSON; charset=utf-8", body, &ev), WEBHOOK_OK);
	webhook_event_clear(&ev);
	assert_int_equal(parse(" application/json ", body, &ev), WEBHOOK_OK);
	webhook_event_clear(&ev);
	assert_int_equal(parse("text/plain", body, &ev), WEBHOOK_MALFORMED);
	assert_int_equal(
	    parse("application/jsonx", body, &ev), WEBHOOK_MALFORMED);
	/* JSON sent as a form: one nameless-value field, no signature. */
	assert_int_equal(parse(FORM_CT, body, &ev), WEBHOOK_BAD_SIGNATURE);
	assert_int_equal(
	    parse("multipart/form-data", body, &ev), WEBHOOK_MALFORMED);
	free(body);
}

static void
test_user_variables(void **state)
{
	static const struct {
		const char *uv;
		const char *text;
		int64_t id;
	} cases[] = {
		{ "{\"redrive-id\":\"42\"}", "42", 42 },
		{ "{\"redrive-id\":42}", "42", 42 },
		{ "{\"a\":1,\"redrive-id\":\"9223372036854775807\"}",
		    "9223372036854775807", INT64_MAX },
		{ "{\"redrive-id\":\"9223372036854775808\"}",
		    "9223372036854775808", 0 },
		{ "{\"redrive-id\":\"00017\"}", "00017", 17 },
		{ "{\"meta\":{\"redrive-id\":\"7\"}}", "7", 7 },
		{ "{\"meta\":[1],\"x\":{\"redrive-id\":8}}", "8", 8 },
		{ "{\"redrive-id\":\"5\",\"meta\":{\"redrive-id\":\"6\"}}", "5",
		    5 },
		{ "{\"a\":{\"b\":{\"redrive-id\":\"3\"}}}", NULL, 0 },
		{ "\"Could not load user-variables. They were either truncated "
		  "or invalid JSON\"",
		    NULL, 0 },
		{ "[\"redrive-id\",\"4\"]", NULL, 0 },
		{ "null", NULL, 0 },
		{ "{}", NULL, 0 },
		{ "{\"redrive-id\":\"abc\"}", "abc", 0 },
		{ "{\"redrive-id\":\"42abc\"}", "42abc", 0 },
		{ "{\"redrive-id\":\"-5\"}", "-5", 0 },
		{ "{\"redrive-id\":-5}", "-5", 0 },
		{ "{\"redrive-id\":0}", "0", 0 },
		{ "{\"redrive-id\":\"\"}", NULL, 0 },
		{ "{\"redrive-id\":4.5}", NULL, 0 },
		{ "{\"redrive-id\":null}", NULL, 0 },
		{ "{\"redrive-id\":{\"x\":1}}", NULL, 0 },
	};
	struct webhook_event ev;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *data =
		    strf("{\"event\":\"failed\",\"user-variables\":%s}",
			cases[i].uv);

		parse_event(data, &ev);
		assert_str_or_null(
		    ev.redrive_id_text, cases[i].text, cases[i].uv);
		if (ev.redrive_id != cases[i].id)
			fail_msg("%s: id %lld", cases[i].uv,
			    (long long)ev.redrive_id);
		webhook_event_clear(&ev);
		free(data);
	}
	/* user-variables missing entirely. */
	parse_event("{\"event\":\"failed\"}", &ev);
	assert_null(ev.redrive_id_text);
	assert_int_equal(ev.redrive_id, 0);
	webhook_event_clear(&ev);
}

static void
test_delivery_status(void **state)
{
	static const struct {
		const char *ds;
		int code;
		const char *enhanced;
		const char *status;
	} cases[] = {
		{ "null", 0, NULL, NULL },
		{ "\"text\"", 0, NULL, NULL },
		{ "{}", 0, NULL, NULL },
		{ "{\"code\":550}", 550, NULL, NULL },
		{ "{\"code\":\"550\"}", 550, NULL, NULL },
		{ "{\"code\":\" 550 \"}", 550, NULL, NULL },
		{ "{\"code\":550.0}", 550, NULL, NULL },
		{ "{\"code\":550.5}", 0, NULL, NULL },
		{ "{\"code\":-1}", 0, NULL, NULL },
		{ "{\"code\":1000}", 0, NULL, NULL },
		{ "{\"code\":1e300}", 0, NULL, NULL },
		{ "{\"code\":\"garbage\"}", 0, NULL, NULL },
		{ "{\"code\":\"5500\"}", 0, NULL, NULL },
		{ "{\"code\":\"\"}", 0, NULL, NULL },
		{ "{\"code\":true}", 0, NULL, NULL },
		{ "{\"code\":null}", 0, NULL, NULL },
		{ "{\"code\":[550]}", 0, NULL, NULL },
		{ "{\"code\":\"5.1.1\"}", 0, "5.1.1", NULL },
		{ "{\"code\":550,\"enhanced-code\":\"\"}", 550, NULL, NULL },
		{ "{\"code\":550,\"enhanced-code\":\"5.7.1\"}", 550, "5.7.1",
		    NULL },
		{ "{\"code\":550,\"enhanced-code\":42}", 550, NULL, NULL },
		{ "{\"code\":550,\"bounce-code\":\"5.1.1\"}", 550, "5.1.1",
		    NULL },
		{ "{\"code\":550,\"bounce-code\":\"junk\"}", 550, NULL, NULL },
		{ "{\"enhanced-code\":\"4.7.652\",\"bounce-code\":\"5.1.1\"}",
		    0, "4.7.652", NULL },
		{ "{\"message\":\"m\",\"description\":\"d\"}", 0, NULL, "m" },
		{ "{\"message\":\"\",\"description\":\"d\"}", 0, NULL, "d" },
		{ "{\"message\":null,\"description\":\"d\"}", 0, NULL, "d" },
		{ "{\"description\":\"\"}", 0, NULL, NULL },
		{ "{\"message\":\"line1\\nline2\"}", 0, NULL, "line1\nline2" },
		{ "{\"message\":\"caf\\u00e9\"}", 0, NULL, "caf\xc3\xa9" },
	};
	struct webhook_event ev;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *data = strf("{\"event\":\"failed\",\"severity\":"
				  "\"permanent\",\"delivery-status\":%s}",
		    cases[i].ds);

		parse_event(data, &ev);
		if (ev.code != cases[i].code)
			fail_msg("%s: code %d", cases[i].ds, ev.code);
		assert_str_or_null(
		    ev.enhanced_code, cases[i].enhanced, cases[i].ds);
		assert_str_or_null(
		    ev.status_message, cases[i].status, cases[i].ds);
		webhook_event_clear(&ev);
		free(data);
	}
	/* delivery-status missing. */
	parse_event("{\"event\":\"failed\"}", &ev);
	assert_int_equal(ev.code, 0);
	assert_null(ev.enhanced_code);
	assert_null(ev.status_message);
	assert_false(ev.delayed_bounce);
	webhook_event_clear(&ev);
}

static void
test_fields(void **state)
{
	static const struct {
		const char *data;
		const char *mid;
		int64_t at;
		bool delayed;
	} cases[] = {
		{ "\"message\":{\"headers\":{\"message-id\":\"<a@b>\"}}", "a@b",
		    0, false },
		{ "\"message\":{\"headers\":{\"message-id\":\" <a@b> \"}}",
		    "a@b", 0, false },
		{ "\"message\":{\"headers\":{\"message-id\":\"a@b\"}}", "a@b",
		    0, false },
		{ "\"message\":{\"headers\":{\"message-id\":\"<a@b\"}}", "<a@b",
		    0, false },
		{ "\"message\":{\"headers\":{\"message-id\":\"<>\"}}", NULL, 0,
		    false },
		{ "\"message\":{\"headers\":{\"message-id\":null}}", NULL, 0,
		    false },
		{ "\"message\":{\"headers\":null}", NULL, 0, false },
		{ "\"message\":\"x\"", NULL, 0, false },
		{ "\"timestamp\":1529692198.719447", NULL, 1529692198719LL,
		    false },
		{ "\"timestamp\":1529692198", NULL, 1529692198000LL, false },
		{ "\"timestamp\":\"1529692198.5\"", NULL, 1529692198500LL,
		    false },
		{ "\"timestamp\":\"soon\"", NULL, 0, false },
		{ "\"timestamp\":-1.5", NULL, 0, false },
		{ "\"timestamp\":1e300", NULL, 0, false },
		{ "\"timestamp\":null", NULL, 0, false },
		{ "\"flags\":{\"is-delayed-bounce\":true}", NULL, 0, true },
		{ "\"flags\":{\"is-delayed-bounce\":\"true\"}", NULL, 0,
		    false },
		{ "\"flags\":{\"is-delayed-bounce\":false}", NULL, 0, false },
		{ "\"flags\":null", NULL, 0, false },
	};
	struct webhook_event ev;
	char *data;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		data = strf("{\"event\":\"delivered\",%s}", cases[i].data);
		parse_event(data, &ev);
		assert_str_or_null(ev.message_id, cases[i].mid, cases[i].data);
		if (ev.at != cases[i].at)
			fail_msg(
			    "%s: at %lld", cases[i].data, (long long)ev.at);
		assert_int_equal(ev.delayed_bounce, cases[i].delayed);
		assert_string_equal(ev.event, "delivered");
		webhook_event_clear(&ev);
		free(data);
	}
	/* Fields of the wrong type are absent; an empty event-data is OK. */
	parse_event("{\"event\":5,\"severity\":[],\"reason\":{},"
		    "\"recipient\":null,\"id\":true,\"storage\":{\"url\":1}}",
	    &ev);
	assert_null(ev.event);
	assert_null(ev.severity);
	assert_null(ev.reason);
	assert_null(ev.recipient);
	assert_null(ev.event_id);
	assert_null(ev.storage_url);
	assert_string_equal(ev.token, TEST_TOKEN);
	webhook_event_clear(&ev);
	parse_event("{}", &ev);
	assert_null(ev.event);
	assert_int_equal(strlen(ev.digest), 64);
	webhook_event_clear(&ev);
	webhook_event_clear(&ev); /* twice is fine */
	webhook_event_clear(NULL);
}

/* Strings are bounded: identifiers dropped, text cut at a character. */
static void
test_long_strings(void **state)
{
	size_t n = 10000, i;
	char *big = malloc(n + 1), *data;
	struct webhook_event ev;

	(void)state;
	assert_non_null(big);
	memset(big, 'x', n);
	big[n] = '\0';
	data = strf("{\"event\":\"failed\",\"recipient\":\"%s\","
		    "\"storage\":{\"url\":\"%s\"},\"delivery-status\":"
		    "{\"message\":\"%s\"}}",
	    big, big, big);
	parse_event(data, &ev);
	assert_null(ev.recipient);
	assert_null(ev.storage_url);
	assert_non_null(ev.status_message);
	assert_int_equal(strlen(ev.status_message), 4096);
	webhook_event_clear(&ev);
	free(data);
	/* A 3-byte character across the cut is left out whole. */
	for (i = 0; i + 3 <= n; i += 3)
		memcpy(big + i, "\xe2\x82\xac", 3); /* the euro sign */
	big[i] = '\0';
	data = strf("{\"event\":\"failed\",\"delivery-status\":"
		    "{\"message\":\"yy%s\"}}",
	    big);
	parse_event(data, &ev);
	assert_int_equal(strlen(ev.status_message), 2 + 3 * 1364);
	webhook_event_clear(&ev);
	free(data);
	free(big);
}

/* SHA-256 of text, hex, computed here. */
static void
sha256_hex(const char *text, char out[65])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	size_t i;

	assert_int_equal(
	    EVP_Digest(text, strlen(text), md, &mdlen, EVP_sha256(), NULL), 1);
	for (i = 0; i < mdlen; i++)
		(void)snprintf(out + 2 * i, 3, "%02x", md[i]);
}

static void
test_digest(void **state)
{
	struct webhook_event a, b;
	char want[65];
	char *body;

	(void)state;
	/* The canonical form: sorted keys, compact. */
	parse_event("{ \"id\" : \"x\",\n \"event\":\"failed\", \"n\": 1 }", &a);
	sha256_hex("{\"event\":\"failed\",\"id\":\"x\",\"n\":1}", want);
	assert_string_equal(a.digest, want);
	/* Key order and white space do not matter. */
	parse_event("{\"n\":1,\"event\":\"failed\",\"id\":\"x\"}", &b);
	assert_string_equal(a.digest, b.digest);
	webhook_event_clear(&b);
	/* Nested objects are sorted too. */
	parse_event("{\"event\":\"failed\",\"id\":\"x\",\"n\":1,"
		    "\"m\":{\"b\":1,\"a\":2}}",
	    &b);
	sha256_hex("{\"event\":\"failed\",\"id\":\"x\",\"m\":{\"a\":2,\"b\":1},"
		   "\"n\":1}",
	    want);
	assert_string_equal(b.digest, want);
	webhook_event_clear(&b);
	/* The same event under another signature: the same digest. */
	body = signed_body(TEST_KEY, "1700000100", "another-token",
	    "{\"event\":\"failed\",\"id\":\"x\",\"n\":1}");
	assert_int_equal(parse(JSON_CT, body, &b), WEBHOOK_OK);
	assert_string_equal(a.digest, b.digest);
	assert_string_equal(b.token, "another-token");
	webhook_event_clear(&b);
	free(body);
	/* Any change in the data: another digest. */
	parse_event("{\"event\":\"failed\",\"id\":\"x\",\"n\":2}", &b);
	assert_string_not_equal(a.digest, b.digest);
	webhook_event_clear(&b);
	parse_event(
	    "{\"event\":\"failed\",\"id\":\"x\",\"n\":1,\"o\":null}", &b);
	assert_string_not_equal(a.digest, b.digest);
	webhook_event_clear(&b);
	parse_event("{\"event\":\"failed\",\"id\":\"x\",\"n\":\"1\"}", &b);
	assert_string_not_equal(a.digest, b.digest);
	webhook_event_clear(&b);
	webhook_event_clear(&a);
}

/* A legacy urlencoded body: the fields, then the signature fields. */
static char *
legacy_body(
    const char *fields, const char *key, const char *ts, const char *token)
{
	char sig[65];

	sign(key, ts, token, sig);
	return strf(
	    "%s&timestamp=%s&token=%s&signature=%s", fields, ts, token, sig);
}

static void
test_legacy_urlencoded(void **state)
{
	struct webhook_event ev, ev2;
	struct config cfg;
	char *body, *body2;

	(void)state;
	assert_int_equal(config_defaults(&cfg), 0);
	body = legacy_body("event=bounced&recipient=alice%40example.com&"
			   "Message-Id=%3C20130503192659.1%40example.com%3E&"
			   "code=550&error=5.1.1+No+such+user&redrive-id=42&"
			   "my-var=a%2Bb",
	    TEST_KEY, TEST_TS, TEST_TOKEN);
	assert_int_equal(parse(FORM_CT, body, &ev), WEBHOOK_OK);
	assert_string_equal(ev.token, TEST_TOKEN);
	assert_string_equal(ev.event, "failed");
	assert_string_equal(ev.severity, "permanent");
	assert_string_equal(ev.reason, "bounce");
	assert_string_equal(ev.recipient, "alice@example.com");
	assert_string_equal(ev.message_id, "20130503192659.1@example.com");
	assert_string_equal(ev.redrive_id_text, "42");
	assert_int_equal(ev.redrive_id, 42);
	assert_int_equal(ev.code, 550);
	assert_string_equal(ev.status_message, "5.1.1 No such user");
	assert_int_equal(ev.at, NOW_MS);
	assert_null(ev.event_id);
	assert_null(ev.storage_url);
	assert_int_equal(strlen(ev.digest), 64);
	assert_int_equal(policy_decide(&cfg, &ev, NULL, 0), POLICY_GIVE_UP);
	/* Reordered fields and another valid signature: the same digest. */
	body2 = legacy_body("my-var=a%2Bb&redrive-id=42&code=550&"
			    "recipient=alice%40example.com&event=bounced&"
			    "Message-Id=%3C20130503192659.1%40example.com%3E&"
			    "error=5.1.1%20No%20such%20user",
	    TEST_KEY, "1700000001", "tok-2");
	assert_int_equal(parse(FORM_CT, body2, &ev2), WEBHOOK_OK);
	assert_string_equal(ev.digest, ev2.digest);
	webhook_event_clear(&ev2);
	free(body2);
	/* One field altered: another digest. */
	body2 = legacy_body("event=bounced&recipient=bob%40example.com&"
			    "Message-Id=%3C20130503192659.1%40example.com%3E&"
			    "code=550&error=5.1.1+No+such+user&redrive-id=42&"
			    "my-var=a%2Bb",
	    TEST_KEY, TEST_TS, TEST_TOKEN);
	assert_int_equal(parse(FORM_CT, body2, &ev2), WEBHOOK_OK);
	assert_string_not_equal(ev.digest, ev2.digest);
	webhook_event_clear(&ev2);
	free(body2);
	webhook_event_clear(&ev);
	free(body);

	/* dropped: the reason comes in its own field. */
	body = legacy_body("event=dropped&reason=old&code=499&description="
			   "Unable+to+connect+to+MX+servers&recipient=c%40d",
	    TEST_KEY, TEST_TS, TEST_TOKEN);
	assert_int_equal(parse(FORM_CT, body, &ev), WEBHOOK_OK);
	assert_string_equal(ev.event, "failed");
	assert_string_equal(ev.severity, "permanent");
	assert_string_equal(ev.reason, "old");
	assert_int_equal(ev.code, 499);
	assert_string_equal(
	    ev.status_message, "Unable to connect to MX servers");
	assert_int_equal(policy_decide(&cfg, &ev, NULL, 0), POLICY_REDRIVE);
	webhook_event_clear(&ev);
	free(body);
	body = legacy_body("event=dropped&reason=hardfail&code=605&"
			   "description=Not+delivering+to+previously+bounced+"
			   "address",
	    TEST_KEY, TEST_TS, TEST_TOKEN);
	assert_int_equal(parse(FORM_CT, body, &ev), WEBHOOK_OK);
	assert_string_equal(ev.reason, "hardfail");
	assert_int_equal(ev.code, 605);
	assert_int_equal(policy_decide(&cfg, &ev, NULL, 0), POLICY_GIVE_UP);
	webhook_event_clear(&ev);
	free(body);
	body = legacy_body("event=dropped", TEST_KEY, TEST_TS, TEST_TOKEN);
	assert_int_equal(parse(FORM_CT, body, &ev), WEBHOOK_OK);
	assert_string_equal(ev.event, "failed");
	assert_null(ev.reason);
	assert_int_equal(ev.code, 0);
	webhook_event_clear(&ev);
	free(body);
	/* Other names pass through. */
	body = legacy_body("event=delivered&message-id=abc%40x&"
			   "redrive-id=abc&code=garbage",
	    TEST_KEY, TEST_TS, TEST_TOKEN);
	assert_int_equal(parse(FORM_CT, body, &ev), WEBHOOK_OK);
	assert_string_equal(ev.event, "delivered");
	assert_null(ev.severity);
	assert_string_equal(ev.message_id, "abc@x");
	assert_string_equal(ev.redrive_id_text, "abc");
	assert_int_equal(ev.redrive_id, 0);
	assert_int_equal(ev.code, 0);
	assert_int_equal(policy_decide(&cfg, &ev, NULL, 0), POLICY_IGNORE);
	webhook_event_clear(&ev);
	free(body);
	/* Bytes that are not UTF-8, and a NUL, become '?'. */
	body = legacy_body("event=complained&recipient=a%FFb%00c", TEST_KEY,
	    TEST_TS, TEST_TOKEN);
	assert_int_equal(parse(FORM_CT, body, &ev), WEBHOOK_OK);
	assert_string_equal(ev.recipient, "a?b?c");
	webhook_event_clear(&ev);
	free(body);
	/* The last signature field counts (user variables come first). */
	body = legacy_body("token=evil&timestamp=1&event=delivered", TEST_KEY,
	    TEST_TS, TEST_TOKEN);
	assert_int_equal(parse(FORM_CT, body, &ev), WEBHOOK_OK);
	assert_string_equal(ev.token, TEST_TOKEN);
	webhook_event_clear(&ev);
	free(body);
	config_free(&cfg);
}

static void
test_legacy_urlencoded_bad(void **state)
{
	static const char *const bad_fields[] = { "event=delivered&x=%zz",
		"event=delivered&x=%4", "event=delivered&x=%",
		"event=delivered&%g0=1", "event=delivered&x=a%2" };
	struct webhook_event ev;
	char sig[65];
	char *body;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(bad_fields) / sizeof(bad_fields[0]); i++) {
		body =
		    legacy_body(bad_fields[i], TEST_KEY, TEST_TS, TEST_TOKEN);
		assert_int_equal(parse(FORM_CT, body, &ev), WEBHOOK_MALFORMED);
		assert_event_empty(&ev);
		free(body);
	}
	/* A truncated escape at the very end of the body. */
	body = legacy_body("event=delivered", TEST_KEY, TEST_TS, TEST_TOKEN);
	{
		char *b2 = strf("%s&z=%%4", body);

		assert_int_equal(parse(FORM_CT, b2, &ev), WEBHOOK_MALFORMED);
		free(b2);
	}
	free(body);
	/* A wrong key, a stale timestamp, missing fields. */
	body = legacy_body("event=delivered", "key-other", TEST_TS, TEST_TOKEN);
	assert_int_equal(parse(FORM_CT, body, &ev), WEBHOOK_BAD_SIGNATURE);
	free(body);
	body =
	    legacy_body("event=delivered", TEST_KEY, "1600000000", TEST_TOKEN);
	assert_int_equal(parse(FORM_CT, body, &ev), WEBHOOK_STALE);
	free(body);
	sign(TEST_KEY, TEST_TS, TEST_TOKEN, sig);
	body = strf("event=delivered&token=%s&signature=%s", TEST_TOKEN, sig);
	assert_int_equal(parse(FORM_CT, body, &ev), WEBHOOK_BAD_SIGNATURE);
	free(body);
	body = strf("event=delivered&timestamp=%s&signature=%s", TEST_TS, sig);
	assert_int_equal(parse(FORM_CT, body, &ev), WEBHOOK_BAD_SIGNATURE);
	free(body);
	body =
	    strf("event=delivered&timestamp=%s&token=%s", TEST_TS, TEST_TOKEN);
	assert_int_equal(parse(FORM_CT, body, &ev), WEBHOOK_BAD_SIGNATURE);
	free(body);
	/* A NUL inside the signature. */
	body = strf("event=delivered&timestamp=%s&token=%s&signature=%s%%00",
	    TEST_TS, TEST_TOKEN, sig);
	assert_int_equal(parse(FORM_CT, body, &ev), WEBHOOK_BAD_SIGNATURE);
	free(body);
	/* Well signed but no event: malformed. */
	body = legacy_body("recipient=a%40b", TEST_KEY, TEST_TS, TEST_TOKEN);
	assert_int_equal(parse(FORM_CT, body, &ev), WEBHOOK_MALFORMED);
	free(body);
	/* Empty segments and a field without '=' are fine. */
	body = legacy_body(
	    "&&event=delivered&&flag&=x", TEST_KEY, TEST_TS, TEST_TOKEN);
	assert_int_equal(parse(FORM_CT, body, &ev), WEBHOOK_OK);
	webhook_event_clear(&ev);
	free(body);
	/* Too many fields. */
	{
		size_t n = 300, k, off = 0;
		char *many = malloc(n * 8 + 32);

		assert_non_null(many);
		off += (size_t)snprintf(many, 32, "event=delivered");
		for (k = 0; k < n; k++)
			off += (size_t)snprintf(many + off, 9, "&v%03zu=1", k);
		body = legacy_body(many, TEST_KEY, TEST_TS, TEST_TOKEN);
		assert_int_equal(parse(FORM_CT, body, &ev), WEBHOOK_MALFORMED);
		free(body);
		free(many);
	}
}

#define BOUNDARY "----redriveTestBoundary7MA4YWxkTrZu0gW"
#define MP_CT "multipart/form-data; boundary=" BOUNDARY

/* One multipart part. */
static char *
mp_part(const char *name, const char *value)
{
	return strf("--" BOUNDARY "\r\nContent-Disposition: form-data; "
		    "name=\"%s\"\r\n\r\n%s\r\n",
	    name, value);
}

/* A legacy multipart body with the signature fields last, and close. */
static char *
mp_body(const char *parts, const char *key, const char *ts, const char *token,
    bool close)
{
	char sig[65];
	char *a, *b, *c, *s;

	sign(key, ts, token, sig);
	a = mp_part("timestamp", ts);
	b = mp_part("token", token);
	c = mp_part("signature", sig);
	s = strf(
	    "%s%s%s%s%s", parts, a, b, c, close ? "--" BOUNDARY "--\r\n" : "");
	free(a);
	free(b);
	free(c);
	return s;
}

static void
test_legacy_multipart(void **state)
{
	static const char attachment[] =
	    "--" BOUNDARY "\r\nContent-Disposition: form-data; "
	    "name=\"attachment-1\"; filename=\"message.mime\"\r\n"
	    "Content-Type: message/rfc822\r\n\r\n"
	    "From: a@b\r\n\r\n--not the boundary\r\n\r\n\0\xff binary\r\n";
	struct webhook_event ev, ev2;
	struct config cfg;
	char *parts, *body, *mid;
	size_t len, cut;

	(void)state;
	assert_int_equal(config_defaults(&cfg), 0);
	mid = strf("preamble to ignore\r\n"
		   "--" BOUNDARY "\r\nContent-Disposition: form-data; "
		   "name=\"event\"\r\n\r\ndropped\r\n"
		   "--" BOUNDARY "  \r\ncontent-disposition: form-data; "
		   "name=reason\r\n\r\nold\r\n"
		   "--" BOUNDARY "\r\nContent-Disposition: form-data; "
		   "name=\"code\"\r\nX-Other: y\r\n\r\n605\r\n"
		   "--" BOUNDARY "\r\nContent-Disposition: form-data; "
		   "name=\"Message-Id\"\r\n\r\n<m1@example.com>\r\n"
		   "--" BOUNDARY "\r\nContent-Disposition: form-data; "
		   "name=\"redrive-id\"\r\n\r\n77\r\n");
	/* The attachment holds a NUL: build it with its length. */
	len = strlen(mid);
	parts = malloc(len + sizeof(attachment));
	assert_non_null(parts);
	memcpy(parts, mid, len);
	memcpy(parts + len, attachment, sizeof(attachment) - 1);
	len += sizeof(attachment) - 1;
	{
		char *tail = mp_body("", TEST_KEY, TEST_TS, TEST_TOKEN, true);
		size_t tlen = strlen(tail);

		body = malloc(len + tlen + 1);
		assert_non_null(body);
		memcpy(body, parts, len);
		memcpy(body + len, tail, tlen + 1);
		len += tlen;
		free(tail);
	}
	assert_int_equal(
	    parse_n(MP_CT, body, len, test_keys, 1, NOW_MS, &ev), WEBHOOK_OK);
	assert_string_equal(ev.event, "failed");
	assert_string_equal(ev.severity, "permanent");
	assert_string_equal(ev.reason, "old");
	assert_int_equal(ev.code, 605);
	assert_string_equal(ev.message_id, "m1@example.com");
	assert_int_equal(ev.redrive_id, 77);
	assert_string_equal(ev.token, TEST_TOKEN);
	/* old, but 605: a suppression is never re-driven. */
	assert_int_equal(policy_decide(&cfg, &ev, NULL, 0), POLICY_GIVE_UP);
	/* A quoted boundary parameter, among others. */
	assert_int_equal(parse_n("Multipart/Form-Data; charset=utf-8; "
				 "boundary=\"" BOUNDARY "\"",
			     body, len, test_keys, 1, NOW_MS, &ev2),
	    WEBHOOK_OK);
	assert_string_equal(ev.digest, ev2.digest);
	webhook_event_clear(&ev2);
	/* The attachment's bytes are part of the digest. */
	{
		char *bin = memmem(body, len, "binary", 6);

		assert_non_null(bin);
		bin[0] ^= 1;
		assert_int_equal(
		    parse_n(MP_CT, body, len, test_keys, 1, NOW_MS, &ev2),
		    WEBHOOK_OK);
		assert_string_not_equal(ev.digest, ev2.digest);
		webhook_event_clear(&ev2);
		bin[0] ^= 1;
	}
	webhook_event_clear(&ev);
	/* Every prefix: no crash, and never accepted without the close. */
	for (cut = 0; cut < len; cut++) {
		enum webhook_result res =
		    parse_n(MP_CT, body, cut, test_keys, 1, NOW_MS, &ev);

		if (res == WEBHOOK_OK) {
			/* Only once the close delimiter is complete. */
			assert_true(cut >= len - 2);
			webhook_event_clear(&ev);
		} else {
			assert_event_empty(&ev);
		}
	}
	/* Wrong or missing boundary parameter. */
	assert_int_equal(parse_n("multipart/form-data", body, len, test_keys, 1,
			     NOW_MS, &ev),
	    WEBHOOK_MALFORMED);
	assert_int_equal(parse_n("multipart/form-data; boundary=other", body,
			     len, test_keys, 1, NOW_MS, &ev),
	    WEBHOOK_MALFORMED);
	assert_int_equal(parse_n("multipart/form-data; boundary=", body, len,
			     test_keys, 1, NOW_MS, &ev),
	    WEBHOOK_MALFORMED);
	assert_int_equal(parse_n("multipart/form-data; boundary=\"" BOUNDARY,
			     body, len, test_keys, 1, NOW_MS, &ev),
	    WEBHOOK_MALFORMED);
	assert_int_equal(parse_n("multipart/form-data; boundary=" BOUNDARY
				 "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
			     body, len, test_keys, 1, NOW_MS, &ev),
	    WEBHOOK_MALFORMED);
	free(body);
	free(parts);
	free(mid);
	config_free(&cfg);
}

static void
test_legacy_multipart_bad(void **state)
{
	struct webhook_event ev;
	char *ev_part = mp_part("event", "delivered");
	char *body;

	(void)state;
	/* No closing boundary. */
	body = mp_body(ev_part, TEST_KEY, TEST_TS, TEST_TOKEN, false);
	assert_int_equal(parse(MP_CT, body, &ev), WEBHOOK_MALFORMED);
	free(body);
	/* Closed: fine; a wrong key: refused. */
	body = mp_body(ev_part, TEST_KEY, TEST_TS, TEST_TOKEN, true);
	assert_int_equal(parse(MP_CT, body, &ev), WEBHOOK_OK);
	assert_string_equal(ev.event, "delivered");
	webhook_event_clear(&ev);
	free(body);
	body = mp_body(ev_part, "key-other", TEST_TS, TEST_TOKEN, true);
	assert_int_equal(parse(MP_CT, body, &ev), WEBHOOK_BAD_SIGNATURE);
	free(body);
	/* A part without Content-Disposition, or not form-data. */
	body =
	    mp_body("--" BOUNDARY "\r\nContent-Type: text/plain\r\n\r\nx\r\n",
		TEST_KEY, TEST_TS, TEST_TOKEN, true);
	assert_int_equal(parse(MP_CT, body, &ev), WEBHOOK_MALFORMED);
	free(body);
	body = mp_body("--" BOUNDARY "\r\nContent-Disposition: attachment; "
		       "name=\"event\"\r\n\r\ndelivered\r\n",
	    TEST_KEY, TEST_TS, TEST_TOKEN, true);
	assert_int_equal(parse(MP_CT, body, &ev), WEBHOOK_MALFORMED);
	free(body);
	body = mp_body("--" BOUNDARY "\r\n\r\nno headers\r\n", TEST_KEY,
	    TEST_TS, TEST_TOKEN, true);
	assert_int_equal(parse(MP_CT, body, &ev), WEBHOOK_MALFORMED);
	free(body);
	/* An unterminated quoted name; junk after the delimiter. */
	body = mp_body("--" BOUNDARY "\r\nContent-Disposition: form-data; "
		       "name=\"event\r\n\r\ndelivered\r\n",
	    TEST_KEY, TEST_TS, TEST_TOKEN, true);
	assert_int_equal(parse(MP_CT, body, &ev), WEBHOOK_MALFORMED);
	free(body);
	body = strf("--" BOUNDARY "junk\r\n%s", ev_part);
	assert_int_equal(parse(MP_CT, body, &ev), WEBHOOK_MALFORMED);
	free(body);
	/* No delimiter at all; headers that never end. */
	assert_int_equal(parse(MP_CT, "nothing here", &ev), WEBHOOK_MALFORMED);
	assert_int_equal(
	    parse(MP_CT,
		"--" BOUNDARY "\r\nContent-Disposition: form-data; "
		"name=\"a\"\r\n",
		&ev),
	    WEBHOOK_MALFORMED);
	/* Headers over the bound. */
	{
		char *pad = malloc(9000);

		assert_non_null(pad);
		memset(pad, 'h', 8999);
		pad[8999] = '\0';
		body =
		    strf("--" BOUNDARY "\r\nX-Pad: %s\r\nContent-Disposition:"
			 " form-data; name=\"event\"\r\n\r\ndelivered\r\n"
			 "--" BOUNDARY "--\r\n",
			pad);
		assert_int_equal(parse(MP_CT, body, &ev), WEBHOOK_MALFORMED);
		free(body);
		free(pad);
	}
	free(ev_part);
}

/* A body cut at every position never crashes and is never accepted. */
static void
test_cut_everywhere(void **state)
{
	const char *const keys[] = { SYMFONY_KEY };
	static const char *const files[] = {
		"symfony-failed-temporary-generic.json",
		"symfony-failed-permanent-bounce.json",
	};
	struct webhook_event ev;
	size_t f, len, cut, end;
	char *body;

	(void)state;
	for (f = 0; f < sizeof(files) / sizeof(files[0]); f++) {
		body = fixture_read(files[f], &len);
		end = len;
		while (
		    end > 0 && (body[end - 1] == '\n' || body[end - 1] == ' '))
			end--;
		for (cut = 0; cut < end; cut++) {
			enum webhook_result res = parse_n(
			    JSON_CT, body, cut, keys, 1, 1661621361000LL, &ev);

			assert_int_equal(res, WEBHOOK_MALFORMED);
			assert_event_empty(&ev);
		}
		free(body);
	}
	/* The legacy form, signature last: every prefix is refused. */
	body = legacy_body("event=bounced&recipient=a%40b&code=550&"
			   "error=No+such+user",
	    TEST_KEY, TEST_TS, TEST_TOKEN);
	len = strlen(body);
	for (cut = 0; cut < len; cut++) {
		enum webhook_result res =
		    parse_n(FORM_CT, body, cut, test_keys, 1, NOW_MS, &ev);

		assert_int_not_equal(res, WEBHOOK_OK);
		assert_event_empty(&ev);
	}
	assert_int_equal(
	    parse_n(FORM_CT, body, len, test_keys, 1, NOW_MS, &ev), WEBHOOK_OK);
	webhook_event_clear(&ev);
	free(body);
}

/*
 * webhook_event_from_data (the Events API's items): the same fields and
 * digest as the same event-data in a signed webhook, the token given;
 * not an object, no token, or the text cut anywhere: an error, or (for a
 * cut that still parses, which JSON never allows here) nothing half-made.
 */
static void
test_from_data(void **state)
{
	static const char data[] =
	    "{\"event\":\"delivered\",\"id\":\"ev-1\","
	    "\"timestamp\":1700000000.5,\"recipient\":\"a@b.example\","
	    "\"message\":{\"headers\":{\"message-id\":\"x@mg.example\"}},"
	    "\"user-variables\":{\"redrive-id\":\"42\"},"
	    "\"delivery-status\":{\"code\":250}}";
	struct webhook_event ev, hook;
	size_t i;

	(void)state;
	memset(&hook, 0, sizeof(hook));
	parse_event(data, &hook);
	assert_int_equal(
	    webhook_event_from_data(data, strlen(data), "events-api:ev-1", &ev),
	    0);
	assert_string_equal(ev.token, "events-api:ev-1");
	assert_string_equal(ev.event, "delivered");
	assert_string_equal(ev.event_id, "ev-1");
	assert_string_equal(ev.recipient, "a@b.example");
	assert_string_equal(ev.message_id, "x@mg.example");
	assert_int_equal(ev.redrive_id, 42);
	assert_int_equal(ev.code, 250);
	assert_true(ev.at == 1700000000500);
	assert_string_equal(ev.digest, hook.digest);
	webhook_event_clear(&ev);
	webhook_event_clear(&hook);

	assert_int_equal(webhook_event_from_data("[1]", 3, "t", &ev), -EINVAL);
	assert_null(ev.token);
	assert_int_equal(
	    webhook_event_from_data(data, strlen(data), "", &ev), -EINVAL);
	assert_int_equal(
	    webhook_event_from_data(data, strlen(data), NULL, &ev), -EINVAL);
	for (i = 0; i < strlen(data); i++) {
		assert_int_equal(
		    webhook_event_from_data(data, i, "t", &ev), -EINVAL);
		assert_null(ev.token);
		assert_null(ev.event);
	}
}

/*
 * The digest's canonical text is written by core/jdoc.c; it must be
 * exactly jansson's json_dumps(JSON_SORT_KEYS | JSON_COMPACT), so that the
 * digests of earlier builds stay valid.  Checked here on the event data of
 * every JSON fixture and on values chosen to hit each rule: escapes,
 * control characters, non-ASCII, keys that are prefixes of each other,
 * reals of every shape, big integers, deep and empty containers, objects
 * with more keys than the serialiser's first buffer.
 */
static void
digest_matches_jansson(const char *data)
{
	struct webhook_event ev;
	json_error_t jerr;
	json_t *v = json_loads(data, JSON_REJECT_DUPLICATES, &jerr);
	char *text, want[65];

	if (v == NULL)
		fail_msg("test input is not JSON: %s: %s", jerr.text, data);
	text = json_dumps(v, JSON_SORT_KEYS | JSON_COMPACT);
	assert_non_null(text);
	sha256_hex(text, want);
	assert_int_equal(
	    webhook_event_from_data(data, strlen(data), "tok", &ev), 0);
	if (strcmp(ev.digest, want) != 0)
		fail_msg("digest differs from jansson's for %s", text);
	webhook_event_clear(&ev);
	free(text);
	json_decref(v);
}

static void
test_digest_canonical(void **state)
{
	static const char *const cases[] = {
		"{\"event\":\"delivered\"}",
		"{\"event\":\"failed\",\"a\":{},\"b\":[],\"c\":[{}],\"d\":[[]]"
		"}",
		"{\"event\":\"x\",\"s\":\"q\\\" b\\\\ s/ \\b\\f\\n\\r\\t\"}",
		"{\"event\":\"x\",\"s\":\"\\u0001\\u001f\\u007f\\u0080\"}",
		"{\"event\":\"x\",\"s\":\"\\u00e9\\u2028\\ud83d\\ude00 é\"}",
		"{\"event\":\"x\",\"ab\":1,\"a\":2,\"abc\":3,\"b\":4,\"A\":5,"
		"\"\\u00e9\":6,\"e\":7,\"\":8}",
		"{\"event\":\"x\",\"r\":[0.1,1.5,-0.0,0.0,1e300,-1e-300,"
		"1e-7,1e16,1e17,123456789012345678.0,2.5e-5,"
		"1529692198.719,3.141592653589793,1E+2,-7.0]}",
		"{\"event\":\"x\",\"i\":[0,-1,9223372036854775807,"
		"-9223372036854775808,42]}",
		"{\"event\":\"x\",\"t\":[true,false,null]}",
		"{\"event\":\"x\",\"n\":{\"n\":{\"n\":{\"n\":{\"n\":[1,{"
		"\"z\":1,\"y\":[2,{\"x\":3}]}]}}}}}",
		"{\"event\":\"x\",\"k01\":1,\"k02\":2,\"k03\":3,\"k04\":4,"
		"\"k05\":5,\"k06\":6,\"k07\":7,\"k08\":8,\"k09\":9,\"k10\":10,"
		"\"k11\":11,\"k12\":12,\"k13\":13,\"k14\":14,\"k15\":15,"
		"\"k16\":16,\"k17\":17,\"k18\":18,\"k19\":19,\"k20\":20}",
	};
	const struct expect *all[2] = { symfony_expect, docs_expect };
	const size_t nall[2] = {
		sizeof(symfony_expect) / sizeof(symfony_expect[0]),
		sizeof(docs_expect) / sizeof(docs_expect[0]),
	};
	size_t i, k, len;
	char *big, *body, *data;
	json_error_t jerr;
	json_t *root;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		digest_matches_jansson(cases[i]);
	/* Text longer than the serialiser's stack buffer. */
	big = malloc(20000);
	assert_non_null(big);
	memcpy(big, "{\"event\":\"x\",\"s\":\"", 18);
	memset(big + 18, 'a', 19000);
	memcpy(big + 19018, "\\n\"}", 5);
	digest_matches_jansson(big);
	free(big);
	/* The event data of every JSON fixture. */
	for (k = 0; k < 2; k++) {
		for (i = 0; i < nall[k]; i++) {
			if (strstr(all[k][i].file, ".json") == NULL)
				continue;
			body = fixture_read(all[k][i].file, &len);
			root = json_loadb(body, len, 0, &jerr);
			if (root != NULL &&
			    json_is_object(
				json_object_get(root, "event-data"))) {
				data = json_dumps(
				    json_object_get(root, "event-data"), 0);
				assert_non_null(data);
				digest_matches_jansson(data);
				free(data);
			}
			json_decref(root);
			free(body);
		}
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_vectors),
		cmocka_unit_test(test_verify_args),
		cmocka_unit_test(test_fixtures_symfony),
		cmocka_unit_test(test_fixtures_docs),
		cmocka_unit_test(test_fixtures_all_listed),
		cmocka_unit_test(test_key_rotation),
		cmocka_unit_test(test_bad_signatures),
		cmocka_unit_test(test_parent_signature),
		cmocka_unit_test(test_window),
		cmocka_unit_test(test_event_data_malformed),
		cmocka_unit_test(test_content_types),
		cmocka_unit_test(test_user_variables),
		cmocka_unit_test(test_delivery_status),
		cmocka_unit_test(test_fields),
		cmocka_unit_test(test_long_strings),
		cmocka_unit_test(test_digest),
		cmocka_unit_test(test_digest_canonical),
		cmocka_unit_test(test_legacy_urlencoded),
		cmocka_unit_test(test_legacy_urlencoded_bad),
		cmocka_unit_test(test_legacy_multipart),
		cmocka_unit_test(test_legacy_multipart_bad),
		cmocka_unit_test(test_cut_everywhere),
		cmocka_unit_test(test_from_data),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
