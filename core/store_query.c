/*
 * store_query: the CLI's synchronous face of the store (struct store_db).
 *
 * The `redrive` command opens the store directly, read-only for log, show,
 * stats and tail, and reads while the daemon writes (WAL).  It never
 * migrates: a store at another schema version is refused and the user is
 * told to start redrived once, which migrates it.  Every query here uses
 * bound parameters only; the SQL text never contains a value.
 *
 * A message's status is derived from its recipients, in SQL so that the
 * status filter and LIMIT compose: all delivered gives delivered, any
 * failed gives failed, otherwise the least advanced state by the rank
 * queued < retrying < sent < deferred < delivered.  A message without
 * recipients (which the relay never stores) counts as queued.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <sqlite3.h>

#include "redrive/store.h"
#include "store_int.h"

#define STORE_QUERY_BUSY_MS 5000
/* No Message-ID or Mailgun id is longer than an SMTP line (RFC 5322 2.1.1). */
#define STORE_QUERY_ID_MAX 998

/* Status ranks as the derived-status SQL computes them. */
enum store_query_rank {
	STORE_RANK_QUEUED = 0,
	STORE_RANK_RETRYING,
	STORE_RANK_SENT,
	STORE_RANK_DEFERRED,
	STORE_RANK_DELIVERED,
	STORE_RANK_FAILED,
	STORE_RANK_COUNT,
};

static const char *const store_query_rank_names[STORE_RANK_COUNT] = {
	"queued",
	"retrying",
	"sent",
	"deferred",
	"delivered",
	"failed",
};

/*
 * The columns of a message row; store_query_fill_message() reads them by
 * the indexes below.  mailgun_id is the latest: that of the latest send
 * that got one (a re-drive gets a new id), else messages.mailgun_id.
 */
#define STORE_QUERY_MSG_COLS                                             \
	"m.id AS id, m.received_at AS received_at, m.mail_from, m.helo," \
	" m.client_addr, m.auth_user, m.subject, m.message_id,"          \
	" COALESCE((SELECT a.mailgun_id FROM attempts a"                 \
	"   WHERE a.message_id = m.id AND a.mailgun_id IS NOT NULL"      \
	"   ORDER BY a.at DESC, a.id DESC LIMIT 1), m.mailgun_id),"      \
	" m.size,"                                                       \
	" (SELECT CASE WHEN count(*) = 0 THEN 0"                         \
	"   WHEN max(r.status = 'failed') THEN 5"                        \
	"   ELSE min(CASE r.status WHEN 'queued' THEN 0"                 \
	"     WHEN 'retrying' THEN 1 WHEN 'sent' THEN 2"                 \
	"     WHEN 'deferred' THEN 3 ELSE 4 END) END"                    \
	"   FROM recipients r WHERE r.message_id = m.id) AS st,"         \
	" (SELECT count(*) FROM attempts a WHERE a.message_id = m.id)"

enum {
	STORE_QC_ID = 0,
	STORE_QC_RECEIVED_AT,
	STORE_QC_MAIL_FROM,
	STORE_QC_HELO,
	STORE_QC_CLIENT_ADDR,
	STORE_QC_AUTH_USER,
	STORE_QC_SUBJECT,
	STORE_QC_MESSAGE_ID,
	STORE_QC_MAILGUN_ID,
	STORE_QC_SIZE,
	STORE_QC_STATUS,
	STORE_QC_ATTEMPTS,
};

/*
 * The log query.  ?1 since, ?2 exact sender, ?3 sender "@domain", ?4 exact
 * recipient, ?5 recipient "@domain", ?6 the bit mask of wanted status
 * ranks, ?7 the limit.  An "@domain" matches the end of the address, the
 * '@' included, so "@example.org" matches neither "x@sub.example.org" nor
 * "x@badexample.org".
 */
