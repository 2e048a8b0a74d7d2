/*
 * reconcile: applies what Mailgun's Events API knows to recipients whose
 * final webhook never came (reconcile.h; DESIGN.md "Data flow"; FACTS.md
 * 3.7 says delivered webhooks may or may not be retried, and tells to
 * reconcile missing states through the Events API).
 *
 * A round: one uv_timer_t fires every [tracker] reconcile_interval; the
 * store names up to reconcile_batch messages (store_reconcile_due), walked
 * round-robin by message id so that a large backlog is covered over
 * several rounds; each message is looked up by its bare Mailgun id
 * (FACTS.md 1.3: with brackets the filter matches other messages), one
 * request at a time, following paging.next until a page has no items
 * (at most RECONCILE_MAX_PAGES pages).  Every item of a page goes through
 * store_event_apply() as a webhook would, under the token
 * "events-api:<event id>"; the store's own dedupe (same event-data.id and
 * event name within a day) turns an event the webhook already brought
 * into a duplicate.  The next page or message is asked for once every
 * event of the page is committed.  A round ends early when the Mailgun
 * client has no free slot (the forwarder comes first) or answers with
 * anything but a 2xx.
 *
 * Lifetime: the struct is freed once closing and nothing is outstanding:
 * the timer closed, no request in flight, no store job pending.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <uv.h>

#include "redrive/config.h"
#include "redrive/log.h"
#include "redrive/mailgun.h"
#include "redrive/reconcile.h"
#include "redrive/store.h"
#include "redrive/store_events.h"
#include "redrive/store_reconcile.h"
#include "redrive/timeutil.h"
#include "redrive/webhook.h"

/* Events per page asked for: the Events API's most (FACTS.md 1.4). */
#define RECONCILE_PAGE_LIMIT 300
/* The token prefix of events applied from the Events API. */
#define RECONCILE_TOKEN_PREFIX "events-api:"

struct reconcile {
	uv_loop_t *loop;
	const struct config *cfg;
	struct store *st;
	struct mailgun *mg;
	reconcile_kick_cb kick;
	void *kick_arg;
	uv_timer_t timer;
	struct reconcile_stats stats;
	int64_t cursor; /* the last message id of the previous batch */
	struct store_reconcile_item *items; /* this round's batch */
	size_t nitems;
	size_t cur;
	char *next_url; /* the page to read next for items[cur] */
	unsigned pages;
	unsigned pending; /* store jobs outstanding */
	bool busy;	  /* a round is running */
	bool in_flight;	  /* a request is at Mailgun */
	bool active;	  /* configured to run */
	bool closing;
	bool timer_closed;
};

/* One event on its way to the store. */
struct reconcile_apply {
	struct reconcile *rc;
	struct webhook_event ev;
	int64_t message_id;
};

static void reconcile_next_item(struct reconcile *rc);
static void reconcile_request(struct reconcile *rc, const char *query);

/* Frees rc once closing and nothing is outstanding. */
static void
reconcile_maybe_free(struct reconcile *rc)
{
	if (!rc->closing || !rc->timer_closed || rc->in_flight ||
	    rc->pending > 0)
		return;
	free(rc->items);
	free(rc->next_url);
	free(rc);
}

/* Ends the round: the next one comes with the timer. */
static void
reconcile_round_end(struct reconcile *rc)
{
	free(rc->items);
	rc->items = NULL;
	rc->nitems = rc->cur = 0;
	free(rc->next_url);
	rc->next_url = NULL;
	rc->busy = false;
}

/*
 * Percent-encodes everything but RFC 3986 section 2.3's unreserved
 * characters.  Returns false when out is too small.
 */
static bool
reconcile_escape(const char *s, char *out, size_t len)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t n = 0;
	unsigned char c;

	for (; *s != '\0'; s++) {
		c = (unsigned char)*s;
		if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
		    (c >= '0' && c <= '9') || c == '-' || c == '.' ||
		    c == '_' || c == '~') {
			if (n + 1 >= len)
				return false;
			out[n++] = (char)c;
			continue;
		}
		if (n + 3 >= len)
			return false;
		out[n++] = '%';
		out[n++] = hex[c >> 4];
		out[n++] = hex[c & 15];
	}
	out[n] = '\0';
	return true;
}

/* After a page's events are committed: its next page, or the next item. */
static void
reconcile_page_done(struct reconcile *rc)
{
	char *url;

	if (rc->closing)
		return;
	if (rc->next_url != NULL) {
		url = rc->next_url;
		rc->next_url = NULL;
		reconcile_request(rc, url);
		free(url);
		return;
	}
	rc->cur++;
	reconcile_next_item(rc);
}

