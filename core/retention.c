/*
 * retention: [store] retention applied by the daemon (retention.h).  One
 * uv_timer_t fires at start and then every RETENTION_INTERVAL_MS; each run
 * submits store_purge() jobs one after the other, each deleting at most
 * STORE_PURGE_BATCH finished messages (and tokens), until a job deletes
 * less than a full batch of both, so the store thread's group commits are
 * never held up by one big delete.  The cut-off time is fixed when a run
 * starts.  Webhook tokens are kept for at least twice [tracker]
 * timestamp_window: a signature is accepted while its timestamp is within
 * a window either side of now, so a webhook that arrived at T (signed at
 * most a window after T, by a sender whose clock runs ahead) can come
 * back fresh until T plus two windows, and its token must refuse it until
 * then.
 *
 * Shutdown: retention_close() closes the timer; a job in flight completes
 * when the store closes (its callback sees closing and starts nothing);
 * the struct is freed after both.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#include <uv.h>

#include "redrive/config.h"
#include "redrive/log.h"
#include "redrive/retention.h"
#include "redrive/store.h"
#include "redrive/timeutil.h"

struct retention {
	uv_timer_t timer;
	const struct config *cfg;
	struct store *store;
	struct retention_stats stats;
	int64_t before;	       /* this run's cut-off for messages, ms */
	int64_t tokens_before; /* and for tokens */
	uint64_t run_messages; /* deleted by this run so far */
	uint64_t run_tokens;
	bool job_pending;
	bool closing;
	bool timer_closed;
};

static void retention_submit(struct retention *r);

/* Frees r once closing and nothing refers to it any more. */
static void
retention_maybe_free(struct retention *r)
{
	if (r->closing && r->timer_closed && !r->job_pending)
		free(r);
}

/* Ends a run: one info line when something was deleted. */
static void
retention_run_end(struct retention *r)
{
	r->stats.runs++;
	if (r->run_messages != 0 || r->run_tokens != 0)
		log_info("retention: purged finished messages",
		    LF_UINT("messages", r->run_messages),
		    LF_UINT("tokens", r->run_tokens),
		    LF_INT("retention_ms", r->cfg->store.retention_ms), LF_END);
}

/*
 * A job is done: count, and submit the next batch while the last one was
 * full.  Loop thread.
 */
static void
retention_done_cb(int status, uint64_t messages, uint64_t tokens, void *arg)
{
	struct retention *r = arg;

	r->job_pending = false;
	if (status != 0) {
		r->stats.failures++;
		if (!r->closing)
			log_warn("retention: purge failed; trying again at "
				 "the next run",
			    LF_STR("error", uv_strerror(status)), LF_END);
		retention_run_end(r);
		retention_maybe_free(r);
		return;
	}
	r->stats.messages += messages;
	r->stats.tokens += tokens;
	r->run_messages += messages;
	r->run_tokens += tokens;
	if (r->closing) {
		retention_maybe_free(r);
		return;
	}
	if (messages == STORE_PURGE_BATCH || tokens == STORE_PURGE_BATCH) {
		retention_submit(r);
		return;
	}
	retention_run_end(r);
}

/* Submits the next batch of the current run. */
static void
retention_submit(struct retention *r)
{
	int rc;

	rc = store_purge(
	    r->store, r->before, r->tokens_before, retention_done_cb, r);
	if (rc != 0) {
		r->stats.failures++;
		if (rc != -ESHUTDOWN)
			log_warn("retention: cannot start a purge",
			    LF_STR("error", uv_strerror(rc)), LF_END);
		retention_run_end(r);
		return;
	}
	r->job_pending = true;
}

/* The timer: starts a run unless the last one is still going. */
static void
retention_timer_cb(uv_timer_t *t)
{
	struct retention *r = t->data;
	int64_t now, keep;

	if (r->closing || r->job_pending)
		return;
	now = time_now_ms();
	keep = r->cfg->store.retention_ms;
	r->before = keep < now ? now - keep : 0;
	if (r->cfg->tracker.timestamp_window_ms > keep / 2)
		keep = 2 * r->cfg->tracker.timestamp_window_ms;
	r->tokens_before = keep < now ? now - keep : 0;
	r->run_messages = 0;
	r->run_tokens = 0;
	retention_submit(r);
}

static void
retention_timer_close_cb(uv_handle_t *h)
{
	struct retention *r = h->data;

	r->timer_closed = true;
	retention_maybe_free(r);
}

int
retention_new(struct retention **out, uv_loop_t *loop, const struct config *cfg,
    struct store *st)
{
	struct retention *r;
	int rc;

	*out = NULL;
	if (loop == NULL || cfg == NULL || st == NULL)
		return -EINVAL;
	r = calloc(1, sizeof(*r));
	if (r == NULL)
		return -ENOMEM;
	r->cfg = cfg;
	r->store = st;
	rc = uv_timer_init(loop, &r->timer);
	if (rc != 0) {
		log_error("retention: cannot create its timer",
		    LF_STR("error", uv_strerror(rc)), LF_END);
		free(r);
		return rc;
	}
	r->timer.data = r;
	rc = uv_timer_start(
	    &r->timer, retention_timer_cb, 0, RETENTION_INTERVAL_MS);
	if (rc != 0) {
		log_error("retention: cannot start its timer",
		    LF_STR("error", uv_strerror(rc)), LF_END);
		r->closing = true;
		uv_close((uv_handle_t *)&r->timer, retention_timer_close_cb);
		return rc;
	}
	/* The timer alone does not keep the daemon running. */
	uv_unref((uv_handle_t *)&r->timer);
	*out = r;
	return 0;
}

struct retention_stats
retention_stats(const struct retention *r)
{
	struct retention_stats zero = { 0, 0, 0, 0 };

	return r != NULL ? r->stats : zero;
}

void
retention_close(struct retention *r)
{
	if (r == NULL || r->closing)
		return;
	r->closing = true;
	uv_close((uv_handle_t *)&r->timer, retention_timer_close_cb);
}