static const char store_query_log_sql[] =
    "SELECT * FROM (SELECT " STORE_QUERY_MSG_COLS " FROM messages m"
    " WHERE m.received_at >= ?1"
    " AND (?2 IS NULL OR m.mail_from = ?2 COLLATE NOCASE)"
    " AND (?3 IS NULL OR substr(m.mail_from, -length(?3)) = ?3"
    "   COLLATE NOCASE)"
    " AND (?4 IS NULL OR EXISTS (SELECT 1 FROM recipients r"
    "   WHERE r.message_id = m.id AND r.address = ?4 COLLATE NOCASE))"
    " AND (?5 IS NULL OR EXISTS (SELECT 1 FROM recipients r"
    "   WHERE r.message_id = m.id"
    "   AND substr(r.address, -length(?5)) = ?5 COLLATE NOCASE)))"
    " WHERE ((?6 >> st) & 1) != 0"
    " ORDER BY received_at DESC, id DESC LIMIT ?7";

static const char store_query_message_sql[] =
    "SELECT " STORE_QUERY_MSG_COLS " FROM messages m WHERE m.id = ?1";

static const char store_query_rcpts_sql[] =
    "SELECT id, address, status, attempts, reason, last_error, mailgun_id,"
    " next_attempt_at, updated_at FROM recipients WHERE message_id = ?1"
    " ORDER BY id";

/* Records the connection's last SQLite error and returns it as errno. */
static int
store_query_fail(struct store_db *db, int rc)
{
	int ret;

	snprintf(db->errmsg, sizeof(db->errmsg), "%s", sqlite3_errmsg(db->db));
	ret = store_errno(rc);
	return ret != 0 ? ret : -EIO;
}

/*
 * Prepares sql on db.  Returns 0 or a negative errno code with the reason
 * recorded for store_db_errmsg().
 */
static int
store_query_prepare(struct store_db *db, const char *sql, sqlite3_stmt **st)
{
	int rc;

	*st = NULL;
	rc = sqlite3_prepare_v2(db->db, sql, -1, st, NULL);
	if (rc != SQLITE_OK)
		return store_query_fail(db, rc);
	return 0;
}

/*
 * Copies text column col of st into *out (NULL for SQL NULL).  Returns 0
 * or -ENOMEM.
 */
static int
store_query_text(sqlite3_stmt *st, int col, char **out)
{
	const unsigned char *p;
	size_t n;
	char *s;

	*out = NULL;
	if (sqlite3_column_type(st, col) == SQLITE_NULL)
		return 0;
	p = sqlite3_column_text(st, col);
	if (p == NULL)
		return -ENOMEM;
	n = (size_t)sqlite3_column_bytes(st, col);
	s = malloc(n + 1);
	if (s == NULL)
		return -ENOMEM;
	memcpy(s, p, n);
	s[n] = '\0';
	*out = s;
	return 0;
}

/* Copies a constant status name into *out.  Returns 0 or -ENOMEM. */
static int
store_query_strdup(const char *src, char **out)
{
	*out = strdup(src);
	return *out != NULL ? 0 : -ENOMEM;
}

/*
 * Opens the store at path for the CLI.  The file must exist (a read-write
 * open does not create it either) and be at exactly STORE_SCHEMA_VERSION.
 */
