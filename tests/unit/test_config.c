/*
 * Unit tests for core/config.c: every default, a file that sets every
 * key, every bad-value path with its "FILE:LINE: reason" message, the
 * structural errors (unknown section or key, duplicates, syntax, long
 * lines, NUL bytes, missing and unreadable files), env: and file:
 * secrets (never echoed in a message), the MAILGUN_* overrides, the
 * size/bool/host:port helpers, a file cut at every byte, and the example
 * etc/redrive.conf (found under $REDRIVE_SRCDIR, default ".").
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <arpa/inet.h>

#include <cmocka.h>

#include "redrive/config.h"

#define MIN_MS ((int64_t)60 * 1000)
#define HOUR_MS (60 * MIN_MS)
#define DAY_MS (24 * HOUR_MS)

/* A temporary file holding a test's configuration (or a secret). */
struct test_file {
	char path[64];
};

static void
test_file_write(struct test_file *f, const char *text, size_t len)
{
	int fd;

	snprintf(f->path, sizeof(f->path), "/tmp/redrive-test-conf-XXXXXX");
	fd = mkstemp(f->path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, len), (ssize_t)len);
	assert_int_equal(close(fd), 0);
}

static void
test_file_remove(struct test_file *f)
{
	unlink(f->path);
}

/* Loads text as a config file; err gets the message. */
static int
test_load(struct config *cfg, const char *text, char *err, size_t errlen,
    char *path, size_t pathlen)
{
	struct test_file f = { { 0 } };
	int rc;

	test_file_write(&f, text, strlen(text));
	rc = config_load(cfg, f.path, err, errlen);
	if (path != NULL)
		snprintf(path, pathlen, "%s", f.path);
	test_file_remove(&f);
	return rc;
}

/* No MAILGUN_* variable of the test runner may leak into a test. */
static int
test_setup(void **state)
{
	(void)state;
	unsetenv("MAILGUN_API_KEY");
	unsetenv("MAILGUN_DOMAIN");
	unsetenv("MAILGUN_API_BASE");
	unsetenv("MAILGUN_WEBHOOK_SIGNING_KEY");
	unsetenv("REDRIVE_TEST_KEY");
	unsetenv("REDRIVE_TEST_UNSET");
	return 0;
}

static bool
test_cidr_is(const struct cidr *c, const char *addr, unsigned prefix)
{
	uint8_t a[16];
	int fam = strchr(addr, ':') != NULL ? AF_INET6 : AF_INET;

	assert_int_equal(inet_pton(fam, addr, a), 1);
	return c->family == fam && c->prefix == prefix &&
	    memcmp(c->addr, a, fam == AF_INET ? 4 : 16) == 0;
}

/* Asserts that cfg holds every default of DESIGN.md. */
static void
test_assert_defaults(const struct config *c)
{
	char host[256];

	assert_true(c->relay.enabled);
	assert_string_equal(c->relay.listen, "127.0.0.1:2525");
	assert_int_equal(gethostname(host, sizeof(host)), 0);
	host[sizeof(host) - 1] = '\0';
	assert_string_equal(c->relay.hostname, host);
	assert_int_equal(c->relay.nallow, 2);
	assert_true(test_cidr_is(&c->relay.allow[0], "127.0.0.0", 8));
	assert_true(test_cidr_is(&c->relay.allow[1], "::1", 128));
	assert_true(c->relay.max_message_size == 25ULL * 1024 * 1024);
	assert_int_equal(c->relay.max_recipients, 1000);
	assert_int_equal(c->relay.max_connections, 1000);
	assert_true(c->relay.timeout_ms == 5 * MIN_MS);
	assert_string_equal(c->relay.tls_cert, "");
	assert_string_equal(c->relay.tls_key, "");
	assert_string_equal(c->relay.auth_users, "");
	assert_false(c->relay.require_auth);

	assert_string_equal(c->mailgun.api_key, "");
	assert_string_equal(c->mailgun.domain, "");
	assert_string_equal(c->mailgun.api_base, "https://api.mailgun.net");
	assert_int_equal(c->mailgun.nsigning_keys, 0);
	assert_true(c->mailgun.timeout_ms == 30000);
	assert_int_equal(c->mailgun.concurrency, 16);
	assert_true(c->mailgun.retry_min_ms == 1000);
	assert_true(c->mailgun.retry_max_ms == 5 * MIN_MS);
	assert_string_equal(c->mailgun.ca_file, "");

	assert_true(c->tracker.enabled);
	assert_string_equal(c->tracker.listen, "127.0.0.1:8025");
	assert_string_equal(c->tracker.path, "/webhooks/mailgun");
	assert_true(c->tracker.max_body == 1024ULL * 1024);
	assert_true(c->tracker.timestamp_window_ms == 24 * HOUR_MS);
	assert_true(c->tracker.reconcile_after_ms == 2 * HOUR_MS);
	assert_true(c->tracker.reconcile_interval_ms == 5 * MIN_MS);
	assert_int_equal(c->tracker.reconcile_batch, 10);

	assert_int_equal(c->retry.max_attempts, 5);
	assert_true(c->retry.backoff_base_ms == 4 * MIN_MS);
	assert_int_equal(c->retry.backoff_factor, 4);
	assert_int_equal(c->retry.nreasons, 3);
	assert_string_equal(c->retry.reasons[0], "old");
	assert_string_equal(c->retry.reasons[1], "espblock");
	assert_string_equal(c->retry.reasons[2], "blacklisted");
	assert_int_equal(c->retry.ncodes, 1);
	assert_int_equal(c->retry.codes[0].lo, 500);
	assert_int_equal(c->retry.codes[0].hi, 554);
	assert_int_equal(c->retry.nnever_reasons, 4);
	assert_string_equal(c->retry.never_reasons[0], "bounce");
	assert_string_equal(c->retry.never_reasons[1], "suppress-bounce");
	assert_string_equal(c->retry.never_reasons[2], "suppress-unsubscribe");
	assert_string_equal(c->retry.never_reasons[3], "suppress-complaint");
	assert_int_equal(c->retry.nnever_enhanced, 1);
	assert_string_equal(c->retry.never_enhanced[0], "5.1");
	assert_true(c->retry.storage_ttl_ms == 72 * HOUR_MS);

	assert_string_equal(c->alert.to, "");
	assert_string_equal(c->alert.from, "");
	assert_string_equal(c->alert.smtp, "");
	assert_string_equal(c->alert.smtp_user, "");
	assert_string_equal(c->alert.smtp_password, "");
	assert_string_equal(c->alert.smtp_tls, "starttls");
	assert_string_equal(c->alert.webhook_url, "");
	assert_string_equal(c->alert.smtp_ca_file, "");
	assert_true(
	    c->alert.failure_rate > 0.19999 && c->alert.failure_rate < 0.20001);
	assert_true(c->alert.failure_window_ms == 15 * MIN_MS);
	assert_int_equal(c->alert.failure_min, 10);

	assert_string_equal(c->store.path, "/var/lib/redrive/redrive.db");
	assert_true(c->store.retention_ms == 30 * DAY_MS);

	assert_string_equal(c->log.level, "info");
}

