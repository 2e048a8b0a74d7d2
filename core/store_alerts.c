/*
 * store_alerts: the `alerts` table (schema migration 3; docs/alerts.md).
 *
 * store_alerts_recipient_failed() and store_alerts_message_failed() run on
 * the store thread inside the job that sets a recipient 'failed'
 * (store_events.c, store_forward.c), so the alert commits with the failure
 * or not at all: "every recipient that ends failed gets exactly one alert"
 * (DESIGN.md) holds across crashes.  The alert's text is composed here
 * from the store's own rows: the message, the recipient, every request
 * that carried it (attempts) and every event Mailgun reported for it.
 * The unique index on (recipient_id, sends) makes a second insert for the
 * same failure a no-op; a failure after `redrive retry` comes after a new
 * request, so it alerts again.
 *
 * The jobs of store_alerts.h serve the sender (core/alert.c): what is due
 * (with the failure-rate check in the same job), a try's outcome, and the
 * alerts raised from outside the store (the forwarder's pause).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "redrive/log.h"
#include "redrive/store.h"
#include "redrive/store_alerts.h"
#include "redrive/timeutil.h"
#include "store_int.h"

/* Lines of sends or events an alert lists at most. */
#define STORE_ALERTS_LINES 50
/* The most alerts one due job returns. */
#define STORE_ALERTS_MAX 1000

static const char store_alerts_rcpt_sql[] =
    "SELECT r.address, r.reason, r.message_id, m.message_id, m.subject,"
    " m.mail_from, m.received_at, (SELECT count(*) FROM attempt_rcpts"
    " WHERE recipient_id = r.id) FROM recipients r JOIN messages m"
    " ON m.id = r.message_id WHERE r.id = ?1 AND r.status = 'failed'";

static const char store_alerts_exists_sql[] =
    "SELECT 1 FROM alerts WHERE kind = 'recipient' AND recipient_id = ?1"
    " AND sends = ?2";

static const char store_alerts_sends_sql[] =
    "SELECT a.at, a.via, a.http_status, a.mailgun_id, a.result"
    " FROM attempts a JOIN attempt_rcpts ar ON ar.attempt_id = a.id"
    " WHERE ar.recipient_id = ?1 ORDER BY a.at, a.id LIMIT ?2";

static const char store_alerts_events_sql[] =
    "SELECT at, event, severity, reason, code, enhanced_code, message"
    " FROM events WHERE recipient_id = ?1 ORDER BY at, id LIMIT ?2";

static const char store_alerts_ins_sql[] =
    "INSERT OR IGNORE INTO alerts (kind, message_id, recipient_id, sends,"
    " created_at, subject, body, next_attempt_at)"
    " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?5)";

static const char store_alerts_due_sql[] =
    "SELECT id, kind, subject, body, attempts, channels_done FROM alerts"
    " INDEXED BY alerts_pending WHERE state = 'pending'"
    " AND (?1 OR next_attempt_at <= ?2) ORDER BY next_attempt_at, id"
    " LIMIT ?3";

static const char store_alerts_rate_sends_sql[] =
    "SELECT count(*) FROM attempts a JOIN attempt_rcpts ar"
    " ON ar.attempt_id = a.id WHERE a.at > ?1";

static const char store_alerts_rate_failed_sql[] =
    "SELECT count(*) FROM alerts WHERE kind = 'recipient'"
    " AND created_at > ?1";

static const char store_alerts_rate_last_sql[] =
    "SELECT count(*) FROM alerts WHERE kind = 'failure_rate'"
    " AND created_at > ?1";

static const char store_alerts_mark_sql[] =
    "UPDATE alerts SET channels_done = channels_done | ?2,"
    " attempts = attempts + 1, last_error = ?3,"
    " state = CASE WHEN ?4 THEN 'sent' ELSE state END,"
    " sent_at = CASE WHEN ?4 THEN ?5 ELSE sent_at END,"
    " next_attempt_at = ?6 WHERE id = ?1";

/* Runs a one-integer query with ?1 bound to a.  SQLite code. */
static int
store_alerts_count(sqlite3 *db, const char *sql, int64_t a, int64_t *out)
{
	sqlite3_stmt *st = NULL;
	int rc;

	*out = 0;
	rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_int64(st, 1, a);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		*out = sqlite3_column_int64(st, 0);
		rc = SQLITE_OK;
	} else if (rc == SQLITE_DONE)
		rc = SQLITE_OK;
	store_sql_give(st);
	return rc;
}