int
store_db_open(struct store_db **out, const char *path, bool readonly, char *err,
    size_t errlen)
{
	struct store_db *db = NULL;
	sqlite3_stmt *st = NULL;
	struct stat sb;
	int rc, flags, version, ret = 0;

	*out = NULL;
	if (stat(path, &sb) != 0) {
		ret = -errno;
		if (ret == -ENOENT)
			snprintf(err, errlen, "no store at %s", path);
		else
			snprintf(err, errlen, "cannot open the store at %s: %s",
			    path, strerror(errno));
		goto out;
	}
	if (!S_ISREG(sb.st_mode)) {
		snprintf(err, errlen, "%s is not a store (not a file)", path);
		ret = -EINVAL;
		goto out;
	}
	db = calloc(1, sizeof(*db));
	if (db == NULL) {
		snprintf(err, errlen, "out of memory");
		ret = -ENOMEM;
		goto out;
	}
	flags = readonly ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE;
	rc = sqlite3_open_v2(path, &db->db, flags, NULL);
	if (rc != SQLITE_OK) {
		snprintf(err, errlen, "cannot open the store at %s: %s", path,
		    db->db != NULL ? sqlite3_errmsg(db->db)
				   : sqlite3_errstr(rc));
		ret = store_errno(rc);
		goto out;
	}
	sqlite3_extended_result_codes(db->db, 1);
	sqlite3_busy_timeout(db->db, STORE_QUERY_BUSY_MS);

	/*
	 * The first read, before anything could write: it also tells a file
	 * that is not a database.
	 */
	rc = sqlite3_prepare_v2(db->db, "PRAGMA user_version", -1, &st, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(st);
	if (rc != SQLITE_ROW) {
		/*
		 * A WAL reader must create PATH-shm when no connection has; in
		 * a directory it may not write to, SQLite only says "attempt
		 * to write a readonly database".
		 */
		snprintf(err, errlen, "cannot read the store at %s: %s%s", path,
		    sqlite3_errmsg(db->db),
		    sqlite3_extended_errcode(db->db) ==
			    SQLITE_READONLY_DIRECTORY
			? " (its -shm file is missing and the directory is "
			  "not writable: start redrived, or read as a user "
			  "who may write there)"
			: "");
		ret = store_errno(rc);
		if (ret == 0)
			ret = -EIO;
		goto out;
	}
	version = sqlite3_column_int(st, 0);
	if (version == 0) {
		snprintf(err, errlen,
		    "the store at %s has no schema yet: start redrived once "
		    "to create it",
		    path);
		ret = -EPROTO;
		goto out;
	}
	if (version < STORE_SCHEMA_VERSION) {
		snprintf(err, errlen,
		    "the store at %s is at schema version %d and this redrive "
		    "needs version %d: start redrived once to migrate it",
		    path, version, STORE_SCHEMA_VERSION);
		ret = -EPROTO;
		goto out;
	}
	if (version > STORE_SCHEMA_VERSION) {
		snprintf(err, errlen,
		    "the store at %s is at schema version %d, newer than this "
		    "redrive's %d: use a newer redrive",
		    path, version, STORE_SCHEMA_VERSION);
		ret = -EPROTO;
		goto out;
	}
	/* A reader changes no journal mode; a writer sets what the daemon does.
	 */
	if (!readonly)
		ret = store_schema_pragmas(
		    db->db, STORE_QUERY_BUSY_MS, err, errlen);
out:
	sqlite3_finalize(st);
	if (ret != 0) {
		store_db_close(db);
		return ret;
	}
	*out = db;
	return 0;
}

void
store_db_close(struct store_db *db)
{
	if (db == NULL)
		return;
	store_sql_forget(db->db);
	sqlite3_close_v2(db->db);
	free(db);
}

const char *
store_db_errmsg(const struct store_db *db)
{
	return db->errmsg[0] != '\0' ? db->errmsg : "no error";
}

static void
store_query_rcpt_clear(struct store_recipient_row *r)
{
	free(r->address);
	free(r->status);
	free(r->reason);
	free(r->last_error);
	free(r->mailgun_id);
	memset(r, 0, sizeof(*r));
}

void
store_message_row_clear(struct store_message_row *row)
{
	size_t i;

	if (row == NULL)
		return;
	free(row->mail_from);
	free(row->helo);
	free(row->client_addr);
	free(row->auth_user);
	free(row->subject);
	free(row->message_id);
	free(row->mailgun_id);
	free(row->status);
	for (i = 0; i < row->nrcpts; i++)
		store_query_rcpt_clear(&row->rcpts[i]);
	free(row->rcpts);
	memset(row, 0, sizeof(*row));
}

/* A text column and where store_query_texts() puts its copy. */
struct store_query_col {
	int col;
	char **dst;
};

/* Copies each listed text column.  Returns 0 or -ENOMEM. */
static int
store_query_texts(
    sqlite3_stmt *st, const struct store_query_col *cols, size_t n)
{
	size_t i;
	int ret;

	for (i = 0; i < n; i++) {
		ret = store_query_text(st, cols[i].col, cols[i].dst);
		if (ret != 0)
			return ret;
	}
	return 0;
}

/*
 * Fills row from the current result row of st (STORE_QUERY_MSG_COLS).
 * On failure row may be partly filled; the caller clears it.
 */
static int
store_query_fill_message(sqlite3_stmt *st, struct store_message_row *row)
{
	const struct store_query_col cols[] = {
		{ STORE_QC_MAIL_FROM, &row->mail_from },
		{ STORE_QC_HELO, &row->helo },
		{ STORE_QC_CLIENT_ADDR, &row->client_addr },
		{ STORE_QC_AUTH_USER, &row->auth_user },
		{ STORE_QC_SUBJECT, &row->subject },
		{ STORE_QC_MESSAGE_ID, &row->message_id },
		{ STORE_QC_MAILGUN_ID, &row->mailgun_id },
	};
	int rank, ret;

	memset(row, 0, sizeof(*row));
	row->id = sqlite3_column_int64(st, STORE_QC_ID);
	row->received_at = sqlite3_column_int64(st, STORE_QC_RECEIVED_AT);
	row->size = sqlite3_column_int64(st, STORE_QC_SIZE);
	row->attempts = sqlite3_column_int(st, STORE_QC_ATTEMPTS);
	rank = sqlite3_column_int(st, STORE_QC_STATUS);
	if (rank < 0 || rank >= STORE_RANK_COUNT)
		rank = STORE_RANK_QUEUED;
	ret = store_query_texts(st, cols, sizeof(cols) / sizeof(cols[0]));
	if (ret == 0)
		ret = store_query_strdup(
		    store_query_rank_names[rank], &row->status);
	if (ret == 0 && row->mail_from == NULL)
		ret = store_query_strdup("", &row->mail_from);
	return ret;
}

/*
 * Fills r from the current row of the recipients query.  The columns are
 * NOT NULL in the schema; reason is kept for failed recipients only, as
 * the contract says.
 */
static int
store_query_rcpt_fill(sqlite3_stmt *st, struct store_recipient_row *r)
{
	const struct store_query_col cols[] = {
		{ 1, &r->address },
		{ 2, &r->status },
		{ 5, &r->last_error },
		{ 6, &r->mailgun_id },
	};
	int ret;

	r->id = sqlite3_column_int64(st, 0);
	r->attempts = sqlite3_column_int(st, 3);
	r->next_attempt_at = sqlite3_column_int64(st, 7);
	r->updated_at = sqlite3_column_int64(st, 8);
	ret = store_query_texts(st, cols, sizeof(cols) / sizeof(cols[0]));
	if (ret == 0 && r->address == NULL)
		ret = store_query_strdup("", &r->address);
	if (ret == 0 && r->status == NULL)
		ret = store_query_strdup("queued", &r->status);
	if (ret == 0 && strcmp(r->status, "failed") == 0)
		ret = store_query_text(st, 4, &r->reason);
	return ret;
}

/*
 * Loads the recipients of row->id with the prepared rcpts statement (reset
 * here).
 */
static int
store_query_load_rcpts(
    struct store_db *db, sqlite3_stmt *st, struct store_message_row *row)
{
	struct store_recipient_row *r, *grown;
	size_t cap = 0;
	int rc, ret = 0;

	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	sqlite3_bind_int64(st, 1, row->id);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (row->nrcpts == cap) {
			cap = cap != 0 ? cap * 2 : 4;
			grown = reallocarray(row->rcpts, cap, sizeof(*grown));
			if (grown == NULL)
				return -ENOMEM;
			row->rcpts = grown;
		}
		r = &row->rcpts[row->nrcpts++];
		memset(r, 0, sizeof(*r));
		ret = store_query_rcpt_fill(st, r);
		if (ret != 0)
			return ret;
	}
	if (rc != SQLITE_DONE)
		ret = store_query_fail(db, rc);
	sqlite3_reset(st);
	return ret;
}

