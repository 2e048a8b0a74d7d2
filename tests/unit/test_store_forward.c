/*
 * Unit tests of the forwarder's store jobs (core/store_forward.c) on a real
 * store in a mkdtemp directory: the order in which queued messages come
 * out, the in-flight exclusion, due times and the next due time, the split
 * of a 1500-recipient envelope into 1000 + 500, what each outcome (OK,
 * RETRY, REJECT, PAUSE) writes, how attempts are counted, the consecutive
 * failure count, that a 'sent' recipient is never picked or changed
 * again, a message whose body is gone, argument checks, and that the CLI's
 * store_db_sends() reads the rows back.  Each test checks the rows with a
 * connection of its own and ends with uv_loop_close() == 0.
 */
#include <dirent.h>
#include <errno.h>
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

#include "redrive/log.h"
#include "redrive/store.h"

#define T0 1700000000000LL

struct fixture {
	char dir[64];
	char path[128];
	char logpath[128];
	int logfd;
	int oldfd;
	uv_loop_t loop;
	struct store *st;
};

static int
test_setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	char err[512];

	if (f == NULL)
		return -1;
	snprintf(f->dir, sizeof(f->dir), "/tmp/test_store_forward.XXXXXX");
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
	if (store_open(&f->st, f->path, &f->loop, err, sizeof(err)) != 0) {
		fprintf(stderr, "store_open: %s\n", err);
		return -1;
	}
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

	if (f->st != NULL) {
		store_close(f->st);
		f->st = NULL;
		(void)uv_run(&f->loop, UV_RUN_DEFAULT);
	}
	assert_int_equal(uv_loop_close(&f->loop), 0);
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

/* ---- Helpers ----------------------------------------------------------- */

struct test_wait {
	int calls;
	int status;
	int64_t id;
	struct store_forward_batch *b;
};

static void
test_submit_cb(int status, int64_t id, void *arg)
{
	struct test_wait *w = arg;

	w->calls++;
	w->status = status;
	w->id = id;
}

/* Stores one message to the given recipients; returns its local id. */
static int64_t
test_store_msg(
    struct fixture *f, const char *const *rcpts, size_t n, const char *body)
{
	struct store_new_message m;
	struct test_wait w;

	memset(&m, 0, sizeof(m));
	memset(&w, 0, sizeof(w));
	m.received_at = T0;
	m.mail_from = "app@example.com";
	m.rcpts = rcpts;
	m.nrcpts = n;
	m.client_addr = "127.0.0.1";
	m.data = body;
	m.len = strlen(body);
	assert_int_equal(store_submit(f->st, &m, test_submit_cb, &w), 0);
	while (w.calls == 0)
		(void)uv_run(&f->loop, UV_RUN_ONCE);
	assert_int_equal(w.status, 0);
	return w.id;
}

static int64_t
test_store_one(struct fixture *f, const char *rcpt, const char *body)
{
	const char *r[1] = { rcpt };

	return test_store_msg(f, r, 1, body);
}

static void
test_next_cb(int status, struct store_forward_batch *b, void *arg)
{
	struct test_wait *w = arg;

	w->calls++;
	w->status = status;
	w->b = b;
}

/* Runs store_forward_next and waits; returns the batch (never NULL). */
static struct store_forward_batch *
test_next(
    struct fixture *f, int64_t now, size_t max, const int64_t *ex, size_t nex)
{
	struct test_wait w;

	memset(&w, 0, sizeof(w));
	assert_int_equal(
	    store_forward_next(f->st, now, max, ex, nex, test_next_cb, &w), 0);
	while (w.calls == 0)
		(void)uv_run(&f->loop, UV_RUN_ONCE);
	assert_int_equal(w.calls, 1);
	assert_int_equal(w.status, 0);
	assert_non_null(w.b);
	return w.b;
}

static void
test_record_cb(int status, void *arg)
{
	struct test_wait *w = arg;

	w->calls++;
	w->status = status;
}

