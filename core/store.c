/*
 * store: the daemon's asynchronous face of the SQLite store (store.h).
 *
 * One store thread owns the read-write connection.  The loop thread queues
 * jobs (struct store_job, store_int.h) under a mutex and signals a
 * condition variable; the store thread takes every job that is waiting (up
 * to STORE_BATCH_JOBS jobs or STORE_BATCH_BYTES message bytes), runs them
 * in one IMMEDIATE transaction in which a failing job takes nothing else
 * with it (below), and commits once for all of them (group commit: one
 * fsync for the batch).  The finished jobs go onto a
 * completion list and a uv_async_t wakes the loop thread, which calls each
 * job's done callback in submission order.  A job's done callback runs only
 * once its transaction has committed or failed, which is what lets the
 * relay say 250 only for what is on disk.
 *
 * A batch first runs without savepoints (store_txn_fast): a SAVEPOINT per
 * job copies every page the job touches into a statement journal, about
 * 3 us of the store thread's ~47 us per webhook.  Jobs almost never fail;
 * when one does, that transaction is rolled back whole, the failed job
 * keeps its error, and the others run again, each in its own SAVEPOINT
 * (store_txn).  A job's run may therefore be called twice.
 *
 * Ownership: the store owns its connection, statements, thread and
 * uv_async_t; a job belongs to its submitter and is only linked here.  The
 * struct store itself is freed in the close callback of its uv_async_t.
 *
 * The uv_async_t holds a reference on the loop only while jobs are in
 * flight (like libuv's own threadpool requests), so an idle store never
 * keeps uv_run() from returning.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>
#include <uv.h>

#include "redrive/log.h"
#include "redrive/store.h"
#include "store_int.h"

/* How long a connection waits for a lock held by another one (the CLI). */
#define STORE_BUSY_MS 5000
/* The page cache of the daemon's connection, KiB. */
#define STORE_CACHE_KIB_STR "16384"

/* Group commit caps: a batch ends at whichever is reached first. */
#define STORE_BATCH_JOBS 512
#define STORE_BATCH_BYTES ((size_t)64 * 1024 * 1024)

enum store_stmt_id {
	STORE_STMT_BEGIN = 0,
	STORE_STMT_COMMIT,
	STORE_STMT_ROLLBACK,
	STORE_STMT_SAVEPOINT,
	STORE_STMT_RELEASE,
	STORE_STMT_ROLLBACK_TO,
	STORE_STMT_INS_MESSAGE,
	STORE_STMT_INS_BODY,
	STORE_STMT_INS_RCPT,
	STORE_NSTMTS,
};

static const char *const store_stmt_sql[STORE_NSTMTS] = {
	[STORE_STMT_BEGIN] = "BEGIN IMMEDIATE",
	[STORE_STMT_COMMIT] = "COMMIT",
	[STORE_STMT_ROLLBACK] = "ROLLBACK",
	[STORE_STMT_SAVEPOINT] = "SAVEPOINT j",
	[STORE_STMT_RELEASE] = "RELEASE j",
	[STORE_STMT_ROLLBACK_TO] = "ROLLBACK TO j",
	[STORE_STMT_INS_MESSAGE] =
	    "INSERT INTO messages (received_at, mail_from, helo, client_addr,"
	    " auth_user, subject, message_id, size, smtputf8)"
	    " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
	[STORE_STMT_INS_BODY] =
	    "INSERT INTO bodies (message_id, data) VALUES (?1, ?2)",
	[STORE_STMT_INS_RCPT] =
	    "INSERT INTO recipients (message_id, address, status, attempts,"
	    " updated_at, next_attempt_at)"
	    " VALUES (?1, ?2, 'queued', 0, ?3, NULL)",
};

struct store {
	uv_loop_t *loop;
	uv_async_t async;
	sqlite3 *db;
	sqlite3_stmt *stmt[STORE_NSTMTS];
	struct store_tokens *tokens; /* the store thread's, once started */
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cv;

