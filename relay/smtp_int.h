/*
 * smtp_int: what the relay's listener (smtp_server.c) and its sessions
 * (smtp_session.c) share, and nobody else sees.
 */
#ifndef REDRIVE_SMTP_INT_H
#define REDRIVE_SMTP_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>
#include <uv.h>

#include "redrive/smtp_server.h"

struct config;
struct store;
struct smtp_session;
struct smtp_auth_users;

/* Bytes one read may bring; the buffer is shared by every session. */
#define SMTP_READ_BUF (64 * 1024)

struct smtp_server {
	uv_loop_t *loop;
	uv_tcp_t listener;
	uv_timer_t grace;
	const struct config *cfg;
	struct store *store;
	SSL_CTX *tls_ctx;	       /* STARTTLS offered when set */
	struct smtp_auth_users *users; /* AUTH offered when set */
	struct smtp_session *sessions; /* every open session object */
	unsigned nopen;		       /* objects in the list */
	unsigned nactive;	       /* sessions being served */
	uint64_t next_id;
	struct smtp_server_stats stats;
	smtp_server_stored_cb stored_cb;
	void *stored_arg;
	bool shutting_down;
	bool listener_closed;
	bool grace_started;
	void (*done)(void *arg);
	void *done_arg;
	int port;
	char readbuf[SMTP_READ_BUF];
};

/*
 * Creates a session for a connection the listener has initialised in
 * *tcp's place: the session owns it from here on.  Greets, refuses (allow
 * list, connection cap, shutdown) or starts reading.  Returns 0 or a
 * negative errno code (then nothing was allocated and the caller closes).
 */
int smtp_session_accept(struct smtp_server *srv);

/*
 * File descriptors a session may not take: below RLIMIT_NOFILE by this
 * many, new clients are refused with 421 (the store, the forwarder and
 * the tracker keep theirs).
 */
unsigned smtp_session_fd_reserve(const struct config *cfg);

/*
 * Tells a session that the daemon stops: an idle one answers 421 and
 * closes; one in DATA or waiting for its commit finishes its transaction
 * first.  force closes it whatever it is doing (the grace period is over).
 */
void smtp_session_shutdown(struct smtp_session *s, bool force);

/* The next session in the server's list (for walking it). */
struct smtp_session *smtp_session_next(struct smtp_session *s);

/* Called by a session when its last handle is closed, before it is freed. */
void smtp_server_session_gone(struct smtp_server *srv, struct smtp_session *s);

#endif
