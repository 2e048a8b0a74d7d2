/*
 * Unit tests of the alerts table (core/store_alerts.c, migration 3) on a
 * real store in a mkdtemp directory: a failed recipient's alert and its
 * text (local id, Message-ID, subject, recipient, sends, events, why, the
 * retry command; control characters flattened), exactly one per failure,
 * none for a recipient that is not failed, a new one after a new send,
 * every failed recipient of a message; and the sender's jobs: raise, due
 * (next time, all, exclude), mark (a channel done, sent, kept pending),
 * and the failure-rate check raising at most once per window.
 */
#include <dirent.h>
#include <errno.h>
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

#include "../../core/store_int.h"
#include "redrive/store.h"
#include "redrive/store_alerts.h"

#define T0 1700000000000LL

struct fixture {
	char dir[64];
	char path[128];
	uv_loop_t loop;
	struct store *st;
	sqlite3 *db; /* a connection of the test's own */
};

static int
test_setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	char err[512];

	if (f == NULL)
		return -1;
	snprintf(f->dir, sizeof(f->dir), "/tmp/test_store_alerts.XXXXXX");
	if (mkdtemp(f->dir) == NULL || uv_loop_init(&f->loop) != 0) {
		free(f);
		return -1;
	}
	snprintf(f->path, sizeof(f->path), "%s/redrive.db", f->dir);
	if (store_open(&f->st, f->path, &f->loop, err, sizeof(err)) != 0) {
		fprintf(stderr, "store_open: %s\n", err);
		return -1;
	}
	if (sqlite3_open(f->path, &f->db) != SQLITE_OK)
		return -1;
	sqlite3_busy_timeout(f->db, 5000);
	*state = f;
	return 0;
}

static int
test_teardown(void **state)
{
	struct fixture *f = *state;
	struct dirent *de;
	char p[512];
	DIR *d;

	sqlite3_close(f->db);
	store_close(f->st);
	(void)uv_run(&f->loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&f->loop), 0);
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

static void
test_exec(sqlite3 *db, const char *sql)
{
	char *msg = NULL;

	if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK)
		fail_msg("%s: %s", sql, msg);
}

static int64_t
test_int(sqlite3 *db, const char *sql)
{
	sqlite3_stmt *st = NULL;
	int64_t v = -1;

	assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
	if (sqlite3_step(st) == SQLITE_ROW)
		v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return v;
}

/* The text of one column of the first row; a static buffer. */
static const char *
test_text(sqlite3 *db, const char *sql)
{
	static char buf[8192];
	sqlite3_stmt *st = NULL;
	const unsigned char *s;

	buf[0] = '\0';
	assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
	if (sqlite3_step(st) == SQLITE_ROW &&
	    (s = sqlite3_column_text(st, 0)) != NULL)
		snprintf(buf, sizeof(buf), "%s", (const char *)s);
	sqlite3_finalize(st);
	return buf;
}

/*
 * Message 7 with recipients 70 (failed after one accepted send, one 400
 * and a bounce event), 71 (delivered) and 72 (failed, no events).
 */
static void
test_rows(sqlite3 *db)
{
	test_exec(db,
	    "INSERT INTO messages (id, received_at, mail_from, subject,"
	    " message_id, size) VALUES (7, 1700000000000, 'app@example.com',"
	    " 'Invoice\r\nBcc: evil@x', 'abc.123@client.test', 10);"
	    "INSERT INTO recipients (id, message_id, address, status,"
	    " attempts, reason, updated_at) VALUES"
	    " (70, 7, 'bad@example.net', 'failed', 1, 'bounce 550', 0),"
	    " (71, 7, 'ok@example.net', 'delivered', 1, NULL, 0),"
	    " (72, 7, 'gone@example.net', 'failed', 0, 'rejected', 0);"
	    "INSERT INTO attempts (id, message_id, at, via, http_status,"
	    " mailgun_id, result) VALUES"
	    " (1, 7, 1700000001000, 'mime', 200, 'mg-1@mg.test', 'Queued.'),"
	    " (2, 7, 1700000002000, 'storage', 400, NULL, 'bad to');"
	    "INSERT INTO attempt_rcpts VALUES (1, 70), (1, 71), (2, 70);"
	    "INSERT INTO events (message_id, recipient_id, at, received_at,"
	    " event, severity, reason, code, enhanced_code, message) VALUES"
	    " (7, 70, 1700000003000, 1700000003000, 'failed', 'permanent',"
	    " 'bounce', 550, '5.1.1', 'no such user');");
}

