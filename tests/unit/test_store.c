/*
 * Unit tests of the store's asynchronous face (core/store.c) on real SQLite
 * files in a mkdtemp directory: opening and migrating, submitting messages
 * and reading them back with a connection of our own, group commit, the
 * fault hook, failing jobs, a lost and a failed transaction, a lock held by
 * another connection, close and shutdown, and submissions while the store
 * thread is busy.  Every test ends with uv_loop_close() == 0: the store
 * leaves no handle behind.
 */
#include <errno.h>
#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>
#include <uv.h>

#include "redrive/log.h"
#include "redrive/store.h"
#include "../../core/store_int.h"

struct fixture {
	char dir[64];
	char path[128];
	char logpath[128];
	int logfd;
	int oldfd;
	uv_loop_t loop;
};

/* The order in which done callbacks ran, across one test. */
static int test_order;

static int
test_store_setup(void **state)
{
	struct fixture *f;

	f = calloc(1, sizeof(*f));
	if (f == NULL)
		return -1;
	snprintf(f->dir, sizeof(f->dir), "/tmp/test_store.XXXXXX");
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
	test_order = 0;
	*state = f;
	return 0;
}

static int
test_store_teardown(void **state)
{
	struct fixture *f = *state;
	char p[512];
	struct dirent *de;
	DIR *d;

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

/* Reads the log written so far; true when it contains needle. */
static bool
test_log_has(struct fixture *f, const char *needle)
{
	char buf[16384];
	ssize_t n;

	n = pread(f->logfd, buf, sizeof(buf) - 1, 0);
	if (n < 0)
		return false;
	buf[n] = '\0';
	return strstr(buf, needle) != NULL;
}

static struct store *
test_open(struct fixture *f)
{
	struct store *st = NULL;
	char err[512];
	int rc;

	rc = store_open(&st, f->path, &f->loop, err, sizeof(err));
	if (rc != 0)
		fail_msg("store_open: %d %s", rc, err);
	assert_non_null(st);
	return st;
}

/* Closes the store, lets the loop free it, and checks nothing is left. */
static void
test_finish(struct fixture *f, struct store *st)
{
	store_close(st);
	assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
	assert_int_equal(uv_loop_close(&f->loop), 0);
}

/* A connection of the test's own, to look at what the store wrote. */
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

/* The one integer an SQL query returns. */
static int64_t
test_int(sqlite3 *db, const char *sql)
{
	sqlite3_stmt *s = NULL;
	int64_t v;

	assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &s, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(s), SQLITE_ROW);
	v = sqlite3_column_int64(s, 0);
	sqlite3_finalize(s);
	return v;
}

static int64_t
test_count(struct fixture *f, const char *sql)
{
	sqlite3 *db = test_db(f);
	int64_t n = test_int(db, sql);

	sqlite3_close(db);
	return n;
}

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

/* ---- submissions ------------------------------------------------------- */

struct test_sub {
	struct store_new_message m;
	const char *rcpts[3];
	char data[64];
	int calls;
	int status;
	int64_t id;
	int order;
};

static void
test_sub_cb(int status, int64_t id, void *arg)
{
	struct test_sub *s = arg;

	s->calls++;
	s->status = status;
	s->id = id;
	s->order = ++test_order;
}

/* Fills s with a small message numbered i. */
static void
test_sub_init(struct test_sub *s, int i)
{
	int n;

	memset(s, 0, sizeof(*s));
	n = snprintf(
	    s->data, sizeof(s->data), "Subject: %d\r\n\r\nbody %d\r\n", i, i);
	s->rcpts[0] = "rcpt@example.com";
	s->m.received_at = 1700000000000 + i;
	s->m.mail_from = "from@example.com";
	s->m.rcpts = s->rcpts;
	s->m.nrcpts = 1;
	s->m.client_addr = "127.0.0.1";
	s->m.data = s->data;
	s->m.len = (size_t)n;
	s->status = 1;
}

static void
test_submit(struct store *st, struct test_sub *s)
{
	assert_int_equal(store_submit(st, &s->m, test_sub_cb, s), 0);
}

/* ---- jobs -------------------------------------------------------------- */

struct test_job {
	struct store_job job;
	int calls; /* done callbacks */
	int runs;  /* calls of run, for the jobs that count them */
	int status;
	int order;
	/* A gate: run blocks until released. */
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool entered;
	bool released;
};

static void
test_job_done(struct store_job *job, int status)
{
	struct test_job *t = (struct test_job *)job;

	t->calls++;
	t->status = status;
	t->order = ++test_order;
}

static void
test_job_init(struct test_job *t, int (*run)(sqlite3 *, struct store_job *))
{
	memset(t, 0, sizeof(*t));
	t->job.run = run;
	t->job.done = test_job_done;
	t->status = 1;
	pthread_mutex_init(&t->mu, NULL);
	pthread_cond_init(&t->cv, NULL);
}

static void
test_job_fini(struct test_job *t)
{
	pthread_cond_destroy(&t->cv);
	pthread_mutex_destroy(&t->mu);
}

static int
test_run_noop(sqlite3 *db, struct store_job *job)
{
	(void)job;
	return sqlite3_get_autocommit(db) ? -EINVAL : 0;
}

static int
test_run_gate(sqlite3 *db, struct store_job *job)
{
	struct test_job *t = (struct test_job *)job;

	(void)db;
	pthread_mutex_lock(&t->mu);
	t->entered = true;
	pthread_cond_broadcast(&t->cv);
	while (!t->released)
		pthread_cond_wait(&t->cv, &t->mu);
	pthread_mutex_unlock(&t->mu);
	return 0;
}

