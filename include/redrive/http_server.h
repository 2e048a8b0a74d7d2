/*
 * http_server: the tracker's HTTP/1.1 server on libuv, requests parsed by
 * llhttp with its lenient flags off (RFC 9112).  Keep-alive; pipelined
 * requests are answered in the order they came; URL, headers and body are
 * bounded (414, 431, 413); a header timeout and an idle timeout; a cap on
 * connections.  Routing is the caller's: every complete request goes to
 * one handler, which answers at once or later (after a store commit)
 * through http_respond().  Loop thread only.
 */
#ifndef REDRIVE_HTTP_SERVER_H
#define REDRIVE_HTTP_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

struct http_server;
struct http_exchange; /* one request and, later, its answer */

#define HTTP_URL_MAX 2048
#define HTTP_HEADERS_MAX (16 * 1024) /* all header bytes of a request */
#define HTTP_HEADER_COUNT_MAX 64

struct http_header {
	const char *name;  /* as received; compare case-insensitively */
	const char *value; /* leading/trailing white space removed */
};

/*
 * A complete request.  Everything points into memory the exchange owns; it
 * stays valid until http_respond() is called for it.
 */
struct http_request {
	const char *method; /* "GET", "POST", ... */
	const char *url;    /* the request target as sent */
	const char *path;   /* url without the query */
	const char *query;  /* after '?', or "" */
	const struct http_header *headers;
	size_t nheaders;
	const char *body; /* NUL-terminated for convenience; may hold NULs */
	size_t body_len;
	const char *peer; /* the client's address, for logs */
};

/* Timeouts and the connection cap left at 0 take the defaults shown. */
struct http_server_opts {
	const char *listen; /* "127.0.0.1:8025" */
	uint64_t max_body;  /* bytes; more is 413 */
	/* From the first byte to the end of headers: 408.  Default 10 s. */
	int64_t header_timeout_ms;
	/*
	 * A keep-alive connection with no request is closed; a body that
	 * stalls this long gets 408.  Default 60 s.
	 */
	int64_t idle_timeout_ms;
	unsigned max_connections; /* more get 503; default 1000 */
	/*
	 * A connection whose descriptor comes within this many of
	 * RLIMIT_NOFILE also gets 503: the rest of the daemon keeps its
	 * descriptors.  Default 16.
	 */
	unsigned fd_reserve;
};

/*
 * Called once per complete request (body read whole), in order per
 * connection, from a loop callback: never from inside http_respond().  The
 * handler must call http_respond(x, ...) exactly once, now or later.
 */
typedef void (*http_handler)(
    struct http_exchange *x, const struct http_request *req, void *arg);

/* Starts listening; returns 0 and *out or a negative errno (logged). */
int http_server_start(struct http_server **out, uv_loop_t *loop,
    const struct http_server_opts *opts, http_handler handler, void *arg);

/*
 * Answers a request: status, content type (NULL: none, for empty bodies),
 * body copied.  Answers are written in request order; one that is ready
 * before an earlier one waits.  If the connection is gone this only frees
 * the exchange.  Adds Content-Length, Date and Connection headers.  extra
 * headers: NULL or "Name: value\r\n..." lines.  x and its request are
 * invalid once it returns; it never calls the handler.
 */
void http_respond(struct http_exchange *x, int status, const char *content_type,
    const char *body, size_t len, const char *extra_headers);

/* Header lookup on a request (case-insensitive); NULL when absent. */
const char *http_request_header(
    const struct http_request *req, const char *name);

/* The standard reason phrase for a status ("Not Found"). */
const char *http_status_text(int status);

/*
 * Stops listening and closes every connection (answers still pending are
 * dropped; their exchanges are freed when http_respond() is called);
 * done(arg) runs once every handle is closed (done may be NULL), then the
 * server is freed; uv_loop_close() then succeeds.
 */
void http_server_shutdown(
    struct http_server *srv, void (*done)(void *arg), void *arg);

/* The port actually bound. */
int http_server_port(const struct http_server *srv);

struct http_server_stats {
	uint64_t requests;
	uint64_t connections;
	unsigned active;
	uint64_t too_large; /* requests the server answered 413 itself */
	uint64_t refused;   /* other requests it answered itself (4xx, 5xx) */
};
struct http_server_stats http_server_stats(const struct http_server *srv);

#endif
