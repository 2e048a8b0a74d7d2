/*
 * store_schema: the SQLite schema of redrive and its migrations.
 *
 * The schema grows by appending a migration to store_migrations[]; never
 * edit one that has shipped.  PRAGMA user_version holds the number of
 * migrations applied.  Per recipient state lives in `recipients`, because
 * Mailgun reports per recipient; `attempts` records every request made to
 * Mailgun (a send: messages.mime or a storage resend) and `attempt_rcpts`
 * which recipients it carried; `events` holds what Mailgun reported, by
 * webhook or by the Events API; `webhook_tokens` remembers the tokens of
 * processed webhooks.  Message bodies sit in their own table so that
 * listing messages never pages through them.  Times are integer
 * milliseconds since the epoch, UTC.
 */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>

#include "redrive/store.h"
#include "store_int.h"

static const char *const store_migrations[] = {
	/* 1: the first schema. */
	"CREATE TABLE messages ("
	"  id INTEGER PRIMARY KEY,"
	"  received_at INTEGER NOT NULL,"
	"  mail_from TEXT NOT NULL,"
	"  helo TEXT,"
	"  client_addr TEXT,"
	"  auth_user TEXT,"
	"  subject TEXT,"
	"  message_id TEXT,"
	"  size INTEGER NOT NULL,"
	"  smtputf8 INTEGER NOT NULL DEFAULT 0,"
	"  mailgun_id TEXT,"
	"  finished_at INTEGER"
	");"
	"CREATE INDEX messages_received ON messages(received_at);"
	"CREATE INDEX messages_message_id ON messages(message_id);"
	"CREATE INDEX messages_mailgun_id ON messages(mailgun_id);"
	"CREATE TABLE bodies ("
	"  message_id INTEGER PRIMARY KEY"
	"    REFERENCES messages(id) ON DELETE CASCADE,"
	"  data BLOB NOT NULL"
	");"
	"CREATE TABLE recipients ("
	"  id INTEGER PRIMARY KEY,"
	"  message_id INTEGER NOT NULL"
	"    REFERENCES messages(id) ON DELETE CASCADE,"
	"  address TEXT NOT NULL,"
	"  status TEXT NOT NULL DEFAULT 'queued' CHECK (status IN"
	"    ('queued','sent','deferred','retrying','delivered','failed')),"
	"  attempts INTEGER NOT NULL DEFAULT 0,"
	"  reason TEXT,"
	"  last_error TEXT,"
	"  mailgun_id TEXT,"
	"  next_attempt_at INTEGER,"
	"  last_event_at INTEGER,"
	"  updated_at INTEGER NOT NULL"
	");"
	"CREATE INDEX recipients_message ON recipients(message_id);"
	"CREATE INDEX recipients_due ON recipients(status, next_attempt_at);"
	"CREATE INDEX recipients_address ON recipients(address COLLATE NOCASE);"
	"CREATE INDEX recipients_mailgun_id ON recipients(mailgun_id);"
	"CREATE TABLE attempts ("
	"  id INTEGER PRIMARY KEY,"
	"  message_id INTEGER NOT NULL"
	"    REFERENCES messages(id) ON DELETE CASCADE,"
	"  at INTEGER NOT NULL,"
	"  via TEXT NOT NULL CHECK (via IN ('mime','storage')),"
	"  http_status INTEGER,"
	"  mailgun_id TEXT,"
	"  result TEXT"
	");"
	"CREATE INDEX attempts_message ON attempts(message_id);"
	"CREATE TABLE attempt_rcpts ("
	"  attempt_id INTEGER NOT NULL"
	"    REFERENCES attempts(id) ON DELETE CASCADE,"
	"  recipient_id INTEGER NOT NULL"
	"    REFERENCES recipients(id) ON DELETE CASCADE,"
	"  PRIMARY KEY (attempt_id, recipient_id)"
	") WITHOUT ROWID;"
	"CREATE INDEX attempt_rcpts_recipient ON attempt_rcpts(recipient_id);"
	"CREATE TABLE events ("
	"  id INTEGER PRIMARY KEY,"
	"  message_id INTEGER REFERENCES messages(id) ON DELETE CASCADE,"
	"  recipient_id INTEGER REFERENCES recipients(id) ON DELETE CASCADE,"
	"  at INTEGER NOT NULL,"
	"  received_at INTEGER NOT NULL,"
	"  event TEXT NOT NULL,"
	"  severity TEXT,"
	"  reason TEXT,"
	"  code INTEGER,"
	"  enhanced_code TEXT,"
	"  message TEXT,"
	"  mailgun_id TEXT,"
	"  event_id TEXT,"
	"  storage_url TEXT,"
	"  source TEXT NOT NULL DEFAULT 'webhook'"
	");"
	"CREATE INDEX events_message ON events(message_id, at);"
	"CREATE INDEX events_received ON events(received_at);"
	"CREATE TABLE webhook_tokens ("
	"  token TEXT PRIMARY KEY,"
	"  digest TEXT NOT NULL,"
	"  at INTEGER NOT NULL"
	") WITHOUT ROWID;",
	/*
	 * 2: webhooks are correlated by the Mailgun id of any send of a
	 * message (a re-drive gets a new id), so attempts are looked up by it.
	 */
	"CREATE INDEX attempts_mailgun_id ON attempts(mailgun_id);",
	/*
	 * 3: alerts (docs/alerts.md).  One row per alert, written in the
	 * transaction that caused it; the sender marks each channel done
	 * (channels_done: 1 mail, 2 webhook).  A recipient's alert is keyed
	 * by (recipient_id, sends): the requests that carried it when it
	 * failed, so the same failure never alerts twice and a failure after
	 * `redrive retry` (a new send) alerts again.
	 */
	"CREATE TABLE alerts ("
	"  id INTEGER PRIMARY KEY,"
	"  kind TEXT NOT NULL CHECK (kind IN"
	"    ('recipient','failure_rate','auth')),"
	"  message_id INTEGER REFERENCES messages(id) ON DELETE SET NULL,"
	"  recipient_id INTEGER REFERENCES recipients(id) ON DELETE SET NULL,"
	"  sends INTEGER NOT NULL DEFAULT 0,"
	"  created_at INTEGER NOT NULL,"
	"  subject TEXT NOT NULL,"
	"  body TEXT NOT NULL,"
	"  state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN"
	"    ('pending','sent')),"
	"  attempts INTEGER NOT NULL DEFAULT 0,"
	"  next_attempt_at INTEGER NOT NULL DEFAULT 0,"
	"  last_error TEXT,"
	"  channels_done INTEGER NOT NULL DEFAULT 0,"
	"  sent_at INTEGER"
	");"
	"CREATE UNIQUE INDEX alerts_recipient ON alerts(recipient_id, sends)"
	"  WHERE kind = 'recipient';"
	"CREATE INDEX alerts_pending ON alerts(state, next_attempt_at);"
	"CREATE INDEX alerts_kind ON alerts(kind, created_at);"
	"CREATE INDEX attempts_at ON attempts(at);"
	/* Purge and retention delete by recipient and message. */
	"CREATE INDEX events_recipient ON events(recipient_id);"
	"CREATE INDEX alerts_message ON alerts(message_id);",
	/*
	 * 4: webhook tokens in arrival order.  Keyed by the token, every new
	 * (random) token wrote a page of its own and that was the largest
	 * cost of a webhook; the daemon now looks tokens up in memory
	 * (core/store_tokens.c) and only appends here, and reads them back at
	 * start by arrival time.
	 */
	"CREATE TABLE webhook_tokens_new ("
	"  id INTEGER PRIMARY KEY,"
	"  token TEXT NOT NULL,"
	"  digest TEXT NOT NULL,"
	"  at INTEGER NOT NULL"
	");"
	"INSERT INTO webhook_tokens_new (token, digest, at)"
	"  SELECT token, digest, at FROM webhook_tokens ORDER BY at;"
	"DROP TABLE webhook_tokens;"
	"ALTER TABLE webhook_tokens_new RENAME TO webhook_tokens;"
	"CREATE INDEX webhook_tokens_at ON webhook_tokens(at);",
};

