/*
 * Unit tests of the daemon's VFS (core/store_vfs.c): a commit's WAL frames
 * reach the file in a few writes, not two per page (counted through the
 * default VFS's own system call table, and the same count taken with the
 * default VFS to show the test can tell); a transaction larger than the
 * page cache reads back its own spilled and rewritten frames; a write
 * that fails when the buffer goes out fails the COMMIT with SQLITE_FULL,
 * and the next transaction commits; what a COMMIT returned for is in the
 * file even if the process dies right after without closing; and the
 * settings every connection gets sync the WAL at each commit, which the
 * VFS needs.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "../../core/store_int.h"

static char test_dir[64];
static char test_path[128];

/* The pwrite of the default VFS, counted and made to fail on demand. */
typedef ssize_t (*test_pwrite_fn)(int, const void *, size_t, off_t);
static test_pwrite_fn test_real_pwrite;
static const char *test_pwrite_name;
static unsigned test_writes;
static bool test_fail;

static ssize_t
test_pwrite(int fd, const void *p, size_t n, off_t off)
{
	test_writes++;
	if (test_fail) {
		errno = ENOSPC;
		return -1;
	}
	return test_real_pwrite(fd, p, n, off);
}

/* Puts test_pwrite in the default VFS's table (whichever name it uses). */
static void
test_hook_pwrite(void)
{
	static const char *const names[] = { "pwrite64", "pwrite" };
	sqlite3_vfs *unix_vfs = sqlite3_vfs_find(NULL);
	size_t i;

	for (i = 0; i < 2; i++) {
		test_real_pwrite = (test_pwrite_fn)unix_vfs->xGetSystemCall(
		    unix_vfs, names[i]);
		if (test_real_pwrite != NULL &&
		    unix_vfs->xSetSystemCall(unix_vfs, names[i],
			(sqlite3_syscall_ptr)test_pwrite) == SQLITE_OK) {
			test_pwrite_name = names[i];
			return;
		}
	}
	fail_msg("the default VFS has no pwrite to hook");
}

static void
test_unhook_pwrite(void)
{
	sqlite3_vfs *unix_vfs = sqlite3_vfs_find(NULL);

	unix_vfs->xSetSystemCall(unix_vfs, test_pwrite_name, NULL);
	test_writes = 0;
	test_fail = false;
}

static int
test_setup(void **state)
{
	(void)state;
	snprintf(test_dir, sizeof(test_dir), "/tmp/redrive-vfs-XXXXXX");
	if (mkdtemp(test_dir) == NULL)
		return -1;
	snprintf(test_path, sizeof(test_path), "%s/store.db", test_dir);
	return 0;
}

static int
test_teardown(void **state)
{
	char p[160];

	(void)state;
	unlink(test_path);
	snprintf(p, sizeof(p), "%s-wal", test_path);
	unlink(p);
	snprintf(p, sizeof(p), "%s-shm", test_path);
	unlink(p);
	rmdir(test_dir);
	return 0;
}

/* Opens test_path with vfs (NULL: the default) in WAL, synchronous=FULL. */
static sqlite3 *
test_open(const char *vfs)
{
	sqlite3 *db = NULL;

	assert_int_equal(sqlite3_open_v2(test_path, &db,
			     SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, vfs),
	    SQLITE_OK);
	assert_int_equal(sqlite3_exec(db,
			     "PRAGMA journal_mode=WAL;"
			     "PRAGMA synchronous=FULL;"
			     "CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY"
			     " KEY, b BLOB NOT NULL);",
			     NULL, NULL, NULL),
	    SQLITE_OK);
	return db;
}

/* Inserts n rows of size-byte blobs with ids from first, in one txn. */
static int
test_insert(sqlite3 *db, int first, int n, int size)
{
	sqlite3_stmt *st = NULL;
	int i, rc;

	rc = sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
	if (rc != SQLITE_OK)
		return rc;
	assert_int_equal(sqlite3_prepare_v2(db,
			     "INSERT INTO t (id, b) VALUES (?1, zeroblob(?2))",
			     -1, &st, NULL),
	    SQLITE_OK);
	for (i = 0; i < n && rc == SQLITE_OK; i++) {
		sqlite3_bind_int(st, 1, first + i);
		sqlite3_bind_int(st, 2, size);
		rc = sqlite3_step(st) == SQLITE_DONE ? SQLITE_OK
						     : sqlite3_errcode(db);
		sqlite3_reset(st);
	}
	sqlite3_finalize(st);
	if (rc == SQLITE_OK)
		rc = sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
	if (rc != SQLITE_OK)
		(void)sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
	return rc;
}

static int64_t
test_scalar(sqlite3 *db, const char *sql)
{
	sqlite3_stmt *st = NULL;
	int64_t v;

	assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return v;
}

/* Runs sql and checks that its first row's first column is want. */
static void
test_text_is(sqlite3 *db, const char *sql, const char *want)
{
	sqlite3_stmt *st = NULL;

	assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	assert_string_equal((const char *)sqlite3_column_text(st, 0), want);
	sqlite3_finalize(st);
}

static void
test_integrity(sqlite3 *db)
{
	test_text_is(db, "PRAGMA integrity_check", "ok");
}

