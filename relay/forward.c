/*
 * forward: the forwarder (forward.h).  It owns the Mailgun client, one
 * uv_timer_t and the list of requests it has made whose outcome is not yet
 * on disk.
 *
 * The pump: when kicked (a message was stored), when a request ends, when
 * an outcome is recorded and when the timer fires, the forwarder asks the
 * store (store_forward_next, one job at a time) for as many due messages
 * as it has free request slots, excluding those it already has in flight,
 * and sends one request per message chunk.  The store job also tells the
 * earliest later due time; the timer is set to it (or to the end of a
 * rate-limit hold, or to the next probe while paused, and at most
 * FORWARD_RESCAN_MS ahead so that a change made behind our back, such as
 * `redrive retry`, is seen).  The message bytes are read from the store
 * right before the request and freed when it ends.
 *
 * Every answer is recorded with store_forward_record; the message stays
 * excluded from the pump until the record has committed, so a message is
 * never sent again because its 'sent' was not on disk yet.  A failed
 * record is tried again later (the message stays excluded meanwhile).
 *
 * Backoff (RETRY): min(retry_max, retry_min * 2^(k-1)) plus up to 10%
 * jitter, k being the message's consecutive failed requests, and never
 * before Mailgun's "try again after".  A 420/429 with such a hint holds
 * every send until then: Mailgun's rate limits are per domain.  PAUSE
 * (401, 403, 404 "Domain not found", a 200 that is not Mailgun's): one
 * error line, nothing more is sent except a probe with the oldest message
 * every retry_max; an answer that shows the key and domain work ends the
 * pause.  The API key is never logged.
 *
 * Shutdown: forward_close cancels the requests in flight (their messages
 * stay queued; nothing is recorded), closes the client and the timer; the
 * struct is freed once the timer is closed and every store job it
 * submitted has called back (store_close runs them).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <uv.h>

#include "redrive/config.h"
#include "redrive/forward.h"
#include "redrive/log.h"
#include "redrive/mailgun.h"
#include "redrive/store.h"
#include "redrive/timeutil.h"

/* The longest the forwarder sleeps without looking at the queue. */
#define FORWARD_RESCAN_MS 30000
/* Mailgun's hints are trusted up to this far ahead. */
#define FORWARD_HINT_MAX_MS (24LL * 3600 * 1000)

/* One request: in flight at Mailgun, or its outcome being recorded. */
struct forward_req {
	struct forward *fw;
	struct forward_req *prev, *next;
	struct store_forward_msg msg; /* owns the body and recipients */
	const char **to;	      /* points into msg.rcpts */
	int64_t *rcpt_ids;
	int64_t started_at;
	bool probe;	/* sent while paused, to see if the pause is over */
	bool in_flight; /* at Mailgun */
	bool recording; /* a record job is out */
	bool record_failed;
	int64_t record_retry_at;
	unsigned record_failures;
	struct store_forward_result res; /* what to record */
	char *mailgun_id;		 /* owned copies for res */
	char *result;
};

struct forward {
	uv_loop_t *loop;
	struct store *st;
	struct mailgun *mg;
	uv_timer_t timer;
	int64_t retry_min_ms;
	int64_t retry_max_ms;
	unsigned concurrency;

	struct forward_req *reqs;
	size_t nreqs;
	unsigned jobs;	   /* store jobs out whose callback has not run */
	bool next_pending; /* a store_forward_next job is out */
	size_t next_max;   /* how many messages it asked for */
	bool again;	   /* kicked while it was */
	bool closing;
	bool timer_closed;

	bool probing;	  /* a probe is in flight */
	int64_t probe_at; /* while paused: the next probe */
	int64_t next_due; /* the store's earliest later due time; 0 */
	int64_t store_retry_at;
	unsigned store_failures;
	uint64_t rnd;
	struct forward_stats stats;
	forward_pause_cb pause_cb; /* the alerter's hook; NULL */
	void *pause_arg;
};

static void forward_pump(struct forward *fw);

/* ---- Small helpers ----------------------------------------------------- */