#define STORE_NMIGRATIONS \
	(sizeof(store_migrations) / sizeof(store_migrations[0]))

_Static_assert(STORE_NMIGRATIONS == STORE_SCHEMA_VERSION,
    "one migration per schema version");

int
store_errno(int rc)
{
	switch (rc & 0xff) {
	case SQLITE_OK:
	case SQLITE_DONE:
	case SQLITE_ROW:
		return 0;
	case SQLITE_NOMEM:
		return -ENOMEM;
	case SQLITE_FULL:
		return -ENOSPC;
	case SQLITE_BUSY:
	case SQLITE_LOCKED:
		return -EBUSY;
	case SQLITE_READONLY:
	case SQLITE_PERM:
	case SQLITE_AUTH:
		return -EACCES;
	case SQLITE_CANTOPEN:
		return -ENOENT;
	case SQLITE_CONSTRAINT:
		return -EEXIST;
	case SQLITE_CORRUPT:
	case SQLITE_NOTADB:
		return -EILSEQ;
	default:
		return -EIO;
	}
}

int
store_sql_err(int rc)
{
	int e = store_errno(rc);

	return e != 0 ? e : -EIO;
}

int
store_sql_prepare(sqlite3 *db, const char *sql, sqlite3_stmt **st)
{
	*st = NULL;
	return sqlite3_prepare_v2(db, sql, -1, st, NULL);
}

