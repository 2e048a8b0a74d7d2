/*
 * redrive: the re-drive scheduler (redrive.h).  It owns one uv_timer_t and
 * the list of re-drives it has started whose outcome is not yet on disk.
 *
 * The pump: when the timer fires, when kicked and when a re-drive ends,
 * it asks the store (store_redrive_next, one job at a time) for the due
 * 'retrying' recipients, excluding those it already has in hand, and
 * starts each one: a storage resend (FACTS.md 2.2: POST storage.url
 * exactly as given, `to` only) while Mailgun keeps its stored copy
 * (FACTS.md 2.3: storage_ttl from the first acceptance), else a requeue
 * for the spooled copy.  A storage resend waits when the shared Mailgun
 * client has no free slot (mailgun_can_send) and during a PAUSE hold; the
 * recipient simply stays due.  The timer is set to the store's earliest
 * later due time, and at most REDRIVE_TICK_MS ahead.
 *
 * A recipient stays in hand until its outcome is recorded, so it is never
 * re-driven twice because its new state was not on disk yet; a record that
 * fails is tried again with a growing delay.  The API key is never logged.
 *
 * Shutdown: redrive_close stops the pump and closes the timer; resends in
 * flight end when the Mailgun client closes (their recipients stay due)
 * and store jobs when the store closes; the struct is freed after the last.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <uv.h>

#include "redrive/config.h"
#include "redrive/forward.h"
#include "redrive/log.h"
#include "redrive/mailgun.h"
#include "redrive/redrive.h"
#include "redrive/store.h"
#include "redrive/store_events.h"
#include "redrive/timeutil.h"

/* Due recipients asked for at once. */
#define REDRIVE_BATCH 64
/* A failed record is tried again after this, doubling up to the max. */
#define REDRIVE_RECORD_RETRY_MS 1000
#define REDRIVE_RECORD_RETRY_MAX_MS 30000
/* The schedule could not be read: look again after this. */
#define REDRIVE_ERROR_MS 1000
/* Mailgun's "try again after" is trusted up to this far ahead. */
#define REDRIVE_HINT_MAX_MS (24LL * 3600 * 1000)

/* One re-drive in hand: at Mailgun, or its outcome being recorded. */
struct redrive_req {
	struct redrive *rd;
	struct redrive_req *prev, *next;
	int64_t message_id;
	int64_t recipient_id;
	char *address;
	unsigned failures; /* storage resends not accepted before this one */
	int64_t started_at;
	bool storage;	/* a storage resend, not a requeue */
	bool in_flight; /* at Mailgun */
	bool recording; /* a store job is out */
	bool record_failed;
	int64_t record_retry_at;
	unsigned record_failures;
	struct store_redrive_result res; /* what to record (storage) */
	char *mailgun_id;		 /* owned copies for res */
	char *result;
};

struct redrive {
	uv_loop_t *loop;
	const struct config *cfg;
	struct store *st;
	struct mailgun *mg;
	redrive_kick_cb kick;
	void *kick_arg;
	uv_timer_t timer;

	struct redrive_req *reqs;
	size_t nreqs;
	unsigned jobs;	   /* store jobs out whose callback has not run */
	bool next_pending; /* a store_redrive_next job is out */
	bool again;	   /* look again as soon as it is back */
	bool closing;
	bool timer_closed;
	int64_t next_due;   /* the store's earliest later due time; 0 */
	int64_t hold_until; /* PAUSE: no storage resend before this */
	uint64_t rnd;
	struct redrive_stats stats;
};

static void redrive_pump(struct redrive *rd);
static void redrive_record(struct redrive_req *req);

/* ---- Small helpers ----------------------------------------------------- */

static int64_t
redrive_min64(int64_t a, int64_t b)
{
	return a < b ? a : b;
}

