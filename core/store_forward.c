/*
 * store_forward: the store jobs of the forwarder (relay/forward.c), the
 * only place where the queue of messages waiting for Mailgun is read and
 * where the outcome of a request is written.
 *
 * store_forward_next() runs on the store thread: it finds the oldest
 * messages (by local id) with recipients in status 'queued' that are due,
 * skipping those the forwarder has in flight, and loads each one's body
 * and due recipients (at most 1000, Mailgun's limit per request).  The
 * message is read from the store when it is about to be sent, never held
 * in memory before.  The same job reports the earliest later due time, so
 * the forwarder can set its one timer, and the queue depth.
 *
 * store_forward_record() writes one finished request in one job: the
 * attempts row and its attempt_rcpts, then the recipients' new state.  A
 * recipient's `attempts` counts the requests Mailgun accepted (DESIGN.md:
 * "every send counted, the first included"); a request Mailgun did not
 * accept is only an attempts row, which `redrive show` lists as a send
 * with its result (docs/forwarding.md).  Updates touch only recipients
 * still 'queued', so a recipient Mailgun accepted is never changed back.
 *
 * Ownership: each job owns copies of everything it needs; the batch a
 * next job returns belongs to its callback.  Statements come from the
 * connection's cache (store_sql_take; all SQL here is static text).
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "redrive/log.h"
#include "redrive/store.h"
#include "store_int.h"

/* Due messages read beyond what is asked, in case some cannot load. */
#define STORE_FORWARD_SLACK 16

/* A sanity bound on what one next job is asked for and told to skip. */
#define STORE_FORWARD_MAX_ASK ((size_t)1000000)

/* The longest last_error or reason kept (Mailgun's text is cut first). */
#define STORE_FORWARD_TEXT_MAX 1024

/*
 * The due messages, oldest first.  INDEXED BY keeps the walk on the
 * queued rows (recipients_due) whatever the statistics say: an index on
 * message_id would walk every recipient ever stored.
 */
static const char store_forward_due_sql[] =
    "SELECT message_id FROM recipients INDEXED BY recipients_due"
    " WHERE status = 'queued'"
    " AND (next_attempt_at IS NULL OR next_attempt_at <= ?1)"
    " GROUP BY message_id ORDER BY message_id LIMIT ?2";

static const char store_forward_rcpts_sql[] =
    "SELECT id, address FROM recipients WHERE message_id = ?1"
    " AND status = 'queued'"
    " AND (next_attempt_at IS NULL OR next_attempt_at <= ?2)"
    " ORDER BY id LIMIT ?3";

static const char store_forward_body_sql[] =
    "SELECT data FROM bodies WHERE message_id = ?1";

/* Requests since the last accepted one that were not accepted. */
static const char store_forward_failures_sql[] =
    "SELECT count(*) FROM attempts WHERE message_id = ?1"
    " AND mailgun_id IS NULL AND id > COALESCE((SELECT max(id)"
    " FROM attempts WHERE message_id = ?1 AND mailgun_id IS NOT NULL), 0)";

static const char store_forward_next_due_sql[] =
    "SELECT min(next_attempt_at) FROM recipients"
    " WHERE status = 'queued' AND next_attempt_at > ?1";

static const char store_forward_queued_sql[] =
    "SELECT count(*) FROM recipients WHERE status = 'queued'";

static const char store_forward_gone_sql[] =
    "UPDATE recipients SET status = 'failed', reason = ?2,"
    " last_error = ?2, next_attempt_at = NULL, updated_at = ?3"
    " WHERE message_id = ?1 AND status = 'queued'";

static const char store_forward_ins_attempt_sql[] =
    "INSERT INTO attempts (message_id, at, via, http_status, mailgun_id,"
    " result) VALUES (?1, ?2, ?3, ?4, ?5, ?6)";

static const char store_forward_ins_arcpt_sql[] =
    "INSERT OR IGNORE INTO attempt_rcpts (attempt_id, recipient_id)"
    " VALUES (?1, ?2)";

