/*
 * Tests of the store's synchronous face (core/store_query.c): a real store
 * in a temporary directory, built with store_schema_migrate() and filled by
 * plain SQL, then read through store_db_*: derived statuses for each mix
 * of recipient states, the log filters and their order, ID resolution,
 * body bytes, sends and events, and the refusal of stores that are
 * missing, not databases, or at another schema version.
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

#include "redrive/store.h"
#include "../../core/store_int.h"

#define TEST_MAX_IDS 32

struct test_env {
	char dir[64];
	char path[128];
	sqlite3 *w; /* the writer connection that built the store */
};

/* A body with CRLF, a NUL and 8-bit bytes, to check byte-exactness. */
static const unsigned char test_body1[] = "Received: from x\r\n"
					  "Subject: hi\r\n\r\n"
					  "a\0b\xff\xfe\r\n.\r\n";

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

/* Binds text or NULL. */
static void
test_bind_text(sqlite3_stmt *st, int i, const char *s)
{
	if (s == NULL)
		assert_int_equal(sqlite3_bind_null(st, i), SQLITE_OK);
	else
		assert_int_equal(
		    sqlite3_bind_text(st, i, s, -1, SQLITE_TRANSIENT),
		    SQLITE_OK);
}

static void
test_msg(sqlite3 *db, int64_t id, int64_t at, const char *from,
    const char *subject, const char *message_id, const char *mailgun_id)
{
	sqlite3_stmt *st = NULL;

	assert_int_equal(sqlite3_prepare_v2(db,
			     "INSERT INTO messages (id, received_at, mail_from,"
			     " helo, client_addr, subject, message_id, size,"
			     " mailgun_id) VALUES (?1, ?2, ?3, 'client.test',"
			     " '127.0.0.1', ?4, ?5, ?6, ?7)",
			     -1, &st, NULL),
	    SQLITE_OK);
	sqlite3_bind_int64(st, 1, id);
	sqlite3_bind_int64(st, 2, at);
	test_bind_text(st, 3, from);
	test_bind_text(st, 4, subject);
	test_bind_text(st, 5, message_id);
	sqlite3_bind_int64(st, 6, 100 + id);
	test_bind_text(st, 7, mailgun_id);
	assert_int_equal(sqlite3_step(st), SQLITE_DONE);
	sqlite3_finalize(st);
}

static void
test_rcpt(sqlite3 *db, int64_t id, int64_t msg, const char *addr,
    const char *status, int attempts, const char *reason,
    const char *last_error, const char *mailgun_id, int64_t next)
{
	sqlite3_stmt *st = NULL;

	assert_int_equal(
	    sqlite3_prepare_v2(db,
		"INSERT INTO recipients (id, message_id, address,"
		" status, attempts, reason, last_error, mailgun_id,"
		" next_attempt_at, updated_at)"
		" VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 1)",
		-1, &st, NULL),
	    SQLITE_OK);
	sqlite3_bind_int64(st, 1, id);
	sqlite3_bind_int64(st, 2, msg);
	test_bind_text(st, 3, addr);
	test_bind_text(st, 4, status);
	sqlite3_bind_int(st, 5, attempts);
	test_bind_text(st, 6, reason);
	test_bind_text(st, 7, last_error);
	test_bind_text(st, 8, mailgun_id);
	if (next != 0)
		sqlite3_bind_int64(st, 9, next);
	assert_int_equal(sqlite3_step(st), SQLITE_DONE);
	sqlite3_finalize(st);
}

static void
test_body(sqlite3 *db, int64_t msg, const void *data, size_t len)
{
	sqlite3_stmt *st = NULL;

	assert_int_equal(sqlite3_prepare_v2(db,
			     "INSERT INTO bodies (message_id, data) VALUES "
			     "(?1, ?2)",
			     -1, &st, NULL),
	    SQLITE_OK);
	sqlite3_bind_int64(st, 1, msg);
	sqlite3_bind_blob(st, 2, data, (int)len, SQLITE_TRANSIENT);
	assert_int_equal(sqlite3_step(st), SQLITE_DONE);
	sqlite3_finalize(st);
}

