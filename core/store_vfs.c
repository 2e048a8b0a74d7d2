/*
 * store_vfs: the daemon's SQLite VFS, which gathers the writes of the WAL
 * into one write per commit (store_int.h).
 *
 * SQLite writes a WAL frame as two calls, the 24-byte frame header and
 * then the page, and syncs once the commit's frames are all written.  A
 * webhook batch commits ~25 frames: ~50 pwrite(2) calls, 12% of the store
 * thread's time under webhook load, most of it the cost of a system call
 * rather than of the bytes (docs/bench.md).
 *
 * This VFS is the default one ("unix") but for WAL files, whose writes
 * that follow each other are copied into a buffer and written with one
 * call when something needs them in the file: xSync (every commit ends
 * with one, before the commit is visible to any reader: the WAL index is
 * updated after the sync), xRead, xFileSize, xTruncate, a file control,
 * xClose, a write elsewhere, or a full buffer.  What is on disk when a
 * sync returns is unchanged, so is the promise: a commit is durable when
 * COMMIT returns, and a crash before that loses the uncommitted frames
 * exactly as it did (the WAL's checksums and commit marks tell).  A write
 * that fails when the buffer is written reports its error from the call
 * that wrote it: at xSync, the COMMIT fails with it (SQLITE_FULL on a
 * full disk, as before).
 *
 * This is only right with synchronous=FULL (or EXTRA), which every
 * connection of ours sets (store_schema_pragmas): the WAL is synced at
 * every commit, so no commit becomes visible with its frames still held
 * here.  With NORMAL or OFF a commit ends without a sync and readers would
 * find frames in the WAL index that are not in the file yet.
 *
 * Every other file (the database, its -shm, temporary files) is the
 * default VFS's own file object, opened in place: no indirection at all.
 * Other processes (the CLI) use the default VFS; the files and locks are
 * the same.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "store_int.h"

/*
 * The most bytes held back: 30 frames of 4 KiB pages.  The default VFS
 * writes at most 128 KiB - 1 bytes per call (os_unix.c seekAndWriteFd
 * masks the length with 0x1ffff; a larger write comes out short and is
 * reported as a full disk), so the buffer stays under that.
 */
#define STORE_VFS_BUF ((size_t)124 * 1024)

#define STORE_VFS_NAME "redrive"

/* A WAL file: the real one follows this header in the same allocation. */
struct store_vfs_file {
	sqlite3_file base;
	sqlite3_file *real;
	unsigned char *buf; /* STORE_VFS_BUF bytes, allocated at first use */
	size_t len;	    /* bytes held back in buf */
	sqlite3_int64 off;  /* the file offset of buf[0] */
};

static sqlite3_vfs *store_vfs_real;
static sqlite3_vfs store_vfs;
static pthread_once_t store_vfs_once = PTHREAD_ONCE_INIT;
static int store_vfs_ok;

/* Writes what is held back; an SQLite code (the real write's). */
static int
store_vfs_flush(struct store_vfs_file *f)
{
	int rc;

	if (f->len == 0)
		return SQLITE_OK;
	rc = f->real->pMethods->xWrite(f->real, f->buf, (int)f->len, f->off);
	f->len = 0;
	return rc;
}

static int
store_vfs_close(sqlite3_file *file)
{
	struct store_vfs_file *f = (struct store_vfs_file *)file;
	int rc = store_vfs_flush(f), rc2;

	rc2 = f->real->pMethods->xClose(f->real);
	free(f->buf);
	f->buf = NULL;
	return rc != SQLITE_OK ? rc : rc2;
}

static int
store_vfs_read(sqlite3_file *file, void *p, int n, sqlite3_int64 off)
{
	struct store_vfs_file *f = (struct store_vfs_file *)file;
	int rc = store_vfs_flush(f);

	if (rc != SQLITE_OK)
		return rc;
	return f->real->pMethods->xRead(f->real, p, n, off);
}