/* Records one outcome for the recipients of m and waits. */
static void
test_record(struct fixture *f, const struct store_forward_msg *m,
    enum store_forward_outcome o, int http, const char *mgid, const char *text,
    int64_t at, int64_t next)
{
	struct store_forward_result r;
	struct test_wait w;
	int64_t *ids;
	size_t i;

	ids = calloc(m->nrcpts, sizeof(*ids));
	assert_non_null(ids);
	for (i = 0; i < m->nrcpts; i++)
		ids[i] = m->rcpts[i].id;
	memset(&r, 0, sizeof(r));
	r.message_id = m->id;
	r.rcpt_ids = ids;
	r.nrcpts = m->nrcpts;
	r.outcome = o;
	r.at = at;
	r.now = at + 5;
	r.via = "mime";
	r.http_status = http;
	r.mailgun_id = mgid;
	r.result = text;
	r.next_attempt_at = next;
	memset(&w, 0, sizeof(w));
	assert_int_equal(
	    store_forward_record(f->st, &r, test_record_cb, &w), 0);
	free(ids); /* copied by the store */
	while (w.calls == 0)
		(void)uv_run(&f->loop, UV_RUN_ONCE);
	assert_int_equal(w.status, 0);
}

static sqlite3 *
test_db(struct fixture *f)
{
	sqlite3 *db = NULL;

	assert_int_equal(
	    sqlite3_open_v2(f->path, &db, SQLITE_OPEN_READWRITE, NULL),
	    SQLITE_OK);
	sqlite3_busy_timeout(db, 5000);
	return db;
}

/* The one integer a query returns (NULL gives -1). */
static int64_t
test_int(struct fixture *f, const char *fmt, ...)
{
	sqlite3 *db = test_db(f);
	sqlite3_stmt *s = NULL;
	char sql[1024];
	va_list ap;
	int64_t v;

	va_start(ap, fmt);
	vsnprintf(sql, sizeof(sql), fmt, ap);
	va_end(ap);
	assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &s, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(s), SQLITE_ROW);
	v = sqlite3_column_type(s, 0) == SQLITE_NULL
	    ? -1
	    : sqlite3_column_int64(s, 0);
	sqlite3_finalize(s);
	sqlite3_close(db);
	return v;
}

/* The one text a query returns, in buf ("(null)" for NULL). */
static const char *
test_text(struct fixture *f, char *buf, size_t len, const char *fmt, ...)
{
	sqlite3 *db = test_db(f);
	sqlite3_stmt *s = NULL;
	char sql[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(sql, sizeof(sql), fmt, ap);
	va_end(ap);
	assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &s, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(s), SQLITE_ROW);
	snprintf(buf, len, "%s",
	    sqlite3_column_type(s, 0) == SQLITE_NULL
		? "(null)"
		: (const char *)sqlite3_column_text(s, 0));
	sqlite3_finalize(s);
	sqlite3_close(db);
	return buf;
}

static void
test_exec(struct fixture *f, const char *sql)
{
	sqlite3 *db = test_db(f);
	char *msg = NULL;

	if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK)
		fail_msg("%s: %s", sql, msg != NULL ? msg : "?");
	sqlite3_close(db);
}

/* ---- Tests ------------------------------------------------------------- */

/* Oldest first, body and recipients loaded, max respected. */
static void
test_order_and_body(void **state)
{
	struct fixture *f = *state;
	const char *r2[] = { "b1@example.net", "b2@example.net" };
	struct store_forward_batch *b;
	int64_t a, bb, c;

	a = test_store_one(f, "a@example.net", "Subject: a\r\n\r\nA\r\n");
	bb = test_store_msg(f, r2, 2, "Subject: b\r\n\r\nB\r\n");
	c = test_store_one(f, "c@example.net", "Subject: c\r\n\r\nC\r\n");
	assert_true(a < bb && bb < c);

	b = test_next(f, T0, 10, NULL, 0);
	assert_int_equal(b->nmsgs, 3);
	assert_int_equal(b->msgs[0].id, a);
	assert_int_equal(b->msgs[1].id, bb);
	assert_int_equal(b->msgs[2].id, c);
	assert_int_equal(b->msgs[1].nrcpts, 2);
	assert_string_equal(b->msgs[1].rcpts[0].address, "b1@example.net");
	assert_string_equal(b->msgs[1].rcpts[1].address, "b2@example.net");
	assert_true(b->msgs[1].rcpts[0].id < b->msgs[1].rcpts[1].id);
	assert_int_equal(b->msgs[1].len, strlen("Subject: b\r\n\r\nB\r\n"));
	assert_memory_equal(
	    b->msgs[1].data, "Subject: b\r\n\r\nB\r\n", b->msgs[1].len);
	assert_int_equal(b->msgs[0].failures, 0);
	assert_int_equal(b->queued, 4);
	assert_int_equal(b->next_due, 0);
	store_forward_batch_free(b);

	b = test_next(f, T0, 1, NULL, 0);
	assert_int_equal(b->nmsgs, 1);
	assert_int_equal(b->msgs[0].id, a);
	store_forward_batch_free(b);
}

