/*
 * redrive: the re-drive scheduler of the tracker.  The schedule is durable:
 * it lives in the store (recipients in status 'retrying' with their
 * next_attempt_at, written by store_event_apply() under the retry policy,
 * or by `redrive retry`), so a restart keeps it.  One uv_timer_t wakes at
 * the earliest due time, and at least every REDRIVE_TICK_MS so that a
 * change made behind the daemon's back (`redrive retry`) is seen without a
 * restart.  For each due recipient (DESIGN.md "Data flow", FACTS.md 2):
 *
 *  - while Mailgun still keeps its stored copy (a storage URL is known and
 *    now < first acceptance + [retry] storage_ttl), POST the storage URL
 *    with to=<recipient> (mailgun_resend) and record the answer as a send
 *    via 'storage': accepted -> 'sent' with the new Mailgun id; 404 or any
 *    other rejection (the stored copy is gone) -> requeued for the spooled
 *    copy; 420/429/5xx/transport errors -> tried again after the
 *    forwarder's backoff; 401/403 (PAUSE) -> tried again after retry_max,
 *    no storage resend meanwhile;
 *  - otherwise (no storage URL, past storage_ttl, a URL the client refuses,
 *    or no Mailgun client) requeue it at once: the forwarder sends the
 *    spooled copy through messages.mime, and kick() tells it so.
 *
 * Each re-drive is logged at info level.  Loop thread only.
 */
#ifndef REDRIVE_REDRIVE_H
#define REDRIVE_REDRIVE_H

#include <stdbool.h>
#include <stdint.h>

#include <uv.h>

struct config;
struct mailgun;
struct redrive;
struct store;

/* The longest the scheduler sleeps without looking at the schedule. */
#define REDRIVE_TICK_MS 2000

/* Counters, for logs, tests and /metrics. */
struct redrive_stats {
	uint64_t checks;    /* looks at the schedule */
	uint64_t resent;    /* storage resends Mailgun accepted */
	uint64_t gone;	    /* storage copies found gone (404, rejected) */
	uint64_t requeued;  /* recipients handed to the forwarder */
	uint64_t retried;   /* storage resends to be tried again */
	uint64_t paused;    /* storage resends answered 401/403 */
	uint64_t retrying;  /* retrying recipients at the last look */
	unsigned in_flight; /* storage resends at Mailgun now */
};

/* Tells the forwarder that a recipient was requeued (forward_kick). */
typedef void (*redrive_kick_cb)(void *arg);

/*
 * Creates the scheduler on loop and looks at the schedule at once.  cfg
 * ([retry] storage_ttl, [mailgun] retry_min and retry_max), st and mg
 * (the daemon's one Mailgun client, shared with the forwarder; NULL: no
 * storage resends, every re-drive goes through the spooled copy) must
 * outlive it.  kick (may be NULL) runs with kick_arg after a recipient was
 * requeued.  Returns 0 and *out, or a negative errno code (logged).
 */
int redrive_new(struct redrive **out, uv_loop_t *loop, const struct config *cfg,
    struct store *st, struct mailgun *mg, redrive_kick_cb kick, void *kick_arg);

/*
 * Looks at the schedule now (e.g. after an event scheduled a re-drive).
 * NULL-safe.
 */
void redrive_kick(struct redrive *rd);

/*
 * Stops: no new re-drive starts and the timer closes.  Call it before
 * the Mailgun client and the store are closed: resends in flight end when
 * the client closes (cancelled: nothing is recorded, the recipient stays
 * due) and their records, like every store job submitted, complete when
 * the store closes.  The scheduler is freed after the last of these, so
 * the loop must run once more.  NULL-safe; a second call is a no-op.
 */
void redrive_close(struct redrive *rd);

/* Returns the counters. */
struct redrive_stats redrive_stats(const struct redrive *rd);

#endif
