/*
 * store: the SQLite store, the only module that speaks SQL.
 *
 * Two faces:
 *
 *  - the daemon's asynchronous face (struct store): one store thread owns a
 *    read-write connection in WAL mode with synchronous=FULL.  Requests
 *    made on the loop thread are queued; the store thread takes every
 *    request that is waiting, runs each inside its own SAVEPOINT of one
 *    transaction and commits them together (group commit), then hands each
 *    result back to the loop thread through a uv_async_t.  Nothing here
 *    blocks the loop thread.
 *
 *  - the CLI's synchronous face (struct store_db): a plain connection for
 *    the `redrive` command, which reads while the daemon writes (WAL).
 *
 * Times are milliseconds since the epoch, UTC.  Message ids are the local
 * integer ids of "queued as <id>".
 */
#ifndef REDRIVE_STORE_H
#define REDRIVE_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

/* The schema version this build writes (PRAGMA user_version). */
#define STORE_SCHEMA_VERSION 4

struct store;

/* Counters for tests and /metrics; read on the loop thread. */
struct store_stats {
	uint64_t requests;	      /* requests completed */
	uint64_t transactions;	      /* transactions committed (or failed) */
	uint64_t failures;	      /* requests completed with an error */
	uint64_t webhook_tokens;      /* tokens held to refuse replays */
	uint64_t webhook_token_bytes; /* the memory they take */
};

/*
 * Opens (creating it and its directory's file if needed) the store at path,
 * applies WAL and synchronous=FULL, migrates the schema to
 * STORE_SCHEMA_VERSION, and starts the store thread whose completions run
 * on loop.  Runs on the main thread at start-up (it may block there).
 * Returns 0 and *out, or a negative errno code with the reason written to
 * err (errlen bytes; err may be NULL) and logged.  The directory is never
 * created (-ENOENT); a store newer than this build is -EPROTO.  The store's
 * uv_async_t keeps the loop alive only while requests are in flight.
 */
int store_open(struct store **out, const char *path, uv_loop_t *loop, char *err,
    size_t errlen);

/*
 * Stops the store: every request already queued still runs and its callback
 * still fires (on the calling thread, before store_close returns); then the
 * thread ends, the connection closes, and the uv_async_t is closed (the
 * loop must run once more to free it).  If the loop never runs again, only
 * the struct store itself is left unfreed.  Loop thread, never from inside
 * a store job.  NULL-safe; a second call is a no-op.  st stays valid for
 * store_submit (-ESHUTDOWN) and store_stats until the loop has run.
 */
void store_close(struct store *st);

/* Returns the counters. Loop thread. */
struct store_stats store_stats(const struct store *st);

/*
 * A message to store, as the relay hands it over after DATA.  All strings
 * are NUL-terminated UTF-8 (or ASCII) and owned by the caller.
 */
struct store_new_message {
	int64_t received_at;	  /* ms */
	const char *mail_from;	  /* envelope sender; "" for <> */
	const char *const *rcpts; /* envelope recipients */
	size_t nrcpts;
	const char *helo;	 /* NULL if none */
	const char *client_addr; /* "127.0.0.1" */
	const char *auth_user;	 /* NULL if not authenticated */
	const char *subject;	 /* raw header value, unfolded; NULL if none */
	const char *message_id;	 /* Message-ID, bare; NULL if none */
	bool smtputf8;
	const void *data; /* the message as stored: Received + data */
	size_t len;
};

/*
 * Called on the loop thread exactly once per store_submit().  status is 0
 * (committed; id is the new local id) or a negative errno code (nothing was
 * stored; the client must get a 4xx).
 */
typedef void (*store_submit_cb)(int status, int64_t id, void *arg);

/*
 * Queues m for the next group commit.  Loop thread.  m and everything it
 * points to must stay valid until cb has run (the store copies nothing);
 * cb runs only after the commit (fsync) succeeded or failed, in submission
 * order.  Returns 0, or -ESHUTDOWN once store_close() was called, -EINVAL
 * for a NULL m, cb, mail_from or recipient, no recipients, or data NULL
 * with len > 0, or -ENOMEM; cb does not run when this returns an error.
 */
int store_submit(struct store *st, const struct store_new_message *m,
    store_submit_cb cb, void *arg);

/*
 * Test hook: when set (non-zero), every transaction fails with this
 * negative errno code as if the disk were full.  Loop thread.
 */
void store_set_fault(struct store *st, int err);

/* ---- The CLI's synchronous face ---------------------------------------- */

struct store_db;

/*
 * Opens the store at path for the CLI.  readonly opens it read-only (log,
 * show, stats, tail); otherwise read-write (retry, purge).  A store whose
 * schema is older than this build's is refused with a clear message (the
 * daemon migrates it); a missing file is -ENOENT.  Returns 0 and *out, or a
 * negative errno code with a reason in err.
 */