	/* Under mu: jobs waiting for the store thread, and finished ones. */
	struct store_job *queue_head, *queue_tail;
	struct store_job *done_head, *done_tail;
	uint64_t done_txns; /* transactions behind done_head, not yet counted */
	bool stopping;	    /* the thread ends once the queue is empty */

	/* Loop thread only. */
	struct store_job *ready_head, *ready_tail; /* done callbacks to call */
	uint64_t inflight; /* jobs submitted whose done has not run */
	bool closed;
	struct store_stats stats;

	/* Written by the loop thread, read by the store thread. */
	atomic_int fault;

	/* Written by the store thread after each batch, read by any. */
	_Atomic uint64_t ntokens, token_bytes;
};

/* What store_submit() queues: a job that inserts one message. */
struct store_submit_job {
	struct store_job job;
	struct store *st;
	const struct store_new_message *m;
	store_submit_cb cb;
	void *arg;
	int64_t id;
};

/* Steps a statement that returns no rows and resets it; an SQLite code. */
static int
store_step(sqlite3_stmt *s)
{
	int rc;

	rc = sqlite3_step(s);
	sqlite3_reset(s);
	return rc == SQLITE_DONE || rc == SQLITE_ROW ? SQLITE_OK : rc;
}

/* Steps a fixed statement of the store thread; an SQLite code. */
static int
store_step_id(struct store *st, enum store_stmt_id id)
{
	return store_step(st->stmt[id]);
}

/* ---- store_submit's job ------------------------------------------------ */

/* Binds a text parameter that may be NULL (bound as SQL NULL). */
static int
store_bind_text(sqlite3_stmt *s, int i, const char *v)
{
	if (v == NULL)
		return sqlite3_bind_null(s, i);
	return sqlite3_bind_text(s, i, v, -1, SQLITE_STATIC);
}

/*
 * Inserts the message row, its body and one 'queued' row per envelope
 * recipient.  Store thread, inside the job's savepoint.  Blobs and strings
 * are bound SQLITE_STATIC: the submitter keeps them alive until done.
 */
static int
store_submit_run(sqlite3 *db, struct store_job *job)
{
	struct store_submit_job *sj = (struct store_submit_job *)job;
	const struct store_new_message *m = sj->m;
	sqlite3_stmt *s;
	size_t i;
	int64_t id;
	int rc;

	s = sj->st->stmt[STORE_STMT_INS_MESSAGE];
	rc = sqlite3_bind_int64(s, 1, m->received_at);
	if (rc == SQLITE_OK)
		rc = store_bind_text(s, 2, m->mail_from);
	if (rc == SQLITE_OK)
		rc = store_bind_text(s, 3, m->helo);
	if (rc == SQLITE_OK)
		rc = store_bind_text(s, 4, m->client_addr);
	if (rc == SQLITE_OK)
		rc = store_bind_text(s, 5, m->auth_user);
	if (rc == SQLITE_OK)
		rc = store_bind_text(s, 6, m->subject);
	if (rc == SQLITE_OK)
		rc = store_bind_text(s, 7, m->message_id);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_int64(s, 8, (sqlite3_int64)m->len);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_int(s, 9, m->smtputf8 ? 1 : 0);
	if (rc == SQLITE_OK)
		rc = store_step(s);
	sqlite3_clear_bindings(s);
	if (rc != SQLITE_OK)
		goto out;
	id = sqlite3_last_insert_rowid(db);

	s = sj->st->stmt[STORE_STMT_INS_BODY];
	rc = sqlite3_bind_int64(s, 1, id);
	if (rc == SQLITE_OK) {
		/* A NULL pointer would bind SQL NULL; data is NOT NULL. */
		if (m->len == 0)
			rc = sqlite3_bind_zeroblob(s, 2, 0);
		else
			rc = sqlite3_bind_blob64(s, 2, m->data,
			    (sqlite3_uint64)m->len, SQLITE_STATIC);
	}
	if (rc == SQLITE_OK)
		rc = store_step(s);
	sqlite3_clear_bindings(s);
	if (rc != SQLITE_OK)
		goto out;

	s = sj->st->stmt[STORE_STMT_INS_RCPT];
	for (i = 0; i < m->nrcpts && rc == SQLITE_OK; i++) {
		rc = sqlite3_bind_int64(s, 1, id);
		if (rc == SQLITE_OK)
			rc = store_bind_text(s, 2, m->rcpts[i]);
		if (rc == SQLITE_OK)
			rc = sqlite3_bind_int64(s, 3, m->received_at);
		if (rc == SQLITE_OK)
			rc = store_step(s);
		sqlite3_clear_bindings(s);
	}
	if (rc != SQLITE_OK)
		goto out;
	sj->id = id;
out:
	if (rc != SQLITE_OK) {
		log_error("store insert failed",
		    LF_STR("error", sqlite3_errmsg(db)), LF_END);
		return store_errno(rc) != 0 ? store_errno(rc) : -EIO;
	}
	return 0;
}