/*
 * The statement cache (store_int.h).  A small table, searched linearly:
 * the jobs use a few dozen distinct statements, and a search of 96
 * pointers is a small fraction of a microsecond where a prepare costs tens.
 */
#define STORE_SQL_SLOTS 96

struct store_sql_slot {
	sqlite3 *db; /* NULL: the slot is free */
	const char *sql;
	sqlite3_stmt *st;
	bool taken;
};

static pthread_mutex_t store_sql_lock = PTHREAD_MUTEX_INITIALIZER;
static struct store_sql_slot store_sql_slots[STORE_SQL_SLOTS];

/* The index of a free slot, or -1.  Under store_sql_lock. */
static int
store_sql_free_slot(void)
{
	int i;

	for (i = 0; i < STORE_SQL_SLOTS; i++)
		if (store_sql_slots[i].db == NULL)
			return i;
	return -1;
}

int
store_sql_take(sqlite3 *db, const char *sql, sqlite3_stmt **st)
{
	struct store_sql_slot *s;
	int i, rc;

	*st = NULL;
	pthread_mutex_lock(&store_sql_lock);
	for (i = 0; i < STORE_SQL_SLOTS; i++) {
		s = &store_sql_slots[i];
		if (s->db == db && s->sql == sql && !s->taken) {
			s->taken = true;
			*st = s->st;
			pthread_mutex_unlock(&store_sql_lock);
			return SQLITE_OK;
		}
	}
	pthread_mutex_unlock(&store_sql_lock);
	rc = sqlite3_prepare_v3(
	    db, sql, -1, SQLITE_PREPARE_PERSISTENT, st, NULL);
	if (rc != SQLITE_OK)
		return rc;
	pthread_mutex_lock(&store_sql_lock);
	i = store_sql_free_slot();
	if (i >= 0) {
		s = &store_sql_slots[i];
		s->db = db;
		s->sql = sql;
		s->st = *st;
		s->taken = true;
	}
	/* No free slot: the statement is finalized when it is given back. */
	pthread_mutex_unlock(&store_sql_lock);
	return SQLITE_OK;
}