int store_db_open(struct store_db **out, const char *path, bool readonly,
    char *err, size_t errlen);

/* Closes; NULL-safe. */
void store_db_close(struct store_db *db);

/* One recipient of a message, as the CLI shows it. */
struct store_recipient_row {
	int64_t id;
	char *address;
	char *status;	  /* queued sent deferred retrying delivered failed */
	int attempts;	  /* sends that included this recipient */
	char *reason;	  /* for failed; NULL otherwise */
	char *last_error; /* the latest error text, NULL if none */
	char *mailgun_id; /* latest, bare; NULL if never sent */
	int64_t next_attempt_at; /* ms, 0 if none */
	int64_t updated_at;
};

struct store_message_row {
	int64_t id;
	int64_t received_at;
	char *mail_from;
	char *helo;
	char *client_addr;
	char *auth_user;
	char *subject;
	char *message_id;
	char *mailgun_id;
	int64_t size;
	char *status; /* derived from the recipients */
	int attempts; /* sends of this message */
	struct store_recipient_row *rcpts;
	size_t nrcpts;
};

/* Frees what a row owns (not the row itself); NULL-safe. */
void store_message_row_clear(struct store_message_row *row);

struct store_log_filter {
	const char *const *statuses; /* derived message statuses; NULL: all */
	size_t nstatuses;
	const char *to;	  /* a recipient address, or "@domain"; NULL: any */
	const char *from; /* envelope sender, or "@domain"; NULL: any */
	int64_t since;	  /* ms; 0: no bound */
	long limit;	  /* > 0 */
};

/*
 * Calls cb for each message matching f, newest first, with its recipients
 * filled in; a non-zero return from cb stops the walk and is returned.
 * Returns 0 or a negative errno code.
 */
typedef int (*store_message_cb)(const struct store_message_row *row, void *arg);
int store_db_log(struct store_db *db, const struct store_log_filter *f,
    store_message_cb cb, void *arg);

/*
 * Resolves what a user typed as ID: the local id, a Mailgun id or a
 * Message-ID, with or without angle brackets.  Returns 0 and *id, -ENOENT,
 * or -EINVAL when the text matches nothing it could be.
 */
int store_db_resolve(struct store_db *db, const char *text, int64_t *id);

/* Loads one message with its recipients. 0, -ENOENT or an error. */
int store_db_message(
    struct store_db *db, int64_t id, struct store_message_row *out);

/*
 * Loads the stored bytes of a message into a malloc'd buffer the caller
 * frees.  -ENOENT when the message or its body (purged) is gone.
 */
int store_db_body(struct store_db *db, int64_t id, void **data, size_t *len);

/*
 * The SQLite message of the last failed call on db ("database is locked"),
 * for the CLI's error line; "no error" if none.  Valid until the next call.
 */
const char *store_db_errmsg(const struct store_db *db);

/* One request made to Mailgun for a message (a row of attempts). */
struct store_send_row {
	int64_t at;	   /* ms */
	char *via;	   /* "mime" or "storage" */
	int http_status;   /* 0 if none (no HTTP answer) */
	char *mailgun_id;  /* bare; NULL if none */
	char *result;	   /* Mailgun's text or the error; NULL if none */
	char **recipients; /* the addresses this send carried */
	size_t nrecipients;
};

/* One event Mailgun reported for a message (a row of events). */
struct store_event_row {
	int64_t at;	     /* ms, the event's own timestamp */
	char *recipient;     /* NULL if the event names no known recipient */
	char *event;	     /* "delivered", "failed", ... */
	char *severity;	     /* "temporary", "permanent"; NULL if none */
	char *reason;	     /* NULL if none */
	int code;	     /* delivery-status code, 0 if none */
	char *enhanced_code; /* "5.1.1"; NULL if none */
	char *message;	     /* delivery-status message; NULL if none */
	char *mailgun_id;    /* bare; NULL if none */
};

/*
 * Loads the sends of message id, oldest first, into a malloc'd array the
 * caller frees with store_send_rows_free().  An unknown id gives 0 rows.
 * Returns 0 or a negative errno code.
 */
int store_db_sends(
    struct store_db *db, int64_t id, struct store_send_row **out, size_t *n);

/* Frees rows[0..n) and the array; NULL-safe. */
void store_send_rows_free(struct store_send_row *rows, size_t n);

/*
 * Loads the events of message id ordered by their own timestamp, into a
 * malloc'd array the caller frees with store_event_rows_free().  Returns 0
 * or a negative errno code.
 */
int store_db_events(
    struct store_db *db, int64_t id, struct store_event_row **out, size_t *n);