/*
 * The recipient updates, one per outcome; ?1 id, ?2 message, ?3 now.  An
 * accepted send counts for every recipient it carried that is not 'sent'
 * and does not have its id yet, so also for one that the send's own
 * webhook already moved on (a 'delivered' that overtook this record);
 * only a recipient still 'queued' becomes 'sent'.
 */
static const char *const store_forward_upd_sql[] = {
	[STORE_FORWARD_OK] =
	    "UPDATE recipients SET mailgun_id = ?4, attempts = attempts + 1,"
	    " next_attempt_at = CASE status WHEN 'queued' THEN NULL"
	    " ELSE next_attempt_at END,"
	    " last_error = CASE status WHEN 'queued' THEN NULL"
	    " ELSE last_error END,"
	    " status = CASE status WHEN 'queued' THEN 'sent' ELSE status END,"
	    " updated_at = ?3 WHERE id = ?1 AND message_id = ?2"
	    " AND (status = 'queued' OR (status <> 'sent'"
	    " AND mailgun_id IS NOT ?4))",
	[STORE_FORWARD_RETRY] = "UPDATE recipients SET next_attempt_at = ?5,"
				" last_error = ?4, updated_at = ?3"
				" WHERE id = ?1 AND message_id = ?2"
				" AND status = 'queued'",
	[STORE_FORWARD_PAUSE] = "UPDATE recipients SET last_error = ?4,"
				" updated_at = ?3"
				" WHERE id = ?1 AND message_id = ?2"
				" AND status = 'queued'",
	[STORE_FORWARD_REJECT] = "UPDATE recipients SET status = 'failed',"
				 " reason = ?4, last_error = ?4,"
				 " next_attempt_at = NULL, updated_at = ?3"
				 " WHERE id = ?1 AND message_id = ?2"
				 " AND status = 'queued'",
};

static const char store_forward_msg_id_sql[] =
    "UPDATE messages SET mailgun_id = ?2 WHERE id = ?1";

/* A message is finished once every recipient is delivered or failed. */
static const char store_forward_finish_sql[] =
    "UPDATE messages SET finished_at = ?2 WHERE id = ?1"
    " AND finished_at IS NULL AND NOT EXISTS (SELECT 1 FROM recipients"
    " WHERE message_id = ?1 AND status NOT IN ('delivered', 'failed'))";

/* The job of store_forward_next(). */
struct store_forward_next_job {
	struct store_job job;
	int64_t now;
	size_t max;
	int64_t *exclude;
	size_t nexclude;
	store_forward_next_cb cb;
	void *arg;
	struct store_forward_batch *batch;
};

/* The job of store_forward_record(): copies of the result. */
struct store_forward_record_job {
	struct store_job job;
	struct store_forward_result r;
	int64_t *rcpt_ids;
	char *via;
	char *mailgun_id;
	char *result;
	char *text; /* "<status> <result>": last_error and reason */
	store_forward_record_cb cb;
	void *arg;
};

/* Binds text that may be NULL (SQL NULL), copied by SQLite. */
static int
store_forward_bind_text(sqlite3_stmt *st, int i, const char *v)
{
	if (v == NULL)
		return sqlite3_bind_null(st, i);
	return sqlite3_bind_text(st, i, v, -1, SQLITE_TRANSIENT);
}

/* Runs a statement that returns one integer (NULL gives 0). */
static int
store_forward_scalar(sqlite3_stmt *st, int64_t *out)
{
	int rc;

	*out = 0;
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		*out = sqlite3_column_int64(st, 0);
		rc = SQLITE_OK;
	} else if (rc == SQLITE_DONE)
		rc = SQLITE_OK;
	sqlite3_reset(st);
	return rc;
}

static void
store_forward_msg_clear(struct store_forward_msg *m)
{
	size_t i;

	free(m->data);
	for (i = 0; i < m->nrcpts; i++)
		free(m->rcpts[i].address);
	free(m->rcpts);
	memset(m, 0, sizeof(*m));
}