/* xorshift64*: jitter only, no secrecy needed. */
static uint64_t
redrive_rand(struct redrive *rd)
{
	rd->rnd ^= rd->rnd >> 12;
	rd->rnd ^= rd->rnd << 25;
	rd->rnd ^= rd->rnd >> 27;
	return rd->rnd * 0x2545F4914F6CDD1DULL;
}

static void
redrive_req_free(struct redrive_req *req)
{
	if (req == NULL)
		return;
	free(req->address);
	free(req->mailgun_id);
	free(req->result);
	free(req);
}

static void
redrive_req_link(struct redrive *rd, struct redrive_req *req)
{
	req->next = rd->reqs;
	if (rd->reqs != NULL)
		rd->reqs->prev = req;
	rd->reqs = req;
	rd->nreqs++;
}

static void
redrive_req_unlink(struct redrive_req *req)
{
	struct redrive *rd = req->rd;

	if (req->prev != NULL)
		req->prev->next = req->next;
	else
		rd->reqs = req->next;
	if (req->next != NULL)
		req->next->prev = req->prev;
	req->prev = req->next = NULL;
	rd->nreqs--;
}

/* Frees rd once closing and nothing refers to it any more. */
static void
redrive_maybe_free(struct redrive *rd)
{
	if (rd->closing && rd->timer_closed && rd->jobs == 0 &&
	    rd->reqs == NULL)
		free(rd);
}

/* Ends a re-drive: unlinks and frees it, then looks again. */
static void
redrive_req_end(struct redrive_req *req)
{
	struct redrive *rd = req->rd;

	redrive_req_unlink(req);
	redrive_req_free(req);
	if (rd->closing) {
		redrive_maybe_free(rd);
		return;
	}
	redrive_pump(rd);
}

static void
redrive_timer_cb(uv_timer_t *t)
{
	struct redrive *rd = t->data;
	struct redrive_req *req, *next;
	int64_t now = time_now_ms();

	for (req = rd->reqs; req != NULL; req = next) {
		next = req->next;
		if (req->record_failed && req->record_retry_at <= now)
			redrive_record(req);
	}
	redrive_pump(rd);
}

/*
 * Sets the one timer: the next due recipient, a record to try again, the
 * end of a hold, and at most REDRIVE_TICK_MS from now.
 */
static void
redrive_arm(struct redrive *rd, bool soon)
{
	const struct redrive_req *req;
	int64_t now, target;

	if (rd->closing)
		return;
	now = time_now_ms();
	target = soon ? now : now + REDRIVE_TICK_MS;
	if (rd->next_due > 0)
		target = redrive_min64(target, rd->next_due);
	if (rd->hold_until > now)
		target = redrive_min64(target, rd->hold_until);
	for (req = rd->reqs; req != NULL; req = req->next)
		if (req->record_failed)
			target = redrive_min64(target, req->record_retry_at);
	/*
	 * Never 0 ms: a timer restarted at 0 from its own callback runs again
	 * in the same pass of the loop (libuv 1.44), starving everything.
	 */
	(void)uv_timer_start(&rd->timer, redrive_timer_cb,
	    target > now ? (uint64_t)(target - now) : 1, 0);
}

/*
 * After a failure to read the schedule (the store failing, memory): look
 * again in REDRIVE_ERROR_MS, not at the due time already past, which
 * would repeat the failure and its log line as fast as the store answers.
 */
static void
redrive_arm_error(struct redrive *rd)
{
	if (!rd->closing)
		(void)uv_timer_start(
		    &rd->timer, redrive_timer_cb, REDRIVE_ERROR_MS, 0);
}

/* Logs one re-drive step at info level (never the API key). */
static void
redrive_log(const struct redrive_req *req, const char *via, const char *result,
    int http_status, const char *detail)
{
	log_info("re-drive", LF_INT("id", req->message_id),
	    LF_INT("recipient_id", req->recipient_id),
	    LF_STR("recipient", req->address), LF_STR("via", via),
	    LF_STR("result", result), LF_INT("http_status", http_status),
	    LF_STR("detail", detail), LF_END);
}