/* Messages in flight are skipped; the rest still come out in order. */
static void
test_exclusion(void **state)
{
	struct fixture *f = *state;
	struct store_forward_batch *b;
	int64_t a, bb, c, ex[2];

	a = test_store_one(f, "a@example.net", "A\r\n");
	bb = test_store_one(f, "b@example.net", "B\r\n");
	c = test_store_one(f, "c@example.net", "C\r\n");

	ex[0] = a;
	b = test_next(f, T0, 1, ex, 1);
	assert_int_equal(b->nmsgs, 1);
	assert_int_equal(b->msgs[0].id, bb);
	store_forward_batch_free(b);

	ex[1] = c;
	b = test_next(f, T0, 5, ex, 2);
	assert_int_equal(b->nmsgs, 1);
	assert_int_equal(b->msgs[0].id, bb);
	store_forward_batch_free(b);

	ex[0] = a;
	ex[1] = bb;
	b = test_next(f, T0, 5, ex, 2);
	assert_int_equal(b->nmsgs, 1);
	assert_int_equal(b->msgs[0].id, c);
	store_forward_batch_free(b);
}

/*
 * RETRY sets next_attempt_at and last_error, leaves the recipient queued
 * with attempts 0, hides the message until it is due, and shows up as the
 * next due time.  Consecutive failures are counted.
 */
static void
test_retry_and_due(void **state)
{
	struct fixture *f = *state;
	struct store_forward_batch *b;
	char buf[256];
	int64_t a, bb;

	a = test_store_one(f, "a@example.net", "A\r\n");
	bb = test_store_one(f, "b@example.net", "B\r\n");

	b = test_next(f, T0, 1, NULL, 0);
	assert_int_equal(b->msgs[0].id, a);
	test_record(f, &b->msgs[0], STORE_FORWARD_RETRY, 503, NULL,
	    "Service Unavailable", T0, T0 + 10000);
	store_forward_batch_free(b);

	assert_int_equal(test_int(f,
			     "SELECT attempts FROM recipients WHERE "
			     "message_id = %lld",
			     (long long)a),
	    0);
	assert_string_equal(test_text(f, buf, sizeof(buf),
				"SELECT status FROM recipients WHERE "
				"message_id = %lld",
				(long long)a),
	    "queued");
	assert_int_equal(test_int(f,
			     "SELECT next_attempt_at FROM recipients "
			     "WHERE message_id = %lld",
			     (long long)a),
	    T0 + 10000);
	assert_string_equal(test_text(f, buf, sizeof(buf),
				"SELECT last_error FROM recipients WHERE "
				"message_id = %lld",
				(long long)a),
	    "503 Service Unavailable");
	assert_int_equal(
	    test_int(f,
		"SELECT count(*) FROM attempts WHERE "
		"message_id = %lld AND http_status = 503 AND "
		"mailgun_id IS NULL AND via = 'mime' AND at = %lld",
		(long long)a, (long long)T0),
	    1);

	/* Not due yet: b comes out, and a's due time is the next one. */
	b = test_next(f, T0 + 9999, 10, NULL, 0);
	assert_int_equal(b->nmsgs, 1);
	assert_int_equal(b->msgs[0].id, bb);
	assert_int_equal(b->next_due, T0 + 10000);
	assert_int_equal(b->queued, 2);
	store_forward_batch_free(b);

	/* Due: a comes first again, with one failure behind it. */
	b = test_next(f, T0 + 10000, 10, NULL, 0);
	assert_int_equal(b->nmsgs, 2);
	assert_int_equal(b->msgs[0].id, a);
	assert_int_equal(b->msgs[0].failures, 1);
	assert_int_equal(b->msgs[1].failures, 0);
	assert_int_equal(b->next_due, 0);
	test_record(f, &b->msgs[0], STORE_FORWARD_RETRY, 0, NULL,
	    "Operation timed out", T0 + 10000, T0 + 20000);
	store_forward_batch_free(b);

	b = test_next(f, T0 + 20000, 1, NULL, 0);
	assert_int_equal(b->msgs[0].id, a);
	assert_int_equal(b->msgs[0].failures, 2);
	/* A transport error: no HTTP status, last_error the text alone. */
	assert_int_equal(test_int(f,
			     "SELECT count(*) FROM attempts WHERE "
			     "message_id = %lld AND http_status IS NULL",
			     (long long)a),
	    1);
	assert_string_equal(test_text(f, buf, sizeof(buf),
				"SELECT last_error FROM recipients WHERE "
				"message_id = %lld",
				(long long)a),
	    "Operation timed out");

	/* Accepted: counted once, failures reset, never picked again. */
	test_record(f, &b->msgs[0], STORE_FORWARD_OK, 200, "20261128.1@mg.test",
	    "Queued. Thank you.", T0 + 20000, 0);
	store_forward_batch_free(b);
	assert_int_equal(test_int(f,
			     "SELECT attempts FROM recipients WHERE "
			     "message_id = %lld",
			     (long long)a),
	    1);
	assert_int_equal(test_int(f,
			     "SELECT count(*) FROM attempts WHERE "
			     "message_id = %lld",
			     (long long)a),
	    3);
	b = test_next(f, T0 + 30000, 10, NULL, 0);
	assert_int_equal(b->nmsgs, 1);
	assert_int_equal(b->msgs[0].id, bb);
	store_forward_batch_free(b);
}