/* Hands the result of a store_submit() to its caller.  Loop thread. */
static void
store_submit_done(struct store_job *job, int status)
{
	struct store_submit_job *sj = (struct store_submit_job *)job;

	sj->cb(status, status == 0 ? sj->id : 0, sj->arg);
	free(sj);
}

/* ---- The store thread --------------------------------------------------- */

/*
 * Fails every job of [from, to) that had succeeded with err: their
 * transaction did not commit, so nothing they wrote is stored.
 */
static void
store_fail_range(struct store_job *from, const struct store_job *to, int err)
{
	struct store_job *j;

	for (j = from; j != to; j = j->next)
		if (j->status == 0)
			j->status = err;
}

/* Rolls back the open transaction, if SQLite has not already done so. */
static void
store_rollback(struct store *st)
{
	if (!sqlite3_get_autocommit(st->db))
		(void)store_step_id(st, STORE_STMT_ROLLBACK);
	store_tokens_txn_undo(st->tokens);
}

/* Logs a transaction that failed. Store thread. */
static void
store_log_failed(const char *stage, const char *error, int err, size_t n)
{
	log_error("store commit failed", LF_STR("error", error),
	    LF_STR("stage", stage), LF_INT("errno", -err), LF_INT("batch", n),
	    LF_END);
}

/*
 * Runs one job in its own savepoint of the open transaction and sets its
 * status.  Returns false when the transaction itself is gone (SQLite rolled
 * it back on a hard error, or the savepoint could not be undone), true
 * otherwise.
 */
static bool
store_run_job(struct store *st, struct store_job *j)
{
	int rc, status;

	rc = store_step_id(st, STORE_STMT_SAVEPOINT);
	if (rc != SQLITE_OK) {
		j->status = store_errno(rc) != 0 ? store_errno(rc) : -EIO;
		return !sqlite3_get_autocommit(st->db);
	}
	store_tokens_job_begin(st->tokens);
	status = j->run(st->db, j);
	if (status > 0)
		status = -EIO;
	if (status == 0) {
		rc = store_step_id(st, STORE_STMT_RELEASE);
		if (rc == SQLITE_OK) {
			j->status = 0;
			return true;
		}
		status = store_errno(rc) != 0 ? store_errno(rc) : -EIO;
	}
	j->status = status;
	if (sqlite3_get_autocommit(st->db))
		return false;
	if (store_step_id(st, STORE_STMT_ROLLBACK_TO) != SQLITE_OK ||
	    store_step_id(st, STORE_STMT_RELEASE) != SQLITE_OK)
		return false;
	store_tokens_job_undo(st->tokens);
	return true;
}

/*
 * Opens the transaction of the jobs from first to the end of the list (*n
 * of them).  When BEGIN fails (after the busy timeout, or on an I/O
 * error) logs it, gives every job without an error yet that one and
 * returns false.  Store thread.
 */
static bool
store_begin(struct store *st, struct store_job *first, size_t *n)
{
	struct store_job *j;
	int rc, err;

	*n = 0;
	for (j = first; j != NULL; j = j->next)
		(*n)++;
	store_tokens_txn_begin(st->tokens);
	rc = store_step_id(st, STORE_STMT_BEGIN);
	if (rc == SQLITE_OK)
		return true;
	err = store_errno(rc) != 0 ? store_errno(rc) : -EIO;
	store_log_failed("begin", sqlite3_errmsg(st->db), err, *n);
	store_rollback(st);
	/* A job that failed in an earlier run keeps its own error. */
	store_fail_range(first, NULL, err);
	return false;
}