static void
test_config_defaults(void **state)
{
	struct config c;
	char err[CONFIG_ERR_MAX];

	(void)state;
	assert_int_equal(config_defaults(&c), 0);
	assert_null(c.path);
	test_assert_defaults(&c);
	config_free(&c);
	assert_null(c.relay.listen);
	config_free(&c); /* twice is fine */
	config_free(NULL);

	/* No file: defaults (and the environment). */
	assert_int_equal(config_load(&c, NULL, err, sizeof(err)), 0);
	assert_null(c.path);
	test_assert_defaults(&c);
	config_free(&c);

	/* An empty file, or comments only: defaults too. */
	assert_int_equal(test_load(&c, "", err, sizeof(err), NULL, 0), 0);
	test_assert_defaults(&c);
	assert_non_null(c.path);
	config_free(&c);
	assert_int_equal(test_load(&c, "# nothing\n; nothing\n\n[relay]\n", err,
			     sizeof(err), NULL, 0),
	    0);
	test_assert_defaults(&c);
	config_free(&c);
}

static const char test_full[] =
    "[relay]\n"
    "enabled = no\n"
    "listen = [::1]:2626\n"
    "hostname = mx.example.com\n"
    "allow = 10.0.0.0/8, 192.168.1.7 fe80::/10,::ffff:172.16.0.0/108\n"
    "max_message_size = 10M\n"
    "max_recipients = 50\n"
    "max_connections = 20\n"
    "timeout = 90s\n"
    "tls_cert = /etc/redrive/cert.pem\n"
    "tls_key = /etc/redrive/key.pem\n"
    "auth_users = /etc/redrive/users\n"
    "require_auth = yes\n"
    "[mailgun]\n"
    "api_key = key-0123456789\n"
    "domain = mg.example.com\n"
    "api_base = https://api.eu.mailgun.net/\n"
    "webhook_signing_key = newkey, oldkey\n"
    "timeout = 10s\n"
    "concurrency = 4\n"
    "retry_min = 500ms\n"
    "retry_max = 1h\n"
    "ca_file = /tmp/ca.pem\n"
    "[tracker]\n"
    "enabled = off\n"
    "listen = *:8080\n"
    "path = /hooks/mg\n"
    "max_body = 64K\n"
    "timestamp_window = 1h\n"
    "[retry]\n"
    "max_attempts = 3\n"
    "backoff_base = 1m\n"
    "backoff_factor = 2\n"
    "reasons = old,generic\n"
    "codes = 421 450-452, 550\n"
    "never_reasons = bounce\n"
    "never_enhanced = 5.1.1 5.7\n"
    "storage_ttl = 3d\n"
    "[alert]\n"
    "to = ops@example.com\n"
    "from = redrive@example.com\n"
    "smtp = smtp.example.com:587\n"
    "smtp_user = alerts\n"
    "smtp_password = hunter2\n"
    "smtp_tls = tls\n"
    "webhook_url = https://hooks.example.com/x?y=1\n"
    "failure_rate = 0.5\n"
    "failure_window = 1h\n"
    "failure_min = 3\n"
    "[store]\n"
    "path = /tmp/redrive.db\n"
    "retention = 2w\n"
    "[log]\n"
    "level = DEBUG\n";

static void
test_config_full(void **state)
{
	struct config c;
	char err[CONFIG_ERR_MAX];
	char path[64];

	(void)state;
	assert_int_equal(
	    test_load(&c, test_full, err, sizeof(err), path, sizeof(path)), 0);
	assert_string_equal(err, "");
	assert_string_equal(c.path, path);
	assert_false(c.relay.enabled);
	assert_string_equal(c.relay.listen, "[::1]:2626");
	assert_string_equal(c.relay.hostname, "mx.example.com");
	assert_int_equal(c.relay.nallow, 4);
	assert_true(test_cidr_is(&c.relay.allow[0], "10.0.0.0", 8));
	assert_true(test_cidr_is(&c.relay.allow[1], "192.168.1.7", 32));
	assert_true(test_cidr_is(&c.relay.allow[2], "fe80::", 10));
	assert_true(test_cidr_is(&c.relay.allow[3], "::ffff:172.16.0.0", 108));
	assert_true(c.relay.max_message_size == 10ULL * 1024 * 1024);
	assert_int_equal(c.relay.max_recipients, 50);
	assert_int_equal(c.relay.max_connections, 20);
	assert_true(c.relay.timeout_ms == 90000);
	assert_string_equal(c.relay.tls_cert, "/etc/redrive/cert.pem");
	assert_string_equal(c.relay.tls_key, "/etc/redrive/key.pem");
	assert_string_equal(c.relay.auth_users, "/etc/redrive/users");
	assert_true(c.relay.require_auth);
	assert_string_equal(c.mailgun.api_key, "key-0123456789");
	assert_string_equal(c.mailgun.domain, "mg.example.com");
	assert_string_equal(c.mailgun.api_base, "https://api.eu.mailgun.net");
	assert_int_equal(c.mailgun.nsigning_keys, 2);
	assert_string_equal(c.mailgun.signing_keys[0], "newkey");
	assert_string_equal(c.mailgun.signing_keys[1], "oldkey");
	assert_true(c.mailgun.timeout_ms == 10000);
	assert_int_equal(c.mailgun.concurrency, 4);
	assert_true(c.mailgun.retry_min_ms == 500);
	assert_true(c.mailgun.retry_max_ms == HOUR_MS);
	assert_string_equal(c.mailgun.ca_file, "/tmp/ca.pem");
	assert_false(c.tracker.enabled);
	assert_string_equal(c.tracker.listen, "*:8080");
	assert_string_equal(c.tracker.path, "/hooks/mg");
	assert_true(c.tracker.max_body == 64ULL * 1024);
	assert_true(c.tracker.timestamp_window_ms == HOUR_MS);
	assert_int_equal(c.retry.max_attempts, 3);
	assert_true(c.retry.backoff_base_ms == MIN_MS);
	assert_int_equal(c.retry.backoff_factor, 2);
	assert_int_equal(c.retry.nreasons, 2);
	assert_string_equal(c.retry.reasons[0], "old");
	assert_string_equal(c.retry.reasons[1], "generic");
	assert_int_equal(c.retry.ncodes, 3);
	assert_int_equal(c.retry.codes[0].lo, 421);
	assert_int_equal(c.retry.codes[0].hi, 421);
	assert_int_equal(c.retry.codes[1].lo, 450);
	assert_int_equal(c.retry.codes[1].hi, 452);
	assert_int_equal(c.retry.codes[2].lo, 550);
	assert_int_equal(c.retry.codes[2].hi, 550);
	assert_int_equal(c.retry.nnever_reasons, 1);
	assert_string_equal(c.retry.never_reasons[0], "bounce");
	assert_int_equal(c.retry.nnever_enhanced, 2);
	assert_string_equal(c.retry.never_enhanced[0], "5.1.1");
	assert_string_equal(c.retry.never_enhanced[1], "5.7");
	assert_true(c.retry.storage_ttl_ms == 3 * DAY_MS);
	assert_string_equal(c.alert.to, "ops@example.com");
	assert_string_equal(c.alert.from, "redrive@example.com");
	assert_string_equal(c.alert.smtp, "smtp.example.com:587");
	assert_string_equal(c.alert.smtp_user, "alerts");
	assert_string_equal(c.alert.smtp_password, "hunter2");
	assert_string_equal(c.alert.smtp_tls, "tls");
	assert_string_equal(
	    c.alert.webhook_url, "https://hooks.example.com/x?y=1");
	assert_true(c.alert.failure_rate == 0.5);
	assert_true(c.alert.failure_window_ms == HOUR_MS);
	assert_int_equal(c.alert.failure_min, 3);
	assert_string_equal(c.store.path, "/tmp/redrive.db");
	assert_true(c.store.retention_ms == 14 * DAY_MS);
	assert_string_equal(c.log.level, "debug");
	config_free(&c);
}

