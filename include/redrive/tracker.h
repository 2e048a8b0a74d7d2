/*
 * tracker: the webhook side of the daemon.  It serves [tracker] listen
 * through http_server, verifies and parses Mailgun's webhooks (webhook.c),
 * records them through the store (store_events.c) and answers as DESIGN.md
 * "Webhooks" says: 200 recorded / duplicate / ignored, 401 bad signature,
 * stale timestamp or a reused token with other data, 400 malformed, 413 too
 * large, 404/405 wrong path or method, 503 when the store cannot commit.
 * It also answers GET /healthz (JSON: store writable, forwarder running
 * or paused and why; 503 when the store cannot commit) and GET /metrics
 * (Prometheus text format, core/metrics.c).  Loop thread only.
 */
#ifndef REDRIVE_TRACKER_H
#define REDRIVE_TRACKER_H

#include <stdint.h>

#include <uv.h>

struct config;
struct metrics_registry;
struct store;
struct tracker;

/* Answers by class, for logs, tests and /metrics. */
struct tracker_stats {
	uint64_t answers[6]; /* index: 0 other, 1 200, 2 400, 3 401, 4 404/405,
				5 503 */
	uint64_t recorded;
	uint64_t duplicates;
	uint64_t ignored;
	uint64_t redrives_scheduled;
	uint64_t gave_up;
	uint64_t delivered;  /* recipients an event made delivered */
	uint64_t not_found;  /* answers 404 (also counted in answers[4]) */
	uint64_t bad_method; /* answers 405 (also counted in answers[4]) */
	uint64_t too_large;  /* 413, answered by the HTTP server itself */
	uint64_t refused;    /* other refusals of the HTTP server (400, 408,
				414, 431, ...) */
};

/*
 * Starts the tracker on cfg->tracker.listen.  cfg, st and reg (where
 * GET /metrics and GET /healthz read the other modules' state; may be
 * NULL: they are reported off) must outlive it.  Returns 0 and *out or a
 * negative errno code (logged).
 */
int tracker_start(struct tracker **out, uv_loop_t *loop,
    const struct config *cfg, struct store *st,
    const struct metrics_registry *reg);

/*
 * Stops listening and closes connections; requests waiting for the store
 * are answered nowhere (Mailgun retries them).  done(arg) runs when every
 * handle is closed and no store request is outstanding; the tracker is
 * freed right after.
 */
void tracker_shutdown(struct tracker *t, void (*done)(void *arg), void *arg);

/* The counters. */
struct tracker_stats tracker_stats(const struct tracker *t);

/* The port actually bound. */
int tracker_port(const struct tracker *t);

#endif
