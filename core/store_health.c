/*
 * store_health: the ping of GET /healthz (store_health.h).  The job writes
 * nothing; what it tests is the group transaction around it: the write
 * lock (BEGIN IMMEDIATE, within the busy timeout) and the COMMIT, or the
 * injected fault of store_set_fault().
 */
#include <errno.h>
#include <stdlib.h>

#include <sqlite3.h>

#include "redrive/store.h"
#include "redrive/store_health.h"
#include "store_int.h"

struct store_health_job {
	struct store_job job;
	store_health_cb cb;
	void *arg;
};

/* Store thread: nothing to do inside the transaction. */
static int
store_health_run(sqlite3 *db, struct store_job *job)
{
	(void)db;
	(void)job;
	return 0;
}

/* Loop thread: hands the transaction's outcome back. */
static void
store_health_done(struct store_job *job, int status)
{
	struct store_health_job *j = (struct store_health_job *)job;

	j->cb(status, j->arg);
	free(j);
}

int
store_health_ping(struct store *st, store_health_cb cb, void *arg)
{
	struct store_health_job *j;
	int rc;

	if (st == NULL || cb == NULL)
		return -EINVAL;
	j = calloc(1, sizeof(*j));
	if (j == NULL)
		return -ENOMEM;
	j->job.run = store_health_run;
	j->job.done = store_health_done;
	j->cb = cb;
	j->arg = arg;
	rc = store_job_submit(st, &j->job);
	if (rc != 0)
		free(j);
	return rc;
}
