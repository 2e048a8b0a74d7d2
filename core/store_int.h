/*
 * store_int: what the files of the store module share and nobody else may
 * see: the schema and its migrations, and the job type of the store thread.
 */
#ifndef REDRIVE_STORE_INT_H
#define REDRIVE_STORE_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sqlite3.h>

/*
 * Brings db to STORE_SCHEMA_VERSION (PRAGMA user_version), one migration
 * per version, each in its own transaction.  Returns 0, or a negative
 * errno code with the reason in err.  A store newer than this build is
 * refused (-EPROTO).
 */
int store_schema_migrate(sqlite3 *db, char *err, size_t errlen);

/*
 * Applies the per-connection settings every connection needs: WAL,
 * synchronous=FULL, foreign_keys=ON, a busy timeout.  Returns 0 or a
 * negative errno code with the reason in err.
 */
int store_schema_pragmas(sqlite3 *db, int busy_ms, char *err, size_t errlen);

/* Maps an SQLite result code to a negative errno code. */
int store_errno(int rc);

/*
 * The small helpers every store job shares.  store_sql_err: an SQLite code
 * of a failure as a negative errno code, never 0.  store_sql_prepare: one
 * statement (*st NULL on failure), an SQLite code.  store_sql_exec: steps a
 * statement that returns no rows and resets it, an SQLite code.
 */
int store_sql_err(int rc);
int store_sql_prepare(sqlite3 *db, const char *sql, sqlite3_stmt **st);
int store_sql_exec(sqlite3_stmt *st);

/*
 * A cache of prepared statements per connection, for the jobs that run the
 * same SQL over and over (a webhook event runs about ten statements;
 * preparing them each time was 38% of the store thread under load).
 *
 * store_sql_take: like store_sql_prepare, but sql MUST be a string of
 * static storage (the cache is keyed by its address, never by its text)
 * and the statement must be handed back with store_sql_give, never
 * finalized.  A statement of the same SQL that is taken already (a job
 * running the same SQL twice at once) gets a second copy.
 * store_sql_give: resets the statement, clears its bindings and returns it
 * to the cache (or finalizes it when it was not cached); NULL is ignored.
 * store_sql_forget: finalizes every cached statement of db; call it before
 * sqlite3_close.  Thread-safe: each connection is used by one thread at a
 * time, and the table of slots is behind a mutex.
 */
int store_sql_take(sqlite3 *db, const char *sql, sqlite3_stmt **st);
void store_sql_give(sqlite3_stmt *st);
void store_sql_forget(sqlite3 *db);

struct store;

/*
 * The name of the daemon's VFS (core/store_vfs.c): the default one, but
 * with the writes of a WAL file gathered into one write per sync.
 * Registered at the first call; NULL when it cannot be (the default VFS
 * then serves).  Thread-safe.
 */
const char *store_vfs_name(void);

/*
 * The webhook tokens of the replay window, in memory (core/store_tokens.c),
 * for the daemon's store thread only.  store_tokens_find tells whether a
 * token is held and with the same event digest; store_tokens_add holds one
 * more (0 or -ENOMEM); store_tokens_expire lets go of those that arrived
 * before `before`.  The marks follow the store thread's transaction: call
 * txn_begin after BEGIN, job_begin after each SAVEPOINT, job_undo after
 * ROLLBACK TO and txn_undo after a ROLLBACK or a failed COMMIT, and the set
 * holds what is committed plus what the open transaction added.
 * store_tokens_load fills it, inside a transaction, with the tokens of
 * webhook_tokens that arrived at `since` or later (an SQLite code).
 */
struct store_tokens;

enum store_tokens_seen {
	STORE_TOKENS_NEW,   /* not held */
	STORE_TOKENS_SAME,  /* held, with the same digest */
	STORE_TOKENS_OTHER, /* held, with another digest */
};

struct store_tokens *store_tokens_new(void);
void store_tokens_free(struct store_tokens *t);
size_t store_tokens_count(const struct store_tokens *t);
size_t store_tokens_bytes(const struct store_tokens *t);
enum store_tokens_seen store_tokens_find(
    const struct store_tokens *t, const char *token, const char *digest);
int store_tokens_add(
    struct store_tokens *t, const char *token, const char *digest, int64_t at);
void store_tokens_expire(struct store_tokens *t, int64_t before);
void store_tokens_txn_begin(struct store_tokens *t);
void store_tokens_job_begin(struct store_tokens *t);
void store_tokens_job_undo(struct store_tokens *t);
void store_tokens_txn_undo(struct store_tokens *t);
bool store_tokens_loaded(const struct store_tokens *t);
int store_tokens_load(struct store_tokens *t, sqlite3 *db, int64_t since);

/* SipHash-2-4 of data under key (core/store_tokens.c), for its test. */
uint64_t store_tokens_siphash(
    const unsigned char key[16], const void *data, size_t len);

/* The token set of the daemon's store thread (the CLI's store_db has none). */
struct store_tokens *store_tokens_of(struct store *st);

/* The longest SQLite error message the CLI's face keeps. */
#define STORE_QUERY_ERR_MAX 256

/*
 * The CLI's synchronous face (store.h): one connection and the message of
 * its last failure.  Defined here because core/store_query.c and
 * core/store_events.c (store_db_retry) both use it.
 */
struct store_db {
	sqlite3 *db;
	char errmsg[STORE_QUERY_ERR_MAX];
};

/*
 * A unit of work for the store thread (core/store.c).  The submitter owns
 * the job (usually embedded in a larger struct of its own) and keeps it
 * alive until done has run; the store only links it through next.
 *
 * run executes on the store thread, inside the group transaction; it
 * returns 0 or a negative errno code, and must leave every statement it
 * used reset.  On an error nothing it wrote is kept and the other jobs of
 * the batch are unaffected.  It must not COMMIT, ROLLBACK or touch
 * loop-thread state.  run may be called more than once for the same job
 * (core/store.c, store_txn_fast): each call must start afresh, as if the
 * earlier calls never happened (what an earlier call allocated into the
 * job is freed or reused, counts are set, not added to).
 *
 * done executes on the loop thread after the transaction was committed
 * (status 0) or failed (status < 0: nothing the job wrote is stored), in
 * submission order, exactly once for every job accepted by
 * store_job_submit(); it may free the job.
 *
 * bytes is the job's weight for the batch cap (the message bytes it
 * writes); 0 for small jobs.  status and next belong to the store.
 */
struct store_job {
	int (*run)(sqlite3 *db, struct store_job *job);
	void (*done)(struct store_job *job, int status);
	size_t bytes;
	int status;
	struct store_job *next;
};

/*
 * Queues job for the next group commit.  Loop thread.  Returns 0, or
 * -ESHUTDOWN once store_close() was called (done will not run), or
 * -EINVAL when job, run or done is NULL.
 */
int store_job_submit(struct store *st, struct store_job *job);

/*
 * Alerts (core/store_alerts.c), called on the store thread inside the job
 * that set the recipient 'failed', so the alert commits with the failure.
 * The first writes the alert of one recipient (nothing when it is not
 * 'failed' or its alert for this failure exists), composed from the
 * store's rows, why saying why redrive stopped; the second does it for
 * every failed recipient of a message.  SQLite codes.
 */
int store_alerts_recipient_failed(
    sqlite3 *db, int64_t recipient_id, const char *why, int64_t now);
int store_alerts_message_failed(
    sqlite3 *db, int64_t message_id, const char *why, int64_t now);

#endif
