/*
 * store_events: the store jobs of the tracker (store_events.h): recording
 * a verified webhook event, the per-recipient state machine it drives, and
 * the durable re-drive schedule that tracker/redrive.c works through; and
 * `redrive retry`, the CLI's one write.
 *
 * store_event_apply() is one job, so one SAVEPOINT of the store thread's
 * group transaction: the token check, the correlation, the event row, the
 * token row and the recipient's new state commit together or not at all.
 * A token is therefore remembered only with its event (FACTS.md 3.8), and
 * a webhook that names no message of ours changes nothing, its token
 * included (FACTS.md 6.7).
 *
 * The state machine (DESIGN.md "Data flow", FACTS.md 3.6 and 3.9) orders
 * events by their own timestamp: recipients.last_event_at holds the
 * timestamp of the event that last set the status.  delivered wins unless
 * a later event already set the state; a temporary failure defers only a
 * recipient that is 'sent' or 'deferred', never one already delivered; a
 * terminal failure (the policy says re-drive or give up) newer than the
 * last one goes through the retry policy, so a delayed bounce after
 * 'delivered' counts, except for a recipient that is 'failed' (final until
 * a person retries it) or 'queued' (about to be sent again: that send's
 * events decide).  Everything else is recorded and changes nothing.  The
 * same event under another token (same event-data.id and name) is a
 * duplicate (FACTS.md 3.9).
 *
 * Ownership: each job owns copies of what it needs, except the event and
 * config of store_event_apply(), which the caller keeps alive until the
 * callback.  Statements come from the connection's cache (store_sql_take,
 * all SQL here is static text) and go back to it.  Nothing here logs from
 * the store thread but errors.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <sqlite3.h>

#include "redrive/config.h"
#include "redrive/log.h"
#include "redrive/policy.h"
#include "redrive/store.h"
#include "redrive/store_events.h"
#include "redrive/timeutil.h"
#include "redrive/webhook.h"
#include "store_int.h"

/* The longest reason or last_error written (Mailgun's text is cut). */
#define STORE_EVENTS_TEXT_MAX 1024
/* The most items one store_redrive_next() returns. */
#define STORE_REDRIVE_MAX 1000
/* A bare Mailgun id is never longer than an SMTP line (RFC 5322 2.1.1). */
#define STORE_EVENTS_ID_MAX 998

/* ---- SQL --------------------------------------------------------------- */

static const char store_events_msg_by_id_sql[] =
    "SELECT id FROM messages WHERE id = ?1";

/* Every id Mailgun gave the message: the first and each resend's. */
static const char store_events_msg_by_mgid_sql[] =
    "SELECT id FROM messages WHERE mailgun_id = ?1"
    " UNION SELECT message_id FROM attempts WHERE mailgun_id = ?1"
    " ORDER BY 1 DESC LIMIT 1";

/* The recipient whose send carried this id first, should two match. */
static const char store_events_rcpt_sql[] =
    "SELECT id, status, attempts, last_event_at FROM recipients"
    " WHERE message_id = ?1 AND address = ?2 COLLATE NOCASE"
    " ORDER BY (mailgun_id IS ?3) DESC, id LIMIT 1";

/*
 * The same event delivered under another token (FACTS.md 3.9: the dedup
 * key is also event-data.id with the event name; an id is unique only
 * within a day, hence the window around the event's own time).
 */
static const char store_events_seen_sql[] =
    "SELECT 1 FROM events WHERE message_id = ?1 AND event_id = ?2"
    " AND event = ?3 AND at BETWEEN ?4 - 86400000 AND ?4 + 86400000"
    " LIMIT 1";

static const char store_events_ins_event_sql[] =
    "INSERT INTO events (message_id, recipient_id, at, received_at, event,"
    " severity, reason, code, enhanced_code, message, mailgun_id, event_id,"
    " storage_url, source) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10,"
    " ?11, ?12, ?13, 'webhook')";

static const char store_events_ins_token_sql[] =
    "INSERT INTO webhook_tokens (token, digest, at) VALUES (?1, ?2, ?3)";

/* ?6 NULL keeps last_error. */
static const char store_events_set_state_sql[] =
    "UPDATE recipients SET status = ?2, last_event_at = ?3,"
    " next_attempt_at = ?4, reason = ?5,"
    " last_error = COALESCE(?6, last_error), updated_at = ?7 WHERE id = ?1";

/*
 * A message is finished once every recipient is delivered or failed, and
 * no longer once one of them is not (a delayed bounce re-driven, a retry).
 */
static const char store_events_finish_sql[] =
    "UPDATE messages SET finished_at = CASE WHEN EXISTS (SELECT 1 FROM"
    " recipients WHERE message_id = ?1 AND status NOT IN ('delivered',"
    " 'failed')) THEN NULL ELSE COALESCE(finished_at, ?2) END WHERE id = ?1";

static const char store_redrive_due_sql[] =
    "SELECT id, message_id, address, attempts, next_attempt_at"
    " FROM recipients INDEXED BY recipients_due WHERE status = 'retrying'"
    " AND (next_attempt_at IS NULL OR next_attempt_at <= ?1)"
    " ORDER BY next_attempt_at, id LIMIT ?2";

/* The recipient's own latest event with a URL first, then the message's. */
static const char store_redrive_url_sql[] =
    "SELECT storage_url FROM events WHERE message_id = ?1"
    " AND storage_url IS NOT NULL AND storage_url != ''"
    " ORDER BY (recipient_id IS ?2) DESC, at DESC, id DESC LIMIT 1";

static const char store_redrive_first_sql[] =
    "SELECT min(at) FROM attempts WHERE message_id = ?1"
    " AND mailgun_id IS NOT NULL";

/* Storage resends of a recipient since its last accepted send. */
static const char store_redrive_failures_sql[] =
    "SELECT count(*) FROM attempts a JOIN attempt_rcpts ar"
    " ON ar.attempt_id = a.id WHERE ar.recipient_id = ?1"
    " AND a.via = 'storage' AND a.mailgun_id IS NULL"
    " AND a.id > COALESCE((SELECT max(b.id) FROM attempts b"
    " JOIN attempt_rcpts br ON br.attempt_id = b.id"
    " WHERE br.recipient_id = ?1 AND b.mailgun_id IS NOT NULL), 0)";

static const char store_redrive_next_due_sql[] =
    "SELECT min(next_attempt_at) FROM recipients"
    " WHERE status = 'retrying' AND next_attempt_at > ?1";

static const char store_redrive_count_sql[] =
    "SELECT count(*) FROM recipients WHERE status = 'retrying'";

static const char store_redrive_requeue_sql[] =
    "UPDATE recipients SET status = 'queued', next_attempt_at = ?2,"
    " last_error = COALESCE(?3, last_error), updated_at = ?2"
    " WHERE id = ?1 AND status = 'retrying'";

static const char store_redrive_ins_attempt_sql[] =
    "INSERT INTO attempts (message_id, at, via, http_status, mailgun_id,"
    " result) VALUES (?1, ?2, 'storage', ?3, ?4, ?5)";