/* OK: sent, id recorded bare on recipient and message, attempts + 1. */
static void
test_ok(void **state)
{
	struct fixture *f = *state;
	const char *r[] = { "x@example.net", "y@example.net" };
	struct store_forward_batch *b;
	char buf[256];
	int64_t a;

	a = test_store_msg(f, r, 2, "X\r\n");
	/* A PAUSE first: only last_error and an attempts row. */
	b = test_next(f, T0, 1, NULL, 0);
	test_record(
	    f, &b->msgs[0], STORE_FORWARD_PAUSE, 401, NULL, "Forbidden", T0, 0);
	store_forward_batch_free(b);
	assert_int_equal(test_int(f,
			     "SELECT count(*) FROM recipients WHERE "
			     "status = 'queued' AND attempts = 0 AND "
			     "next_attempt_at IS NULL AND last_error = "
			     "'401 Forbidden'"),
	    2);

	b = test_next(f, T0 + 1, 1, NULL, 0);
	assert_int_equal(b->msgs[0].failures, 1);
	test_record(f, &b->msgs[0], STORE_FORWARD_OK, 200,
	    "20261128010152.1.34101@mg.test", "Queued. Thank you.", T0 + 1, 0);
	store_forward_batch_free(b);
	assert_int_equal(test_int(f,
			     "SELECT count(*) FROM recipients WHERE "
			     "status = 'sent' AND attempts = 1 AND "
			     "next_attempt_at IS NULL AND last_error IS NULL "
			     "AND mailgun_id = "
			     "'20261128010152.1.34101@mg.test' AND "
			     "updated_at = %lld",
			     (long long)(T0 + 6)),
	    2);
	assert_string_equal(test_text(f, buf, sizeof(buf),
				"SELECT mailgun_id FROM messages WHERE "
				"id = %lld",
				(long long)a),
	    "20261128010152.1.34101@mg.test");
	assert_int_equal(test_int(f,
			     "SELECT finished_at FROM messages WHERE "
			     "id = %lld",
			     (long long)a),
	    -1);
	assert_int_equal(test_int(f, "SELECT count(*) FROM attempt_rcpts"), 4);

	/* Sent is final for the forwarder: nothing comes out... */
	b = test_next(f, T0 + 100000, 10, NULL, 0);
	assert_int_equal(b->nmsgs, 0);
	assert_int_equal(b->queued, 0);
	store_forward_batch_free(b);
}