/* An event committed (or not): counts it and logs what it changed. */
static void
reconcile_apply_cb(int status, const struct store_event_result *r, void *arg)
{
	struct reconcile_apply *a = arg;
	struct reconcile *rc = a->rc;
	const struct webhook_event *ev = &a->ev;

	rc->pending--;
	if (status < 0) {
		rc->stats.errors++;
		log_warn("reconcile: event not recorded",
		    LF_INT("id", a->message_id), LF_STR("event", ev->event),
		    LF_STR("error", strerror(-status)), LF_END);
	} else if (r->outcome == STORE_EVENT_RECORDED) {
		rc->stats.events++;
		if (r->changed) {
			rc->stats.reconciled++;
			if (strcmp(r->status, "delivered") == 0)
				rc->stats.delivered++;
			if (r->gave_up)
				rc->stats.failed++;
			if (r->next_attempt_at > 0)
				rc->stats.redrives++;
			log_info("recipient reconciled from the Events API",
			    LF_INT("id", r->message_id),
			    LF_STR("recipient", ev->recipient),
			    LF_STR("event", ev->event),
			    LF_STR("severity", ev->severity),
			    LF_STR("status", r->status),
			    LF_STR("event_id", ev->event_id), LF_END);
		}
		if (r->next_attempt_at > 0 && rc->kick != NULL && !rc->closing)
			rc->kick(rc->kick_arg);
	}
	webhook_event_clear(&a->ev);
	free(a);
	if (rc->pending == 0)
		reconcile_page_done(rc);
	reconcile_maybe_free(rc);
}

/* Queues one Events API item for the store.  Returns true when queued. */
static bool
reconcile_apply_item(struct reconcile *rc, json_t *item)
{
	struct reconcile_apply *a = NULL;
	const char *id;
	char token[WEBHOOK_TOKEN_MAX];
	char *text = NULL;
	int n, err;

	id = json_string_value(json_object_get(item, "id"));
	if (!json_is_object(item) || id == NULL || id[0] == '\0')
		return false;
	n = snprintf(token, sizeof(token), "%s%s", RECONCILE_TOKEN_PREFIX, id);
	if (n < 0 || (size_t)n >= sizeof(token))
		return false;
	text = json_dumps(item, JSON_COMPACT);
	a = calloc(1, sizeof(*a));
	if (text == NULL || a == NULL)
		goto fail;
	a->rc = rc;
	a->message_id = rc->items[rc->cur].message_id;
	err = webhook_event_from_data(text, strlen(text), token, &a->ev);
	if (err != 0 || a->ev.event == NULL)
		goto fail;
	err = store_event_apply(
	    rc->st, &a->ev, rc->cfg, time_now_ms(), reconcile_apply_cb, a);
	if (err != 0)
		goto fail;
	rc->pending++;
	free(text);
	return true;
fail:
	rc->stats.errors++;
	if (a != NULL)
		webhook_event_clear(&a->ev);
	free(a);
	free(text);
	return false;
}

/*
 * A page came: applies its items and remembers paging.next while the page
 * had items; a page without items ends the message.
 */
static void
reconcile_page(struct reconcile *rc, const char *body, size_t len)
{
	json_error_t jerr;
	json_t *root, *items, *item;
	const char *next;
	size_t i, n;

	root = json_loadb(body, len, 0, &jerr);
	items = json_object_get(root, "items");
	if (!json_is_array(items)) {
		rc->stats.errors++;
		log_warn("reconcile: Events API answer is not a page",
		    LF_INT("id", rc->items[rc->cur].message_id), LF_END);
		goto out;
	}
	n = json_array_size(items);
	json_array_foreach(items, i, item)(void) reconcile_apply_item(rc, item);
	next = json_string_value(
	    json_object_get(json_object_get(root, "paging"), "next"));
	if (n > 0 && next != NULL && next[0] != '\0' &&
	    rc->pages < RECONCILE_MAX_PAGES) {
		rc->next_url = strdup(next);
		if (rc->next_url == NULL)
			rc->stats.errors++;
	}
out:
	json_decref(root);
}

/* The answer to an Events API request. */
static void
reconcile_events_cb(
    const struct mailgun_result *r, const char *body, size_t len, void *arg)
{
	struct reconcile *rc = arg;

	rc->in_flight = false;
	if (rc->closing) {
		reconcile_maybe_free(rc);
		return;
	}
	rc->stats.requests++;
	if (r->outcome != MAILGUN_OK) {
		rc->stats.errors++;
		log_warn("reconcile: Events API request failed; trying again "
			 "next round",
		    LF_INT("id", rc->items[rc->cur].message_id),
		    LF_INT("status", r->http_status),
		    LF_STR("reason", r->message), LF_END);
		reconcile_round_end(rc);
		return;
	}
	reconcile_page(rc, body != NULL ? body : "", len);
	if (rc->pending == 0)
		reconcile_page_done(rc);
}

/* Asks for a page (a query string, or a paging URL). */
static void
reconcile_request(struct reconcile *rc, const char *query)
{
	int err;

	if (!mailgun_can_send(rc->mg)) {
		/* The forwarder comes first; this message waits a round. */
		rc->cursor = rc->items[rc->cur].message_id - 1;
		reconcile_round_end(rc);
		return;
	}
	err = mailgun_events(rc->mg, query, reconcile_events_cb, rc);
	if (err != 0) {
		rc->stats.errors++;
		log_warn("reconcile: Events API request not sent",
		    LF_INT("id", rc->items[rc->cur].message_id),
		    LF_STR("error", strerror(-err)), LF_END);
		if (err == -EPERM) {
			/* A paging URL not Mailgun's: skip this message. */
			rc->cur++;
			reconcile_next_item(rc);
			return;
		}
		reconcile_round_end(rc);
		return;
	}
	rc->pages++;
	rc->in_flight = true;
}