static const char store_redrive_ins_arcpt_sql[] =
    "INSERT OR IGNORE INTO attempt_rcpts (attempt_id, recipient_id)"
    " VALUES (?1, ?2)";

/*
 * An accepted resend counts whatever the recipient's state became while
 * it was in flight; only a recipient still 'retrying' becomes 'sent'.
 * The CASEs all see the row as it was.
 */
static const char store_redrive_ok_sql[] =
    "UPDATE recipients SET attempts = attempts + 1, mailgun_id = ?3,"
    " updated_at = ?2,"
    " next_attempt_at = CASE WHEN status = 'retrying' THEN NULL"
    "   ELSE next_attempt_at END,"
    " last_error = CASE WHEN status = 'retrying' THEN NULL"
    "   ELSE last_error END,"
    " status = CASE WHEN status = 'retrying' THEN 'sent' ELSE status END"
    " WHERE id = ?1";

static const char store_redrive_later_sql[] =
    "UPDATE recipients SET next_attempt_at = ?3, last_error = ?4,"
    " updated_at = ?2 WHERE id = ?1 AND status = 'retrying'";

static const char store_redrive_msg_id_sql[] =
    "UPDATE messages SET mailgun_id = ?2 WHERE id = ?1";

/* ---- Small helpers ----------------------------------------------------- */

/* Binds text, or SQL NULL for NULL and "" (absent in Mailgun's events). */
static int
store_events_bind_text(sqlite3_stmt *st, int i, const char *v)
{
	if (v == NULL || v[0] == '\0')
		return sqlite3_bind_null(st, i);
	return sqlite3_bind_text(st, i, v, -1, SQLITE_TRANSIENT);
}

/* Binds an integer, or SQL NULL for 0. */
static int
store_events_bind_opt(sqlite3_stmt *st, int i, int64_t v)
{
	if (v == 0)
		return sqlite3_bind_null(st, i);
	return sqlite3_bind_int64(st, i, v);
}

/*
 * Runs a statement that returns at most one integer: *out gets it, 0 for
 * no row or NULL, and *found whether a non-NULL value came (found may be
 * NULL).  Resets the statement.  SQLite code.
 */
static int
store_events_scalar(sqlite3_stmt *st, int64_t *out, bool *found)
{
	int rc;

	*out = 0;
	if (found != NULL)
		*found = false;
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		if (sqlite3_column_type(st, 0) != SQLITE_NULL) {
			*out = sqlite3_column_int64(st, 0);
			if (found != NULL)
				*found = true;
		}
		rc = SQLITE_OK;
	} else if (rc == SQLITE_DONE)
		rc = SQLITE_OK;
	sqlite3_reset(st);
	return rc;
}

/* Prepares sql, binds ?1 = a, and reads one integer.  SQLite code. */
static int
store_events_scalar_id(
    sqlite3 *db, const char *sql, int64_t a, int64_t *out, bool *found)
{
	sqlite3_stmt *st = NULL;
	int rc;

	*out = 0;
	if (found != NULL)
		*found = false;
	rc = store_sql_take(db, sql, &st);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_int64(st, 1, a);
	if (rc == SQLITE_OK)
		rc = store_events_scalar(st, out, found);
	store_sql_give(st);
	return rc;
}

/* Copies a text column into a malloc'd string; NULL for SQL NULL. */
static int
store_events_column_dup(sqlite3_stmt *st, int col, char **out)
{
	const unsigned char *p;

	*out = NULL;
	if (sqlite3_column_type(st, col) == SQLITE_NULL)
		return SQLITE_OK;
	p = sqlite3_column_text(st, col);
	if (p == NULL)
		return SQLITE_NOMEM;
	*out = strdup((const char *)p);
	return *out != NULL ? SQLITE_OK : SQLITE_NOMEM;
}

/* strdup that keeps NULL; sets *bad on ENOMEM. */
static char *
store_events_dup(const char *s, bool *bad)
{
	char *d;

	if (s == NULL)
		return NULL;
	d = strdup(s);
	if (d == NULL)
		*bad = true;
	return d;
}

/*
 * Writes what a failure said, for reason and last_error: "REASON: CODE
 * ENHANCED MESSAGE" with the absent parts left out, e.g. "bounce: 550
 * 5.1.1 No such user"; the head is the reason, else the severity, else
 * the event name.
 */
static void
store_events_text(const struct webhook_event *ev, char *buf, size_t len)
{
	const char *head;
	size_t n;
	int w;

	head = ev->reason != NULL && ev->reason[0] != '\0'    ? ev->reason
	    : ev->severity != NULL && ev->severity[0] != '\0' ? ev->severity
							      : ev->event;
	w = snprintf(buf, len, "%s", head != NULL ? head : "failed");
	n = w < 0 ? 0 : (size_t)w;
	if (n < len &&
	    (ev->code > 0 ||
		(ev->enhanced_code != NULL && ev->enhanced_code[0] != '\0') ||
		(ev->status_message != NULL &&
		    ev->status_message[0] != '\0'))) {
		w = snprintf(buf + n, len - n, ":");
		n += w < 0 ? 0 : (size_t)w;
	}
	if (n < len && ev->code > 0) {
		w = snprintf(buf + n, len - n, " %d", ev->code);
		n += w < 0 ? 0 : (size_t)w;
	}
	/* Mailgun's text often starts with the enhanced code: say it once. */
	if (n < len && ev->enhanced_code != NULL &&
	    ev->enhanced_code[0] != '\0' &&
	    (ev->status_message == NULL ||
		strncmp(ev->status_message, ev->enhanced_code,
		    strlen(ev->enhanced_code)) != 0)) {
		w = snprintf(buf + n, len - n, " %s", ev->enhanced_code);
		n += w < 0 ? 0 : (size_t)w;
	}
	if (n < len && ev->status_message != NULL &&
	    ev->status_message[0] != '\0')
		(void)snprintf(buf + n, len - n, " %s", ev->status_message);
}

/*
 * The bare form of a Mailgun id as the event carries it: blanks and one
 * pair of angle brackets removed (FACTS.md 6.8: the API answers <id>,
 * webhooks carry id).  Writes at most len bytes; false when nothing is
 * left or it does not fit.
 */
static bool
store_events_bare_id(const char *s, char *out, size_t len)
{
	const char *p, *e;

	if (s == NULL)
		return false;
	p = s;
	e = s + strlen(s);
	while (p < e && (*p == ' ' || *p == '\t'))
		p++;
	while (e > p && (e[-1] == ' ' || e[-1] == '\t'))
		e--;
	if (e - p >= 2 && *p == '<' && e[-1] == '>') {
		p++;
		e--;
	}
	if (e == p || (size_t)(e - p) >= len)
		return false;
	memcpy(out, p, (size_t)(e - p));
	out[e - p] = '\0';
	return true;
}

/* ---- Recording an event ------------------------------------------------ */

