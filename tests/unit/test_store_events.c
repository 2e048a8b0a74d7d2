/*
 * Unit tests of the tracker's store jobs (core/store_events.c) on a real
 * store in a mkdtemp directory, driven through the store thread on a libuv
 * loop: messages go in with store_submit(), their first send is recorded
 * with store_forward_record(), events go through store_event_apply(), and
 * a connection of the test's own reads what was committed.  Covered: the
 * token (duplicate, mismatch, remembered only with a known message), the
 * correlation (redrive-id, bare and bracketed Mailgun ids, a resend's id,
 * the address with its case ignored, unknown messages and recipients), the
 * state machine on out-of-order and repeated events, the retry policy's
 * outcomes with config_defaults() (retrying 4^n minutes after the failure,
 * bounce, max_attempts), finished_at, and the re-drive jobs
 * (store_redrive_next, _requeue, _record) and store_db_retry.  Every test
 * ends with uv_loop_close() == 0.
 */
#include <errno.h>
#include <dirent.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>
#include <uv.h>

#include "redrive/config.h"
#include "redrive/log.h"
#include "redrive/store.h"
#include "redrive/store_events.h"
#include "redrive/webhook.h"

/* 2026-09-19T...Z: a fixed "now" so that every time is exact. */
#define T0 1790000000000LL
#define MINUTE 60000LL
#define HOUR (60 * MINUTE)

struct fixture {
	char dir[64];
	char path[128];
	char logpath[128];
	int logfd;
	int oldfd;
	uv_loop_t loop;
	struct store *st;
	struct config cfg;
	sqlite3 *db; /* the test's own connection */
};

/* ---- Setup ------------------------------------------------------------- */