/* One bad file: the line its error names and a part of the reason. */
struct test_bad {
	const char *text;
	int line;
	const char *reason;
};

static const struct test_bad test_bad_values[] = {
	/* [relay] */
	{ "[relay]\nenabled = maybe\n", 2,
	    "[relay] enabled: \"maybe\" is not a boolean (use yes or no)" },
	{ "[relay]\nlisten = 127.0.0.1\n", 2,
	    "[relay] listen: \"127.0.0.1\" is not an address:port" },
	{ "[relay]\nlisten = 127.0.0.1:0\n", 2,
	    "[relay] listen: \"127.0.0.1:0\"" },
	{ "[relay]\nlisten = 127.0.0.1:65536\n", 2, "is not an address:port" },
	{ "[relay]\nlisten = localhost:2525\n", 2, "is not an address:port" },
	{ "[relay]\nlisten = ::1:2525\n", 2, "is not an address:port" },
	{ "[relay]\nlisten = [::1]:x\n", 2, "is not an address:port" },
	{ "[relay]\nlisten =\n", 2, "[relay] listen: \"\" is not" },
	{ "[relay]\nhostname = bad host\n", 2,
	    "[relay] hostname: \"bad host\" is not a host name" },
	{ "[relay]\nhostname = a/b\n", 2, "is not a host name" },
	{ "[relay]\nallow = 10.0.0.0/33\n", 2,
	    "[relay] allow: \"10.0.0.0/33\" is not a network" },
	{ "[relay]\nallow = 127.0.0.1 localhost\n", 2,
	    "\"localhost\" is not a network" },
	{ "[relay]\nallow =\n", 2, "[relay] allow: no network given" },
	{ "[relay]\nallow = , ,\n", 2, "no network given" },
	{ "[relay]\nmax_message_size = 25X\n", 2,
	    "[relay] max_message_size: \"25X\" is not a size (use 512K, 25M, "
	    "1G)" },
	{ "[relay]\nmax_message_size = 1023\n", 2,
	    "[relay] max_message_size: \"1023\" is out of range (1K or more)" },
	{ "[relay]\nmax_message_size = 99999999999999999999G\n", 2,
	    "is out of range" },
	{ "[relay]\nmax_message_size = -1M\n", 2, "is not a size" },
	{ "[relay]\nmax_recipients = 0\n", 2,
	    "[relay] max_recipients: \"0\" is out of range (1 to 100000)" },
	{ "[relay]\nmax_recipients = 100001\n", 2, "is out of range" },
	{ "[relay]\nmax_recipients = -1\n", 2, "is not a whole number" },
	{ "[relay]\nmax_recipients = 1.5\n", 2, "is not a whole number" },
	{ "[relay]\nmax_recipients = 99999999999999999999999\n", 2,
	    "is out of range" },
	{ "[relay]\nmax_connections = 0\n", 2,
	    "[relay] max_connections: \"0\" is out of range (1 or more)" },
	{ "[relay]\nmax_connections = 2147483648\n", 2, "is out of range" },
	{ "[relay]\ntimeout = 0s\n", 2,
	    "[relay] timeout: \"0s\" is out of range (1ms to 3650d)" },
	{ "[relay]\ntimeout = 5\n", 2,
	    "[relay] timeout: \"5\" is not a duration (use 500ms, 30s, 4m, "
	    "2h, 7d)" },
	{ "[relay]\ntimeout = 3651d\n", 2, "is out of range" },
	{ "[relay]\ntimeout = 99999999999999999999w\n", 2, "is out of range" },
	{ "[relay]\ntls_cert = a\x01z\n", 2,
	    "[relay] tls_cert: \"a\\x01z\" holds a control character" },
	{ "[relay]\nrequire_auth = perhaps\n", 2, "is not a boolean" },
	/* [mailgun] */
	{ "[mailgun]\ndomain = bad domain\n", 2,
	    "[mailgun] domain: \"bad domain\" is not a domain name" },
	{ "[mailgun]\ndomain = .example.com\n", 2, "is not a domain name" },
	{ "[mailgun]\napi_base = ftp://api.mailgun.net\n", 2,
	    "[mailgun] api_base: \"ftp://api.mailgun.net\" is not an http:// "
	    "or https:// URL" },
	{ "[mailgun]\napi_base = https://\n", 2, "is not an http://" },
	{ "[mailgun]\napi_base = https:///v3\n", 2, "is not an http://" },
	{ "[mailgun]\napi_base = api.mailgun.net\n", 2, "is not an http://" },
	{ "[mailgun]\napi_base =\n", 2, "is not an http://" },
	{ "[mailgun]\ntimeout = 0ms\n", 2,
	    "[mailgun] timeout: \"0ms\" is out" },
	{ "[mailgun]\nconcurrency = 0\n", 2,
	    "[mailgun] concurrency: \"0\" is out of range (1 to 1000)" },
	{ "[mailgun]\nconcurrency = 1001\n", 2, "is out of range" },
	{ "[mailgun]\nretry_min = 0s\n", 2,
	    "[mailgun] retry_min: \"0s\" is out" },
	{ "[mailgun]\nretry_max = soon\n", 2,
	    "[mailgun] retry_max: \"soon\" is not a duration" },
	{ "[mailgun]\nwebhook_signing_key = a,,b\n", 2,
	    "[mailgun] webhook_signing_key: an empty key in the "
	    "comma-separated list" },
	{ "[mailgun]\nwebhook_signing_key = a,\n", 2, "an empty key" },
	{ "[mailgun]\nwebhook_signing_key = , a\n", 2, "an empty key" },
	{ "[mailgun]\nwebhook_signing_key = a, ,b\n", 2, "an empty key" },
	{ "[mailgun]\nwebhook_signing_key = a,b,c,d,e,f,g,h,i\n", 2,
	    "[mailgun] webhook_signing_key: more than 8 keys" },
	{ "[mailgun]\napi_key = env:\n", 2,
	    "[mailgun] api_key: env: needs a variable name" },
	{ "[mailgun]\napi_key = file:\n", 2,
	    "[mailgun] api_key: file: needs a path" },
	{ "[mailgun]\napi_key = env:REDRIVE_TEST_UNSET\n", 2,
	    "[mailgun] api_key: env:REDRIVE_TEST_UNSET: the variable is unset "
	    "or empty" },
	{ "[mailgun]\napi_key = file:/nonexistent/redrive-key\n", 2,
	    "[mailgun] api_key: file:/nonexistent/redrive-key: cannot read: No "
	    "such file or directory" },
	{ "[mailgun]\napi_key = file:/tmp\n", 2,
	    "[mailgun] api_key: file:/tmp: cannot read: Is a directory" },
	{ "[mailgun]\nwebhook_signing_key = ok, env:REDRIVE_TEST_UNSET\n", 2,
	    "[mailgun] webhook_signing_key: env:REDRIVE_TEST_UNSET: the "
	    "variable is unset" },
	/* [tracker] */
	{ "[tracker]\nenabled = 2\n", 2, "[tracker] enabled: \"2\" is not a" },
	{ "[tracker]\nlisten = *:99999\n", 2,
	    "[tracker] listen: \"*:99999\" is not an address:port" },
	{ "[tracker]\npath = webhooks\n", 2,
	    "[tracker] path: \"webhooks\" is not a URL path" },
	{ "[tracker]\npath = /a b\n", 2, "is not a URL path" },
	{ "[tracker]\npath = /a?b\n", 2, "is not a URL path" },
	{ "[tracker]\npath =\n", 2, "is not a URL path" },
	{ "[tracker]\nmax_body = 512\n", 2,
	    "[tracker] max_body: \"512\" is out of range (1K or more)" },
	{ "[tracker]\nmax_body = 1T\n", 2, "is not a size" },
	{ "[tracker]\ntimestamp_window = 1\n", 2,
	    "[tracker] timestamp_window: \"1\" is not a duration" },
	{ "[tracker]\nreconcile_batch = 0\n", 2,
	    "[tracker] reconcile_batch: \"0\" is out of range (1 to 1000)" },
	/* [retry] */
	{ "[retry]\nmax_attempts = 0\n", 2,
	    "[retry] max_attempts: \"0\" is out of range (1 to 1000)" },
	{ "[retry]\nbackoff_base = 0m\n", 2,
	    "[retry] backoff_base: \"0m\" is" },
	{ "[retry]\nbackoff_factor = 0\n", 2,
	    "[retry] backoff_factor: \"0\" is out of range (1 to 1000)" },
	{ "[retry]\nreasons = old esp!block\n", 2,
	    "[retry] reasons: \"esp!block\" is not a reason" },
	{ "[retry]\nreasons = a b c d e f g h i j k l m n o p q r s t u v w x "
	  "y "
	  "z 1 2 3 4 5 6 7\n",
	    2, "[retry] reasons: more than 32 entries" },
	{ "[retry]\ncodes = 500-\n", 2,
	    "[retry] codes: \"500-\" is not a code or a range of codes" },
	{ "[retry]\ncodes = 554-500\n", 2, "\"554-500\" is not a code" },
	{ "[retry]\ncodes = 99\n", 2, "\"99\" is not a code" },
	{ "[retry]\ncodes = 5000\n", 2, "\"5000\" is not a code" },
	{ "[retry]\ncodes = 500-554-600\n", 2, "is not a code" },
	{ "[retry]\ncodes = 050\n", 2, "is not a code" },
	{ "[retry]\nnever_reasons = a/b\n", 2,
	    "[retry] never_reasons: \"a/b\" is not a reason" },
	{ "[retry]\nnever_enhanced = 5\n", 2,
	    "[retry] never_enhanced: \"5\" is not an enhanced status code" },
	{ "[retry]\nnever_enhanced = 6.1\n", 2, "is not an enhanced" },
	{ "[retry]\nnever_enhanced = 5.1.1.1\n", 2, "is not an enhanced" },
	{ "[retry]\nnever_enhanced = 5.x\n", 2, "is not an enhanced" },
	{ "[retry]\nnever_enhanced = 5.1234\n", 2, "is not an enhanced" },
	{ "[retry]\nnever_enhanced = 5.1.\n", 2, "is not an enhanced" },
	{ "[retry]\nstorage_ttl = -1h\n", 2,
	    "[retry] storage_ttl: \"-1h\" is not a duration" },
	/* [alert] */
	{ "[alert]\nto = nobody\n", 2,
	    "[alert] to: \"nobody\" is not a mail address" },
	{ "[alert]\nfrom = x\n", 2, "[alert] from: \"x\" is not a mail" },
	{ "[alert]\nsmtp = smtp.example.com\n", 2,
	    "[alert] smtp: \"smtp.example.com\" is not host:port" },
	{ "[alert]\nsmtp = smtp.example.com:0\n", 2, "is not host:port" },
	{ "[alert]\nsmtp = [::1]:70000\n", 2, "is not host:port" },
	{ "[alert]\nsmtp_tls = ssl\n", 2,
	    "[alert] smtp_tls: \"ssl\" is not one of starttls, tls, none" },
	{ "[alert]\nsmtp_tls = TLS\n", 2, "is not one of" },
	{ "[alert]\nwebhook_url = example.com/hook\n", 2,
	    "[alert] webhook_url: \"example.com/hook\" is not an http://" },
	{ "[alert]\nfailure_rate = 1.5\n", 2,
	    "[alert] failure_rate: \"1.5\" is not a number from 0 to 1" },
	{ "[alert]\nfailure_rate = -0.1\n", 2, "is not a number from 0 to 1" },
	{ "[alert]\nfailure_rate = nan\n", 2, "is not a number from 0 to 1" },
	{ "[alert]\nfailure_rate = 0.2.3\n", 2, "is not a number from 0 to 1" },
	{ "[alert]\nfailure_rate = .\n", 2, "is not a number from 0 to 1" },
	{ "[alert]\nfailure_rate =\n", 2, "is not a number from 0 to 1" },
	{ "[alert]\nfailure_window = 0h\n", 2,
	    "[alert] failure_window: \"0h\"" },
	{ "[alert]\nfailure_min = 0\n", 2,
	    "[alert] failure_min: \"0\" is out of range (1 or more)" },
	{ "[alert]\nsmtp_password = env:REDRIVE_TEST_UNSET\n", 2,
	    "[alert] smtp_password: env:REDRIVE_TEST_UNSET: the variable" },
	/* [store], [log] */
	{ "[store]\npath =\n", 2, "[store] path: must not be empty" },
	{ "[store]\nretention = 30\n", 2,
	    "[store] retention: \"30\" is not a duration" },
	{ "[log]\nlevel = verbose\n", 2,
	    "[log] level: \"verbose\" is not one of debug, info, warn, error" },
	/* Structure. */
	{ "[reley]\nlisten = 127.0.0.1:25\n", 1,
	    "unknown section \"reley\" (the sections are relay, mailgun, "
	    "tracker, retry, alert, store, log)" },
	{ "[relay]\n[bogus]\n", 2, "unknown section \"bogus\"" },
	{ "[relay]\nlistn = 1\n", 2, "[relay] unknown key \"listn\"" },
	{ "[relay]\nlisten = 127.0.0.1:25\n\n# c\nlisten = 127.0.0.1:26\n", 5,
	    "[relay] listen: duplicate key (first set on line 2)" },
	{ "[relay]\nmax_recipients = 5\n[mailgun]\n[relay]\nmax_recipients = "
	  "6\n",
	    5, "[relay] max_recipients: duplicate key (first set on line 2)" },
	{ "enabled = yes\n", 1,
	    "key \"enabled\" outside any section (put it under [relay]" },
	{ "[relay]\nthis is not a pair\n", 2,
	    "syntax error: expected [section], key = value or a # comment" },
	{ "[relay\n", 1, "syntax error" },
	{ "[relay]\n= 5\n", 2, "[relay] unknown key \"\"" },
	/* The first error wins, a syntax error included. */
	{ "[relay]\ngarbage\nenabled = maybe\n", 2, "syntax error" },
	{ "[relay]\nenabled = maybe\ngarbage\n", 2, "is not a boolean" },
	{ "[relay]\nlistn = 1\nenabled = maybe\n", 2, "unknown key" },
	{ "# c\n\n; c\n[relay]\n\n  max_recipients = 0\n", 6,
	    "max_recipients: \"0\" is out of range" },
	/* Rules across keys. */
	{ "[mailgun]\nretry_min = 10m\n", 2,
	    "[mailgun] retry_min (10m) is longer than retry_max (5m)" },
	{ "[mailgun]\nretry_max = 10m\nretry_min = 20m\n", 3,
	    "retry_min (20m) is longer than retry_max (10m)" },
	{ "[mailgun]\nretry_min = 1500ms\nretry_max = 1s\n", 3,
	    "retry_min (1500ms) is longer than retry_max (1s)" },
	{ "[relay]\ntls_cert = /c.pem\n", 2,
	    "[relay] tls_cert and tls_key must be set together (tls_key is "
	    "empty)" },
	{ "[relay]\ntls_key = /k.pem\n", 2, "(tls_cert is empty)" },
	{ "[relay]\nrequire_auth = yes\n", 2,
	    "[relay] require_auth = yes needs auth_users" },
};

