/*
 * Tests of core/store_stats.c: `redrive stats`, `tail` and `purge` on the
 * store's synchronous face.  A real store in a temporary directory, built
 * with store_schema_migrate() and filled by plain SQL with a known mix of
 * messages, recipients, sends and events, then read through store_db_*:
 * exact counts per state, rates' numerators and denominators, the top
 * reasons (terminal events and failed recipients without one) and domains
 * (last '@', lower case, top 5 cut), the --since window; events after an
 * id, in id order, with a limit and a time bound; purge deleting exactly
 * the finished messages before the cut-off with every dependent row, the
 * tokens before theirs, in batches; and a removed store noticed.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>
#include <uv.h>

#include "redrive/store.h"
#include "../../core/store_int.h"

struct test_env {
	char dir[64];
	char path[128];
	sqlite3 *w; /* the writer connection that built the store */
};

static void
test_exec(sqlite3 *db, const char *sql)
{
	char *msg = NULL;
	int rc;

	rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
	if (rc != SQLITE_OK)
		fail_msg("%s: %s", sql, msg != NULL ? msg : "?");
	sqlite3_free(msg);
}

static int64_t
test_count(sqlite3 *db, const char *sql)
{
	sqlite3_stmt *st = NULL;
	int64_t n;

	assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	n = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return n;
}

/*
 * The mix.  Message 1 is received before the window (at 500; the tests
 * use since 1000); 2..6 are inside it:
 *
 *  2 (2000): a@example.org delivered; b@Example.ORG failed (bounce event)
 *  3 (3000): c@example.net delivered after 2 accepted sends (re-driven);
 *            d@example.net delivered, carried by a storage resend
 *            (re-driven); e@x.org retrying (espblock event, and a
 *            temporary 'generic' one that is not terminal); f@x.org queued
 *  4 (4000): g@example.org failed after 3 sends, two terminal 'old'
 *            events (one temporary: 'old' counts at any severity)
 *  5 (5000): h@y.org failed by the forwarder, no event; i@y.org sent;
 *            j@y.org deferred (a temporary event)
 *  6 (6000): k"@"q@Z.example and l@w.example delivered
 */