/* The job of store_event_apply(). */
struct store_event_job {
	struct store_job job;
	const struct webhook_event *ev;
	const struct config *cfg;
	struct store_tokens *tokens; /* the store thread's token set */
	int64_t now;
	int64_t at;			    /* the event's timestamp, or now */
	char mgid[STORE_EVENTS_ID_MAX + 1]; /* bare; "" when none */
	store_event_cb cb;
	void *arg;
	struct store_event_result res;
};

/* The recipient an event names, as it stood before the event. */
struct store_events_rcpt {
	int64_t id;
	char status[16];
	int attempts;
	int64_t last_event_at;
	bool has_last; /* last_event_at is set */
};

/*
 * Looks the token up in the store thread's token set (core/store_tokens.c),
 * filled from webhook_tokens by the first event after the daemon started:
 * sets *known and the outcome (DUPLICATE when the digest is the same,
 * MISMATCH when not).  Tokens that arrived more than twice
 * timestamp_window ago are let go first: a signature is fresh while its
 * timestamp is within a window either side of now, so no webhook can
 * come back fresh after that.  SQLite code.
 */
static int
store_events_token(sqlite3 *db, struct store_event_job *j, bool *known)
{
	int64_t keep = 2 * j->cfg->tracker.timestamp_window_ms;
	int64_t since = j->now > keep ? j->now - keep : 0;
	int64_t t0;
	int rc;

	*known = false;
	if (!store_tokens_loaded(j->tokens)) {
		t0 = time_mono_ms();
		rc = store_tokens_load(j->tokens, db, since);
		if (rc != SQLITE_OK)
			return rc;
		log_info("webhook tokens read back from the store",
		    LF_UINT("tokens", store_tokens_count(j->tokens)),
		    LF_UINT("bytes", store_tokens_bytes(j->tokens)),
		    LF_INT("ms", time_mono_ms() - t0), LF_END);
	}
	store_tokens_expire(j->tokens, since);
	switch (store_tokens_find(j->tokens, j->ev->token, j->ev->digest)) {
	case STORE_TOKENS_SAME:
		*known = true;
		j->res.outcome = STORE_EVENT_DUPLICATE;
		break;
	case STORE_TOKENS_OTHER:
		*known = true;
		j->res.outcome = STORE_EVENT_MISMATCH;
		break;
	case STORE_TOKENS_NEW:
		break;
	}
	return SQLITE_OK;
}

/*
 * Correlates the event with a message (FACTS.md 6.7): by the redrive-id
 * user variable when that message exists, else by the Mailgun id of any
 * send of a message.  *id is 0 when nothing matches.  SQLite code.
 */
static int
store_events_find_message(sqlite3 *db, struct store_event_job *j, int64_t *id)
{
	sqlite3_stmt *st = NULL;
	int rc;

	*id = 0;
	if (j->ev->redrive_id > 0) {
		rc = store_events_scalar_id(db, store_events_msg_by_id_sql,
		    j->ev->redrive_id, id, NULL);
		if (rc != SQLITE_OK || *id != 0)
			return rc;
	}
	if (j->mgid[0] == '\0')
		return SQLITE_OK;
	rc = store_sql_take(db, store_events_msg_by_mgid_sql, &st);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_text(st, 1, j->mgid, -1, SQLITE_STATIC);
	if (rc == SQLITE_OK)
		rc = store_events_scalar(st, id, NULL);
	store_sql_give(st);
	return rc;
}

/*
 * Finds the recipient of message mid the event names, by address with
 * ASCII case ignored.  r->id is 0 when there is none.  SQLite code.
 */
static int
store_events_find_rcpt(sqlite3 *db, const struct store_event_job *j,
    int64_t mid, struct store_events_rcpt *r)
{
	sqlite3_stmt *st = NULL;
	const unsigned char *s;
	int rc;

	memset(r, 0, sizeof(*r));
	if (j->ev->recipient == NULL || j->ev->recipient[0] == '\0')
		return SQLITE_OK;
	rc = store_sql_take(db, store_events_rcpt_sql, &st);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_int64(st, 1, mid);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_text(
		    st, 2, j->ev->recipient, -1, SQLITE_STATIC);
	if (rc == SQLITE_OK)
		rc = store_events_bind_text(st, 3, j->mgid);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		r->id = sqlite3_column_int64(st, 0);
		s = sqlite3_column_text(st, 1);
		(void)snprintf(r->status, sizeof(r->status), "%s",
		    s != NULL ? (const char *)s : "");
		r->attempts = sqlite3_column_int(st, 2);
		r->has_last = sqlite3_column_type(st, 3) != SQLITE_NULL;
		r->last_event_at = sqlite3_column_int64(st, 3);
		rc = SQLITE_OK;
	} else if (rc == SQLITE_DONE)
		rc = SQLITE_OK;
	store_sql_give(st);
	return rc;
}

/*
 * Sets *seen when message mid already has this event (same event id and
 * name, within a day of it).  SQLite code.
 */
static int
store_events_seen(
    sqlite3 *db, const struct store_event_job *j, int64_t mid, bool *seen)
{
	sqlite3_stmt *st = NULL;
	int64_t v = 0;
	int rc;

	*seen = false;
	if (j->ev->event_id == NULL || j->ev->event_id[0] == '\0')
		return SQLITE_OK;
	rc = store_sql_take(db, store_events_seen_sql, &st);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_int64(st, 1, mid);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_text(
		    st, 2, j->ev->event_id, -1, SQLITE_STATIC);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_text(st, 3, j->ev->event, -1, SQLITE_STATIC);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_int64(st, 4, j->at);
	if (rc == SQLITE_OK)
		rc = store_events_scalar(st, &v, seen);
	store_sql_give(st);
	return rc;
}

/* Remembers the token with the digest of its event.  SQLite code. */
static int
store_events_insert_token(sqlite3 *db, const struct store_event_job *j)
{
	sqlite3_stmt *st = NULL;
	int rc;

	rc = store_sql_take(db, store_events_ins_token_sql, &st);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_text(st, 1, j->ev->token, -1, SQLITE_STATIC);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_text(st, 2, j->ev->digest, -1, SQLITE_STATIC);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_int64(st, 3, j->now);
	if (rc == SQLITE_OK)
		rc = store_sql_exec(st);
	store_sql_give(st);
	if (rc == SQLITE_OK &&
	    store_tokens_add(j->tokens, j->ev->token, j->ev->digest, j->now) !=
		0)
		rc = SQLITE_NOMEM;
	return rc;
}

