/*
 * test_redrive: the re-drive scheduler (tracker/redrive.c) on a real store
 * and a real Mailgun client, whose api_base and storage URLs point at an
 * HTTP/1.1 server on a libuv TCP listener (127.0.0.1, a port the kernel
 * picks) in the same loop; the server keeps each request and answers with
 * the test's canned response, or never.  Retrying recipients are made the
 * way the daemon makes them: a message stored, its first send recorded,
 * a terminal failure applied through store_event_apply().  Covered: a
 * storage resend accepted (the request, the record, the log line), a 404
 * and a 400 (the stored copy is gone: requeued, the forwarder kicked), a
 * 503 (tried again later), past storage_ttl, no storage URL and no client
 * (requeued without a request), `redrive retry` picked up by the timer
 * without a restart, the hold after a 401, and closing with a resend in
 * flight.  Every test ends with uv_loop_close() == 0.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>
#include <uv.h>

#include "canned_http.h"
#include "redrive/config.h"
#include "redrive/log.h"
#include "redrive/mailgun.h"
#include "redrive/redrive.h"
#include "redrive/store.h"
#include "redrive/store_events.h"
#include "redrive/timeutil.h"
#include "redrive/webhook.h"

#define MINUTE 60000LL
#define HOUR (60 * MINUTE)

/* ---- The server: canned_http.h ---------------------------------------- */

/* Sets the canned answer: a status line and a JSON body. */
static void
srv_json(struct srv *srv, const char *status, const char *body)
{
	srv_respond(srv, status, "Content-Type: application/json\r\n", body,
	    strlen(body));
}

/* ---- The fixture ------------------------------------------------------- */

struct fixture {
	char dir[64];
	char path[128];
	char logpath[128];
	char base[64];
	int logfd;
	int oldfd;
	uv_loop_t loop;
	struct srv srv;
	struct store *st;
	struct mailgun *mg;
	struct redrive *rd;
	struct config cfg;
	sqlite3 *db;
	int kicks;
	int ntok;
};