static void
test_fill(sqlite3 *db)
{
	test_exec(db,
	    "BEGIN;"
	    "INSERT INTO messages (id, received_at, mail_from, size,"
	    " finished_at) VALUES (1, 500, 'a@s', 10, 600),"
	    " (2, 2000, 'a@s', 10, 2500), (3, 3000, 'a@s', 10, NULL),"
	    " (4, 4000, 'a@s', 10, 4500), (5, 5000, 'a@s', 10, NULL),"
	    " (6, 6000, 'a@s', 10, 6500);"
	    "INSERT INTO bodies (message_id, data) VALUES (1, x'00'),"
	    " (2, x'01'), (3, x'02'), (4, x'03'), (5, x'04'), (6, x'05');"
	    "INSERT INTO recipients (id, message_id, address, status,"
	    " attempts, reason, updated_at) VALUES"
	    " (20, 1, 'z@old.org', 'delivered', 1, NULL, 1),"
	    " (1, 2, 'a@example.org', 'delivered', 1, NULL, 1),"
	    " (2, 2, 'b@Example.ORG', 'failed', 1,"
	    "  'bounce: 550 5.1.1 no such user', 1),"
	    " (3, 3, 'c@example.net', 'delivered', 2, NULL, 1),"
	    " (4, 3, 'd@example.net', 'delivered', 1, NULL, 1),"
	    " (5, 3, 'e@x.org', 'retrying', 1, 'espblock: 554', 1),"
	    " (6, 3, 'f@x.org', 'queued', 0, NULL, 1),"
	    " (7, 4, 'g@example.org', 'failed', 3,"
	    "  'gave up after 3 sends: old: not delivered', 1),"
	    " (8, 5, 'h@y.org', 'failed', 0,"
	    "  '400 ''to'' parameter is not valid', 1),"
	    " (9, 5, 'i@y.org', 'sent', 1, NULL, 1),"
	    " (10, 5, 'j@y.org', 'deferred', 1, NULL, 1),"
	    " (11, 6, 'k\"@\"q@Z.example', 'delivered', 1, NULL, 1),"
	    " (12, 6, 'l@w.example', 'delivered', 1, NULL, 1);"
	    "INSERT INTO attempts (id, message_id, at, via, http_status,"
	    " mailgun_id) VALUES (1, 1, 510, 'mime', 200, 'm1'),"
	    " (2, 2, 2010, 'mime', 200, 'm2'), (3, 3, 3010, 'mime', 200, 'm3'),"
	    " (4, 3, 3500, 'storage', 200, 'm3b'),"
	    " (5, 3, 3600, 'mime', 200, 'm3c');"
	    "INSERT INTO attempt_rcpts (attempt_id, recipient_id) VALUES"
	    " (1, 20), (2, 1), (2, 2), (3, 3), (3, 4), (3, 5), (4, 4), (5, 3);"
	    "INSERT INTO events (id, message_id, recipient_id, at, received_at,"
	    " event, severity, reason, code, message) VALUES"
	    " (1, 1, 20, 520, 530, 'delivered', NULL, NULL, 250, 'OK'),"
	    " (2, 2, 2, 2020, 2030, 'failed', 'permanent', 'bounce', 550,"
	    "  'no such user'),"
	    " (3, 3, 5, 3020, 3030, 'failed', 'temporary', 'generic', 421,"
	    "  'later'),"
	    " (4, 3, 5, 3040, 3050, 'failed', 'permanent', 'espblock', 554,"
	    "  'blocked'),"
	    " (5, 4, 7, 4020, 4030, 'failed', 'temporary', 'old', NULL, NULL),"
	    " (6, 4, 7, 4040, 4050, 'failed', 'permanent', 'old', NULL, NULL),"
	    " (7, 5, 10, 5020, 5030, 'failed', 'temporary', 'generic', 452,"
	    "  'full'),"
	    " (8, 6, 11, 6020, 6030, 'delivered', NULL, NULL, 250, 'OK'),"
	    " (9, 6, NULL, 6040, 6050, 'opened', NULL, NULL, NULL, NULL);"
	    "INSERT INTO webhook_tokens (token, digest, at) VALUES"
	    " ('t-old', 'd', 100), ('t-new', 'd', 9000);"
	    "COMMIT;");
}

static int
test_setup(void **state)
{
	struct test_env *env;
	char err[256];

	env = calloc(1, sizeof(*env));
	assert_non_null(env);
	snprintf(env->dir, sizeof(env->dir), "/tmp/redrive-ss-XXXXXX");
	assert_non_null(mkdtemp(env->dir));
	snprintf(env->path, sizeof(env->path), "%s/redrive.db", env->dir);
	assert_int_equal(sqlite3_open_v2(env->path, &env->w,
			     SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL),
	    SQLITE_OK);
	assert_int_equal(
	    store_schema_pragmas(env->w, 1000, err, sizeof(err)), 0);
	assert_int_equal(store_schema_migrate(env->w, err, sizeof(err)), 0);
	test_fill(env->w);
	*state = env;
	return 0;
}

static int
test_teardown(void **state)
{
	struct test_env *env = *state;
	char p[192];

	sqlite3_close(env->w);
	unlink(env->path);
	snprintf(p, sizeof(p), "%s-wal", env->path);
	unlink(p);
	snprintf(p, sizeof(p), "%s-shm", env->path);
	unlink(p);
	rmdir(env->dir);
	free(env);
	return 0;
}

static struct store_db *
test_open(struct test_env *env, bool readonly)
{
	struct store_db *db = NULL;
	char err[256] = "";

	if (store_db_open(&db, env->path, readonly, err, sizeof(err)) != 0)
		fail_msg("store_db_open: %s", err);
	return db;
}

static void
test_item(const struct store_stats_item *it, const char *name, int64_t n)
{
	assert_non_null(it->name);
	assert_string_equal(it->name, name);
	assert_int_equal(it->count, n);
}