void
store_forward_batch_free(struct store_forward_batch *b)
{
	size_t i;

	if (b == NULL)
		return;
	for (i = 0; i < b->nmsgs; i++)
		store_forward_msg_clear(&b->msgs[i]);
	free(b->msgs);
	free(b);
}

/*
 * Copies the body of message id into m.  Returns SQLITE_OK, SQLITE_DONE
 * when there is no body, SQLITE_NOMEM or another SQLite code.
 */
static int
store_forward_load_body(sqlite3 *db, int64_t id, struct store_forward_msg *m)
{
	sqlite3_stmt *st = NULL;
	const void *p;
	size_t n;
	int rc;

	rc = store_sql_take(db, store_forward_body_sql, &st);
	if (rc != SQLITE_OK)
		goto out;
	rc = sqlite3_bind_int64(st, 1, id);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(st);
	if (rc != SQLITE_ROW)
		goto out;
	p = sqlite3_column_blob(st, 0);
	n = (size_t)sqlite3_column_bytes(st, 0);
	if (p == NULL && n > 0) {
		rc = SQLITE_NOMEM;
		goto out;
	}
	m->data = malloc(n > 0 ? n : 1);
	if (m->data == NULL) {
		rc = SQLITE_NOMEM;
		goto out;
	}
	if (n > 0)
		memcpy(m->data, p, n);
	m->len = n;
	rc = SQLITE_OK;
out:
	store_sql_give(st);
	return rc;
}

/*
 * Loads the due queued recipients of message id (lowest id first, at most
 * STORE_FORWARD_MAX_RCPTS) into m.  SQLite code.
 */
static int
store_forward_load_rcpts(
    sqlite3 *db, int64_t id, int64_t now, struct store_forward_msg *m)
{
	sqlite3_stmt *st = NULL;
	const unsigned char *a;
	int rc;

	m->rcpts = calloc(STORE_FORWARD_MAX_RCPTS, sizeof(*m->rcpts));
	if (m->rcpts == NULL)
		return SQLITE_NOMEM;
	rc = store_sql_take(db, store_forward_rcpts_sql, &st);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_int64(st, 1, id);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_int64(st, 2, now);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_int(st, 3, STORE_FORWARD_MAX_RCPTS);
	if (rc != SQLITE_OK)
		goto out;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW &&
	    m->nrcpts < STORE_FORWARD_MAX_RCPTS) {
		a = sqlite3_column_text(st, 1);
		m->rcpts[m->nrcpts].id = sqlite3_column_int64(st, 0);
		m->rcpts[m->nrcpts].address =
		    strdup(a != NULL ? (const char *)a : "");
		if (m->rcpts[m->nrcpts].address == NULL) {
			rc = SQLITE_NOMEM;
			goto out;
		}
		m->nrcpts++;
	}
	if (rc == SQLITE_DONE || rc == SQLITE_ROW)
		rc = SQLITE_OK;
out:
	store_sql_give(st);
	return rc;
}

/* Counts the requests since the last accepted one.  SQLite code. */
static int
store_forward_load_failures(
    sqlite3 *db, int64_t id, struct store_forward_msg *m)
{
	sqlite3_stmt *st = NULL;
	int64_t n = 0;
	int rc;

	rc = store_sql_take(db, store_forward_failures_sql, &st);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_int64(st, 1, id);
	if (rc == SQLITE_OK)
		rc = store_forward_scalar(st, &n);
	store_sql_give(st);
	if (n < 0)
		n = 0;
	m->failures = n > (int64_t)UINT32_MAX ? UINT32_MAX : (unsigned)n;
	return rc;
}

/*
 * A queued message without a body (it cannot happen through the relay,
 * but a hand-edited or damaged store can have one) would be picked forever:
 * its due recipients fail with a reason instead.  SQLite code.
 */
