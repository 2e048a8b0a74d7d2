/*
 * store_events: what the tracker asks of the store, as jobs of the store
 * thread (core/store_events.c): record a verified webhook event with its
 * token, correlate it with a message and recipient, move the recipient's
 * state by the event's own timestamp, and schedule or give up a re-drive
 * under the retry policy.  All in one transaction with the token, so a
 * token is remembered only when its event is committed.
 */
#ifndef REDRIVE_STORE_EVENTS_H
#define REDRIVE_STORE_EVENTS_H

#include <stdbool.h>
#include <stdint.h>

#include "redrive/policy.h"
#include "redrive/webhook.h"

struct config;
struct store;

enum store_event_outcome {
	STORE_EVENT_RECORDED = 0, /* committed: 200 */
	STORE_EVENT_DUPLICATE,    /* token known, same event: 200, no change */
	STORE_EVENT_MISMATCH,     /* token known, other event data: 401 */
	STORE_EVENT_UNKNOWN,      /* no message matches: 200, ignored */
};

struct store_event_result {
	enum store_event_outcome outcome;
	int64_t message_id;     /* 0 when unknown */
	int64_t recipient_id;   /* 0 when no recipient matched */
	char status[16];        /* the recipient's status afterwards */
	enum policy_decision decision;
	int64_t next_attempt_at; /* ms, when a re-drive was scheduled */
	bool gave_up;           /* the recipient ended failed */
	char why[256];          /* the policy's reason, for logs */
};

/*
 * Called on the loop thread once the transaction has committed (status 0)
 * or failed (negative errno: the tracker answers 503).
 */
typedef void (*store_event_cb)(int status, const struct store_event_result *r,
    void *arg);

/*
 * Queues ev for the store thread.  ev and cfg must stay valid until cb
 * runs.  now: the arrival time (ms).  Returns 0 or a negative errno.
 */
int store_event_apply(struct store *st, const struct webhook_event *ev,
    const struct config *cfg, int64_t now, store_event_cb cb, void *arg);

#endif