int64_t
forward_backoff_ms(int64_t min_ms, int64_t max_ms, unsigned k, uint64_t rnd)
{
	int64_t d;
	unsigned i;

	if (min_ms < 1)
		min_ms = 1;
	if (max_ms < min_ms)
		max_ms = min_ms;
	d = min_ms;
	for (i = 1; i < k && d < max_ms; i++)
		d = d > max_ms / 2 ? max_ms : d * 2;
	if (d > max_ms)
		d = max_ms;
	return d + (int64_t)(rnd % (uint64_t)(d / 10 + 1));
}

/* xorshift64*: jitter only, no secrecy needed. */
static uint64_t
forward_rand(struct forward *fw)
{
	uint64_t x = fw->rnd;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	fw->rnd = x;
	return x * 0x2545F4914F6CDD1DULL;
}

/* Writes ms as the config writes durations: "5m", "2s", "1500ms". */
static const char *
forward_fmt_duration(int64_t ms, char *buf, size_t len)
{
	static const struct {
		int64_t ms;
		const char *unit;
	} units[] = { { 86400000, "d" }, { 3600000, "h" }, { 60000, "m" },
		{ 1000, "s" } };
	size_t i;

	if (ms < 0)
		ms = 0;
	for (i = 0; i < sizeof(units) / sizeof(units[0]); i++)
		if (ms >= units[i].ms && ms % units[i].ms == 0) {
			(void)snprintf(buf, len, "%" PRId64 "%s",
			    ms / units[i].ms, units[i].unit);
			return buf;
		}
	(void)snprintf(buf, len, "%" PRId64 "ms", ms);
	return buf;
}

static int64_t
forward_min64(int64_t a, int64_t b)
{
	return a < b ? a : b;
}

/* ---- Requests ---------------------------------------------------------- */

static void
forward_req_unlink(struct forward_req *req)
{
	struct forward *fw = req->fw;

	if (fw->reqs == req)
		fw->reqs = req->next;
	else if (req->prev != NULL)
		req->prev->next = req->next;
	if (req->next != NULL)
		req->next->prev = req->prev;
	req->prev = req->next = NULL;
	fw->nreqs--;
}

static void
forward_req_free(struct forward_req *req)
{
	size_t i;

	if (req == NULL)
		return;
	free(req->msg.data);
	for (i = 0; i < req->msg.nrcpts; i++)
		free(req->msg.rcpts[i].address);
	free(req->msg.rcpts);
	free(req->to);
	free(req->rcpt_ids);
	free(req->mailgun_id);
	free(req->result);
	free(req);
}

/* Frees the forwarder once closing and nothing refers to it any more. */
static void
forward_maybe_free(struct forward *fw)
{
	if (!fw->closing || !fw->timer_closed || fw->jobs > 0 ||
	    fw->reqs != NULL)
		return;
	free(fw);
}

static void
forward_timer_close_cb(uv_handle_t *h)
{
	struct forward *fw = h->data;

	fw->timer_closed = true;
	forward_maybe_free(fw);
}

static void
forward_timer_cb(uv_timer_t *t)
{
	forward_pump(t->data);
}

/*
 * Sets the one timer to the earliest moment something may need doing:
 * the next due recipient, the end of a hold, the next probe, a record or
 * store read to try again, and at most FORWARD_RESCAN_MS from now.
 */
static void
forward_arm(struct forward *fw)
{
	const struct forward_req *req;
	int64_t now, target;
	bool slot;

	if (fw->closing)
		return;
	now = time_now_ms();
	/*
	 * With every request slot busy, a due recipient or probe waits for
	 * the end of a request (which pumps); arming for it would set a
	 * timer already past, again and again.
	 */
	slot = fw->mg != NULL && mailgun_can_send(fw->mg);
	if (fw->stats.paused)
		target = fw->probing || !slot ? INT64_MAX : fw->probe_at;
	else if (fw->stats.held_until > now)
		target = fw->stats.held_until;
	else {
		target = now + FORWARD_RESCAN_MS;
		if (fw->next_due > 0 && slot)
			target = forward_min64(target, fw->next_due);
	}
	if (fw->store_retry_at > 0)
		target = forward_min64(target, fw->store_retry_at);
	for (req = fw->reqs; req != NULL; req = req->next)
		if (req->record_failed)
			target = forward_min64(target, req->record_retry_at);
	if (target == INT64_MAX) {
		(void)uv_timer_stop(&fw->timer);
		return;
	}
	/*
	 * Never 0 ms: a timer restarted at 0 from its own callback runs again
	 * within the same pass of the loop, and libuv 1.44 (Debian 12) never
	 * leaves that pass (SMTP, Mailgun answers and signals all starve).
	 */
	(void)uv_timer_start(&fw->timer, forward_timer_cb,
	    target > now ? (uint64_t)(target - now) : 1, 0);
}