/* Submits a gate job and waits until the store thread is inside it. */
static void
test_gate_hold(struct store *st, struct test_job *gate)
{
	test_job_init(gate, test_run_gate);
	assert_int_equal(store_job_submit(st, &gate->job), 0);
	pthread_mutex_lock(&gate->mu);
	while (!gate->entered)
		pthread_cond_wait(&gate->cv, &gate->mu);
	pthread_mutex_unlock(&gate->mu);
}

static void
test_gate_release(struct test_job *gate)
{
	pthread_mutex_lock(&gate->mu);
	gate->released = true;
	pthread_cond_broadcast(&gate->cv);
	pthread_mutex_unlock(&gate->mu);
}

/* Writes a message row, then fails: the row must not survive. */
static int
test_run_fail(sqlite3 *db, struct store_job *job)
{
	struct test_job *t = (struct test_job *)job;

	t->runs++;
	if (sqlite3_exec(db,
		"INSERT INTO messages (received_at, mail_from, size)"
		" VALUES (1, 'failing@job', 0)",
		NULL, NULL, NULL) != SQLITE_OK)
		return -EIO;
	return -EINVAL;
}

/* Ends the whole transaction behind the store's back. */
static int
test_run_rollback(sqlite3 *db, struct store_job *job)
{
	struct test_job *t = (struct test_job *)job;

	t->runs++;
	sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
	return 0;
}

/* Does nothing the first time it runs, then ends the transaction. */
static int
test_run_rollback_second(sqlite3 *db, struct store_job *job)
{
	struct test_job *t = (struct test_job *)job;

	if (++t->runs == 1)
		return 0;
	sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
	return 0;
}

/* Leaves a deferred foreign key violation behind: COMMIT will fail. */
static int
test_run_bad_fk(sqlite3 *db, struct store_job *job)
{
	(void)job;
	if (sqlite3_exec(db,
		"PRAGMA defer_foreign_keys=ON;"
		"INSERT INTO recipients (message_id, address, updated_at)"
		" VALUES (999999, 'nobody@example.com', 0)",
		NULL, NULL, NULL) != SQLITE_OK)
		return -EIO;
	return 0;
}

/* ---- opening ----------------------------------------------------------- */

static void
test_store_open_creates_schema(void **state)
{
	static const char *const tables[] = { "messages", "bodies",
		"recipients", "attempts", "attempt_rcpts", "events",
		"webhook_tokens" };
	struct fixture *f = *state;
	struct store_stats stats;
	struct store *st;
	sqlite3_stmt *s = NULL;
	sqlite3 *db;
	size_t i;

	assert_int_equal(access(f->path, F_OK), -1);
	st = test_open(f);
	stats = store_stats(st);
	assert_int_equal(stats.requests, 0);
	assert_int_equal(stats.transactions, 0);
	assert_int_equal(stats.failures, 0);
	/* An idle store keeps no loop alive. */
	assert_int_equal(uv_loop_alive(&f->loop), 0);
	test_finish(f, st);

	db = test_db(f);
	for (i = 0; i < sizeof(tables) / sizeof(tables[0]); i++) {
		assert_int_equal(sqlite3_prepare_v2(db,
				     "SELECT count(*) FROM sqlite_master"
				     " WHERE type = 'table' AND name = ?1",
				     -1, &s, NULL),
		    SQLITE_OK);
		sqlite3_bind_text(s, 1, tables[i], -1, SQLITE_STATIC);
		assert_int_equal(sqlite3_step(s), SQLITE_ROW);
		if (sqlite3_column_int(s, 0) != 1)
			fail_msg("table %s missing", tables[i]);
		sqlite3_finalize(s);
	}
	assert_int_equal(
	    test_int(db, "PRAGMA user_version"), STORE_SCHEMA_VERSION);
	assert_int_equal(
	    sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &s, NULL),
	    SQLITE_OK);
	assert_int_equal(sqlite3_step(s), SQLITE_ROW);
	assert_string_equal((const char *)sqlite3_column_text(s, 0), "wal");
	sqlite3_finalize(s);
	sqlite3_close(db);
}

static void
test_store_reopen_keeps(void **state)
{
	struct fixture *f = *state;
	struct test_sub sub;
	struct store *st;
	int64_t cookie;
	sqlite3 *db;

	st = test_open(f);
	test_sub_init(&sub, 1);
	test_submit(st, &sub);
	assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
	assert_int_equal(sub.status, 0);
	store_close(st);
	assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);

	/* The schema cookie changes with every schema change. */
	db = test_db(f);
	cookie = test_int(db, "PRAGMA schema_version");
	sqlite3_close(db);

	st = test_open(f);
	test_finish(f, st);

	db = test_db(f);
	assert_int_equal(test_int(db, "PRAGMA schema_version"), cookie);
	assert_int_equal(
	    test_int(db, "PRAGMA user_version"), STORE_SCHEMA_VERSION);
	assert_int_equal(test_int(db, "SELECT count(*) FROM messages"), 1);
	sqlite3_close(db);
}

static void
test_store_newer_refused(void **state)
{
	struct fixture *f = *state;
	struct store *st = (struct store *)&st;
	char err[512];
	sqlite3 *db = NULL;

	assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
	test_exec(db, "CREATE TABLE future (x); PRAGMA user_version=99");
	sqlite3_close(db);

	assert_int_equal(
	    store_open(&st, f->path, &f->loop, err, sizeof(err)), -EPROTO);
	assert_null(st);
	assert_non_null(strstr(err, f->path));
	assert_non_null(strstr(err, "99"));
	assert_true(test_log_has(f, "store open failed"));
	assert_int_equal(uv_loop_close(&f->loop), 0);

	db = test_db(f);
	assert_int_equal(test_int(db, "PRAGMA user_version"), 99);
	assert_int_equal(test_int(db,
			     "SELECT count(*) FROM sqlite_master"
			     " WHERE name = 'messages'"),
	    0);
	sqlite3_close(db);
}

