/*
 * mailgun: the client of Mailgun's HTTP API, on libcurl's multi-socket
 * interface driven by the daemon's libuv loop (curl's multi-uv.c): one
 * non-repeating uv_timer_t, one uv_poll_t per socket.  Connections are
 * reused, HTTP/2 is used where the server offers it over TLS, at most
 * `concurrency` requests are in flight, TLS verification is always on.
 *
 * Every function here runs on the loop thread; every callback runs there
 * too, exactly once per accepted request.
 */
#ifndef REDRIVE_MAILGUN_H
#define REDRIVE_MAILGUN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

struct mailgun;

/* Mailgun refuses more recipients per request (400 "Too many recipients"). */
#define MAILGUN_MAX_RECIPIENTS 1000
/* Bytes of an answer's body kept; the rest is read and discarded. */
#define MAILGUN_BODY_MAX 65536
/* Bytes of Mailgun's text kept in a result's message. */
#define MAILGUN_MESSAGE_MAX 512

struct mailgun_opts {
	const char *api_base; /* "https://api.mailgun.net", no trailing / */
	const char *domain;
	const char *api_key;  /* secret: never logged */
	const char *ca_file;  /* NULL: the system's CA store */
	int64_t timeout_ms;   /* whole request */
	unsigned concurrency; /* requests in flight at most */
};

/* How the forwarder should treat an answer. */
enum mailgun_outcome {
	MAILGUN_OK = 0, /* accepted: id set */
	MAILGUN_RETRY,	/* 420, 429, 5xx, timeout, connection error */
	MAILGUN_PAUSE,	/* 401, 403, 404 "Domain not found": configuration */
	MAILGUN_REJECT, /* other 4xx, or a 200 that is not a real success */
};

struct mailgun_result {
	enum mailgun_outcome outcome;
	int transport;	  /* 0, or a negative errno code for transport errors */
	long http_status; /* 0 when no answer came */
	char *id;	  /* the id without angle brackets; NULL if none */
	char *message;	  /* Mailgun's text (JSON "message", else the body,
			     escaped and truncated), or the transport error */
	int64_t retry_at; /* ms: when Mailgun says to try again; 0: no hint */
	double seconds;	  /* how long the request took */
};

typedef void (*mailgun_cb)(const struct mailgun_result *r, void *arg);

/*
 * Creates a client on loop.  Refuses (-ENOTSUP, reason in err) a libcurl
 * built without an asynchronous (threaded) resolver; -EINVAL (reason in
 * err) for a missing api_base, domain or key, a zero concurrency or
 * timeout.  Takes a reference on libcurl's global state
 * (curl_global_init), dropped when the client is freed.  Returns 0 and
 * *out, or a negative errno code.
 */
int mailgun_new(struct mailgun **out, uv_loop_t *loop,
    const struct mailgun_opts *opts, char *err, size_t errlen);

/*
 * Cancels every request in flight (their callbacks run with transport
 * -ECANCELED before this returns), cleans up the multi handle and closes
 * the timer and polls; the struct is freed in the last close callback, so
 * the loop must run once more.  NULL-safe.
 */
void mailgun_close(struct mailgun *mg);

/* True while fewer than `concurrency` requests are in flight. */
bool mailgun_can_send(const struct mailgun *mg);

/* Requests in flight. */
unsigned mailgun_in_flight(const struct mailgun *mg);

/*
 * POSTs {api_base}/v3/{domain}/messages.mime as multipart/form-data: one
 * `to` field per recipient (at most 1000: the caller splits), `message` as
 * a file part with the bytes msg[0..len) (streamed from the caller's
 * buffer, not copied: it must stay valid until cb runs), and
 * `v:redrive-id` = redrive_id.  Returns 0, -EAGAIN when `concurrency`
 * requests are already in flight, -E2BIG for more than 1000 recipients,
 * -EINVAL for no recipients or an empty one, -ECANCELED once
 * mailgun_close has begun (e.g. from a callback it runs), or -ENOMEM.
 * On 0, cb runs exactly once, later (never from inside this call).
 */
