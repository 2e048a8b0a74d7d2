/*
 * tracker: routes the tracker's HTTP requests.  POST on [tracker] path is
 * a Mailgun webhook: verified and parsed by webhook_parse(), recorded by
 * store_event_apply() in one transaction with its token, and answered only
 * after the commit, so that a 200 always means "recorded" and Mailgun
 * retries anything else (FACTS.md 3.7).  GET /healthz tells whether the
 * store takes writes.  Everything else is 404 or 405.
 *
 * A request waiting for the store is a struct tracker_req: it owns the
 * parsed event until the store's callback, which answers through the
 * exchange (a no-op when the connection is gone) and frees it.
 *
 * GET /healthz pings the store (store_health_ping: an empty job of the
 * next group commit, so it proves the write lock and the commit) and
 * answers JSON with the store, the forwarder (running, paused and why, or
 * off), the relay and the tracker; 503 when the store cannot commit.
 * GET /metrics answers Prometheus' text format (core/metrics.c) from the
 * registry redrived filled.  Neither is counted in the webhook answers.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "redrive/config.h"
#include "redrive/forward.h"
#include "redrive/http_server.h"
#include "redrive/log.h"
#include "redrive/metrics.h"
#include "redrive/smtp_server.h"
#include "redrive/store.h"
#include "redrive/store_events.h"
#include "redrive/store_health.h"
#include "redrive/timeutil.h"
#include "redrive/tracker.h"
#include "redrive/webhook.h"

struct tracker {
	uv_loop_t *loop;
	const struct config *cfg;
	struct store *store;
	struct http_server *http;
	const struct metrics_registry *reg;
	struct tracker_stats stats;
	unsigned pending; /* requests waiting for the store */
	bool http_closed;
	bool stopping;
	void (*done)(void *arg);
	void *done_arg;
};

struct tracker_req {
	struct tracker *t;
	struct http_exchange *x;
	struct webhook_event ev;
	char peer[64];
};

static void
tracker_count(struct tracker *t, int status)
{
	size_t i;

	switch (status) {
	case 200:
		i = 1;
		break;
	case 400:
		i = 2;
		break;
	case 401:
		i = 3;
		break;
	case 404:
		t->stats.not_found++;
		i = 4;
		break;
	case 405:
		t->stats.bad_method++;
		i = 4;
		break;
	case 503:
		i = 5;
		break;
	default:
		i = 0;
		break;
	}
	t->stats.answers[i]++;
}

/* Answers with a short plain-text body. */
static void
tracker_answer(struct tracker *t, struct http_exchange *x, int status,
    const char *text, const char *extra)
{
	char body[256];
	int n;

	n = snprintf(body, sizeof(body), "%s\n", text);
	if (n < 0 || (size_t)n >= sizeof(body))
		n = 0;
	tracker_count(t, status);
	http_respond(
	    x, status, "text/plain; charset=utf-8", body, (size_t)n, extra);
}

static void
tracker_check_done(struct tracker *t)
{
	void (*done)(void *);
	void *arg;

	if (!t->stopping || !t->http_closed || t->pending > 0)
		return;
	done = t->done;
	arg = t->done_arg;
	free(t);
	if (done != NULL)
		done(arg);
}