/* Inserts the event row and the token row.  SQLite code. */
static int
store_events_insert(
    sqlite3 *db, const struct store_event_job *j, int64_t mid, int64_t rid)
{
	const struct webhook_event *ev = j->ev;
	sqlite3_stmt *st = NULL;
	int rc;

	rc = store_sql_take(db, store_events_ins_event_sql, &st);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_int64(st, 1, mid);
	if (rc == SQLITE_OK)
		rc = store_events_bind_opt(st, 2, rid);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_int64(st, 3, j->at);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_int64(st, 4, j->now);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_text(st, 5, ev->event, -1, SQLITE_STATIC);
	if (rc == SQLITE_OK)
		rc = store_events_bind_text(st, 6, ev->severity);
	if (rc == SQLITE_OK)
		rc = store_events_bind_text(st, 7, ev->reason);
	if (rc == SQLITE_OK)
		rc = store_events_bind_opt(st, 8, ev->code);
	if (rc == SQLITE_OK)
		rc = store_events_bind_text(st, 9, ev->enhanced_code);
	if (rc == SQLITE_OK)
		rc = store_events_bind_text(st, 10, ev->status_message);
	if (rc == SQLITE_OK)
		rc = store_events_bind_text(st, 11, j->mgid);
	if (rc == SQLITE_OK)
		rc = store_events_bind_text(st, 12, ev->event_id);
	if (rc == SQLITE_OK)
		rc = store_events_bind_text(st, 13, ev->storage_url);
	if (rc == SQLITE_OK)
		rc = store_sql_exec(st);
	store_sql_give(st);
	if (rc != SQLITE_OK)
		return rc;
	return store_events_insert_token(db, j);
}

/* A new state for a recipient, as store_events_set_state() writes it. */
struct store_events_state {
	const char *status;
	int64_t next_attempt_at; /* 0: NULL */
	const char *reason;	 /* NULL: cleared */
	const char *last_error;	 /* NULL: kept */
};

/*
 * Writes the recipient's new state, timed by the event, and puts the new
 * status in the result.  SQLite code.
 */
static int
store_events_set_state(sqlite3 *db, struct store_event_job *j, int64_t rid,
    const struct store_events_state *s)
{
	sqlite3_stmt *st = NULL;
	int rc;

	rc = store_sql_take(db, store_events_set_state_sql, &st);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_int64(st, 1, rid);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_text(st, 2, s->status, -1, SQLITE_STATIC);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_int64(st, 3, j->at);
	if (rc == SQLITE_OK)
		rc = store_events_bind_opt(st, 4, s->next_attempt_at);
	if (rc == SQLITE_OK)
		rc = store_events_bind_text(st, 5, s->reason);
	if (rc == SQLITE_OK)
		rc = store_events_bind_text(st, 6, s->last_error);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_int64(st, 7, j->now);
	if (rc == SQLITE_OK)
		rc = store_sql_exec(st);
	store_sql_give(st);
	if (rc == SQLITE_OK)
		(void)snprintf(
		    j->res.status, sizeof(j->res.status), "%s", s->status);
	return rc;
}

/*
 * A terminal failure newer than the recipient's last event: the retry
 * policy's verdict.  REDRIVE while the recipient's sends are fewer than
 * max_attempts schedules the next re-drive backoff(n) after the failure,
 * n being the sends so far (the n-th re-drive follows the n-th send);
 * otherwise the recipient fails with the failure's text as its reason.
 * Fills s (whose strings point into text and reason) and the result.
 */
static void
store_events_terminal(struct store_event_job *j,
    const struct store_events_rcpt *r, enum policy_decision d, const char *text,
    char *reason, size_t reasonlen, struct store_events_state *s)
{
	struct store_event_result *res = &j->res;
	unsigned max = j->cfg->retry.max_attempts;
	unsigned n = r->attempts > 0 ? (unsigned)r->attempts : 1;
	int64_t delay;
	char why[sizeof(res->why) + 64];

	s->last_error = text;
	if (d == POLICY_REDRIVE && (unsigned)r->attempts < max) {
		delay = policy_backoff_ms(j->cfg, n);
		s->status = "retrying";
		s->next_attempt_at =
		    delay > INT64_MAX - j->at ? INT64_MAX : j->at + delay;
		s->reason = text;
		res->next_attempt_at = s->next_attempt_at;
		return;
	}
	s->status = "failed";
	s->next_attempt_at = 0;
	if (d == POLICY_REDRIVE) {
		(void)snprintf(reason, reasonlen, "gave up after %d send%s: %s",
		    r->attempts, r->attempts == 1 ? "" : "s", text);
		(void)snprintf(why, sizeof(why), "max_attempts %u reached; %s",
		    max, res->why);
		(void)snprintf(res->why, sizeof(res->why), "%.*s",
		    (int)sizeof(res->why) - 1, why);
		res->decision = POLICY_GIVE_UP;
		s->reason = reason;
	} else
		s->reason = text;
	res->gave_up = true;
}

/*
 * The state machine of one event for recipient r (DESIGN.md "Data flow";
 * FACTS.md 3.9).  Sets *changed when it wrote a new state.  SQLite code.
 */
static int
store_events_transition(sqlite3 *db, struct store_event_job *j,
    const struct store_events_rcpt *r, bool *changed)
{
	const struct webhook_event *ev = j->ev;
	struct store_event_result *res = &j->res;
	struct store_events_state s;
	enum policy_decision d;
	char text[STORE_EVENTS_TEXT_MAX], reason[STORE_EVENTS_TEXT_MAX + 64];
	bool not_older, newer;
	int rc;

	*changed = false;
	memset(&s, 0, sizeof(s));
	/* The status afterwards: r's, unless set_state writes a new one. */
	(void)snprintf(res->status, sizeof(res->status), "%s", r->status);
	not_older = !r->has_last || j->at >= r->last_event_at;
	newer = !r->has_last || j->at > r->last_event_at;

	if (strcasecmp(ev->event, "delivered") == 0) {
		if (!not_older) {
			(void)snprintf(res->why, sizeof(res->why),
			    "delivered, older than the recipient's last "
			    "event: recorded only");
			return SQLITE_OK;
		}
		s.status = "delivered";
		*changed = true;
		return store_events_set_state(db, j, r->id, &s);
	}
	if (strcasecmp(ev->event, "failed") != 0)
		return SQLITE_OK;

	d = policy_decide(j->cfg, ev, res->why, sizeof(res->why));
	res->decision = d;
	store_events_text(ev, text, sizeof(text));
	if (d == POLICY_WAIT) {
		/* FACTS.md 3.6: Mailgun still retries; not after delivered. */
		if (!not_older ||
		    (strcmp(r->status, "sent") != 0 &&
			strcmp(r->status, "deferred") != 0))
			return SQLITE_OK;
		s.status = "deferred";
		s.last_error = text;
		*changed = true;
		return store_events_set_state(db, j, r->id, &s);
	}
	if (d != POLICY_REDRIVE && d != POLICY_GIVE_UP)
		return SQLITE_OK;
	/*
	 * A failed recipient is final (its alert went out) until a person
	 * retries it; a queued one is about to be sent again, and that
	 * send's own events will decide.
	 */
	if (!newer || strcmp(r->status, "failed") == 0 ||
	    strcmp(r->status, "queued") == 0) {
		(void)snprintf(res->why, sizeof(res->why),
		    "terminal failure %s while %s: recorded only",
		    newer ? "arrived" : "older than the last event", r->status);
		return SQLITE_OK;
	}
	store_events_terminal(j, r, d, text, reason, sizeof(reason), &s);
	*changed = true;
	rc = store_events_set_state(db, j, r->id, &s);
	/* The alert commits with the failure (docs/alerts.md). */
	if (rc == SQLITE_OK && strcmp(s.status, "failed") == 0)
		rc = store_alerts_recipient_failed(db, r->id, res->why, j->now);
	return rc;
}

