/*
 * retention: the daemon applies [store] retention on its own.  A store job
 * runs at start and then every RETENTION_INTERVAL_MS: it deletes the
 * finished messages (every recipient delivered or failed) received longer
 * than retention ago, with their bodies, recipients, sends and events, in
 * batches of STORE_PURGE_BATCH per job until none is left, and the webhook
 * tokens older than both retention and [tracker] timestamp_window.  A
 * message that is not final is never deleted.  Each run that deleted
 * something logs one info line with the counts.  Loop thread only.
 */
#ifndef REDRIVE_RETENTION_H
#define REDRIVE_RETENTION_H

#include <stdint.h>

#include <uv.h>

struct config;
struct retention;
struct store;

/* How often retention runs after the first run at start. */
#define RETENTION_INTERVAL_MS 3600000ULL

/* Counters, for tests and logs. */
struct retention_stats {
	uint64_t runs;	   /* runs finished (all batches done or failed) */
	uint64_t messages; /* messages deleted in all */
	uint64_t tokens;   /* webhook tokens deleted in all */
	uint64_t failures; /* jobs that failed */
};

/*
 * Creates the retention timer on loop and starts the first run at once.
 * cfg ([store] retention, [tracker] timestamp_window) and st must outlive
 * it.
 * Returns 0 and *out, or a negative errno code (logged).
 */
int retention_new(struct retention **out, uv_loop_t *loop,
    const struct config *cfg, struct store *st);

/* Returns the counters.  NULL-safe (zeros). */
struct retention_stats retention_stats(const struct retention *r);

/*
 * Stops: no new job starts and the timer closes.  Call it before the
 * store closes; a job in flight completes when the store closes, and the
 * struct is freed after the last of these, so the loop must run once
 * more.  NULL-safe; a second call is a no-op.
 */
void retention_close(struct retention *r);

#endif