/* ---- Requeue: the spooled copy ----------------------------------------- */

/* The requeue is on disk (or not).  Loop thread. */
static void
redrive_requeue_cb(int status, bool changed, void *arg)
{
	struct redrive_req *req = arg;
	struct redrive *rd = req->rd;

	rd->jobs--;
	req->recording = false;
	if (status != 0)
		log_error("re-drive: requeue not recorded; tried again later",
		    LF_INT("id", req->message_id),
		    LF_INT("recipient_id", req->recipient_id),
		    LF_INT("errno", -status), LF_END);
	else if (changed) {
		rd->stats.requeued++;
		if (rd->kick != NULL && !rd->closing)
			rd->kick(rd->kick_arg);
	}
	redrive_req_end(req);
}

/*
 * Hands the recipient to the forwarder: 'retrying' back to 'queued', due
 * now.  why says why the stored copy is not used.  Takes req.
 */
static void
redrive_requeue(struct redrive_req *req, const char *why)
{
	struct redrive *rd = req->rd;
	int rc;

	redrive_log(req, "mime", "requeued", 0, why);
	req->recording = true;
	rc = store_redrive_requeue(
	    rd->st, req->recipient_id, time_now_ms(), redrive_requeue_cb, req);
	if (rc != 0) {
		log_error("re-drive: cannot requeue",
		    LF_INT("id", req->message_id),
		    LF_INT("recipient_id", req->recipient_id),
		    LF_INT("errno", -rc), LF_END);
		redrive_req_unlink(req);
		redrive_req_free(req);
		return;
	}
	rd->jobs++;
}

/* ---- Storage resends --------------------------------------------------- */

/* The record of a storage resend is on disk (or not).  Loop thread. */
static void
redrive_record_cb(int status, bool changed, void *arg)
{
	struct redrive_req *req = arg;
	struct redrive *rd = req->rd;
	int64_t delay;
	unsigned i;

	rd->jobs--;
	req->recording = false;
	if (status != 0 && !rd->closing) {
		/*
		 * Keep it in hand, so that it is not resent meanwhile, and
		 * try the record again.
		 */
		req->record_failed = true;
		req->record_failures++;
		delay = REDRIVE_RECORD_RETRY_MS;
		for (i = 1; i < req->record_failures &&
		     delay < REDRIVE_RECORD_RETRY_MAX_MS;
		     i++)
			delay *= 2;
		delay = redrive_min64(delay, REDRIVE_RECORD_RETRY_MAX_MS);
		req->record_retry_at = time_now_ms() + delay;
		log_error("re-drive: outcome not recorded; trying again",
		    LF_INT("id", req->message_id),
		    LF_INT("recipient_id", req->recipient_id),
		    LF_INT("errno", -status), LF_END);
		redrive_arm(rd, false);
		return;
	}
	if (status != 0)
		log_error("re-drive: outcome not recorded at shutdown",
		    LF_INT("id", req->message_id),
		    LF_INT("recipient_id", req->recipient_id),
		    LF_INT("errno", -status), LF_END);
	else if (req->res.outcome == STORE_FORWARD_REJECT && changed &&
	    rd->kick != NULL && !rd->closing) {
		rd->stats.requeued++;
		rd->kick(rd->kick_arg);
	}
	redrive_req_end(req);
}

/* Submits (again) the record of req's storage resend. */
static void
redrive_record(struct redrive_req *req)
{
	struct redrive *rd = req->rd;
	int rc;

	req->record_failed = false;
	req->res.now = time_now_ms();
	rc = store_redrive_record(rd->st, &req->res, redrive_record_cb, req);
	if (rc != 0) {
		log_error("re-drive: cannot record the outcome",
		    LF_INT("id", req->message_id),
		    LF_INT("recipient_id", req->recipient_id),
		    LF_INT("errno", -rc), LF_END);
		if (rc == -ENOMEM && !rd->closing) {
			req->record_failed = true;
			req->record_retry_at =
			    time_now_ms() + REDRIVE_RECORD_RETRY_MS;
			redrive_arm(rd, false);
			return;
		}
		redrive_req_unlink(req);
		redrive_req_free(req);
		if (rd->closing)
			redrive_maybe_free(rd);
		return;
	}
	req->recording = true;
	rd->jobs++;
}

