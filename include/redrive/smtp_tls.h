/*
 * smtp_tls: STARTTLS for the relay (RFC 3207) with OpenSSL memory BIOs, so
 * that the session keeps doing its own socket I/O on the libuv stream.
 * The server context is made once at start; each session that says
 * STARTTLS gets a struct smtp_tls.  No I/O here: the session hands in the
 * bytes it read and writes out what smtp_tls_pending_out() yields.
 * Loop thread only.
 */
#ifndef REDRIVE_SMTP_TLS_H
#define REDRIVE_SMTP_TLS_H

#include <stdbool.h>
#include <stddef.h>

#include <openssl/ssl.h>

struct smtp_tls;

/*
 * Makes the server context from PEM files cert (a chain) and key: TLS 1.2
 * at least, the server's cipher order, no compression, no renegotiation.
 * Returns it, or NULL with the reason (file and OpenSSL's text) in err.
 */
SSL_CTX *smtp_tls_ctx_new(
    const char *cert, const char *key, char *err, size_t errlen);

/* Frees the context (NULL-safe). */
void smtp_tls_ctx_free(SSL_CTX *ctx);

/* A server-side TLS connection in accept state, or NULL. */
struct smtp_tls *smtp_tls_new(SSL_CTX *ctx);

/* Frees it (NULL-safe). */
void smtp_tls_free(struct smtp_tls *t);

/* Results of smtp_tls_feed(). */
enum smtp_tls_rc {
	SMTP_TLS_AGAIN = 0,  /* handshake under way, more input needed */
	SMTP_TLS_DONE = 1,   /* the handshake finished in this call */
	SMTP_TLS_OPEN = 2,   /* the handshake had finished before */
	SMTP_TLS_ERROR = -1, /* a fatal TLS error; close */
};

/*
 * Hands n bytes read from the socket to the TLS engine and drives the
 * handshake.  Returns enum smtp_tls_rc; on SMTP_TLS_ERROR the reason is
 * in err.  Output for the peer may be pending afterwards in every case.
 */
int smtp_tls_feed(
    struct smtp_tls *t, const char *p, size_t n, char *err, size_t errlen);

/*
 * Reads decrypted application data into buf once the handshake is done.
 * Returns the bytes read, 0 when none is buffered, or -1 on a fatal error
 * (a close_notify from the peer included).
 */
long smtp_tls_read(struct smtp_tls *t, char *buf, size_t buflen);

/* Encrypts n bytes of application data.  Returns 0 or -1. */
int smtp_tls_write(struct smtp_tls *t, const char *p, size_t n);

/*
 * Moves at most buflen bytes that must go to the socket into buf; returns
 * the count (0 when nothing is pending).
 */
size_t smtp_tls_pending_out(struct smtp_tls *t, char *buf, size_t buflen);

/* True once the handshake has finished. */
bool smtp_tls_is_open(const struct smtp_tls *t);

/* The protocol and cipher ("TLSv1.3 TLS_AES_256_GCM_SHA384") for logs. */
void smtp_tls_describe(const struct smtp_tls *t, char *buf, size_t buflen);

#endif
