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
#include "redrive/store.h"
#include "redrive/webhook.h"

struct config;

enum store_event_outcome {
	STORE_EVENT_RECORDED = 0, /* committed: 200 */
	STORE_EVENT_DUPLICATE,	  /* token known, same event: 200, no change;
				     or the event (its event-data.id and
				     name) is recorded already under another
				     token: 200, only that token is added */
	STORE_EVENT_MISMATCH,	  /* token known, other event data: 401 */
	STORE_EVENT_UNKNOWN,	  /* no message matches: 200, ignored */
	STORE_EVENT_EARLY,	  /* its send is not recorded yet: 503, retry */
	STORE_EVENT_OTHER_COPY,	  /* about a copy whose acceptance was never
				     recorded (its answer was lost, the
				     message was sent again and that send
				     recorded): 200, the event is kept, the
				     state does not change */
};

struct store_event_result {
	enum store_event_outcome outcome;
	int64_t message_id;   /* 0 when unknown */
	int64_t recipient_id; /* 0 when no recipient matched */
	char status[16];      /* the recipient's status afterwards */
	enum policy_decision decision;
	int64_t next_attempt_at; /* ms, when a re-drive was scheduled */
	bool gave_up;		 /* the recipient ended failed */
	char why[256];		 /* the policy's reason, for logs */
	bool changed;		 /* the event moved the recipient's state */
};

/*
 * Called on the loop thread once the transaction has committed (status 0)
 * or failed (negative errno: the tracker answers 503).
 */
typedef void (*store_event_cb)(
    int status, const struct store_event_result *r, void *arg);

/*
 * Queues ev for the store thread.  ev and cfg must stay valid until cb
 * runs.  now: the arrival time (ms).  Returns 0 or a negative errno
 * (-EINVAL without a token or an event name).
 *
 * In one job: a known token is DUPLICATE (same digest) or MISMATCH and
 * changes nothing; the message is found by redrive-id when it exists, else
 * by the bare Mailgun id of any of its sends (UNKNOWN: nothing stored, not
 * even the token); the event and token rows are inserted (recipient_id
 * NULL when no recipient of the message has that address, ASCII case
 * ignored); then the recipient's state moves, ordered by the event's own
 * timestamp against recipients.last_event_at: delivered -> 'delivered'
 * unless a later event set the state; a temporary failure (policy WAIT)
 * -> 'deferred' only from 'sent' or 'deferred' and not older; a terminal
 * failure (REDRIVE or GIVE_UP) newer than the last event, on a recipient
 * neither 'failed' nor 'queued' -> 'retrying' with next_attempt_at = the
 * event's time + policy_backoff_ms(n), n the sends so far, while they are
 * fewer than max_attempts, else 'failed' with the failure's text as the
 * reason ("bounce: 550 5.1.1 No such user", "gave up after 5 sends:
 * ...").  messages.finished_at is set once every recipient is final and
 * cleared when one is not any more.
 */
int store_event_apply(struct store *st, const struct webhook_event *ev,
    const struct config *cfg, int64_t now, store_event_cb cb, void *arg);

/* ---- Re-drives (tracker/redrive.c) ------------------------------------- */

/* One 'retrying' recipient whose re-drive is due. */
struct store_redrive_item {
	int64_t message_id;
	int64_t recipient_id;
	char *address;
	char *storage_url; /* of its latest event that carries one, else of
			      the message's latest such event; NULL: none */
	int64_t first_accepted_at; /* ms: the message's earliest send with a
				      Mailgun id (storage_ttl counts from it);
				      0: Mailgun never accepted it */
	int64_t next_attempt_at;   /* ms; 0 if none was set */
	int attempts;		   /* sends of it that Mailgun accepted */
	unsigned failures; /* storage resends of it since its last accepted
			      send that Mailgun did not accept */
};

/* What store_redrive_next() found. */
struct store_redrive_batch {
	struct store_redrive_item *items; /* earliest due first */
	size_t nitems;
	int64_t next_due;  /* ms: the earliest next_attempt_at later than now
			      among retrying recipients; 0: none */
	uint64_t retrying; /* retrying recipients in the store */
};

/*
 * Called on the loop thread once per accepted store_redrive_next().
 * status 0: b (possibly without items) belongs to the callee, who frees it
 * with store_redrive_batch_free(); status < 0: b is NULL.
 */