/* ---- Pause, resume, hold ----------------------------------------------- */

/* The one error line of a pause, worded for what Mailgun said. */
static const char *
forward_pause_text(long status)
{
	if (status == 401)
		return "Mailgun refused the API key; forwarding paused";
	if (status == 403)
		return "Mailgun refused to send for the domain; forwarding "
		       "paused";
	if (status == 404)
		return "Mailgun does not know the domain (check [mailgun] "
		       "domain and the region of api_base); forwarding paused";
	return "Mailgun's answer is not its API (check [mailgun] api_base); "
	       "forwarding paused";
}

/*
 * Pauses forwarding after a PAUSE answer: one error line with Mailgun's
 * text, then nothing but a probe every retry_max.
 */
static void
forward_pause(struct forward *fw, const struct mailgun_result *r, int64_t now)
{
	char in[32];

	fw->stats.paused = true;
	fw->stats.pauses++;
	fw->stats.pause_status = (int)r->http_status;
	(void)snprintf(fw->stats.pause_reason, sizeof(fw->stats.pause_reason),
	    "%s", r->message != NULL ? r->message : "");
	fw->probing = false;
	fw->probe_at = now + fw->retry_max_ms;
	log_error(forward_pause_text(r->http_status),
	    LF_INT("status", r->http_status), LF_STR("mailgun", r->message),
	    LF_STR("retry_in",
		forward_fmt_duration(fw->retry_max_ms, in, sizeof(in))),
	    LF_END);
	if (fw->pause_cb != NULL)
		fw->pause_cb(
		    (int)r->http_status, fw->stats.pause_reason, fw->pause_arg);
}

void
forward_on_pause(struct forward *fw, forward_pause_cb cb, void *arg)
{
	if (fw == NULL)
		return;
	fw->pause_cb = cb;
	fw->pause_arg = arg;
}

static void
forward_resume(struct forward *fw)
{
	fw->stats.paused = false;
	fw->stats.pause_status = 0;
	fw->stats.pause_reason[0] = '\0';
	fw->probing = false;
	log_info("forwarding resumed", LF_END);
}

/*
 * The answer to a probe: one that shows the key and the domain work (an
 * acceptance, a rejection of the message itself, a rate limit) ends the
 * pause; another PAUSE or a server or transport error waits for the next
 * probe.
 */
static void
forward_probe_done(
    struct forward *fw, const struct mailgun_result *r, int64_t now)
{
	bool works = r->outcome == MAILGUN_OK || r->outcome == MAILGUN_REJECT ||
	    (r->outcome == MAILGUN_RETRY &&
		(r->http_status == 420 || r->http_status == 429));

	if (works) {
		forward_resume(fw);
		return;
	}
	fw->probing = false;
	fw->probe_at = now + fw->retry_max_ms;
	log_debug("forwarding still paused", LF_INT("status", r->http_status),
	    LF_STR("mailgun", r->message), LF_END);
}

/* A 420/429 with a hint: nothing goes out before it (logged once). */
static void
forward_hold(
    struct forward *fw, const struct mailgun_result *r, int64_t at, int64_t now)
{
	char when[40];

	if (fw->stats.held_until <= now)
		log_warn("Mailgun rate limit; forwarding held",
		    LF_INT("status", r->http_status),
		    LF_STR(
			"until", time_format_rfc3339(at, when, sizeof(when))),
		    LF_STR("mailgun", r->message), LF_END);
	if (at > fw->stats.held_until)
		fw->stats.held_until = at;
}

/* ---- Recording --------------------------------------------------------- */

static void forward_record(struct forward_req *req);

/*
 * The record of a request is on disk (status 0): the message may be
 * picked again.  A failed record is tried again later; the message stays
 * excluded meanwhile, so an accepted message is never re-sent for it.
 */