static void
test_config_bad_values(void **state)
{
	struct config c;
	char err[CONFIG_ERR_MAX];
	char path[64];
	char want[CONFIG_ERR_MAX];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(test_bad_values) / sizeof(test_bad_values[0]);
	     i++) {
		const struct test_bad *b = &test_bad_values[i];

		memset(&c, 0x5a, sizeof(c));
		err[0] = 'X';
		err[1] = '\0';
		if (test_load(&c, b->text, err, sizeof(err), path,
			sizeof(path)) != -EINVAL) {
			print_error("case %zu: %s: no -EINVAL, err=%s\n", i,
			    b->text, err);
			fail();
		}
		snprintf(want, sizeof(want), "%s:%d: ", path, b->line);
		if (strncmp(err, want, strlen(want)) != 0 ||
		    strstr(err, b->reason) == NULL) {
			print_error("case %zu: got \"%s\"\nwant \"%s%s\"\n", i,
			    err, want, b->reason);
			fail();
		}
		/* A failed load leaves nothing behind. */
		assert_null(c.relay.listen);
		assert_null(c.path);
		assert_int_equal(c.relay.nallow, 0);
	}
}

/* Errors quote what was written, escaped and cut. */
static void
test_config_error_quoting(void **state)
{
	struct config c;
	char err[CONFIG_ERR_MAX];
	char text[256];
	char long_value[151];

	(void)state;
	memset(long_value, 'x', sizeof(long_value) - 1);
	long_value[sizeof(long_value) - 1] = '\0';
	snprintf(
	    text, sizeof(text), "[relay]\nmax_message_size = %s\n", long_value);
	assert_int_equal(
	    test_load(&c, text, err, sizeof(err), NULL, 0), -EINVAL);
	assert_non_null(strstr(err, "xxxxxxxx...\" is not a size"));
	assert_null(strstr(err, long_value));

	assert_int_equal(test_load(&c, "[relay]\ntimeout = \"5m\"\n", err,
			     sizeof(err), NULL, 0),
	    -EINVAL);
	assert_non_null(strstr(err, "\"\\\"5m\\\"\" is not a duration"));
	assert_int_equal(test_load(&c, "[relay]\ntimeout = 5m\xc3\xa9\n", err,
			     sizeof(err), NULL, 0),
	    -EINVAL);
	assert_non_null(strstr(err, "\"5m\\xc3\\xa9\" is not a duration"));

	/* A short error buffer is cut, never overrun. */
	memset(err, 'Z', sizeof(err));
	assert_int_equal(
	    config_load(&c, "/nonexistent/redrive.conf", err, 10), -ENOENT);
	assert_int_equal(strlen(err), 9);
	assert_int_equal(err[10], 'Z');
	assert_int_equal(
	    config_load(&c, "/nonexistent/redrive.conf", NULL, 0), -ENOENT);
}

