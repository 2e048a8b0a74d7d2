/*
 * store_reconcile: the store job of reconciliation (store_reconcile.h).
 * A read inside the group transaction: recipients that Mailgun accepted
 * ('sent') or is still retrying ('deferred'), untouched for a while,
 * grouped by message and Mailgun id, because the Events API is asked per
 * Mailgun id (FACTS.md 1.3).  Ids longer than the item's buffer cannot be
 * Mailgun's and are skipped.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "redrive/log.h"
#include "redrive/store.h"
#include "redrive/store_reconcile.h"
#include "store_int.h"

#define STORE_RECONCILE_MAX 1000

static const char store_reconcile_due_sql[] =
    "SELECT DISTINCT message_id, mailgun_id FROM recipients"
    " WHERE status IN ('sent', 'deferred') AND mailgun_id IS NOT NULL"
    " AND mailgun_id != '' AND updated_at <= ?1 AND message_id > ?2"
    " ORDER BY message_id, mailgun_id LIMIT ?3";

struct store_reconcile_job {
	struct store_job job;
	int64_t before;
	int64_t after_id;
	size_t max;
	store_reconcile_cb cb;
	void *arg;
	struct store_reconcile_item *items;
	size_t n;
};

/* Store thread: the query. */
static int
store_reconcile_run(sqlite3 *db, struct store_job *job)
{
	struct store_reconcile_job *j = (struct store_reconcile_job *)job;
	sqlite3_stmt *st = NULL;
	const unsigned char *id;
	int rc;

	j->n = 0;
	rc = sqlite3_prepare_v2(db, store_reconcile_due_sql, -1, &st, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_int64(st, 1, j->before);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_int64(st, 2, j->after_id);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_int64(st, 3, (sqlite3_int64)j->max);
	while (rc == SQLITE_OK || rc == SQLITE_ROW) {
		struct store_reconcile_item *it;

		rc = sqlite3_step(st);
		if (rc != SQLITE_ROW)
			break;
		id = sqlite3_column_text(st, 1);
		if (id == NULL ||
		    strlen((const char *)id) >=
			sizeof(j->items[0].mailgun_id) ||
		    j->n >= j->max)
			continue;
		it = &j->items[j->n++];
		it->message_id = sqlite3_column_int64(st, 0);
		memcpy(it->mailgun_id, id, strlen((const char *)id) + 1);
	}
	if (rc == SQLITE_DONE)
		rc = SQLITE_OK;
	if (rc != SQLITE_OK)
		log_error("store: finding messages to reconcile failed",
		    LF_STR("error", sqlite3_errmsg(db)), LF_END);
	sqlite3_finalize(st);
	return rc == SQLITE_OK
	    ? 0
	    : (store_errno(rc) != 0 ? store_errno(rc) : -EIO);
}

/* Loop thread: hands the items over, then frees the job. */
static void
store_reconcile_done(struct store_job *job, int status)
{
	struct store_reconcile_job *j = (struct store_reconcile_job *)job;

	j->cb(status, j->items, status == 0 ? j->n : 0, j->arg);
	free(j->items);
	free(j);
}

int
store_reconcile_due(struct store *st, int64_t before, int64_t after_id,
    size_t max, store_reconcile_cb cb, void *arg)
{
	struct store_reconcile_job *j;
	int rc;

	if (st == NULL || cb == NULL || max == 0 || max > STORE_RECONCILE_MAX)
		return -EINVAL;
	j = calloc(1, sizeof(*j));
	if (j == NULL)
		return -ENOMEM;
	j->items = calloc(max, sizeof(*j->items));
	if (j->items == NULL) {
		free(j);
		return -ENOMEM;
	}
	j->job.run = store_reconcile_run;
	j->job.done = store_reconcile_done;
	j->before = before;
	j->after_id = after_id;
	j->max = max;
	j->cb = cb;
	j->arg = arg;
	rc = store_job_submit(st, &j->job);
	if (rc != 0) {
		free(j->items);
		free(j);
	}
	return rc;
}