void
store_sql_give(sqlite3_stmt *st)
{
	int i;

	if (st == NULL)
		return;
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	pthread_mutex_lock(&store_sql_lock);
	for (i = 0; i < STORE_SQL_SLOTS; i++) {
		if (store_sql_slots[i].st == st) {
			store_sql_slots[i].taken = false;
			pthread_mutex_unlock(&store_sql_lock);
			return;
		}
	}
	pthread_mutex_unlock(&store_sql_lock);
	sqlite3_finalize(st);
}

void
store_sql_forget(sqlite3 *db)
{
	struct store_sql_slot *s;
	int i;

	if (db == NULL)
		return;
	pthread_mutex_lock(&store_sql_lock);
	for (i = 0; i < STORE_SQL_SLOTS; i++) {
		s = &store_sql_slots[i];
		if (s->db != db)
			continue;
		sqlite3_finalize(s->st);
		s->db = NULL;
		s->sql = NULL;
		s->st = NULL;
		s->taken = false;
	}
	pthread_mutex_unlock(&store_sql_lock);
}

int
store_sql_exec(sqlite3_stmt *st)
{
	int rc = sqlite3_step(st);

	sqlite3_reset(st);
	return rc == SQLITE_DONE || rc == SQLITE_ROW ? SQLITE_OK : rc;
}

int
store_schema_pragmas(sqlite3 *db, int busy_ms, char *err, size_t errlen)
{
	char *msg = NULL;
	int rc;

	sqlite3_busy_timeout(db, busy_ms);
	/* FULL: the promise, and what the daemon's VFS needs (store_vfs.c). */
	rc = sqlite3_exec(db,
	    "PRAGMA journal_mode=WAL;"
	    "PRAGMA synchronous=FULL;"
	    "PRAGMA foreign_keys=ON;",
	    NULL, NULL, &msg);
	if (rc != SQLITE_OK) {
		snprintf(err, errlen, "cannot set up the store: %s",
		    msg != NULL ? msg : sqlite3_errstr(rc));
		sqlite3_free(msg);
		return store_errno(rc);
	}
	return 0;
}

/*
 * Each migration runs in an IMMEDIATE transaction together with the
 * user_version bump, so a crash in the middle leaves the previous version
 * intact and the migration is simply run again.
 */
int
store_schema_migrate(sqlite3 *db, char *err, size_t errlen)
{
	sqlite3_stmt *st = NULL;
	char *msg = NULL;
	char sql[64];
	int rc, version, ret = 0;

	rc = sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL);
	if (rc != SQLITE_OK || sqlite3_step(st) != SQLITE_ROW) {
		snprintf(err, errlen, "cannot read the schema version: %s",
		    sqlite3_errmsg(db));
		ret = store_errno(rc != SQLITE_OK ? rc : sqlite3_errcode(db));
		if (ret == 0)
			ret = -EIO;
		goto out;
	}
	version = sqlite3_column_int(st, 0);
	sqlite3_finalize(st);
	st = NULL;

	if (version > (int)STORE_NMIGRATIONS) {
		snprintf(err, errlen,
		    "the store is at schema version %d, newer than this "
		    "build's %d: use a newer redrive",
		    version, (int)STORE_NMIGRATIONS);
		ret = -EPROTO;
		goto out;
	}
	for (; version < (int)STORE_NMIGRATIONS; version++) {
		rc = sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, &msg);
		if (rc == SQLITE_OK)
			rc = sqlite3_exec(
			    db, store_migrations[version], NULL, NULL, &msg);
		if (rc == SQLITE_OK) {
			snprintf(sql, sizeof(sql), "PRAGMA user_version=%d",
			    version + 1);
			rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
		}
		if (rc == SQLITE_OK)
			rc = sqlite3_exec(db, "COMMIT", NULL, NULL, &msg);
		if (rc != SQLITE_OK) {
			snprintf(err, errlen,
			    "cannot migrate the store to version %d: %s",
			    version + 1,
			    msg != NULL ? msg : sqlite3_errstr(rc));
			sqlite3_free(msg);
			msg = NULL;
			sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
			ret = store_errno(rc);
			goto out;
		}
	}
out:
	sqlite3_finalize(st);
	return ret;
}