/*
 * The data set.  Derived statuses: 1 delivered, 2 failed, 3 retrying,
 * 4 queued, 5 sent, 6 deferred, 7 retrying, 8 failed, 9 sent, 10 delivered.
 * 6 and 7 arrive in the same millisecond (id breaks the tie).  2 and 5
 * share a Message-ID; 10's Message-ID is all digits; 6 has a Mailgun id
 * in messages and a newer one on its send.
 */
static void
test_fill(sqlite3 *db)
{
	test_exec(db, "BEGIN");
	test_msg(db, 1, 1000, "a@x.org", "one", "one@host", NULL);
	test_rcpt(db, 1, 1, "bob@example.org", "delivered", 1, NULL, NULL,
	    "mg1@mg", 0);
	test_rcpt(db, 2, 1, "carol@example.org", "delivered", 1, NULL, NULL,
	    "mg1@mg", 0);

	test_msg(db, 2, 2000, "b@y.org", "two", "dup@host", NULL);
	test_rcpt(
	    db, 3, 2, "dave@example.org", "delivered", 2, NULL, NULL, NULL, 0);
	test_rcpt(db, 4, 2, "erin@other.net", "failed", 2, "bounce",
	    "550 5.1.1 no such user", NULL, 0);

	test_msg(
	    db, 3, 3000, "App@Example.COM", "three", NULL, "mg3@mg.example");
	test_rcpt(
	    db, 5, 3, "f@example.org", "delivered", 1, NULL, NULL, NULL, 0);
	test_rcpt(db, 6, 3, "g@example.org", "retrying", 1, "old",
	    "not delivered within 8 hours", NULL, 99000);
	test_rcpt(db, 7, 3, "h@example.org", "sent", 1, NULL, NULL, NULL, 0);

	test_msg(db, 4, 4000, "c@x.org", NULL, NULL, NULL);
	test_rcpt(db, 8, 4, "i@sub.example.org", "queued", 0, NULL, NULL,
	    "rc4@mg", 0);
	test_rcpt(
	    db, 9, 4, "j@example.org", "delivered", 1, NULL, NULL, NULL, 0);

	test_msg(db, 5, 5000, "d@x.org", "five", "dup@host", NULL);
	test_rcpt(db, 10, 5, "k@example.org", "sent", 1, NULL, NULL, NULL, 0);
	test_rcpt(
	    db, 11, 5, "l@example.org", "deferred", 1, NULL, NULL, NULL, 0);

	test_msg(db, 6, 6000, "e@x.org", "six", NULL, "old6@mg");
	test_rcpt(
	    db, 12, 6, "m@badexample.org", "deferred", 1, NULL, NULL, NULL, 0);
	test_rcpt(
	    db, 13, 6, "n@example.org", "delivered", 1, NULL, NULL, NULL, 0);

	test_msg(db, 7, 6000, "f@x.org", "seven", NULL, NULL);
	test_rcpt(db, 14, 7, "o@x.org", "retrying", 1, NULL, NULL, NULL, 0);
	test_rcpt(db, 15, 7, "p@x.org", "deferred", 1, NULL, NULL, NULL, 0);

	test_msg(db, 8, 7000, "g@x.org", "eight", NULL, NULL);
	test_rcpt(db, 16, 8, "q@x.org", "failed", 5, "espblock", NULL, NULL, 0);
	test_rcpt(db, 17, 8, "r@x.org", "queued", 0, NULL, NULL, NULL, 0);

	test_msg(db, 9, 8000, "", "nine", NULL, NULL);
	test_rcpt(db, 18, 9, "s@x.org", "sent", 1, NULL, NULL, NULL, 0);

	test_msg(db, 10, 9000, "h@x.org", "ten", "123", NULL);
	test_rcpt(db, 19, 10, "t@x.org", "delivered", 1, NULL, NULL, NULL, 0);

	/* Sends: two for message 2, one for 6 (whose id only it carries). */
	test_exec(db,
	    "INSERT INTO attempts (id, message_id, at, via, http_status,"
	    " mailgun_id, result) VALUES"
	    " (1, 2, 2100, 'mime', 200, 'mg2a@mg', 'Queued. Thank you.'),"
	    " (2, 2, 2200, 'storage', NULL, NULL, 'timeout'),"
	    " (3, 6, 6100, 'mime', 200, 'at6@mg', NULL);"
	    "INSERT INTO attempt_rcpts (attempt_id, recipient_id) VALUES"
	    " (1, 4), (1, 3), (2, 4), (3, 12), (3, 13);"
	    "INSERT INTO events (id, message_id, recipient_id, at,"
	    " received_at, event, severity, reason, code, enhanced_code,"
	    " message, mailgun_id) VALUES"
	    " (2, 2, 4, 2400, 2500, 'failed', 'permanent', 'bounce', 550,"
	    "  '5.1.1', 'no such user', 'mg2a@mg'),"
	    " (1, 2, 3, 2300, 2600, 'delivered', NULL, NULL, 250, NULL,"
	    "  'OK', 'mg2a@mg'),"
	    " (3, 2, NULL, 2450, 2700, 'opened', NULL, NULL, NULL, NULL,"
	    "  NULL, NULL);");
	test_body(db, 1, test_body1, sizeof(test_body1) - 1);
	test_body(db, 3, "", 0);
	test_exec(db, "COMMIT");
}