/* Returns the rank of a status name, or -1 for an unknown one. */
static int
store_query_rank(const char *status)
{
	int i;

	for (i = 0; i < STORE_RANK_COUNT; i++)
		if (strcmp(status, store_query_rank_names[i]) == 0)
			return i;
	return -1;
}

/*
 * Binds an address filter: "@domain" goes to the suffix parameter, anything
 * else to the exact one; the other is left NULL.  Returns an SQLite code.
 */
static int
store_query_bind_addr(sqlite3_stmt *st, int exact, int domain, const char *addr)
{
	if (addr == NULL)
		return SQLITE_OK;
	if (addr[0] == '@')
		return sqlite3_bind_text(st, domain, addr, -1, SQLITE_STATIC);
	return sqlite3_bind_text(st, exact, addr, -1, SQLITE_STATIC);
}

/*
 * Walks the messages matching f, newest first.  The walk runs inside one
 * read transaction, so every message and its recipients come from the
 * same snapshot even while the daemon commits.
 */
int
store_db_log(struct store_db *db, const struct store_log_filter *f,
    store_message_cb cb, void *arg)
{
	struct store_message_row row;
	sqlite3_stmt *st = NULL, *rst = NULL;
	bool in_txn = false;
	int64_t mask = 0;
	size_t i;
	int rank, rc, ret = 0;

	memset(&row, 0, sizeof(row));
	db->errmsg[0] = '\0';
	if (f->limit <= 0) {
		snprintf(db->errmsg, sizeof(db->errmsg), "bad limit");
		return -EINVAL;
	}
	if (f->statuses == NULL || f->nstatuses == 0)
		mask = (1 << STORE_RANK_COUNT) - 1;
	for (i = 0; f->statuses != NULL && i < f->nstatuses; i++) {
		rank = store_query_rank(f->statuses[i]);
		if (rank < 0) {
			snprintf(
			    db->errmsg, sizeof(db->errmsg), "unknown status");
			return -EINVAL;
		}
		mask |= (int64_t)1 << rank;
	}

	rc = sqlite3_exec(db->db, "BEGIN", NULL, NULL, NULL);
	if (rc != SQLITE_OK) {
		ret = store_query_fail(db, rc);
		goto out;
	}
	in_txn = true;
	ret = store_query_prepare(db, store_query_log_sql, &st);
	if (ret == 0)
		ret = store_query_prepare(db, store_query_rcpts_sql, &rst);
	if (ret != 0)
		goto out;
	rc = sqlite3_bind_int64(st, 1, f->since);
	if (rc == SQLITE_OK)
		rc = store_query_bind_addr(st, 2, 3, f->from);
	if (rc == SQLITE_OK)
		rc = store_query_bind_addr(st, 4, 5, f->to);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_int64(st, 6, mask);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_int64(st, 7, f->limit);
	if (rc != SQLITE_OK) {
		ret = store_query_fail(db, rc);
		goto out;
	}
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		ret = store_query_fill_message(st, &row);
		if (ret == 0)
			ret = store_query_load_rcpts(db, rst, &row);
		if (ret == 0)
			ret = cb(&row, arg);
		store_message_row_clear(&row);
		if (ret != 0)
			goto out;
	}
	if (rc != SQLITE_DONE)
		ret = store_query_fail(db, rc);