typedef void (*store_redrive_next_cb)(
    int status, struct store_redrive_batch *b, void *arg);

/*
 * Finds, on the store thread, up to max (1 to 1000) 'retrying' recipients
 * whose next_attempt_at is NULL or <= now, earliest first, skipping the
 * recipient ids in exclude[0..nexclude) (those in flight; copied), each
 * with its storage URL and its message's first acceptance, and the
 * earliest later due time for the caller's timer.  Loop thread.  Returns
 * 0, -EINVAL, -ENOMEM or -ESHUTDOWN; cb runs only on 0.
 */
int store_redrive_next(struct store *st, int64_t now, size_t max,
    const int64_t *exclude, size_t nexclude, store_redrive_next_cb cb,
    void *arg);

/* Frees a batch and everything it owns; NULL-safe. */
void store_redrive_batch_free(struct store_redrive_batch *b);

/*
 * Called on the loop thread once the job committed (status 0; changed
 * tells whether the recipient was in the state the job expected) or
 * failed (status < 0; nothing changed).
 */
typedef void (*store_redrive_done_cb)(int status, bool changed, void *arg);

/*
 * Turns a 'retrying' recipient back into 'queued' with next_attempt_at =
 * now, so that the forwarder sends the spooled copy (messages.mime) at
 * once; a recipient in any other state is left alone (changed false).
 * Loop thread.  Returns 0, -EINVAL, -ENOMEM or -ESHUTDOWN; cb runs only
 * on 0.
 */
int store_redrive_requeue(struct store *st, int64_t recipient_id, int64_t now,
    store_redrive_done_cb cb, void *arg);

/* One finished storage resend, handed to store_redrive_record(). */
struct store_redrive_result {
	int64_t message_id;
	int64_t recipient_id;
	enum store_forward_outcome outcome;
	int64_t at;		 /* ms: when the request was made */
	int64_t now;		 /* ms: when it ended */
	int http_status;	 /* 0: no HTTP answer */
	const char *mailgun_id;	 /* bare; required for OK, else ignored */
	const char *result;	 /* Mailgun's text or the transport error */
	int64_t next_attempt_at; /* ms: RETRY and PAUSE */
};

/*
 * Records one storage resend in one job: an attempts row (via 'storage')
 * with its attempt_rcpts row, then the recipient.  OK: attempts + 1 and
 * the new mailgun_id (also messages.mailgun_id), and a recipient still
 * 'retrying' becomes 'sent' with next_attempt_at and last_error cleared;
 * RETRY and PAUSE: a recipient still 'retrying' stays so with
 * next_attempt_at and last_error "<status> <text>"; REJECT (the stored
 * copy is gone, e.g. 404): a recipient still 'retrying' is requeued as
 * store_redrive_requeue() does, with that last_error.  changed tells
 * whether the recipient was still 'retrying'.  Everything r points to is
 * copied.  Loop thread.  Returns 0, -EINVAL (OK without an id, a bad
 * outcome), -ENOMEM or -ESHUTDOWN; cb runs only on 0.
 */
int store_redrive_record(struct store *st, const struct store_redrive_result *r,
    store_redrive_done_cb cb, void *arg);

/* ---- `redrive retry` (the CLI's synchronous face) ---------------------- */

/*
 * Called by store_db_retry() once per recipient it looked at, after the
 * change is committed: its address, its status before, and whether it was
 * made due (false: sent, deferred or delivered, which Mailgun owns or
 * which is done).
 */
typedef void (*store_retry_cb)(
    const char *address, const char *was, bool changed, void *arg);

/*
 * Makes the recipients of message_id (only the one whose address equals
 * address, ignoring ASCII case, unless address is NULL) due at now, in
 * one transaction: 'retrying' gets next_attempt_at = now; 'failed' becomes
 * 'retrying' with next_attempt_at = now and no reason (a person asked for
 * it; the message is no longer finished); 'queued' gets next_attempt_at =
 * now.  The daemon picks them up without a restart.  cb may be NULL.
 * Returns how many recipients were made due (0 or more), -ENOENT when the
 * message has no such recipient (or does not exist), or another negative
 * errno code (store_db_errmsg() tells).
 */
int store_db_retry(struct store_db *db, int64_t message_id, const char *address,
    int64_t now, store_retry_cb cb, void *arg);

#endif