/* The writes of one commit of 40 pages, through vfs. */
static unsigned
test_commit_writes(const char *vfs, int first)
{
	sqlite3 *db = test_open(vfs);
	unsigned n;

	test_hook_pwrite();
	assert_int_equal(test_insert(db, first, 40, 3000), SQLITE_OK);
	n = test_writes;
	test_unhook_pwrite();
	sqlite3_close(db);
	return n;
}

static void
test_coalesced(void **state)
{
	const char *vfs = store_vfs_name();
	unsigned plain, ours;
	sqlite3 *db;

	(void)state;
	assert_non_null(vfs);
	assert_string_equal(vfs, "redrive");
	/* The same name again: registered once. */
	assert_ptr_equal(store_vfs_name(), vfs);
	plain = test_commit_writes(NULL, 1);
	ours = test_commit_writes(vfs, 1000);
	/* Two writes per page (header, page) without; ~170 KB in 2 with. */
	assert_true(plain >= 80);
	assert_true(ours <= 3);
	db = test_open(NULL);
	assert_int_equal(test_scalar(db, "SELECT count(*) FROM t"), 80);
	test_integrity(db);
	sqlite3_close(db);
}

/*
 * A transaction ten times the page cache: pages spill into the WAL before
 * the commit, are read back and written again, all through the buffer.
 */
static void
test_spill(void **state)
{
	sqlite3 *db = test_open(store_vfs_name()), *plain;

	(void)state;
	assert_int_equal(
	    sqlite3_exec(db, "PRAGMA cache_size=10", NULL, NULL, NULL),
	    SQLITE_OK);
	assert_int_equal(
	    sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db,
			     "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL"
			     " SELECT i + 1 FROM n WHERE i < 2000)"
			     " INSERT INTO t (id, b) SELECT i,"
			     " randomblob(300) FROM n;"
			     "UPDATE t SET b = zeroblob(200 + id % 7)"
			     " WHERE id % 3 = 0;",
			     NULL, NULL, NULL),
	    SQLITE_OK);
	assert_int_equal(test_scalar(db, "SELECT sum(length(b)) FROM t"),
	    (int64_t)test_scalar(db,
		"SELECT sum(CASE WHEN id % 3 = 0 THEN 200 + id % 7"
		" ELSE 300 END) FROM t"));
	assert_int_equal(
	    sqlite3_exec(db, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
	plain = test_open(NULL);
	assert_int_equal(test_scalar(plain, "SELECT count(*) FROM t"), 2000);
	assert_int_equal(
	    test_scalar(plain, "SELECT sum(length(b)) FROM t WHERE id % 3 = 0"),
	    test_scalar(db, "SELECT sum(length(b)) FROM t WHERE id % 3 = 0"));
	test_integrity(plain);
	sqlite3_close(plain);
	sqlite3_close(db);
}

/* A write that fails when the buffer goes out fails the COMMIT. */
static void
test_write_fails(void **state)
{
	sqlite3 *db = test_open(store_vfs_name());

	(void)state;
	assert_int_equal(test_insert(db, 1, 10, 1000), SQLITE_OK);
	test_hook_pwrite();
	test_fail = true;
	assert_int_equal(test_insert(db, 100, 10, 1000), SQLITE_FULL);
	test_unhook_pwrite();
	/* Nothing of it is there; the next transaction commits. */
	assert_int_equal(test_scalar(db, "SELECT count(*) FROM t"), 10);
	assert_int_equal(test_insert(db, 200, 10, 1000), SQLITE_OK);
	assert_int_equal(test_scalar(db, "SELECT count(*) FROM t"), 20);
	test_integrity(db);
	sqlite3_close(db);
}

/* What a COMMIT returned for survives the process dying right after. */
static void
test_durable_at_commit(void **state)
{
	sqlite3 *db;
	pid_t pid;
	int status;

	(void)state;
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		db = test_open(store_vfs_name());
		_exit(test_insert(db, 1, 50, 100) == SQLITE_OK ? 0 : 1);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	db = test_open(NULL);
	assert_int_equal(test_scalar(db, "SELECT count(*) FROM t"), 50);
	test_integrity(db);
	sqlite3_close(db);
}

/*
 * The VFS is only right when every commit syncs the WAL (store_vfs.c):
 * the settings every connection of ours gets must say so.
 */
static void
test_pragmas_sync_full(void **state)
{
	char err[256];
	sqlite3 *db = NULL;

	(void)state;
	assert_int_equal(
	    sqlite3_open_v2(test_path, &db,
		SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, store_vfs_name()),
	    SQLITE_OK);
	assert_int_equal(store_schema_pragmas(db, 100, err, sizeof(err)), 0);
	/* 2 is FULL, 3 EXTRA; NORMAL (1) would let frames stay held. */
	assert_true(test_scalar(db, "PRAGMA synchronous") >= 2);
	test_text_is(db, "PRAGMA journal_mode", "wal");
	sqlite3_close(db);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(
		    test_coalesced, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(
		    test_spill, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(
		    test_write_fails, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(
		    test_durable_at_commit, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(
		    test_pragmas_sync_full, test_setup, test_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