out:
	sqlite3_finalize(st);
	sqlite3_finalize(rst);
	if (in_txn)
		sqlite3_exec(db->db, "COMMIT", NULL, NULL, NULL);
	return ret;
}

/*
 * Runs sql, which takes one text parameter and returns one message id per
 * row, newest message first; *id gets the first.  Returns 0, -ENOENT or an
 * error.
 */
static int
store_query_lookup(struct store_db *db, const char *sql, const char *text,
    size_t len, int64_t *id)
{
	sqlite3_stmt *st = NULL;
	int rc, ret;

	ret = store_query_prepare(db, sql, &st);
	if (ret != 0)
		return ret;
	rc = sqlite3_bind_text(st, 1, text, (int)len, SQLITE_STATIC);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		*id = sqlite3_column_int64(st, 0);
		ret = 0;
	} else if (rc == SQLITE_DONE) {
		ret = -ENOENT;
	} else {
		ret = store_query_fail(db, rc);
	}
	sqlite3_finalize(st);
	return ret;
}

/* Returns 0 when message id exists, -ENOENT when not, or an error. */
static int
store_query_exists(struct store_db *db, int64_t id)
{
	sqlite3_stmt *st = NULL;
	int rc, ret;

	ret = store_query_prepare(
	    db, "SELECT 1 FROM messages WHERE id = ?1", &st);
	if (ret != 0)
		return ret;
	sqlite3_bind_int64(st, 1, id);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		ret = 0;
	else if (rc == SQLITE_DONE)
		ret = -ENOENT;
	else
		ret = store_query_fail(db, rc);
	sqlite3_finalize(st);
	return ret;
}

