/*
 * store_stats: what `redrive stats`, `redrive tail` and `redrive purge`
 * ask of the store, on the CLI's synchronous face (struct store_db), and
 * the daemon's retention job (store_purge) on the store thread.
 *
 * Stats read one snapshot (one read transaction) of the messages received
 * since a time.  Tail walks the events table by id, the order in which
 * events were committed.  Purge deletes finished messages, every recipient
 * delivered or failed, and lets ON DELETE CASCADE remove their bodies,
 * recipients, sends and events; it works in transactions of at most
 * STORE_PURGE_BATCH messages so that the daemon's store thread never waits
 * long for the write lock.  A message is finished by its recipients'
 * states here (not only by messages.finished_at), so a message that is not
 * final is never deleted whatever that column says.  Nor is the newest
 * message, or the message of the newest event, so that ids are never
 * reused (store_purge_messages_sql).  Every query uses
 * bound parameters only.
 *
 * Cost: the cascade from recipients to events looks events up by
 * recipient_id, which has no index in schema 3, so each deleted recipient
 * scans the events table; an index on events(recipient_id) makes a purge
 * linear.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <sqlite3.h>

#include "redrive/log.h"
#include "redrive/store.h"
#include "store_int.h"

/* The longest reason name a top list keeps (Mailgun's texts are long). */
#define STORE_STATS_NAME_MAX 80

const char *const store_state_names[STORE_NSTATES] = {
	"queued",
	"sent",
	"deferred",
	"retrying",
	"delivered",
	"failed",
};

/* The recipients of the messages received at or after ?1. */
#define STORE_STATS_RCPTS                                           \
	" FROM recipients r JOIN messages m ON m.id = r.message_id" \
	" WHERE m.received_at >= ?1"

/* A terminal failure event (DESIGN.md "Data flow"). */
#define STORE_STATS_TERMINAL                                   \
	" e.event = 'failed' AND (e.severity = 'permanent' OR" \
	" e.reason = 'old')"

static const char store_stats_messages_sql[] =
    "SELECT count(*) FROM messages WHERE received_at >= ?1";

static const char store_stats_states_sql[] =
    "SELECT r.status, count(*)" STORE_STATS_RCPTS " GROUP BY r.status";

/*
 * Re-driven recipients that are final: carried by a storage resend, or
 * accepted by Mailgun more than once (a re-drive through the spooled copy).
 */
static const char store_stats_redriven_sql[] =
    "SELECT r.status = 'delivered', count(*)" STORE_STATS_RCPTS
    " AND r.status IN ('delivered', 'failed') AND (r.attempts > 1 OR"
    " EXISTS (SELECT 1 FROM attempt_rcpts ar JOIN attempts a"
    "   ON a.id = ar.attempt_id WHERE ar.recipient_id = r.id"
    "   AND a.via = 'storage'))"
    " GROUP BY 1";

/*
 * Each terminal failure event by its reason (else severity, else event),
 * and each failed recipient that has none by its reason up to the first
 * ':' ("bounce: 550 ..." names "bounce").
 */
static const char store_stats_reasons_sql[] =
    "SELECT substr(name, 1, ?2) AS n, count(*) AS c FROM ("
    " SELECT COALESCE(NULLIF(e.reason, ''), NULLIF(e.severity, ''),"
    "   e.event) AS name FROM events e JOIN messages m"
    "   ON m.id = e.message_id WHERE m.received_at >= ?1"
    "   AND" STORE_STATS_TERMINAL " UNION ALL"
    " SELECT CASE WHEN r.reason IS NULL OR r.reason = '' THEN 'unknown'"
    "   WHEN instr(r.reason, ':') > 1"
    "   THEN substr(r.reason, 1, instr(r.reason, ':') - 1)"
    "   ELSE r.reason END" STORE_STATS_RCPTS " AND r.status = 'failed'"
    "   AND NOT EXISTS (SELECT 1 FROM events e WHERE e.message_id ="
    "   r.message_id AND e.recipient_id = r.id AND" STORE_STATS_TERMINAL
    " )) GROUP BY n ORDER BY c DESC, n LIMIT ?3";

/*
 * Recipient domains, lower case: what follows the last '@' (rtrim with
 * every other character of the address strips back to it).
 */