/* A late record against recipients already sent changes nothing. */
static void
test_sent_untouched(void **state)
{
	struct fixture *f = *state;
	struct store_forward_batch *b;
	struct store_forward_msg keep;
	struct store_forward_rcpt rc;

	(void)test_store_one(f, "a@example.net", "A\r\n");
	b = test_next(f, T0, 1, NULL, 0);
	rc.id = b->msgs[0].rcpts[0].id;
	rc.address = b->msgs[0].rcpts[0].address;
	keep = b->msgs[0];
	keep.rcpts = &rc;
	test_record(
	    f, &keep, STORE_FORWARD_OK, 200, "one@mg.test", "Queued.", T0, 0);
	test_record(
	    f, &keep, STORE_FORWARD_REJECT, 400, NULL, "bad", T0 + 1, 0);
	test_record(
	    f, &keep, STORE_FORWARD_RETRY, 500, NULL, "oops", T0 + 2, T0 + 99);
	test_record(
	    f, &keep, STORE_FORWARD_OK, 200, "two@mg.test", "Queued.", T0, 0);
	store_forward_batch_free(b);
	assert_int_equal(test_int(f,
			     "SELECT count(*) FROM recipients WHERE "
			     "status = 'sent' AND attempts = 1 AND "
			     "mailgun_id = 'one@mg.test' AND reason IS NULL "
			     "AND last_error IS NULL AND next_attempt_at IS "
			     "NULL"),
	    1);
	/* The requests themselves are still on record. */
	assert_int_equal(test_int(f, "SELECT count(*) FROM attempts"), 4);
}

/* REJECT: failed with "<status> <text>" as reason and last_error. */
static void
test_reject(void **state)
{
	struct fixture *f = *state;
	struct store_forward_batch *b;
	char buf[256];
	int64_t a;

	a = test_store_one(f, "bad@@example.net", "A\r\n");
	b = test_next(f, T0, 1, NULL, 0);
	test_record(f, &b->msgs[0], STORE_FORWARD_REJECT, 400, NULL,
	    "to parameter is not a valid address. please check documentation",
	    T0, 0);
	store_forward_batch_free(b);
	assert_string_equal(test_text(f, buf, sizeof(buf),
				"SELECT status FROM recipients WHERE "
				"message_id = %lld",
				(long long)a),
	    "failed");
	assert_string_equal(test_text(f, buf, sizeof(buf),
				"SELECT reason FROM recipients WHERE "
				"message_id = %lld",
				(long long)a),
	    "400 to parameter is not a valid address. please check "
	    "documentation");
	assert_string_equal(test_text(f, buf, sizeof(buf),
				"SELECT last_error FROM recipients WHERE "
				"message_id = %lld",
				(long long)a),
	    "400 to parameter is not a valid address. please check "
	    "documentation");
	assert_int_equal(test_int(f,
			     "SELECT attempts FROM recipients WHERE "
			     "message_id = %lld",
			     (long long)a),
	    0);
	assert_int_equal(test_int(f,
			     "SELECT finished_at FROM messages WHERE "
			     "id = %lld",
			     (long long)a),
	    T0 + 5);
	b = test_next(f, T0 + 100000, 10, NULL, 0);
	assert_int_equal(b->nmsgs, 0);
	store_forward_batch_free(b);
}

/*
 * 1500 recipients: two requests, 1000 (the lowest ids) then 500; a
 * rejection of the first chunk leaves the message unfinished until the
 * second is sent.
 */