static void
forward_record_cb(int status, void *arg)
{
	struct forward_req *req = arg;
	struct forward *fw = req->fw;

	fw->jobs--;
	req->recording = false;
	if (fw->closing) {
		forward_req_unlink(req);
		forward_req_free(req);
		forward_maybe_free(fw);
		return;
	}
	if (status != 0) {
		req->record_failures++;
		req->record_failed = true;
		req->record_retry_at = time_now_ms() +
		    forward_backoff_ms(fw->retry_min_ms, fw->retry_max_ms,
			req->record_failures, forward_rand(fw));
		log_error("forwarder cannot record a Mailgun answer; will "
			  "try again",
		    LF_INT("id", req->msg.id), LF_INT("errno", -status),
		    LF_END);
		forward_arm(fw);
		return;
	}
	forward_req_unlink(req);
	forward_req_free(req);
	forward_pump(fw);
}

/* Submits the record of req's outcome. */
static void
forward_record(struct forward_req *req)
{
	struct forward *fw = req->fw;
	int rc;

	req->record_failed = false;
	rc = store_forward_record(fw->st, &req->res, forward_record_cb, req);
	if (rc == 0) {
		req->recording = true;
		fw->jobs++;
		return;
	}
	if (rc == -ESHUTDOWN) {
		forward_req_unlink(req);
		forward_req_free(req);
		return;
	}
	req->record_failures++;
	req->record_failed = true;
	req->record_retry_at = time_now_ms() +
	    forward_backoff_ms(fw->retry_min_ms, fw->retry_max_ms,
		req->record_failures, forward_rand(fw));
	log_error("forwarder cannot record a Mailgun answer; will try again",
	    LF_INT("id", req->msg.id), LF_INT("errno", -rc), LF_END);
}

/* ---- Answers ----------------------------------------------------------- */

/* Maps the client's outcome to the store's. */
static enum store_forward_outcome
forward_outcome(enum mailgun_outcome o)
{
	switch (o) {
	case MAILGUN_OK:
		return STORE_FORWARD_OK;
	case MAILGUN_PAUSE:
		return STORE_FORWARD_PAUSE;
	case MAILGUN_REJECT:
		return STORE_FORWARD_REJECT;
	case MAILGUN_RETRY:
		break;
	}
	return STORE_FORWARD_RETRY;
}

/*
 * A RETRY answer: when to try the message again (backoff after its k-th
 * consecutive failure, or Mailgun's hint if later); a 420/429 hint holds
 * the whole forwarder too.
 */
static int64_t
forward_retry_at(struct forward *fw, const struct forward_req *req,
    const struct mailgun_result *r, int64_t now)
{
	int64_t at, hint = r->retry_at;
	char in[32];

	at = now +
	    forward_backoff_ms(fw->retry_min_ms, fw->retry_max_ms,
		req->msg.failures + 1, forward_rand(fw));
	if (hint > now + FORWARD_HINT_MAX_MS)
		hint = now + FORWARD_HINT_MAX_MS;
	if (hint > now && (r->http_status == 420 || r->http_status == 429))
		forward_hold(fw, r, hint, now);
	if (hint > at)
		at = hint;
	log_info("message deferred", LF_INT("id", req->msg.id),
	    LF_UINT("rcpts", req->msg.nrcpts), LF_INT("status", r->http_status),
	    LF_STR("retry_in", forward_fmt_duration(at - now, in, sizeof(in))),
	    LF_STR("error", r->message), LF_END);
	return at;
}

/*
 * Fills req->res from Mailgun's answer r, updating the counters and the
 * pause and hold state, and logging what a person should see.  Out of
 * memory, Mailgun's text is dropped; an accepted request whose id cannot
 * be kept is recorded as a RETRY (the message goes again: at least once).
 */