/* Index of a state in store_state_names[]. */
static size_t
test_state(const char *name)
{
	size_t i;

	for (i = 0; i < STORE_NSTATES; i++)
		if (strcmp(store_state_names[i], name) == 0)
			return i;
	fail_msg("no state %s", name);
	return 0;
}

static void
test_stats_window(void **state)
{
	struct test_env *env = *state;
	struct store_db *db = test_open(env, true);
	struct store_db_stats s;

	assert_int_equal(store_db_stats_read(db, 1000, &s), 0);
	assert_int_equal(s.messages, 5);
	assert_int_equal(s.recipients[test_state("queued")], 1);
	assert_int_equal(s.recipients[test_state("sent")], 1);
	assert_int_equal(s.recipients[test_state("deferred")], 1);
	assert_int_equal(s.recipients[test_state("retrying")], 1);
	assert_int_equal(s.recipients[test_state("delivered")], 5);
	assert_int_equal(s.recipients[test_state("failed")], 3);
	/* c (2 sends) and d (storage) delivered, g (3 sends) failed. */
	assert_int_equal(s.redriven_final, 3);
	assert_int_equal(s.redriven_delivered, 2);

	assert_int_equal(s.nreasons, 4);
	test_item(&s.reasons[0], "old", 2);
	test_item(&s.reasons[1], "400 'to' parameter is not valid", 1);
	test_item(&s.reasons[2], "bounce", 1);
	test_item(&s.reasons[3], "espblock", 1);

	assert_int_equal(s.ndomains, STORE_STATS_TOP);
	test_item(&s.domains[0], "example.org", 3);
	test_item(&s.domains[1], "y.org", 3);
	test_item(&s.domains[2], "example.net", 2);
	test_item(&s.domains[3], "x.org", 2);
	test_item(&s.domains[4], "w.example", 1);
	store_db_stats_clear(&s);
	assert_int_equal(s.nreasons, 0);
	store_db_close(db);
}

static void
test_stats_all_and_none(void **state)
{
	struct test_env *env = *state;
	struct store_db *db = test_open(env, true);
	struct store_db_stats s;

	assert_int_equal(store_db_stats_read(db, 0, &s), 0);
	assert_int_equal(s.messages, 6);
	assert_int_equal(s.recipients[test_state("delivered")], 6);
	/* old.org (1) now sorts before w.example and z.example. */
	test_item(&s.domains[4], "old.org", 1);
	store_db_stats_clear(&s);

	assert_int_equal(store_db_stats_read(db, 6001, &s), 0);
	assert_int_equal(s.messages, 0);
	assert_int_equal(s.recipients[test_state("delivered")], 0);
	assert_int_equal(s.redriven_final, 0);
	assert_int_equal(s.nreasons, 0);
	assert_int_equal(s.ndomains, 0);
	store_db_stats_clear(&s);

	/* Only message 6: the last '@' names the domain, lower case. */
	assert_int_equal(store_db_stats_read(db, 5001, &s), 0);
	assert_int_equal(s.ndomains, 2);
	test_item(&s.domains[0], "w.example", 1);
	test_item(&s.domains[1], "z.example", 1);
	store_db_stats_clear(&s);
	store_db_close(db);
}

/* Collects tail rows. */
struct test_tail {
	int64_t ids[16];
	int64_t mids[16];
	char rcpt[16][32];
	size_t n;
	size_t stop_after; /* 0: never */
};

static int
test_tail_cb(const struct store_tail_row *row, void *arg)
{
	struct test_tail *t = arg;

	assert_true(t->n < 16);
	t->ids[t->n] = row->id;
	t->mids[t->n] = row->message_id;
	snprintf(t->rcpt[t->n], sizeof(t->rcpt[0]), "%s",
	    row->ev.recipient != NULL ? row->ev.recipient : "-");
	t->n++;
	if (t->stop_after != 0 && t->n == t->stop_after)
		return -ECANCELED;
	return 0;
}

