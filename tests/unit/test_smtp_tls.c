/*
 * Unit tests for relay/smtp_tls.c: the memory-BIO engine against an
 * OpenSSL client in the same process (a self-signed certificate made
 * here): the handshake fed in pieces, data both ways, the TLS 1.2 floor,
 * garbage instead of a ClientHello, and context errors (missing files, a
 * key that does not match).
 */
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
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "redrive/smtp_tls.h"

struct test_files {
	char cert[64];
	char key[64];
	char key2[64]; /* another key */
};

static struct test_files test_f;

/* Writes a fresh EC key to path; returns it. */
static EVP_PKEY *
test_key(const char *path)
{
	EVP_PKEY *k = EVP_EC_gen("P-256");
	FILE *fp;

	assert_non_null(k);
	fp = fopen(path, "w");
	assert_non_null(fp);
	assert_int_equal(
	    PEM_write_PrivateKey(fp, k, NULL, NULL, 0, NULL, NULL), 1);
	fclose(fp);
	return k;
}

static int
test_setup(void **state)
{
	EVP_PKEY *k;
	X509 *x;
	FILE *fp;
	char dir[] = "/tmp/test_smtp_tls.XXXXXX";

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(test_f.cert, sizeof(test_f.cert), "%s/cert.pem", dir);
	snprintf(test_f.key, sizeof(test_f.key), "%s/key.pem", dir);
	snprintf(test_f.key2, sizeof(test_f.key2), "%s/key2.pem", dir);
	k = test_key(test_f.key);
	EVP_PKEY_free(test_key(test_f.key2));
	x = X509_new();
	assert_non_null(x);
	X509_set_version(x, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
	X509_gmtime_adj(X509_getm_notBefore(x), -60);
	X509_gmtime_adj(X509_getm_notAfter(x), 3600);
	X509_set_pubkey(x, k);
	X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
	    (const unsigned char *)"redrive.test", -1, -1, 0);
	X509_set_issuer_name(x, X509_get_subject_name(x));
	assert_true(X509_sign(x, k, EVP_sha256()) > 0);
	fp = fopen(test_f.cert, "w");
	assert_non_null(fp);
	assert_int_equal(PEM_write_X509(fp, x), 1);
	fclose(fp);
	X509_free(x);
	EVP_PKEY_free(k);
	return 0;
}

static int
test_teardown(void **state)
{
	char dir[64];

	(void)state;
	unlink(test_f.cert);
	unlink(test_f.key);
	unlink(test_f.key2);
	snprintf(dir, sizeof(dir), "%s", test_f.cert);
	*strrchr(dir, '/') = '\0';
	rmdir(dir);
	return 0;
}

/* A client SSL on memory BIOs; *in is what it reads, *out what it wrote. */
struct test_client {
	SSL_CTX *ctx;
	SSL *ssl;
	BIO *in;
	BIO *out;
};

static void
test_client_init(struct test_client *c, int max_version)
{
	c->ctx = SSL_CTX_new(TLS_client_method());
	assert_non_null(c->ctx);
	if (max_version != 0) {
		/* Whatever the system's openssl.cnf says: offer old ones. */
		SSL_CTX_set_min_proto_version(c->ctx, TLS1_VERSION);
		SSL_CTX_set_max_proto_version(c->ctx, max_version);
	}
	/* TLS 1.1 needs the lowest security level to be tried at all. */
	SSL_CTX_set_security_level(c->ctx, 0);
	SSL_CTX_set_cipher_list(c->ctx, "DEFAULT:@SECLEVEL=0");
	c->ssl = SSL_new(c->ctx);
	c->in = BIO_new(BIO_s_mem());
	c->out = BIO_new(BIO_s_mem());
	BIO_set_mem_eof_return(c->in, -1);
	BIO_set_mem_eof_return(c->out, -1);
	SSL_set_bio(c->ssl, c->in, c->out);
	SSL_set_connect_state(c->ssl);
}

static void
test_client_free(struct test_client *c)
{
	SSL_free(c->ssl);
	SSL_CTX_free(c->ctx);
}

/* Moves client output to the server, fed one byte at a time if slow. */
static int
test_to_server(struct test_client *c, struct smtp_tls *t, bool slow)
{
	char buf[16384], err[256];
	int n, i, rc = SMTP_TLS_AGAIN, r;

	while ((n = BIO_read(c->out, buf, sizeof(buf))) > 0) {
		if (!slow)
			return smtp_tls_feed(
			    t, buf, (size_t)n, err, sizeof(err));
		for (i = 0; i < n; i++) {
			r = smtp_tls_feed(t, buf + i, 1, err, sizeof(err));
			if (r != SMTP_TLS_AGAIN)
				rc = r;
			if (r == SMTP_TLS_ERROR)
				return r;
		}
	}
	return rc;
}

static void
test_to_client(struct test_client *c, struct smtp_tls *t)
{
	char buf[16384];
	size_t n;

	while ((n = smtp_tls_pending_out(t, buf, sizeof(buf))) > 0)
		assert_int_equal(BIO_write(c->in, buf, (int)n), (int)n);
}

/* What test_handshake returns when the client gave up first. */
#define TEST_CLIENT_ERROR (-2)