/*
 * Maps Mailgun's answer to what is recorded (redrive.h): a 404 on the
 * storage URL, like any rejection, means the stored copy is gone.
 */
static void
redrive_outcome(
    struct redrive_req *req, const struct mailgun_result *r, int64_t now)
{
	struct redrive *rd = req->rd;
	const struct config *cfg = rd->cfg;
	int64_t delay, hint;

	req->res.outcome = STORE_FORWARD_RETRY;
	if (r->http_status == 404 || r->outcome == MAILGUN_REJECT) {
		req->res.outcome = STORE_FORWARD_REJECT;
		rd->stats.gone++;
		return;
	}
	switch (r->outcome) {
	case MAILGUN_OK:
		req->res.outcome = STORE_FORWARD_OK;
		rd->stats.resent++;
		return;
	case MAILGUN_PAUSE:
		req->res.outcome = STORE_FORWARD_PAUSE;
		req->res.next_attempt_at = now + cfg->mailgun.retry_max_ms;
		rd->hold_until = req->res.next_attempt_at;
		rd->stats.paused++;
		return;
	default:
		delay = forward_backoff_ms(cfg->mailgun.retry_min_ms,
		    cfg->mailgun.retry_max_ms, req->failures + 1,
		    redrive_rand(rd));
		req->res.next_attempt_at = now + delay;
		hint = r->retry_at;
		if (hint > req->res.next_attempt_at &&
		    hint - now <= REDRIVE_HINT_MAX_MS)
			req->res.next_attempt_at = hint;
		rd->stats.retried++;
		return;
	}
}

/* Mailgun answered a storage resend (or it failed).  Loop thread. */
static void
redrive_resend_cb(const struct mailgun_result *r, void *arg)
{
	static const char *const names[] = {
		[STORE_FORWARD_OK] = "accepted",
		[STORE_FORWARD_RETRY] = "retry",
		[STORE_FORWARD_PAUSE] = "paused",
		[STORE_FORWARD_REJECT] = "gone",
	};
	struct redrive_req *req = arg;
	struct redrive *rd = req->rd;
	int64_t now = time_now_ms();
	bool bad = false;

	req->in_flight = false;
	if (r->transport == -ECANCELED) {
		/* The client is closing: the recipient stays due. */
		redrive_req_end(req);
		return;
	}
	redrive_outcome(req, r, now);
	if (r->id != NULL) {
		req->mailgun_id = strdup(r->id);
		bad = req->mailgun_id == NULL;
	}
	if (r->message != NULL) {
		req->result = strdup(r->message);
		bad = bad || req->result == NULL;
	}
	if (bad ||
	    (req->res.outcome == STORE_FORWARD_OK &&
		(req->mailgun_id == NULL || req->mailgun_id[0] == '\0'))) {
		/* Recorded as a retry: the resend cannot be matched. */
		req->res.outcome = STORE_FORWARD_RETRY;
		req->res.next_attempt_at = now + rd->cfg->mailgun.retry_min_ms;
	}
	redrive_log(req, "storage", names[req->res.outcome],
	    (int)r->http_status,
	    req->res.outcome == STORE_FORWARD_OK ? req->mailgun_id
						 : req->result);
	req->res.message_id = req->message_id;
	req->res.recipient_id = req->recipient_id;
	req->res.at = req->started_at;
	req->res.http_status = (int)r->http_status;
	req->res.mailgun_id = req->mailgun_id;
	req->res.result = req->result;
	redrive_record(req);
}

