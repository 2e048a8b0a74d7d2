/*
 * forward: the forwarder.  It takes queued messages from the store, oldest
 * first, and POSTs each to Mailgun's messages.mime (one request per
 * message and per 1000 recipients), keeping at most [mailgun] concurrency
 * requests in flight; it records every answer in the store: accepted
 * recipients become 'sent' with Mailgun's id, 420/429/5xx/timeouts are
 * retried with backoff (retry_min doubling up to retry_max, plus up to 10%
 * jitter, never before Mailgun's "try again after"), other 4xx fail the
 * recipients, and 401/403/404 "Domain not found" or a 200 that is not
 * Mailgun's pause all forwarding until a probe every retry_max succeeds.
 * docs/forwarding.md tells the whole story.  Loop thread only.
 */
#ifndef REDRIVE_FORWARD_H
#define REDRIVE_FORWARD_H

#include <stdbool.h>
#include <stdint.h>

#include <uv.h>

struct config;
struct store;
struct forward;
struct mailgun;

/* The longest pause reason kept (Mailgun's text, cut). */
#define FORWARD_REASON_MAX 256

/* Counters and state, for logs, tests and /metrics. */
struct forward_stats {
	uint64_t requests; /* requests answered (or failed in transport) */
	uint64_t sent;	   /* recipients Mailgun accepted */
	uint64_t failed;   /* recipients failed by a rejection */
	uint64_t retried;  /* requests to be retried (RETRY answers) */
	uint64_t pauses;   /* times forwarding was paused */
	bool paused;
	int pause_status; /* the HTTP status that paused it; 0 */
	char pause_reason[FORWARD_REASON_MAX]; /* Mailgun's text; "" */
	int64_t held_until; /* ms: rate-limit hold of the whole domain; 0 */
	uint64_t queued;    /* queued recipients at the last look */
	unsigned in_flight; /* requests in flight now */
};

/*
 * Creates the forwarder and its Mailgun client from cfg ([mailgun]
 * api_key, domain, api_base, ca_file, timeout, concurrency, retry_min,
 * retry_max) on loop, reading and writing through st.  It looks at the
 * queue at once (queued messages left by an earlier run are picked up).
 * cfg and st must outlive it.  Returns 0 and *out, or a negative errno
 * code with the reason logged (-EINVAL without an api_key or a domain).
 */
int forward_new(struct forward **out, uv_loop_t *loop, const struct config *cfg,
    struct store *st);

/*
 * Tells the forwarder the queue may have grown (a message was stored):
 * it looks at the queue now unless it is paused, held by a rate limit or
 * already at its concurrency.  NULL-safe.
 */
void forward_kick(struct forward *fw);

/*
 * Stops: cancels the requests in flight (their messages stay queued and
 * nothing is recorded for them), closes the Mailgun client and the timer.
 * Store jobs already submitted still complete (store_close runs them); the
 * forwarder is freed once they have and its handles are closed, so the
 * loop must run once more and the store must be closed after this.
 * NULL-safe; a second call is a no-op.
 */
void forward_close(struct forward *fw);

/*
 * A pause (a 401/403, "Domain not found", a 200 that is not Mailgun's)
 * calls cb once per pause episode, on the loop thread, with the HTTP
 * status and Mailgun's text: the alerter raises its 'auth' alert there.
 * cb NULL removes the hook.  NULL-safe.
 */
typedef void (*forward_pause_cb)(
    int http_status, const char *reason, void *arg);
void forward_on_pause(struct forward *fw, forward_pause_cb cb, void *arg);

/* Returns the counters. */
struct forward_stats forward_stats(const struct forward *fw);

/*
 * The forwarder's Mailgun client, which the re-drive scheduler shares (one
 * connection pool, one concurrency limit); NULL once closing.
 */
struct mailgun *forward_mailgun(const struct forward *fw);

/*
 * The delay before retrying a message after its k-th consecutive failed
 * request (k >= 1): min(max_ms, min_ms * 2^(k-1)), plus jitter of
 * rnd % (delay / 10 + 1) (up to 10%).  Pure; exposed for tests.
 */
int64_t forward_backoff_ms(
    int64_t min_ms, int64_t max_ms, unsigned k, uint64_t rnd);

#endif