static void
test_config_files(void **state)
{
	struct config c;
	char err[CONFIG_ERR_MAX];
	char longline[400];
	struct test_file f = { { 0 } };
	static const char nul[] = "[relay]\nhostname = a\0b\n";

	(void)state;
	assert_int_equal(
	    config_load(&c, "/nonexistent/redrive.conf", err, sizeof(err)),
	    -ENOENT);
	assert_string_equal(err,
	    "/nonexistent/redrive.conf: cannot open: No such file or "
	    "directory");
	assert_null(c.relay.listen);

	assert_int_equal(config_load(&c, "/tmp", err, sizeof(err)), -EISDIR);
	assert_string_equal(err, "/tmp: cannot read: Is a directory");

	/* A line too long for inih is refused, not split. */
	snprintf(longline, sizeof(longline), "[relay]\nhostname = %0250d\n", 7);
	assert_int_equal(
	    test_load(&c, longline, err, sizeof(err), NULL, 0), -EINVAL);
	assert_non_null(strstr(err, ":2: the line is longer than 199 bytes"));
	/* 199 bytes exactly is fine. */
	snprintf(longline, sizeof(longline), "[relay]\nhostname = %0188d\n", 7);
	assert_int_equal(strlen(strchr(longline, '\n') + 1), 200);
	assert_int_equal(test_load(&c, longline, err, sizeof(err), NULL, 0), 0);
	assert_int_equal(strlen(c.relay.hostname), 188);
	config_free(&c);

	test_file_write(&f, nul, sizeof(nul) - 1);
	assert_int_equal(config_load(&c, f.path, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, ":2: the line holds a NUL byte"));
	test_file_remove(&f);
}

