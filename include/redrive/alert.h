/*
 * alert: the alert sender (docs/alerts.md).  Alerts are rows of the store
 * (store_alerts.h); this module sends the pending ones from the loop: a
 * plain-text mail to [alert] to through [alert] smtp with libesmtp
 * (STARTTLS, AUTH) on the libuv threadpool, or through Mailgun's
 * messages.mime (the forwarder's client) when no smtp is set; and a JSON
 * POST {"text": ...} to [alert] webhook_url (libcurl easy, threadpool).
 * Each channel is marked done in the row once it succeeded; an alert that
 * could not be sent stays pending and is tried again 30 s later, doubling
 * up to 1 h, logged at warn each time.  It also runs the failure-rate
 * check and raises the 'auth' alert of a forwarder pause.  Loop thread.
 */
#ifndef REDRIVE_ALERT_H
#define REDRIVE_ALERT_H

#include <stdint.h>

#include <uv.h>

struct alert;
struct config;
struct mailgun;
struct store;

/* Counters, for logs, tests and /metrics. */
struct alert_stats {
	uint64_t sent;	   /* alerts marked sent */
	uint64_t failures; /* tries that left an alert pending */
	uint64_t pending;  /* pending alerts at the last look */
};

/*
 * Starts the sender on loop: cfg's [alert] keys, st, and mg (the
 * forwarder's Mailgun client, NULL when there is none: alert mail then
 * needs [alert] smtp).  It looks at the store at once; the first batch of
 * pending alerts (16) is tried at start whatever its next time (a restart
 * is often the fix).
 * Returns 0 and *out; -ENOTSUP (logged) for smtp_tls = tls, which
 * libesmtp cannot do (implicit TLS); -ENOMEM.  cfg, st and mg must
 * outlive it (close it before the forwarder and the store).
 */
int alert_new(struct alert **out, uv_loop_t *loop, const struct config *cfg,
    struct store *st, struct mailgun *mg);

/*
 * Stops: no new work starts, threadpool work already queued finishes
 * (bounded by its timeouts: 20 s per SMTP step or POST) and what it did is
 * not recorded (the alert is sent again after a restart: at least once).
 * Freed once its handles, threadpool work and store jobs are done, so the
 * loop must run again and store_close() must follow.  NULL-safe.
 */
void alert_close(struct alert *a);

/*
 * The forwarder's pause hook (forward_on_pause): raises one 'auth' alert
 * with the HTTP status and Mailgun's text.  arg is the struct alert.
 */
void alert_forward_paused(int http_status, const char *reason, void *arg);

/* Looks at the store now (a new alert may be due).  NULL-safe. */
void alert_kick(struct alert *a);

struct alert_stats alert_stats(const struct alert *a);

/* The delay after the n-th failed try (n >= 1): 30 s doubling to 1 h. */
int64_t alert_backoff_ms(unsigned n);

#endif
