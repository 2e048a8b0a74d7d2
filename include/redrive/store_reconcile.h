/*
 * store_reconcile: the store job of reconciliation (core/reconcile.c):
 * which messages have a recipient that Mailgun accepted but whose final
 * event never came.
 */
#ifndef REDRIVE_STORE_RECONCILE_H
#define REDRIVE_STORE_RECONCILE_H

#include <stddef.h>
#include <stdint.h>

struct store;

/* A message to look up in the Events API. */
struct store_reconcile_item {
	int64_t message_id;
	char mailgun_id[256]; /* bare; the recipients' latest send's */
};

/*
 * Called on the loop thread once per accepted store_reconcile_due():
 * status 0 with items[0..n) (owned by the job: valid during the call
 * only), or a negative errno code with n 0.
 */
typedef void (*store_reconcile_cb)(
    int status, const struct store_reconcile_item *items, size_t n, void *arg);

/*
 * Finds, on the store thread, up to max (1 to 1000) distinct (message,
 * Mailgun id) pairs with a recipient in 'sent' or 'deferred' whose last
 * change (updated_at) is at or before `before` (ms), with a message id
 * above after_id, in ascending message id order (the caller walks the
 * store round-robin with after_id).  Loop thread.  Returns 0, -EINVAL,
 * -ENOMEM or -ESHUTDOWN; cb runs only on 0.
 */
int store_reconcile_due(struct store *st, int64_t before, int64_t after_id,
    size_t max, store_reconcile_cb cb, void *arg);

#endif
