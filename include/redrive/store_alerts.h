/*
 * store_alerts: the store jobs of the alert sender (core/alert.c) over the
 * `alerts` table (schema migration 3; docs/alerts.md).  A recipient's
 * alert is written by the store itself, in the transaction that sets the
 * recipient 'failed' (store_events.c, store_forward.c); these jobs read
 * what is due, raise the alerts that come from outside the store (the
 * forwarder's pause), check the failure rate and mark what was sent.
 * Every function here runs on the loop thread; callbacks too.
 */
#ifndef REDRIVE_STORE_ALERTS_H
#define REDRIVE_STORE_ALERTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct store;

/* The channels of an alert, as the bits of alerts.channels_done. */
#define STORE_ALERT_MAIL 1u
#define STORE_ALERT_WEBHOOK 2u

/* One pending alert. */
struct store_alert {
	int64_t id;
	char *kind; /* "recipient", "failure_rate" or "auth" */
	char *subject;
	char *body;
	unsigned attempts;	/* tries so far */
	unsigned channels_done; /* STORE_ALERT_* bits already sent */
};

struct store_alert_batch {
	struct store_alert *items;
	size_t n;
	uint64_t pending; /* pending alerts in all */
	bool rate_raised; /* this job raised a failure-rate alert */
};

/* The failure-rate check of store_alerts_due(); window_ms 0: none. */
struct store_alerts_rate {
	double rate;
	int64_t window_ms;
	unsigned min;
};

typedef void (*store_alerts_due_cb)(
    int status, struct store_alert_batch *b, void *arg);
typedef void (*store_alerts_done_cb)(int status, void *arg);

/*
 * One job: first the failure-rate check (when rate is non-NULL with a
 * window: failed recipients over the requests that carried recipients in
 * the last window_ms; above rate with at least min of them, and no
 * failure_rate alert within the window, it raises one), then up to max
 * pending alerts due at now (all pending ones when all is set), skipping
 * the ids in exclude (in flight), oldest first.  cb gets the batch, which
 * it frees with store_alert_batch_free(), or status < 0 and NULL.
 * Returns 0 or a negative errno code (cb will not run).
 */
int store_alerts_due(struct store *st, int64_t now, bool all, size_t max,
    const int64_t *exclude, size_t nexclude,
    const struct store_alerts_rate *rate, store_alerts_due_cb cb, void *arg);

void store_alert_batch_free(struct store_alert_batch *b);

/*
 * Records a try of alert id: channels_done gets the bits of done added;
 * sent marks it 'sent' at now; otherwise it stays pending, due at
 * next_attempt_at, with error as last_error.  attempts grows by one.
 */
int store_alerts_mark(struct store *st, int64_t id, unsigned done, bool sent,
    int64_t now, int64_t next_attempt_at, const char *error,
    store_alerts_done_cb cb, void *arg);

/* Raises an alert of kind ("auth", "failure_rate") with its text. */
int store_alerts_raise(struct store *st, const char *kind, const char *subject,
    const char *body, int64_t now, store_alerts_done_cb cb, void *arg);

#endif