/* What libinih allows around keys: comments, CRLF, a BOM, indentation. */
static void
test_config_syntax(void **state)
{
	struct config c;
	char err[CONFIG_ERR_MAX];

	(void)state;
	assert_int_equal(test_load(&c,
			     "\xef\xbb\xbf# comment\r\n"
			     "[relay]\r\n"
			     "  max_recipients = 7 ; inline comment\r\n"
			     "\tmax_connections=8\r\n"
			     "; comment\n"
			     "[alert]\n"
			     "smtp_user = a;b ; comment\n"
			     "[retry]\n"
			     "reasons =\n"
			     "codes =\n"
			     "never_enhanced =\n",
			     err, sizeof(err), NULL, 0),
	    0);
	assert_int_equal(c.relay.max_recipients, 7);
	assert_int_equal(c.relay.max_connections, 8);
	/* ';' without a blank before it is part of the value. */
	assert_string_equal(c.alert.smtp_user, "a;b");
	assert_int_equal(c.retry.nreasons, 0);
	assert_int_equal(c.retry.ncodes, 0);
	assert_int_equal(c.retry.nnever_enhanced, 0);
	config_free(&c);
	assert_int_equal(test_load(&c, "[relay]\nhostname = mx;x\n", err,
			     sizeof(err), NULL, 0),
	    -EINVAL);

	/* An indented line is a key of its own, not a continuation. */
	assert_int_equal(test_load(&c,
			     "[relay]\nmax_recipients = 7\n    "
			     "max_connections = 9\n",
			     err, sizeof(err), NULL, 0),
	    0);
	assert_int_equal(c.relay.max_recipients, 7);
	assert_int_equal(c.relay.max_connections, 9);
	config_free(&c);

	/* Booleans, sizes and the log level in their spellings. */
	assert_int_equal(test_load(&c,
			     "[relay]\nenabled = TRUE\nrequire_auth = 0\n"
			     "max_message_size = 1gb\n[log]\nlevel = Warn\n",
			     err, sizeof(err), NULL, 0),
	    0);
	assert_true(c.relay.enabled);
	assert_false(c.relay.require_auth);
	assert_true(c.relay.max_message_size == 1024ULL * 1024 * 1024);
	assert_string_equal(c.log.level, "warn");
	config_free(&c);
}

static void
test_config_secrets(void **state)
{
	struct config c;
	char err[CONFIG_ERR_MAX];
	char text[512];
	struct test_file key = { { 0 } }, empty = { { 0 } };
	struct test_file blank = { { 0 } }, big = { { 0 } };
	char bigtext[5000];

	(void)state;
	setenv("REDRIVE_TEST_KEY", "key-from-env", 1);
	test_file_write(&key, "key-from-file\r\nsecond line\n", 27);
	test_file_write(&empty, "", 0);
	test_file_write(&blank, "\nsecond\n", 8);
	memset(bigtext, 'q', sizeof(bigtext));
	test_file_write(&big, bigtext, sizeof(bigtext));

	snprintf(text, sizeof(text),
	    "[mailgun]\napi_key = env:REDRIVE_TEST_KEY\n"
	    "webhook_signing_key = lit1, env:REDRIVE_TEST_KEY ,file:%s\n"
	    "[alert]\nsmtp_password = file:%s\n",
	    key.path, key.path);
	assert_int_equal(test_load(&c, text, err, sizeof(err), NULL, 0), 0);
	assert_string_equal(c.mailgun.api_key, "key-from-env");
	assert_int_equal(c.mailgun.nsigning_keys, 3);
	assert_string_equal(c.mailgun.signing_keys[0], "lit1");
	assert_string_equal(c.mailgun.signing_keys[1], "key-from-env");
	assert_string_equal(c.mailgun.signing_keys[2], "key-from-file");
	assert_string_equal(c.alert.smtp_password, "key-from-file");
	config_free(&c);

	/* A file without a trailing newline. */
	{
		struct test_file nonl = { { 0 } };

		test_file_write(&nonl, "abc", 3);
		snprintf(text, sizeof(text), "[mailgun]\napi_key = file:%s\n",
		    nonl.path);
		assert_int_equal(
		    test_load(&c, text, err, sizeof(err), NULL, 0), 0);
		assert_string_equal(c.mailgun.api_key, "abc");
		config_free(&c);
		test_file_remove(&nonl);
	}

	snprintf(
	    text, sizeof(text), "[mailgun]\napi_key = file:%s\n", empty.path);
	assert_int_equal(
	    test_load(&c, text, err, sizeof(err), NULL, 0), -EINVAL);
	assert_non_null(strstr(err, ":2: [mailgun] api_key: file:"));
	assert_non_null(strstr(err, ": the file is empty"));

	snprintf(
	    text, sizeof(text), "[mailgun]\napi_key = file:%s\n", blank.path);
	assert_int_equal(
	    test_load(&c, text, err, sizeof(err), NULL, 0), -EINVAL);
	assert_non_null(strstr(err, ": the first line is empty"));

	snprintf(
	    text, sizeof(text), "[alert]\nsmtp_password = file:%s\n", big.path);
	assert_int_equal(
	    test_load(&c, text, err, sizeof(err), NULL, 0), -EINVAL);
	assert_non_null(strstr(err, ": the first line is longer than"));
	assert_null(strstr(err, "qqqqqqq"));

	/* An empty variable counts as unset. */
	setenv("REDRIVE_TEST_KEY", "", 1);
	assert_int_equal(
	    test_load(&c, "[mailgun]\napi_key = env:REDRIVE_TEST_KEY\n", err,
		sizeof(err), NULL, 0),
	    -EINVAL);
	assert_non_null(strstr(err, "unset or empty"));

	test_file_remove(&key);
	test_file_remove(&empty);
	test_file_remove(&blank);
	test_file_remove(&big);
}

/* No message ever shows a secret's value. */
static void
test_config_secret_not_echoed(void **state)
{
	static const char nine[] =
	    "[mailgun]\nwebhook_signing_key = s3cr3t-1,s3cr3t-2,s3cr3t-3,"
	    "s3cr3t-4,s3cr3t-5,s3cr3t-6,s3cr3t-7,s3cr3t-8,s3cr3t-9\n";
	const char *const texts[] = {
		"[mailgun]\napi_key = s3cr3t-one\napi_key = s3cr3t-two\n",
		"[mailgun]\nwebhook_signing_key = s3cr3t-a,,s3cr3t-b\n",
		nine,
		"[alert]\nsmtp_password = s3cr3t\nsmtp_password = s3cr3t\n",
		"[mailgun]\napi_key = s3cr3t\n[mailgun]\napi_key = s3cr3t\n",
		"[mailgun]\napi-key = s3cr3t\n",
	};
	struct config c;
	char err[CONFIG_ERR_MAX];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
		assert_int_equal(
		    test_load(&c, texts[i], err, sizeof(err), NULL, 0),
		    -EINVAL);
		assert_true(strlen(err) > 0);
		if (strstr(err, "s3cr3t") != NULL) {
			print_error("secret in \"%s\"\n", err);
			fail();
		}
	}
	/* Through the environment too. */
	setenv("MAILGUN_WEBHOOK_SIGNING_KEY", "s3cr3t,,x", 1);
	assert_int_equal(config_load(&c, NULL, err, sizeof(err)), -EINVAL);
	assert_string_equal(err,
	    "environment: MAILGUN_WEBHOOK_SIGNING_KEY: an empty key in the "
	    "comma-separated list");
	unsetenv("MAILGUN_WEBHOOK_SIGNING_KEY");
}