static const char store_stats_domains_sql[] =
    "SELECT lower(substr(r.address, length(rtrim(r.address,"
    " replace(r.address, '@', ''))) + 1)) AS d, count(*) AS c" STORE_STATS_RCPTS
    " AND instr(r.address, '@') > 0"
    " GROUP BY d ORDER BY c DESC, d LIMIT ?2";

static const char store_tail_sql[] =
    "SELECT e.id, e.message_id, e.received_at, e.at, r.address, e.event,"
    " e.severity, e.reason, e.code, e.enhanced_code, e.message,"
    " e.mailgun_id FROM events e"
    " LEFT JOIN recipients r ON r.id = e.recipient_id"
    " WHERE e.id > ?1 AND e.received_at >= ?2 ORDER BY e.id LIMIT ?3";

/*
 * A finished message: a recipient, and none that is not final.  SQLite
 * gives a new row the highest id + 1 (the tables have no AUTOINCREMENT),
 * so the message with the highest id and that of the newest event are
 * kept: a local id (v:redrive-id) or an event id that was handed out is
 * never handed out again.
 */
static const char store_purge_messages_sql[] =
    "DELETE FROM messages WHERE id IN (SELECT m.id FROM messages m"
    " WHERE m.received_at < ?1"
    " AND m.id < (SELECT max(id) FROM messages)"
    " AND m.id IS NOT (SELECT message_id FROM events"
    "   ORDER BY id DESC LIMIT 1)"
    " AND EXISTS (SELECT 1 FROM recipients r WHERE r.message_id = m.id)"
    " AND NOT EXISTS (SELECT 1 FROM recipients r WHERE r.message_id = m.id"
    "   AND r.status NOT IN ('delivered', 'failed'))"
    " ORDER BY m.received_at LIMIT ?2)";

static const char store_purge_tokens_sql[] =
    "DELETE FROM webhook_tokens WHERE id IN (SELECT id FROM"
    " webhook_tokens WHERE at < ?1 ORDER BY at LIMIT ?2)";

/* Records the connection's last SQLite error and returns it as errno. */
static int
store_stats_fail(struct store_db *db, int rc)
{
	int ret;

	(void)snprintf(
	    db->errmsg, sizeof(db->errmsg), "%s", sqlite3_errmsg(db->db));
	ret = store_errno(rc);
	return ret != 0 ? ret : -EIO;
}

/* Prepares sql on db; 0 or an errno code with the reason recorded. */
static int
store_stats_prepare(struct store_db *db, const char *sql, sqlite3_stmt **st)
{
	int rc;

	*st = NULL;
	rc = sqlite3_prepare_v2(db->db, sql, -1, st, NULL);
	if (rc != SQLITE_OK)
		return store_stats_fail(db, rc);
	return 0;
}

/* Copies text column col (NULL for SQL NULL).  0 or -ENOMEM. */
static int
store_stats_text(sqlite3_stmt *st, int col, char **out)
{
	const unsigned char *p;
	size_t n;

	*out = NULL;
	if (sqlite3_column_type(st, col) == SQLITE_NULL)
		return 0;
	p = sqlite3_column_text(st, col);
	if (p == NULL)
		return -ENOMEM;
	n = (size_t)sqlite3_column_bytes(st, col);
	*out = malloc(n + 1);
	if (*out == NULL)
		return -ENOMEM;
	memcpy(*out, p, n);
	(*out)[n] = '\0';
	return 0;
}

/* Begins a read transaction on db.  0 or an errno code. */
static int
store_stats_begin(struct store_db *db)
{
	int rc;

	rc = sqlite3_exec(db->db, "BEGIN", NULL, NULL, NULL);
	return rc == SQLITE_OK ? 0 : store_stats_fail(db, rc);
}

void
store_db_stats_clear(struct store_db_stats *s)
{
	size_t i;

	if (s == NULL)
		return;
	for (i = 0; i < s->nreasons; i++)
		free(s->reasons[i].name);
	for (i = 0; i < s->ndomains; i++)
		free(s->domains[i].name);
	memset(s, 0, sizeof(*s));
}

/*
 * Runs sql (?1 since, ?2 and ?3 as given when > 0) and hands each row to
 * row(), which reads the statement.  0 or an errno code.
 */