static int
store_forward_fail_gone(sqlite3 *db, int64_t id, int64_t now)
{
	sqlite3_stmt *st = NULL;
	int rc;

	log_error("queued message has no stored body; its recipients fail",
	    LF_INT("id", id), LF_END);
	rc = store_sql_take(db, store_forward_gone_sql, &st);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_int64(st, 1, id);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_text(st, 2,
		    "the stored message is gone; it cannot be sent", -1,
		    SQLITE_STATIC);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_int64(st, 3, now);
	if (rc == SQLITE_OK)
		rc = store_sql_exec(st);
	store_sql_give(st);
	/* The alerts commit with the failures (docs/alerts.md). */
	if (rc == SQLITE_OK)
		rc = store_alerts_message_failed(db, id,
		    "the stored message is gone; it cannot be sent", now);
	return rc;
}

/* True when id is one of the job's excluded (in-flight) messages. */
static bool
store_forward_excluded(const struct store_forward_next_job *j, int64_t id)
{
	size_t i;

	for (i = 0; i < j->nexclude; i++)
		if (j->exclude[i] == id)
			return true;
	return false;
}

/*
 * Loads one due message into the next free slot of the batch, or fails
 * its recipients when its body is gone.  SQLite code.
 */
static int
store_forward_load_msg(
    sqlite3 *db, struct store_forward_next_job *j, int64_t id)
{
	struct store_forward_batch *b = j->batch;
	struct store_forward_msg *m = &b->msgs[b->nmsgs];
	int rc;

	memset(m, 0, sizeof(*m));
	m->id = id;
	rc = store_forward_load_body(db, id, m);
	if (rc == SQLITE_DONE)
		return store_forward_fail_gone(db, id, j->now);
	if (rc == SQLITE_OK)
		rc = store_forward_load_rcpts(db, id, j->now, m);
	if (rc == SQLITE_OK)
		rc = store_forward_load_failures(db, id, m);
	if (rc != SQLITE_OK || m->nrcpts == 0) {
		store_forward_msg_clear(m);
		return rc;
	}
	b->nmsgs++;
	return SQLITE_OK;
}

/*
 * The next job: walks the due messages oldest first, skipping excluded
 * ones, loads up to max of them, then reads the next due time and the
 * queue depth.  Store thread.
 */
static int
store_forward_next_run(sqlite3 *db, struct store_job *job)
{
	struct store_forward_next_job *j = (struct store_forward_next_job *)job;
	sqlite3_stmt *st = NULL, *due = NULL;
	int64_t *ids = NULL, v;
	size_t nids = 0, i;
	int64_t limit;
	int rc;

	/* An earlier run of this job (core/store.c) may have filled one. */
	store_forward_batch_free(j->batch);
	j->batch = calloc(1, sizeof(*j->batch));
	if (j->batch != NULL)
		j->batch->msgs = calloc(j->max, sizeof(*j->batch->msgs));
	/* Room for the excluded ones and a few that fail to load. */
	limit = (int64_t)j->max + (int64_t)j->nexclude + STORE_FORWARD_SLACK;
	ids = calloc((size_t)limit, sizeof(*ids));
	if (j->batch == NULL || j->batch->msgs == NULL || ids == NULL) {
		rc = SQLITE_NOMEM;
		goto out;
	}

	/* Collect the ids first: loading runs other statements. */
	rc = store_sql_take(db, store_forward_due_sql, &st);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_int64(st, 1, j->now);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_int64(st, 2, limit);
	if (rc != SQLITE_OK)
		goto out;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW && nids < (size_t)limit) {
		v = sqlite3_column_int64(st, 0);
		if (!store_forward_excluded(j, v))
			ids[nids++] = v;
	}
	if (rc != SQLITE_DONE && rc != SQLITE_ROW)
		goto out;
	store_sql_give(st);
	st = NULL;

	rc = SQLITE_OK;
	for (i = 0; i < nids && j->batch->nmsgs < j->max && rc == SQLITE_OK;
	     i++)
		rc = store_forward_load_msg(db, j, ids[i]);
	if (rc != SQLITE_OK)
		goto out;

	rc = store_sql_take(db, store_forward_next_due_sql, &due);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_int64(due, 1, j->now);
	if (rc == SQLITE_OK)
		rc = store_forward_scalar(due, &j->batch->next_due);
	store_sql_give(due);
	due = NULL;
	if (rc != SQLITE_OK)
		goto out;
	rc = store_sql_take(db, store_forward_queued_sql, &due);
	if (rc == SQLITE_OK)
		rc = store_forward_scalar(due, &v);
	if (rc == SQLITE_OK)
		j->batch->queued = v > 0 ? (uint64_t)v : 0;