/*
 * Starts a storage resend of it.  Returns 0 (req is in flight), -EAGAIN
 * (no free slot: req is freed, the recipient stays due), -EPERM (the URL
 * is not Mailgun's: the caller requeues) or another error (freed).
 */
static int
redrive_resend(struct redrive_req *req, const struct store_redrive_item *it)
{
	struct redrive *rd = req->rd;
	int rc;

	req->started_at = time_now_ms();
	req->storage = true;
	rc = mailgun_resend(
	    rd->mg, it->storage_url, it->address, redrive_resend_cb, req);
	if (rc == 0) {
		req->in_flight = true;
		return 0;
	}
	if (rc != -EPERM) {
		if (rc != -EAGAIN)
			log_error("re-drive: cannot start a storage resend",
			    LF_INT("id", req->message_id),
			    LF_INT("recipient_id", req->recipient_id),
			    LF_INT("errno", -rc), LF_END);
		redrive_req_unlink(req);
		redrive_req_free(req);
	}
	return rc;
}

/* ---- The pump ---------------------------------------------------------- */

/*
 * Starts the re-drive of one due recipient.  Returns false when it had to
 * wait for a free Mailgun slot or the end of a hold (it stays due).
 */
static bool
redrive_start(
    struct redrive *rd, const struct store_redrive_item *it, int64_t now)
{
	const struct config *cfg = rd->cfg;
	struct redrive_req *req;
	const char *why = NULL;
	int rc;

	if (rd->mg == NULL)
		why = "no Mailgun client here";
	else if (it->storage_url == NULL)
		why = "no storage URL known";
	else if (it->first_accepted_at <= 0)
		why = "Mailgun never accepted the message";
	else if (cfg->retry.storage_ttl_ms <= 0 ||
	    now - it->first_accepted_at >= cfg->retry.storage_ttl_ms)
		why = "past storage_ttl";
	if (why == NULL && (rd->hold_until > now || !mailgun_can_send(rd->mg)))
		return false;

	req = calloc(1, sizeof(*req));
	if (req == NULL || (req->address = strdup(it->address)) == NULL) {
		free(req);
		log_error("re-drive: out of memory", LF_END);
		return false;
	}
	req->rd = rd;
	req->message_id = it->message_id;
	req->recipient_id = it->recipient_id;
	req->failures = it->failures;
	redrive_req_link(rd, req);
	if (why != NULL) {
		redrive_requeue(req, why);
		return true;
	}
	rc = redrive_resend(req, it);
	if (rc == -EPERM) {
		redrive_requeue(req, "storage URL refused: not Mailgun's");
		return true;
	}
	return rc == 0;
}

/* What store_redrive_next found: start each, then set the timer. */
static void
redrive_next_cb(int status, struct store_redrive_batch *b, void *arg)
{
	struct redrive *rd = arg;
	bool waited = false, soon;
	int64_t now;
	size_t i;

	rd->jobs--;
	rd->next_pending = false;
	if (rd->closing) {
		store_redrive_batch_free(b);
		redrive_maybe_free(rd);
		return;
	}
	if (status != 0) {
		log_error("re-drive: cannot read the schedule",
		    LF_INT("errno", -status), LF_END);
		rd->again = false;
		redrive_arm_error(rd);
		return;
	}
	rd->stats.checks++;
	rd->stats.retrying = b->retrying;
	rd->next_due = b->next_due;
	now = time_now_ms();
	for (i = 0; i < b->nitems; i++)
		if (!redrive_start(rd, &b->items[i], now))
			waited = true;
	/* A full batch that all started: more may be due. */
	soon = rd->again || (b->nitems == REDRIVE_BATCH && !waited);
	rd->again = false;
	store_redrive_batch_free(b);
	redrive_arm(rd, soon);
}