/*
 * Parses text as a local id: decimal digits only, no sign, no overflow.
 * Returns true and *id when it is one.
 */
static bool
store_query_parse_id(const char *text, int64_t *id)
{
	char *end;
	long long v;
	size_t i;

	if (text[0] == '\0')
		return false;
	for (i = 0; text[i] != '\0'; i++)
		if (text[i] < '0' || text[i] > '9')
			return false;
	errno = 0;
	v = strtoll(text, &end, 10);
	if (errno != 0 || *end != '\0' || v <= 0)
		return false;
	*id = (int64_t)v;
	return true;
}

/*
 * Resolves an ID: an all-digit text names a local id when that message
 * exists; otherwise the text, with surrounding blanks and one pair of
 * angle brackets removed, is looked up as a Message-ID (the newest message
 * wins when several share one), then as a Mailgun id of a message, of a
 * recipient, of a send.
 */
int
store_db_resolve(struct store_db *db, const char *text, int64_t *id)
{
	static const char *const sqls[] = {
		"SELECT id FROM messages WHERE message_id = ?1"
		" ORDER BY received_at DESC, id DESC LIMIT 1",
		"SELECT id FROM messages WHERE mailgun_id = ?1"
		" ORDER BY received_at DESC, id DESC LIMIT 1",
		"SELECT message_id FROM recipients WHERE mailgun_id = ?1"
		" ORDER BY message_id DESC LIMIT 1",
		"SELECT message_id FROM attempts WHERE mailgun_id = ?1"
		" ORDER BY message_id DESC LIMIT 1",
	};
	const char *p, *e;
	int64_t local;
	size_t i, len;
	int ret;

	db->errmsg[0] = '\0';
	if (store_query_parse_id(text, &local)) {
		ret = store_query_exists(db, local);
		if (ret == 0) {
			*id = local;
			return 0;
		}
		if (ret != -ENOENT)
			return ret;
	}

	p = text;
	e = text + strlen(text);
	while (p < e && (*p == ' ' || *p == '\t'))
		p++;
	while (e > p && (e[-1] == ' ' || e[-1] == '\t'))
		e--;
	if (e - p >= 2 && *p == '<' && e[-1] == '>') {
		p++;
		e--;
	}
	len = (size_t)(e - p);
	if (len == 0 || len > STORE_QUERY_ID_MAX)
		return -EINVAL;
	for (i = 0; i < len; i++)
		if ((unsigned char)p[i] <= ' ' || p[i] == 0x7f)
			return -EINVAL;

	for (i = 0; i < sizeof(sqls) / sizeof(sqls[0]); i++) {
		ret = store_query_lookup(db, sqls[i], p, len, id);
		if (ret != -ENOENT)
			return ret;
	}
	return -ENOENT;
}

/*
 * Loads one message and its recipients in one read transaction.
 */
int
store_db_message(struct store_db *db, int64_t id, struct store_message_row *out)
{
	sqlite3_stmt *st = NULL, *rst = NULL;
	bool in_txn = false;
	int rc, ret = 0;

	memset(out, 0, sizeof(*out));
	db->errmsg[0] = '\0';
	rc = sqlite3_exec(db->db, "BEGIN", NULL, NULL, NULL);
	if (rc != SQLITE_OK) {
		ret = store_query_fail(db, rc);
		goto out;
	}
	in_txn = true;
	ret = store_query_prepare(db, store_query_message_sql, &st);
	if (ret == 0)
		ret = store_query_prepare(db, store_query_rcpts_sql, &rst);
	if (ret != 0)
		goto out;
	sqlite3_bind_int64(st, 1, id);
	rc = sqlite3_step(st);
	if (rc == SQLITE_DONE) {
		ret = -ENOENT;
		goto out;
	}
	if (rc != SQLITE_ROW) {
		ret = store_query_fail(db, rc);
		goto out;
	}
	ret = store_query_fill_message(st, out);
	if (ret == 0)
		ret = store_query_load_rcpts(db, rst, out);
out:
	sqlite3_finalize(st);
	sqlite3_finalize(rst);
	if (in_txn)
		sqlite3_exec(db->db, "COMMIT", NULL, NULL, NULL);
	if (ret != 0)
		store_message_row_clear(out);
	return ret;
}