out:
	store_sql_give(st);
	store_sql_give(due);
	free(ids);
	if (rc != SQLITE_OK) {
		log_error("store: reading the queue failed",
		    LF_STR("error", sqlite3_errmsg(db)), LF_END);
		store_forward_batch_free(j->batch);
		j->batch = NULL;
		return store_sql_err(rc);
	}
	return 0;
}

/* Hands the batch to the forwarder.  Loop thread. */
static void
store_forward_next_done(struct store_job *job, int status)
{
	struct store_forward_next_job *j = (struct store_forward_next_job *)job;
	struct store_forward_batch *b = j->batch;

	if (status != 0) {
		/* The transaction failed after the job ran. */
		store_forward_batch_free(b);
		b = NULL;
	}
	j->cb(status, b, j->arg);
	free(j->exclude);
	free(j);
}

int
store_forward_next(struct store *st, int64_t now, size_t max,
    const int64_t *exclude, size_t nexclude, store_forward_next_cb cb,
    void *arg)
{
	struct store_forward_next_job *j;
	int rc;

	if (st == NULL || cb == NULL || max == 0 ||
	    max > STORE_FORWARD_MAX_ASK || nexclude > STORE_FORWARD_MAX_ASK ||
	    (nexclude > 0 && exclude == NULL))
		return -EINVAL;
	j = calloc(1, sizeof(*j));
	if (j == NULL)
		return -ENOMEM;
	if (nexclude > 0) {
		j->exclude = calloc(nexclude, sizeof(*j->exclude));
		if (j->exclude == NULL) {
			free(j);
			return -ENOMEM;
		}
		memcpy(j->exclude, exclude, nexclude * sizeof(*exclude));
	}
	j->job.run = store_forward_next_run;
	j->job.done = store_forward_next_done;
	j->now = now;
	j->max = max;
	j->nexclude = nexclude;
	j->cb = cb;
	j->arg = arg;
	rc = store_job_submit(st, &j->job);
	if (rc != 0) {
		free(j->exclude);
		free(j);
	}
	return rc;
}

/* ---- Recording a request ----------------------------------------------- */

/* Inserts the attempts row and its attempt_rcpts.  SQLite code. */
static int
store_forward_insert_attempt(sqlite3 *db, const struct store_forward_result *r)
{
	sqlite3_stmt *st = NULL;
	int64_t attempt;
	size_t i;
	int rc;

	rc = store_sql_take(db, store_forward_ins_attempt_sql, &st);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_int64(st, 1, r->message_id);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_int64(st, 2, r->at);
	if (rc == SQLITE_OK)
		rc = store_forward_bind_text(st, 3, r->via);
	if (rc == SQLITE_OK)
		rc = r->http_status != 0
		    ? sqlite3_bind_int(st, 4, r->http_status)
		    : sqlite3_bind_null(st, 4);
	if (rc == SQLITE_OK)
		rc = store_forward_bind_text(st, 5,
		    r->outcome == STORE_FORWARD_OK ? r->mailgun_id : NULL);
	if (rc == SQLITE_OK)
		rc = store_forward_bind_text(st, 6, r->result);
	if (rc == SQLITE_OK)
		rc = store_sql_exec(st);
	store_sql_give(st);
	if (rc != SQLITE_OK)
		return rc;
	attempt = sqlite3_last_insert_rowid(db);

	rc = store_sql_take(db, store_forward_ins_arcpt_sql, &st);
	for (i = 0; i < r->nrcpts && rc == SQLITE_OK; i++) {
		rc = sqlite3_bind_int64(st, 1, attempt);
		if (rc == SQLITE_OK)
			rc = sqlite3_bind_int64(st, 2, r->rcpt_ids[i]);
		if (rc == SQLITE_OK)
			rc = store_sql_exec(st);
	}
	store_sql_give(st);
	return rc;
}

