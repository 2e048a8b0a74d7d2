/*
 * smtp_server: the relay's SMTP listener and its sessions (RFC 5321).
 * The listener accepts connections on the loop, refuses clients outside
 * the allow list and connections past max_connections, and runs one
 * struct smtp_session per client (relay/smtp_session.c), each an explicit
 * state machine with a command table.  Messages are stored through the
 * store's group commit before "250 ... queued as <id>" is said.
 * Loop thread only.
 */
#ifndef REDRIVE_SMTP_SERVER_H
#define REDRIVE_SMTP_SERVER_H

#include <stdbool.h>
#include <stdint.h>

#include <uv.h>

#include "redrive/metrics.h"

struct config;
struct store;
struct smtp_server;

/* Counters for logs, tests and /metrics. */
struct smtp_server_stats {
	uint64_t connections; /* accepted and served */
	uint64_t refused;     /* outside allow, or over max_connections */
	uint64_t messages;    /* stored and acknowledged with 250 */
	uint64_t rejected;    /* DATA answered with an error */
	unsigned active;      /* sessions open now */
	/* From MAIL to the 250/4xx/5xx that ends the data. */
	struct metrics_histogram txn_seconds;
};

/*
 * Called once per stored message after its 250 was queued, so that the
 * forwarder can look at the queue.  id is the local id.
 */
typedef void (*smtp_server_stored_cb)(int64_t id, void *arg);

/*
 * Starts listening on cfg->relay.listen.  cfg and st must outlive the
 * server.  Returns 0 and *out, or a negative errno code (the reason is
 * logged).
 */
int smtp_server_start(struct smtp_server **out, uv_loop_t *loop,
    const struct config *cfg, struct store *st);

/* Sets the callback run after each stored message (may be NULL). */
void smtp_server_on_stored(
    struct smtp_server *srv, smtp_server_stored_cb cb, void *arg);

/*
 * Stops accepting, answers 421 to idle sessions and closes them, lets a
 * transaction in DATA or waiting for its commit finish (at most grace_ms),
 * then closes everything; done(arg) runs on the loop once the last handle
 * is closed, and the server is freed right after done returns.
 */
void smtp_server_shutdown(struct smtp_server *srv, int64_t grace_ms,
    void (*done)(void *arg), void *arg);

/* Returns the counters. */
struct smtp_server_stats smtp_server_stats(const struct smtp_server *srv);

/* The port actually bound (for listen = ...:0 in tests). */
int smtp_server_port(const struct smtp_server *srv);

#endif