/*
 * Commits the open transaction of the n jobs from first (after the test
 * hook store_set_fault); on a failure rolls it back and gives every job
 * that had succeeded the error.  Store thread.
 */
static void
store_commit(struct store *st, struct store_job *first, size_t n)
{
	int rc, err;

	err = atomic_load(&st->fault);
	if (err != 0) {
		store_log_failed("fault", "injected fault", err, n);
		store_rollback(st);
		store_fail_range(first, NULL, err);
		return;
	}

	rc = store_step_id(st, STORE_STMT_COMMIT);
	if (rc != SQLITE_OK) {
		err = store_errno(rc) != 0 ? store_errno(rc) : -EIO;
		store_log_failed("commit", sqlite3_errmsg(st->db), err, n);
		store_rollback(st);
		store_fail_range(first, NULL, err);
	}
}

/*
 * Runs the jobs from first to the end of the list in one transaction
 * without savepoints and commits it.  Returns true when every job has its
 * status (BEGIN or COMMIT failing gives each the error, as in store_txn;
 * BEGIN is not tried twice: it may have waited the busy timeout).  Returns
 * false when a job failed or ended the transaction (a hard error SQLite
 * rolled back): the transaction is rolled back, *failed is that job, with
 * its error, and no other job has a status yet.  Store thread.
 */
static bool
store_txn_fast(
    struct store *st, struct store_job *first, struct store_job **failed)
{
	struct store_job *j;
	size_t n;
	int status;

	*failed = NULL;
	if (!store_begin(st, first, &n))
		return true;
	for (j = first; j != NULL; j = j->next) {
		status = j->run(st->db, j);
		if (status == 0 && !sqlite3_get_autocommit(st->db)) {
			j->status = 0;
			continue;
		}
		/* It failed, or the transaction ended under it. */
		j->status = status < 0 ? status : -EIO;
		store_rollback(st);
		*failed = j;
		return false;
	}
	store_commit(st, first, n);
	return true;
}

/*
 * Runs the jobs from first to the end of the list, but skip, in one
 * transaction, each in its own savepoint, and commits it.  Returns NULL
 * when every job has its status, or the job to start the next transaction
 * with when this one was lost half-way (the jobs before it then carry the
 * error that lost it).  Store thread.
 */
static struct store_job *
store_txn(
    struct store *st, struct store_job *first, const struct store_job *skip)
{
	struct store_job *j;
	size_t n;
	int err;

	if (!store_begin(st, first, &n))
		return NULL;
	for (j = first; j != NULL; j = j->next) {
		if (j == skip || store_run_job(st, j))
			continue;
		/* The transaction is lost: so is what the earlier jobs did. */
		err = j->status;
		store_log_failed("job", sqlite3_errmsg(st->db), err, n);
		store_rollback(st);
		store_fail_range(first, j, err);
		return j->next;
	}
	store_commit(st, first, n);
	return NULL;
}

/*
 * Takes the next batch off the queue: every waiting job up to the caps,
 * at least one; *tailp is its last job.  Called with mu held and the
 * queue not empty.
 */
static struct store_job *
store_take_batch(struct store *st, struct store_job **tailp)
{
	struct store_job *head = st->queue_head, *last = head, *j;
	size_t n = 1, bytes = head->bytes;

	for (j = head->next; j != NULL; j = j->next) {
		if (n >= STORE_BATCH_JOBS || bytes >= STORE_BATCH_BYTES ||
		    j->bytes > STORE_BATCH_BYTES - bytes)
			break;
		n++;
		bytes += j->bytes;
		last = j;
	}
	st->queue_head = last->next;
	if (st->queue_head == NULL)
		st->queue_tail = NULL;
	last->next = NULL;
	*tailp = last;
	return head;
}