static void
test_store_empty_file(void **state)
{
	struct fixture *f = *state;
	struct test_sub sub;
	struct store *st;
	int fd;

	fd = open(f->path, O_WRONLY | O_CREAT | O_EXCL, 0600);
	assert_true(fd >= 0);
	close(fd);

	st = test_open(f);
	test_sub_init(&sub, 1);
	test_submit(st, &sub);
	assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
	assert_int_equal(sub.status, 0);
	test_finish(f, st);

	assert_int_equal(
	    test_count(f, "PRAGMA user_version"), STORE_SCHEMA_VERSION);
	assert_int_equal(test_count(f, "SELECT count(*) FROM recipients"), 1);
}

static void
test_store_open_errors(void **state)
{
	static const char junk[] = "this is not a database, not at all, no, "
				   "not one bit of it, whatever it says\n";
	struct fixture *f = *state;
	struct store *st = NULL;
	char err[512], path[256];
	int fd, rc;

	/* store_open creates no directory. */
	snprintf(path, sizeof(path), "%s/missing/redrive.db", f->dir);
	rc = store_open(&st, path, &f->loop, err, sizeof(err));
	assert_int_equal(rc, -ENOENT);
	assert_null(st);
	assert_non_null(strstr(err, path));

	/* Not a database: SQLite's own message is in the reason. */
	fd = open(f->path, O_WRONLY | O_CREAT | O_EXCL, 0600);
	assert_true(fd >= 0);
	assert_int_equal(
	    write(fd, junk, sizeof(junk) - 1), (ssize_t)sizeof(junk) - 1);
	close(fd);
	rc = store_open(&st, f->path, &f->loop, err, sizeof(err));
	assert_true(rc < 0);
	assert_null(st);
	assert_non_null(strstr(err, f->path));
	assert_non_null(strstr(err, "not a database"));

	/* A NULL err buffer is allowed. */
	rc = store_open(&st, path, &f->loop, NULL, 0);
	assert_int_equal(rc, -ENOENT);
	assert_int_equal(uv_loop_close(&f->loop), 0);
}

/* ---- submitting -------------------------------------------------------- */

static void
test_store_submit_roundtrip(void **state)
{
	static const unsigned char body[] = "Received: from x\r\n"
					    "Subject: caf\xc3\xa9\r\n\r\n"
					    "nul:\0:8bit:\x80\xff\xfe:\r\n"
					    ".\r\n";
	static const char *const rcpts[] = { "a@example.com", "B@Example.COM",
		"c@example.org" };
	struct fixture *f = *state;
	struct store_new_message m = { 0 }, e = { 0 };
	struct test_sub sub = { .status = 1 }, esub = { .status = 1 };
	struct store_stats stats;
	struct store *st;
	sqlite3_stmt *s = NULL;
	sqlite3 *db;
	int i;

	m.received_at = 1764289887123;
	m.mail_from = "sender@example.com";
	m.rcpts = rcpts;
	m.nrcpts = 3;
	m.helo = "client.example";
	m.client_addr = "127.0.0.1";
	m.auth_user = NULL;
	m.subject = "caf\xc3\xa9";
	m.message_id = "id@example.com";
	m.smtputf8 = true;
	m.data = body;
	m.len = sizeof(body) - 1;

	/* A bounce with an empty body: stored as an empty blob, not NULL. */
	e.received_at = 1764289887124;
	e.mail_from = "";
	e.rcpts = rcpts;
	e.nrcpts = 1;
	e.data = NULL;
	e.len = 0;

	st = test_open(f);
	assert_int_equal(store_submit(st, &m, test_sub_cb, &sub), 0);
	assert_int_equal(store_submit(st, &e, test_sub_cb, &esub), 0);
	/* No callback runs before the loop does. */
	assert_int_equal(sub.calls, 0);
	assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
	assert_int_equal(sub.calls, 1);
	assert_int_equal(sub.status, 0);
	assert_true(sub.id > 0);
	assert_int_equal(esub.calls, 1);
	assert_int_equal(esub.status, 0);
	assert_true(esub.id > sub.id);
	stats = store_stats(st);
	assert_int_equal(stats.requests, 2);
	assert_int_equal(stats.failures, 0);
	assert_true(stats.transactions >= 1);
	test_finish(f, st);

	db = test_db(f);
	assert_int_equal(sqlite3_prepare_v2(db,
			     "SELECT received_at, mail_from, helo, "
			     "client_addr, auth_user, subject, message_id, "
			     "size, smtputf8, mailgun_id, finished_at "
			     "FROM messages WHERE id = ?1",
			     -1, &s, NULL),
	    SQLITE_OK);
	sqlite3_bind_int64(s, 1, sub.id);
	assert_int_equal(sqlite3_step(s), SQLITE_ROW);
	assert_int_equal(sqlite3_column_int64(s, 0), m.received_at);
	assert_string_equal(sqlite3_column_text(s, 1), m.mail_from);
	assert_string_equal(sqlite3_column_text(s, 2), m.helo);
	assert_string_equal(sqlite3_column_text(s, 3), m.client_addr);
	assert_int_equal(sqlite3_column_type(s, 4), SQLITE_NULL);
	assert_string_equal(sqlite3_column_text(s, 5), m.subject);
	assert_string_equal(sqlite3_column_text(s, 6), m.message_id);
	assert_int_equal(sqlite3_column_int64(s, 7), (int64_t)m.len);
	assert_int_equal(sqlite3_column_int(s, 8), 1);
	assert_int_equal(sqlite3_column_type(s, 9), SQLITE_NULL);
	assert_int_equal(sqlite3_column_type(s, 10), SQLITE_NULL);
	sqlite3_finalize(s);

	assert_int_equal(
	    sqlite3_prepare_v2(db,
		"SELECT data FROM bodies WHERE message_id = ?1", -1, &s, NULL),
	    SQLITE_OK);
	sqlite3_bind_int64(s, 1, sub.id);
	assert_int_equal(sqlite3_step(s), SQLITE_ROW);
	assert_int_equal(sqlite3_column_type(s, 0), SQLITE_BLOB);
	assert_int_equal(sqlite3_column_bytes(s, 0), (int)m.len);
	assert_memory_equal(sqlite3_column_blob(s, 0), body, m.len);
	sqlite3_reset(s);
	sqlite3_bind_int64(s, 1, esub.id);
	assert_int_equal(sqlite3_step(s), SQLITE_ROW);
	assert_int_equal(sqlite3_column_type(s, 0), SQLITE_BLOB);
	assert_int_equal(sqlite3_column_bytes(s, 0), 0);
	sqlite3_finalize(s);

	assert_int_equal(sqlite3_prepare_v2(db,
			     "SELECT address, status, attempts, updated_at, "
			     "next_attempt_at, reason, mailgun_id "
			     "FROM recipients WHERE message_id = ?1 "
			     "ORDER BY id",
			     -1, &s, NULL),
	    SQLITE_OK);
	sqlite3_bind_int64(s, 1, sub.id);
	for (i = 0; i < 3; i++) {
		assert_int_equal(sqlite3_step(s), SQLITE_ROW);
		assert_string_equal(sqlite3_column_text(s, 0), rcpts[i]);
		assert_string_equal(sqlite3_column_text(s, 1), "queued");
		assert_int_equal(sqlite3_column_int(s, 2), 0);
		assert_int_equal(sqlite3_column_int64(s, 3), m.received_at);
		assert_int_equal(sqlite3_column_type(s, 4), SQLITE_NULL);
		assert_int_equal(sqlite3_column_type(s, 5), SQLITE_NULL);
		assert_int_equal(sqlite3_column_type(s, 6), SQLITE_NULL);
	}
	assert_int_equal(sqlite3_step(s), SQLITE_DONE);
	sqlite3_finalize(s);
	assert_int_equal(test_int(db, "SELECT count(*) FROM recipients"), 4);
	assert_int_equal(test_int(db,
			     "SELECT count(*) FROM messages"
			     " WHERE mail_from = ''"),
	    1);
	sqlite3_close(db);
}