static void
test_config_env(void **state)
{
	struct config c;
	char err[CONFIG_ERR_MAX];
	static const char text[] =
	    "[mailgun]\n"
	    "api_key = env:REDRIVE_TEST_UNSET\n"
	    "domain = file.example.com\n"
	    "api_base = https://api.mailgun.net\n"
	    "webhook_signing_key = env:REDRIVE_TEST_UNSET, b, c\n";

	(void)state;
	/* Without overrides the unset variable is an error... */
	assert_int_equal(
	    test_load(&c, text, err, sizeof(err), NULL, 0), -EINVAL);
	/* ... with them, the file's values do not matter. */
	setenv("MAILGUN_API_KEY", "env:LITERAL", 1);
	setenv("MAILGUN_DOMAIN", "env.example.com", 1);
	setenv("MAILGUN_API_BASE", "http://127.0.0.1:9999//", 1);
	setenv("MAILGUN_WEBHOOK_SIGNING_KEY", "k1, k2", 1);
	assert_int_equal(test_load(&c, text, err, sizeof(err), NULL, 0), 0);
	assert_string_equal(c.mailgun.api_key, "env:LITERAL");
	assert_string_equal(c.mailgun.domain, "env.example.com");
	assert_string_equal(c.mailgun.api_base, "http://127.0.0.1:9999");
	assert_int_equal(c.mailgun.nsigning_keys, 2);
	assert_string_equal(c.mailgun.signing_keys[0], "k1");
	assert_string_equal(c.mailgun.signing_keys[1], "k2");
	config_free(&c);

	/* Without a file. */
	assert_int_equal(config_load(&c, NULL, err, sizeof(err)), 0);
	assert_string_equal(c.mailgun.domain, "env.example.com");
	config_free(&c);

	/* An empty variable is no override. */
	setenv("MAILGUN_DOMAIN", "", 1);
	unsetenv("MAILGUN_API_KEY");
	unsetenv("MAILGUN_WEBHOOK_SIGNING_KEY");
	assert_int_equal(test_load(&c, "[mailgun]\ndomain = file.example.com\n",
			     err, sizeof(err), NULL, 0),
	    0);
	assert_string_equal(c.mailgun.domain, "file.example.com");
	config_free(&c);

	/* A bad override names the variable. */
	setenv("MAILGUN_DOMAIN", "bad domain", 1);
	assert_int_equal(config_load(&c, NULL, err, sizeof(err)), -EINVAL);
	assert_string_equal(err,
	    "environment: MAILGUN_DOMAIN: \"bad domain\" is not a domain name");
	assert_null(c.mailgun.domain);
	unsetenv("MAILGUN_DOMAIN");
	setenv("MAILGUN_API_BASE", "api.mailgun.net", 1);
	assert_int_equal(test_load(&c, "", err, sizeof(err), NULL, 0), -EINVAL);
	assert_non_null(strstr(err, "environment: MAILGUN_API_BASE: "));
	unsetenv("MAILGUN_API_BASE");
}

static void
test_config_hostname(void **state)
{
	struct config c;
	char err[CONFIG_ERR_MAX];
	char host[256];

	(void)state;
	assert_int_equal(gethostname(host, sizeof(host)), 0);
	host[sizeof(host) - 1] = '\0';
	assert_int_equal(
	    test_load(&c, "[relay]\nhostname =\n", err, sizeof(err), NULL, 0),
	    0);
	assert_string_equal(c.relay.hostname, host);
	config_free(&c);
	assert_int_equal(test_load(&c, "[relay]\nhostname = relay-1.example\n",
			     err, sizeof(err), NULL, 0),
	    0);
	assert_string_equal(c.relay.hostname, "relay-1.example");
	config_free(&c);
}

static void
test_config_parse_size(void **state)
{
	static const struct {
		const char *s;
		uint64_t v;
	} ok[] = {
		{ "0", 0 },
		{ "512", 512 },
		{ "512B", 512 },
		{ "1K", 1024 },
		{ "1k", 1024 },
		{ "1KB", 1024 },
		{ "512K", 512ULL * 1024 },
		{ "25M", 25ULL * 1024 * 1024 },
		{ "25mb", 25ULL * 1024 * 1024 },
		{ "1G", 1024ULL * 1024 * 1024 },
		{ "18446744073709551615", UINT64_MAX },
		{ "17179869183G", 17179869183ULL * 1024 * 1024 * 1024 },
	};
	static const char *const bad[] = { "", "K", "B", "-1", "+1", " 1", "1 ",
		"1 K", "1.5M", "1KK", "1BB", "1T", "1KBB", "0x10", "1Kb2" };
	static const char *const big[] = { "18446744073709551616",
		"17179869184G", "99999999999999999999999K",
		"18014398509481984K" };
	size_t i;
	uint64_t v;

	(void)state;
	for (i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		v = 42;
		assert_int_equal(config_parse_size(ok[i].s, &v), 0);
		assert_true(v == ok[i].v);
	}
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		v = 42;
		assert_int_equal(config_parse_size(bad[i], &v), -EINVAL);
		assert_true(v == 42);
	}
	for (i = 0; i < sizeof(big) / sizeof(big[0]); i++)
		assert_int_equal(config_parse_size(big[i], &v), -ERANGE);
	assert_int_equal(
	    config_parse_size("99999999999999999999999X", &v), -EINVAL);
	assert_int_equal(config_parse_size(NULL, &v), -EINVAL);
}

static void
test_config_parse_bool(void **state)
{
	static const char *const yes[] = { "yes", "YES", "true", "True", "on",
		"1" };
	static const char *const no[] = { "no", "No", "false", "FALSE", "off",
		"0" };
	static const char *const bad[] = { "", "y", "n", "2", "yes ", "enabled",
		"nope" };
	size_t i;
	bool b;

	(void)state;
	for (i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
		b = false;
		assert_int_equal(config_parse_bool(yes[i], &b), 0);
		assert_true(b);
	}
	for (i = 0; i < sizeof(no) / sizeof(no[0]); i++) {
		b = true;
		assert_int_equal(config_parse_bool(no[i], &b), 0);
		assert_false(b);
	}
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(config_parse_bool(bad[i], &b), -EINVAL);
	assert_int_equal(config_parse_bool(NULL, &b), -EINVAL);
}