/* A column's text, "" for NULL. */
static const char *
store_alerts_col(sqlite3_stmt *st, int i)
{
	const unsigned char *s = sqlite3_column_text(st, i);

	return s != NULL ? (const char *)s : "";
}

/*
 * Writes s to f on one line: control characters (CR and LF included)
 * become spaces, so a text from Mailgun or a header cannot forge lines.
 */
static void
store_alerts_put(FILE *f, const char *s)
{
	for (; *s != '\0'; s++)
		fputc((unsigned char)*s < 0x20 || *s == 0x7f ? ' ' : *s, f);
}

/* Lists the requests that carried the recipient.  SQLite code. */
static int
store_alerts_list_sends(sqlite3 *db, int64_t rid, FILE *f)
{
	sqlite3_stmt *st = NULL;
	char when[40];
	int rc, n = 0;

	rc = sqlite3_prepare_v2(db, store_alerts_sends_sql, -1, &st, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_int64(st, 1, rid);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_int(st, 2, STORE_ALERTS_LINES);
	fputs("\nSends:\n", f);
	while (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		rc = SQLITE_OK;
		n++;
		fprintf(f, "  %s  via %s  ",
		    time_format_rfc3339(
			sqlite3_column_int64(st, 0), when, sizeof(when)),
		    store_alerts_col(st, 1));
		if (sqlite3_column_type(st, 2) != SQLITE_NULL)
			fprintf(f, "HTTP %d  ", sqlite3_column_int(st, 2));
		else
			fputs("no answer  ", f);
		store_alerts_put(f, store_alerts_col(st, 4));
		if (sqlite3_column_type(st, 3) != SQLITE_NULL) {
			fputs("  (Mailgun id ", f);
			store_alerts_put(f, store_alerts_col(st, 3));
			fputc(')', f);
		}
		fputc('\n', f);
	}
	if (n == 0)
		fputs("  (none)\n", f);
	store_sql_give(st);
	return rc == SQLITE_DONE || rc == SQLITE_ROW ? SQLITE_OK : rc;
}

/* Lists the events Mailgun reported for the recipient.  SQLite code. */
static int
store_alerts_list_events(sqlite3 *db, int64_t rid, FILE *f)
{
	sqlite3_stmt *st = NULL;
	char when[40];
	int rc, n = 0, i;

	rc = sqlite3_prepare_v2(db, store_alerts_events_sql, -1, &st, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_int64(st, 1, rid);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_int(st, 2, STORE_ALERTS_LINES);
	fputs("\nEvents:\n", f);
	while (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		rc = SQLITE_OK;
		n++;
		fprintf(f, "  %s  ",
		    time_format_rfc3339(
			sqlite3_column_int64(st, 0), when, sizeof(when)));
		/* event, severity, reason, code, enhanced code, text */
		for (i = 1; i <= 6; i++) {
			if (sqlite3_column_type(st, i) == SQLITE_NULL)
				continue;
			store_alerts_put(f, store_alerts_col(st, i));
			fputs(i < 6 ? " " : "", f);
		}
		fputc('\n', f);
	}
	if (n == 0)
		fputs("  (none)\n", f);
	store_sql_give(st);
	return rc == SQLITE_DONE || rc == SQLITE_ROW ? SQLITE_OK : rc;
}

/* Inserts one alert row (OR IGNORE: the unique index).  SQLite code. */
static int
store_alerts_insert(sqlite3 *db, const char *kind, int64_t mid, int64_t rid,
    int64_t sends, int64_t now, const char *subject, const char *body)
{
	sqlite3_stmt *st = NULL;
	int rc;

	rc = sqlite3_prepare_v2(db, store_alerts_ins_sql, -1, &st, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_text(st, 1, kind, -1, SQLITE_STATIC);
	if (rc == SQLITE_OK)
		rc = mid > 0 ? sqlite3_bind_int64(st, 2, mid)
			     : sqlite3_bind_null(st, 2);
	if (rc == SQLITE_OK)
		rc = rid > 0 ? sqlite3_bind_int64(st, 3, rid)
			     : sqlite3_bind_null(st, 3);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_int64(st, 4, sends);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_int64(st, 5, now);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_text(st, 6, subject, -1, SQLITE_TRANSIENT);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_text(st, 7, body, -1, SQLITE_TRANSIENT);
	if (rc == SQLITE_OK)
		rc = store_sql_exec(st);
	store_sql_give(st);
	return rc;
}

/* True when the recipient's alert for this many sends exists. */
static int
store_alerts_exists(sqlite3 *db, int64_t rid, int64_t sends, bool *found)
{
	sqlite3_stmt *st = NULL;
	int rc;

	*found = false;
	rc = sqlite3_prepare_v2(db, store_alerts_exists_sql, -1, &st, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_int64(st, 1, rid);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_int64(st, 2, sends);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		*found = true;
	store_sql_give(st);
	return rc == SQLITE_ROW || rc == SQLITE_DONE ? SQLITE_OK : rc;
}

/*
 * Writes the body of a recipient's alert (docs/alerts.md): the local id,
 * Message-ID, subject, sender, recipient, why redrive stopped, every send
 * with its answer, every event, and the command that sends it again.
 */
static int
store_alerts_compose(
    sqlite3 *db, int64_t rid, sqlite3_stmt *r, const char *why, FILE *f)
{
	char when[40];
	int64_t mid = (int64_t)sqlite3_column_int64(r, 2);
	int rc;

	fputs("redrive gave up on a recipient: it ended failed.\n\n", f);
	fprintf(f, "Local id:    %" PRId64 "\n", mid);
	fputs("Message-ID:  <", f);
	store_alerts_put(f, store_alerts_col(r, 3));
	fputs(">\nSubject:     ", f);
	store_alerts_put(f, store_alerts_col(r, 4));
	fputs("\nFrom:        ", f);
	store_alerts_put(f, store_alerts_col(r, 5));
	fprintf(f, "\nReceived:    %s\nRecipient:   ",
	    time_format_rfc3339(
		sqlite3_column_int64(r, 6), when, sizeof(when)));
	store_alerts_put(f, store_alerts_col(r, 0));
	fputs("\nReason:      ", f);
	store_alerts_put(f, store_alerts_col(r, 1));
	fputs("\nWhy stopped: ", f);
	store_alerts_put(f, why != NULL && why[0] != '\0' ? why : "-");
	fputc('\n', f);
	rc = store_alerts_list_sends(db, rid, f);
	if (rc == SQLITE_OK)
		rc = store_alerts_list_events(db, rid, f);
	fputs("\nTo send it again:\n  redrive retry ", f);
	fprintf(f, "%" PRId64 " --recipient ", mid);
	store_alerts_put(f, store_alerts_col(r, 0));
	fputc('\n', f);
	return rc;
}

int
store_alerts_recipient_failed(
    sqlite3 *db, int64_t recipient_id, const char *why, int64_t now)
{
	sqlite3_stmt *r = NULL;
	char *body = NULL, *subject = NULL;
	size_t len = 0;
	int64_t sends;
	bool found = false;
	FILE *f = NULL;
	int rc;

	rc = sqlite3_prepare_v2(db, store_alerts_rcpt_sql, -1, &r, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_int64(r, 1, recipient_id);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(r);
	if (rc == SQLITE_DONE) {
		/* Not failed (any more): nothing to say. */
		rc = SQLITE_OK;
		goto out;
	}
	if (rc != SQLITE_ROW)
		goto out;
	sends = sqlite3_column_int64(r, 7);
	rc = store_alerts_exists(db, recipient_id, sends, &found);
	if (rc != SQLITE_OK || found)
		goto out;
	f = open_memstream(&body, &len);
	if (f == NULL) {
		rc = SQLITE_NOMEM;
		goto out;
	}
	rc = store_alerts_compose(db, recipient_id, r, why, f);
	if (fclose(f) != 0 && rc == SQLITE_OK)
		rc = SQLITE_NOMEM;
	f = NULL;
	if (rc != SQLITE_OK)
		goto out;
	f = open_memstream(&subject, &len);
	if (f == NULL) {
		rc = SQLITE_NOMEM;
		goto out;
	}
	fputs("redrive: delivery to ", f);
	store_alerts_put(f, store_alerts_col(r, 0));
	fprintf(f, " failed (message %" PRId64 ")",
	    (int64_t)sqlite3_column_int64(r, 2));
	if (fclose(f) != 0)
		rc = SQLITE_NOMEM;
	f = NULL;
	if (rc == SQLITE_OK)
		rc = store_alerts_insert(db, "recipient",
		    sqlite3_column_int64(r, 2), recipient_id, sends, now,
		    subject, body);
out:
	store_sql_give(r);
	free(body);
	free(subject);
	return rc;
}

int
store_alerts_message_failed(
    sqlite3 *db, int64_t message_id, const char *why, int64_t now)
{
	sqlite3_stmt *st = NULL;
	int64_t ids[64];
	size_t n = 0, i;
	int64_t after = 0;
	int rc;

	/* In chunks: the alert's own statements must not run mid-walk. */
	for (;;) {
		n = 0;
		rc = sqlite3_prepare_v2(db,
		    "SELECT id FROM recipients WHERE message_id = ?1"
		    " AND status = 'failed' AND id > ?2 ORDER BY id LIMIT 64",
		    -1, &st, NULL);
		if (rc == SQLITE_OK)
			rc = sqlite3_bind_int64(st, 1, message_id);
		if (rc == SQLITE_OK)
			rc = sqlite3_bind_int64(st, 2, after);
		while (rc == SQLITE_OK && n < 64 &&
		    (rc = sqlite3_step(st)) == SQLITE_ROW) {
			rc = SQLITE_OK;
			ids[n++] = sqlite3_column_int64(st, 0);
		}
		if (rc == SQLITE_DONE || rc == SQLITE_ROW)
			rc = SQLITE_OK;
		store_sql_give(st);
		st = NULL;
		for (i = 0; i < n && rc == SQLITE_OK; i++)
			rc =
			    store_alerts_recipient_failed(db, ids[i], why, now);
		if (rc != SQLITE_OK || n < 64)
			return rc;
		after = ids[n - 1];
	}
}

/* ---- The sender's jobs ------------------------------------------------- */

struct store_alerts_job {
	struct store_job job;
	/* due */
	int64_t now;
	bool all;
	size_t max;
	int64_t *exclude;
	size_t nexclude;
	struct store_alerts_rate rate;
	struct store_alert_batch *batch;
	store_alerts_due_cb due_cb;
	/* mark and raise */
	int64_t id;
	unsigned done;
	bool sent;
	int64_t next_attempt_at;
	char *kind;
	char *text;
	char *subject;
	store_alerts_done_cb done_cb;
	void *arg;
};

static void
store_alerts_job_free(struct store_alerts_job *j)
{
	free(j->exclude);
	free(j->kind);
	free(j->text);
	free(j->subject);
	free(j);
}

void
store_alert_batch_free(struct store_alert_batch *b)
{
	size_t i;

	if (b == NULL)
		return;
	for (i = 0; i < b->n; i++) {
		free(b->items[i].kind);
		free(b->items[i].subject);
		free(b->items[i].body);
	}
	free(b->items);
	free(b);
}

/*
 * The failure-rate check: failed recipients (their alerts) over the
 * requests that carried recipients, both within the window.  SQLite code.
 */
static int
store_alerts_rate_check(sqlite3 *db, struct store_alerts_job *j)
{
	const struct store_alerts_rate *r = &j->rate;
	int64_t since = j->now - r->window_ms, sends = 0, failed = 0, last = 0;
	char subject[160], body[768], win[40];
	int rc;

	rc = store_alerts_count(db, store_alerts_rate_sends_sql, since, &sends);
	if (rc == SQLITE_OK)
		rc = store_alerts_count(
		    db, store_alerts_rate_failed_sql, since, &failed);
	if (rc != SQLITE_OK || sends <= 0 || sends < (int64_t)r->min ||
	    (double)failed <= r->rate * (double)sends)
		return rc;
	rc = store_alerts_count(db, store_alerts_rate_last_sql, since, &last);
	if (rc != SQLITE_OK || last > 0)
		return rc;
	(void)snprintf(subject, sizeof(subject),
	    "redrive: %" PRId64 " of %" PRId64 " sends failed recently", failed,
	    sends);
	(void)snprintf(body, sizeof(body),
	    "redrive's failure rate is above [alert] failure_rate.\n\n"
	    "Failed recipients: %" PRId64 "\n"
	    "Sends:             %" PRId64 "\n"
	    "Rate:              %.3f (threshold %.3f, at least %u sends)\n"
	    "Window:            %" PRId64 " s, since %s\n\n"
	    "See `redrive log --status failed --since %" PRId64 "s`.\n"
	    "This alert is raised at most once per window.\n",
	    failed, sends, (double)failed / (double)sends, r->rate, r->min,
	    r->window_ms / 1000, time_format_rfc3339(since, win, sizeof(win)),
	    (r->window_ms + 999) / 1000);
	rc = store_alerts_insert(
	    db, "failure_rate", 0, 0, 0, j->now, subject, body);
	if (rc == SQLITE_OK)
		j->batch->rate_raised = true;
	return rc;
}

static bool
store_alerts_excluded(const struct store_alerts_job *j, int64_t id)
{
	size_t i;

	for (i = 0; i < j->nexclude; i++)
		if (j->exclude[i] == id)
			return true;
	return false;
}

/* Dups a column into *out; SQLite code. */
static int
store_alerts_dup(sqlite3_stmt *st, int i, char **out)
{
	*out = strdup(store_alerts_col(st, i));
	return *out != NULL ? SQLITE_OK : SQLITE_NOMEM;
}

/* The due job.  Store thread. */
static int
store_alerts_due_run(sqlite3 *db, struct store_job *job)
{
	struct store_alerts_job *j = (struct store_alerts_job *)job;
	struct store_alert_batch *b;
	struct store_alert *a;
	sqlite3_stmt *st = NULL;
	int64_t v;
	int rc;

	/* An earlier run of this job (core/store.c) may have filled one. */
	store_alert_batch_free(j->batch);
	b = j->batch = calloc(1, sizeof(*b));
	if (b != NULL)
		b->items = calloc(j->max, sizeof(*b->items));
	if (b == NULL || b->items == NULL) {
		rc = SQLITE_NOMEM;
		goto out;
	}
	rc = SQLITE_OK;
	if (j->rate.window_ms > 0)
		rc = store_alerts_rate_check(db, j);
	if (rc == SQLITE_OK)
		rc =
		    sqlite3_prepare_v2(db, store_alerts_due_sql, -1, &st, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_int(st, 1, j->all ? 1 : 0);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_int64(st, 2, j->now);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_int64(
		    st, 3, (int64_t)j->max + (int64_t)j->nexclude);
	while (rc == SQLITE_OK && b->n < j->max &&
	    (rc = sqlite3_step(st)) == SQLITE_ROW) {
		rc = SQLITE_OK;
		v = sqlite3_column_int64(st, 0);
		if (store_alerts_excluded(j, v))
			continue;
		a = &b->items[b->n++];
		a->id = v;
		a->attempts = (unsigned)sqlite3_column_int(st, 4);
		a->channels_done = (unsigned)sqlite3_column_int(st, 5);
		rc = store_alerts_dup(st, 1, &a->kind);
		if (rc == SQLITE_OK)
			rc = store_alerts_dup(st, 2, &a->subject);
		if (rc == SQLITE_OK)
			rc = store_alerts_dup(st, 3, &a->body);
	}
	if (rc == SQLITE_DONE || rc == SQLITE_ROW)
		rc = SQLITE_OK;
	store_sql_give(st);
	st = NULL;
	if (rc == SQLITE_OK)
		rc = store_alerts_count(db,
		    "SELECT count(*) FROM alerts WHERE state = 'pending'"
		    " AND ?1 = ?1",
		    0, &v);
	if (rc == SQLITE_OK)
		b->pending = v > 0 ? (uint64_t)v : 0;
out:
	if (rc != SQLITE_OK) {
		log_error("store: reading the alerts failed",
		    LF_STR("error", sqlite3_errmsg(db)), LF_END);
		store_alert_batch_free(j->batch);
		j->batch = NULL;
		return store_sql_err(rc);
	}
	return 0;
}

static void
store_alerts_due_done(struct store_job *job, int status)
{
	struct store_alerts_job *j = (struct store_alerts_job *)job;
	struct store_alert_batch *b = j->batch;

	if (status != 0) {
		store_alert_batch_free(b);
		b = NULL;
	}
	j->due_cb(status, b, j->arg);
	store_alerts_job_free(j);
}

int
store_alerts_due(struct store *st, int64_t now, bool all, size_t max,
    const int64_t *exclude, size_t nexclude,
    const struct store_alerts_rate *rate, store_alerts_due_cb cb, void *arg)
{
	struct store_alerts_job *j;
	int rc;

	if (st == NULL || cb == NULL || max == 0 || max > STORE_ALERTS_MAX ||
	    nexclude > STORE_ALERTS_MAX || (nexclude > 0 && exclude == NULL))
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
	j->job.run = store_alerts_due_run;
	j->job.done = store_alerts_due_done;
	j->now = now;
	j->all = all;
	j->max = max;
	j->nexclude = nexclude;
	if (rate != NULL)
		j->rate = *rate;
	j->due_cb = cb;
	j->arg = arg;
	rc = store_job_submit(st, &j->job);
	if (rc != 0)
		store_alerts_job_free(j);
	return rc;
}

/* The mark job.  Store thread. */
static int
store_alerts_mark_run(sqlite3 *db, struct store_job *job)
{
	struct store_alerts_job *j = (struct store_alerts_job *)job;
	sqlite3_stmt *st = NULL;
	int rc;

	rc = sqlite3_prepare_v2(db, store_alerts_mark_sql, -1, &st, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_int64(st, 1, j->id);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_int(st, 2, (int)j->done);
	if (rc == SQLITE_OK)
		rc = j->text != NULL
		    ? sqlite3_bind_text(st, 3, j->text, -1, SQLITE_STATIC)
		    : sqlite3_bind_null(st, 3);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_int(st, 4, j->sent ? 1 : 0);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_int64(st, 5, j->now);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_int64(st, 6, j->next_attempt_at);
	if (rc == SQLITE_OK)
		rc = store_sql_exec(st);
	store_sql_give(st);
	if (rc != SQLITE_OK) {
		log_error("store: recording an alert failed",
		    LF_INT("alert", j->id), LF_STR("error", sqlite3_errmsg(db)),
		    LF_END);
		return store_sql_err(rc);
	}
	return 0;
}

/* The raise job.  Store thread. */
static int
store_alerts_raise_run(sqlite3 *db, struct store_job *job)
{
	struct store_alerts_job *j = (struct store_alerts_job *)job;
	int rc;

	rc = store_alerts_insert(
	    db, j->kind, 0, 0, 0, j->now, j->subject, j->text);
	if (rc != SQLITE_OK) {
		log_error("store: raising an alert failed",
		    LF_STR("kind", j->kind),
		    LF_STR("error", sqlite3_errmsg(db)), LF_END);
		return store_sql_err(rc);
	}
	return 0;
}

static void
store_alerts_simple_done(struct store_job *job, int status)
{
	struct store_alerts_job *j = (struct store_alerts_job *)job;

	if (j->done_cb != NULL)
		j->done_cb(status, j->arg);
	store_alerts_job_free(j);
}

int
store_alerts_mark(struct store *st, int64_t id, unsigned done, bool sent,
    int64_t now, int64_t next_attempt_at, const char *error,
    store_alerts_done_cb cb, void *arg)
{
	struct store_alerts_job *j;
	int rc;

	if (st == NULL || id <= 0)
		return -EINVAL;
	j = calloc(1, sizeof(*j));
	if (j == NULL)
		return -ENOMEM;
	if (error != NULL && (j->text = strdup(error)) == NULL) {
		free(j);
		return -ENOMEM;
	}
	j->job.run = store_alerts_mark_run;
	j->job.done = store_alerts_simple_done;
	j->id = id;
	j->done = done;
	j->sent = sent;
	j->now = now;
	j->next_attempt_at = next_attempt_at;
	j->done_cb = cb;
	j->arg = arg;
	rc = store_job_submit(st, &j->job);
	if (rc != 0)
		store_alerts_job_free(j);
	return rc;
}

int
store_alerts_raise(struct store *st, const char *kind, const char *subject,
    const char *body, int64_t now, store_alerts_done_cb cb, void *arg)
{
	struct store_alerts_job *j;
	int rc;

	if (st == NULL || kind == NULL || subject == NULL || body == NULL)
		return -EINVAL;
	j = calloc(1, sizeof(*j));
	if (j == NULL)
		return -ENOMEM;
	j->kind = strdup(kind);
	j->subject = strdup(subject);
	j->text = strdup(body);
	if (j->kind == NULL || j->subject == NULL || j->text == NULL) {
		store_alerts_job_free(j);
		return -ENOMEM;
	}
	j->job.run = store_alerts_raise_run;
	j->job.done = store_alerts_simple_done;
	j->now = now;
	j->done_cb = cb;
	j->arg = arg;
	rc = store_job_submit(st, &j->job);
	if (rc != 0)
		store_alerts_job_free(j);
	return rc;
}