static void
test_store_submit_invalid(void **state)
{
	struct fixture *f = *state;
	struct test_sub sub;
	struct test_job j;
	struct store *st;
	const char *nullrcpt[] = { NULL };

	st = test_open(f);
	test_sub_init(&sub, 1);
	assert_int_equal(store_submit(st, NULL, test_sub_cb, &sub), -EINVAL);
	assert_int_equal(store_submit(st, &sub.m, NULL, &sub), -EINVAL);
	sub.m.nrcpts = 0;
	assert_int_equal(store_submit(st, &sub.m, test_sub_cb, &sub), -EINVAL);
	sub.m.nrcpts = 1;
	sub.m.rcpts = nullrcpt;
	assert_int_equal(store_submit(st, &sub.m, test_sub_cb, &sub), -EINVAL);
	sub.m.rcpts = sub.rcpts;
	sub.m.mail_from = NULL;
	assert_int_equal(store_submit(st, &sub.m, test_sub_cb, &sub), -EINVAL);
	sub.m.mail_from = "";
	sub.m.data = NULL;
	assert_int_equal(store_submit(st, &sub.m, test_sub_cb, &sub), -EINVAL);
	test_job_init(&j, NULL);
	assert_int_equal(store_job_submit(st, &j.job), -EINVAL);
	test_job_fini(&j);
	assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
	assert_int_equal(sub.calls, 0);
	assert_int_equal(store_stats(st).requests, 0);
	test_finish(f, st);
}

#define TEST_GROUP 200

static void
test_store_group_commit(void **state)
{
	struct fixture *f = *state;
	struct test_sub *subs;
	struct store_stats stats;
	struct store *st;
	int i;

	subs = calloc(TEST_GROUP, sizeof(*subs));
	assert_non_null(subs);
	st = test_open(f);
	for (i = 0; i < TEST_GROUP; i++) {
		test_sub_init(&subs[i], i);
		test_submit(st, &subs[i]);
	}
	assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
	for (i = 0; i < TEST_GROUP; i++) {
		assert_int_equal(subs[i].calls, 1);
		assert_int_equal(subs[i].status, 0);
		assert_int_equal(subs[i].order, i + 1);
		if (i > 0)
			assert_true(subs[i].id > subs[i - 1].id);
	}
	stats = store_stats(st);
	assert_int_equal(stats.requests, TEST_GROUP);
	assert_int_equal(stats.failures, 0);
	assert_true(stats.transactions >= 1);
	assert_true(stats.transactions < stats.requests);
	test_finish(f, st);
	assert_int_equal(
	    test_count(f, "SELECT count(*) FROM messages"), TEST_GROUP);
	assert_int_equal(test_count(f,
			     "SELECT count(DISTINCT id) FROM "
			     "messages"),
	    TEST_GROUP);
	free(subs);
}