static int
test_setup(void **state)
{
	struct fixture *f;
	struct mailgun_opts o;
	char err[512];

	f = calloc(1, sizeof(*f));
	if (f == NULL)
		return -1;
	snprintf(f->dir, sizeof(f->dir), "/tmp/test_redrive.XXXXXX");
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
	srv_start(&f->srv, &f->loop);
	snprintf(f->base, sizeof(f->base), "http://127.0.0.1:%d", f->srv.port);
	memset(&o, 0, sizeof(o));
	o.api_base = f->base;
	o.domain = "example.org";
	o.api_key = "key-secret-test";
	o.timeout_ms = 5000;
	o.concurrency = 4;
	if (config_defaults(&f->cfg) != 0 ||
	    store_open(&f->st, f->path, &f->loop, err, sizeof(err)) != 0 ||
	    mailgun_new(&f->mg, &f->loop, &o, err, sizeof(err)) != 0 ||
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

	/* The daemon's order: scheduler, Mailgun client, store. */
	redrive_close(f->rd);
	mailgun_close(f->mg);
	store_close(f->st);
	srv_stop(&f->srv);
	sqlite3_close(f->db);
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

static void
test_kick_cb(void *arg)
{
	struct fixture *f = arg;

	f->kicks++;
}

static void
test_start(struct fixture *f, bool with_client)
{
	assert_int_equal(redrive_new(&f->rd, &f->loop, &f->cfg, f->st,
			     with_client ? f->mg : NULL, test_kick_cb, f),
	    0);
}

/* ---- Reading the store ------------------------------------------------- */

static int64_t
test_int(struct fixture *f, const char *sql, int64_t a)
{
	sqlite3_stmt *s = NULL;
	int64_t v;

	assert_int_equal(
	    sqlite3_prepare_v2(f->db, sql, -1, &s, NULL), SQLITE_OK);
	if (sqlite3_bind_parameter_count(s) > 0)
		sqlite3_bind_int64(s, 1, a);
	assert_int_equal(sqlite3_step(s), SQLITE_ROW);
	v = sqlite3_column_int64(s, 0);
	sqlite3_finalize(s);
	return v;
}

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

static const char *
test_status(struct fixture *f, int64_t rid, char *buf, size_t len)
{
	return test_text(
	    f, "SELECT status FROM recipients WHERE id = ?1", rid, buf, len);
}

/* Reads the log written so far; true when it contains needle. */
static bool
test_log_has(struct fixture *f, const char *needle)
{
	static char buf[65536];
	ssize_t n;

	n = pread(f->logfd, buf, sizeof(buf) - 1, 0);
	if (n < 0)
		return false;
	buf[n] = '\0';
	return strstr(buf, needle) != NULL;
}

/*
 * Runs the loop until the recipient's status is want (NULL: until the
 * server has seen nreqs requests), failing after 10 s.
 */
static void
test_run_until(struct fixture *f, int64_t rid, const char *want, int nreqs)
{
	int64_t end = time_now_ms() + 10000;
	char buf[32];

	for (;;) {
		if (want != NULL &&
		    strcmp(test_status(f, rid, buf, sizeof(buf)), want) == 0)
			return;
		if (want == NULL && f->srv.nreqs >= nreqs)
			return;
		if (time_now_ms() > end)
			fail_msg("timed out waiting for %s",
			    want != NULL ? want : "requests");
		(void)uv_run(&f->loop, UV_RUN_ONCE);
	}
}

/* ---- Making a retrying recipient --------------------------------------- */

static void
test_submit_cb(int status, int64_t id, void *arg)
{
	int64_t *out = arg;

	assert_int_equal(status, 0);
	*out = id;
}

static void
test_record_cb(int status, void *arg)
{
	int *calls = arg;

	assert_int_equal(status, 0);
	(*calls)++;
}

static void
test_event_cb(int status, const struct store_event_result *r, void *arg)
{
	struct store_event_result *out = arg;

	assert_int_equal(status, 0);
	*out = *r;
}

/*
 * Stores a message to bob, records its acceptance by Mailgun at
 * accepted_at, and applies a terminal failure ("old") carrying url (may
 * be NULL) at failed_at; returns the recipient id (due at failed_at + 4
 * min).
 */
static int64_t
test_retrying(struct fixture *f, int64_t accepted_at, int64_t failed_at,
    const char *url, int64_t *midp)
{
	static const char *const rcpts[] = { "bob@example.org" };
	static const char data[] = "Subject: t\r\n\r\nhello\r\n";
	struct store_new_message m;
	struct store_forward_result fr;
	struct store_event_result res;
	struct webhook_event ev;
	int64_t mid = 0, rid;
	int calls = 0;
	char tok[32], mgid[64];

	memset(&m, 0, sizeof(m));
	m.received_at = accepted_at;
	m.mail_from = "app@example.com";
	m.rcpts = rcpts;
	m.nrcpts = 1;
	m.data = data;
	m.len = sizeof(data) - 1;
	assert_int_equal(store_submit(f->st, &m, test_submit_cb, &mid), 0);
	while (mid == 0)
		uv_run(&f->loop, UV_RUN_ONCE);
	rid =
	    test_int(f, "SELECT id FROM recipients WHERE message_id = ?1", mid);

	snprintf(mgid, sizeof(mgid), "mg-%lld@example.org", (long long)mid);
	memset(&fr, 0, sizeof(fr));
	fr.message_id = mid;
	fr.rcpt_ids = &rid;
	fr.nrcpts = 1;
	fr.outcome = STORE_FORWARD_OK;
	fr.at = accepted_at;
	fr.now = accepted_at;
	fr.via = "mime";
	fr.http_status = 200;
	fr.mailgun_id = mgid;
	assert_int_equal(
	    store_forward_record(f->st, &fr, test_record_cb, &calls), 0);
	while (calls == 0)
		uv_run(&f->loop, UV_RUN_ONCE);

	memset(&ev, 0, sizeof(ev));
	memset(&res, 0, sizeof(res));
	snprintf(tok, sizeof(tok), "tok-%d", ++f->ntok);
	ev.token = tok;
	ev.event = (char *)"failed";
	ev.severity = (char *)"permanent";
	ev.reason = (char *)"old";
	ev.recipient = (char *)"bob@example.org";
	ev.message_id = mgid;
	ev.at = failed_at;
	ev.status_message = (char *)"Too old";
	ev.storage_url = (char *)url;
	snprintf(ev.digest, sizeof(ev.digest), "d-%s", tok);
	assert_int_equal(store_event_apply(f->st, &ev, &f->cfg, failed_at,
			     test_event_cb, &res),
	    0);
	while (res.status[0] == '\0')
		uv_run(&f->loop, UV_RUN_ONCE);
	assert_string_equal(res.status, "retrying");
	if (midp != NULL)
		*midp = mid;
	return rid;
}

/* A storage URL on the test server. */
static const char *
test_url(struct fixture *f, const char *key, char *buf, size_t len)
{
	snprintf(
	    buf, len, "%s/v3/domains/example.org/messages/%s", f->base, key);
	return buf;
}

/* ---- Tests ------------------------------------------------------------- */

/*
 * Accepted: POST to the storage URL exactly, to=<recipient> only, Basic
 * auth; the recipient is 'sent' with the new id and two sends; the
 * attempts row says 'storage'; the log line says so without the key.
 */
static void
test_resend_ok(void **state)
{
	struct fixture *f = *state;
	int64_t now = time_now_ms(), rid, mid;
	char url[128], buf[128];
	const char *req;

	srv_json(&f->srv, "200 OK",
	    "{\"id\": \"<new-1@example.org>\", \"message\": \"Queued. Thank "
	    "you.\"}");
	rid = test_retrying(f, now - 60 * MINUTE, now - 5 * MINUTE,
	    test_url(f, "KEY-1", url, sizeof(url)), &mid);
	test_start(f, true);
	test_run_until(f, rid, "sent", 0);

	assert_int_equal(f->srv.nreqs, 1);
	req = f->srv.reqs[0];
	assert_true(
	    strncmp(req,
		"POST /v3/domains/example.org/messages/KEY-1 HTTP/1.1\r\n",
		54) == 0);
	assert_non_null(strstr(req, "name=\"to\"\r\n\r\nbob@example.org\r\n"));
	assert_null(strstr(req, "name=\"message\""));
	assert_null(strstr(req, "v:redrive-id"));
	/* api:key-secret-test */
	assert_non_null(
	    strstr(req, "Authorization: Basic YXBpOmtleS1zZWNyZXQtdGVzdA=="));

	assert_int_equal(
	    test_int(f, "SELECT attempts FROM recipients WHERE id = ?1", rid),
	    2);
	assert_string_equal(test_text(f,
				"SELECT mailgun_id FROM recipients"
				" WHERE id = ?1",
				rid, buf, sizeof(buf)),
	    "new-1@example.org");
	assert_int_equal(test_int(f,
			     "SELECT count(*) FROM attempts WHERE message_id"
			     " = ?1 AND via = 'storage' AND http_status = 200",
			     mid),
	    1);
	/* Let the record's callback run, then look at the counters. */
	while (redrive_stats(f->rd).resent == 0 ||
	    redrive_stats(f->rd).in_flight != 0)
		uv_run(&f->loop, UV_RUN_ONCE);
	assert_int_equal(f->kicks, 0);
	assert_true(test_log_has(f, "msg=\"re-drive\""));
	assert_true(test_log_has(f, "via=storage result=accepted"));
	assert_false(test_log_has(f, "key-secret-test"));
}

/* A 404 (and a 400) from the storage URL: requeued for the spooled copy. */
static void
test_resend_gone(void **state)
{
	struct fixture *f = *state;
	int64_t now = time_now_ms(), rid, rid2;
	char url[128], buf[128];

	srv_json(
	    &f->srv, "404 Not Found", "{\"message\": \"Message not found\"}");
	rid = test_retrying(f, now - 60 * MINUTE, now - 5 * MINUTE,
	    test_url(f, "GONE", url, sizeof(url)), NULL);
	test_start(f, true);
	test_run_until(f, rid, "queued", 0);
	assert_int_equal(f->srv.nreqs, 1);
	assert_string_equal(test_text(f,
				"SELECT last_error FROM recipients"
				" WHERE id = ?1",
				rid, buf, sizeof(buf)),
	    "404 Message not found");
	assert_true(
	    test_int(f, "SELECT next_attempt_at FROM recipients WHERE id = ?1",
		rid) <= time_now_ms());
	while (f->kicks == 0)
		uv_run(&f->loop, UV_RUN_ONCE);
	assert_int_equal(f->kicks, 1);
	assert_int_equal(redrive_stats(f->rd).gone, 1);
	assert_true(test_log_has(f, "via=storage result=gone"));

	srv_json(&f->srv, "400 Bad Request",
	    "{\"message\": \"to parameter is not a valid address\"}");
	rid2 = test_retrying(f, now - 60 * MINUTE, now - 5 * MINUTE,
	    test_url(f, "BAD", url, sizeof(url)), NULL);
	redrive_kick(f->rd);
	test_run_until(f, rid2, "queued", 0);
	assert_int_equal(f->srv.nreqs, 2);
}

/* A 503: stays retrying, due again after the forwarder's backoff. */
static void
test_resend_retry(void **state)
{
	struct fixture *f = *state;
	int64_t now = time_now_ms(), rid, next;
	char url[128], buf[128];

	srv_json(&f->srv, "503 Service Unavailable", "{\"message\": \"busy\"}");
	rid = test_retrying(f, now - 60 * MINUTE, now - 5 * MINUTE,
	    test_url(f, "KEY-1", url, sizeof(url)), NULL);
	test_start(f, true);
	test_run_until(f, 0, NULL, 1);
	while (redrive_stats(f->rd).retried == 0 ||
	    redrive_stats(f->rd).in_flight != 0)
		uv_run(&f->loop, UV_RUN_ONCE);
	/* The record is submitted after the answer: wait for it. */
	while (strcmp(test_text(f,
			  "SELECT COALESCE(last_error, '') FROM recipients"
			  " WHERE id = ?1",
			  rid, buf, sizeof(buf)),
		   "503 busy") != 0)
		uv_run(&f->loop, UV_RUN_ONCE);
	assert_string_equal(test_status(f, rid, buf, sizeof(buf)), "retrying");
	next = test_int(
	    f, "SELECT next_attempt_at FROM recipients WHERE id = ?1", rid);
	/* retry_min 1 s, plus up to 10% jitter. */
	assert_true(next > now);
	assert_true(next <= time_now_ms() + 1100);
	/* And it is tried again once due. */
	test_run_until(f, 0, NULL, 2);
	assert_true(time_now_ms() >= next);
}

/*
 * Past storage_ttl, with no storage URL, or with no Mailgun client:
 * requeued at once, no request made.
 */
static void
test_requeue_without_storage(void **state)
{
	struct fixture *f = *state;
	int64_t now = time_now_ms(), rid1, rid2;
	char url[128];

	srv_json(&f->srv, "200 OK", "{\"id\": \"<x@example.org>\"}");
	/* Accepted 73 h ago: Mailgun's copy is past the 72 h default. */
	rid1 = test_retrying(f, now - 73 * HOUR, now - 5 * MINUTE,
	    test_url(f, "OLD", url, sizeof(url)), NULL);
	rid2 =
	    test_retrying(f, now - 60 * MINUTE, now - 5 * MINUTE, NULL, NULL);
	test_start(f, true);
	test_run_until(f, rid1, "queued", 0);
	test_run_until(f, rid2, "queued", 0);
	while (f->kicks < 2)
		uv_run(&f->loop, UV_RUN_ONCE);
	assert_int_equal(f->srv.nreqs, 0);
	assert_int_equal(redrive_stats(f->rd).requeued, 2);
	assert_true(test_log_has(f, "via=mime result=requeued"));
	assert_true(test_log_has(f, "detail=\"past storage_ttl\""));
	assert_true(test_log_has(f, "detail=\"no storage URL known\""));
}

static void
test_requeue_no_client(void **state)
{
	struct fixture *f = *state;
	int64_t now = time_now_ms(), rid;
	char url[128];

	rid = test_retrying(f, now - 60 * MINUTE, now - 5 * MINUTE,
	    test_url(f, "KEY", url, sizeof(url)), NULL);
	test_start(f, false);
	test_run_until(f, rid, "queued", 0);
	assert_int_equal(f->srv.nreqs, 0);
}

/* A storage URL that is not Mailgun's is never POSTed: requeued. */
static void
test_requeue_foreign_url(void **state)
{
	struct fixture *f = *state;
	int64_t now = time_now_ms(), rid;

	rid = test_retrying(f, now - 60 * MINUTE, now - 5 * MINUTE,
	    "https://attacker.example/v3/domains/x/messages/K", NULL);
	test_start(f, true);
	test_run_until(f, rid, "queued", 0);
	assert_int_equal(f->srv.nreqs, 0);
	assert_true(test_log_has(f, "storage URL refused"));
}

/*
 * Not due yet: nothing happens; `redrive retry` (store_db_retry through
 * another connection) makes it due and the running scheduler picks it up
 * within its tick.
 */
static void
test_cli_retry_picked_up(void **state)
{
	struct fixture *f = *state;
	struct store_db *db = NULL;
	int64_t now = time_now_ms(), rid, mid, t0;
	char url[128], err[256];

	srv_json(&f->srv, "200 OK", "{\"id\": \"<new-2@example.org>\"}");
	/* Failed just now: due in 4 min. */
	rid = test_retrying(f, now - 60 * MINUTE, now,
	    test_url(f, "KEY-2", url, sizeof(url)), &mid);
	test_start(f, true);
	while (redrive_stats(f->rd).checks == 0)
		uv_run(&f->loop, UV_RUN_ONCE);
	assert_int_equal(f->srv.nreqs, 0);
	assert_int_equal(redrive_stats(f->rd).retrying, 1);

	assert_int_equal(
	    store_db_open(&db, f->path, false, err, sizeof(err)), 0);
	assert_int_equal(
	    store_db_retry(db, mid, NULL, time_now_ms(), NULL, NULL), 1);
	store_db_close(db);
	t0 = time_now_ms();
	test_run_until(f, rid, "sent", 0);
	assert_int_equal(f->srv.nreqs, 1);
	assert_true(time_now_ms() - t0 <= REDRIVE_TICK_MS + 1000);
}

/* 401 on a storage URL: recorded, held for retry_max, nothing more sent. */
static void
test_pause_holds(void **state)
{
	struct fixture *f = *state;
	int64_t now = time_now_ms(), rid1, rid2, next;
	char url[128], buf[64];

	srv_json(&f->srv, "401 Unauthorized", "{\"message\": \"Forbidden\"}");
	rid1 = test_retrying(f, now - 60 * MINUTE, now - 5 * MINUTE,
	    test_url(f, "K1", url, sizeof(url)), NULL);
	test_start(f, true);
	test_run_until(f, 0, NULL, 1);
	while (strcmp(test_text(f,
			  "SELECT COALESCE(last_error, '') FROM recipients"
			  " WHERE id = ?1",
			  rid1, buf, sizeof(buf)),
		   "401 Forbidden") != 0)
		uv_run(&f->loop, UV_RUN_ONCE);
	next = test_int(
	    f, "SELECT next_attempt_at FROM recipients WHERE id = ?1", rid1);
	assert_true(next >= now + f->cfg.mailgun.retry_max_ms);
	assert_int_equal(redrive_stats(f->rd).paused, 1);

	/* Another due one waits for the hold; it stays retrying. */
	rid2 = test_retrying(f, now - 60 * MINUTE, now - 5 * MINUTE,
	    test_url(f, "K2", url, sizeof(url)), NULL);
	redrive_kick(f->rd);
	{
		uint64_t checks = redrive_stats(f->rd).checks;

		while (redrive_stats(f->rd).checks < checks + 1)
			uv_run(&f->loop, UV_RUN_ONCE);
	}
	assert_int_equal(f->srv.nreqs, 1);
	assert_string_equal(test_status(f, rid2, buf, sizeof(buf)), "retrying");
}

/* Closing with a resend in flight: cancelled, the recipient stays due. */
static void
test_close_in_flight(void **state)
{
	struct fixture *f = *state;
	int64_t now = time_now_ms(), rid;
	char url[128], buf[64];

	f->srv.silent = true;
	srv_json(&f->srv, "200 OK", "{}");
	rid = test_retrying(f, now - 60 * MINUTE, now - 5 * MINUTE,
	    test_url(f, "SLOW", url, sizeof(url)), NULL);
	test_start(f, true);
	test_run_until(f, 0, NULL, 1);
	assert_int_equal(redrive_stats(f->rd).in_flight, 1);
	/* Teardown closes the scheduler, then the client, then the store. */
	assert_string_equal(test_status(f, rid, buf, sizeof(buf)), "retrying");
}

/* Bad arguments. */
static void
test_new_einval(void **state)
{
	struct fixture *f = *state;
	struct redrive *rd = NULL;

	assert_int_equal(
	    redrive_new(&rd, &f->loop, NULL, f->st, f->mg, NULL, NULL),
	    -EINVAL);
	assert_int_equal(
	    redrive_new(&rd, &f->loop, &f->cfg, NULL, f->mg, NULL, NULL),
	    -EINVAL);
	assert_null(rd);
	redrive_close(NULL);
	redrive_kick(NULL);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(
		    test_resend_ok, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(
		    test_resend_gone, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(
		    test_resend_retry, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(
		    test_requeue_without_storage, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(
		    test_requeue_no_client, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(
		    test_requeue_foreign_url, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(
		    test_cli_retry_picked_up, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(
		    test_pause_holds, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(
		    test_close_in_flight, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(
		    test_new_einval, test_setup, test_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
