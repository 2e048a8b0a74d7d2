/*
 * smtp_tls: the relay's STARTTLS engine (RFC 3207).  OpenSSL runs on two
 * memory BIOs: what the session reads from the socket goes into the read
 * BIO, and what OpenSSL wants to send collects in the write BIO, from
 * which the session moves it to the socket.  The session never lets
 * OpenSSL near the file descriptor, so the loop stays libuv's.
 *
 * The context follows current practice for a mail server: TLS 1.2 or
 * newer, the server's cipher order, no TLS compression (CRIME), no
 * renegotiation (a client could make the server burn CPU with it).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "redrive/smtp_tls.h"

struct smtp_tls {
	SSL *ssl;
	BIO *rbio; /* socket -> OpenSSL (owned by ssl) */
	BIO *wbio; /* OpenSSL -> socket (owned by ssl) */
	bool open;
};

/* Writes OpenSSL's oldest queued error after prefix into err; clears. */
static void
smtp_tls_error(char *err, size_t errlen, const char *prefix)
{
	char buf[256];
	unsigned long e = ERR_get_error();

	if (e != 0)
		ERR_error_string_n(e, buf, sizeof(buf));
	else
		snprintf(buf, sizeof(buf), "unknown error");
	if (err != NULL && errlen > 0)
		snprintf(err, errlen, "%s: %s", prefix, buf);
	ERR_clear_error();
}

SSL_CTX *
smtp_tls_ctx_new(const char *cert, const char *key, char *err, size_t errlen)
{
	SSL_CTX *ctx;
	char what[1200];

	ERR_clear_error();
	ctx = SSL_CTX_new(TLS_server_method());
	if (ctx == NULL) {
		smtp_tls_error(err, errlen, "cannot make a TLS context");
		return NULL;
	}
	if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1) {
		smtp_tls_error(err, errlen, "cannot require TLS 1.2");
		goto fail;
	}
	SSL_CTX_set_options(ctx,
	    SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_COMPRESSION |
		SSL_OP_NO_RENEGOTIATION);
	/* The session resumption cache is of little use to an MTA's peers. */
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	/* Nor TLS 1.3 tickets: nothing but replies after the handshake. */
	SSL_CTX_set_num_tickets(ctx, 0);
	if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
		snprintf(what, sizeof(what), "tls_cert %s", cert);
		smtp_tls_error(err, errlen, what);
		goto fail;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
		snprintf(what, sizeof(what), "tls_key %s", key);
		smtp_tls_error(err, errlen, what);
		goto fail;
	}
	if (SSL_CTX_check_private_key(ctx) != 1) {
		snprintf(what, sizeof(what),
		    "tls_key %s does not match tls_cert %s", key, cert);
		smtp_tls_error(err, errlen, what);
		goto fail;
	}
	return ctx;
fail:
	SSL_CTX_free(ctx);
	return NULL;
}

void
smtp_tls_ctx_free(SSL_CTX *ctx)
{
	SSL_CTX_free(ctx);
}

struct smtp_tls *
smtp_tls_new(SSL_CTX *ctx)
{
	struct smtp_tls *t = calloc(1, sizeof(*t));

	if (t == NULL)
		return NULL;
	t->ssl = SSL_new(ctx);
	t->rbio = BIO_new(BIO_s_mem());
	t->wbio = BIO_new(BIO_s_mem());
	if (t->ssl == NULL || t->rbio == NULL || t->wbio == NULL) {
		BIO_free(t->rbio);
		BIO_free(t->wbio);
		SSL_free(t->ssl);
		free(t);
		ERR_clear_error();
		return NULL;
	}
	/* An empty read BIO says "retry", not EOF. */
	BIO_set_mem_eof_return(t->rbio, -1);
	SSL_set_bio(t->ssl, t->rbio, t->wbio);
	SSL_set_accept_state(t->ssl);
	return t;
}

void
smtp_tls_free(struct smtp_tls *t)
{
	if (t == NULL)
		return;
	SSL_free(t->ssl); /* frees both BIOs */
	free(t);
}

int
smtp_tls_feed(
    struct smtp_tls *t, const char *p, size_t n, char *err, size_t errlen)
{
	int rc, e;

	if (n > 0 && BIO_write(t->rbio, p, (int)n) != (int)n) {
		smtp_tls_error(err, errlen, "cannot buffer TLS input");
		return SMTP_TLS_ERROR;
	}
	if (t->open)
		return SMTP_TLS_OPEN;
	ERR_clear_error();
	rc = SSL_do_handshake(t->ssl);
	if (rc == 1) {
		t->open = true;
		return SMTP_TLS_DONE;
	}
	e = SSL_get_error(t->ssl, rc);
	if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
		return SMTP_TLS_AGAIN;
	smtp_tls_error(err, errlen, "handshake failed");
	return SMTP_TLS_ERROR;
}

long
smtp_tls_read(struct smtp_tls *t, char *buf, size_t buflen)
{
	int rc, e;

	if (!t->open)
		return 0;
	ERR_clear_error();
	rc = SSL_read(t->ssl, buf, (int)(buflen > 65536 ? 65536 : buflen));
	if (rc > 0)
		return rc;
	e = SSL_get_error(t->ssl, rc);
	if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
		return 0;
	ERR_clear_error();
	return -1;
}

int
smtp_tls_write(struct smtp_tls *t, const char *p, size_t n)
{
	int rc;

	if (!t->open)
		return -1;
	if (n == 0)
		return 0;
	ERR_clear_error();
	/* A memory BIO takes everything: one call writes it all. */
	rc = SSL_write(t->ssl, p, (int)n);
	if (rc != (int)n) {
		ERR_clear_error();
		return -1;
	}
	return 0;
}

size_t
smtp_tls_pending_out(struct smtp_tls *t, char *buf, size_t buflen)
{
	int rc;

	if (BIO_ctrl_pending(t->wbio) == 0)
		return 0;
	rc = BIO_read(t->wbio, buf, (int)(buflen > 65536 ? 65536 : buflen));
	return rc > 0 ? (size_t)rc : 0;
}

bool
smtp_tls_is_open(const struct smtp_tls *t)
{
	return t->open;
}

void
smtp_tls_describe(const struct smtp_tls *t, char *buf, size_t buflen)
{
	snprintf(buf, buflen, "%s %s", SSL_get_version(t->ssl),
	    SSL_get_cipher_name(t->ssl));
}