static void
tracker_event_cb(int status, const struct store_event_result *r, void *arg)
{
	struct tracker_req *req = arg;
	struct tracker *t = req->t;
	const struct webhook_event *ev = &req->ev;

	t->pending--;
	if (status < 0) {
		log_warn("webhook not recorded; Mailgun will retry",
		    LF_STR("event", ev->event),
		    LF_STR("error", strerror(-status)), LF_END);
		tracker_answer(t, req->x, 503, "store unavailable, retry later",
		    "Retry-After: 60\r\n");
		goto out;
	}
	switch (r->outcome) {
	case STORE_EVENT_RECORDED:
		t->stats.recorded++;
		if (r->changed && strcmp(r->status, "delivered") == 0)
			t->stats.delivered++;
		if (r->next_attempt_at > 0)
			t->stats.redrives_scheduled++;
		if (r->gave_up)
			t->stats.gave_up++;
		log_info("webhook recorded", LF_STR("event", ev->event),
		    LF_STR("severity", ev->severity),
		    LF_STR("reason", ev->reason), LF_INT("id", r->message_id),
		    LF_STR("recipient", ev->recipient),
		    LF_STR("status", r->status), LF_END);
		if (r->next_attempt_at > 0) {
			char when[40];

			time_format_rfc3339(
			    r->next_attempt_at, when, sizeof(when));
			log_info("re-drive scheduled",
			    LF_INT("id", r->message_id),
			    LF_STR("recipient", ev->recipient),
			    LF_STR("at", when), LF_STR("why", r->why), LF_END);
		}
		if (r->gave_up)
			log_warn("recipient failed",
			    LF_INT("id", r->message_id),
			    LF_STR("recipient", ev->recipient),
			    LF_STR("why", r->why), LF_END);
		tracker_answer(t, req->x, 200, "recorded", NULL);
		break;
	case STORE_EVENT_DUPLICATE:
		t->stats.duplicates++;
		tracker_answer(t, req->x, 200, "duplicate", NULL);
		break;
	case STORE_EVENT_UNKNOWN:
		t->stats.ignored++;
		log_info("webhook ignored: unknown message",
		    LF_STR("event", ev->event),
		    LF_STR("message_id", ev->message_id), LF_END);
		tracker_answer(
		    t, req->x, 200, "ignored: unknown message", NULL);
		break;
	case STORE_EVENT_EARLY:
		log_info("webhook early: its send is not recorded yet; "
			 "Mailgun will retry",
		    LF_STR("event", ev->event), LF_INT("id", r->message_id),
		    LF_STR("mailgun_id", ev->message_id), LF_END);
		tracker_answer(t, req->x, 503, "send not recorded yet, retry",
		    "Retry-After: 60\r\n");
		break;
	case STORE_EVENT_OTHER_COPY:
		t->stats.recorded++;
		log_info("webhook about a copy whose acceptance was never "
			 "recorded: kept, state unchanged",
		    LF_STR("event", ev->event), LF_INT("id", r->message_id),
		    LF_STR("recipient", ev->recipient),
		    LF_STR("mailgun_id", ev->message_id), LF_END);
		tracker_answer(t, req->x, 200, "recorded: other copy", NULL);
		break;
	case STORE_EVENT_MISMATCH:
	default:
		log_warn("webhook refused: token reused with other event data",
		    LF_STR("client", req->peer), LF_END);
		tracker_answer(t, req->x, 401, "token already used", NULL);
		break;
	}
out:
	webhook_event_clear(&req->ev);
	free(req);
	tracker_check_done(t);
}

static void
tracker_webhook(
    struct tracker *t, struct http_exchange *x, const struct http_request *hr)
{
	const struct config *cfg = t->cfg;
	struct tracker_req *req;
	enum webhook_result wr;
	int64_t now = time_now_ms();
	int rc;

	req = calloc(1, sizeof(*req));
	if (req == NULL) {
		tracker_answer(t, x, 503, "out of memory", NULL);
		return;
	}
	req->t = t;
	req->x = x;
	snprintf(req->peer, sizeof(req->peer), "%s", hr->peer);
	wr = webhook_parse(http_request_header(hr, "Content-Type"), hr->body,
	    hr->body_len, (const char *const *)cfg->mailgun.signing_keys,
	    cfg->mailgun.nsigning_keys, cfg->tracker.timestamp_window_ms, now,
	    &req->ev);
	switch (wr) {
	case WEBHOOK_OK:
		break;
	case WEBHOOK_MALFORMED:
		log_info("webhook refused: malformed",
		    LF_STR("client", hr->peer), LF_END);
		tracker_answer(t, x, 400, "malformed webhook", NULL);
		goto fail;
	case WEBHOOK_STALE:
		log_warn("webhook refused: timestamp outside the window",
		    LF_STR("client", hr->peer), LF_END);
		tracker_answer(t, x, 401, "stale timestamp", NULL);
		goto fail;
	case WEBHOOK_NOMEM:
		tracker_answer(t, x, 503, "out of memory", NULL);
		goto fail;
	case WEBHOOK_BAD_SIGNATURE:
	default:
		log_warn("webhook refused: bad signature",
		    LF_STR("client", hr->peer), LF_END);
		tracker_answer(t, x, 401, "bad signature", NULL);
		goto fail;
	}
	/*
	 * Every Mailgun event names itself (FACTS.md 3.3): a well-signed
	 * event-data object without "event" is malformed input, not a store
	 * failure (store_event_apply() would refuse it, and a 503 brings
	 * Mailgun's retries for hours).
	 */
	if (req->ev.event == NULL || req->ev.event[0] == '\0') {
		log_info("webhook refused: no event name",
		    LF_STR("client", hr->peer), LF_END);
		tracker_answer(t, x, 400, "malformed webhook", NULL);
		goto fail;
	}
	rc = store_event_apply(
	    t->store, &req->ev, cfg, now, tracker_event_cb, req);
	if (rc < 0) {
		tracker_answer(t, x, 503, "store unavailable, retry later",
		    "Retry-After: 60\r\n");
		goto fail;
	}
	t->pending++;
	return;
fail:
	webhook_event_clear(&req->ev);
	free(req);
}