int mailgun_send_mime(struct mailgun *mg, const char *const *to, size_t nto,
    const void *msg, size_t len, int64_t redrive_id, mailgun_cb cb, void *arg);

/*
 * POSTs storage_url exactly as given (from an event's storage.url) with
 * to=<recipient>: Mailgun's resend from its stored copy.  Same returns,
 * plus -EPERM when storage_url is not https on a host under .mailgun.net
 * and not on api_base's own scheme, host and port: the API key goes along
 * as Basic auth, and a webhook's body (where the URL comes from) is not
 * signed.
 */
int mailgun_resend(struct mailgun *mg, const char *storage_url, const char *to,
    mailgun_cb cb, void *arg);

/* Bytes of an Events API page kept (a page of 300 events fits). */
#define MAILGUN_EVENTS_BODY_MAX ((size_t)8 * 1024 * 1024)

/*
 * Called once per accepted mailgun_events(): r as for the other requests
 * (r->outcome MAILGUN_OK for any 2xx whose body fit; otherwise as
 * mailgun_classify() says, or a transport error), and the answer's body
 * (len bytes, not NUL-terminated; NULL when none).
 */
typedef void (*mailgun_body_cb)(
    const struct mailgun_result *r, const char *body, size_t len, void *arg);

/*
 * GETs the Events API: {api_base}/v3/{domain}/events?query when query is
 * a query string (its values percent-encoded by the caller, e.g.
 * "message-id=ID&limit=300"), or query itself when it is an http(s) URL
 * (a page's paging.next), which must pass the storage URL check of
 * mailgun_resend (else -EPERM).  Same returns as mailgun_send_mime.
 */
int mailgun_events(
    struct mailgun *mg, const char *query, mailgun_body_cb cb, void *arg);

struct metrics_histogram;

/* Copies the histogram of request durations (answered, not canceled). */
void mailgun_latency(const struct mailgun *mg, struct metrics_histogram *out);

/* ---- Pure helpers (any thread), exposed for tests ---------------------- */

/*
 * Finds "try again after <RFC 5322 date>" or "try again after N seconds"
 * in text and returns 0 with *at (ms) computed from now; -ENOENT when text
 * has no such hint or the hint does not parse.
 */
int mailgun_parse_try_again(const char *text, int64_t now, int64_t *at);

/*
 * Parses an X-RateLimit-Reset value: epoch seconds, or epoch milliseconds
 * when above 10^12.  Returns 0 and *at (ms), or -EINVAL.
 */
int mailgun_parse_ratelimit_reset(const char *value, int64_t *at);

/*
 * Classifies an answer: fills r->outcome, r->http_status, r->id (malloc'd,
 * bare), r->message (malloc'd) and r->retry_at from the status, content
 * type and body (at most MAILGUN_BODY_MAX bytes are looked at; body need
 * not be NUL-terminated).  A 2xx counts only with a JSON body holding a
 * string "id": a 2xx that is not JSON (the "Mailgun Magnificent API" page)
 * means api_base points at the wrong place, so it is MAILGUN_PAUSE
 * (configuration; nothing was sent); a JSON 2xx without an id is
 * MAILGUN_RETRY.  401, 403 and 404 "Domain not found" are MAILGUN_PAUSE
 * (wrong key, account, region or domain: failing every message would be
 * wrong); 408, 420, 429 and 5xx are MAILGUN_RETRY; other 4xx are
 * MAILGUN_REJECT.  r->retry_at (ms) comes from a "try again after" hint in
 * the text, else for 420/429 from ratelimit_reset (the X-RateLimit-Reset
 * header), else from retry_after (the Retry-After header: seconds from
 * now, or an HTTP date); either header may be NULL.  now is the current
 * time in ms.  r->transport is set to 0; r->seconds is left alone.
 * Returns 0 or -ENOMEM.
 */
int mailgun_classify(long http_status, const char *content_type,
    const char *body, size_t len, const char *ratelimit_reset,
    const char *retry_after, int64_t now, struct mailgun_result *r);

/* Frees what a result owns (id, message); NULL-safe. */
void mailgun_result_clear(struct mailgun_result *r);

#endif