static int
store_stats_each(struct store_db *db, const char *sql, int64_t since,
    int64_t p2, int64_t p3,
    int (*row)(sqlite3_stmt *st, struct store_db_stats *s),
    struct store_db_stats *s)
{
	sqlite3_stmt *st = NULL;
	int rc, ret;

	ret = store_stats_prepare(db, sql, &st);
	if (ret != 0)
		return ret;
	rc = sqlite3_bind_int64(st, 1, since);
	if (rc == SQLITE_OK && p2 > 0)
		rc = sqlite3_bind_int64(st, 2, p2);
	if (rc == SQLITE_OK && p3 > 0)
		rc = sqlite3_bind_int64(st, 3, p3);
	while (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		ret = row(st, s);
		if (ret != 0)
			goto out;
		rc = SQLITE_OK;
	}
	if (rc != SQLITE_DONE)
		ret = store_stats_fail(db, rc);
out:
	sqlite3_finalize(st);
	return ret;
}

static int
store_stats_messages_row(sqlite3_stmt *st, struct store_db_stats *s)
{
	s->messages = sqlite3_column_int64(st, 0);
	return 0;
}

static int
store_stats_states_row(sqlite3_stmt *st, struct store_db_stats *s)
{
	const unsigned char *name = sqlite3_column_text(st, 0);
	size_t i;

	for (i = 0; name != NULL && i < STORE_NSTATES; i++)
		if (strcmp((const char *)name, store_state_names[i]) == 0)
			s->recipients[i] = sqlite3_column_int64(st, 1);
	return 0;
}

static int
store_stats_redriven_row(sqlite3_stmt *st, struct store_db_stats *s)
{
	int64_t n = sqlite3_column_int64(st, 1);

	s->redriven_final += n;
	if (sqlite3_column_int(st, 0) != 0)
		s->redriven_delivered += n;
	return 0;
}

/* Appends the row (name, count) to a top list of STORE_STATS_TOP. */
static int
store_stats_top_row(sqlite3_stmt *st, struct store_stats_item *items, size_t *n)
{
	int ret;

	if (*n >= STORE_STATS_TOP)
		return 0;
	ret = store_stats_text(st, 0, &items[*n].name);
	if (ret != 0)
		return ret;
	if (items[*n].name == NULL)
		return 0;
	items[*n].count = sqlite3_column_int64(st, 1);
	(*n)++;
	return 0;
}

static int
store_stats_reasons_row(sqlite3_stmt *st, struct store_db_stats *s)
{
	return store_stats_top_row(st, s->reasons, &s->nreasons);
}

static int
store_stats_domains_row(sqlite3_stmt *st, struct store_db_stats *s)
{
	return store_stats_top_row(st, s->domains, &s->ndomains);
}

/*
 * Every figure from one snapshot: the daemon may commit between the
 * queries, and the numbers must still add up.
 */
int
store_db_stats_read(
    struct store_db *db, int64_t since, struct store_db_stats *out)
{
	int ret;

	memset(out, 0, sizeof(*out));
	db->errmsg[0] = '\0';
	ret = store_stats_begin(db);
	if (ret != 0)
		return ret;
	ret = store_stats_each(db, store_stats_messages_sql, since, 0, 0,
	    store_stats_messages_row, out);
	if (ret == 0)
		ret = store_stats_each(db, store_stats_states_sql, since, 0, 0,
		    store_stats_states_row, out);
	if (ret == 0)
		ret = store_stats_each(db, store_stats_redriven_sql, since, 0,
		    0, store_stats_redriven_row, out);
	if (ret == 0)
		ret = store_stats_each(db, store_stats_reasons_sql, since,
		    STORE_STATS_NAME_MAX, STORE_STATS_TOP,
		    store_stats_reasons_row, out);
	if (ret == 0)
		ret = store_stats_each(db, store_stats_domains_sql, since,
		    STORE_STATS_TOP, 0, store_stats_domains_row, out);
	(void)sqlite3_exec(db->db, "COMMIT", NULL, NULL, NULL);
	if (ret != 0)
		store_db_stats_clear(out);
	return ret;
}

int
store_db_events_max(struct store_db *db, int64_t *max_id)
{
	sqlite3_stmt *st = NULL;
	int rc, ret;

	*max_id = 0;
	db->errmsg[0] = '\0';
	ret = store_stats_prepare(
	    db, "SELECT COALESCE(max(id), 0) FROM events", &st);
	if (ret != 0)
		return ret;
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		*max_id = sqlite3_column_int64(st, 0);
	else
		ret = store_stats_fail(db, rc);
	sqlite3_finalize(st);
	return ret;
}