static void
test_recipient_alert(void **state)
{
	struct fixture *f = *state;
	const char *body;

	test_rows(f->db);
	assert_int_equal(store_alerts_recipient_failed(
			     f->db, 70, "reason bounce never re-driven", T0),
	    SQLITE_OK);
	assert_int_equal(test_int(f->db, "SELECT count(*) FROM alerts"), 1);
	assert_int_equal(
	    test_int(f->db, "SELECT sends FROM alerts WHERE recipient_id = 70"),
	    2);
	assert_string_equal(test_text(f->db, "SELECT subject FROM alerts"),
	    "redrive: delivery to bad@example.net failed (message 7)");
	assert_string_equal(
	    test_text(f->db, "SELECT kind || state FROM alerts"),
	    "recipientpending");
	body = test_text(f->db, "SELECT body FROM alerts");
	assert_non_null(strstr(body, "Local id:    7\n"));
	assert_non_null(strstr(body, "Message-ID:  <abc.123@client.test>\n"));
	/* A header's CR LF cannot forge a line of the alert. */
	assert_non_null(strstr(body, "Subject:     Invoice  Bcc: evil@x\n"));
	assert_null(strstr(body, "\nBcc:"));
	assert_non_null(strstr(body, "Recipient:   bad@example.net\n"));
	assert_non_null(
	    strstr(body, "Why stopped: reason bounce never re-driven\n"));
	assert_non_null(strstr(body,
	    "via mime  HTTP 200  Queued.  (Mailgun "
	    "id mg-1@mg.test)\n"));
	assert_non_null(strstr(body, "via storage  HTTP 400  bad to\n"));
	assert_non_null(strstr(body,
	    "failed permanent bounce 550 5.1.1 no "
	    "such user\n"));
	assert_non_null(
	    strstr(body, "redrive retry 7 --recipient bad@example.net\n"));

	/* The same failure again: still one. */
	assert_int_equal(
	    store_alerts_recipient_failed(f->db, 70, "again", T0 + 1),
	    SQLITE_OK);
	assert_int_equal(test_int(f->db, "SELECT count(*) FROM alerts"), 1);
	/* Not failed: none. */
	assert_int_equal(
	    store_alerts_recipient_failed(f->db, 71, "x", T0), SQLITE_OK);
	assert_int_equal(test_int(f->db, "SELECT count(*) FROM alerts"), 1);
	/* A retry's new send, and a new failure: a second alert. */
	test_exec(f->db,
	    "INSERT INTO attempts (id, message_id, at, via, http_status)"
	    " VALUES (3, 7, 1700000009000, 'mime', 400);"
	    "INSERT INTO attempt_rcpts VALUES (3, 70);");
	assert_int_equal(
	    store_alerts_recipient_failed(f->db, 70, "again", T0 + 2),
	    SQLITE_OK);
	assert_int_equal(
	    test_int(
		f->db, "SELECT count(*) FROM alerts WHERE recipient_id = 70"),
	    2);
	/* The unique index holds against a plain insert too. */
	assert_int_not_equal(sqlite3_exec(f->db,
				 "INSERT INTO alerts (kind, recipient_id, "
				 "sends, created_at, subject, body) VALUES "
				 "('recipient', 70, 3, 0, 's', 'b')",
				 NULL, NULL, NULL),
	    SQLITE_OK);
}

static void
test_message_alerts(void **state)
{
	struct fixture *f = *state;

	test_rows(f->db);
	assert_int_equal(
	    store_alerts_message_failed(f->db, 7, "rejected", T0), SQLITE_OK);
	assert_string_equal(test_text(f->db,
				"SELECT group_concat(recipient_id) FROM (SELECT"
				" recipient_id FROM alerts ORDER BY 1)"),
	    "70,72");
	assert_non_null(strstr(
	    test_text(f->db, "SELECT body FROM alerts WHERE recipient_id = 72"),
	    "Sends:\n  (none)\n\nEvents:\n  (none)\n"));
}

static void
test_record_cb(int status, void *arg)
{
	int *st = arg;

	*st = status;
}