/* Sets or clears messages.finished_at after a recipient moved. */
static int
store_events_finish(sqlite3 *db, int64_t mid, int64_t now)
{
	sqlite3_stmt *st = NULL;
	int rc;

	rc = store_sql_take(db, store_events_finish_sql, &st);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_int64(st, 1, mid);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_int64(st, 2, now);
	if (rc == SQLITE_OK)
		rc = store_sql_exec(st);
	store_sql_give(st);
	return rc;
}

/*
 * The event job: token, correlation, event and token rows, the state
 * machine, the message's end.  Store thread.
 */
/* Delivered and failed events move a recipient's state; others do not. */
static bool
store_events_moves_state(const struct webhook_event *ev)
{
	return ev->event != NULL &&
	    (strcmp(ev->event, "delivered") == 0 ||
		strcmp(ev->event, "failed") == 0);
}

/*
 * Whether the event's Mailgun id is that of a send of message mid already
 * recorded.  An event without an id cannot be checked and counts as known.
 * SQLite code.
 */
static int
store_events_send_known(
    sqlite3 *db, const struct store_event_job *j, int64_t mid, bool *known)
{
	sqlite3_stmt *st = NULL;
	int64_t one = 0;
	int rc;

	*known = true;
	if (j->mgid[0] == '\0')
		return SQLITE_OK;
	rc = store_sql_take(db,
	    "SELECT 1 FROM attempts WHERE message_id = ?1 AND mailgun_id = ?2"
	    " LIMIT 1",
	    &st);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_int64(st, 1, mid);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_text(st, 2, j->mgid, -1, SQLITE_STATIC);
	if (rc == SQLITE_OK)
		rc = store_events_scalar(st, &one, known);
	store_sql_give(st);
	return rc;
}

/*
 * Whether a recipient of message mid is queued or retrying: a send of it
 * may be at Mailgun with its answer not recorded yet.  SQLite code.
 */
static int
store_events_in_flight(sqlite3 *db, int64_t mid, bool *yes)
{
	int64_t one = 0;

	return store_events_scalar_id(db,
	    "SELECT 1 FROM recipients WHERE message_id = ?1"
	    " AND status IN ('queued', 'retrying') LIMIT 1",
	    mid, &one, yes);
}

static int
store_event_run(sqlite3 *db, struct store_job *job)
{
	struct store_event_job *j = (struct store_event_job *)job;
	struct store_event_result *res = &j->res;
	struct store_events_rcpt r;
	bool known = false, changed = false, seen = false;
	int64_t mid = 0;
	int rc;

	memset(res, 0, sizeof(*res));
	memset(&r, 0, sizeof(r));
	res->outcome = STORE_EVENT_RECORDED;
	rc = store_events_token(db, j, &known);
	if (rc != SQLITE_OK || known)
		goto out;
	rc = store_events_find_message(db, j, &mid);
	if (rc != SQLITE_OK)
		goto out;
	if (mid == 0) {
		res->outcome = STORE_EVENT_UNKNOWN;
		goto out;
	}
	res->message_id = mid;
	if (store_events_moves_state(j->ev)) {
		rc = store_events_send_known(db, j, mid, &seen);
		if (rc != SQLITE_OK)
			goto out;
		if (!seen) {
			rc = store_events_in_flight(db, mid, &seen);
			if (rc != SQLITE_OK)
				goto out;
			if (seen) {
				/*
				 * The event is about a send whose acceptance
				 * is not committed yet (the webhook beat our
				 * record of Mailgun's answer): a recipient is
				 * still queued or retrying.  Recording it now
				 * would let that record overwrite its state:
				 * answer 503 and let Mailgun bring it again.
				 * Nothing is stored.
				 */
				res->outcome = STORE_EVENT_EARLY;
				goto out;
			}
			/*
			 * No send of the message waits for its record and
			 * none recorded has this id: the event is about a
			 * copy Mailgun accepted while we never learned it (a
			 * timeout, a kill before the commit) and the message
			 * was sent again.  Kept for the record, without a
			 * change of state (the recorded send's own events
			 * decide): a 503 would only bring it back for hours.
			 */
			res->outcome = STORE_EVENT_OTHER_COPY;
			rc = store_events_find_rcpt(db, j, mid, &r);
			if (rc == SQLITE_OK)
				rc = store_events_insert(db, j, mid, r.id);
			res->recipient_id = r.id;
			goto out;
		}
		seen = false;
	}
	rc = store_events_seen(db, j, mid, &seen);
	if (rc == SQLITE_OK && seen) {
		/* Recorded already: only this token is new. */
		res->outcome = STORE_EVENT_DUPLICATE;
		rc = store_events_insert_token(db, j);
		goto out;
	}
	if (rc == SQLITE_OK)
		rc = store_events_find_rcpt(db, j, mid, &r);
	if (rc == SQLITE_OK)
		rc = store_events_insert(db, j, mid, r.id);
	if (rc != SQLITE_OK || r.id == 0)
		goto out;
	res->recipient_id = r.id;
	rc = store_events_transition(db, j, &r, &changed);
	if (rc == SQLITE_OK && changed)
		rc = store_events_finish(db, mid, j->now);
	res->changed = changed;
out:
	if (rc != SQLITE_OK) {
		log_error("store: recording a webhook event failed",
		    LF_INT("id", mid), LF_STR("error", sqlite3_errmsg(db)),
		    LF_END);
		return store_sql_err(rc);
	}
	return 0;
}

/* Hands the result to the tracker.  Loop thread. */
static void
store_event_done(struct store_job *job, int status)
{
	struct store_event_job *j = (struct store_event_job *)job;

	j->cb(status, status == 0 ? &j->res : NULL, j->arg);
	free(j);
}

int
store_event_apply(struct store *st, const struct webhook_event *ev,
    const struct config *cfg, int64_t now, store_event_cb cb, void *arg)
{
	struct store_event_job *j;
	int rc;

	if (st == NULL || ev == NULL || cfg == NULL || cb == NULL ||
	    ev->token == NULL || ev->token[0] == '\0' || ev->event == NULL)
		return -EINVAL;
	j = calloc(1, sizeof(*j));
	if (j == NULL)
		return -ENOMEM;
	j->job.run = store_event_run;
	j->job.done = store_event_done;
	j->ev = ev;
	j->cfg = cfg;
	j->tokens = store_tokens_of(st);
	j->now = now;
	j->at = ev->at > 0 ? ev->at : now;
	if (!store_events_bare_id(ev->message_id, j->mgid, sizeof(j->mgid)))
		j->mgid[0] = '\0';
	j->cb = cb;
	j->arg = arg;
	rc = store_job_submit(st, &j->job);
	if (rc != 0)
		free(j);
	return rc;
}

/* ---- The re-drive schedule --------------------------------------------- */