/*
 * Copies the body of message id.  An empty body is a valid zero-length
 * buffer (malloc'd, so the caller's free() is uniform).
 */
int
store_db_body(struct store_db *db, int64_t id, void **data, size_t *len)
{
	sqlite3_stmt *st = NULL;
	const void *p;
	size_t n;
	void *buf;
	int rc, ret = 0;

	*data = NULL;
	*len = 0;
	db->errmsg[0] = '\0';
	ret = store_query_prepare(
	    db, "SELECT data FROM bodies WHERE message_id = ?1", &st);
	if (ret != 0)
		return ret;
	sqlite3_bind_int64(st, 1, id);
	rc = sqlite3_step(st);
	if (rc == SQLITE_DONE) {
		ret = -ENOENT;
		goto out;
	}
	if (rc != SQLITE_ROW) {
		ret = store_query_fail(db, rc);
		goto out;
	}
	p = sqlite3_column_blob(st, 0);
	n = (size_t)sqlite3_column_bytes(st, 0);
	if (p == NULL && n != 0) {
		ret = -ENOMEM;
		goto out;
	}
	buf = malloc(n != 0 ? n : 1);
	if (buf == NULL) {
		ret = -ENOMEM;
		goto out;
	}
	if (n != 0)
		memcpy(buf, p, n);
	*data = buf;
	*len = n;
out:
	sqlite3_finalize(st);
	return ret;
}

void
store_send_rows_free(struct store_send_row *rows, size_t n)
{
	size_t i, j;

	if (rows == NULL)
		return;
	for (i = 0; i < n; i++) {
		free(rows[i].via);
		free(rows[i].mailgun_id);
		free(rows[i].result);
		for (j = 0; j < rows[i].nrecipients; j++)
			free(rows[i].recipients[j]);
		free(rows[i].recipients);
	}
	free(rows);
}

/* Loads the addresses a send carried, by recipient id order. */
static int
store_query_send_rcpts(struct store_db *db, sqlite3_stmt *st,
    int64_t attempt_id, struct store_send_row *s)
{
	size_t cap = 0;
	char **grown;
	int rc, ret = 0;

	sqlite3_reset(st);
	sqlite3_bind_int64(st, 1, attempt_id);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (s->nrecipients == cap) {
			cap = cap != 0 ? cap * 2 : 4;
			grown =
			    reallocarray(s->recipients, cap, sizeof(*grown));
			if (grown == NULL)
				return -ENOMEM;
			s->recipients = grown;
		}
		ret = store_query_text(st, 0, &s->recipients[s->nrecipients]);
		if (ret != 0)
			return ret;
		if (s->recipients[s->nrecipients] == NULL)
			continue;
		s->nrecipients++;
	}
	if (rc != SQLITE_DONE)
		ret = store_query_fail(db, rc);
	sqlite3_reset(st);
	return ret;
}

/*
 * Loads every send (row of attempts) of message id, oldest first, each with
 * the addresses it carried.
 */
int
store_db_sends(
    struct store_db *db, int64_t id, struct store_send_row **out, size_t *n)
{
	struct store_send_row *rows = NULL, *grown, *s;
	sqlite3_stmt *st = NULL, *rst = NULL;
	size_t cap = 0, count = 0;
	bool in_txn = false;
	int rc, ret = 0;