/* A batch ends at STORE_BATCH_JOBS jobs or 64 MiB of message bytes. */
static void
test_store_batch_caps(void **state)
{
	struct fixture *f = *state;
	struct test_job gate, *jobs;
	struct store *st;
	int i, n = 1100;

	jobs = calloc((size_t)n, sizeof(*jobs));
	assert_non_null(jobs);
	st = test_open(f);
	test_gate_hold(st, &gate);
	for (i = 0; i < n; i++) {
		test_job_init(&jobs[i], test_run_noop);
		assert_int_equal(store_job_submit(st, &jobs[i].job), 0);
	}
	test_gate_release(&gate);
	assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
	for (i = 0; i < n; i++) {
		assert_int_equal(jobs[i].status, 0);
		assert_int_equal(jobs[i].order, i + 2);
	}
	/* The gate alone, then 512 + 512 + 76. */
	assert_int_equal(store_stats(st).transactions, 4);

	/* 40 MiB weights: no two fit in one batch. */
	test_job_fini(&gate);
	test_gate_hold(st, &gate);
	for (i = 0; i < 3; i++) {
		test_job_fini(&jobs[i]);
		test_job_init(&jobs[i], test_run_noop);
		jobs[i].job.bytes = (size_t)40 << 20;
		assert_int_equal(store_job_submit(st, &jobs[i].job), 0);
	}
	test_gate_release(&gate);
	assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
	for (i = 0; i < 3; i++)
		assert_int_equal(jobs[i].status, 0);
	assert_int_equal(store_stats(st).transactions, 4 + 1 + 3);
	assert_int_equal(store_stats(st).requests, 1 + n + 1 + 3);
	test_finish(f, st);
	test_job_fini(&gate);
	for (i = 0; i < n; i++)
		test_job_fini(&jobs[i]);
	free(jobs);
}

/* ---- failures ---------------------------------------------------------- */

static void
test_store_fault(void **state)
{
	struct fixture *f = *state;
	struct test_sub subs[10], after[2];
	struct store_stats stats;
	struct store *st;
	int i;

	st = test_open(f);
	store_set_fault(st, -ENOSPC);
	for (i = 0; i < 10; i++) {
		test_sub_init(&subs[i], i);
		test_submit(st, &subs[i]);
	}
	assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
	for (i = 0; i < 10; i++) {
		assert_int_equal(subs[i].calls, 1);
		assert_int_equal(subs[i].status, -ENOSPC);
		assert_int_equal(subs[i].id, 0);
	}
	stats = store_stats(st);
	assert_int_equal(stats.requests, 10);
	assert_int_equal(stats.failures, 10);
	assert_true(stats.transactions >= 1);
	assert_int_equal(test_count(f, "SELECT count(*) FROM messages"), 0);
	assert_int_equal(test_count(f, "SELECT count(*) FROM bodies"), 0);
	assert_int_equal(test_count(f, "SELECT count(*) FROM recipients"), 0);
	assert_true(test_log_has(f, "store commit failed"));
	assert_true(test_log_has(f, "injected fault"));

	store_set_fault(st, 0);
	for (i = 0; i < 2; i++) {
		test_sub_init(&after[i], 100 + i);
		test_submit(st, &after[i]);
	}
	assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
	for (i = 0; i < 2; i++) {
		assert_int_equal(after[i].calls, 1);
		assert_int_equal(after[i].status, 0);
	}
	assert_int_equal(store_stats(st).failures, 10);
	test_finish(f, st);
	assert_int_equal(test_count(f, "SELECT count(*) FROM messages"), 2);
	assert_int_equal(test_count(f,
			     "SELECT count(*) FROM messages "
			     "WHERE received_at < 1700000000100"),
	    0);
}

static void
test_store_failing_job(void **state)
{
	struct fixture *f = *state;
	struct test_sub a, b;
	struct test_job gate, bad;
	struct store_stats stats;
	struct store *st;

	st = test_open(f);
	test_gate_hold(st, &gate);
	test_sub_init(&a, 1);
	test_submit(st, &a);
	test_job_init(&bad, test_run_fail);
	assert_int_equal(store_job_submit(st, &bad.job), 0);
	test_sub_init(&b, 2);
	test_submit(st, &b);
	test_gate_release(&gate);
	assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);

	assert_int_equal(gate.status, 0);
	assert_int_equal(a.status, 0);
	assert_int_equal(bad.calls, 1);
	assert_int_equal(bad.status, -EINVAL);
	assert_int_equal(b.status, 0);
	assert_int_equal(gate.order, 1);
	assert_int_equal(a.order, 2);
	assert_int_equal(bad.order, 3);
	assert_int_equal(b.order, 4);
	stats = store_stats(st);
	assert_int_equal(stats.requests, 4);
	assert_int_equal(stats.failures, 1);
	/* The gate's batch, then a, bad and b together. */
	assert_int_equal(stats.transactions, 2);
	test_finish(f, st);
	test_job_fini(&gate);
	test_job_fini(&bad);

	assert_int_equal(test_count(f, "SELECT count(*) FROM messages"), 2);
	assert_int_equal(test_count(f,
			     "SELECT count(*) FROM messages"
			     " WHERE mail_from = 'failing@job'"),
	    0);
	assert_int_equal(test_count(f, "SELECT count(*) FROM recipients"), 2);
}