static void
forward_answer(struct forward *fw, struct forward_req *req,
    const struct mailgun_result *r, int64_t now)
{
	struct store_forward_result *res = &req->res;

	memset(res, 0, sizeof(*res));
	res->message_id = req->msg.id;
	res->rcpt_ids = req->rcpt_ids;
	res->nrcpts = req->msg.nrcpts;
	res->outcome = forward_outcome(r->outcome);
	res->at = req->started_at;
	res->now = now;
	res->via = "mime";
	res->http_status = (int)r->http_status;
	if (r->message != NULL)
		req->result = strdup(r->message);
	res->result = req->result;
	if (res->outcome == STORE_FORWARD_OK) {
		if (r->id != NULL)
			req->mailgun_id = strdup(r->id);
		res->mailgun_id = req->mailgun_id;
		if (req->mailgun_id == NULL) {
			log_error("forwarder cannot keep Mailgun's id; the "
				  "message will be sent again",
			    LF_INT("id", req->msg.id), LF_END);
			res->outcome = STORE_FORWARD_RETRY;
		}
	}

	switch (res->outcome) {
	case STORE_FORWARD_OK:
		fw->stats.sent += req->msg.nrcpts;
		log_info("message sent", LF_INT("id", req->msg.id),
		    LF_UINT("rcpts", req->msg.nrcpts),
		    LF_STR("mailgun_id", r->id), LF_END);
		break;
	case STORE_FORWARD_RETRY:
		fw->stats.retried++;
		res->next_attempt_at = forward_retry_at(fw, req, r, now);
		break;
	case STORE_FORWARD_REJECT:
		fw->stats.failed += req->msg.nrcpts;
		log_warn("Mailgun rejected the message; its recipients failed",
		    LF_INT("id", req->msg.id),
		    LF_UINT("rcpts", req->msg.nrcpts),
		    LF_INT("status", r->http_status),
		    LF_STR("mailgun", r->message), LF_END);
		break;
	case STORE_FORWARD_PAUSE:
		if (!fw->stats.paused)
			forward_pause(fw, r, now);
		break;
	}
	if (!req->probe)
		return;
	if (r->outcome == MAILGUN_PAUSE) {
		fw->probing = false;
		fw->probe_at = now + fw->retry_max_ms;
	} else if (fw->stats.paused)
		forward_probe_done(fw, r, now);
}

/*
 * The Mailgun client's callback: exactly once per request.  A request
 * canceled by forward_close (-ECANCELED) records nothing: its recipients
 * are still queued, as they were.
 */
static void
forward_mailgun_cb(const struct mailgun_result *r, void *arg)
{
	struct forward_req *req = arg;
	struct forward *fw = req->fw;

	req->in_flight = false;
	if (fw->closing || r->transport == -ECANCELED) {
		if (req->probe)
			fw->probing = false;
		forward_req_unlink(req);
		forward_req_free(req);
		if (fw->closing)
			forward_maybe_free(fw);
		else
			forward_pump(fw);
		return;
	}
	fw->stats.requests++;
	forward_answer(fw, req, r, time_now_ms());
	forward_record(req);
	forward_pump(fw);
}

/* ---- The pump ---------------------------------------------------------- */

/*
 * Sends one chunk of a message; takes the message's memory.  Returns 0 or
 * the client's error (the message is then freed and stays queued).
 */
static int
forward_start(struct forward *fw, struct store_forward_msg *m, bool probe)
{
	struct forward_req *req;
	size_t i;
	int rc = -ENOMEM;

	req = calloc(1, sizeof(*req));
	if (req == NULL)
		goto fail;
	req->fw = fw;
	req->msg = *m;
	memset(m, 0, sizeof(*m));
	req->to = calloc(req->msg.nrcpts, sizeof(*req->to));
	req->rcpt_ids = calloc(req->msg.nrcpts, sizeof(*req->rcpt_ids));
	if (req->to == NULL || req->rcpt_ids == NULL)
		goto fail;
	for (i = 0; i < req->msg.nrcpts; i++) {
		req->to[i] = req->msg.rcpts[i].address;
		req->rcpt_ids[i] = req->msg.rcpts[i].id;
	}
	req->started_at = time_now_ms();
	req->probe = probe;
	rc = mailgun_send_mime(fw->mg, req->to, req->msg.nrcpts, req->msg.data,
	    req->msg.len, req->msg.id, forward_mailgun_cb, req);
	if (rc != 0)
		goto fail;
	req->in_flight = true;
	req->next = fw->reqs;
	if (fw->reqs != NULL)
		fw->reqs->prev = req;
	fw->reqs = req;
	fw->nreqs++;
	if (probe)
		fw->probing = true;
	log_debug("message posting", LF_INT("id", req->msg.id),
	    LF_UINT("rcpts", req->msg.nrcpts), LF_UINT("bytes", req->msg.len),
	    LF_INT("probe", probe ? 1 : 0), LF_END);
	return 0;
fail:
	/* Without req, m is still the batch's, which frees it. */
	log_error("forwarder cannot start a request",
	    LF_INT("id", req != NULL ? req->msg.id : m->id),
	    LF_INT("errno", -rc), LF_END);
	forward_req_free(req);
	return rc;
}