static void
test_tail(void **state)
{
	struct test_env *env = *state;
	struct store_db *db = test_open(env, true);
	struct test_tail t;
	int64_t max = -1, last = 0;

	assert_int_equal(store_db_events_max(db, &max), 0);
	assert_int_equal(max, 9);

	memset(&t, 0, sizeof(t));
	last = 4;
	assert_int_equal(
	    store_db_events_after(db, 4, 0, 3, test_tail_cb, &t, &last), 0);
	assert_int_equal(t.n, 3);
	assert_int_equal(t.ids[0], 5);
	assert_int_equal(t.ids[2], 7);
	assert_int_equal(t.mids[2], 5);
	assert_string_equal(t.rcpt[0], "g@example.org");
	assert_int_equal(last, 7);

	/* Nothing new: last stays. */
	memset(&t, 0, sizeof(t));
	last = 9;
	assert_int_equal(
	    store_db_events_after(db, 9, 0, 100, test_tail_cb, &t, &last), 0);
	assert_int_equal(t.n, 0);
	assert_int_equal(last, 9);

	/* A new event is seen by the next call; the time bound filters. */
	test_exec(env->w,
	    "INSERT INTO events (id, message_id, recipient_id, at,"
	    " received_at, event) VALUES (10, 6, 12, 7000, 7010,"
	    " 'delivered')");
	memset(&t, 0, sizeof(t));
	assert_int_equal(
	    store_db_events_after(db, 0, 6040, 100, test_tail_cb, &t, &last),
	    0);
	assert_int_equal(t.n, 2);
	assert_int_equal(t.ids[0], 9);
	assert_string_equal(t.rcpt[0], "-");
	assert_int_equal(t.ids[1], 10);
	assert_string_equal(t.rcpt[1], "l@w.example");
	assert_int_equal(last, 10);

	/* The callback stops the walk; last is the last row it took. */
	memset(&t, 0, sizeof(t));
	t.stop_after = 2;
	last = 0;
	assert_int_equal(
	    store_db_events_after(db, 0, 0, 100, test_tail_cb, &t, &last),
	    -ECANCELED);
	assert_int_equal(t.n, 2);
	assert_int_equal(last, 1);
	assert_int_equal(
	    store_db_events_after(db, 0, 0, 0, test_tail_cb, &t, &last),
	    -EINVAL);

	assert_int_equal(store_db_present(db), 0);
	store_db_close(db);
}

static void
test_present(void **state)
{
	struct test_env *env = *state;
	struct store_db *db = test_open(env, true);
	int64_t max = 0;

	assert_int_equal(store_db_present(db), 0);
	assert_int_equal(unlink(env->path), 0);
	assert_int_equal(store_db_present(db), -ENOENT);
	/* SQLite still reads the unlinked file: only the path tells. */
	assert_int_equal(store_db_events_max(db, &max), 0);
	store_db_close(db);
}