/* A GET /healthz waiting for its store ping. */
struct tracker_health {
	struct tracker *t;
	struct http_exchange *x;
};

/* The forwarder's state for /healthz: "running", "paused: ...", "off". */
static void
tracker_health_forwarder(const struct tracker *t, char *buf, size_t len)
{
	struct forward_stats fs;
	const struct metrics_registry *reg = t->reg;

	if (reg == NULL || reg->forward == NULL ||
	    !reg->forward(reg->arg, &fs)) {
		(void)snprintf(buf, len, "off");
		return;
	}
	if (!fs.paused) {
		(void)snprintf(buf, len, "running");
		return;
	}
	(void)snprintf(buf, len, "paused: %d %s", fs.pause_status,
	    fs.pause_reason[0] != '\0' ? fs.pause_reason : "(no text)");
}

/*
 * Answers /healthz: 200 while the store commits (status "degraded" when
 * the forwarder is paused), 503 when it does not.
 */
static void
tracker_health_cb(int status, void *arg)
{
	struct tracker_health *h = arg;
	struct tracker *t = h->t;
	const struct metrics_registry *reg = t->reg;
	struct smtp_server_stats ss;
	char fwd[FORWARD_REASON_MAX + 64], store[128];
	bool paused, relay;
	json_t *o;
	char *text = NULL;
	int code;

	t->pending--;
	tracker_health_forwarder(t, fwd, sizeof(fwd));
	paused = strncmp(fwd, "paused", 6) == 0;
	relay = reg != NULL && reg->smtp != NULL && reg->smtp(reg->arg, &ss);
	if (status == 0)
		(void)snprintf(store, sizeof(store), "ok");
	else
		(void)snprintf(
		    store, sizeof(store), "error: %s", strerror(-status));
	code = status == 0 ? 200 : 503;
	o = json_pack("{s:s, s:s, s:s, s:s, s:s}", "status",
	    status == 0 && !paused ? "ok" : "degraded", "store", store,
	    "forwarder", fwd, "relay", relay ? "ok" : "off", "tracker", "ok");
	if (o != NULL)
		text = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	if (text == NULL) {
		http_respond(h->x, 503, "text/plain; charset=utf-8",
		    "out of memory\n", 14, NULL);
	} else {
		if (status != 0)
			log_warn("healthz: the store cannot commit",
			    LF_STR("error", strerror(-status)), LF_END);
		http_respond(h->x, code, "application/json", text, strlen(text),
		    "Cache-Control: no-store\r\n");
	}
	free(text);
	free(h);
	tracker_check_done(t);
}

static void
tracker_healthz(struct tracker *t, struct http_exchange *x)
{
	static const char closed[] =
	    "{\"status\":\"degraded\",\"store\":\"error: closed\"}\n";
	struct tracker_health *h;
	int rc;

	h = calloc(1, sizeof(*h));
	if (h == NULL) {
		http_respond(x, 503, "text/plain; charset=utf-8",
		    "out of memory\n", 14, NULL);
		return;
	}
	h->t = t;
	h->x = x;
	rc = store_health_ping(t->store, tracker_health_cb, h);
	if (rc < 0) {
		free(h);
		http_respond(x, 503, "application/json", closed,
		    sizeof(closed) - 1, NULL);
		return;
	}
	t->pending++;
}