/* A rejection recorded by the forwarder's job brings its alerts along. */
static void
test_reject_alerts(void **state)
{
	struct fixture *f = *state;
	struct store_forward_result r;
	int64_t ids[2] = { 80, 81 };
	int status = 1;

	test_exec(f->db,
	    "INSERT INTO messages (id, received_at, mail_from, subject,"
	    " message_id, size) VALUES (8, 1700000000000, 'a@b', 'S', 'm@x',"
	    " 1);"
	    "INSERT INTO recipients (id, message_id, address, updated_at)"
	    " VALUES (80, 8, 'x@example.net', 0), (81, 8, 'y@example.net', 0)");
	memset(&r, 0, sizeof(r));
	r.message_id = 8;
	r.rcpt_ids = ids;
	r.nrcpts = 2;
	r.outcome = STORE_FORWARD_REJECT;
	r.at = T0;
	r.now = T0 + 5;
	r.via = "mime";
	r.http_status = 400;
	r.result = "to parameter is not a valid address";
	assert_int_equal(
	    store_forward_record(f->st, &r, test_record_cb, &status), 0);
	(void)uv_run(&f->loop, UV_RUN_DEFAULT);
	assert_int_equal(status, 0);
	assert_int_equal(test_int(f->db,
			     "SELECT count(*) FROM alerts WHERE kind ="
			     " 'recipient' AND sends = 1 AND created_at ="
			     " 1700000000005"),
	    2);
	assert_non_null(strstr(test_text(f->db,
				   "SELECT body FROM alerts WHERE recipient_id"
				   " = 81"),
	    "via mime  HTTP 400  to parameter is not a valid address\n"));
	assert_non_null(strstr(test_text(f->db,
				   "SELECT body FROM alerts WHERE recipient_id"
				   " = 81"),
	    "Why stopped: Mailgun rejected the message"));
}

/* ---- The sender's jobs ------------------------------------------------- */

struct test_due {
	int calls;
	int status;
	struct store_alert_batch *b;
};

static void
test_due_cb(int status, struct store_alert_batch *b, void *arg)
{
	struct test_due *w = arg;

	w->calls++;
	w->status = status;
	store_alert_batch_free(w->b);
	w->b = b;
}

static void
test_done_cb(int status, void *arg)
{
	int *calls = arg;

	assert_int_equal(status, 0);
	(*calls)++;
}

static void
test_run(struct fixture *f)
{
	(void)uv_run(&f->loop, UV_RUN_DEFAULT);
}

static void
test_due(struct fixture *f, int64_t now, bool all, const int64_t *ex,
    size_t nex, const struct store_alerts_rate *rate, struct test_due *w)
{
	assert_int_equal(store_alerts_due(f->st, now, all, 10, ex, nex, rate,
			     test_due_cb, w),
	    0);
	test_run(f);
	assert_int_equal(w->status, 0);
	assert_non_null(w->b);
}

static void
test_jobs(void **state)
{
	struct fixture *f = *state;
	struct test_due w = { 0 };
	int64_t ex;
	int calls = 0;

	assert_int_equal(store_alerts_raise(f->st, "auth", "subj", "body", T0,
			     test_done_cb, &calls),
	    0);
	assert_int_equal(store_alerts_raise(f->st, "auth", "subj2", "body2",
			     T0 + 1, test_done_cb, &calls),
	    0);
	test_run(f);
	assert_int_equal(calls, 2);
	test_due(f, T0 + 5, false, NULL, 0, NULL, &w);
	assert_int_equal(w.b->n, 2);
	assert_int_equal(w.b->pending, 2);
	assert_string_equal(w.b->items[0].kind, "auth");
	assert_string_equal(w.b->items[0].subject, "subj");
	assert_string_equal(w.b->items[1].body, "body2");

	/* Excluded (in flight): not returned. */
	ex = w.b->items[0].id;
	test_due(f, T0 + 5, false, &ex, 1, NULL, &w);
	assert_int_equal(w.b->n, 1);
	assert_string_equal(w.b->items[0].subject, "subj2");

	/* A failed try: pending, later; the webhook channel done. */
	assert_int_equal(
	    store_alerts_mark(f->st, ex, STORE_ALERT_WEBHOOK, false, T0 + 6,
		T0 + 30000, "smtp: refused", test_done_cb, &calls),
	    0);
	test_run(f);
	test_due(f, T0 + 7, false, NULL, 0, NULL, &w);
	assert_int_equal(w.b->n, 1);
	assert_int_not_equal(w.b->items[0].id, ex);
	/* all: every pending alert, whatever its time (a restart). */
	test_due(f, T0 + 7, true, NULL, 0, NULL, &w);
	assert_int_equal(w.b->n, 2);
	test_due(f, T0 + 30000, false, NULL, 0, NULL, &w);
	assert_int_equal(w.b->n, 2);
	assert_int_equal(w.b->items[1].id, ex);
	assert_int_equal(w.b->items[1].attempts, 1);
	assert_int_equal(w.b->items[1].channels_done, STORE_ALERT_WEBHOOK);
	assert_string_equal(
	    test_text(
		f->db, "SELECT last_error FROM alerts WHERE attempts = 1"),
	    "smtp: refused");

	/* Sent: never due again. */
	assert_int_equal(store_alerts_mark(f->st, ex, STORE_ALERT_MAIL, true,
			     T0 + 30001, 0, NULL, test_done_cb, &calls),
	    0);
	test_run(f);
	test_due(f, T0 + 99999999, true, NULL, 0, NULL, &w);
	assert_int_equal(w.b->n, 1);
	assert_int_equal(w.b->pending, 1);
	assert_int_equal(test_int(f->db,
			     "SELECT channels_done FROM alerts WHERE state ="
			     " 'sent' AND sent_at = 1700000030001"),
	    3);
	assert_int_equal(calls, 4);
	store_alert_batch_free(w.b);

	assert_int_equal(store_alerts_due(f->st, T0, false, 0, NULL, 0, NULL,
			     test_due_cb, &w),
	    -EINVAL);
	assert_int_equal(store_alerts_raise(f->st, "auth", NULL, "b", T0,
			     test_done_cb, &calls),
	    -EINVAL);
}