static void
test_split(void **state)
{
	struct fixture *f = *state;
	struct store_forward_batch *b;
	const char **r;
	char **names;
	int64_t a, maxid;
	size_t i;

	r = calloc(1500, sizeof(*r));
	names = calloc(1500, sizeof(*names));
	assert_non_null(r);
	assert_non_null(names);
	for (i = 0; i < 1500; i++) {
		names[i] = malloc(32);
		assert_non_null(names[i]);
		snprintf(names[i], 32, "u%04zu@example.net", i);
		r[i] = names[i];
	}
	a = test_store_msg(f, r, 1500, "Subject: many\r\n\r\nhi\r\n");

	b = test_next(f, T0, 4, NULL, 0);
	assert_int_equal(b->nmsgs, 1);
	assert_int_equal(b->msgs[0].nrcpts, STORE_FORWARD_MAX_RCPTS);
	assert_string_equal(b->msgs[0].rcpts[0].address, "u0000@example.net");
	assert_string_equal(b->msgs[0].rcpts[999].address, "u0999@example.net");
	maxid = b->msgs[0].rcpts[999].id;
	test_record(f, &b->msgs[0], STORE_FORWARD_OK, 200, "first@mg.test",
	    "Queued. Thank you.", T0, 0);
	store_forward_batch_free(b);

	b = test_next(f, T0 + 1, 4, NULL, 0);
	assert_int_equal(b->nmsgs, 1);
	assert_int_equal(b->msgs[0].id, a);
	assert_int_equal(b->msgs[0].nrcpts, 500);
	assert_string_equal(b->msgs[0].rcpts[0].address, "u1000@example.net");
	assert_true(b->msgs[0].rcpts[0].id > maxid);
	assert_int_equal(b->msgs[0].failures, 0);
	test_record(f, &b->msgs[0], STORE_FORWARD_OK, 200, "second@mg.test",
	    "Queued. Thank you.", T0 + 1, 0);
	store_forward_batch_free(b);

	b = test_next(f, T0 + 2, 4, NULL, 0);
	assert_int_equal(b->nmsgs, 0);
	store_forward_batch_free(b);
	assert_int_equal(test_int(f,
			     "SELECT count(*) FROM recipients WHERE "
			     "status = 'sent' AND attempts = 1"),
	    1500);
	assert_int_equal(test_int(f,
			     "SELECT count(*) FROM recipients WHERE "
			     "mailgun_id = 'first@mg.test'"),
	    1000);
	assert_int_equal(test_int(f,
			     "SELECT count(*) FROM attempt_rcpts ar JOIN "
			     "attempts a ON a.id = ar.attempt_id WHERE "
			     "a.mailgun_id = 'second@mg.test'"),
	    500);
	for (i = 0; i < 1500; i++)
		free(names[i]);
	free(names);
	free(r);
}

/* A queued message whose body is gone fails instead of looping. */
static void
test_body_gone(void **state)
{
	struct fixture *f = *state;
	struct store_forward_batch *b;
	char buf[256];
	int64_t a, bb;

	a = test_store_one(f, "a@example.net", "A\r\n");
	bb = test_store_one(f, "b@example.net", "B\r\n");
	(void)a;
	test_exec(f, "DELETE FROM bodies WHERE message_id = 1");
	b = test_next(f, T0, 1, NULL, 0);
	assert_int_equal(b->nmsgs, 1);
	assert_int_equal(b->msgs[0].id, bb);
	store_forward_batch_free(b);
	assert_string_equal(test_text(f, buf, sizeof(buf),
				"SELECT status || ': ' || reason FROM "
				"recipients WHERE message_id = 1"),
	    "failed: the stored message is gone; it cannot be sent");
}

/* The CLI's store_db_sends reads what record wrote. */
static void
test_db_sends(void **state)
{
	struct fixture *f = *state;
	const char *r[] = { "x@example.net", "y@example.net" };
	struct store_forward_batch *b;
	struct store_send_row *rows = NULL;
	struct store_db *db = NULL;
	char err[256];
	size_t n = 0;
	int64_t a;

	a = test_store_msg(f, r, 2, "X\r\n");
	b = test_next(f, T0, 1, NULL, 0);
	test_record(f, &b->msgs[0], STORE_FORWARD_RETRY, 0, NULL,
	    "Connection refused", T0, T0 + 10);
	store_forward_batch_free(b);
	b = test_next(f, T0 + 10, 1, NULL, 0);
	test_record(f, &b->msgs[0], STORE_FORWARD_OK, 200, "id1@mg.test",
	    "Queued. Thank you.", T0 + 10, 0);
	store_forward_batch_free(b);

	assert_int_equal(
	    store_db_open(&db, f->path, true, err, sizeof(err)), 0);
	assert_int_equal(store_db_sends(db, a, &rows, &n), 0);
	assert_int_equal(n, 2);
	assert_int_equal(rows[0].at, T0);
	assert_string_equal(rows[0].via, "mime");
	assert_int_equal(rows[0].http_status, 0);
	assert_null(rows[0].mailgun_id);
	assert_string_equal(rows[0].result, "Connection refused");
	assert_int_equal(rows[0].nrecipients, 2);
	assert_string_equal(rows[0].recipients[0], "x@example.net");
	assert_string_equal(rows[0].recipients[1], "y@example.net");
	assert_int_equal(rows[1].http_status, 200);
	assert_string_equal(rows[1].mailgun_id, "id1@mg.test");
	assert_string_equal(rows[1].result, "Queued. Thank you.");
	assert_int_equal(rows[1].nrecipients, 2);
	store_send_rows_free(rows, n);
	store_db_close(db);
}