/* The store could not be read: try again after a backoff. */
static void
forward_store_failed(struct forward *fw, int err, int64_t now)
{
	if (fw->store_failures++ == 0)
		log_error("forwarder cannot read the queue; will try again",
		    LF_INT("errno", -err), LF_END);
	fw->store_retry_at = now +
	    forward_backoff_ms(fw->retry_min_ms, fw->retry_max_ms,
		fw->store_failures, forward_rand(fw));
}

/*
 * What store_forward_next found: send each message unless the state
 * changed while the job ran (paused, held, no slot), in which case it
 * simply stays queued.  Then look again if more may be due.
 */
static void
forward_next_cb(int status, struct store_forward_batch *b, void *arg)
{
	struct forward *fw = arg;
	bool more = false, probe_due;
	int64_t now;
	size_t i;

	fw->jobs--;
	fw->next_pending = false;
	if (fw->closing) {
		store_forward_batch_free(b);
		forward_maybe_free(fw);
		return;
	}
	now = time_now_ms();
	if (status != 0) {
		forward_store_failed(fw, status, now);
		forward_arm(fw);
		return;
	}
	if (fw->store_failures > 0)
		log_info("forwarder reads the queue again", LF_END);
	fw->store_failures = 0;
	fw->store_retry_at = 0;
	fw->stats.queued = b->queued;
	fw->next_due = b->next_due;

	probe_due = fw->stats.paused && !fw->probing && now >= fw->probe_at;
	for (i = 0; i < b->nmsgs; i++) {
		if (fw->stats.paused) {
			if (!probe_due || fw->probing)
				continue;
			(void)forward_start(fw, &b->msgs[i], true);
			continue;
		}
		if (fw->stats.held_until > now || !mailgun_can_send(fw->mg)) {
			more = true;
			continue;
		}
		if (forward_start(fw, &b->msgs[i], false) != 0)
			fw->store_retry_at = now + fw->retry_min_ms;
	}
	if (probe_due && !fw->probing)
		fw->probe_at = now + fw->retry_max_ms;
	/* A full batch: more may be due. */
	if (!fw->stats.paused && b->nmsgs >= fw->next_max)
		more = true;
	store_forward_batch_free(b);
	if ((fw->again || more) && fw->store_retry_at == 0)
		forward_pump(fw);
	else
		forward_arm(fw);
}

/* Submits again the records that failed and whose time has come. */
static void
forward_retry_records(struct forward *fw, int64_t now)
{
	struct forward_req *req, *next;

	for (req = fw->reqs; req != NULL; req = next) {
		next = req->next;
		if (req->record_failed && req->record_retry_at <= now)
			forward_record(req);
	}
}

/*
 * Looks at the queue if anything may be sent now: not paused (or a probe
 * is due), not held, a request slot free, no store read already out.
 */
static void
forward_pump(struct forward *fw)
{
	const struct forward_req *req;
	int64_t now, *exclude = NULL;
	size_t n = 0, max;
	int rc;

	if (fw->closing)
		return;
	now = time_now_ms();
	forward_retry_records(fw, now);
	if (fw->next_pending) {
		fw->again = true;
		return;
	}
	if (fw->store_retry_at > now)
		goto arm;
	fw->store_retry_at = 0;
	if (fw->stats.paused) {
		if (fw->probing || now < fw->probe_at ||
		    !mailgun_can_send(fw->mg))
			goto arm;
		max = 1;
	} else {
		if (fw->stats.held_until > now || !mailgun_can_send(fw->mg))
			goto arm;
		max = fw->concurrency - mailgun_in_flight(fw->mg);
	}
	if (fw->nreqs > 0) {
		exclude = calloc(fw->nreqs, sizeof(*exclude));
		if (exclude == NULL) {
			forward_store_failed(fw, -ENOMEM, now);
			goto arm;
		}
		for (req = fw->reqs; req != NULL; req = req->next)
			exclude[n++] = req->msg.id;
	}
	rc = store_forward_next(
	    fw->st, now, max, exclude, n, forward_next_cb, fw);
	free(exclude);
	if (rc != 0) {
		if (rc != -ESHUTDOWN)
			forward_store_failed(fw, rc, now);
		goto arm;
	}
	fw->jobs++;
	fw->next_pending = true;
	fw->next_max = max;
	fw->again = false;
	return;
arm:
	forward_arm(fw);
}