/*
 * The store thread: waits for jobs, runs them in batches, hands them back
 * through the completion list and the uv_async_t.  Ends once stopping is
 * set and the queue is drained.
 */
static void *
store_thread_main(void *arg)
{
	struct store *st = arg;
	struct store_job *batch, *next, *last, *failed;
	uint64_t txns;

	pthread_mutex_lock(&st->mu);
	for (;;) {
		while (st->queue_head == NULL && !st->stopping)
			pthread_cond_wait(&st->cv, &st->mu);
		if (st->queue_head == NULL)
			break;
		batch = store_take_batch(st, &last);
		pthread_mutex_unlock(&st->mu);

		txns = 1;
		if (!store_txn_fast(st, batch, &failed)) {
			/* A failed first job is passed over, not begun for. */
			txns = 0;
			next = failed == batch ? batch->next : batch;
			while (next != NULL) {
				next = store_txn(st, next, failed);
				txns++;
			}
		}

		atomic_store(&st->ntokens, store_tokens_count(st->tokens));
		atomic_store(&st->token_bytes, store_tokens_bytes(st->tokens));

		pthread_mutex_lock(&st->mu);
		if (st->done_tail != NULL)
			st->done_tail->next = batch;
		else
			st->done_head = batch;
		st->done_tail = last;
		st->done_txns += txns;
		uv_async_send(&st->async);
	}
	pthread_mutex_unlock(&st->mu);
	return NULL;
}

/* ---- The loop thread ---------------------------------------------------- */

/*
 * Moves what the store thread finished onto the loop thread's ready list,
 * then calls each ready job's done callback in submission order.  A done
 * callback may call store_close(), which drains the ready list itself.
 */
static void
store_complete(struct store *st)
{
	struct store_job *head, *tail, *j;
	uint64_t txns;

	pthread_mutex_lock(&st->mu);
	head = st->done_head;
	tail = st->done_tail;
	txns = st->done_txns;
	st->done_head = st->done_tail = NULL;
	st->done_txns = 0;
	pthread_mutex_unlock(&st->mu);

	st->stats.transactions += txns;
	if (head != NULL) {
		if (st->ready_tail != NULL)
			st->ready_tail->next = head;
		else
			st->ready_head = head;
		st->ready_tail = tail;
	}
	while (st->ready_head != NULL) {
		j = st->ready_head;
		st->ready_head = j->next;
		if (st->ready_head == NULL)
			st->ready_tail = NULL;
		j->next = NULL;
		st->stats.requests++;
		if (j->status != 0)
			st->stats.failures++;
		if (--st->inflight == 0 && !st->closed)
			uv_unref((uv_handle_t *)&st->async);
		j->done(j, j->status);
	}
}

static void
store_async_cb(uv_async_t *handle)
{
	store_complete(handle->data);
}

static void
store_close_cb(uv_handle_t *handle)
{
	free(handle->data);
}

int
store_job_submit(struct store *st, struct store_job *job)
{
	if (st == NULL || job == NULL || job->run == NULL || job->done == NULL)
		return -EINVAL;
	if (st->closed)
		return -ESHUTDOWN;
	job->status = 0;
	job->next = NULL;
	if (st->inflight++ == 0)
		uv_ref((uv_handle_t *)&st->async);

	pthread_mutex_lock(&st->mu);
	if (st->queue_tail != NULL)
		st->queue_tail->next = job;
	else
		st->queue_head = job;
	st->queue_tail = job;
	pthread_cond_signal(&st->cv);
	pthread_mutex_unlock(&st->mu);
	return 0;
}