/* Bad arguments are refused; a closed store says so. */
static void
test_args(void **state)
{
	struct fixture *f = *state;
	struct store_forward_result r;
	struct test_wait w;
	int64_t id = 1;

	memset(&w, 0, sizeof(w));
	memset(&r, 0, sizeof(r));
	r.message_id = 1;
	r.rcpt_ids = &id;
	r.nrcpts = 1;
	r.via = "mime";
	r.outcome = STORE_FORWARD_OK;
	assert_int_equal(store_forward_record(f->st, &r, test_record_cb, &w),
	    -EINVAL); /* OK without an id */
	r.mailgun_id = "";
	assert_int_equal(
	    store_forward_record(f->st, &r, test_record_cb, &w), -EINVAL);
	r.mailgun_id = "x@mg";
	r.via = "smtp";
	assert_int_equal(
	    store_forward_record(f->st, &r, test_record_cb, &w), -EINVAL);
	r.via = "mime";
	r.nrcpts = 0;
	assert_int_equal(
	    store_forward_record(f->st, &r, test_record_cb, &w), -EINVAL);
	r.nrcpts = 1;
	assert_int_equal(store_forward_record(f->st, &r, NULL, &w), -EINVAL);
	assert_int_equal(
	    store_forward_next(f->st, T0, 0, NULL, 0, test_next_cb, &w),
	    -EINVAL);
	assert_int_equal(
	    store_forward_next(f->st, T0, 1, NULL, 2, test_next_cb, &w),
	    -EINVAL);
	assert_int_equal(
	    store_forward_next(f->st, T0, 1, NULL, 0, NULL, &w), -EINVAL);

	store_close(f->st);
	assert_int_equal(
	    store_forward_next(f->st, T0, 1, NULL, 0, test_next_cb, &w),
	    -ESHUTDOWN);
	assert_int_equal(
	    store_forward_record(f->st, &r, test_record_cb, &w), -ESHUTDOWN);
	f->st = NULL;
	(void)uv_run(&f->loop, UV_RUN_DEFAULT);
	assert_int_equal(w.calls, 0);
	store_forward_batch_free(NULL);
}

/* A record whose transaction fails stores nothing and says so. */
static void
test_record_fault(void **state)
{
	struct fixture *f = *state;
	struct store_forward_batch *b;
	struct store_forward_result r;
	struct test_wait w;
	int64_t id;

	(void)test_store_one(f, "a@example.net", "A\r\n");
	b = test_next(f, T0, 1, NULL, 0);
	id = b->msgs[0].rcpts[0].id;
	memset(&r, 0, sizeof(r));
	r.message_id = b->msgs[0].id;
	r.rcpt_ids = &id;
	r.nrcpts = 1;
	r.via = "mime";
	r.outcome = STORE_FORWARD_OK;
	r.mailgun_id = "x@mg.test";
	r.at = T0;
	r.now = T0;
	store_set_fault(f->st, -ENOSPC);
	memset(&w, 0, sizeof(w));
	assert_int_equal(
	    store_forward_record(f->st, &r, test_record_cb, &w), 0);
	while (w.calls == 0)
		(void)uv_run(&f->loop, UV_RUN_ONCE);
	assert_int_equal(w.status, -ENOSPC);
	store_set_fault(f->st, 0);
	store_forward_batch_free(b);
	assert_int_equal(test_int(f, "SELECT count(*) FROM attempts"), 0);
	assert_int_equal(test_int(f,
			     "SELECT count(*) FROM recipients WHERE "
			     "status = 'queued'"),
	    1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(
		    test_order_and_body, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(
		    test_exclusion, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(
		    test_retry_and_due, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(
		    test_ok, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(
		    test_sent_untouched, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(
		    test_reject, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(
		    test_split, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(
		    test_body_gone, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(
		    test_db_sends, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(
		    test_args, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(
		    test_record_fault, test_setup, test_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