/* Frees rows[0..n) and the array; NULL-safe. */
void store_event_rows_free(struct store_event_row *rows, size_t n);

/* ---- The forwarder's jobs (core/store_forward.c) ----------------------- */

/* Mailgun takes at most this many recipients per request (FACTS.md 1.4). */
#define STORE_FORWARD_MAX_RCPTS 1000

/* One queued recipient handed to the forwarder. */
struct store_forward_rcpt {
	int64_t id; /* recipients.id */
	char *address;
};

/*
 * One request's worth of a message: its stored bytes and up to
 * STORE_FORWARD_MAX_RCPTS of its queued recipients that are due, lowest
 * recipient id first (a larger envelope goes out in several requests).
 */
struct store_forward_msg {
	int64_t id; /* the local message id */
	void *data; /* the stored bytes, malloc'd */
	size_t len;
	struct store_forward_rcpt *rcpts;
	size_t nrcpts;
	unsigned failures; /* requests of this message since the last one
			      Mailgun accepted that it did not accept */
};

/* What store_forward_next() found. */
struct store_forward_batch {
	struct store_forward_msg *msgs; /* oldest message first */
	size_t nmsgs;
	int64_t next_due; /* ms: the earliest next_attempt_at later than
			     now among queued recipients; 0: none */
	uint64_t queued;  /* queued recipients in the store */
};

/*
 * Called on the loop thread exactly once per accepted store_forward_next().
 * status 0: b holds what was found (possibly no message) and belongs to the
 * callee, who frees it with store_forward_batch_free(); status < 0: b is
 * NULL.
 */
typedef void (*store_forward_next_cb)(
    int status, struct store_forward_batch *b, void *arg);

/*
 * Finds, on the store thread, up to max (at least 1) of the oldest messages
 * (by local id) that have recipients in status 'queued' whose
 * next_attempt_at is NULL or <= now, skipping the message ids in
 * exclude[0..nexclude) (those in flight), and loads each one's body and due
 * queued recipients (at most STORE_FORWARD_MAX_RCPTS).  A message whose
 * body is gone cannot be sent: its due recipients are failed with a reason
 * and it is not returned.  Loop thread.  Returns 0, -EINVAL, -ENOMEM or
 * -ESHUTDOWN; cb runs only on 0.  exclude is copied.
 */
int store_forward_next(struct store *st, int64_t now, size_t max,
    const int64_t *exclude, size_t nexclude, store_forward_next_cb cb,
    void *arg);

/* Frees a batch and everything it owns; NULL-safe. */
void store_forward_batch_free(struct store_forward_batch *b);

/* What became of one request, as the store records it. */
enum store_forward_outcome {
	STORE_FORWARD_OK = 0, /* accepted: the recipients are sent */
	STORE_FORWARD_RETRY,  /* stay queued until next_attempt_at */
	STORE_FORWARD_PAUSE,  /* stay queued; the forwarder paused */
	STORE_FORWARD_REJECT, /* the recipients failed */
};

/* One finished request, handed to store_forward_record().  */
struct store_forward_result {
	int64_t message_id;
	const int64_t *rcpt_ids; /* the recipients the request carried */
	size_t nrcpts;
	enum store_forward_outcome outcome;
	int64_t at;		 /* ms: when the request was made */
	int64_t now;		 /* ms: when it ended (updated_at) */
	const char *via;	 /* "mime" or "storage" */
	int http_status;	 /* 0: no HTTP answer */
	const char *mailgun_id;	 /* bare; required for OK, else ignored */
	const char *result;	 /* Mailgun's text or the transport error */
	int64_t next_attempt_at; /* ms, RETRY only */
};

/* Called on the loop thread once the record committed (0) or failed. */
typedef void (*store_forward_record_cb)(int status, void *arg);

/*
 * Records one request in one job: an attempts row with its attempt_rcpts
 * rows, and the recipients' new state.  OK: 'sent' with mailgun_id,
 * attempts + 1, next_attempt_at and last_error cleared, and
 * messages.mailgun_id; RETRY: next_attempt_at and last_error; REJECT:
 * 'failed' with reason and last_error "<status> <text>" (and the message
 * finished when no recipient is left in flight); PAUSE: last_error only.
 * Only recipients still 'queued' change, so nothing 'sent' is ever touched
 * again; except that OK also counts the send (attempts + 1, mailgun_id)
 * for a recipient it carried whose state the send's own webhook already
 * set (an event may overtake this record), unless it is 'sent' or has
 * that id already.
 * recipients.attempts counts the requests Mailgun accepted; every
 * request is an attempts row (docs/forwarding.md).  Everything r points to
 * is copied.  Loop thread.  Returns 0, -EINVAL (OK without an id, no
 * recipients, a bad via), -ENOMEM or -ESHUTDOWN; cb runs only on 0.
 */