/* Applies the outcome to each recipient of the request.  SQLite code. */
static int
store_forward_update_rcpts(
    sqlite3 *db, const struct store_forward_record_job *j)
{
	const struct store_forward_result *r = &j->r;
	sqlite3_stmt *st = NULL;
	size_t i;
	int rc;

	rc = store_sql_take(db, store_forward_upd_sql[r->outcome], &st);
	for (i = 0; i < r->nrcpts && rc == SQLITE_OK; i++) {
		rc = sqlite3_bind_int64(st, 1, r->rcpt_ids[i]);
		if (rc == SQLITE_OK)
			rc = sqlite3_bind_int64(st, 2, r->message_id);
		if (rc == SQLITE_OK)
			rc = sqlite3_bind_int64(st, 3, r->now);
		if (rc == SQLITE_OK)
			rc = store_forward_bind_text(st, 4,
			    r->outcome == STORE_FORWARD_OK ? r->mailgun_id
							   : j->text);
		if (rc == SQLITE_OK && r->outcome == STORE_FORWARD_RETRY)
			rc = sqlite3_bind_int64(st, 5, r->next_attempt_at);
		if (rc == SQLITE_OK)
			rc = store_sql_exec(st);
	}
	store_sql_give(st);
	return rc;
}

/* Updates the message row after the recipients.  SQLite code. */
static int
store_forward_update_msg(sqlite3 *db, const struct store_forward_result *r)
{
	sqlite3_stmt *st = NULL;
	int rc;

	if (r->outcome != STORE_FORWARD_OK &&
	    r->outcome != STORE_FORWARD_REJECT)
		return SQLITE_OK;
	rc = store_sql_take(db,
	    r->outcome == STORE_FORWARD_OK ? store_forward_msg_id_sql
					   : store_forward_finish_sql,
	    &st);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_int64(st, 1, r->message_id);
	if (rc == SQLITE_OK)
		rc = r->outcome == STORE_FORWARD_OK
		    ? store_forward_bind_text(st, 2, r->mailgun_id)
		    : sqlite3_bind_int64(st, 2, r->now);
	if (rc == SQLITE_OK)
		rc = store_sql_exec(st);
	store_sql_give(st);
	return rc;
}

/* The alert of each recipient a rejection failed.  SQLite code. */
static int
store_forward_alerts(sqlite3 *db, const struct store_forward_result *r)
{
	size_t i;
	int rc = SQLITE_OK;

	for (i = 0; i < r->nrcpts && rc == SQLITE_OK; i++)
		rc = store_alerts_recipient_failed(db, r->rcpt_ids[i],
		    "Mailgun rejected the message (not re-drivable)", r->now);
	return rc;
}

/* The record job.  Store thread. */
static int
store_forward_record_run(sqlite3 *db, struct store_job *job)
{
	struct store_forward_record_job *j =
	    (struct store_forward_record_job *)job;
	int rc;

	rc = store_forward_insert_attempt(db, &j->r);
	if (rc == SQLITE_OK)
		rc = store_forward_update_rcpts(db, j);
	/* A rejection's alerts commit with it (docs/alerts.md). */
	if (rc == SQLITE_OK && j->r.outcome == STORE_FORWARD_REJECT)
		rc = store_forward_alerts(db, &j->r);
	if (rc == SQLITE_OK)
		rc = store_forward_update_msg(db, &j->r);
	if (rc != SQLITE_OK) {
		log_error("store: recording a Mailgun request failed",
		    LF_INT("id", j->r.message_id),
		    LF_STR("error", sqlite3_errmsg(db)), LF_END);
		return store_sql_err(rc);
	}
	return 0;
}