static void
store_tail_row_clear(struct store_tail_row *row)
{
	struct store_event_row *e = &row->ev;

	free(e->recipient);
	free(e->event);
	free(e->severity);
	free(e->reason);
	free(e->enhanced_code);
	free(e->message);
	free(e->mailgun_id);
	memset(row, 0, sizeof(*row));
}

/* Fills row from the current row of store_tail_sql.  0 or -ENOMEM. */
static int
store_tail_fill(sqlite3_stmt *st, struct store_tail_row *row)
{
	struct store_event_row *e = &row->ev;
	struct {
		int col;
		char **dst;
	} cols[] = {
		{ 4, &e->recipient },
		{ 5, &e->event },
		{ 6, &e->severity },
		{ 7, &e->reason },
		{ 9, &e->enhanced_code },
		{ 10, &e->message },
		{ 11, &e->mailgun_id },
	};
	size_t i;
	int ret;

	memset(row, 0, sizeof(*row));
	row->id = sqlite3_column_int64(st, 0);
	row->message_id = sqlite3_column_int64(st, 1);
	row->received_at = sqlite3_column_int64(st, 2);
	e->at = sqlite3_column_int64(st, 3);
	e->code = sqlite3_column_int(st, 8);
	for (i = 0; i < sizeof(cols) / sizeof(cols[0]); i++) {
		ret = store_stats_text(st, cols[i].col, cols[i].dst);
		if (ret != 0)
			return ret;
	}
	return 0;
}

/*
 * One read transaction per call: the rows handed to cb were all committed
 * before it began, and a later call continues after the last of them.
 */
int
store_db_events_after(struct store_db *db, int64_t after_id, int64_t since,
    long limit, store_tail_cb cb, void *arg, int64_t *last_id)
{
	struct store_tail_row row;
	sqlite3_stmt *st = NULL;
	int rc, ret;

	memset(&row, 0, sizeof(row));
	db->errmsg[0] = '\0';
	if (limit <= 0 || cb == NULL)
		return -EINVAL;
	ret = store_stats_begin(db);
	if (ret != 0)
		return ret;
	ret = store_stats_prepare(db, store_tail_sql, &st);
	if (ret != 0)
		goto out;
	rc = sqlite3_bind_int64(st, 1, after_id);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_int64(st, 2, since);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_int64(st, 3, limit);
	while (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		ret = store_tail_fill(st, &row);
		if (ret == 0)
			ret = cb(&row, arg);
		if (ret == 0)
			*last_id = row.id;
		store_tail_row_clear(&row);
		if (ret != 0)
			goto out;
		rc = SQLITE_OK;
	}
	if (rc != SQLITE_DONE)
		ret = store_stats_fail(db, rc);
out:
	sqlite3_finalize(st);
	(void)sqlite3_exec(db->db, "COMMIT", NULL, NULL, NULL);
	return ret;
}

/*
 * SQLite keeps reading an unlinked file through its open descriptor, so
 * a store removed under `redrive tail` is noticed by its path.
 */
int
store_db_present(struct store_db *db)
{
	const char *path = sqlite3_db_filename(db->db, "main");
	struct stat sb;

	if (path == NULL || path[0] == '\0' || stat(path, &sb) != 0 ||
	    !S_ISREG(sb.st_mode))
		return -ENOENT;
	return 0;
}

/*
 * One batch: deletes at most STORE_PURGE_BATCH finished messages received
 * before before and as many tokens recorded before tokens_before, inside
 * whatever transaction the caller holds.  SQLite code; counts in *m, *t.
 */