/* Builds the store the way the daemon does, then fills it. */
static int
test_setup(void **state)
{
	struct test_env *env;
	char err[256];

	env = calloc(1, sizeof(*env));
	assert_non_null(env);
	snprintf(env->dir, sizeof(env->dir), "/tmp/redrive-sq-XXXXXX");
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
test_open(struct test_env *env)
{
	struct store_db *db = NULL;
	char err[256] = "";

	if (store_db_open(&db, env->path, true, err, sizeof(err)) != 0)
		fail_msg("store_db_open: %s", err);
	return db;
}

struct test_ids {
	int64_t ids[TEST_MAX_IDS];
	size_t n;
	size_t stop_after; /* 0: never */
};

static int
test_collect_cb(const struct store_message_row *row, void *arg)
{
	struct test_ids *ids = arg;

	assert_true(ids->n < TEST_MAX_IDS);
	ids->ids[ids->n++] = row->id;
	if (ids->stop_after != 0 && ids->n == ids->stop_after)
		return 42;
	return 0;
}

/*
 * Runs the log with f and checks that exactly the ids in want come out,
 * in that order.
 */
static void
test_log_expect(struct store_db *db, const struct store_log_filter *f,
    const int64_t *want, size_t nwant)
{
	struct test_ids ids;
	size_t i;

	memset(&ids, 0, sizeof(ids));
	assert_int_equal(store_db_log(db, f, test_collect_cb, &ids), 0);
	for (i = 0; i < ids.n && i < nwant; i++)
		if (ids.ids[i] != want[i])
			fail_msg("row %zu: got id %lld, want %lld", i,
			    (long long)ids.ids[i], (long long)want[i]);
	assert_int_equal(ids.n, nwant);
}

#define TEST_LOG(db, f, ...)                                             \
	do {                                                             \
		const int64_t want_[] = { __VA_ARGS__ };                 \
		test_log_expect(                                         \
		    (db), (f), want_, sizeof(want_) / sizeof(want_[0])); \
	} while (0)

static void
test_derived_status(void **state)
{
	static const char *const want[] = { "delivered", "failed", "retrying",
		"queued", "sent", "deferred", "retrying", "failed", "sent",
		"delivered" };
	struct store_db *db = test_open(*state);
	struct store_message_row row;
	size_t i;

	for (i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		assert_int_equal(store_db_message(db, (int64_t)i + 1, &row), 0);
		assert_int_equal(row.id, (int64_t)i + 1);
		if (strcmp(row.status, want[i]) != 0)
			fail_msg("message %zu: status %s, want %s", i + 1,
			    row.status, want[i]);
		store_message_row_clear(&row);
	}
	store_db_close(db);
}

static void
test_message_fields(void **state)
{
	struct store_db *db = test_open(*state);
	struct store_message_row row;

	assert_int_equal(store_db_message(db, 2, &row), 0);
	assert_int_equal(row.received_at, 2000);
	assert_string_equal(row.mail_from, "b@y.org");
	assert_string_equal(row.subject, "two");
	assert_string_equal(row.message_id, "dup@host");
	assert_string_equal(row.helo, "client.test");
	assert_string_equal(row.client_addr, "127.0.0.1");
	assert_null(row.auth_user);
	assert_int_equal(row.size, 102);
	/* The message's attempts count its sends, not its recipients'. */
	assert_int_equal(row.attempts, 2);
	/* No mailgun_id in messages: the latest send's id stands in. */
	assert_string_equal(row.mailgun_id, "mg2a@mg");
	assert_int_equal(row.nrcpts, 2);
	assert_string_equal(row.rcpts[0].address, "dave@example.org");
	assert_string_equal(row.rcpts[0].status, "delivered");
	assert_int_equal(row.rcpts[0].attempts, 2);
	assert_null(row.rcpts[0].reason);
	assert_string_equal(row.rcpts[1].address, "erin@other.net");
	assert_string_equal(row.rcpts[1].status, "failed");
	assert_string_equal(row.rcpts[1].reason, "bounce");
	assert_string_equal(row.rcpts[1].last_error, "550 5.1.1 no such user");
	store_message_row_clear(&row);
	/* Clearing twice (and NULL) is harmless. */
	store_message_row_clear(&row);
	store_message_row_clear(NULL);

	assert_int_equal(store_db_message(db, 3, &row), 0);
	assert_string_equal(row.mailgun_id, "mg3@mg.example");
	assert_int_equal(row.attempts, 0);
	assert_null(row.message_id);
	/* reason is for failed recipients only; next attempt kept. */
	assert_string_equal(row.rcpts[1].status, "retrying");
	assert_null(row.rcpts[1].reason);
	assert_string_equal(
	    row.rcpts[1].last_error, "not delivered within 8 hours");
	assert_int_equal(row.rcpts[1].next_attempt_at, 99000);
	assert_int_equal(row.rcpts[0].next_attempt_at, 0);
	store_message_row_clear(&row);

	/* A later send's id wins over the one in messages. */
	assert_int_equal(store_db_message(db, 6, &row), 0);
	assert_string_equal(row.mailgun_id, "at6@mg");
	store_message_row_clear(&row);

	assert_int_equal(store_db_message(db, 9, &row), 0);
	assert_string_equal(row.mail_from, "");
	assert_null(row.mailgun_id);
	store_message_row_clear(&row);

	assert_int_equal(store_db_message(db, 4, &row), 0);
	assert_null(row.subject);
	store_message_row_clear(&row);

	assert_int_equal(store_db_message(db, 77, &row), -ENOENT);
	assert_null(row.rcpts);
	store_db_close(db);
}

static void
test_log_order_limit_since(void **state)
{
	struct store_db *db = test_open(*state);
	struct store_log_filter f;

	memset(&f, 0, sizeof(f));
	f.limit = 50;
	TEST_LOG(db, &f, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1);
	f.limit = 3;
	TEST_LOG(db, &f, 10, 9, 8);
	f.limit = 1;
	TEST_LOG(db, &f, 10);
	f.limit = 50;
	f.since = 6000;
	TEST_LOG(db, &f, 10, 9, 8, 7, 6);
	f.since = 6001;
	TEST_LOG(db, &f, 10, 9, 8);
	f.since = 9001;
	test_log_expect(db, &f, NULL, 0);
	f.since = 0;
	f.limit = 0;
	assert_int_equal(store_db_log(db, &f, test_collect_cb, NULL), -EINVAL);
	store_db_close(db);
}

static void
test_log_status(void **state)
{
	static const char *const failed[] = { "failed" };
	static const char *const qs[] = { "queued", "sent" };
	static const char *const retrying[] = { "retrying" };
	static const char *const delivered[] = { "delivered" };
	static const char *const deferred[] = { "deferred" };
	static const char *const bad[] = { "sent", "bogus" };
	struct store_db *db = test_open(*state);
	struct store_log_filter f;

	memset(&f, 0, sizeof(f));
	f.limit = 50;
	f.statuses = failed;
	f.nstatuses = 1;
	TEST_LOG(db, &f, 8, 2);
	f.statuses = qs;
	f.nstatuses = 2;
	TEST_LOG(db, &f, 9, 5, 4);
	f.statuses = retrying;
	f.nstatuses = 1;
	TEST_LOG(db, &f, 7, 3);
	/* The limit applies after the status filter. */
	f.limit = 1;
	TEST_LOG(db, &f, 7);
	f.limit = 50;
	f.statuses = delivered;
	TEST_LOG(db, &f, 10, 1);
	f.statuses = deferred;
	TEST_LOG(db, &f, 6);
	f.statuses = bad;
	f.nstatuses = 2;
	assert_int_equal(store_db_log(db, &f, test_collect_cb, NULL), -EINVAL);
	store_db_close(db);
}

static void
test_log_addresses(void **state)
{
	static const char *const failed[] = { "failed" };
	struct store_db *db = test_open(*state);
	struct store_log_filter f;

	memset(&f, 0, sizeof(f));
	f.limit = 50;
	f.to = "BOB@Example.ORG";
	TEST_LOG(db, &f, 1);
	f.to = "bob@example";
	test_log_expect(db, &f, NULL, 0);
	f.to = "@example.org";
	TEST_LOG(db, &f, 6, 5, 4, 3, 2, 1);
	f.to = "@EXAMPLE.org";
	TEST_LOG(db, &f, 6, 5, 4, 3, 2, 1);
	f.to = "@sub.example.org";
	TEST_LOG(db, &f, 4);
	f.to = "@badexample.org";
	TEST_LOG(db, &f, 6);
	f.to = "@other.net";
	TEST_LOG(db, &f, 2);
	f.to = "@net";
	test_log_expect(db, &f, NULL, 0);
	f.to = "@x.org";
	f.statuses = failed;
	f.nstatuses = 1;
	TEST_LOG(db, &f, 8);

	memset(&f, 0, sizeof(f));
	f.limit = 50;
	f.from = "app@example.com";
	TEST_LOG(db, &f, 3);
	f.from = "@example.com";
	TEST_LOG(db, &f, 3);
	f.from = "@x.org";
	TEST_LOG(db, &f, 10, 8, 7, 6, 5, 4, 1);
	f.from = "";
	TEST_LOG(db, &f, 9);
	f.from = "@x.org";
	f.to = "@example.org";
	f.since = 4000;
	TEST_LOG(db, &f, 6, 5, 4);
	store_db_close(db);
}

static void
test_log_rows_and_stop(void **state)
{
	struct store_db *db = test_open(*state);
	struct store_log_filter f;
	struct test_ids ids;

	memset(&f, 0, sizeof(f));
	f.limit = 50;
	memset(&ids, 0, sizeof(ids));
	ids.stop_after = 2;
	assert_int_equal(store_db_log(db, &f, test_collect_cb, &ids), 42);
	assert_int_equal(ids.n, 2);
	store_db_close(db);
}

static int
test_rcpts_cb(const struct store_message_row *row, void *arg)
{
	int *seen = arg;

	if (row->id == 3) {
		assert_string_equal(row->status, "retrying");
		assert_int_equal(row->nrcpts, 3);
		assert_string_equal(row->rcpts[2].address, "h@example.org");
		assert_string_equal(row->rcpts[2].status, "sent");
		assert_string_equal(row->subject, "three");
		(*seen)++;
	}
	if (row->id == 8) {
		assert_string_equal(row->rcpts[0].reason, "espblock");
		assert_int_equal(row->rcpts[0].attempts, 5);
		(*seen)++;
	}
	return 0;
}

static void
test_log_recipients(void **state)
{
	struct store_db *db = test_open(*state);
	struct store_log_filter f;
	int seen = 0;

	memset(&f, 0, sizeof(f));
	f.limit = 50;
	assert_int_equal(store_db_log(db, &f, test_rcpts_cb, &seen), 0);
	assert_int_equal(seen, 2);
	store_db_close(db);
}

static void
test_resolve(void **state)
{
	struct store_db *db = test_open(*state);
	int64_t id;

	id = 0;
	assert_int_equal(store_db_resolve(db, "3", &id), 0);
	assert_int_equal(id, 3);
	/* Message-ID, bare and bracketed, blanks around. */
	id = 0;
	assert_int_equal(store_db_resolve(db, "one@host", &id), 0);
	assert_int_equal(id, 1);
	id = 0;
	assert_int_equal(store_db_resolve(db, "<one@host>", &id), 0);
	assert_int_equal(id, 1);
	id = 0;
	assert_int_equal(store_db_resolve(db, " <one@host> ", &id), 0);
	assert_int_equal(id, 1);
	/* Two messages share a Message-ID: the newest wins. */
	id = 0;
	assert_int_equal(store_db_resolve(db, "<dup@host>", &id), 0);
	assert_int_equal(id, 5);
	/* All digits but no such local id: then it is a Message-ID. */
	id = 0;
	assert_int_equal(store_db_resolve(db, "123", &id), 0);
	assert_int_equal(id, 10);
	/* Mailgun ids: of a message, of a recipient, of a send. */
	id = 0;
	assert_int_equal(store_db_resolve(db, "mg3@mg.example", &id), 0);
	assert_int_equal(id, 3);
	id = 0;
	assert_int_equal(store_db_resolve(db, "<mg3@mg.example>", &id), 0);
	assert_int_equal(id, 3);
	id = 0;
	assert_int_equal(store_db_resolve(db, "rc4@mg", &id), 0);
	assert_int_equal(id, 4);
	id = 0;
	assert_int_equal(store_db_resolve(db, "at6@mg", &id), 0);
	assert_int_equal(id, 6);
	id = 0;
	assert_int_equal(store_db_resolve(db, "mg2a@mg", &id), 0);
	assert_int_equal(id, 2);

	assert_int_equal(store_db_resolve(db, "77", &id), -ENOENT);
	assert_int_equal(store_db_resolve(db, "0", &id), -ENOENT);
	assert_int_equal(
	    store_db_resolve(db, "99999999999999999999", &id), -ENOENT);
	assert_int_equal(store_db_resolve(db, "nobody@nowhere", &id), -ENOENT);
	assert_int_equal(store_db_resolve(db, "ONE@host", &id), -ENOENT);
	assert_int_equal(store_db_resolve(db, "", &id), -EINVAL);
	assert_int_equal(store_db_resolve(db, "<>", &id), -EINVAL);
	assert_int_equal(store_db_resolve(db, "a b", &id), -EINVAL);
	assert_int_equal(store_db_resolve(db, "a\nb", &id), -EINVAL);
	store_db_close(db);
}

static void
test_body_bytes(void **state)
{
	struct store_db *db = test_open(*state);
	void *data = NULL;
	size_t len = 1;

	assert_int_equal(store_db_body(db, 1, &data, &len), 0);
	assert_int_equal(len, sizeof(test_body1) - 1);
	assert_memory_equal(data, test_body1, len);
	free(data);
	/* An empty body is a body. */
	assert_int_equal(store_db_body(db, 3, &data, &len), 0);
	assert_non_null(data);
	assert_int_equal(len, 0);
	free(data);
	/* Purged (no row in bodies) and unknown messages. */
	assert_int_equal(store_db_body(db, 2, &data, &len), -ENOENT);
	assert_null(data);
	assert_int_equal(len, 0);
	assert_int_equal(store_db_body(db, 77, &data, &len), -ENOENT);
	store_db_close(db);
}

static void
test_sends_events(void **state)
{
	struct store_db *db = test_open(*state);
	struct store_send_row *s = NULL;
	struct store_event_row *e = NULL;
	size_t n = 99;

	assert_int_equal(store_db_sends(db, 2, &s, &n), 0);
	assert_int_equal(n, 2);
	assert_int_equal(s[0].at, 2100);
	assert_string_equal(s[0].via, "mime");
	assert_int_equal(s[0].http_status, 200);
	assert_string_equal(s[0].mailgun_id, "mg2a@mg");
	assert_string_equal(s[0].result, "Queued. Thank you.");
	assert_int_equal(s[0].nrecipients, 2);
	assert_string_equal(s[0].recipients[0], "dave@example.org");
	assert_string_equal(s[0].recipients[1], "erin@other.net");
	assert_string_equal(s[1].via, "storage");
	assert_int_equal(s[1].http_status, 0);
	assert_null(s[1].mailgun_id);
	assert_int_equal(s[1].nrecipients, 1);
	assert_string_equal(s[1].recipients[0], "erin@other.net");
	store_send_rows_free(s, n);

	assert_int_equal(store_db_sends(db, 1, &s, &n), 0);
	assert_int_equal(n, 0);
	store_send_rows_free(s, n);
	store_send_rows_free(NULL, 0);

	/* Events come in the order of their own timestamps. */
	assert_int_equal(store_db_events(db, 2, &e, &n), 0);
	assert_int_equal(n, 3);
	assert_int_equal(e[0].at, 2300);
	assert_string_equal(e[0].event, "delivered");
	assert_string_equal(e[0].recipient, "dave@example.org");
	assert_int_equal(e[0].code, 250);
	assert_null(e[0].severity);
	assert_int_equal(e[1].at, 2400);
	assert_string_equal(e[1].event, "failed");
	assert_string_equal(e[1].severity, "permanent");
	assert_string_equal(e[1].reason, "bounce");
	assert_int_equal(e[1].code, 550);
	assert_string_equal(e[1].enhanced_code, "5.1.1");
	assert_string_equal(e[1].message, "no such user");
	assert_string_equal(e[1].mailgun_id, "mg2a@mg");
	assert_string_equal(e[2].event, "opened");
	assert_null(e[2].recipient);
	assert_int_equal(e[2].code, 0);
	store_event_rows_free(e, n);

	assert_int_equal(store_db_events(db, 5, &e, &n), 0);
	assert_int_equal(n, 0);
	store_event_rows_free(e, n);
	store_db_close(db);
}

/* The reader sees what a concurrent writer commits (WAL). */
static void
test_reads_while_writer_open(void **state)
{
	struct test_env *env = *state;
	struct store_db *db = test_open(env);
	struct store_log_filter f;

	memset(&f, 0, sizeof(f));
	f.limit = 2;
	TEST_LOG(db, &f, 10, 9);
	test_exec(env->w, "BEGIN");
	test_msg(env->w, 11, 9500, "z@x.org", "eleven", NULL, NULL);
	test_rcpt(env->w, 20, 11, "u@x.org", "queued", 0, NULL, NULL, NULL, 0);
	/* Not committed yet: not visible, and the reader is not blocked. */
	TEST_LOG(db, &f, 10, 9);
	test_exec(env->w, "COMMIT");
	TEST_LOG(db, &f, 11, 10);
	store_db_close(db);
}

static void
test_open_readwrite(void **state)
{
	struct test_env *env = *state;
	struct store_db *db = NULL;
	struct store_message_row row;
	char err[256] = "";

	assert_int_equal(
	    store_db_open(&db, env->path, false, err, sizeof(err)), 0);
	assert_int_equal(store_db_message(db, 1, &row), 0);
	assert_string_equal(row.status, "delivered");
	store_message_row_clear(&row);
	store_db_close(db);
	store_db_close(NULL);
}

static void
test_open_missing(void **state)
{
	struct test_env *env = *state;
	struct store_db *db = NULL;
	char path[192], err[256] = "";

	snprintf(path, sizeof(path), "%s/nope.db", env->dir);
	assert_int_equal(
	    store_db_open(&db, path, true, err, sizeof(err)), -ENOENT);
	assert_null(db);
	assert_non_null(strstr(err, "no store at "));
	assert_non_null(strstr(err, path));
	/* Read-write does not create it either. */
	assert_int_equal(
	    store_db_open(&db, path, false, err, sizeof(err)), -ENOENT);
	assert_int_equal(access(path, F_OK), -1);
	/* A directory is not a store. */
	assert_int_not_equal(
	    store_db_open(&db, env->dir, true, err, sizeof(err)), 0);
	assert_null(db);
}

static void
test_open_not_a_db(void **state)
{
	struct test_env *env = *state;
	struct store_db *db = NULL;
	char path[192], err[256] = "";
	FILE *fp;

	snprintf(path, sizeof(path), "%s/junk.db", env->dir);
	fp = fopen(path, "w");
	assert_non_null(fp);
	for (int i = 0; i < 64; i++)
		fputs("this is not an SQLite database\n", fp);
	fclose(fp);
	assert_int_equal(
	    store_db_open(&db, path, true, err, sizeof(err)), -EILSEQ);
	assert_null(db);
	assert_non_null(strstr(err, path));
	unlink(path);
}

static void
test_open_wrong_version(void **state)
{
	struct test_env *env = *state;
	struct store_db *db = NULL;
	char sql[64], err[256] = "";

	/* Older (here: never migrated) than this build: start redrived. */
	test_exec(env->w, "PRAGMA user_version=0");
	assert_int_equal(
	    store_db_open(&db, env->path, true, err, sizeof(err)), -EPROTO);
	assert_null(db);
	assert_non_null(strstr(err, "start redrived once"));
	assert_non_null(strstr(err, env->path));

	/* Newer than this build: starting redrived would not help. */
	snprintf(sql, sizeof(sql), "PRAGMA user_version=%d",
	    STORE_SCHEMA_VERSION + 1);
	test_exec(env->w, sql);
	memset(err, 0, sizeof(err));
	assert_int_equal(
	    store_db_open(&db, env->path, false, err, sizeof(err)), -EPROTO);
	assert_null(db);
	assert_non_null(strstr(err, "newer"));
	assert_null(strstr(err, "start redrived"));

	snprintf(
	    sql, sizeof(sql), "PRAGMA user_version=%d", STORE_SCHEMA_VERSION);
	test_exec(env->w, sql);
	db = test_open(env);
	store_db_close(db);
}

/*
 * A refused store is left as it was: a read-write open of an unmigrated
 * rollback-journal database does not turn it into WAL first.
 */
static void
test_refusal_writes_nothing(void **state)
{
	struct test_env *env = *state;
	struct store_db *db = NULL;
	sqlite3 *raw = NULL;
	sqlite3_stmt *st = NULL;
	char path[192], err[256] = "";

	snprintf(path, sizeof(path), "%s/plain.db", env->dir);
	assert_int_equal(sqlite3_open(path, &raw), SQLITE_OK);
	test_exec(raw, "PRAGMA journal_mode=DELETE; CREATE TABLE t (x);");
	sqlite3_close(raw);

	assert_int_equal(
	    store_db_open(&db, path, false, err, sizeof(err)), -EPROTO);
	assert_null(db);
	assert_non_null(strstr(err, "start redrived once"));

	assert_int_equal(sqlite3_open(path, &raw), SQLITE_OK);
	assert_int_equal(
	    sqlite3_prepare_v2(raw, "PRAGMA journal_mode", -1, &st, NULL),
	    SQLITE_OK);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	assert_string_equal((const char *)sqlite3_column_text(st, 0), "delete");
	sqlite3_finalize(st);
	sqlite3_close(raw);
	unlink(path);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(
		    test_derived_status, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(
		    test_message_fields, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(
		    test_log_order_limit_since, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(
		    test_log_status, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(
		    test_log_addresses, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(
		    test_log_rows_and_stop, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(
		    test_log_recipients, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(
		    test_resolve, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(
		    test_body_bytes, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(
		    test_sends_events, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(
		    test_reads_while_writer_open, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(
		    test_open_readwrite, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(
		    test_open_missing, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(
		    test_open_not_a_db, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(
		    test_open_wrong_version, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(
		    test_refusal_writes_nothing, test_setup, test_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
