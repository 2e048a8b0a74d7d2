/*
 * reconcile: closes what a lost webhook left open.  Every [tracker]
 * reconcile_interval it asks the store (store_reconcile_due) for messages
 * with a recipient still 'sent' or 'deferred' whose last change is older
 * than [tracker] reconcile_after, at most reconcile_batch of them per
 * round, and looks each up in Mailgun's Events API by its bare Mailgun id
 * (FACTS.md 1.3, 6.8: GET /v3/{domain}/events?message-id=<bare id>,
 * following paging.next until a page has no items).  Each event found is
 * applied through store_event_apply() as if a webhook had brought it,
 * under the token "events-api:<event id>"; an event the webhook already
 * brought is a duplicate there (same event-data.id and name), so nothing
 * is counted twice.  One request at a time, and only while the Mailgun
 * client has a free slot (mailgun_can_send): the forwarder comes first.
 * Each recipient whose state changed is logged.  Loop thread only.
 */
#ifndef REDRIVE_RECONCILE_H
#define REDRIVE_RECONCILE_H

#include <stdbool.h>
#include <stdint.h>

#include <uv.h>

struct config;
struct mailgun;
struct reconcile;
struct store;

/* The most Events API pages read for one message. */
#define RECONCILE_MAX_PAGES 20

/* Counters, for logs, tests and /metrics. */
struct reconcile_stats {
	uint64_t rounds;     /* looks at the store */
	uint64_t lookups;    /* messages looked up in the Events API */
	uint64_t requests;   /* Events API requests answered */
	uint64_t errors;     /* requests or store jobs that failed */
	uint64_t events;     /* events applied (new ones, not duplicates) */
	uint64_t reconciled; /* recipients whose state an event changed */
	uint64_t delivered;  /* of which became delivered */
	uint64_t failed;     /* of which ended failed */
	uint64_t redrives;   /* of which got a re-drive scheduled */
};

/* Tells the re-drive scheduler that an event scheduled a re-drive. */
typedef void (*reconcile_kick_cb)(void *arg);

/*
 * Creates the reconciler on loop; its first round comes one interval after
 * start.  cfg ([tracker] reconcile_*), st and mg (the daemon's Mailgun
 * client) must outlive it.  With reconcile_after 0 or mg NULL it is
 * created idle (*out set, nothing runs).  kick (may be NULL) runs with
 * kick_arg after an applied event scheduled a re-drive.  Returns 0 and
 * *out, or a negative errno code.
 */
int reconcile_new(struct reconcile **out, uv_loop_t *loop,
    const struct config *cfg, struct store *st, struct mailgun *mg,
    reconcile_kick_cb kick, void *kick_arg);

/*
 * Stops: no new round or request starts, the timer closes.  Call it before
 * the Mailgun client and the store close: a request in flight ends when
 * the client closes, store jobs when the store does; the reconciler is
 * freed after the last of these, so the loop must run once more.
 * NULL-safe; a second call is a no-op.
 */
void reconcile_close(struct reconcile *rc);

/* Returns the counters. */
struct reconcile_stats reconcile_stats(const struct reconcile *rc);

#endif
