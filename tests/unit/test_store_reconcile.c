/*
 * Unit tests of the store jobs of /healthz and reconciliation
 * (core/store_health.c, core/store_reconcile.c) on a real store in a
 * mkdtemp directory, driven through the store thread on a libuv loop.
 * Messages go in with store_submit(); the test's own read-write
 * connection then puts recipients into the states under test.  Covered:
 * store_reconcile_due's filter (status sent/deferred only, a Mailgun id,
 * updated_at at or before the bound, message id above after_id), its
 * order, its grouping (one item per message and Mailgun id), its max and
 * its argument checks; store_health_ping's success, its failure under an
 * injected fault, and its refusal after store_close.  Every test ends
 * with uv_loop_close() == 0.
 */
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
#include "redrive/store_health.h"
#include "redrive/store_reconcile.h"

#define T0 1790000000000LL

struct fixture {
	char dir[64];
	char path[128];
	int logfd;
	int oldfd;
	uv_loop_t loop;
	struct store *st;
	sqlite3 *db; /* the test's own read-write connection */
	bool closed;
};

static int
test_setup(void **state)
{
	struct fixture *f;
	char err[512], logpath[160];

	f = calloc(1, sizeof(*f));
	if (f == NULL)
		return -1;
	snprintf(f->dir, sizeof(f->dir), "/tmp/test_store_reconcile.XXXXXX");
	if (mkdtemp(f->dir) == NULL) {
		free(f);
		return -1;
	}
	snprintf(f->path, sizeof(f->path), "%s/redrive.db", f->dir);
	snprintf(logpath, sizeof(logpath), "%s/log", f->dir);
	f->logfd = open(logpath, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (f->logfd < 0 || uv_loop_init(&f->loop) != 0) {
		free(f);
		return -1;
	}
	f->oldfd = log_set_fd(f->logfd);
	if (store_open(&f->st, f->path, &f->loop, err, sizeof(err)) != 0 ||
	    sqlite3_open(f->path, &f->db) != SQLITE_OK) {
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
	char p[200];

	sqlite3_close(f->db);
	if (!f->closed)
		store_close(f->st);
	assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
	assert_int_equal(uv_loop_close(&f->loop), 0);
	log_set_fd(f->oldfd);
	close(f->logfd);
	snprintf(p, sizeof(p), "%s/log", f->dir);
	unlink(p);
	snprintf(p, sizeof(p), "%s/redrive.db", f->dir);
	unlink(p);
	snprintf(p, sizeof(p), "%s/redrive.db-wal", f->dir);
	unlink(p);
	snprintf(p, sizeof(p), "%s/redrive.db-shm", f->dir);
	unlink(p);
	rmdir(f->dir);
	free(f);
	return 0;
}

static void
test_wait(struct fixture *f, const int *calls, int want)
{
	while (*calls < want)
		(void)uv_run(&f->loop, UV_RUN_ONCE);
}

static void
test_submit_cb(int status, int64_t id, void *arg)
{
	int64_t *out = arg;

	assert_int_equal(status, 0);
	*out = id;
}

/* Stores a message to two recipients; returns its id. */
static int64_t
test_message(struct fixture *f)
{
	static const char *const rcpts[] = { "a@example.net", "b@example.net" };
	static const char data[] = "Subject: t\r\n\r\nhello\r\n";
	struct store_new_message m;
	int64_t id = 0;

	memset(&m, 0, sizeof(m));
	m.received_at = T0;
	m.mail_from = "app@example.com";
	m.rcpts = rcpts;
	m.nrcpts = 2;
	m.data = data;
	m.len = sizeof(data) - 1;
	assert_int_equal(store_submit(f->st, &m, test_submit_cb, &id), 0);
	while (id == 0)
		(void)uv_run(&f->loop, UV_RUN_ONCE);
	return id;
}

/* Sets one recipient of message mid (by address) as the test wants. */
static void
test_set(struct fixture *f, int64_t mid, const char *addr, const char *status,
    const char *mgid, int64_t updated_at)
{
	sqlite3_stmt *s = NULL;

	assert_int_equal(sqlite3_prepare_v2(f->db,
			     "UPDATE recipients SET status = ?3,"
			     " mailgun_id = ?4, updated_at = ?5"
			     " WHERE message_id = ?1 AND address = ?2",
			     -1, &s, NULL),
	    SQLITE_OK);
	sqlite3_bind_int64(s, 1, mid);
	sqlite3_bind_text(s, 2, addr, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 3, status, -1, SQLITE_STATIC);
	if (mgid != NULL)
		sqlite3_bind_text(s, 4, mgid, -1, SQLITE_STATIC);
	else
		sqlite3_bind_null(s, 4);
	sqlite3_bind_int64(s, 5, updated_at);
	assert_int_equal(sqlite3_step(s), SQLITE_DONE);
	assert_int_equal(sqlite3_changes(f->db), 1);
	sqlite3_finalize(s);
}

struct due {
	int calls;
	int status;
	struct store_reconcile_item items[16];
	size_t n;
};

static void
test_due_cb(
    int status, const struct store_reconcile_item *items, size_t n, void *arg)
{
	struct due *d = arg;

	d->calls++;
	d->status = status;
	assert_true(n <= 16);
	d->n = n;
	if (n > 0)
		memcpy(d->items, items, n * sizeof(*items));
}

static void
test_due(struct fixture *f, int64_t before, int64_t after_id, size_t max,
    struct due *d)
{
	memset(d, 0, sizeof(*d));
	assert_int_equal(
	    store_reconcile_due(f->st, before, after_id, max, test_due_cb, d),
	    0);
	test_wait(f, &d->calls, 1);
	assert_int_equal(d->status, 0);
}

static void
test_reconcile_due(void **state)
{
	struct fixture *f = *state;
	int64_t m1, m2, m3, m4;
	struct due d;

	m1 = test_message(f);
	m2 = test_message(f);
	m3 = test_message(f);
	m4 = test_message(f);
	/* m1: both sent under one id: one item. */
	test_set(f, m1, "a@example.net", "sent", "id1@mg", T0);
	test_set(f, m1, "b@example.net", "deferred", "id1@mg", T0);
	/* m2: one delivered, one sent under a resend's id. */
	test_set(f, m2, "a@example.net", "delivered", "id2@mg", T0);
	test_set(f, m2, "b@example.net", "sent", "id2b@mg", T0);
	/* m3: final or not yet accepted: nothing to look up. */
	test_set(f, m3, "a@example.net", "failed", "id3@mg", T0);
	test_set(f, m3, "b@example.net", "queued", NULL, T0);
	/* m4: sent, but changed recently. */
	test_set(f, m4, "a@example.net", "sent", "id4@mg", T0 + 5000);
	test_set(f, m4, "b@example.net", "retrying", "id4@mg", T0);

	test_due(f, T0 + 1000, 0, 10, &d);
	assert_int_equal(d.n, 2);
	assert_true(d.items[0].message_id == m1);
	assert_string_equal(d.items[0].mailgun_id, "id1@mg");
	assert_true(d.items[1].message_id == m2);
	assert_string_equal(d.items[1].mailgun_id, "id2b@mg");

	/* The bound is inclusive; m4 comes once old enough. */
	test_due(f, T0 + 5000, 0, 10, &d);
	assert_int_equal(d.n, 3);
	assert_true(d.items[2].message_id == m4);
	test_due(f, T0 - 1, 0, 10, &d);
	assert_int_equal(d.n, 0);

	/* Round-robin: after_id and max. */
	test_due(f, T0 + 5000, m1, 10, &d);
	assert_int_equal(d.n, 2);
	assert_true(d.items[0].message_id == m2);
	test_due(f, T0 + 5000, 0, 1, &d);
	assert_int_equal(d.n, 1);
	assert_true(d.items[0].message_id == m1);
	test_due(f, T0 + 5000, m4, 10, &d);
	assert_int_equal(d.n, 0);

	/* Two ids of one message (a resend to one recipient): two items. */
	test_set(f, m2, "a@example.net", "sent", "id2@mg", T0);
	test_due(f, T0 + 1000, m1, 10, &d);
	assert_int_equal(d.n, 2);
	assert_true(d.items[0].message_id == m2 && d.items[1].message_id == m2);
	assert_string_equal(d.items[0].mailgun_id, "id2@mg");
	assert_string_equal(d.items[1].mailgun_id, "id2b@mg");

	assert_int_equal(
	    store_reconcile_due(f->st, T0, 0, 0, test_due_cb, &d), -EINVAL);
	assert_int_equal(
	    store_reconcile_due(f->st, T0, 0, 1001, test_due_cb, &d), -EINVAL);
	assert_int_equal(
	    store_reconcile_due(f->st, T0, 0, 1, NULL, &d), -EINVAL);
	assert_int_equal(
	    store_reconcile_due(NULL, T0, 0, 1, test_due_cb, &d), -EINVAL);
}

struct ping {
	int calls;
	int status;
};

static void
test_ping_cb(int status, void *arg)
{
	struct ping *p = arg;

	p->calls++;
	p->status = status;
}

static void
test_health_ping(void **state)
{
	struct fixture *f = *state;
	struct ping p = { 0, 1 };

	assert_int_equal(store_health_ping(f->st, test_ping_cb, &p), 0);
	test_wait(f, &p.calls, 1);
	assert_int_equal(p.status, 0);

	/* A store that cannot commit: the ping says so. */
	store_set_fault(f->st, -ENOSPC);
	assert_int_equal(store_health_ping(f->st, test_ping_cb, &p), 0);
	test_wait(f, &p.calls, 2);
	assert_int_equal(p.status, -ENOSPC);
	store_set_fault(f->st, 0);
	assert_int_equal(store_health_ping(f->st, test_ping_cb, &p), 0);
	test_wait(f, &p.calls, 3);
	assert_int_equal(p.status, 0);

	assert_int_equal(store_health_ping(f->st, NULL, &p), -EINVAL);
	assert_int_equal(store_health_ping(NULL, test_ping_cb, &p), -EINVAL);
	store_close(f->st);
	f->closed = true;
	assert_int_equal(
	    store_health_ping(f->st, test_ping_cb, &p), -ESHUTDOWN);
	assert_int_equal(p.calls, 3);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(
		    test_reconcile_due, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(
		    test_health_ping, test_setup, test_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