static int
test_setup(void **state)
{
	struct fixture *f;
	char err[512];

	f = calloc(1, sizeof(*f));
	if (f == NULL)
		return -1;
	snprintf(f->dir, sizeof(f->dir), "/tmp/test_store_events.XXXXXX");
	if (mkdtemp(f->dir) == NULL) {
		free(f);
		return -1;
	}
	snprintf(f->path, sizeof(f->path), "%s/redrive.db", f->dir);
	snprintf(f->logpath, sizeof(f->logpath), "%s/log", f->dir);
	f->logfd =
	    open(f->logpath, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (f->logfd < 0 || uv_loop_init(&f->loop) != 0) {
		free(f);
		return -1;
	}
	f->oldfd = log_set_fd(f->logfd);
	if (config_defaults(&f->cfg) != 0 ||
	    store_open(&f->st, f->path, &f->loop, err, sizeof(err)) != 0 ||
	    sqlite3_open_v2(f->path, &f->db, SQLITE_OPEN_READONLY, NULL) !=
		SQLITE_OK) {
		fprintf(stderr, "setup: %s\n", err);
		return -1;
	}
	sqlite3_busy_timeout(f->db, 5000);
	*state = f;
	return 0;
}

static int
test_teardown(void **state)
{
	struct fixture *f = *state;
	char p[512];
	struct dirent *de;
	DIR *d;

	sqlite3_close(f->db);
	store_close(f->st);
	assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
	assert_int_equal(uv_loop_close(&f->loop), 0);
	config_free(&f->cfg);
	log_set_fd(f->oldfd);
	close(f->logfd);
	d = opendir(f->dir);
	if (d != NULL) {
		while ((de = readdir(d)) != NULL) {
			if (strcmp(de->d_name, ".") == 0 ||
			    strcmp(de->d_name, "..") == 0)
				continue;
			snprintf(p, sizeof(p), "%s/%s", f->dir, de->d_name);
			unlink(p);
		}
		closedir(d);
	}
	rmdir(f->dir);
	free(f);
	return 0;
}

/* Runs the loop until *calls reaches want. */
static void
test_wait(struct fixture *f, const int *calls, int want)
{
	while (*calls < want)
		(void)uv_run(&f->loop, UV_RUN_ONCE);
}

/* ---- Reading what was committed ---------------------------------------- */

/* The one integer a query with up to one integer parameter returns. */
static int64_t
test_int(struct fixture *f, const char *sql, int64_t a)
{
	sqlite3_stmt *s = NULL;
	int64_t v = 0;

	assert_int_equal(
	    sqlite3_prepare_v2(f->db, sql, -1, &s, NULL), SQLITE_OK);
	if (sqlite3_bind_parameter_count(s) > 0)
		sqlite3_bind_int64(s, 1, a);
	assert_int_equal(sqlite3_step(s), SQLITE_ROW);
	v = sqlite3_column_int64(s, 0);
	sqlite3_finalize(s);
	return v;
}

/* True when the query's one value is SQL NULL. */
static bool
test_is_null(struct fixture *f, const char *sql, int64_t a)
{
	sqlite3_stmt *s = NULL;
	bool null;

	assert_int_equal(
	    sqlite3_prepare_v2(f->db, sql, -1, &s, NULL), SQLITE_OK);
	sqlite3_bind_int64(s, 1, a);
	assert_int_equal(sqlite3_step(s), SQLITE_ROW);
	null = sqlite3_column_type(s, 0) == SQLITE_NULL;
	sqlite3_finalize(s);
	return null;
}

/* Copies the one text value of a query into buf ("(null)" for NULL). */
static const char *
test_text(struct fixture *f, const char *sql, int64_t a, char *buf, size_t len)
{
	sqlite3_stmt *s = NULL;
	const unsigned char *t;

	assert_int_equal(
	    sqlite3_prepare_v2(f->db, sql, -1, &s, NULL), SQLITE_OK);
	sqlite3_bind_int64(s, 1, a);
	assert_int_equal(sqlite3_step(s), SQLITE_ROW);
	t = sqlite3_column_text(s, 0);
	snprintf(buf, len, "%s", t != NULL ? (const char *)t : "(null)");
	sqlite3_finalize(s);
	return buf;
}

/* A recipient as committed. */
struct rrow {
	char status[16];
	int attempts;
	char reason[512];
	char last_error[512];
	char mailgun_id[128];
	int64_t next_attempt_at; /* 0: NULL */
	int64_t last_event_at;	 /* 0: NULL */
};

static void
test_rcpt(struct fixture *f, int64_t rid, struct rrow *r)
{
	sqlite3_stmt *s = NULL;
	const unsigned char *t;

	memset(r, 0, sizeof(*r));
	assert_int_equal(sqlite3_prepare_v2(f->db,
			     "SELECT status, attempts, reason, last_error,"
			     " mailgun_id, next_attempt_at, last_event_at"
			     " FROM recipients WHERE id = ?1",
			     -1, &s, NULL),
	    SQLITE_OK);
	sqlite3_bind_int64(s, 1, rid);
	assert_int_equal(sqlite3_step(s), SQLITE_ROW);
	t = sqlite3_column_text(s, 0);
	snprintf(r->status, sizeof(r->status), "%s", (const char *)t);
	r->attempts = sqlite3_column_int(s, 1);
	t = sqlite3_column_text(s, 2);
	snprintf(r->reason, sizeof(r->reason), "%s",
	    t != NULL ? (const char *)t : "(null)");
	t = sqlite3_column_text(s, 3);
	snprintf(r->last_error, sizeof(r->last_error), "%s",
	    t != NULL ? (const char *)t : "(null)");
	t = sqlite3_column_text(s, 4);
	snprintf(r->mailgun_id, sizeof(r->mailgun_id), "%s",
	    t != NULL ? (const char *)t : "(null)");
	r->next_attempt_at = sqlite3_column_int64(s, 5);
	r->last_event_at = sqlite3_column_int64(s, 6);
	sqlite3_finalize(s);
}

static int64_t
test_nevents(struct fixture *f)
{
	return test_int(f, "SELECT count(*) FROM events", 0);
}

static int64_t
test_ntokens(struct fixture *f)
{
	return test_int(f, "SELECT count(*) FROM webhook_tokens", 0);
}

/* ---- Putting messages in ------------------------------------------------ */

static void
test_submit_cb(int status, int64_t id, void *arg)
{
	int64_t *out = arg;

	assert_int_equal(status, 0);
	*out = id;
}

/*
 * Stores a message to the n recipients and returns its id; rids gets the
 * recipient ids in envelope order.
 */
static int64_t
test_message(
    struct fixture *f, const char *const *rcpts, size_t n, int64_t *rids)
{
	struct store_new_message m;
	static const char data[] = "Subject: t\r\n\r\nhello\r\n";
	int64_t id = 0;
	size_t i;

	memset(&m, 0, sizeof(m));
	m.received_at = T0 - 10 * MINUTE;
	m.mail_from = "app@example.com";
	m.rcpts = rcpts;
	m.nrcpts = n;
	m.client_addr = "127.0.0.1";
	m.data = data;
	m.len = sizeof(data) - 1;
	assert_int_equal(store_submit(f->st, &m, test_submit_cb, &id), 0);
	while (id == 0)
		uv_run(&f->loop, UV_RUN_ONCE);
	for (i = 0; i < n; i++)
		rids[i] = test_int(f,
			      "SELECT min(id) FROM recipients"
			      " WHERE message_id = ?1",
			      id) +
		    (int64_t)i;
	return id;
}

static void
test_record_cb(int status, void *arg)
{
	int *calls = arg;

	assert_int_equal(status, 0);
	(*calls)++;
}

/* Records the first send of message mid as Mailgun's acceptance. */
static void
test_sent(struct fixture *f, int64_t mid, const int64_t *rids, size_t n,
    const char *mgid, int64_t at)
{
	struct store_forward_result r;
	int calls = 0;

	memset(&r, 0, sizeof(r));
	r.message_id = mid;
	r.rcpt_ids = rids;
	r.nrcpts = n;
	r.outcome = STORE_FORWARD_OK;
	r.at = at;
	r.now = at;
	r.via = "mime";
	r.http_status = 200;
	r.mailgun_id = mgid;
	r.result = "Queued. Thank you.";
	assert_int_equal(
	    store_forward_record(f->st, &r, test_record_cb, &calls), 0);
	test_wait(f, &calls, 1);
}

/* ---- Events ------------------------------------------------------------ */

/* An event as a test writes it; NULL fields are absent. */
struct tev {
	const char *token;
	const char *digest; /* NULL: "digest-" + token */
	const char *event;
	const char *severity;
	const char *reason;
	const char *recipient;
	const char *message_id;
	int64_t redrive_id;
	const char *event_id;
	int64_t at;
	int code;
	const char *enhanced;
	const char *text;
	const char *storage_url;
};

struct tres {
	int calls;
	int status;
	struct store_event_result r;
};

static void
test_event_cb(int status, const struct store_event_result *r, void *arg)
{
	struct tres *t = arg;

	t->calls++;
	t->status = status;
	if (status == 0) {
		assert_non_null(r);
		t->r = *r;
	} else
		assert_null(r);
}

/* Applies e at now; *status is the job's status, the result returned. */
static struct store_event_result
test_apply_status(
    struct fixture *f, const struct tev *e, int64_t now, int *status)
{
	struct webhook_event ev;
	struct tres t;

	memset(&ev, 0, sizeof(ev));
	memset(&t, 0, sizeof(t));
	ev.token = (char *)e->token;
	ev.event = (char *)e->event;
	ev.severity = (char *)e->severity;
	ev.reason = (char *)e->reason;
	ev.recipient = (char *)e->recipient;
	ev.message_id = (char *)e->message_id;
	ev.redrive_id = e->redrive_id;
	ev.event_id = (char *)e->event_id;
	ev.at = e->at;
	ev.code = e->code;
	ev.enhanced_code = (char *)e->enhanced;
	ev.status_message = (char *)e->text;
	ev.storage_url = (char *)e->storage_url;
	if (e->digest != NULL)
		snprintf(ev.digest, sizeof(ev.digest), "%s", e->digest);
	else
		snprintf(ev.digest, sizeof(ev.digest), "digest-%s", e->token);
	assert_int_equal(
	    store_event_apply(f->st, &ev, &f->cfg, now, test_event_cb, &t), 0);
	test_wait(f, &t.calls, 1);
	assert_int_equal(t.calls, 1);
	*status = t.status;
	return t.r;
}

/* Applies e at now and returns the result (status 0 asserted). */
static struct store_event_result
test_apply(struct fixture *f, const struct tev *e, int64_t now)
{
	struct store_event_result r;
	int status = -1;

	r = test_apply_status(f, e, now, &status);
	assert_int_equal(status, 0);
	return r;
}

static void
test_done_cb(int status, bool changed, void *arg)
{
	int *calls = arg;

	assert_int_equal(status, 0);
	(void)changed;
	(*calls)++;
}

/* Records an accepted storage resend of rid. */
static void
test_resent(
    struct fixture *f, int64_t mid, int64_t rid, const char *mgid, int64_t at)
{
	struct store_redrive_result rr;
	int calls = 0;

	memset(&rr, 0, sizeof(rr));
	rr.message_id = mid;
	rr.recipient_id = rid;
	rr.outcome = STORE_FORWARD_OK;
	rr.at = at;
	rr.now = at;
	rr.http_status = 200;
	rr.mailgun_id = mgid;
	rr.result = "Queued. Thank you.";
	assert_int_equal(
	    store_redrive_record(f->st, &rr, test_done_cb, &calls), 0);
	test_wait(f, &calls, 1);
}

/* A one-recipient message to bob, sent at T0 as "mg-1@example.org". */
static int64_t
test_bob(struct fixture *f, int64_t *rid)
{
	static const char *const rcpts[] = { "bob@example.org" };
	int64_t mid;

	mid = test_message(f, rcpts, 1, rid);
	test_sent(f, mid, rid, 1, "mg-1@example.org", T0);
	return mid;
}

static struct tev
test_delivered(const char *token, int64_t at)
{
	struct tev e;

	memset(&e, 0, sizeof(e));
	e.token = token;
	e.event = "delivered";
	e.recipient = "bob@example.org";
	e.message_id = "mg-1@example.org";
	e.at = at;
	e.code = 250;
	e.text = "OK";
	return e;
}

static struct tev
test_failed(const char *token, int64_t at, const char *severity,
    const char *reason, int code, const char *enhanced, const char *text)
{
	struct tev e;

	memset(&e, 0, sizeof(e));
	e.token = token;
	e.event = "failed";
	e.severity = severity;
	e.reason = reason;
	e.recipient = "bob@example.org";
	e.message_id = "mg-1@example.org";
	e.at = at;
	e.code = code;
	e.enhanced = enhanced;
	e.text = text;
	e.storage_url = "https://storage-us-east4.api.mailgun.net/v3/domains/"
			"example.org/messages/KEY1";
	return e;
}

/* ---- Token ------------------------------------------------------------- */

/*
 * A known token with the same digest is a duplicate, with another digest
 * a mismatch; neither changes anything, not even for a failure that would
 * otherwise move the state.
 */
static void
test_token(void **state)
{
	struct fixture *f = *state;
	struct store_event_result r;
	struct tev e;
	struct rrow row;
	int64_t rid, mid;

	mid = test_bob(f, &rid);
	e = test_delivered("tok-1", T0 + MINUTE);
	r = test_apply(f, &e, T0 + 2 * MINUTE);
	assert_int_equal(r.outcome, STORE_EVENT_RECORDED);
	assert_int_equal(r.message_id, mid);
	assert_int_equal(r.recipient_id, rid);
	assert_string_equal(r.status, "delivered");
	assert_true(r.changed);
	assert_int_equal(test_nevents(f), 1);
	assert_int_equal(test_ntokens(f), 1);
	assert_int_equal(test_int(f,
			     "SELECT at FROM webhook_tokens"
			     " WHERE token = 'tok-1'",
			     0),
	    T0 + 2 * MINUTE);

	r = test_apply(f, &e, T0 + 3 * MINUTE);
	assert_int_equal(r.outcome, STORE_EVENT_DUPLICATE);
	assert_int_equal(test_nevents(f), 1);
	assert_int_equal(test_ntokens(f), 1);

	/* The same token with other data: a forgery under a replay. */
	e = test_failed("tok-1", T0 + 5 * MINUTE, "permanent", "bounce", 550,
	    "5.1.1", "No such user");
	e.digest = "another-digest";
	r = test_apply(f, &e, T0 + 6 * MINUTE);
	assert_int_equal(r.outcome, STORE_EVENT_MISMATCH);
	assert_false(r.changed);
	assert_int_equal(test_nevents(f), 1);
	assert_int_equal(test_ntokens(f), 1);
	test_rcpt(f, rid, &row);
	assert_string_equal(row.status, "delivered");
}

/* Closes the store and opens it again: a restarted daemon. */
static void
test_reopen(struct fixture *f)
{
	char err[512];

	store_close(f->st);
	assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
	f->st = NULL;
	assert_int_equal(
	    store_open(&f->st, f->path, &f->loop, err, sizeof(err)), 0);
}

/*
 * Tokens are looked up in memory (core/store_tokens.c): a restarted daemon
 * reads them back, so a replay is refused across a restart; a token that
 * arrived more than twice timestamp_window ago is let go (no signature can
 * be fresh any more), and so is one whose job was rolled back.
 */
static void
test_token_restart_and_window(void **state)
{
	struct fixture *f = *state;
	struct store_event_result r;
	int64_t window = f->cfg.tracker.timestamp_window_ms;
	struct tev e, other;
	int64_t rid;

	(void)test_bob(f, &rid);
	e = test_delivered("tok-r", T0 + MINUTE);
	r = test_apply(f, &e, T0 + 2 * MINUTE);
	assert_int_equal(r.outcome, STORE_EVENT_RECORDED);

	test_reopen(f);
	r = test_apply(f, &e, T0 + 3 * MINUTE);
	assert_int_equal(r.outcome, STORE_EVENT_DUPLICATE);
	other = test_failed("tok-r", T0 + 4 * MINUTE, "permanent", "bounce",
	    550, "5.1.1", "No such user");
	other.digest = "another-digest";
	r = test_apply(f, &other, T0 + 5 * MINUTE);
	assert_int_equal(r.outcome, STORE_EVENT_MISMATCH);
	assert_int_equal(test_ntokens(f), 1);

	/* Still held just before two windows have passed, after a restart. */
	test_reopen(f);
	r = test_apply(f, &other, T0 + 2 * MINUTE + 2 * window - 1);
	assert_int_equal(r.outcome, STORE_EVENT_MISMATCH);
	/* Let go after them: the token is new again (and recorded). */
	r = test_apply(f, &other, T0 + 2 * MINUTE + 2 * window + 1);
	assert_int_not_equal(r.outcome, STORE_EVENT_MISMATCH);
	assert_int_equal(test_ntokens(f), 2);
	/* And not read back after a restart either, but the new one is. */
	test_reopen(f);
	r = test_apply(f, &other, T0 + 2 * MINUTE + 2 * window + 2);
	assert_int_equal(r.outcome, STORE_EVENT_DUPLICATE);
}

/*
 * A transaction that does not commit takes its tokens off the set again:
 * Mailgun's retry of the webhook is recorded, not taken for a duplicate.
 * A token of the same batch that did commit stays.
 */
static void
test_token_rolled_back(void **state)
{
	struct fixture *f = *state;
	struct store_event_result r;
	struct tev e;
	int64_t rid;
	int status = 0;

	(void)test_bob(f, &rid);
	e = test_delivered("tok-f", T0 + MINUTE);
	store_set_fault(f->st, -ENOSPC);
	(void)test_apply_status(f, &e, T0 + 2 * MINUTE, &status);
	assert_int_equal(status, -ENOSPC);
	store_set_fault(f->st, 0);
	assert_int_equal(test_nevents(f), 0);
	assert_int_equal(test_ntokens(f), 0);
	r = test_apply(f, &e, T0 + 3 * MINUTE);
	assert_int_equal(r.outcome, STORE_EVENT_RECORDED);
	assert_true(r.changed);
	r = test_apply(f, &e, T0 + 4 * MINUTE);
	assert_int_equal(r.outcome, STORE_EVENT_DUPLICATE);
	assert_int_equal(test_nevents(f), 1);
	assert_int_equal(test_ntokens(f), 1);
}

/* Bad arguments are refused before anything is queued. */
static void
test_apply_einval(void **state)
{
	struct fixture *f = *state;
	struct webhook_event ev;
	struct tres t;

	memset(&ev, 0, sizeof(ev));
	memset(&t, 0, sizeof(t));
	ev.event = (char *)"delivered";
	assert_int_equal(
	    store_event_apply(f->st, &ev, &f->cfg, T0, test_event_cb, &t),
	    -EINVAL);
	ev.token = (char *)"t";
	ev.event = NULL;
	assert_int_equal(
	    store_event_apply(f->st, &ev, &f->cfg, T0, test_event_cb, &t),
	    -EINVAL);
	ev.event = (char *)"delivered";
	assert_int_equal(
	    store_event_apply(f->st, &ev, NULL, T0, test_event_cb, &t),
	    -EINVAL);
	assert_int_equal(
	    store_event_apply(f->st, &ev, &f->cfg, T0, NULL, &t), -EINVAL);
	assert_int_equal(t.calls, 0);
}

/* ---- Correlation ------------------------------------------------------- */

/* By redrive-id alone; an unknown redrive-id falls back to the id. */
static void
test_correlate_redrive_id(void **state)
{
	struct fixture *f = *state;
	struct store_event_result r;
	struct tev e;
	int64_t rid, mid;

	mid = test_bob(f, &rid);
	e = test_delivered("tok-1", T0 + MINUTE);
	e.message_id = NULL;
	e.redrive_id = mid;
	e.recipient = "Bob@EXAMPLE.org";
	r = test_apply(f, &e, T0 + 2 * MINUTE);
	assert_int_equal(r.outcome, STORE_EVENT_RECORDED);
	assert_int_equal(r.message_id, mid);
	assert_int_equal(r.recipient_id, rid);
	assert_string_equal(r.status, "delivered");

	e = test_delivered("tok-2", T0 + MINUTE);
	e.redrive_id = mid + 1000;
	r = test_apply(f, &e, T0 + 2 * MINUTE);
	assert_int_equal(r.outcome, STORE_EVENT_RECORDED);
	assert_int_equal(r.message_id, mid);
}

/*
 * By the Mailgun id: bare, in angle brackets, and the id of a later
 * storage resend (recorded only in attempts).
 */
static void
test_correlate_message_id(void **state)
{
	struct fixture *f = *state;
	struct store_event_result r;
	struct tev e;
	int64_t rid, mid;
	char buf[64];

	mid = test_bob(f, &rid);
	e = test_failed("tok-1", T0 + MINUTE, "temporary", "generic", 452,
	    "4.2.2", "Mailbox full");
	r = test_apply(f, &e, T0 + 2 * MINUTE);
	assert_int_equal(r.outcome, STORE_EVENT_RECORDED);
	assert_int_equal(r.message_id, mid);
	assert_string_equal(r.status, "deferred");
	assert_string_equal(test_text(f,
				"SELECT mailgun_id FROM events"
				" WHERE message_id = ?1",
				mid, buf, sizeof(buf)),
	    "mg-1@example.org");

	e = test_delivered("tok-2", T0 + 2 * MINUTE);
	e.message_id = " <mg-1@example.org> ";
	r = test_apply(f, &e, T0 + 3 * MINUTE);
	assert_int_equal(r.outcome, STORE_EVENT_RECORDED);
	assert_int_equal(r.message_id, mid);
	assert_string_equal(r.status, "delivered");

	/*
	 * A second message whose storage resend got a new id: the first id
	 * is then only in attempts, the new one in messages too.
	 */
	static const char *const rcpts[] = { "bob@example.org" };
	int64_t rid2, mid2;

	mid2 = test_message(f, rcpts, 1, &rid2);
	test_sent(f, mid2, &rid2, 1, "mg-2@example.org", T0);
	test_resent(f, mid2, rid2, "mg-2-resend@example.org", T0 + 10 * MINUTE);
	assert_string_equal(
	    test_text(f, "SELECT mailgun_id FROM messages WHERE id = ?1", mid2,
		buf, sizeof(buf)),
	    "mg-2-resend@example.org");
	e = test_delivered("tok-3", T0 + 20 * MINUTE);
	e.message_id = "mg-2@example.org";
	r = test_apply(f, &e, T0 + 21 * MINUTE);
	assert_int_equal(r.message_id, mid2);
	assert_int_equal(r.recipient_id, rid2);
	e = test_delivered("tok-4", T0 + 20 * MINUTE);
	e.message_id = "mg-2-resend@example.org";
	r = test_apply(f, &e, T0 + 21 * MINUTE);
	assert_int_equal(r.message_id, mid2);
	/* Empty or blank ids correlate with nothing. */
	e = test_delivered("tok-5", T0 + 20 * MINUTE);
	e.message_id = " <> ";
	r = test_apply(f, &e, T0 + 21 * MINUTE);
	assert_int_equal(r.outcome, STORE_EVENT_UNKNOWN);
}

/* Nothing matches: UNKNOWN, and nothing is stored, not even the token. */
static void
test_correlate_unknown(void **state)
{
	struct fixture *f = *state;
	struct store_event_result r;
	struct tev e;
	int64_t rid, mid;

	mid = test_bob(f, &rid);
	e = test_delivered("tok-1", T0 + MINUTE);
	e.message_id = "someone-else@example.org";
	r = test_apply(f, &e, T0 + 2 * MINUTE);
	assert_int_equal(r.outcome, STORE_EVENT_UNKNOWN);
	assert_int_equal(r.message_id, 0);
	e.redrive_id = mid + 1;
	e.token = "tok-2";
	r = test_apply(f, &e, T0 + 2 * MINUTE);
	assert_int_equal(r.outcome, STORE_EVENT_UNKNOWN);
	e.message_id = NULL;
	e.token = "tok-3";
	r = test_apply(f, &e, T0 + 2 * MINUTE);
	assert_int_equal(r.outcome, STORE_EVENT_UNKNOWN);
	assert_int_equal(test_nevents(f), 0);
	assert_int_equal(test_ntokens(f), 0);

	/* A known message, a recipient it does not have. */
	e = test_delivered("tok-4", T0 + MINUTE);
	e.recipient = "carol@example.org";
	r = test_apply(f, &e, T0 + 2 * MINUTE);
	assert_int_equal(r.outcome, STORE_EVENT_RECORDED);
	assert_int_equal(r.message_id, mid);
	assert_int_equal(r.recipient_id, 0);
	assert_false(r.changed);
	assert_int_equal(test_nevents(f), 1);
	assert_int_equal(test_ntokens(f), 1);
	assert_true(test_is_null(
	    f, "SELECT recipient_id FROM events WHERE message_id = ?1", mid));
	/* An event without a recipient (opened carries one; rejected not). */
	e = test_delivered("tok-5", T0 + MINUTE);
	e.recipient = NULL;
	r = test_apply(f, &e, T0 + 2 * MINUTE);
	assert_int_equal(r.outcome, STORE_EVENT_RECORDED);
	assert_int_equal(r.recipient_id, 0);
	assert_int_equal(test_nevents(f), 2);
}

/* ---- The state machine ------------------------------------------------- */

/* delivered, then an older temporary failure and a newer one: delivered. */
static void
test_delivered_then_temporary(void **state)
{
	struct fixture *f = *state;
	struct store_event_result r;
	struct tev e;
	struct rrow row;
	int64_t rid, mid;

	mid = test_bob(f, &rid);
	e = test_delivered("tok-1", T0 + 10 * MINUTE);
	r = test_apply(f, &e, T0 + 11 * MINUTE);
	assert_string_equal(r.status, "delivered");
	assert_int_equal(
	    test_int(f, "SELECT finished_at FROM messages WHERE id = ?1", mid),
	    T0 + 11 * MINUTE);

	e = test_failed("tok-2", T0 + 5 * MINUTE, "temporary", "generic", 421,
	    "4.4.2", "Timeout");
	r = test_apply(f, &e, T0 + 12 * MINUTE);
	assert_int_equal(r.outcome, STORE_EVENT_RECORDED);
	assert_int_equal(r.decision, POLICY_WAIT);
	assert_false(r.changed);
	assert_string_equal(r.status, "delivered");

	/* A late temporary failure after delivered does not count either. */
	e = test_failed("tok-3", T0 + 20 * MINUTE, "temporary", "generic", 421,
	    "4.4.2", "Timeout");
	r = test_apply(f, &e, T0 + 21 * MINUTE);
	assert_false(r.changed);
	assert_string_equal(r.status, "delivered");

	/* An older terminal failure is recorded and changes nothing. */
	e = test_failed("tok-4", T0 + 2 * MINUTE, "permanent", "bounce", 550,
	    "5.1.1", "No such user");
	r = test_apply(f, &e, T0 + 22 * MINUTE);
	assert_false(r.changed);
	assert_false(r.gave_up);
	assert_string_equal(r.status, "delivered");

	test_rcpt(f, rid, &row);
	assert_string_equal(row.status, "delivered");
	assert_int_equal(row.last_event_at, T0 + 10 * MINUTE);
	assert_int_equal(test_nevents(f), 4);
	assert_int_equal(
	    test_int(f, "SELECT finished_at FROM messages WHERE id = ?1", mid),
	    T0 + 11 * MINUTE);
}

/* temporary then delivered; and the two in the other order of arrival. */
static void
test_temporary_then_delivered(void **state)
{
	struct fixture *f = *state;
	struct store_event_result r;
	struct tev e;
	struct rrow row;
	int64_t rid;

	(void)test_bob(f, &rid);
	e = test_failed("tok-1", T0 + MINUTE, "temporary", "generic", 452,
	    "4.2.2", "Mailbox full");
	r = test_apply(f, &e, T0 + 2 * MINUTE);
	assert_true(r.changed);
	assert_int_equal(r.decision, POLICY_WAIT);
	assert_string_equal(r.status, "deferred");
	test_rcpt(f, rid, &row);
	assert_string_equal(row.last_error, "generic: 452 4.2.2 Mailbox full");
	assert_int_equal(row.next_attempt_at, 0);
	assert_int_equal(row.last_event_at, T0 + MINUTE);

	/* A second temporary failure: still deferred, its text kept. */
	e = test_failed("tok-2", T0 + 11 * MINUTE, "temporary", "generic", 451,
	    NULL, "Try later");
	r = test_apply(f, &e, T0 + 12 * MINUTE);
	assert_string_equal(r.status, "deferred");
	test_rcpt(f, rid, &row);
	assert_string_equal(row.last_error, "generic: 451 Try later");

	e = test_delivered("tok-3", T0 + 30 * MINUTE);
	r = test_apply(f, &e, T0 + 31 * MINUTE);
	assert_true(r.changed);
	assert_string_equal(r.status, "delivered");

	/* The same pair, delivered arriving first. */
	static const char *const rcpts[] = { "bob@example.org" };
	int64_t rid2, mid2;

	mid2 = test_message(f, rcpts, 1, &rid2);
	test_sent(f, mid2, &rid2, 1, "mg-2@example.org", T0);
	e = test_delivered("tok-4", T0 + 30 * MINUTE);
	e.message_id = "mg-2@example.org";
	r = test_apply(f, &e, T0 + 31 * MINUTE);
	assert_string_equal(r.status, "delivered");
	e = test_failed("tok-5", T0 + MINUTE, "temporary", "generic", 452,
	    "4.2.2", "Mailbox full");
	e.message_id = "mg-2@example.org";
	r = test_apply(f, &e, T0 + 32 * MINUTE);
	assert_int_equal(r.message_id, mid2);
	assert_false(r.changed);
	assert_string_equal(r.status, "delivered");
}

/* A delayed bounce after delivered counts: it is newer. */
static void
test_delayed_bounce(void **state)
{
	struct fixture *f = *state;
	struct store_event_result r;
	struct tev e;
	struct rrow row;
	int64_t rid, mid;

	mid = test_bob(f, &rid);
	e = test_delivered("tok-1", T0 + MINUTE);
	r = test_apply(f, &e, T0 + 2 * MINUTE);
	assert_string_equal(r.status, "delivered");
	assert_false(test_is_null(
	    f, "SELECT finished_at FROM messages WHERE id = ?1", mid));

	e = test_failed("tok-2", T0 + 60 * MINUTE, "permanent", "generic", 550,
	    "5.1.1", "No such user");
	r = test_apply(f, &e, T0 + 61 * MINUTE);
	assert_true(r.changed);
	assert_true(r.gave_up);
	assert_int_equal(r.decision, POLICY_GIVE_UP);
	assert_string_equal(r.status, "failed");
	test_rcpt(f, rid, &row);
	assert_string_equal(row.reason, "generic: 550 5.1.1 No such user");
	assert_int_equal(row.next_attempt_at, 0);
	assert_int_equal(row.last_event_at, T0 + 60 * MINUTE);
	assert_false(test_is_null(
	    f, "SELECT finished_at FROM messages WHERE id = ?1", mid));

	/* A re-drivable one after delivered: retrying, no longer finished. */
	static const char *const rcpts[] = { "bob@example.org" };
	int64_t rid2, mid2;

	mid2 = test_message(f, rcpts, 1, &rid2);
	test_sent(f, mid2, &rid2, 1, "mg-2@example.org", T0);
	e = test_delivered("tok-3", T0 + MINUTE);
	e.message_id = "mg-2@example.org";
	(void)test_apply(f, &e, T0 + 2 * MINUTE);
	assert_false(test_is_null(
	    f, "SELECT finished_at FROM messages WHERE id = ?1", mid2));
	e = test_failed("tok-4", T0 + 60 * MINUTE, "permanent", "espblock", 554,
	    "5.7.1", "Blocked by Spamhaus");
	e.message_id = "mg-2@example.org";
	r = test_apply(f, &e, T0 + 61 * MINUTE);
	assert_true(r.changed);
	assert_false(r.gave_up);
	assert_int_equal(r.decision, POLICY_REDRIVE);
	assert_string_equal(r.status, "retrying");
	assert_int_equal(r.next_attempt_at, T0 + 60 * MINUTE + 4 * MINUTE);
	assert_true(test_is_null(
	    f, "SELECT finished_at FROM messages WHERE id = ?1", mid2));

	/*
	 * The same pair arriving the other way round: the bounce first,
	 * then the older delivered it follows, which changes nothing.
	 */
	int64_t rid3, mid3;

	mid3 = test_message(f, rcpts, 1, &rid3);
	test_sent(f, mid3, &rid3, 1, "mg-3@example.org", T0);
	e = test_failed("tok-5", T0 + 60 * MINUTE, "permanent", "bounce", 550,
	    "5.1.1", "No such user");
	e.message_id = "mg-3@example.org";
	r = test_apply(f, &e, T0 + 61 * MINUTE);
	assert_string_equal(r.status, "failed");
	e = test_delivered("tok-6", T0 + MINUTE);
	e.message_id = "mg-3@example.org";
	r = test_apply(f, &e, T0 + 62 * MINUTE);
	assert_int_equal(r.message_id, mid3);
	assert_false(r.changed);
	assert_string_equal(r.status, "failed");
	test_rcpt(f, rid3, &row);
	assert_string_equal(row.reason, "bounce: 550 5.1.1 No such user");
	assert_int_equal(row.last_event_at, T0 + 60 * MINUTE);
}

/*
 * The same event twice: under the same token a duplicate; under another
 * token with the same event id a duplicate that remembers the new token;
 * without an event id recorded again but not applied twice.
 */
static void
test_same_event_twice(void **state)
{
	struct fixture *f = *state;
	struct store_event_result r;
	struct tev e;
	struct rrow row;
	int64_t rid;

	(void)test_bob(f, &rid);
	e = test_failed(
	    "tok-1", T0 + MINUTE, "permanent", "old", 0, NULL, "Too old");
	e.event_id = "EVT-1";
	r = test_apply(f, &e, T0 + 2 * MINUTE);
	assert_true(r.changed);
	assert_string_equal(r.status, "retrying");
	assert_int_equal(r.next_attempt_at, T0 + MINUTE + 4 * MINUTE);

	r = test_apply(f, &e, T0 + 3 * MINUTE);
	assert_int_equal(r.outcome, STORE_EVENT_DUPLICATE);

	e.token = "tok-2";
	r = test_apply(f, &e, T0 + 3 * MINUTE);
	assert_int_equal(r.outcome, STORE_EVENT_DUPLICATE);
	assert_int_equal(test_nevents(f), 1);
	assert_int_equal(test_ntokens(f), 2);

	/* No event id: recorded, but not newer than itself. */
	e.token = "tok-3";
	e.event_id = NULL;
	r = test_apply(f, &e, T0 + 30 * MINUTE);
	assert_int_equal(r.outcome, STORE_EVENT_RECORDED);
	assert_false(r.changed);
	assert_int_equal(r.next_attempt_at, 0);
	test_rcpt(f, rid, &row);
	assert_string_equal(row.status, "retrying");
	assert_int_equal(row.next_attempt_at, T0 + MINUTE + 4 * MINUTE);
	assert_int_equal(test_nevents(f), 2);

	/* delivered twice: the same state, idempotent. */
	e = test_delivered("tok-4", T0 + 40 * MINUTE);
	r = test_apply(f, &e, T0 + 41 * MINUTE);
	assert_true(r.changed);
	e.token = "tok-5";
	r = test_apply(f, &e, T0 + 42 * MINUTE);
	assert_string_equal(r.status, "delivered");
	test_rcpt(f, rid, &row);
	assert_int_equal(row.last_event_at, T0 + 40 * MINUTE);
}

/* Event types that move nothing: recorded as they are. */
static void
test_other_events(void **state)
{
	static const char *const types[] = { "accepted", "opened", "clicked",
		"unsubscribed", "complained", "stored", "something-new" };
	struct fixture *f = *state;
	struct store_event_result r;
	struct tev e;
	struct rrow row;
	char tok[32];
	int64_t rid;
	size_t i;

	(void)test_bob(f, &rid);
	for (i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
		snprintf(tok, sizeof(tok), "tok-%zu", i);
		e = test_delivered(tok, T0 + (int64_t)i * MINUTE);
		e.event = types[i];
		r = test_apply(f, &e, T0 + 20 * MINUTE);
		assert_int_equal(r.outcome, STORE_EVENT_RECORDED);
		assert_int_equal(r.recipient_id, rid);
		assert_false(r.changed);
		assert_string_equal(r.status, "sent");
	}
	test_rcpt(f, rid, &row);
	assert_string_equal(row.status, "sent");
	assert_int_equal(row.last_event_at, 0);
	assert_int_equal(test_nevents(f), (int64_t)i);
	assert_int_equal(test_int(f,
			     "SELECT count(*) FROM events WHERE source ="
			     " 'webhook' AND received_at = ?1",
			     T0 + 20 * MINUTE),
	    (int64_t)i);
}

/* ---- The policy -------------------------------------------------------- */

/* reason old with severity temporary: terminal, re-driven in 4 min. */
static void
test_policy_old_temporary(void **state)
{
	struct fixture *f = *state;
	struct store_event_result r;
	struct tev e;
	struct rrow row;
	int64_t rid, mid;
	char buf[256];

	mid = test_bob(f, &rid);
	e = test_failed("tok-1", T0 + 8 * HOUR, "temporary", "old", 498, NULL,
	    "No MX for example.org");
	r = test_apply(f, &e, T0 + 9 * HOUR);
	assert_int_equal(r.decision, POLICY_REDRIVE);
	assert_true(r.changed);
	assert_false(r.gave_up);
	assert_string_equal(r.status, "retrying");
	assert_int_equal(r.next_attempt_at, T0 + 8 * HOUR + 4 * MINUTE);
	test_rcpt(f, rid, &row);
	assert_string_equal(row.status, "retrying");
	assert_int_equal(row.attempts, 1);
	assert_int_equal(row.next_attempt_at, T0 + 8 * HOUR + 4 * MINUTE);
	assert_string_equal(row.reason, "old: 498 No MX for example.org");
	assert_string_equal(row.last_error, "old: 498 No MX for example.org");
	assert_true(test_is_null(
	    f, "SELECT finished_at FROM messages WHERE id = ?1", mid));
	assert_string_equal(test_text(f,
				"SELECT storage_url FROM events"
				" WHERE message_id = ?1",
				mid, buf, sizeof(buf)),
	    "https://storage-us-east4.api.mailgun.net/v3/domains/"
	    "example.org/messages/KEY1");

	/* A plain temporary failure while retrying changes nothing. */
	e = test_failed(
	    "tok-2", T0 + 9 * HOUR, "temporary", "generic", 421, NULL, "later");
	r = test_apply(f, &e, T0 + 9 * HOUR);
	assert_false(r.changed);
	assert_string_equal(r.status, "retrying");
}

/* Hard bounces and suppressions fail with their reason, no re-drive. */
static void
test_policy_bounce(void **state)
{
	struct fixture *f = *state;
	struct store_event_result r;
	struct tev e;
	struct rrow row;
	int64_t rid, mid;

	mid = test_bob(f, &rid);
	e = test_failed("tok-1", T0 + MINUTE, "permanent", "bounce", 550,
	    "5.1.1", "No such user");
	r = test_apply(f, &e, T0 + 2 * MINUTE);
	assert_int_equal(r.decision, POLICY_GIVE_UP);
	assert_true(r.gave_up);
	assert_int_equal(r.next_attempt_at, 0);
	assert_string_equal(r.status, "failed");
	assert_true(strlen(r.why) > 0);
	test_rcpt(f, rid, &row);
	assert_string_equal(row.reason, "bounce: 550 5.1.1 No such user");
	assert_int_equal(row.next_attempt_at, 0);
	assert_int_equal(
	    test_int(f, "SELECT finished_at FROM messages WHERE id = ?1", mid),
	    T0 + 2 * MINUTE);

	/* A failed recipient is final: a newer failure is only recorded. */
	e = test_failed(
	    "tok-2", T0 + 5 * MINUTE, "permanent", "old", 0, NULL, "Too old");
	r = test_apply(f, &e, T0 + 6 * MINUTE);
	assert_false(r.changed);
	assert_false(r.gave_up);
	assert_string_equal(r.status, "failed");

	/* A suppression (605) with no reason text of its own. */
	static const char *const rcpts[] = { "bob@example.org" };
	int64_t rid2, mid2;

	mid2 = test_message(f, rcpts, 1, &rid2);
	test_sent(f, mid2, &rid2, 1, "mg-2@example.org", T0);
	e = test_failed("tok-3", T0 + MINUTE, "permanent", "suppress-bounce",
	    605, NULL, "Not delivering to previously bounced address");
	e.message_id = "mg-2@example.org";
	r = test_apply(f, &e, T0 + 2 * MINUTE);
	assert_int_equal(r.message_id, mid2);
	assert_true(r.gave_up);
	test_rcpt(f, rid2, &row);
	assert_string_equal(row.status, "failed");
	assert_string_equal(row.reason,
	    "suppress-bounce: 605 Not delivering "
	    "to previously bounced address");
}

/*
 * Five sends in all: the n-th re-drive 4^n minutes after the failure that
 * caused it (4, 16, 64, 256), then "gave up after 5 sends".
 */
static void
test_policy_max_attempts(void **state)
{
	static const int64_t delays[] = { 4 * MINUTE, 16 * MINUTE, 64 * MINUTE,
		256 * MINUTE };
	struct fixture *f = *state;
	struct store_event_result r;
	struct tev e;
	struct rrow row;
	char tok[32], mgid[64];
	int64_t rid, mid, at = T0;
	size_t i;

	mid = test_bob(f, &rid);
	for (i = 0; i < 4; i++) {
		at += 60 * MINUTE;
		snprintf(tok, sizeof(tok), "tok-%zu", i);
		e = test_failed(
		    tok, at, "permanent", "espblock", 554, "5.7.1", "Blocked");
		r = test_apply(f, &e, at + MINUTE);
		assert_string_equal(r.status, "retrying");
		assert_int_equal(r.next_attempt_at, at + delays[i]);
		test_rcpt(f, rid, &row);
		assert_int_equal(row.attempts, (int)i + 1);
		snprintf(mgid, sizeof(mgid), "mg-resend-%zu@example.org", i);
		test_resent(f, mid, rid, mgid, at + delays[i]);
		test_rcpt(f, rid, &row);
		assert_string_equal(row.status, "sent");
		assert_int_equal(row.attempts, (int)i + 2);
		assert_string_equal(row.mailgun_id, mgid);
	}
	/* The fifth send fails too: out of attempts. */
	at += 600 * MINUTE;
	e = test_failed(
	    "tok-last", at, "permanent", "espblock", 554, "5.7.1", "Blocked");
	e.message_id = "mg-resend-3@example.org";
	r = test_apply(f, &e, at + MINUTE);
	assert_int_equal(r.message_id, mid);
	assert_string_equal(r.status, "failed");
	assert_true(r.gave_up);
	assert_int_equal(r.decision, POLICY_GIVE_UP);
	assert_non_null(strstr(r.why, "max_attempts 5"));
	test_rcpt(f, rid, &row);
	assert_string_equal(
	    row.reason, "gave up after 5 sends: espblock: 554 5.7.1 Blocked");
	assert_string_equal(row.last_error, "espblock: 554 5.7.1 Blocked");
	assert_int_equal(row.next_attempt_at, 0);
	assert_int_equal(test_int(f,
			     "SELECT count(*) FROM attempts WHERE message_id"
			     " = ?1 AND via = 'storage'",
			     mid),
	    4);
	assert_int_equal(
	    test_int(f, "SELECT finished_at FROM messages WHERE id = ?1", mid),
	    at + MINUTE);
}

/* max_attempts = 1: the first terminal failure gives up at once. */
static void
test_policy_max_one(void **state)
{
	struct fixture *f = *state;
	struct store_event_result r;
	struct tev e;
	struct rrow row;
	int64_t rid;

	f->cfg.retry.max_attempts = 1;
	(void)test_bob(f, &rid);
	e = test_failed(
	    "tok-1", T0 + MINUTE, "permanent", "old", 0, NULL, "Too old");
	r = test_apply(f, &e, T0 + 2 * MINUTE);
	assert_true(r.gave_up);
	test_rcpt(f, rid, &row);
	assert_string_equal(row.status, "failed");
	assert_string_equal(row.reason, "gave up after 1 send: old: Too old");
}

/* finished_at is set once every recipient is final, not before. */
static void
test_finished_at(void **state)
{
	static const char *const rcpts[] = { "bob@example.org",
		"carol@example.org", "dave@example.org" };
	struct fixture *f = *state;
	struct store_event_result r;
	struct tev e;
	int64_t rids[3], mid;

	mid = test_message(f, rcpts, 3, rids);
	test_sent(f, mid, rids, 3, "mg-1@example.org", T0);
	e = test_delivered("tok-1", T0 + MINUTE);
	r = test_apply(f, &e, T0 + 2 * MINUTE);
	assert_int_equal(r.recipient_id, rids[0]);
	assert_true(test_is_null(
	    f, "SELECT finished_at FROM messages WHERE id = ?1", mid));

	e = test_failed("tok-2", T0 + MINUTE, "permanent", "bounce", 550,
	    "5.1.1", "No such user");
	e.recipient = "carol@example.org";
	r = test_apply(f, &e, T0 + 3 * MINUTE);
	assert_int_equal(r.recipient_id, rids[1]);
	assert_string_equal(r.status, "failed");
	assert_true(test_is_null(
	    f, "SELECT finished_at FROM messages WHERE id = ?1", mid));

	/* Only dave is re-driven. */
	e = test_failed("tok-3", T0 + MINUTE, "permanent", "blacklisted", 554,
	    "5.7.1", "Listed");
	e.recipient = "DAVE@example.org";
	r = test_apply(f, &e, T0 + 4 * MINUTE);
	assert_int_equal(r.recipient_id, rids[2]);
	assert_string_equal(r.status, "retrying");
	assert_true(test_is_null(
	    f, "SELECT finished_at FROM messages WHERE id = ?1", mid));

	e = test_delivered("tok-4", T0 + 20 * MINUTE);
	e.recipient = "dave@example.org";
	r = test_apply(f, &e, T0 + 21 * MINUTE);
	assert_string_equal(r.status, "delivered");
	assert_int_equal(
	    test_int(f, "SELECT finished_at FROM messages WHERE id = ?1", mid),
	    T0 + 21 * MINUTE);
	assert_int_equal(test_int(f,
			     "SELECT count(*) FROM recipients WHERE"
			     " message_id = ?1 AND status = 'delivered'",
			     mid),
	    2);
}

/* ---- The re-drive jobs ------------------------------------------------- */

struct tnext {
	int calls;
	struct store_redrive_batch *b;
};

static void
test_next_cb(int status, struct store_redrive_batch *b, void *arg)
{
	struct tnext *t = arg;

	assert_int_equal(status, 0);
	assert_non_null(b);
	t->calls++;
	t->b = b;
}

static struct store_redrive_batch *
test_next(struct fixture *f, int64_t now, const int64_t *ex, size_t nex)
{
	struct tnext t;

	memset(&t, 0, sizeof(t));
	assert_int_equal(
	    store_redrive_next(f->st, now, 8, ex, nex, test_next_cb, &t), 0);
	test_wait(f, &t.calls, 1);
	return t.b;
}

/* A retrying bob: failed (old) at T0 + 60 min, due at T0 + 64 min. */
static int64_t
test_retrying_bob(struct fixture *f, int64_t *rid)
{
	struct store_event_result r;
	struct tev e;
	int64_t mid;

	mid = test_bob(f, rid);
	e = test_delivered("tok-acc", T0 + MINUTE);
	e.event = "accepted";
	e.storage_url = "https://se.api.mailgun.net/v3/domains/example.org/"
			"messages/ACCEPTED";
	(void)test_apply(f, &e, T0 + MINUTE);
	e = test_failed("tok-fail", T0 + 60 * MINUTE, "permanent", "old", 0,
	    NULL, "Too old");
	r = test_apply(f, &e, T0 + 61 * MINUTE);
	assert_string_equal(r.status, "retrying");
	return mid;
}

/* The due recipient with its storage URL, first acceptance, timer. */
static void
test_redrive_next(void **state)
{
	struct fixture *f = *state;
	struct store_redrive_batch *b;
	int64_t rid, mid;

	mid = test_retrying_bob(f, &rid);
	b = test_next(f, T0 + 64 * MINUTE - 1, NULL, 0);
	assert_int_equal(b->nitems, 0);
	assert_int_equal(b->next_due, T0 + 64 * MINUTE);
	assert_int_equal(b->retrying, 1);
	store_redrive_batch_free(b);

	b = test_next(f, T0 + 64 * MINUTE, NULL, 0);
	assert_int_equal(b->nitems, 1);
	assert_int_equal(b->next_due, 0);
	assert_int_equal(b->items[0].message_id, mid);
	assert_int_equal(b->items[0].recipient_id, rid);
	assert_string_equal(b->items[0].address, "bob@example.org");
	/* The latest event with a URL: the failure's, not the acceptance's. */
	assert_string_equal(b->items[0].storage_url,
	    "https://storage-us-east4.api.mailgun.net/v3/domains/"
	    "example.org/messages/KEY1");
	assert_int_equal(b->items[0].first_accepted_at, T0);
	assert_int_equal(b->items[0].next_attempt_at, T0 + 64 * MINUTE);
	assert_int_equal(b->items[0].attempts, 1);
	assert_int_equal(b->items[0].failures, 0);
	store_redrive_batch_free(b);

	/* In flight: excluded. */
	b = test_next(f, T0 + 100 * MINUTE, &rid, 1);
	assert_int_equal(b->nitems, 0);
	store_redrive_batch_free(b);

	/* Bad arguments. */
	assert_int_equal(
	    store_redrive_next(f->st, T0, 0, NULL, 0, test_next_cb, NULL),
	    -EINVAL);
	assert_int_equal(
	    store_redrive_next(f->st, T0, 1, NULL, 1, test_next_cb, NULL),
	    -EINVAL);
	assert_int_equal(
	    store_redrive_next(f->st, T0, 1, NULL, 0, NULL, NULL), -EINVAL);
}

static void
test_fwd_record_cb(int status, void *arg)
{
	int *calls = arg;

	assert_int_equal(status, 0);
	(*calls)++;
}

/*
 * Without a URL on its own events, the message's latest one; a recipient
 * Mailgun never accepted (rejected, then retried by hand) has neither a
 * URL nor a first acceptance.
 */
static void
test_redrive_next_urls(void **state)
{
	static const char *const rcpts[] = { "bob@example.org",
		"carol@example.org" };
	struct fixture *f = *state;
	struct store_redrive_batch *b;
	struct store_forward_result fr;
	struct store_db *db = NULL;
	struct tev e;
	int64_t rids[2], mid, rid1, mid1;
	int calls = 0;
	char err[256];

	mid1 = test_message(f, rcpts, 1, &rid1);
	memset(&fr, 0, sizeof(fr));
	fr.message_id = mid1;
	fr.rcpt_ids = &rid1;
	fr.nrcpts = 1;
	fr.outcome = STORE_FORWARD_REJECT;
	fr.at = T0;
	fr.now = T0;
	fr.via = "mime";
	fr.http_status = 400;
	fr.result = "to parameter is not a valid address";
	assert_int_equal(
	    store_forward_record(f->st, &fr, test_fwd_record_cb, &calls), 0);
	test_wait(f, &calls, 1);
	assert_int_equal(
	    store_db_open(&db, f->path, false, err, sizeof(err)), 0);
	assert_int_equal(store_db_retry(db, mid1, NULL, T0 + 1, NULL, NULL), 1);
	store_db_close(db);
	b = test_next(f, T0 + 1, NULL, 0);
	assert_int_equal(b->nitems, 1);
	assert_int_equal(b->items[0].recipient_id, rid1);
	assert_null(b->items[0].storage_url);
	assert_int_equal(b->items[0].first_accepted_at, 0);
	assert_int_equal(b->items[0].attempts, 0);
	store_redrive_batch_free(b);

	mid = test_message(f, rcpts, 2, rids);
	test_sent(f, mid, rids, 2, "mg-1@example.org", T0 + 5);
	e = test_delivered("tok-1", T0 + MINUTE);
	e.recipient = "carol@example.org";
	e.storage_url = "https://se.api.mailgun.net/v3/domains/example.org/"
			"messages/CAROL";
	(void)test_apply(f, &e, T0 + MINUTE);
	e = test_failed(
	    "tok-2", T0 + 2 * MINUTE, "permanent", "old", 0, NULL, "Too old");
	e.storage_url = NULL;
	(void)test_apply(f, &e, T0 + 2 * MINUTE);
	b = test_next(f, T0 + 6 * MINUTE, &rid1, 1);
	assert_int_equal(b->nitems, 1);
	assert_int_equal(b->items[0].recipient_id, rids[0]);
	assert_string_equal(b->items[0].storage_url,
	    "https://se.api.mailgun.net/v3/domains/example.org/"
	    "messages/CAROL");
	assert_int_equal(b->items[0].first_accepted_at, T0 + 5);
	store_redrive_batch_free(b);
}

static void
test_changed_cb(int status, bool changed, void *arg)
{
	int *out = arg;

	assert_int_equal(status, 0);
	*out = changed ? 1 : 2;
}

static void
test_fwd_next_cb(int status, struct store_forward_batch *b, void *arg)
{
	struct store_forward_batch **out = arg;

	assert_int_equal(status, 0);
	*out = b;
}

/* Requeue: retrying only; the forwarder then selects it. */
static void
test_redrive_requeue_forwarder(void **state)
{
	struct fixture *f = *state;
	struct store_forward_batch *fb = NULL;
	struct rrow row;
	int64_t rid, mid;
	int changed = 0;

	mid = test_retrying_bob(f, &rid);
	assert_int_equal(store_redrive_requeue(f->st, rid, T0 + 70 * MINUTE,
			     test_changed_cb, &changed),
	    0);
	test_wait(f, &changed, 1);
	assert_int_equal(changed, 1);
	test_rcpt(f, rid, &row);
	assert_string_equal(row.status, "queued");
	assert_int_equal(row.next_attempt_at, T0 + 70 * MINUTE);
	assert_string_equal(row.last_error, "old: Too old");

	assert_int_equal(store_forward_next(f->st, T0 + 70 * MINUTE, 4, NULL, 0,
			     test_fwd_next_cb, &fb),
	    0);
	while (fb == NULL)
		uv_run(&f->loop, UV_RUN_ONCE);
	assert_int_equal(fb->nmsgs, 1);
	assert_int_equal(fb->msgs[0].id, mid);
	assert_int_equal(fb->msgs[0].nrcpts, 1);
	assert_int_equal(fb->msgs[0].rcpts[0].id, rid);
	assert_true(fb->msgs[0].len > 0);
	store_forward_batch_free(fb);

	/* Not retrying any more: left alone. */
	changed = 0;
	assert_int_equal(store_redrive_requeue(f->st, rid, T0 + 80 * MINUTE,
			     test_changed_cb, &changed),
	    0);
	while (changed == 0)
		uv_run(&f->loop, UV_RUN_ONCE);
	assert_int_equal(changed, 2);
	test_rcpt(f, rid, &row);
	assert_int_equal(row.next_attempt_at, T0 + 70 * MINUTE);
	assert_int_equal(
	    store_redrive_requeue(f->st, 0, T0, test_changed_cb, &changed),
	    -EINVAL);
}

/* Records a storage resend with the given outcome; returns changed. */
static int
test_record(struct fixture *f, int64_t mid, int64_t rid,
    enum store_forward_outcome o, int http, const char *mgid, const char *text,
    int64_t at, int64_t next)
{
	struct store_redrive_result rr;
	int changed = 0;

	memset(&rr, 0, sizeof(rr));
	rr.message_id = mid;
	rr.recipient_id = rid;
	rr.outcome = o;
	rr.at = at;
	rr.now = at + 1;
	rr.http_status = http;
	rr.mailgun_id = mgid;
	rr.result = text;
	rr.next_attempt_at = next;
	assert_int_equal(
	    store_redrive_record(f->st, &rr, test_changed_cb, &changed), 0);
	while (changed == 0)
		uv_run(&f->loop, UV_RUN_ONCE);
	return changed;
}

/* Each outcome of a storage resend, and the failures count. */
static void
test_redrive_record(void **state)
{
	struct fixture *f = *state;
	struct store_redrive_batch *b;
	struct rrow row;
	int64_t rid, mid;
	char buf[128];

	mid = test_retrying_bob(f, &rid);

	/* RETRY: still retrying, later, with the error. */
	assert_int_equal(test_record(f, mid, rid, STORE_FORWARD_RETRY, 503,
			     NULL, "busy", T0 + 64 * MINUTE, T0 + 65 * MINUTE),
	    1);
	test_rcpt(f, rid, &row);
	assert_string_equal(row.status, "retrying");
	assert_int_equal(row.next_attempt_at, T0 + 65 * MINUTE);
	assert_string_equal(row.last_error, "503 busy");
	/* A transport error has no HTTP status. */
	assert_int_equal(test_record(f, mid, rid, STORE_FORWARD_RETRY, 0, NULL,
			     "timed out", T0 + 65 * MINUTE, T0 + 67 * MINUTE),
	    1);
	test_rcpt(f, rid, &row);
	assert_string_equal(row.last_error, "timed out");
	b = test_next(f, T0 + 67 * MINUTE, NULL, 0);
	assert_int_equal(b->nitems, 1);
	assert_int_equal(b->items[0].failures, 2);
	store_redrive_batch_free(b);

	/* PAUSE: the same, later. */
	assert_int_equal(
	    test_record(f, mid, rid, STORE_FORWARD_PAUSE, 401, NULL,
		"Forbidden", T0 + 67 * MINUTE, T0 + 72 * MINUTE),
	    1);
	test_rcpt(f, rid, &row);
	assert_string_equal(row.status, "retrying");
	assert_int_equal(row.next_attempt_at, T0 + 72 * MINUTE);

	/* OK: sent with the new id, counted, the message's latest id. */
	assert_int_equal(
	    test_record(f, mid, rid, STORE_FORWARD_OK, 200,
		"mg-new@example.org", "Queued", T0 + 72 * MINUTE, 0),
	    1);
	test_rcpt(f, rid, &row);
	assert_string_equal(row.status, "sent");
	assert_int_equal(row.attempts, 2);
	assert_string_equal(row.mailgun_id, "mg-new@example.org");
	assert_int_equal(row.next_attempt_at, 0);
	assert_string_equal(row.last_error, "(null)");
	assert_string_equal(
	    test_text(f, "SELECT mailgun_id FROM messages WHERE id = ?1", mid,
		buf, sizeof(buf)),
	    "mg-new@example.org");
	assert_int_equal(test_int(f,
			     "SELECT count(*) FROM attempts a JOIN"
			     " attempt_rcpts r ON r.attempt_id = a.id"
			     " WHERE a.message_id = ?1 AND a.via = 'storage'",
			     mid),
	    4);
	assert_int_equal(test_int(f,
			     "SELECT http_status FROM attempts WHERE"
			     " mailgun_id = 'mg-new@example.org' AND id = ?1",
			     test_int(f, "SELECT max(id) FROM attempts", 0)),
	    200);

	/* A resend answered after the state moved on: counted, kept. */
	assert_int_equal(
	    test_record(f, mid, rid, STORE_FORWARD_OK, 200,
		"mg-late@example.org", "Queued", T0 + 73 * MINUTE, 0),
	    2);
	test_rcpt(f, rid, &row);
	assert_string_equal(row.status, "sent");
	assert_int_equal(row.attempts, 3);
	/* A failure on it later still correlates by the later id. */
	{
		struct tev e = test_failed("tok-late", T0 + 90 * MINUTE,
		    "permanent", "old", 0, NULL, "Too old");
		struct store_event_result r;

		e.message_id = "mg-late@example.org";
		r = test_apply(f, &e, T0 + 91 * MINUTE);
		assert_int_equal(r.message_id, mid);
		assert_string_equal(r.status, "retrying");
		/* Three sends so far: the third re-drive waits 64 min. */
		assert_int_equal(
		    r.next_attempt_at, T0 + 90 * MINUTE + 64 * MINUTE);
	}

	/* REJECT (404: the stored copy is gone): requeued. */
	assert_int_equal(test_record(f, mid, rid, STORE_FORWARD_REJECT, 404,
			     NULL, "Message not found", T0 + 160 * MINUTE, 0),
	    1);
	test_rcpt(f, rid, &row);
	assert_string_equal(row.status, "queued");
	assert_int_equal(row.next_attempt_at, T0 + 160 * MINUTE + 1);
	assert_string_equal(row.last_error, "404 Message not found");

	/* Bad arguments. */
	{
		struct store_redrive_result rr;

		memset(&rr, 0, sizeof(rr));
		rr.message_id = mid;
		rr.recipient_id = rid;
		rr.outcome = STORE_FORWARD_OK;
		assert_int_equal(
		    store_redrive_record(f->st, &rr, test_changed_cb, NULL),
		    -EINVAL);
		rr.outcome = (enum store_forward_outcome)7;
		assert_int_equal(
		    store_redrive_record(f->st, &rr, test_changed_cb, NULL),
		    -EINVAL);
	}
}

/* ---- store_db_retry ---------------------------------------------------- */

struct tretry {
	int n;
	char lines[8][128];
};

static void
test_retry_cb(const char *address, const char *was, bool changed, void *arg)
{
	struct tretry *t = arg;

	assert_true(t->n < 8);
	snprintf(t->lines[t->n++], sizeof(t->lines[0]), "%s %s %s", address,
	    was, changed ? "due" : "left");
}

/* `redrive retry` while the daemon's store is open. */
static void
test_db_retry(void **state)
{
	static const char *const rcpts[] = { "bob@example.org",
		"carol@example.org", "dave@example.org" };
	struct fixture *f = *state;
	struct store_db *db = NULL;
	struct store_event_result r;
	struct tretry t;
	struct tev e;
	struct rrow row;
	int64_t rids[3], mid;
	char err[256];

	mid = test_message(f, rcpts, 3, rids);
	test_sent(f, mid, rids, 3, "mg-1@example.org", T0);
	e = test_failed("tok-1", T0 + MINUTE, "permanent", "bounce", 550,
	    "5.1.1", "No such user");
	r = test_apply(f, &e, T0 + 2 * MINUTE);
	assert_string_equal(r.status, "failed");
	e = test_delivered("tok-2", T0 + MINUTE);
	e.recipient = "carol@example.org";
	(void)test_apply(f, &e, T0 + 2 * MINUTE);
	e = test_failed(
	    "tok-3", T0 + MINUTE, "permanent", "old", 0, NULL, "Too old");
	e.recipient = "dave@example.org";
	r = test_apply(f, &e, T0 + 2 * MINUTE);
	assert_string_equal(r.status, "retrying");

	assert_int_equal(
	    store_db_open(&db, f->path, false, err, sizeof(err)), 0);
	/* Only carol: delivered, nothing to do. */
	memset(&t, 0, sizeof(t));
	assert_int_equal(store_db_retry(db, mid, "CAROL@example.org",
			     T0 + 3 * MINUTE, test_retry_cb, &t),
	    0);
	assert_int_equal(t.n, 1);
	assert_string_equal(t.lines[0], "carol@example.org delivered left");
	assert_int_equal(store_db_retry(db, mid, "nobody@example.org",
			     T0 + 3 * MINUTE, test_retry_cb, &t),
	    -ENOENT);
	assert_int_equal(
	    store_db_retry(db, mid + 100, NULL, T0, test_retry_cb, &t),
	    -ENOENT);
	assert_int_equal(store_db_retry(db, 0, NULL, T0, NULL, NULL), -EINVAL);

	/* All: bob failed -> retrying, dave retrying -> due now. */
	memset(&t, 0, sizeof(t));
	assert_int_equal(
	    store_db_retry(db, mid, NULL, T0 + 3 * MINUTE, test_retry_cb, &t),
	    2);
	assert_int_equal(t.n, 3);
	assert_string_equal(t.lines[0], "bob@example.org failed due");
	assert_string_equal(t.lines[1], "carol@example.org delivered left");
	assert_string_equal(t.lines[2], "dave@example.org retrying due");
	test_rcpt(f, rids[0], &row);
	assert_string_equal(row.status, "retrying");
	assert_int_equal(row.next_attempt_at, T0 + 3 * MINUTE);
	assert_string_equal(row.reason, "(null)");
	assert_string_equal(row.last_error, "bounce: 550 5.1.1 No such user");
	test_rcpt(f, rids[2], &row);
	assert_int_equal(row.next_attempt_at, T0 + 3 * MINUTE);
	assert_true(test_is_null(
	    f, "SELECT finished_at FROM messages WHERE id = ?1", mid));

	/* The daemon's scheduler sees both due now. */
	{
		struct store_redrive_batch *b =
		    test_next(f, T0 + 3 * MINUTE, NULL, 0);

		assert_int_equal(b->nitems, 2);
		store_redrive_batch_free(b);
	}

	/* A queued recipient (requeued, waiting on a backoff) too. */
	{
		int changed = 0;

		assert_int_equal(
		    store_redrive_requeue(f->st, rids[2], T0 + 4 * MINUTE,
			test_changed_cb, &changed),
		    0);
		while (changed == 0)
			uv_run(&f->loop, UV_RUN_ONCE);
	}
	memset(&t, 0, sizeof(t));
	assert_int_equal(store_db_retry(db, mid, "dave@example.org",
			     T0 + 5 * MINUTE, test_retry_cb, &t),
	    1);
	assert_string_equal(t.lines[0], "dave@example.org queued due");
	test_rcpt(f, rids[2], &row);
	assert_string_equal(row.status, "queued");
	assert_int_equal(row.next_attempt_at, T0 + 5 * MINUTE);
	store_db_close(db);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(
		    test_token, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(
		    test_token_restart_and_window, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(
		    test_token_rolled_back, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(
		    test_apply_einval, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(
		    test_correlate_redrive_id, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(
		    test_correlate_message_id, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(
		    test_correlate_unknown, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(
		    test_delivered_then_temporary, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(
		    test_temporary_then_delivered, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(
		    test_delayed_bounce, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(
		    test_same_event_twice, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(
		    test_other_events, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(
		    test_policy_old_temporary, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(
		    test_policy_bounce, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(
		    test_policy_max_attempts, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(
		    test_policy_max_one, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(
		    test_finished_at, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(
		    test_redrive_next, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(
		    test_redrive_next_urls, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(
		    test_redrive_requeue_forwarder, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(
		    test_redrive_record, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(
		    test_db_retry, test_setup, test_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