static void
store_forward_record_free(struct store_forward_record_job *j)
{
	free(j->rcpt_ids);
	free(j->via);
	free(j->mailgun_id);
	free(j->result);
	free(j->text);
	free(j);
}

/* Tells the forwarder the record is on disk (or not).  Loop thread. */
static void
store_forward_record_done(struct store_job *job, int status)
{
	struct store_forward_record_job *j =
	    (struct store_forward_record_job *)job;

	j->cb(status, j->arg);
	store_forward_record_free(j);
}

/*
 * Builds "<status> <text>" (or the text alone without an HTTP status),
 * cut to STORE_FORWARD_TEXT_MAX bytes: last_error, and a failure's reason.
 */
static char *
store_forward_text(int http_status, const char *text)
{
	char *out = malloc(STORE_FORWARD_TEXT_MAX);

	if (out == NULL)
		return NULL;
	if (text == NULL || text[0] == '\0')
		text = http_status != 0 ? "(no text)" : "no answer";
	if (http_status != 0)
		(void)snprintf(
		    out, STORE_FORWARD_TEXT_MAX, "%d %s", http_status, text);
	else
		(void)snprintf(out, STORE_FORWARD_TEXT_MAX, "%s", text);
	return out;
}

/* strdup that keeps NULL; sets *bad on ENOMEM. */
static char *
store_forward_dup(const char *s, bool *bad)
{
	char *d;

	if (s == NULL)
		return NULL;
	d = strdup(s);
	if (d == NULL)
		*bad = true;
	return d;
}

int
store_forward_record(struct store *st, const struct store_forward_result *r,
    store_forward_record_cb cb, void *arg)
{
	struct store_forward_record_job *j;
	bool bad = false;
	int rc;

	if (st == NULL || r == NULL || cb == NULL || r->nrcpts == 0 ||
	    r->rcpt_ids == NULL || r->via == NULL ||
	    (strcmp(r->via, "mime") != 0 && strcmp(r->via, "storage") != 0) ||
	    (unsigned)r->outcome > (unsigned)STORE_FORWARD_REJECT ||
	    (r->outcome == STORE_FORWARD_OK &&
		(r->mailgun_id == NULL || r->mailgun_id[0] == '\0')))
		return -EINVAL;
	j = calloc(1, sizeof(*j));
	if (j == NULL)
		return -ENOMEM;
	j->r = *r;
	j->rcpt_ids = calloc(r->nrcpts, sizeof(*j->rcpt_ids));
	if (j->rcpt_ids != NULL)
		memcpy(
		    j->rcpt_ids, r->rcpt_ids, r->nrcpts * sizeof(*r->rcpt_ids));
	j->via = store_forward_dup(r->via, &bad);
	j->mailgun_id = store_forward_dup(r->mailgun_id, &bad);
	j->result = store_forward_dup(r->result, &bad);
	j->text = store_forward_text(r->http_status, r->result);
	if (j->rcpt_ids == NULL || j->text == NULL || bad) {
		store_forward_record_free(j);
		return -ENOMEM;
	}
	j->r.rcpt_ids = j->rcpt_ids;
	j->r.via = j->via;
	j->r.mailgun_id = j->mailgun_id;
	j->r.result = j->result;
	j->cb = cb;
	j->arg = arg;
	j->job.run = store_forward_record_run;
	j->job.done = store_forward_record_done;
	rc = store_job_submit(st, &j->job);
	if (rc != 0)
		store_forward_record_free(j);
	return rc;
}