/*
 * A job that ends the transaction (as SQLite does on a hard error): it
 * fails, and since it did so in the first, savepoint-free run of the
 * batch, the jobs around it run again, each in its own savepoint, and
 * keep their writes.
 */
static void
test_store_lost_transaction(void **state)
{
	struct fixture *f = *state;
	struct test_sub x, y;
	struct test_job gate, bad;
	struct store_stats stats;
	struct store *st;

	st = test_open(f);
	test_gate_hold(st, &gate);
	test_sub_init(&x, 1);
	test_submit(st, &x);
	test_job_init(&bad, test_run_rollback);
	assert_int_equal(store_job_submit(st, &bad.job), 0);
	test_sub_init(&y, 2);
	test_submit(st, &y);
	test_gate_release(&gate);
	assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);

	assert_int_equal(x.status, 0);
	assert_true(x.id > 0);
	assert_true(bad.status < 0);
	assert_int_equal(bad.runs, 1);
	assert_int_equal(y.status, 0);
	stats = store_stats(st);
	assert_int_equal(stats.requests, 4);
	assert_int_equal(stats.failures, 1);
	/* The gate's, then the one of x and y (the first run is undone). */
	assert_int_equal(stats.transactions, 2);
	test_finish(f, st);
	test_job_fini(&gate);
	test_job_fini(&bad);

	assert_int_equal(test_count(f, "SELECT count(*) FROM messages"), 2);
	assert_int_equal(test_count(f, "SELECT count(*) FROM recipients"), 2);
}

/*
 * The transaction ends under a job in the second run of a batch, the one
 * with savepoints (the job did well in the first run, which another job's
 * failure undid): the jobs before it lose their writes and get an error;
 * the jobs after it run in a new transaction, and the job that failed in
 * the first run is not run again.
 */
static void
test_store_lost_transaction_rerun(void **state)
{
	struct fixture *f = *state;
	struct test_sub x, y;
	struct test_job gate, flaky, bad;
	struct store_stats stats;
	struct store *st;

	st = test_open(f);
	test_gate_hold(st, &gate);
	test_sub_init(&x, 1);
	test_submit(st, &x);
	test_job_init(&flaky, test_run_rollback_second);
	assert_int_equal(store_job_submit(st, &flaky.job), 0);
	test_job_init(&bad, test_run_fail);
	assert_int_equal(store_job_submit(st, &bad.job), 0);
	test_sub_init(&y, 2);
	test_submit(st, &y);
	test_gate_release(&gate);
	assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);

	assert_true(x.status < 0);
	assert_int_equal(x.id, 0);
	assert_int_equal(flaky.runs, 2);
	assert_true(flaky.status < 0);
	assert_int_equal(bad.runs, 1);
	assert_int_equal(bad.status, -EINVAL);
	assert_int_equal(y.status, 0);
	assert_int_equal(x.order, 2);
	assert_int_equal(flaky.order, 3);
	assert_int_equal(bad.order, 4);
	assert_int_equal(y.order, 5);
	stats = store_stats(st);
	assert_int_equal(stats.requests, 5);
	assert_int_equal(stats.failures, 3);
	assert_int_equal(stats.transactions, 3);
	test_finish(f, st);
	test_job_fini(&gate);
	test_job_fini(&flaky);
	test_job_fini(&bad);

	assert_int_equal(test_count(f, "SELECT count(*) FROM messages"), 1);
	assert_int_equal(test_count(f,
			     "SELECT count(*) FROM messages"
			     " WHERE received_at = 1700000000002"),
	    1);
}

struct test_fwd {
	int calls;
	int status;
	struct store_forward_batch *b;
};

static void
test_fwd_cb(int status, struct store_forward_batch *b, void *arg)
{
	struct test_fwd *w = arg;

	w->calls++;
	w->status = status;
	w->b = b;
}

/*
 * A job that fails alone in its batch: its error, one run, and no second
 * transaction begun for nothing (the failed run does not count).
 */
static void
test_store_failing_alone(void **state)
{
	struct fixture *f = *state;
	struct test_job bad;
	struct store_stats stats;
	struct store *st;

	st = test_open(f);
	test_job_init(&bad, test_run_fail);
	assert_int_equal(store_job_submit(st, &bad.job), 0);
	assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);

	assert_int_equal(bad.calls, 1);
	assert_int_equal(bad.runs, 1);
	assert_int_equal(bad.status, -EINVAL);
	stats = store_stats(st);
	assert_int_equal(stats.requests, 1);
	assert_int_equal(stats.failures, 1);
	assert_int_equal(stats.transactions, 0);
	test_finish(f, st);
	test_job_fini(&bad);
	assert_int_equal(test_count(f,
			     "SELECT count(*) FROM messages"
			     " WHERE mail_from = 'failing@job'"),
	    0);
}

/*
 * A job that reads into memory of its own (the forwarder's queue) runs
 * twice when a job of its batch fails: its answer is that of the second
 * run, whole, and the first run's batch is not leaked (ASan, valgrind).
 */