/* Answers /metrics in Prometheus' text format 0.0.4. */
static void
tracker_metrics(struct tracker *t, struct http_exchange *x)
{
	struct metrics_buf b;
	struct tracker_stats ts = tracker_stats(t);

	memset(&b, 0, sizeof(b));
	if (metrics_render(&b, t->reg, &ts) != 0) {
		http_respond(x, 503, "text/plain; charset=utf-8",
		    "out of memory\n", 14, NULL);
		goto out;
	}
	http_respond(x, 200, METRICS_CONTENT_TYPE, b.data, b.len,
	    "Cache-Control: no-store\r\n");
out:
	free(b.data);
}

static void
tracker_handler(
    struct http_exchange *x, const struct http_request *hr, void *arg)
{
	struct tracker *t = arg;
	bool hook = strcmp(hr->path, t->cfg->tracker.path) == 0;
	bool health = strcmp(hr->path, "/healthz") == 0 ||
	    strcmp(hr->path, "/metrics") == 0;

	if (t->stopping) {
		tracker_answer(
		    t, x, 503, "shutting down", "Retry-After: 60\r\n");
		return;
	}
	if (hook && strcmp(hr->method, "POST") == 0) {
		tracker_webhook(t, x, hr);
		return;
	}
	if (health && strcmp(hr->method, "GET") == 0) {
		if (hr->path[1] == 'h')
			tracker_healthz(t, x);
		else
			tracker_metrics(t, x);
		return;
	}
	if (hook) {
		tracker_answer(
		    t, x, 405, "method not allowed", "Allow: POST\r\n");
		return;
	}
	if (health) {
		tracker_answer(
		    t, x, 405, "method not allowed", "Allow: GET\r\n");
		return;
	}
	tracker_answer(t, x, 404, "not found", NULL);
}

int
tracker_start(struct tracker **out, uv_loop_t *loop, const struct config *cfg,
    struct store *st, const struct metrics_registry *reg)
{
	struct http_server_opts opts;
	struct tracker *t;
	int rc;

	*out = NULL;
	t = calloc(1, sizeof(*t));
	if (t == NULL)
		return -ENOMEM;
	t->loop = loop;
	t->cfg = cfg;
	t->store = st;
	t->reg = reg;
	memset(&opts, 0, sizeof(opts));
	opts.listen = cfg->tracker.listen;
	opts.max_body = cfg->tracker.max_body;
	opts.header_timeout_ms = 10000;
	opts.idle_timeout_ms = 60000;
	opts.max_connections = 512;
	/* As the relay keeps (relay/smtp_session.c); fdguard.h the rest. */
	opts.fd_reserve = 16 + cfg->mailgun.concurrency;
	rc = http_server_start(&t->http, loop, &opts, tracker_handler, t);
	if (rc < 0) {
		free(t);
		return rc;
	}
	if (cfg->mailgun.nsigning_keys == 0)
		log_warn("no [mailgun] webhook_signing_key: every webhook will "
			 "be refused with 401",
		    LF_END);
	log_info("tracker listening", LF_STR("listen", cfg->tracker.listen),
	    LF_INT("port", http_server_port(t->http)),
	    LF_STR("path", cfg->tracker.path), LF_END);
	*out = t;
	return 0;
}

static void
tracker_http_done_cb(void *arg)
{
	struct tracker *t = arg;

	t->http = NULL;
	t->http_closed = true;
	tracker_check_done(t);
}

void
tracker_shutdown(struct tracker *t, void (*done)(void *arg), void *arg)
{
	if (t->stopping)
		return;
	t->stopping = true;
	t->done = done;
	t->done_arg = arg;
	http_server_shutdown(t->http, tracker_http_done_cb, t);
}

struct tracker_stats
tracker_stats(const struct tracker *t)
{
	struct tracker_stats s = t->stats;
	struct http_server_stats hs;

	if (t->http != NULL) {
		hs = http_server_stats(t->http);
		s.too_large = hs.too_large;
		s.refused = hs.refused;
	}
	return s;
}

int
tracker_port(const struct tracker *t)
{
	return http_server_port(t->http);
}