	*out = NULL;
	*n = 0;
	db->errmsg[0] = '\0';
	rc = sqlite3_exec(db->db, "BEGIN", NULL, NULL, NULL);
	if (rc != SQLITE_OK) {
		ret = store_query_fail(db, rc);
		goto out;
	}
	in_txn = true;
	ret = store_query_prepare(db,
	    "SELECT id, at, via, http_status, mailgun_id, result"
	    " FROM attempts WHERE message_id = ?1 ORDER BY at, id",
	    &st);
	if (ret == 0)
		ret = store_query_prepare(db,
		    "SELECT r.address FROM attempt_rcpts ar"
		    " JOIN recipients r ON r.id = ar.recipient_id"
		    " WHERE ar.attempt_id = ?1 ORDER BY r.id",
		    &rst);
	if (ret != 0)
		goto out;
	sqlite3_bind_int64(st, 1, id);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (count == cap) {
			cap = cap != 0 ? cap * 2 : 4;
			grown = reallocarray(rows, cap, sizeof(*grown));
			if (grown == NULL) {
				ret = -ENOMEM;
				goto out;
			}
			rows = grown;
		}
		s = &rows[count++];
		memset(s, 0, sizeof(*s));
		s->at = sqlite3_column_int64(st, 1);
		s->http_status = sqlite3_column_int(st, 3);
		{
			const struct store_query_col cols[] = {
				{ 2, &s->via },
				{ 4, &s->mailgun_id },
				{ 5, &s->result },
			};
			ret = store_query_texts(
			    st, cols, sizeof(cols) / sizeof(cols[0]));
		}
		if (ret == 0)
			ret = store_query_send_rcpts(
			    db, rst, sqlite3_column_int64(st, 0), s);
		if (ret != 0)
			goto out;
	}
	if (rc != SQLITE_DONE)
		ret = store_query_fail(db, rc);
out:
	sqlite3_finalize(st);
	sqlite3_finalize(rst);
	if (in_txn)
		sqlite3_exec(db->db, "COMMIT", NULL, NULL, NULL);
	if (ret != 0) {
		store_send_rows_free(rows, count);
		return ret;
	}
	*out = rows;
	*n = count;
	return 0;
}

void
store_event_rows_free(struct store_event_row *rows, size_t n)
{
	size_t i;

	if (rows == NULL)
		return;
	for (i = 0; i < n; i++) {
		free(rows[i].recipient);
		free(rows[i].event);
		free(rows[i].severity);
		free(rows[i].reason);
		free(rows[i].enhanced_code);
		free(rows[i].message);
		free(rows[i].mailgun_id);
	}
	free(rows);
}

/* Fills e from the current row of the events query. */
static int
store_query_event_fill(sqlite3_stmt *st, struct store_event_row *e)
{
	const struct store_query_col cols[] = {
		{ 1, &e->recipient },
		{ 2, &e->event },
		{ 3, &e->severity },
		{ 4, &e->reason },
		{ 6, &e->enhanced_code },
		{ 7, &e->message },
		{ 8, &e->mailgun_id },
	};

	memset(e, 0, sizeof(*e));
	e->at = sqlite3_column_int64(st, 0);
	e->code = sqlite3_column_int(st, 5);
	return store_query_texts(st, cols, sizeof(cols) / sizeof(cols[0]));
}

/*
 * Loads the events recorded for message id in the order they happened (the
 * event's own timestamp, then arrival), each with its recipient's address.
 */
int
store_db_events(
    struct store_db *db, int64_t id, struct store_event_row **out, size_t *n)
{
	struct store_event_row *rows = NULL, *grown, *e;
	sqlite3_stmt *st = NULL;
	size_t cap = 0, count = 0;
	int rc, ret = 0;

	*out = NULL;
	*n = 0;
	db->errmsg[0] = '\0';
	ret = store_query_prepare(db,
	    "SELECT e.at, r.address, e.event, e.severity, e.reason, e.code,"
	    " e.enhanced_code, e.message, e.mailgun_id FROM events e"
	    " LEFT JOIN recipients r ON r.id = e.recipient_id"
	    " WHERE e.message_id = ?1 ORDER BY e.at, e.id",
	    &st);
	if (ret != 0)
		goto out;
	sqlite3_bind_int64(st, 1, id);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (count == cap) {
			cap = cap != 0 ? cap * 2 : 8;
			grown = reallocarray(rows, cap, sizeof(*grown));
			if (grown == NULL) {
				ret = -ENOMEM;
				goto out;
			}
			rows = grown;
		}
		e = &rows[count++];
		ret = store_query_event_fill(st, e);
		if (ret != 0)
			goto out;
	}
	if (rc != SQLITE_DONE)
		ret = store_query_fail(db, rc);
out:
	sqlite3_finalize(st);
	if (ret != 0) {
		store_event_rows_free(rows, count);
		return ret;
	}
	*out = rows;
	*n = count;
	return 0;
}