/* ---- The interface ----------------------------------------------------- */

int
forward_new(struct forward **out, uv_loop_t *loop, const struct config *cfg,
    struct store *st)
{
	struct mailgun_opts opts;
	struct forward *fw = NULL;
	char err[512];
	int rc;

	*out = NULL;
	if (cfg->mailgun.api_key == NULL || cfg->mailgun.api_key[0] == '\0' ||
	    cfg->mailgun.domain == NULL || cfg->mailgun.domain[0] == '\0') {
		log_error(
		    "forwarder needs [mailgun] api_key and domain", LF_END);
		return -EINVAL;
	}
	fw = calloc(1, sizeof(*fw));
	if (fw == NULL)
		return -ENOMEM;
	fw->loop = loop;
	fw->st = st;
	fw->retry_min_ms = cfg->mailgun.retry_min_ms;
	fw->retry_max_ms = cfg->mailgun.retry_max_ms;
	fw->concurrency = cfg->mailgun.concurrency;
	fw->rnd = (uv_hrtime() ^ ((uint64_t)getpid() << 32)) |
	    1; /* xorshift needs a non-zero state */

	memset(&opts, 0, sizeof(opts));
	opts.api_base = cfg->mailgun.api_base;
	opts.domain = cfg->mailgun.domain;
	opts.api_key = cfg->mailgun.api_key;
	opts.ca_file =
	    cfg->mailgun.ca_file != NULL && cfg->mailgun.ca_file[0] != '\0'
	    ? cfg->mailgun.ca_file
	    : NULL;
	opts.timeout_ms = cfg->mailgun.timeout_ms;
	opts.concurrency = cfg->mailgun.concurrency;
	rc = mailgun_new(&fw->mg, loop, &opts, err, sizeof(err));
	if (rc != 0) {
		log_error("forwarder cannot start the Mailgun client",
		    LF_STR("error", err), LF_END);
		free(fw);
		return rc;
	}
	rc = uv_timer_init(loop, &fw->timer);
	if (rc != 0) {
		log_error("forwarder cannot create its timer",
		    LF_STR("error", uv_strerror(rc)), LF_END);
		mailgun_close(fw->mg);
		free(fw);
		return rc;
	}
	fw->timer.data = fw;
	log_info("forwarder started", LF_STR("api_base", cfg->mailgun.api_base),
	    LF_STR("domain", cfg->mailgun.domain),
	    LF_UINT("concurrency", fw->concurrency), LF_END);
	/* Look at the queue once the loop runs: an earlier run's leftovers. */
	(void)uv_timer_start(&fw->timer, forward_timer_cb, 0, 0);
	*out = fw;
	return 0;
}

void
forward_kick(struct forward *fw)
{
	if (fw == NULL || fw->closing)
		return;
	forward_pump(fw);
}

void
forward_close(struct forward *fw)
{
	struct forward_req *req, *next;

	if (fw == NULL || fw->closing)
		return;
	fw->closing = true;
	/* Runs every in-flight callback with -ECANCELED: they free. */
	mailgun_close(fw->mg);
	fw->mg = NULL;
	for (req = fw->reqs; req != NULL; req = next) {
		next = req->next;
		if (!req->recording) {
			forward_req_unlink(req);
			forward_req_free(req);
		}
	}
	(void)uv_timer_stop(&fw->timer);
	uv_close((uv_handle_t *)&fw->timer, forward_timer_close_cb);
}

struct mailgun *
forward_mailgun(const struct forward *fw)
{
	return fw != NULL && !fw->closing ? fw->mg : NULL;
}

struct forward_stats
forward_stats(const struct forward *fw)
{
	struct forward_stats s = fw->stats;

	s.in_flight = fw->mg != NULL ? mailgun_in_flight(fw->mg) : 0;
	return s;
}