/* Looks up items[cur], or ends the round after the last. */
static void
reconcile_next_item(struct reconcile *rc)
{
	char esc[3 * sizeof(rc->items[0].mailgun_id) + 1];
	char query[sizeof(esc) + 64];
	const struct store_reconcile_item *it;

	if (rc->closing)
		return;
	if (rc->cur >= rc->nitems) {
		reconcile_round_end(rc);
		return;
	}
	it = &rc->items[rc->cur];
	if (!reconcile_escape(it->mailgun_id, esc, sizeof(esc))) {
		rc->cur++;
		reconcile_next_item(rc);
		return;
	}
	(void)snprintf(query, sizeof(query), "message-id=%s&limit=%d", esc,
	    RECONCILE_PAGE_LIMIT);
	rc->stats.lookups++;
	rc->pages = 0;
	log_debug("reconcile: looking up", LF_INT("id", it->message_id),
	    LF_STR("mailgun_id", it->mailgun_id), LF_END);
	reconcile_request(rc, query);
}

/* The store named this round's messages. */
static void
reconcile_due_cb(
    int status, const struct store_reconcile_item *items, size_t n, void *arg)
{
	struct reconcile *rc = arg;

	rc->pending--;
	if (rc->closing || status < 0) {
		if (status < 0)
			rc->stats.errors++;
		rc->busy = false;
		reconcile_maybe_free(rc);
		return;
	}
	if (n == 0) {
		rc->cursor = 0; /* walked to the end: start over next round */
		rc->busy = false;
		return;
	}
	rc->items = calloc(n, sizeof(*items));
	if (rc->items == NULL) {
		rc->busy = false;
		return;
	}
	memcpy(rc->items, items, n * sizeof(*items));
	rc->nitems = n;
	rc->cur = 0;
	rc->cursor =
	    n < rc->cfg->tracker.reconcile_batch ? 0 : items[n - 1].message_id;
	reconcile_next_item(rc);
}

/* A round starts unless one is running or the client is busy. */
static void
reconcile_timer_cb(uv_timer_t *t)
{
	struct reconcile *rc = t->data;
	int64_t before;
	int err;

	if (rc->busy || rc->closing || !mailgun_can_send(rc->mg))
		return;
	rc->stats.rounds++;
	before = time_now_ms() - rc->cfg->tracker.reconcile_after_ms;
	err = store_reconcile_due(rc->st, before, rc->cursor,
	    rc->cfg->tracker.reconcile_batch, reconcile_due_cb, rc);
	if (err != 0) {
		rc->stats.errors++;
		return;
	}
	rc->pending++;
	rc->busy = true;
}

static void
reconcile_timer_close_cb(uv_handle_t *h)
{
	struct reconcile *rc = h->data;

	rc->timer_closed = true;
	reconcile_maybe_free(rc);
}

int
reconcile_new(struct reconcile **out, uv_loop_t *loop, const struct config *cfg,
    struct store *st, struct mailgun *mg, reconcile_kick_cb kick,
    void *kick_arg)
{
	struct reconcile *rc;
	uint64_t every;
	int err;

	*out = NULL;
	rc = calloc(1, sizeof(*rc));
	if (rc == NULL)
		return -ENOMEM;
	rc->loop = loop;
	rc->cfg = cfg;
	rc->st = st;
	rc->mg = mg;
	rc->kick = kick;
	rc->kick_arg = kick_arg;
	err = uv_timer_init(loop, &rc->timer);
	if (err != 0) {
		free(rc);
		return err;
	}
	rc->timer.data = rc;
	rc->active = mg != NULL && cfg->tracker.reconcile_after_ms > 0;
	if (rc->active) {
		every = (uint64_t)cfg->tracker.reconcile_interval_ms;
		err = uv_timer_start(
		    &rc->timer, reconcile_timer_cb, every, every);
		if (err != 0) {
			/* Freed in the close callback. */
			rc->closing = true;
			uv_close((uv_handle_t *)&rc->timer,
			    reconcile_timer_close_cb);
			return err;
		}
		log_info("reconciliation on",
		    LF_INT("after_ms", cfg->tracker.reconcile_after_ms),
		    LF_INT("interval_ms", cfg->tracker.reconcile_interval_ms),
		    LF_UINT("batch", cfg->tracker.reconcile_batch), LF_END);
	}
	*out = rc;
	return 0;
}

void
reconcile_close(struct reconcile *rc)
{
	if (rc == NULL || rc->closing)
		return;
	rc->closing = true;
	uv_close((uv_handle_t *)&rc->timer, reconcile_timer_close_cb);
}

struct reconcile_stats
reconcile_stats(const struct reconcile *rc)
{
	return rc->stats;
}