/* Asks the store for the due recipients, unless a look is out already. */
static void
redrive_pump(struct redrive *rd)
{
	const struct redrive_req *req;
	int64_t *exclude = NULL;
	size_t n = 0;
	int rc;

	if (rd->closing)
		return;
	if (rd->next_pending) {
		rd->again = true;
		return;
	}
	if (rd->nreqs > 0) {
		exclude = calloc(rd->nreqs, sizeof(*exclude));
		if (exclude == NULL) {
			redrive_arm_error(rd);
			return;
		}
		for (req = rd->reqs; req != NULL; req = req->next)
			exclude[n++] = req->recipient_id;
	}
	rc = store_redrive_next(rd->st, time_now_ms(), REDRIVE_BATCH, exclude,
	    n, redrive_next_cb, rd);
	free(exclude);
	if (rc != 0) {
		if (rc != -ESHUTDOWN)
			log_error("re-drive: cannot ask for the schedule",
			    LF_INT("errno", -rc), LF_END);
		redrive_arm_error(rd);
		return;
	}
	rd->next_pending = true;
	rd->jobs++;
}

/* ---- Public ------------------------------------------------------------ */

int
redrive_new(struct redrive **out, uv_loop_t *loop, const struct config *cfg,
    struct store *st, struct mailgun *mg, redrive_kick_cb kick, void *kick_arg)
{
	struct redrive *rd;
	int rc;

	if (out == NULL || loop == NULL || cfg == NULL || st == NULL)
		return -EINVAL;
	*out = NULL;
	rd = calloc(1, sizeof(*rd));
	if (rd == NULL)
		return -ENOMEM;
	rd->loop = loop;
	rd->cfg = cfg;
	rd->st = st;
	rd->mg = mg;
	rd->kick = kick;
	rd->kick_arg = kick_arg;
	/* xorshift needs a non-zero state. */
	rd->rnd = (uv_hrtime() ^ ((uint64_t)getpid() << 32)) | 1;
	rc = uv_timer_init(loop, &rd->timer);
	if (rc != 0) {
		log_error("re-drive scheduler cannot create its timer",
		    LF_STR("error", uv_strerror(rc)), LF_END);
		free(rd);
		return rc;
	}
	rd->timer.data = rd;
	log_info("re-drive scheduler started",
	    LF_STR("storage_resend", mg != NULL ? "yes" : "no"),
	    LF_INT("storage_ttl_ms", cfg->retry.storage_ttl_ms), LF_END);
	/* Look at the schedule once the loop runs: it survives restarts. */
	(void)uv_timer_start(&rd->timer, redrive_timer_cb, 0, 0);
	*out = rd;
	return 0;
}

void
redrive_kick(struct redrive *rd)
{
	if (rd == NULL || rd->closing)
		return;
	redrive_pump(rd);
}

static void
redrive_timer_close_cb(uv_handle_t *h)
{
	struct redrive *rd = h->data;

	rd->timer_closed = true;
	redrive_maybe_free(rd);
}

void
redrive_close(struct redrive *rd)
{
	struct redrive_req *req, *next;

	if (rd == NULL || rd->closing)
		return;
	rd->closing = true;
	/* Records waiting to be tried again will not be: drop them. */
	for (req = rd->reqs; req != NULL; req = next) {
		next = req->next;
		if (req->record_failed && !req->recording) {
			log_error("re-drive: outcome not recorded at shutdown",
			    LF_INT("id", req->message_id),
			    LF_INT("recipient_id", req->recipient_id), LF_END);
			redrive_req_unlink(req);
			redrive_req_free(req);
		}
	}
	(void)uv_timer_stop(&rd->timer);
	uv_close((uv_handle_t *)&rd->timer, redrive_timer_close_cb);
}

struct redrive_stats
redrive_stats(const struct redrive *rd)
{
	struct redrive_stats s = rd->stats;
	const struct redrive_req *req;

	s.in_flight = 0;
	for (req = rd->reqs; req != NULL; req = req->next)
		if (req->in_flight)
			s.in_flight++;
	return s;
}