static void
test_store_rerun_reader(void **state)
{
	struct fixture *f = *state;
	struct test_sub a, b;
	struct test_job gate, bad;
	struct test_fwd w;
	struct store *st;

	st = test_open(f);
	test_sub_init(&a, 1);
	test_submit(st, &a);
	assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
	assert_int_equal(a.status, 0);

	memset(&w, 0, sizeof(w));
	test_gate_hold(st, &gate);
	test_sub_init(&b, 2);
	test_submit(st, &b);
	assert_int_equal(
	    store_forward_next(st, 1800000000000, 10, NULL, 0, test_fwd_cb, &w),
	    0);
	test_job_init(&bad, test_run_fail);
	assert_int_equal(store_job_submit(st, &bad.job), 0);
	test_gate_release(&gate);
	assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);

	assert_int_equal(bad.runs, 1);
	assert_int_equal(bad.status, -EINVAL);
	assert_int_equal(b.status, 0);
	assert_int_equal(w.calls, 1);
	assert_int_equal(w.status, 0);
	assert_non_null(w.b);
	/* Both messages, each once: a and b (committed before it). */
	assert_int_equal(w.b->nmsgs, 2);
	assert_int_equal(w.b->msgs[0].id, a.id);
	assert_int_equal(w.b->msgs[1].id, b.id);
	assert_int_equal(w.b->queued, 2);
	store_forward_batch_free(w.b);
	test_finish(f, st);
	test_job_fini(&gate);
	test_job_fini(&bad);
}

/* COMMIT itself fails: every job of the batch fails, nothing is stored. */
static void
test_store_commit_fails(void **state)
{
	struct fixture *f = *state;
	struct test_sub a, b, c;
	struct test_job gate, bad;
	struct store *st;

	st = test_open(f);
	test_gate_hold(st, &gate);
	test_sub_init(&a, 1);
	test_submit(st, &a);
	test_job_init(&bad, test_run_bad_fk);
	assert_int_equal(store_job_submit(st, &bad.job), 0);
	test_sub_init(&b, 2);
	test_submit(st, &b);
	test_gate_release(&gate);
	assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);

	assert_int_equal(gate.status, 0);
	assert_true(a.status < 0);
	assert_int_equal(bad.status, a.status);
	assert_int_equal(b.status, a.status);
	assert_int_equal(store_stats(st).failures, 3);
	assert_true(test_log_has(f, "FOREIGN KEY"));
	assert_int_equal(test_count(f, "SELECT count(*) FROM messages"), 0);
	assert_int_equal(test_count(f, "SELECT count(*) FROM recipients"), 0);

	/* The connection is usable again. */
	test_sub_init(&c, 3);
	test_submit(st, &c);
	assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
	assert_int_equal(c.status, 0);
	test_finish(f, st);
	test_job_fini(&gate);
	test_job_fini(&bad);
	assert_int_equal(test_count(f, "SELECT count(*) FROM messages"), 1);
}

static void
test_store_unlock_cb(uv_timer_t *t)
{
	test_exec(t->data, "COMMIT");
	uv_close((uv_handle_t *)t, NULL);
}

/* Another connection holds the write lock for a while: the store waits. */
static void
test_store_busy_waits(void **state)
{
	struct fixture *f = *state;
	struct test_sub sub;
	struct store *st;
	uv_timer_t timer;
	sqlite3 *other;

	st = test_open(f);
	other = test_db(f);
	test_exec(other, "BEGIN IMMEDIATE");
	test_sub_init(&sub, 1);
	test_submit(st, &sub);
	assert_int_equal(uv_timer_init(&f->loop, &timer), 0);
	timer.data = other;
	assert_int_equal(
	    uv_timer_start(&timer, test_store_unlock_cb, 300, 0), 0);
	assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
	assert_int_equal(sub.calls, 1);
	assert_int_equal(sub.status, 0);
	sqlite3_close(other);
	test_finish(f, st);
	assert_int_equal(test_count(f, "SELECT count(*) FROM messages"), 1);
}

/* The lock is never released: after the busy timeout, -EBUSY (4xx). */
static void
test_store_busy_fails(void **state)
{
	struct fixture *f = *state;
	struct test_sub sub;
	struct store *st;
	sqlite3 *other;
	uint64_t t0;

	st = test_open(f);
	other = test_db(f);
	test_exec(other, "BEGIN IMMEDIATE");
	test_sub_init(&sub, 1);
	t0 = uv_hrtime();
	test_submit(st, &sub);
	assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
	assert_int_equal(sub.calls, 1);
	assert_int_equal(sub.status, -EBUSY);
	assert_true(uv_hrtime() - t0 >= (uint64_t)4500 * 1000000);
	/* One busy timeout, not one per way of running the batch. */
	assert_true(uv_hrtime() - t0 < (uint64_t)9500 * 1000000);
	assert_true(test_log_has(f, "store commit failed"));
	test_exec(other, "ROLLBACK");
	sqlite3_close(other);
	test_finish(f, st);
	assert_int_equal(test_count(f, "SELECT count(*) FROM messages"), 0);
}

/* ---- closing ----------------------------------------------------------- */

static void
test_store_submit_after_close(void **state)
{
	struct fixture *f = *state;
	struct test_sub sub;
	struct test_job j;
	struct store *st;

	st = test_open(f);
	store_close(st);
	test_sub_init(&sub, 1);
	assert_int_equal(
	    store_submit(st, &sub.m, test_sub_cb, &sub), -ESHUTDOWN);
	test_job_init(&j, test_run_noop);
	assert_int_equal(store_job_submit(st, &j.job), -ESHUTDOWN);
	store_close(st); /* twice is harmless before the loop runs */
	assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
	assert_int_equal(sub.calls, 0);
	assert_int_equal(j.calls, 0);
	assert_int_equal(uv_loop_close(&f->loop), 0);
	store_close(NULL);
	test_job_fini(&j);
}