static int
store_purge_batch(sqlite3 *db, int64_t before, int64_t tokens_before,
    uint64_t *m, uint64_t *t)
{
	sqlite3_stmt *st = NULL;
	int rc;

	*m = 0;
	*t = 0;
	rc = sqlite3_prepare_v2(db, store_purge_messages_sql, -1, &st, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_int64(st, 1, before);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_int64(st, 2, STORE_PURGE_BATCH);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(st);
	sqlite3_finalize(st);
	st = NULL;
	if (rc != SQLITE_DONE)
		return rc != SQLITE_OK ? rc : SQLITE_ERROR;
	*m = (uint64_t)sqlite3_changes(db);

	rc = sqlite3_prepare_v2(db, store_purge_tokens_sql, -1, &st, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_int64(st, 1, tokens_before);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_int64(st, 2, STORE_PURGE_BATCH);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(st);
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE)
		return rc != SQLITE_OK ? rc : SQLITE_ERROR;
	*t = (uint64_t)sqlite3_changes(db);
	return SQLITE_OK;
}

/* Reads PRAGMA foreign_keys: true when ON DELETE CASCADE will act. */
static bool
store_purge_fk_on(sqlite3 *db)
{
	sqlite3_stmt *st = NULL;
	bool on = false;

	if (sqlite3_prepare_v2(db, "PRAGMA foreign_keys", -1, &st, NULL) ==
		SQLITE_OK &&
	    sqlite3_step(st) == SQLITE_ROW)
		on = sqlite3_column_int(st, 0) != 0;
	sqlite3_finalize(st);
	return on;
}

/*
 * Each batch in its own IMMEDIATE transaction (the busy timeout waits for
 * the daemon's store thread), until a batch finds less than a full one of
 * both.  Without foreign keys on, the cascade would not run and rows
 * would be orphaned: refused.
 */
int
store_db_purge(struct store_db *db, int64_t before, int64_t tokens_before,
    uint64_t *messages, uint64_t *tokens)
{
	uint64_t m, t;
	int rc, ret;

	*messages = 0;
	*tokens = 0;
	db->errmsg[0] = '\0';
	if (!store_purge_fk_on(db->db)) {
		(void)snprintf(db->errmsg, sizeof(db->errmsg),
		    "foreign keys are off on this connection");
		return -EPERM;
	}
	do {
		rc = sqlite3_exec(db->db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
		if (rc == SQLITE_OK)
			rc = store_purge_batch(
			    db->db, before, tokens_before, &m, &t);
		if (rc == SQLITE_OK)
			rc = sqlite3_exec(db->db, "COMMIT", NULL, NULL, NULL);
		if (rc != SQLITE_OK) {
			ret = store_stats_fail(db, rc);
			if (!sqlite3_get_autocommit(db->db))
				(void)sqlite3_exec(
				    db->db, "ROLLBACK", NULL, NULL, NULL);
			return ret;
		}
		*messages += m;
		*tokens += t;
	} while (m == STORE_PURGE_BATCH || t == STORE_PURGE_BATCH);
	return 0;
}

/* ---- The daemon's retention job ----------------------------------------- */

struct store_purge_job {
	struct store_job job;
	int64_t before;
	int64_t tokens_before;
	uint64_t messages;
	uint64_t tokens;
	store_purge_cb cb;
	void *arg;
};

/* One batch inside the group transaction.  Store thread. */
static int
store_purge_run(sqlite3 *db, struct store_job *job)
{
	struct store_purge_job *j = (struct store_purge_job *)job;
	int rc;

	rc = store_purge_batch(
	    db, j->before, j->tokens_before, &j->messages, &j->tokens);
	if (rc != SQLITE_OK) {
		log_error("store: purging finished messages failed",
		    LF_STR("error", sqlite3_errmsg(db)), LF_END);
		rc = store_errno(rc);
		return rc != 0 ? rc : -EIO;
	}
	return 0;
}

static void
store_purge_done(struct store_job *job, int status)
{
	struct store_purge_job *j = (struct store_purge_job *)job;

	if (status != 0)
		j->cb(status, 0, 0, j->arg);
	else
		j->cb(0, j->messages, j->tokens, j->arg);
	free(j);
}

int
store_purge(struct store *st, int64_t before, int64_t tokens_before,
    store_purge_cb cb, void *arg)
{
	struct store_purge_job *j;
	int rc;

	if (st == NULL || cb == NULL)
		return -EINVAL;
	j = calloc(1, sizeof(*j));
	if (j == NULL)
		return -ENOMEM;
	j->before = before;
	j->tokens_before = tokens_before;
	j->cb = cb;
	j->arg = arg;
	j->job.run = store_purge_run;
	j->job.done = store_purge_done;
	rc = store_job_submit(st, &j->job);
	if (rc != 0)
		free(j);
	return rc;
}