/* The job of store_redrive_next(). */
struct store_redrive_next_job {
	struct store_job job;
	int64_t now;
	size_t max;
	int64_t *exclude;
	size_t nexclude;
	store_redrive_next_cb cb;
	void *arg;
	struct store_redrive_batch *batch;
};

static void
store_redrive_item_clear(struct store_redrive_item *it)
{
	free(it->address);
	free(it->storage_url);
	memset(it, 0, sizeof(*it));
}

void
store_redrive_batch_free(struct store_redrive_batch *b)
{
	size_t i;

	if (b == NULL)
		return;
	for (i = 0; i < b->nitems; i++)
		store_redrive_item_clear(&b->items[i]);
	free(b->items);
	free(b);
}

/* True when id is one of the job's excluded (in-flight) recipients. */
static bool
store_redrive_excluded(const struct store_redrive_next_job *j, int64_t id)
{
	size_t i;

	for (i = 0; i < j->nexclude; i++)
		if (j->exclude[i] == id)
			return true;
	return false;
}

/* Fills in the storage URL, first acceptance and failures.  SQLite code. */
static int
store_redrive_fill(sqlite3 *db, struct store_redrive_item *it)
{
	sqlite3_stmt *st = NULL;
	int64_t v = 0;
	int rc;

	rc = store_sql_take(db, store_redrive_url_sql, &st);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_int64(st, 1, it->message_id);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_int64(st, 2, it->recipient_id);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		rc = store_events_column_dup(st, 0, &it->storage_url);
	else if (rc == SQLITE_DONE)
		rc = SQLITE_OK;
	store_sql_give(st);
	if (rc == SQLITE_OK)
		rc = store_events_scalar_id(db, store_redrive_first_sql,
		    it->message_id, &it->first_accepted_at, NULL);
	if (rc == SQLITE_OK)
		rc = store_events_scalar_id(
		    db, store_redrive_failures_sql, it->recipient_id, &v, NULL);
	if (v < 0)
		v = 0;
	it->failures = v > (int64_t)UINT32_MAX ? UINT32_MAX : (unsigned)v;
	return rc;
}

/*
 * Collects the due recipients (the walk first: filling runs other
 * statements), then fills each, then the next due time and the count.
 * Store thread.
 */
static int
store_redrive_next_run(sqlite3 *db, struct store_job *job)
{
	struct store_redrive_next_job *j = (struct store_redrive_next_job *)job;
	struct store_redrive_batch *b;
	struct store_redrive_item *it;
	sqlite3_stmt *st = NULL;
	int64_t v = 0, limit;
	size_t i;
	int rc;

	/* An earlier run of this job (core/store.c) may have filled one. */
	store_redrive_batch_free(j->batch);
	b = j->batch = calloc(1, sizeof(*j->batch));
	if (b != NULL)
		b->items = calloc(j->max, sizeof(*b->items));
	if (b == NULL || b->items == NULL) {
		rc = SQLITE_NOMEM;
		goto out;
	}
	limit = (int64_t)j->max + (int64_t)j->nexclude;
	rc = store_sql_take(db, store_redrive_due_sql, &st);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_int64(st, 1, j->now);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_int64(st, 2, limit);
	if (rc != SQLITE_OK)
		goto out;
	while (b->nitems < j->max && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		v = sqlite3_column_int64(st, 0);
		if (store_redrive_excluded(j, v))
			continue;
		it = &b->items[b->nitems];
		it->recipient_id = v;
		it->message_id = sqlite3_column_int64(st, 1);
		it->attempts = sqlite3_column_int(st, 3);
		it->next_attempt_at = sqlite3_column_int64(st, 4);
		rc = store_events_column_dup(st, 2, &it->address);
		if (rc == SQLITE_OK && it->address == NULL)
			it->address = strdup("");
		if (it->address == NULL) {
			rc = SQLITE_NOMEM;
			goto out;
		}
		b->nitems++;
	}
	if (rc != SQLITE_DONE && rc != SQLITE_ROW && rc != SQLITE_OK)
		goto out;
	store_sql_give(st);
	st = NULL;

	rc = SQLITE_OK;
	for (i = 0; i < b->nitems && rc == SQLITE_OK; i++)
		rc = store_redrive_fill(db, &b->items[i]);
	if (rc == SQLITE_OK)
		rc = store_events_scalar_id(
		    db, store_redrive_next_due_sql, j->now, &b->next_due, NULL);
	if (rc == SQLITE_OK)
		rc = store_sql_take(db, store_redrive_count_sql, &st);
	if (rc == SQLITE_OK)
		rc = store_events_scalar(st, &v, NULL);
	if (rc == SQLITE_OK)
		b->retrying = v > 0 ? (uint64_t)v : 0;
out:
	store_sql_give(st);
	if (rc != SQLITE_OK) {
		log_error("store: reading the re-drive schedule failed",
		    LF_STR("error", sqlite3_errmsg(db)), LF_END);
		store_redrive_batch_free(j->batch);
		j->batch = NULL;
		return store_sql_err(rc);
	}
	return 0;
}

/* Hands the batch to the scheduler.  Loop thread. */
static void
store_redrive_next_done(struct store_job *job, int status)
{
	struct store_redrive_next_job *j = (struct store_redrive_next_job *)job;
	struct store_redrive_batch *b = j->batch;

	if (status != 0) {
		store_redrive_batch_free(b);
		b = NULL;
	}
	j->cb(status, b, j->arg);
	free(j->exclude);
	free(j);
}