/* store_close() drains the queue and runs the callbacks before returning. */
static void
test_store_close_drains(void **state)
{
	struct fixture *f = *state;
	struct test_sub subs[50];
	struct store *st;
	int i;

	st = test_open(f);
	for (i = 0; i < 50; i++) {
		test_sub_init(&subs[i], i);
		test_submit(st, &subs[i]);
	}
	store_close(st);
	for (i = 0; i < 50; i++) {
		assert_int_equal(subs[i].calls, 1);
		assert_int_equal(subs[i].status, 0);
		assert_int_equal(subs[i].order, i + 1);
	}
	assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
	assert_int_equal(uv_loop_close(&f->loop), 0);
	for (i = 0; i < 50; i++)
		assert_int_equal(subs[i].calls, 1);
	assert_int_equal(test_count(f, "SELECT count(*) FROM messages"), 50);
}

/* ---- concurrency ------------------------------------------------------- */

#define TEST_TICKS 10
#define TEST_PER_TICK 20

struct test_conc {
	struct store *st;
	struct test_job *gate;
	struct test_sub subs[TEST_TICKS * TEST_PER_TICK];
	int ticks;
};

/*
 * Each tick submits a burst; the store thread is held in the gate job for
 * the first ticks, then runs while the later ones submit.
 */
static void
test_store_tick_cb(uv_timer_t *t)
{
	struct test_conc *c = t->data;
	int i, k;

	for (i = 0; i < TEST_PER_TICK; i++) {
		k = c->ticks * TEST_PER_TICK + i;
		test_sub_init(&c->subs[k], k);
		test_submit(c->st, &c->subs[k]);
	}
	if (++c->ticks == TEST_TICKS / 2)
		test_gate_release(c->gate);
	if (c->ticks == TEST_TICKS)
		uv_close((uv_handle_t *)t, NULL);
}

static void
test_store_concurrent(void **state)
{
	struct fixture *f = *state;
	struct test_conc *c;
	struct test_job gate;
	struct store_stats stats;
	uv_timer_t timer;
	int i, n = TEST_TICKS * TEST_PER_TICK;

	c = calloc(1, sizeof(*c));
	assert_non_null(c);
	c->st = test_open(f);
	c->gate = &gate;
	test_gate_hold(c->st, &gate);
	assert_int_equal(uv_timer_init(&f->loop, &timer), 0);
	timer.data = c;
	assert_int_equal(uv_timer_start(&timer, test_store_tick_cb, 1, 1), 0);
	assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);

	assert_int_equal(c->ticks, TEST_TICKS);
	assert_int_equal(gate.order, 1);
	for (i = 0; i < n; i++) {
		assert_int_equal(c->subs[i].calls, 1);
		assert_int_equal(c->subs[i].status, 0);
		assert_int_equal(c->subs[i].order, i + 2);
		if (i > 0)
			assert_true(c->subs[i].id > c->subs[i - 1].id);
	}
	stats = store_stats(c->st);
	assert_int_equal(stats.requests, n + 1);
	assert_int_equal(stats.failures, 0);
	assert_true(stats.transactions < stats.requests);
	test_finish(f, c->st);
	test_job_fini(&gate);
	free(c);
	assert_int_equal(test_count(f, "SELECT count(*) FROM messages"), n);
	assert_int_equal(test_count(f, "SELECT count(*) FROM recipients"), n);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_store_open_creates_schema,
		    test_store_setup, test_store_teardown),
		cmocka_unit_test_setup_teardown(test_store_reopen_keeps,
		    test_store_setup, test_store_teardown),
		cmocka_unit_test_setup_teardown(test_store_newer_refused,
		    test_store_setup, test_store_teardown),
		cmocka_unit_test_setup_teardown(test_store_empty_file,
		    test_store_setup, test_store_teardown),
		cmocka_unit_test_setup_teardown(test_store_open_errors,
		    test_store_setup, test_store_teardown),
		cmocka_unit_test_setup_teardown(test_store_submit_roundtrip,
		    test_store_setup, test_store_teardown),
		cmocka_unit_test_setup_teardown(test_store_submit_invalid,
		    test_store_setup, test_store_teardown),
		cmocka_unit_test_setup_teardown(test_store_group_commit,
		    test_store_setup, test_store_teardown),
		cmocka_unit_test_setup_teardown(test_store_batch_caps,
		    test_store_setup, test_store_teardown),
		cmocka_unit_test_setup_teardown(
		    test_store_fault, test_store_setup, test_store_teardown),
		cmocka_unit_test_setup_teardown(test_store_failing_job,
		    test_store_setup, test_store_teardown),
		cmocka_unit_test_setup_teardown(test_store_failing_alone,
		    test_store_setup, test_store_teardown),
		cmocka_unit_test_setup_teardown(test_store_rerun_reader,
		    test_store_setup, test_store_teardown),
		cmocka_unit_test_setup_teardown(
		    test_store_lost_transaction_rerun, test_store_setup,
		    test_store_teardown),
		cmocka_unit_test_setup_teardown(test_store_lost_transaction,
		    test_store_setup, test_store_teardown),
		cmocka_unit_test_setup_teardown(test_store_commit_fails,
		    test_store_setup, test_store_teardown),
		cmocka_unit_test_setup_teardown(test_store_busy_waits,
		    test_store_setup, test_store_teardown),
		cmocka_unit_test_setup_teardown(test_store_busy_fails,
		    test_store_setup, test_store_teardown),
		cmocka_unit_test_setup_teardown(test_store_submit_after_close,
		    test_store_setup, test_store_teardown),
		cmocka_unit_test_setup_teardown(test_store_close_drains,
		    test_store_setup, test_store_teardown),
		cmocka_unit_test_setup_teardown(test_store_concurrent,
		    test_store_setup, test_store_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