static int
store_vfs_write(sqlite3_file *file, const void *p, int n, sqlite3_int64 off)
{
	struct store_vfs_file *f = (struct store_vfs_file *)file;
	size_t want = (size_t)n;
	int rc;

	if (n <= 0)
		return f->real->pMethods->xWrite(f->real, p, n, off);
	/* Not right after what is held, or no room: out with it first. */
	if (f->len > 0 &&
	    (off != f->off + (sqlite3_int64)f->len ||
		want > STORE_VFS_BUF - f->len)) {
		rc = store_vfs_flush(f);
		if (rc != SQLITE_OK)
			return rc;
	}
	if (want > STORE_VFS_BUF)
		return f->real->pMethods->xWrite(f->real, p, n, off);
	if (f->buf == NULL) {
		f->buf = malloc(STORE_VFS_BUF);
		if (f->buf == NULL)
			return f->real->pMethods->xWrite(f->real, p, n, off);
	}
	if (f->len == 0)
		f->off = off;
	memcpy(f->buf + f->len, p, want);
	f->len += want;
	return SQLITE_OK;
}

static int
store_vfs_truncate(sqlite3_file *file, sqlite3_int64 size)
{
	struct store_vfs_file *f = (struct store_vfs_file *)file;
	int rc = store_vfs_flush(f);

	if (rc != SQLITE_OK)
		return rc;
	return f->real->pMethods->xTruncate(f->real, size);
}

static int
store_vfs_sync(sqlite3_file *file, int flags)
{
	struct store_vfs_file *f = (struct store_vfs_file *)file;
	int rc = store_vfs_flush(f);

	if (rc != SQLITE_OK)
		return rc;
	return f->real->pMethods->xSync(f->real, flags);
}

static int
store_vfs_file_size(sqlite3_file *file, sqlite3_int64 *size)
{
	struct store_vfs_file *f = (struct store_vfs_file *)file;
	int rc = store_vfs_flush(f);

	if (rc != SQLITE_OK)
		return rc;
	return f->real->pMethods->xFileSize(f->real, size);
}

static int
store_vfs_lock(sqlite3_file *file, int lock)
{
	struct store_vfs_file *f = (struct store_vfs_file *)file;

	return f->real->pMethods->xLock(f->real, lock);
}

static int
store_vfs_unlock(sqlite3_file *file, int lock)
{
	struct store_vfs_file *f = (struct store_vfs_file *)file;

	return f->real->pMethods->xUnlock(f->real, lock);
}

static int
store_vfs_check_lock(sqlite3_file *file, int *out)
{
	struct store_vfs_file *f = (struct store_vfs_file *)file;

	return f->real->pMethods->xCheckReservedLock(f->real, out);
}

static int
store_vfs_file_control(sqlite3_file *file, int op, void *arg)
{
	struct store_vfs_file *f = (struct store_vfs_file *)file;
	int rc = store_vfs_flush(f);

	if (rc != SQLITE_OK)
		return rc;
	return f->real->pMethods->xFileControl(f->real, op, arg);
}

static int
store_vfs_sector_size(sqlite3_file *file)
{
	struct store_vfs_file *f = (struct store_vfs_file *)file;

	return f->real->pMethods->xSectorSize(f->real);
}

static int
store_vfs_device(sqlite3_file *file)
{
	struct store_vfs_file *f = (struct store_vfs_file *)file;

	return f->real->pMethods->xDeviceCharacteristics(f->real);
}

/*
 * A WAL file has no shared memory nor memory map of its own (both belong
 * to the database file), so the methods stop at version 1.
 */
static const sqlite3_io_methods store_vfs_methods = {
	1,
	store_vfs_close,
	store_vfs_read,
	store_vfs_write,
	store_vfs_truncate,
	store_vfs_sync,
	store_vfs_file_size,
	store_vfs_lock,
	store_vfs_unlock,
	store_vfs_check_lock,
	store_vfs_file_control,
	store_vfs_sector_size,
	store_vfs_device,
	NULL,
	NULL,
	NULL,
	NULL,
	NULL,
	NULL,
};

static int
store_vfs_open(sqlite3_vfs *vfs, sqlite3_filename name, sqlite3_file *file,
    int flags, int *out_flags)
{
	struct store_vfs_file *f = (struct store_vfs_file *)file;
	int rc;

	(void)vfs;
	if ((flags & SQLITE_OPEN_WAL) == 0)
		return store_vfs_real->xOpen(
		    store_vfs_real, name, file, flags, out_flags);
	memset(f, 0, sizeof(*f));
	f->real = (sqlite3_file *)(f + 1);
	rc = store_vfs_real->xOpen(
	    store_vfs_real, name, f->real, flags, out_flags);
	/* The real file is closed already if it has no methods. */
	if (f->real->pMethods != NULL)
		f->base.pMethods = &store_vfs_methods;
	return rc;
}