int
store_submit(struct store *st, const struct store_new_message *m,
    store_submit_cb cb, void *arg)
{
	struct store_submit_job *sj;
	size_t i;
	int rc;

	if (st == NULL || m == NULL || cb == NULL || m->mail_from == NULL ||
	    m->nrcpts == 0 || m->rcpts == NULL ||
	    (m->len > 0 && m->data == NULL))
		return -EINVAL;
	for (i = 0; i < m->nrcpts; i++)
		if (m->rcpts[i] == NULL)
			return -EINVAL;
	if (st->closed)
		return -ESHUTDOWN;

	sj = calloc(1, sizeof(*sj));
	if (sj == NULL)
		return -ENOMEM;
	sj->job.run = store_submit_run;
	sj->job.done = store_submit_done;
	sj->job.bytes = m->len;
	sj->st = st;
	sj->m = m;
	sj->cb = cb;
	sj->arg = arg;
	rc = store_job_submit(st, &sj->job);
	if (rc != 0)
		free(sj);
	return rc;
}

struct store_tokens *
store_tokens_of(struct store *st)
{
	return st->tokens;
}

struct store_stats
store_stats(const struct store *st)
{
	struct store_stats s = st->stats;

	s.webhook_tokens = atomic_load(&st->ntokens);
	s.webhook_token_bytes = atomic_load(&st->token_bytes);
	return s;
}

void
store_set_fault(struct store *st, int err)
{
	atomic_store(&st->fault, err);
}

/* Finalizes the statements and closes the connection. Any one thread. */
static void
store_db_shut(struct store *st)
{
	size_t i;
	int rc;

	for (i = 0; i < STORE_NSTMTS; i++) {
		sqlite3_finalize(st->stmt[i]);
		st->stmt[i] = NULL;
	}
	store_tokens_free(st->tokens);
	st->tokens = NULL;
	if (st->db == NULL)
		return;
	store_sql_forget(st->db);
	rc = sqlite3_close(st->db);
	if (rc != SQLITE_OK) {
		/* A job left a statement unfinalized: close when it is. */
		log_error("store close failed",
		    LF_STR("error", sqlite3_errmsg(st->db)), LF_END);
		sqlite3_close_v2(st->db);
	}
	st->db = NULL;
}

/*
 * Stops the store thread after it drained the queue, calls the done
 * callbacks of everything it finished here on the calling (loop) thread,
 * closes the connection and starts closing the uv_async_t, whose close
 * callback frees st.  If the loop never runs again, st itself (and only
 * st) is never freed: everything else is released here.
 */
void
store_close(struct store *st)
{
	if (st == NULL || st->closed)
		return;
	st->closed = true;

	pthread_mutex_lock(&st->mu);
	st->stopping = true;
	pthread_cond_signal(&st->cv);
	pthread_mutex_unlock(&st->mu);
	pthread_join(st->thread, NULL);

	store_complete(st);

	store_db_shut(st);
	pthread_cond_destroy(&st->cv);
	pthread_mutex_destroy(&st->mu);
	uv_close((uv_handle_t *)&st->async, store_close_cb);
}

/*
 * Starts the store thread with every signal blocked, so that signals are
 * delivered to the loop thread only.  Returns 0 or a negative errno code.
 */
static int
store_thread_start(struct store *st)
{
	sigset_t all, old;
	int rc;

	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	rc = pthread_create(&st->thread, NULL, store_thread_main, st);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return -rc;
}

/*
 * Opens the connection, migrates, prepares the statements, starts the
 * store thread and, last, the uv_async_t (so that no failure path leaves a
 * libuv handle that only a loop run could free).  The connection is opened
 * SQLITE_OPEN_NOMUTEX: it is used by one thread at a time (here, then only
 * by the store thread, then here again in store_close after the join).
 */