int store_forward_record(struct store *st, const struct store_forward_result *r,
    store_forward_record_cb cb, void *arg);

/* ---- Stats, tail and purge (core/store_stats.c) ----------------------- */

/* The recipient states, in the order of store_db_stats.recipients[]. */
#define STORE_NSTATES 6
extern const char *const store_state_names[STORE_NSTATES];

/* How many top reasons and domains store_db_stats_read() keeps. */
#define STORE_STATS_TOP 5

/* One entry of a top list: a name and how often it was seen. */
struct store_stats_item {
	char *name;
	int64_t count;
};

/*
 * What `redrive stats` reports about the messages received at or after a
 * time, and their recipients, sends and events (docs/cli.md "stats").
 */
struct store_db_stats {
	int64_t messages;
	int64_t recipients[STORE_NSTATES]; /* by store_state_names[] */
	int64_t redriven_final;		   /* re-driven recipients now final */
	int64_t redriven_delivered;	   /* of those, the delivered ones */
	struct store_stats_item reasons[STORE_STATS_TOP]; /* most first */
	size_t nreasons;
	struct store_stats_item domains[STORE_STATS_TOP]; /* most first */
	size_t ndomains;
};

/*
 * Fills out for the messages received at or after since (ms), in one
 * read transaction.  A recipient is re-driven when a send via 'storage'
 * carried it or Mailgun accepted more than one send of it.  top reasons
 * count each terminal failure event (event 'failed', severity permanent
 * or reason 'old') by its reason, and each failed recipient without one
 * by its reason up to the first ':'.  Returns 0 or a negative errno code;
 * out is cleared on failure.  The caller frees with store_db_stats_clear().
 */
int store_db_stats_read(
    struct store_db *db, int64_t since, struct store_db_stats *out);

/* Frees what s owns; NULL-safe. */
void store_db_stats_clear(struct store_db_stats *s);

/* One event as `redrive tail` prints it. */
struct store_tail_row {
	int64_t id;	     /* events.id: rows come in this order */
	int64_t message_id;  /* 0 if none */
	int64_t received_at; /* ms: when redrive recorded it */
	struct store_event_row ev;
};

/* Called for each row; a non-zero return stops the walk and is returned. */
typedef int (*store_tail_cb)(const struct store_tail_row *row, void *arg);

/* Sets *max_id to the highest events.id (0: none).  0 or an error. */
int store_db_events_max(struct store_db *db, int64_t *max_id);

/*
 * Calls cb for at most limit events with an id above after_id that were
 * recorded at or after since (ms; 0: any), lowest id first, in one read
 * transaction, and sets *last_id to the id of the last row for which cb
 * returned 0 (unchanged when none).  Returns 0 or a negative errno code.
 */
int store_db_events_after(struct store_db *db, int64_t after_id, int64_t since,
    long limit, store_tail_cb cb, void *arg, int64_t *last_id);

/*
 * Checks that the file db was opened from is still there: 0, or -ENOENT
 * when it was removed.
 */
int store_db_present(struct store_db *db);

/* How many messages (and tokens) one purge transaction deletes at most. */
#define STORE_PURGE_BATCH 500

/*
 * Deletes the finished messages (at least one recipient, all of them
 * delivered or failed) received before before (ms), with their bodies,
 * recipients, sends and events (ON DELETE CASCADE), and the webhook
 * tokens recorded before tokens_before, in transactions of at most
 * STORE_PURGE_BATCH rows each, so that the daemon never waits long for the
 * write lock.  A message that is not final is never touched, nor the one
 * with the highest id or that of the newest event (SQLite would hand
 * their ids out again).  Counts what
 * was deleted in *messages and *tokens (also on failure).  db must be
 * read-write.  Returns 0 or a negative errno code.
 */
int store_db_purge(struct store_db *db, int64_t before, int64_t tokens_before,
    uint64_t *messages, uint64_t *tokens);

/*
 * Called on the loop thread once per accepted store_purge(): status 0 and
 * what one job deleted, or a negative errno code (nothing deleted).
 */
typedef void (*store_purge_cb)(
    int status, uint64_t messages, uint64_t tokens, void *arg);

/*
 * The daemon's face of store_db_purge(): one store job that deletes at most
 * STORE_PURGE_BATCH finished messages received before before and at most
 * STORE_PURGE_BATCH tokens recorded before tokens_before.  Repeat while a
 * count comes back equal to STORE_PURGE_BATCH.  Loop thread.  Returns 0,
 * -EINVAL, -ENOMEM or -ESHUTDOWN; cb runs only on 0.
 */
int store_purge(struct store *st, int64_t before, int64_t tokens_before,
    store_purge_cb cb, void *arg);

#endif