static void
test_rate(void **state)
{
	struct fixture *f = *state;
	struct store_alerts_rate rate = { 0.5, 60000, 3 };
	struct test_due w = { 0 };
	char sql[512];
	int i;

	test_exec(f->db,
	    "INSERT INTO messages (id, received_at, mail_from, size)"
	    " VALUES (1, 0, 'a@b', 1)");
	/* 4 sends, 2 failures in the window: 0.5 is not above 0.5. */
	for (i = 1; i <= 4; i++) {
		snprintf(sql, sizeof(sql),
		    "INSERT INTO recipients (id, message_id, address,"
		    " updated_at) VALUES (%d, 1, 'r%d@x', 0);"
		    "INSERT INTO attempts (id, message_id, at, via)"
		    " VALUES (%d, 1, %lld, 'mime');"
		    "INSERT INTO attempt_rcpts VALUES (%d, %d);",
		    i, i, i, (long long)T0 + i, i, i);
		test_exec(f->db, sql);
	}
	test_exec(f->db,
	    "INSERT INTO alerts (kind, recipient_id, sends, created_at,"
	    " subject, body, state) VALUES"
	    " ('recipient', 1, 1, 1700000000010, 's', 'b', 'sent'),"
	    " ('recipient', 2, 1, 1700000000010, 's', 'b', 'sent')");
	test_due(f, T0 + 100, false, NULL, 0, &rate, &w);
	assert_false(w.b->rate_raised);
	/* A third failure: 3/4 > 0.5, once. */
	test_exec(f->db,
	    "INSERT INTO alerts (kind, recipient_id, sends, created_at,"
	    " subject, body, state) VALUES"
	    " ('recipient', 3, 1, 1700000000020, 's', 'b', 'sent')");
	test_due(f, T0 + 100, false, NULL, 0, &rate, &w);
	assert_true(w.b->rate_raised);
	assert_int_equal(w.b->n, 1);
	assert_string_equal(w.b->items[0].kind, "failure_rate");
	assert_non_null(strstr(w.b->items[0].body, "Failed recipients: 3\n"));
	assert_non_null(strstr(w.b->items[0].body, "Sends:             4\n"));
	test_due(f, T0 + 200, false, NULL, 0, &rate, &w);
	assert_false(w.b->rate_raised);
	test_due(f, T0 + 50000, false, NULL, 0, &rate, &w);
	assert_false(w.b->rate_raised);
	/* min: with fewer sends than failure_min, never. */
	rate.min = 5;
	test_due(f, T0 + 300, false, NULL, 0, &rate, &w);
	assert_false(w.b->rate_raised);
	/* A later window with its own sends and failures: a second one. */
	rate.min = 2;
	test_exec(f->db,
	    "INSERT INTO attempts (id, message_id, at, via)"
	    " VALUES (9, 1, 1700000200000, 'mime');"
	    "INSERT INTO attempt_rcpts VALUES (9, 1), (9, 2);"
	    "INSERT INTO alerts (kind, recipient_id, sends, created_at,"
	    " subject, body, state) VALUES"
	    " ('recipient', 1, 2, 1700000200001, 's', 'b', 'sent'),"
	    " ('recipient', 2, 2, 1700000200001, 's', 'b', 'sent')");
	test_due(f, T0 + 200100, false, NULL, 0, &rate, &w);
	assert_true(w.b->rate_raised);
	test_due(f, T0 + 200200, false, NULL, 0, &rate, &w);
	assert_false(w.b->rate_raised);
	assert_int_equal(test_int(f->db,
			     "SELECT count(*) FROM alerts WHERE"
			     " kind = 'failure_rate'"),
	    2);
	store_alert_batch_free(w.b);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(
		    test_recipient_alert, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(
		    test_message_alerts, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(
		    test_reject_alerts, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(
		    test_jobs, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(
		    test_rate, test_setup, test_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