int
store_open(struct store **out, const char *path, uv_loop_t *loop, char *err,
    size_t errlen)
{
	struct store *st = NULL;
	char local[512], why[512];
	bool mu_ok = false, cv_ok = false, thread_ok = false;
	size_t i;
	int rc, ret = 0;

	if (err == NULL || errlen == 0) {
		err = local;
		errlen = sizeof(local);
	}
	err[0] = '\0';
	if (out == NULL || path == NULL || loop == NULL) {
		snprintf(err, errlen, "store: invalid arguments");
		ret = -EINVAL;
		goto out;
	}
	*out = NULL;
	if (!sqlite3_threadsafe()) {
		snprintf(err, errlen,
		    "%s: SQLite was built without thread support", path);
		ret = -ENOTSUP;
		goto out;
	}
	st = calloc(1, sizeof(*st));
	if (st == NULL) {
		snprintf(err, errlen, "%s: out of memory", path);
		ret = -ENOMEM;
		goto out;
	}
	st->loop = loop;
	atomic_init(&st->fault, 0);
	atomic_init(&st->ntokens, 0);
	atomic_init(&st->token_bytes, 0);
	st->tokens = store_tokens_new();
	if (st->tokens == NULL) {
		snprintf(err, errlen, "%s: out of memory", path);
		ret = -ENOMEM;
		goto out;
	}

	rc = sqlite3_open_v2(path, &st->db,
	    SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
	    store_vfs_name());
	if (rc != SQLITE_OK) {
		snprintf(err, errlen, "%s: cannot open the store: %s", path,
		    st->db != NULL ? sqlite3_errmsg(st->db)
				   : sqlite3_errstr(rc));
		ret = store_errno(rc) != 0 ? store_errno(rc) : -EIO;
		goto out;
	}
	ret = store_schema_pragmas(st->db, STORE_BUSY_MS, why, sizeof(why));
	/*
	 * The daemon's connection keeps up to STORE_CACHE_KIB_STR KiB of pages
	 * (the default 2 MiB made every webhook's lookups read the indexes of
	 * messages and tokens back from the kernel).  Best effort.
	 */
	if (ret == 0)
		(void)sqlite3_exec(st->db,
		    "PRAGMA cache_size=-" STORE_CACHE_KIB_STR, NULL, NULL,
		    NULL);
	if (ret == 0)
		ret = store_schema_migrate(st->db, why, sizeof(why));
	if (ret != 0) {
		snprintf(err, errlen, "%s: %s", path, why);
		goto out;
	}
	for (i = 0; i < STORE_NSTMTS; i++) {
		rc = sqlite3_prepare_v3(st->db, store_stmt_sql[i], -1,
		    SQLITE_PREPARE_PERSISTENT, &st->stmt[i], NULL);
		if (rc != SQLITE_OK) {
			snprintf(err, errlen, "%s: cannot prepare \"%s\": %s",
			    path, store_stmt_sql[i], sqlite3_errmsg(st->db));
			ret = store_errno(rc) != 0 ? store_errno(rc) : -EIO;
			goto out;
		}
	}

	rc = pthread_mutex_init(&st->mu, NULL);
	if (rc != 0) {
		snprintf(err, errlen, "%s: cannot create a mutex", path);
		ret = -rc;
		goto out;
	}
	mu_ok = true;
	rc = pthread_cond_init(&st->cv, NULL);
	if (rc != 0) {
		snprintf(err, errlen, "%s: cannot create a condition", path);
		ret = -rc;
		goto out;
	}
	cv_ok = true;
	ret = store_thread_start(st);
	if (ret != 0) {
		snprintf(
		    err, errlen, "%s: cannot start the store thread", path);
		goto out;
	}
	thread_ok = true;

	ret = uv_async_init(loop, &st->async, store_async_cb);
	if (ret != 0) {
		snprintf(err, errlen,
		    "%s: cannot create the store's async "
		    "handle: %s",
		    path, uv_strerror(ret));
		goto out;
	}
	st->async.data = st;
	uv_unref((uv_handle_t *)&st->async);
	*out = st;
	st = NULL;
out:
	if (st != NULL) {
		if (thread_ok) {
			/* No job was ever queued: the thread just ends. */
			pthread_mutex_lock(&st->mu);
			st->stopping = true;
			pthread_cond_signal(&st->cv);
			pthread_mutex_unlock(&st->mu);
			pthread_join(st->thread, NULL);
		}
		if (cv_ok)
			pthread_cond_destroy(&st->cv);
		if (mu_ok)
			pthread_mutex_destroy(&st->mu);
		store_db_shut(st);
		free(st);
	}
	if (ret != 0)
		log_error("store open failed", LF_STR("path", path),
		    LF_STR("error", err), LF_INT("errno", -ret), LF_END);
	return ret;
}