/* ---- The rest is the default VFS's ------------------------------------- */

static int
store_vfs_delete(sqlite3_vfs *vfs, const char *name, int sync_dir)
{
	(void)vfs;
	return store_vfs_real->xDelete(store_vfs_real, name, sync_dir);
}

static int
store_vfs_access(sqlite3_vfs *vfs, const char *name, int flags, int *out)
{
	(void)vfs;
	return store_vfs_real->xAccess(store_vfs_real, name, flags, out);
}

static int
store_vfs_full_pathname(sqlite3_vfs *vfs, const char *name, int n, char *out)
{
	(void)vfs;
	return store_vfs_real->xFullPathname(store_vfs_real, name, n, out);
}

static void *
store_vfs_dl_open(sqlite3_vfs *vfs, const char *name)
{
	(void)vfs;
	return store_vfs_real->xDlOpen(store_vfs_real, name);
}

static void
store_vfs_dl_error(sqlite3_vfs *vfs, int n, char *msg)
{
	(void)vfs;
	store_vfs_real->xDlError(store_vfs_real, n, msg);
}

static void (*store_vfs_dl_sym(sqlite3_vfs *vfs, void *h, const char *sym))(
    void)
{
	(void)vfs;
	return store_vfs_real->xDlSym(store_vfs_real, h, sym);
}

static void
store_vfs_dl_close(sqlite3_vfs *vfs, void *h)
{
	(void)vfs;
	store_vfs_real->xDlClose(store_vfs_real, h);
}

static int
store_vfs_randomness(sqlite3_vfs *vfs, int n, char *out)
{
	(void)vfs;
	return store_vfs_real->xRandomness(store_vfs_real, n, out);
}

static int
store_vfs_sleep(sqlite3_vfs *vfs, int us)
{
	(void)vfs;
	return store_vfs_real->xSleep(store_vfs_real, us);
}

static int
store_vfs_current_time(sqlite3_vfs *vfs, double *out)
{
	(void)vfs;
	return store_vfs_real->xCurrentTime(store_vfs_real, out);
}

static int
store_vfs_last_error(sqlite3_vfs *vfs, int n, char *out)
{
	(void)vfs;
	return store_vfs_real->xGetLastError(store_vfs_real, n, out);
}

static int
store_vfs_current_time64(sqlite3_vfs *vfs, sqlite3_int64 *out)
{
	(void)vfs;
	return store_vfs_real->xCurrentTimeInt64(store_vfs_real, out);
}

static void
store_vfs_init(void)
{
	sqlite3_vfs *real = sqlite3_vfs_find(NULL);

	/* Version 2 methods are all this VFS forwards (and needs). */
	if (real == NULL || real->iVersion < 2 ||
	    real->xCurrentTimeInt64 == NULL)
		return;
	store_vfs_real = real;
	store_vfs.iVersion = 2;
	store_vfs.szOsFile =
	    (int)sizeof(struct store_vfs_file) + real->szOsFile;
	store_vfs.mxPathname = real->mxPathname;
	store_vfs.zName = STORE_VFS_NAME;
	store_vfs.xOpen = store_vfs_open;
	store_vfs.xDelete = store_vfs_delete;
	store_vfs.xAccess = store_vfs_access;
	store_vfs.xFullPathname = store_vfs_full_pathname;
	store_vfs.xDlOpen = store_vfs_dl_open;
	store_vfs.xDlError = store_vfs_dl_error;
	store_vfs.xDlSym = store_vfs_dl_sym;
	store_vfs.xDlClose = store_vfs_dl_close;
	store_vfs.xRandomness = store_vfs_randomness;
	store_vfs.xSleep = store_vfs_sleep;
	store_vfs.xCurrentTime = store_vfs_current_time;
	store_vfs.xGetLastError = store_vfs_last_error;
	store_vfs.xCurrentTimeInt64 = store_vfs_current_time64;
	store_vfs_ok = sqlite3_vfs_register(&store_vfs, 0) == SQLITE_OK;
}

const char *
store_vfs_name(void)
{
	pthread_once(&store_vfs_once, store_vfs_init);
	return store_vfs_ok ? STORE_VFS_NAME : NULL;
}
