/*
 * store_health: whether the store takes writes, for GET /healthz.  A ping
 * is an empty job of the store thread: it rides the next group commit, so
 * it succeeds only when BEGIN IMMEDIATE got the write lock (within the
 * busy timeout) and COMMIT succeeded, exactly what a message's commit
 * needs.
 */
#ifndef REDRIVE_STORE_HEALTH_H
#define REDRIVE_STORE_HEALTH_H

struct store;

/*
 * Called on the loop thread once the ping's transaction committed (status
 * 0) or failed (a negative errno code).
 */
typedef void (*store_health_cb)(int status, void *arg);

/*
 * Queues a ping.  Loop thread.  Returns 0, -EINVAL, -ENOMEM or -ESHUTDOWN;
 * cb runs only on 0.
 */
int store_health_ping(struct store *st, store_health_cb cb, void *arg);

#endif