static void
test_purge(void **state)
{
	struct test_env *env = *state;
	struct store_db *db = test_open(env, false);
	uint64_t m = 99, t = 99;

	/* 1, 2 and 4 are finished before 5500; 3 and 5 are not; 6 is after. */
	assert_int_equal(store_db_purge(db, 5500, 5000, &m, &t), 0);
	assert_int_equal(m, 3);
	assert_int_equal(t, 1);
	{
		sqlite3_stmt *st = NULL;

		assert_int_equal(sqlite3_prepare_v2(env->w,
				     "SELECT group_concat(id) FROM (SELECT id"
				     " FROM messages ORDER BY id)",
				     -1, &st, NULL),
		    SQLITE_OK);
		assert_int_equal(sqlite3_step(st), SQLITE_ROW);
		assert_string_equal(
		    (const char *)sqlite3_column_text(st, 0), "3,5,6");
		sqlite3_finalize(st);
	}
	/* Every dependent row went with its message, no other. */
	assert_int_equal(
	    test_count(env->w, "SELECT count(*) FROM recipients"), 9);
	assert_int_equal(test_count(env->w,
			     "SELECT count(*) FROM recipients WHERE"
			     " message_id NOT IN (3, 5, 6)"),
	    0);
	assert_int_equal(test_count(env->w, "SELECT count(*) FROM bodies"), 3);
	assert_int_equal(
	    test_count(env->w, "SELECT count(*) FROM attempts"), 3);
	assert_int_equal(
	    test_count(env->w, "SELECT count(*) FROM attempt_rcpts"), 5);
	assert_int_equal(test_count(env->w,
			     "SELECT count(*) FROM events WHERE message_id"
			     " NOT IN (3, 5, 6)"),
	    0);
	assert_int_equal(test_count(env->w, "SELECT count(*) FROM events"), 5);
	assert_int_equal(test_count(env->w,
			     "SELECT count(*) FROM webhook_tokens WHERE"
			     " token = 't-new'"),
	    1);
	assert_int_equal(
	    test_count(env->w, "SELECT count(*) FROM webhook_tokens"), 1);

	/*
	 * Again: nothing left to do.  6 is finished but has the highest id
	 * (and the newest event): kept, so that id 6 is never reused.
	 */
	assert_int_equal(store_db_purge(db, 5500, 5000, &m, &t), 0);
	assert_int_equal(m, 0);
	assert_int_equal(t, 0);
	assert_int_equal(store_db_purge(db, INT64_MAX, 0, &m, &t), 0);
	assert_int_equal(m, 0);
	/* A newer message: 6 may go, but not while it has the newest event. */
	test_exec(env->w,
	    "INSERT INTO messages (id, received_at, mail_from, size)"
	    " VALUES (7, 9000, 'a@s', 1);"
	    "INSERT INTO recipients (message_id, address, status, updated_at)"
	    " VALUES (7, 'x@y.org', 'queued', 1)");
	assert_int_equal(store_db_purge(db, INT64_MAX, 0, &m, &t), 0);
	assert_int_equal(m, 0);
	test_exec(env->w,
	    "INSERT INTO events (message_id, at, received_at, event)"
	    " VALUES (7, 9000, 9000, 'accepted')");
	assert_int_equal(store_db_purge(db, INT64_MAX, 0, &m, &t), 0);
	assert_int_equal(m, 1);
	assert_int_equal(
	    test_count(env->w, "SELECT count(*) FROM messages"), 3);
	assert_int_equal(test_count(env->w, "SELECT max(id) FROM events"), 10);
	store_db_close(db);
}

/* More than two batches of finished messages all go, the rest stays. */
static void
test_purge_batches(void **state)
{
	struct test_env *env = *state;
	struct store_db *db;
	uint64_t m = 0, t = 0;
	const int64_t n = 2 * STORE_PURGE_BATCH + 7;

	test_exec(env->w,
	    "BEGIN;"
	    "WITH RECURSIVE k(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM k"
	    "  WHERE i < 1007)"
	    " INSERT INTO messages (id, received_at, mail_from, size)"
	    " SELECT 1000 + i, 100, 'x@s', 1 FROM k;"
	    "INSERT INTO recipients (message_id, address, status, updated_at)"
	    " SELECT id, 'r@x.org', CASE WHEN id % 2 = 0 THEN 'delivered'"
	    " ELSE 'failed' END, 1 FROM messages WHERE id > 1000;"
	    "INSERT INTO recipients (message_id, address, status, updated_at)"
	    " SELECT id, 's@x.org', 'delivered', 1 FROM messages"
	    " WHERE id > 1000;"
	    "INSERT INTO webhook_tokens (token, digest, at)"
	    " SELECT 'k' || id, 'd', 50 FROM messages WHERE id > 1000;"
	    "COMMIT;");
	assert_int_equal(n, 1007);
	db = test_open(env, false);
	assert_int_equal(store_db_purge(db, 1000, 1000, &m, &t), 0);
	/* Message 1 (at 500, delivered) and all but the newest, 2007. */
	assert_int_equal(m, (uint64_t)n);
	assert_int_equal(t, (uint64_t)n + 1);
	assert_int_equal(test_count(env->w,
			     "SELECT count(*) FROM recipients WHERE"
			     " message_id > 1000"),
	    2);
	assert_int_equal(
	    test_count(env->w, "SELECT count(*) FROM messages"), 6);
	assert_int_equal(
	    test_count(env->w, "SELECT max(id) FROM messages"), 2007);
	store_db_close(db);
}