/* Runs the handshake; returns the last smtp_tls_feed result. */
static int
test_handshake(struct test_client *c, struct smtp_tls *t, bool slow)
{
	int i, rc = SMTP_TLS_AGAIN, crc, cerr;

	for (i = 0; i < 20; i++) {
		crc = SSL_do_handshake(c->ssl);
		/* Before the BIOs are touched again (they hold the reason). */
		cerr = crc == 1 ? SSL_ERROR_NONE : SSL_get_error(c->ssl, crc);
		rc = test_to_server(c, t, slow);
		if (rc == SMTP_TLS_ERROR)
			return rc;
		test_to_client(c, t);
		if (crc == 1 && smtp_tls_is_open(t))
			return SMTP_TLS_DONE;
		if (cerr != SSL_ERROR_NONE && cerr != SSL_ERROR_WANT_READ)
			return TEST_CLIENT_ERROR;
	}
	return rc;
}

static void
test_roundtrip(bool slow)
{
	char err[256], buf[256], desc[128];
	struct test_client c;
	struct smtp_tls *t;
	SSL_CTX *ctx;
	long n;

	ctx = smtp_tls_ctx_new(test_f.cert, test_f.key, err, sizeof(err));
	if (ctx == NULL)
		fail_msg("%s", err);
	t = smtp_tls_new(ctx);
	assert_non_null(t);
	assert_false(smtp_tls_is_open(t));
	/* Nothing can be written before the handshake. */
	assert_int_equal(smtp_tls_write(t, "x", 1), -1);
	assert_int_equal(smtp_tls_read(t, buf, sizeof(buf)), 0);
	test_client_init(&c, 0);
	assert_int_equal(test_handshake(&c, t, slow), SMTP_TLS_DONE);
	assert_true(smtp_tls_is_open(t));
	smtp_tls_describe(t, desc, sizeof(desc));
	assert_non_null(strstr(desc, "TLSv1.3"));
	/* Client to server. */
	assert_int_equal(SSL_write(c.ssl, "EHLO x\r\n", 8), 8);
	assert_int_equal(test_to_server(&c, t, slow), SMTP_TLS_OPEN);
	n = smtp_tls_read(t, buf, sizeof(buf));
	assert_int_equal(n, 8);
	assert_memory_equal(buf, "EHLO x\r\n", 8);
	assert_int_equal(smtp_tls_read(t, buf, sizeof(buf)), 0);
	/* Server to client. */
	assert_int_equal(smtp_tls_write(t, "250 ok\r\n", 8), 0);
	test_to_client(&c, t);
	assert_int_equal(SSL_read(c.ssl, buf, sizeof(buf)), 8);
	assert_memory_equal(buf, "250 ok\r\n", 8);
	/* close_notify from the client: a read error for the server. */
	SSL_shutdown(c.ssl);
	test_to_server(&c, t, false);
	assert_int_equal(smtp_tls_read(t, buf, sizeof(buf)), -1);
	test_client_free(&c);
	smtp_tls_free(t);
	smtp_tls_ctx_free(ctx);
}

static void
test_handshake_whole(void **state)
{
	(void)state;
	test_roundtrip(false);
}

static void
test_handshake_bytewise(void **state)
{
	(void)state;
	test_roundtrip(true);
}

static void
test_old_tls_refused(void **state)
{
	char err[256];
	struct test_client c;
	struct smtp_tls *t;
	SSL_CTX *ctx;

	(void)state;
	ctx = smtp_tls_ctx_new(test_f.cert, test_f.key, err, sizeof(err));
	assert_non_null(ctx);
	t = smtp_tls_new(ctx);
	test_client_init(&c, TLS1_1_VERSION);
	assert_int_equal(test_handshake(&c, t, false), SMTP_TLS_ERROR);
	assert_false(smtp_tls_is_open(t));
	test_client_free(&c);
	smtp_tls_free(t);
	smtp_tls_ctx_free(ctx);
}

static void
test_garbage_refused(void **state)
{
	static const char junk[] = "NOOP\r\nMAIL FROM:<a@b>\r\n";
	char err[256] = "";
	struct smtp_tls *t;
	SSL_CTX *ctx;

	(void)state;
	ctx = smtp_tls_ctx_new(test_f.cert, test_f.key, err, sizeof(err));
	assert_non_null(ctx);
	t = smtp_tls_new(ctx);
	assert_int_equal(
	    smtp_tls_feed(t, junk, sizeof(junk) - 1, err, sizeof(err)),
	    SMTP_TLS_ERROR);
	assert_non_null(strstr(err, "handshake failed"));
	smtp_tls_free(t);
	smtp_tls_ctx_free(ctx);
}

static void
test_ctx_errors(void **state)
{
	char err[512];

	(void)state;
	assert_null(smtp_tls_ctx_new(
	    "/nonexistent/cert.pem", test_f.key, err, sizeof(err)));
	assert_non_null(strstr(err, "tls_cert /nonexistent/cert.pem"));
	assert_null(smtp_tls_ctx_new(
	    test_f.cert, "/nonexistent/key.pem", err, sizeof(err)));
	assert_non_null(strstr(err, "tls_key /nonexistent/key.pem"));
	assert_null(
	    smtp_tls_ctx_new(test_f.cert, test_f.key2, err, sizeof(err)));
	assert_non_null(strstr(err, test_f.key2));
	/* The key in place of the certificate. */
	assert_null(smtp_tls_ctx_new(test_f.key, test_f.key, err, sizeof(err)));
	assert_non_null(strstr(err, "tls_cert"));
	smtp_tls_ctx_free(NULL);
	smtp_tls_free(NULL);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_handshake_whole),
		cmocka_unit_test(test_handshake_bytewise),
		cmocka_unit_test(test_old_tls_refused),
		cmocka_unit_test(test_garbage_refused),
		cmocka_unit_test(test_ctx_errors),
	};

	return cmocka_run_group_tests(tests, test_setup, test_teardown);
}