static void
test_config_hostport(void **state)
{
	static const struct {
		const char *s;
		const char *host;
		int port;
	} ok[] = {
		{ "127.0.0.1:2525", "127.0.0.1", 2525 },
		{ "[::1]:2525", "::1", 2525 },
		{ "[fe80::1%eth0]:25", "fe80::1%eth0", 25 },
		{ "*:25", "*", 25 },
		{ "smtp.example.com:587", "smtp.example.com", 587 },
		{ "h:0", "h", 0 },
		{ "h:65535", "h", 65535 },
		{ "h:00025", "h", 25 },
	};
	static const char *const bad[] = { "", ":25", "host",
		"host:", "host:65536", "host:123456", "::1:25", "[::1]25",
		"[::1]:", "[]:25", "[::1:25", "host:+25", "host:-1", "host:25 ",
		"host: 25", "[a[b]:25", "a]:25", "[::1]:25x" };
	static const char full[] = "[::1]:2525";
	char host[64];
	size_t i, n;
	int port;

	(void)state;
	for (i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		port = -1;
		assert_int_equal(
		    config_split_hostport(ok[i].s, host, sizeof(host), &port),
		    0);
		assert_string_equal(host, ok[i].host);
		assert_int_equal(port, ok[i].port);
	}
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		port = -1;
		assert_int_equal(
		    config_split_hostport(bad[i], host, sizeof(host), &port),
		    -EINVAL);
		assert_int_equal(port, -1);
	}
	/* The host must fit, with its NUL. */
	assert_int_equal(config_split_hostport("abcd:1", host, 5, &port), 0);
	assert_int_equal(
	    config_split_hostport("abcde:1", host, 5, &port), -EINVAL);
	assert_int_equal(config_split_hostport(NULL, host, 5, &port), -EINVAL);
	/* Every cut of a valid address, from an exact-size copy: invalid
	 * up to "[::1]:", then ports 2, 25, 252, 2525. */
	for (n = 0; n < sizeof(full) - 1; n++) {
		char *copy = malloc(n + 1);
		int rc;

		assert_non_null(copy);
		memcpy(copy, full, n);
		copy[n] = '\0';
		port = -1;
		rc = config_split_hostport(copy, host, sizeof(host), &port);
		if (n <= 6) {
			assert_int_equal(rc, -EINVAL);
		} else {
			assert_int_equal(rc, 0);
			assert_string_equal(host, "::1");
			assert_int_equal(port, (int)strtol(copy + 6, NULL, 10));
		}
		free(copy);
	}
}

/* A valid file cut at every byte: an error or a config, never a crash. */
static void
test_config_cut(void **state)
{
	struct config c;
	char err[CONFIG_ERR_MAX];
	struct test_file f = { { 0 } };
	size_t n, len = strlen(test_full);
	int rc;

	(void)state;
	for (n = 0; n <= len; n++) {
		test_file_write(&f, test_full, n);
		rc = config_load(&c, f.path, err, sizeof(err));
		test_file_remove(&f);
		if (rc == 0) {
			config_free(&c);
			continue;
		}
		assert_int_equal(rc, -EINVAL);
		assert_memory_equal(err, f.path, strlen(f.path));
		assert_int_equal(err[strlen(f.path)], ':');
	}
}

/* $REDRIVE_SRCDIR/etc/redrive.conf, read into a malloc'd string. */
static char *
test_read_example(char *path, size_t pathlen)
{
	const char *dir = getenv("REDRIVE_SRCDIR");
	FILE *fp;
	char *text;
	long size;

	snprintf(path, pathlen, "%s/etc/redrive.conf",
	    dir != NULL && *dir != '\0' ? dir : ".");
	fp = fopen(path, "r");
	assert_non_null(fp);
	assert_int_equal(fseek(fp, 0, SEEK_END), 0);
	size = ftell(fp);
	assert_true(size > 0);
	rewind(fp);
	text = malloc((size_t)size + 1);
	assert_non_null(text);
	assert_int_equal(fread(text, 1, (size_t)size, fp), (size_t)size);
	text[size] = '\0';
	fclose(fp);
	return text;
}

/*
 * The example loads as it is, and with every "#key = value" line
 * uncommented it still gives exactly the defaults: so every value it
 * documents is the real default.  Every key appears in it.
 */
static void
test_config_example(void **state)
{
	static const char *const keys[] = {
		"[relay]",
		"enabled",
		"listen",
		"hostname",
		"allow",
		"max_message_size",
		"max_recipients",
		"max_connections",
		"timeout",
		"tls_cert",
		"tls_key",
		"auth_users",
		"require_auth",
		"[mailgun]",
		"api_key",
		"domain",
		"api_base",
		"webhook_signing_key",
		"timeout",
		"concurrency",
		"retry_min",
		"retry_max",
		"ca_file",
		"[tracker]",
		"enabled",
		"listen",
		"path",
		"max_body",
		"timestamp_window",
		"reconcile_after",
		"reconcile_interval",
		"reconcile_batch",
		"[retry]",
		"max_attempts",
		"backoff_base",
		"backoff_factor",
		"reasons",
		"codes",
		"never_reasons",
		"never_enhanced",
		"storage_ttl",
		"[alert]",
		"to",
		"from",
		"smtp",
		"smtp_user",
		"smtp_password",
		"smtp_tls",
		"smtp_ca_file",
		"webhook_url",
		"failure_rate",
		"failure_window",
		"failure_min",
		"[store]",
		"path",
		"retention",
		"[log]",
		"level",
	};
	struct config c;
	char err[CONFIG_ERR_MAX];
	char path[512];
	char *text, *uncommented, *p, *q;
	const char *at;
	size_t i, nkeys = 0;
	struct test_file f = { { 0 } };

	(void)state;
	text = test_read_example(path, sizeof(path));
	assert_int_equal(config_load(&c, path, err, sizeof(err)), 0);
	test_assert_defaults(&c);
	config_free(&c);

	/* Every key, in DESIGN.md's order, as "#key =" under its section. */
	at = text;
	for (i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		char want[64];

		if (keys[i][0] == '[')
			snprintf(want, sizeof(want), "\n%s\n", keys[i]);
		else
			snprintf(want, sizeof(want), "\n#%s =", keys[i]);
		at = strstr(at, want);
		if (at == NULL) {
			print_error("etc/redrive.conf: %s missing or out of "
				    "order\n",
			    keys[i]);
			fail();
		}
		at += strlen(want);
	}

	/* Uncomment "#key = value" lines (comments are "# text"). */
	uncommented = malloc(strlen(text) + 1);
	assert_non_null(uncommented);
	for (p = text, q = uncommented; *p != '\0'; p++) {
		if (*p == '#' && (p == text || p[-1] == '\n') && p[1] >= 'a' &&
		    p[1] <= 'z') {
			nkeys++;
			continue;
		}
		*q++ = *p;
	}
	*q = '\0';
	assert_int_equal(nkeys, 51);
	test_file_write(&f, uncommented, strlen(uncommented));
	if (config_load(&c, f.path, err, sizeof(err)) != 0) {
		print_error("uncommented example: %s\n", err);
		fail();
	}
	test_assert_defaults(&c);
	config_free(&c);
	test_file_remove(&f);
	free(uncommented);
	free(text);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_config_defaults, test_setup),
		cmocka_unit_test_setup(test_config_full, test_setup),
		cmocka_unit_test_setup(test_config_bad_values, test_setup),
		cmocka_unit_test_setup(test_config_error_quoting, test_setup),
		cmocka_unit_test_setup(test_config_files, test_setup),
		cmocka_unit_test_setup(test_config_syntax, test_setup),
		cmocka_unit_test_setup(test_config_secrets, test_setup),
		cmocka_unit_test_setup(
		    test_config_secret_not_echoed, test_setup),
		cmocka_unit_test_setup(test_config_env, test_setup),
		cmocka_unit_test_setup(test_config_hostname, test_setup),
		cmocka_unit_test_setup(test_config_parse_size, test_setup),
		cmocka_unit_test_setup(test_config_parse_bool, test_setup),
		cmocka_unit_test_setup(test_config_hostport, test_setup),
		cmocka_unit_test_setup(test_config_cut, test_setup),
		cmocka_unit_test_setup(test_config_example, test_setup),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