/* What store_purge()'s callback reported. */
struct test_purge_res {
	int calls;
	int status;
	uint64_t messages;
	uint64_t tokens;
};

static void
test_purge_cb(int status, uint64_t messages, uint64_t tokens, void *arg)
{
	struct test_purge_res *r = arg;

	r->calls++;
	r->status = status;
	r->messages = messages;
	r->tokens = tokens;
}

/*
 * The daemon's face: one job deletes at most STORE_PURGE_BATCH messages
 * and as many tokens, on the store thread; the callback runs on the loop.
 */
static void
test_purge_job(void **state)
{
	struct test_env *env = *state;
	struct test_purge_res res;
	struct store *st = NULL;
	uv_loop_t loop;
	char err[256] = "";

	test_exec(env->w,
	    "WITH RECURSIVE k(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM k"
	    "  WHERE i < 600)"
	    " INSERT INTO messages (id, received_at, mail_from, size)"
	    " SELECT 1000 + i, 100, 'x@s', 1 FROM k;"
	    "INSERT INTO recipients (message_id, address, status, updated_at)"
	    " SELECT id, 'r@x.org', 'delivered', 1 FROM messages"
	    " WHERE id > 1000;");
	assert_int_equal(uv_loop_init(&loop), 0);
	if (store_open(&st, env->path, &loop, err, sizeof(err)) != 0)
		fail_msg("store_open: %s", err);
	assert_int_equal(store_purge(st, 1000, 1000, NULL, &res), -EINVAL);

	memset(&res, 0, sizeof(res));
	assert_int_equal(store_purge(st, 1000, 1000, test_purge_cb, &res), 0);
	while (res.calls == 0)
		(void)uv_run(&loop, UV_RUN_ONCE);
	assert_int_equal(res.status, 0);
	assert_int_equal(res.messages, STORE_PURGE_BATCH);
	assert_int_equal(res.tokens, 1); /* t-old */

	memset(&res, 0, sizeof(res));
	assert_int_equal(store_purge(st, 1000, 1000, test_purge_cb, &res), 0);
	while (res.calls == 0)
		(void)uv_run(&loop, UV_RUN_ONCE);
	assert_int_equal(res.status, 0);
	/*
	 * 99 more and message 1; 3 and 5 are not final, 1600 is the newest.
	 */
	assert_int_equal(res.messages, 100);
	assert_int_equal(res.tokens, 0);
	assert_int_equal(test_count(env->w,
			     "SELECT count(*) FROM recipients WHERE"
			     " message_id > 1000 OR message_id = 1"),
	    1);
	assert_int_equal(
	    test_count(env->w, "SELECT count(*) FROM messages"), 6);

	store_close(st);
	assert_int_equal(
	    store_purge(st, 1000, 1000, test_purge_cb, &res), -ESHUTDOWN);
	assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
	assert_int_equal(uv_loop_close(&loop), 0);
}

/* A read-only connection cannot purge; nothing changes. */
static void
test_purge_readonly(void **state)
{
	struct test_env *env = *state;
	struct store_db *db = test_open(env, true);
	uint64_t m = 0, t = 0;

	/* foreign_keys is per connection: a reader never sets it. */
	assert_true(store_db_purge(db, INT64_MAX, INT64_MAX, &m, &t) < 0);
	assert_int_equal(m, 0);
	assert_int_equal(
	    test_count(env->w, "SELECT count(*) FROM messages"), 6);
	store_db_close(db);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(
		    test_stats_window, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(
		    test_stats_all_and_none, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(
		    test_tail, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(
		    test_present, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(
		    test_purge, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(
		    test_purge_batches, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(
		    test_purge_readonly, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(
		    test_purge_job, test_setup, test_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