int
store_redrive_next(struct store *st, int64_t now, size_t max,
    const int64_t *exclude, size_t nexclude, store_redrive_next_cb cb,
    void *arg)
{
	struct store_redrive_next_job *j;
	int rc;

	if (st == NULL || cb == NULL || max == 0 || max > STORE_REDRIVE_MAX ||
	    nexclude > (size_t)1000 * STORE_REDRIVE_MAX ||
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
	j->job.run = store_redrive_next_run;
	j->job.done = store_redrive_next_done;
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

/* ---- Requeue and record ------------------------------------------------ */

/*
 * The job of store_redrive_requeue() and store_redrive_record(): requeue
 * alone when record is false.
 */
struct store_redrive_job {
	struct store_job job;
	bool record;
	struct store_redrive_result r;
	char *mailgun_id;
	char *result;
	char *text; /* "<status> <result>": last_error */
	bool changed;
	store_redrive_done_cb cb;
	void *arg;
};

/* Requeues the recipient if it is still retrying.  SQLite code. */
static int
store_redrive_do_requeue(sqlite3 *db, struct store_redrive_job *j)
{
	sqlite3_stmt *st = NULL;
	int rc;

	rc = store_sql_take(db, store_redrive_requeue_sql, &st);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_int64(st, 1, j->r.recipient_id);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_int64(st, 2, j->r.now);
	if (rc == SQLITE_OK)
		rc = store_events_bind_text(st, 3, j->text);
	if (rc == SQLITE_OK)
		rc = store_sql_exec(st);
	if (rc == SQLITE_OK)
		j->changed = sqlite3_changes(db) > 0;
	store_sql_give(st);
	return rc;
}

/* Inserts the attempts row of a resend and its attempt_rcpts row. */
static int
store_redrive_insert_attempt(sqlite3 *db, const struct store_redrive_job *j)
{
	const struct store_redrive_result *r = &j->r;
	sqlite3_stmt *st = NULL;
	int64_t attempt;
	int rc;

	rc = store_sql_take(db, store_redrive_ins_attempt_sql, &st);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_int64(st, 1, r->message_id);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_int64(st, 2, r->at);
	if (rc == SQLITE_OK)
		rc = store_events_bind_opt(st, 3, r->http_status);
	if (rc == SQLITE_OK)
		rc = store_events_bind_text(st, 4,
		    r->outcome == STORE_FORWARD_OK ? r->mailgun_id : NULL);
	if (rc == SQLITE_OK)
		rc = store_events_bind_text(st, 5, r->result);
	if (rc == SQLITE_OK)
		rc = store_sql_exec(st);
	store_sql_give(st);
	if (rc != SQLITE_OK)
		return rc;
	attempt = sqlite3_last_insert_rowid(db);

	rc = store_sql_take(db, store_redrive_ins_arcpt_sql, &st);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_int64(st, 1, attempt);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_int64(st, 2, r->recipient_id);
	if (rc == SQLITE_OK)
		rc = store_sql_exec(st);
	store_sql_give(st);
	return rc;
}

/* An accepted resend: the recipient and the message's latest id. */
static int
store_redrive_record_ok(sqlite3 *db, struct store_redrive_job *j)
{
	sqlite3_stmt *st = NULL;
	int64_t v = 0;
	bool found = false;
	int rc;

	/* Was it still retrying?  The update's CASEs decide the same way. */
	rc = store_sql_take(db,
	    "SELECT 1 FROM recipients WHERE id = ?1 AND status = 'retrying'",
	    &st);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_int64(st, 1, j->r.recipient_id);
	if (rc == SQLITE_OK)
		rc = store_events_scalar(st, &v, &found);
	store_sql_give(st);
	if (rc != SQLITE_OK)
		return rc;
	j->changed = found;

	rc = store_sql_take(db, store_redrive_ok_sql, &st);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_int64(st, 1, j->r.recipient_id);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_int64(st, 2, j->r.now);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_text(st, 3, j->mailgun_id, -1, SQLITE_STATIC);
	if (rc == SQLITE_OK)
		rc = store_sql_exec(st);
	store_sql_give(st);
	if (rc != SQLITE_OK)
		return rc;

	rc = store_sql_take(db, store_redrive_msg_id_sql, &st);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_int64(st, 1, j->r.message_id);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_text(st, 2, j->mailgun_id, -1, SQLITE_STATIC);
	if (rc == SQLITE_OK)
		rc = store_sql_exec(st);
	store_sql_give(st);
	return rc;
}

/* RETRY and PAUSE: stays retrying, due later.  SQLite code. */
static int
store_redrive_record_later(sqlite3 *db, struct store_redrive_job *j)
{
	sqlite3_stmt *st = NULL;
	int rc;

	rc = store_sql_take(db, store_redrive_later_sql, &st);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_int64(st, 1, j->r.recipient_id);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_int64(st, 2, j->r.now);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_int64(st, 3, j->r.next_attempt_at);
	if (rc == SQLITE_OK)
		rc = store_events_bind_text(st, 4, j->text);
	if (rc == SQLITE_OK)
		rc = store_sql_exec(st);
	if (rc == SQLITE_OK)
		j->changed = sqlite3_changes(db) > 0;
	store_sql_give(st);
	return rc;
}

/* The requeue or record job.  Store thread. */
static int
store_redrive_run(sqlite3 *db, struct store_job *job)
{
	struct store_redrive_job *j = (struct store_redrive_job *)job;
	int rc;

	j->changed = false;
	if (!j->record)
		rc = store_redrive_do_requeue(db, j);
	else {
		rc = store_redrive_insert_attempt(db, j);
		if (rc == SQLITE_OK) {
			switch (j->r.outcome) {
			case STORE_FORWARD_OK:
				rc = store_redrive_record_ok(db, j);
				break;
			case STORE_FORWARD_REJECT:
				rc = store_redrive_do_requeue(db, j);
				break;
			default:
				rc = store_redrive_record_later(db, j);
				break;
			}
		}
	}
	if (rc != SQLITE_OK) {
		log_error("store: recording a re-drive failed",
		    LF_INT("id", j->r.message_id),
		    LF_INT("recipient", j->r.recipient_id),
		    LF_STR("error", sqlite3_errmsg(db)), LF_END);
		return store_sql_err(rc);
	}
	return 0;
}

static void
store_redrive_job_free(struct store_redrive_job *j)
{
	free(j->mailgun_id);
	free(j->result);
	free(j->text);
	free(j);
}

static void
store_redrive_done(struct store_job *job, int status)
{
	struct store_redrive_job *j = (struct store_redrive_job *)job;

	j->cb(status, status == 0 && j->changed, j->arg);
	store_redrive_job_free(j);
}

int
store_redrive_requeue(struct store *st, int64_t recipient_id, int64_t now,
    store_redrive_done_cb cb, void *arg)
{
	struct store_redrive_job *j;
	int rc;

	if (st == NULL || cb == NULL || recipient_id <= 0)
		return -EINVAL;
	j = calloc(1, sizeof(*j));
	if (j == NULL)
		return -ENOMEM;
	j->r.recipient_id = recipient_id;
	j->r.now = now;
	j->cb = cb;
	j->arg = arg;
	j->job.run = store_redrive_run;
	j->job.done = store_redrive_done;
	rc = store_job_submit(st, &j->job);
	if (rc != 0)
		store_redrive_job_free(j);
	return rc;
}

/*
 * Builds "<status> <text>" (or the text alone without an HTTP status), cut
 * to STORE_EVENTS_TEXT_MAX bytes, as the forwarder writes last_error.
 */
static char *
store_redrive_text(int http_status, const char *text)
{
	char *out = malloc(STORE_EVENTS_TEXT_MAX);

	if (out == NULL)
		return NULL;
	if (text == NULL || text[0] == '\0')
		text = http_status != 0 ? "(no text)" : "no answer";
	if (http_status != 0)
		(void)snprintf(
		    out, STORE_EVENTS_TEXT_MAX, "%d %s", http_status, text);
	else
		(void)snprintf(out, STORE_EVENTS_TEXT_MAX, "%s", text);
	return out;
}

int
store_redrive_record(struct store *st, const struct store_redrive_result *r,
    store_redrive_done_cb cb, void *arg)
{
	struct store_redrive_job *j;
	bool bad = false;
	int rc;

	if (st == NULL || r == NULL || cb == NULL || r->message_id <= 0 ||
	    r->recipient_id <= 0 ||
	    (unsigned)r->outcome > (unsigned)STORE_FORWARD_REJECT ||
	    (r->outcome == STORE_FORWARD_OK &&
		(r->mailgun_id == NULL || r->mailgun_id[0] == '\0')))
		return -EINVAL;
	j = calloc(1, sizeof(*j));
	if (j == NULL)
		return -ENOMEM;
	j->record = true;
	j->r = *r;
	j->mailgun_id = store_events_dup(r->mailgun_id, &bad);
	j->result = store_events_dup(r->result, &bad);
	j->text = store_redrive_text(r->http_status, r->result);
	if (bad || j->text == NULL) {
		store_redrive_job_free(j);
		return -ENOMEM;
	}
	j->r.mailgun_id = j->mailgun_id;
	j->r.result = j->result;
	j->cb = cb;
	j->arg = arg;
	j->job.run = store_redrive_run;
	j->job.done = store_redrive_done;
	rc = store_job_submit(st, &j->job);
	if (rc != 0)
		store_redrive_job_free(j);
	return rc;
}

/* ---- `redrive retry` ---------------------------------------------------- */

/* One recipient store_db_retry() looked at. */
struct store_retry_row {
	int64_t id;
	char *address;
	char *was;
	bool changed;
};

/* The state a retry gives a recipient in each state; NULL: none. */
static const char *
store_retry_sql(const char *status)
{
	if (strcmp(status, "retrying") == 0 || strcmp(status, "queued") == 0)
		return "UPDATE recipients SET next_attempt_at = ?2,"
		       " updated_at = ?2 WHERE id = ?1";
	if (strcmp(status, "failed") == 0)
		return "UPDATE recipients SET status = 'retrying',"
		       " next_attempt_at = ?2, reason = NULL, updated_at = ?2"
		       " WHERE id = ?1";
	return NULL;
}

/* Records db's last SQLite error for store_db_errmsg(); errno code. */
static int
store_retry_fail(struct store_db *db, int rc)
{
	(void)snprintf(
	    db->errmsg, sizeof(db->errmsg), "%s", sqlite3_errmsg(db->db));
	return store_sql_err(rc);
}

static void
store_retry_rows_free(struct store_retry_row *rows, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		free(rows[i].address);
		free(rows[i].was);
	}
	free(rows);
}

/* Loads the matching recipients.  SQLite code. */
static int
store_retry_load(struct store_db *db, int64_t message_id, const char *address,
    struct store_retry_row **out, size_t *n)
{
	struct store_retry_row *rows = NULL, *grown, *row;
	sqlite3_stmt *st = NULL;
	size_t cap = 0, count = 0;
	int rc;

	rc = store_sql_take(db->db,
	    "SELECT id, address, status FROM recipients WHERE message_id = ?1"
	    " AND (?2 IS NULL OR address = ?2 COLLATE NOCASE) ORDER BY id",
	    &st);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_int64(st, 1, message_id);
	if (rc == SQLITE_OK)
		rc = address != NULL
		    ? sqlite3_bind_text(st, 2, address, -1, SQLITE_STATIC)
		    : sqlite3_bind_null(st, 2);
	while (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (count == cap) {
			cap = cap != 0 ? cap * 2 : 8;
			grown = reallocarray(rows, cap, sizeof(*grown));
			if (grown == NULL) {
				rc = SQLITE_NOMEM;
				break;
			}
			rows = grown;
		}
		row = &rows[count++];
		memset(row, 0, sizeof(*row));
		row->id = sqlite3_column_int64(st, 0);
		rc = store_events_column_dup(st, 1, &row->address);
		if (rc == SQLITE_OK)
			rc = store_events_column_dup(st, 2, &row->was);
		if (rc == SQLITE_OK &&
		    (row->address == NULL || row->was == NULL))
			rc = SQLITE_NOMEM;
	}
	if (rc == SQLITE_DONE)
		rc = SQLITE_OK;
	store_sql_give(st);
	if (rc != SQLITE_OK) {
		store_retry_rows_free(rows, count);
		return rc;
	}
	*out = rows;
	*n = count;
	return SQLITE_OK;
}

/* Makes each row due as its state allows.  SQLite code. */
static int
store_retry_apply(struct store_db *db, int64_t message_id,
    struct store_retry_row *rows, size_t n, int64_t now, int *changed)
{
	sqlite3_stmt *st = NULL;
	const char *sql;
	bool unfinish = false;
	size_t i;
	int rc = SQLITE_OK;

	*changed = 0;
	for (i = 0; i < n && rc == SQLITE_OK; i++) {
		sql = store_retry_sql(rows[i].was);
		if (sql == NULL)
			continue;
		rc = store_sql_take(db->db, sql, &st);
		if (rc == SQLITE_OK)
			rc = sqlite3_bind_int64(st, 1, rows[i].id);
		if (rc == SQLITE_OK)
			rc = sqlite3_bind_int64(st, 2, now);
		if (rc == SQLITE_OK)
			rc = store_sql_exec(st);
		store_sql_give(st);
		st = NULL;
		if (rc != SQLITE_OK)
			break;
		rows[i].changed = true;
		(*changed)++;
		if (strcmp(rows[i].was, "failed") == 0)
			unfinish = true;
	}
	if (rc == SQLITE_OK && unfinish) {
		rc = store_sql_take(db->db,
		    "UPDATE messages SET finished_at = NULL WHERE id = ?1",
		    &st);
		if (rc == SQLITE_OK)
			rc = sqlite3_bind_int64(st, 1, message_id);
		if (rc == SQLITE_OK)
			rc = store_sql_exec(st);
		store_sql_give(st);
	}
	return rc;
}

/*
 * One IMMEDIATE transaction (the daemon's store thread may be writing:
 * the busy timeout waits for it): load, change, commit; then the callback
 * for each recipient, so that what it reports is on disk.
 */
int
store_db_retry(struct store_db *db, int64_t message_id, const char *address,
    int64_t now, store_retry_cb cb, void *arg)
{
	struct store_retry_row *rows = NULL;
	size_t n = 0, i;
	int rc, changed = 0, ret;

	if (db == NULL || message_id <= 0)
		return -EINVAL;
	db->errmsg[0] = '\0';
	rc = sqlite3_exec(db->db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
	if (rc != SQLITE_OK)
		return store_retry_fail(db, rc);
	rc = store_retry_load(db, message_id, address, &rows, &n);
	if (rc == SQLITE_OK && n > 0)
		rc = store_retry_apply(db, message_id, rows, n, now, &changed);
	if (rc == SQLITE_OK)
		rc = sqlite3_exec(db->db, "COMMIT", NULL, NULL, NULL);
	if (rc != SQLITE_OK) {
		ret = store_retry_fail(db, rc);
		if (!sqlite3_get_autocommit(db->db))
			(void)sqlite3_exec(
			    db->db, "ROLLBACK", NULL, NULL, NULL);
		store_retry_rows_free(rows, n);
		return ret;
	}
	for (i = 0; i < n && cb != NULL; i++)
		cb(rows[i].address, rows[i].was, rows[i].changed, arg);
	store_retry_rows_free(rows, n);
	return n == 0 ? -ENOENT : changed;
}
