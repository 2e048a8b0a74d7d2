/*
 * http_server: the tracker's HTTP/1.1 server (RFC 9110, RFC 9112) on the
 * libuv loop.  It owns the listener, one struct http_conn per TCP
 * connection (its handle, its one timer, its llhttp parser) and the
 * exchanges: one struct http_exchange per request, from its first byte to
 * the moment its answer is handed to libuv.
 *
 * Input arrives in the server's shared read buffer and goes straight to
 * llhttp (lenient flags off); the callbacks copy what a request is made of
 * (target, header fields, body) into memory the exchange owns, each part
 * with a hard limit (414, 431, 413).  Every phase change (message begin,
 * headers complete, last chunk, message complete) pauses the parser, so
 * the bytes of each phase are known exactly: the head and the trailer
 * section are scanned for bare LF line ends, which llhttp 8 accepts in
 * places but RFC 9112 2.2 lets a server refuse, and their raw size is
 * bounded too (white space llhttp skips costs no memory but would cost
 * time).
 *
 * A connection keeps its exchanges in a queue in request order.  A
 * complete request is handed to the handler; its answer may come at once
 * or later, in any order, and is written only when every earlier answer
 * has been (RFC 9112 9.3.2).  The handler is only ever called from loop
 * callbacks: when http_respond() makes room for more, the connection is
 * "kicked" and carries on at the loop's next turn (one zero timer for the
 * server), so a caller answering a batch never sees its handler re-entered.  At
 * most HTTP_PIPELINE_MAX requests wait per connection; past that, parsing
 * pauses (the unparsed rest of the read is kept) and reading stops until
 * answers are written.  When a connection goes away, exchanges the handler
 * holds are orphaned (conn = NULL) and freed by http_respond(); the others are
 * freed at once.  A connection is freed only in the last close callback of its
 * two handles.
 *
 * Errors the server answers itself (400, 408, 413, 414, 417, 431, 503,
 * 505) carry Connection: close; after such an answer, or any answer with
 * Connection: close, the write side is shut down and the input is read and
 * dropped for a while before the close (RFC 9112 9.6), so that the client
 * reads the answer instead of a reset.
 */
#include <errno.h>
#include <netdb.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <llhttp.h>
#include <uv.h>

#include "redrive/cidr.h"
#include "redrive/config.h"
#include "redrive/fdguard.h"
#include "redrive/http_server.h"
#include "redrive/log.h"

/* All header bytes of a request (http_server.h), as a size. */
#define HTTP_HEADER_BYTES ((size_t)HTTP_HEADERS_MAX)
/* Backlog of the listen socket. */
#define HTTP_BACKLOG 1024
/* Descriptors kept for the rest of the daemon, by default. */
#define HTTP_FD_RESERVE 16
/* Bytes one read may bring; the buffer is shared by every connection. */
#define HTTP_READ_BUF (64 * 1024)
/* Requests parsed and not yet answered on one connection, at most. */
#define HTTP_PIPELINE_MAX 16
/* Bytes queued in libuv for writing at most before reading pauses. */
#define HTTP_WRITE_QUEUE_MAX ((size_t)256 * 1024)
/*
 * Raw bytes of a request head (or a trailer section) at most: the target
 * and the fields, plus room for the request line, the separators and some
 * optional white space.
 */
#define HTTP_HEAD_RAW_MAX (HTTP_URL_MAX + HTTP_HEADER_BYTES + 1024)
/* The lingering close: how long, and how many bytes are read and dropped. */
#define HTTP_LINGER_MS 2000
#define HTTP_LINGER_BYTES ((uint64_t)1024 * 1024)
/* Defaults for options left at 0. */
#define HTTP_DEFAULT_HEADER_TIMEOUT_MS 10000
#define HTTP_DEFAULT_IDLE_TIMEOUT_MS 60000
#define HTTP_DEFAULT_MAX_CONNECTIONS 1000
/* The first body buffer of a request, before it doubles. */
#define HTTP_BODY_INITIAL 4096

enum http_phase {
	HTTP_PHASE_IDLE = 0, /* between requests */
	HTTP_PHASE_HEAD,     /* request line and header section */
	HTTP_PHASE_BODY,     /* content */
	HTTP_PHASE_TRAILER,  /* trailer section of a chunked body */
	HTTP_PHASE_DONE,     /* no more input is parsed */
};

enum http_timer_mode {
	HTTP_TIMER_NONE = 0, /* waiting for answers: no timeout */
	HTTP_TIMER_HEADER,   /* first byte to end of headers: 408 */
	HTTP_TIMER_BODY,     /* no body bytes for idle_timeout: 408 */
	HTTP_TIMER_IDLE,     /* keep-alive, nothing under way: close */
	HTTP_TIMER_LINGER,   /* lingering close: close */
};

enum http_xstate {
	HTTP_X_PARSING = 0, /* its bytes are still arriving */
	HTTP_X_COMPLETE,    /* parsed, not yet given to the handler */
	HTTP_X_DISPATCHED,  /* the handler has it; no answer yet */
	HTTP_X_ANSWERED,    /* the answer waits for the earlier ones */
};

/* Where the header section's strings are, as offsets into x->head. */
enum http_hdr_state {
	HTTP_HDR_NONE = 0,
	HTTP_HDR_NAME,
	HTTP_HDR_VALUE,
};

struct http_field {
	size_t name;
	size_t value;
	size_t value_len;
};

struct http_exchange {
	struct http_conn *conn; /* NULL once orphaned */
	struct http_exchange *next;
	enum http_xstate state;
	struct http_request req;
	char *head; /* target, field names and values, path, query */
	size_t headlen;
	size_t headcap;
	size_t url_len;
	struct http_field *fields;
	size_t nfields;
	size_t capfields;
	size_t header_bytes;
	size_t trailer_bytes;
	size_t ntrailers;
	struct http_header *headers;
	char *body;
	size_t body_len;
	size_t body_cap;
	uint64_t body_max; /* Content-Length, else max_body */
	bool keep_alive;
	bool http10;
	bool is_head;
	bool send_continue; /* 100 Continue owed when it reaches the front */
	bool close_after;
	int status;
	char *answer;
	size_t answer_len;
	uint64_t started; /* uv_now() at the first byte */
	char peer[64];
};

struct http_conn {
	struct http_server *srv;
	struct http_conn *prev;
	struct http_conn *next;
	struct http_conn *kick_next; /* in srv->kicked */
	uv_tcp_t tcp;
	uv_timer_t timer;
	uv_shutdown_t shutdown_req;
	llhttp_t parser;
	int handles;
	uint64_t id;
	char peer[64];
	enum http_phase phase;
	enum http_timer_mode tmode;
	enum http_hdr_state hdr;
	struct http_exchange *queue; /* oldest first */
	struct http_exchange *tail;
	unsigned nqueue;
	struct http_exchange *cur; /* the request being parsed */
	int fail_status;	   /* set by a callback that stops llhttp */
	const char *fail_reason;
	size_t head_raw;
	unsigned char prev_byte;
	char *pending; /* unparsed input while the queue is full */
	size_t npending;
	uint64_t linger_bytes;
	bool full;
	bool served; /* counted in srv->nactive */
	bool linked;
	bool closing;
	bool reading;
	bool busy; /* inside http_conn_process() */
	bool again;
	bool eof;
	bool lingering;
	bool kicked;
};

struct http_server {
	uv_loop_t *loop;
	uv_tcp_t listener;
	uv_timer_t kick; /* runs kicked connections on the next turn */
	int handles;	 /* listener and kick, until closed */
	struct http_conn *kicked;
	llhttp_settings_t settings;
	http_handler handler;
	void *arg;
	uint64_t max_body;
	uint64_t header_timeout_ms;
	uint64_t idle_timeout_ms;
	unsigned max_connections;
	unsigned fd_reserve; /* opts.fd_reserve */
	struct http_conn *conns;
	unsigned nopen;	  /* connection objects alive */
	unsigned nactive; /* connections being served */
	uint64_t next_id;
	struct http_server_stats stats;
	bool shutting_down;
	void (*done)(void *arg);
	void *done_arg;
	int port;
	time_t date_sec;
	char date[40];
	char readbuf[HTTP_READ_BUF];
};

struct http_wreq {
	uv_write_t req;
	char data[];
};

static void http_conn_close(struct http_conn *c);
static void http_conn_process(struct http_conn *c, bool dispatch);
static void http_server_check_done(struct http_server *srv);
static void http_server_kick_cb(uv_timer_t *t);

/* ---- Small helpers ---------------------------------------------------- */

const char *
http_status_text(int status)
{
	switch (status) {
	case 100:
		return "Continue";
	case 101:
		return "Switching Protocols";
	case 200:
		return "OK";
	case 201:
		return "Created";
	case 202:
		return "Accepted";
	case 204:
		return "No Content";
	case 301:
		return "Moved Permanently";
	case 302:
		return "Found";
	case 304:
		return "Not Modified";
	case 400:
		return "Bad Request";
	case 401:
		return "Unauthorized";
	case 403:
		return "Forbidden";
	case 404:
		return "Not Found";
	case 405:
		return "Method Not Allowed";
	case 406:
		return "Not Acceptable";
	case 408:
		return "Request Timeout";
	case 409:
		return "Conflict";
	case 410:
		return "Gone";
	case 411:
		return "Length Required";
	case 413:
		return "Content Too Large";
	case 414:
		return "URI Too Long";
	case 415:
		return "Unsupported Media Type";
	case 417:
		return "Expectation Failed";
	case 422:
		return "Unprocessable Content";
	case 429:
		return "Too Many Requests";
	case 431:
		return "Request Header Fields Too Large";
	case 500:
		return "Internal Server Error";
	case 501:
		return "Not Implemented";
	case 502:
		return "Bad Gateway";
	case 503:
		return "Service Unavailable";
	case 504:
		return "Gateway Timeout";
	case 505:
		return "HTTP Version Not Supported";
	default:
		return "Unknown";
	}
}

const char *
http_request_header(const struct http_request *req, const char *name)
{
	size_t i;

	for (i = 0; i < req->nheaders; i++)
		if (strcasecmp(req->headers[i].name, name) == 0)
			return req->headers[i].value;
	return NULL;
}

/* RFC 9110 5.6.2: tchar. */
static bool
http_is_tchar(unsigned char ch)
{
	if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
	    (ch >= '0' && ch <= '9'))
		return true;
	return ch != '\0' && strchr("!#$%&'*+-.^_`|~", ch) != NULL;
}

/*
 * The Date field's IMF-fixdate (RFC 9110 5.6.7), "Sun, 06 Nov 1994
 * 08:49:37 GMT", in the C locale whatever the process locale; computed
 * once per second.
 */
static const char *
http_server_date(struct http_server *srv)
{
	static const char days[7][4] = { "Sun", "Mon", "Tue", "Wed", "Thu",
		"Fri", "Sat" };
	static const char months[12][4] = { "Jan", "Feb", "Mar", "Apr", "May",
		"Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
	time_t now = time(NULL);
	struct tm tm;

	if (now == srv->date_sec && srv->date[0] != '\0')
		return srv->date;
	if (gmtime_r(&now, &tm) == NULL || tm.tm_wday < 0 || tm.tm_wday > 6 ||
	    tm.tm_mon < 0 || tm.tm_mon > 11)
		return srv->date;
	snprintf(srv->date, sizeof(srv->date),
	    "%s, %02d %s %04d %02d:%02d:%02d GMT", days[tm.tm_wday], tm.tm_mday,
	    months[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min,
	    tm.tm_sec);
	srv->date_sec = now;
	return srv->date;
}

/* ---- Exchanges -------------------------------------------------------- */

/* A new exchange at the end of c's queue; NULL when memory is short. */
static struct http_exchange *
http_exchange_new(struct http_conn *c)
{
	struct http_exchange *x;

	x = calloc(1, sizeof(*x));
	if (x == NULL)
		return NULL;
	x->conn = c;
	x->state = HTTP_X_PARSING;
	x->started = uv_now(c->srv->loop);
	memcpy(x->peer, c->peer, sizeof(x->peer));
	x->req.peer = x->peer;
	x->req.method = "";
	x->req.url = "";
	x->req.path = "";
	x->req.query = "";
	x->req.body = "";
	if (c->tail != NULL)
		c->tail->next = x;
	else
		c->queue = x;
	c->tail = x;
	c->nqueue++;
	return x;
}

static void
http_exchange_free(struct http_exchange *x)
{
	if (x == NULL)
		return;
	free(x->head);
	free(x->fields);
	free(x->headers);
	free(x->body);
	free(x->answer);
	free(x);
}

/*
 * Makes room for n more bytes and a NUL in the exchange's head buffer.
 * The callbacks check the protocol limits before they append, so the
 * buffer never grows past what those limits allow.
 */
static int
http_exchange_reserve(struct http_exchange *x, size_t n)
{
	size_t cap;
	char *q;

	if (x->head != NULL && x->headlen + n + 1 <= x->headcap)
		return 0;
	cap = x->headcap != 0 ? x->headcap : 256;
	while (cap < x->headlen + n + 1)
		cap *= 2;
	q = realloc(x->head, cap);
	if (q == NULL)
		return -ENOMEM;
	x->head = q;
	x->headcap = cap;
	return 0;
}

/* Appends n bytes to the head buffer. */
static int
http_exchange_append(struct http_exchange *x, const char *p, size_t n)
{
	if (http_exchange_reserve(x, n) < 0)
		return -ENOMEM;
	if (n > 0)
		memcpy(x->head + x->headlen, p, n);
	x->headlen += n;
	return 0;
}

/*
 * Appends n bytes found in the head buffer itself at offset off, then a
 * NUL (the buffer may move while it grows, so no pointer is kept).
 */
static int
http_exchange_append_copy(struct http_exchange *x, size_t off, size_t n)
{
	if (http_exchange_reserve(x, n + 1) < 0)
		return -ENOMEM;
	if (n > 0)
		memcpy(x->head + x->headlen, x->head + off, n);
	x->headlen += n;
	x->head[x->headlen++] = '\0';
	return 0;
}

static int
http_exchange_append_nul(struct http_exchange *x)
{
	return http_exchange_append(x, "", 1);
}

/*
 * Builds the answer's bytes (RFC 9112 4, 6.2, 9.6): status line, Date,
 * Content-Length (none for 1xx, 204, 304), Content-Type, the caller's
 * extra lines, Connection, then the body (none for HEAD).
 */
static int
http_exchange_build(struct http_exchange *x, struct http_server *srv,
    int status, const char *ctype, const char *body, size_t len,
    const char *extra, bool close)
{
	bool bodyless = status < 200 || status == 204 || status == 304;
	bool send_body = !bodyless && !x->is_head && len > 0;
	size_t cap, n = 0;
	char *buf;
	int k;

	cap = 256 + (ctype != NULL ? strlen(ctype) : 0) +
	    (extra != NULL ? strlen(extra) : 0) + (send_body ? len : 0);
	buf = malloc(cap);
	if (buf == NULL)
		return -ENOMEM;
	k = snprintf(buf, cap, "HTTP/1.1 %d %s\r\nDate: %s\r\n", status,
	    http_status_text(status), http_server_date(srv));
	if (k < 0 || (size_t)k >= cap)
		goto overflow;
	n = (size_t)k;
	if (!bodyless) {
		k = snprintf(buf + n, cap - n, "Content-Length: %zu\r\n", len);
		if (k < 0 || (size_t)k >= cap - n)
			goto overflow;
		n += (size_t)k;
	}
	k = snprintf(buf + n, cap - n, "%s%s%s%s%s\r\n",
	    ctype != NULL ? "Content-Type: " : "", ctype != NULL ? ctype : "",
	    ctype != NULL ? "\r\n" : "", extra != NULL ? extra : "",
	    close	    ? "Connection: close\r\n"
		: x->http10 ? "Connection: keep-alive\r\n"
			    : "");
	if (k < 0 || (size_t)k >= cap - n)
		goto overflow;
	n += (size_t)k;
	if (send_body) {
		memcpy(buf + n, body, len);
		n += len;
	}
	free(x->answer);
	x->answer = buf;
	x->answer_len = n;
	x->status = status;
	x->close_after = close;
	x->state = HTTP_X_ANSWERED;
	return 0;
overflow:
	free(buf);
	return -EOVERFLOW;
}

/*
 * Turns the offsets gathered by the callbacks into the struct http_request
 * the handler sees.  The path is the target up to '?' (for the
 * absolute-form of RFC 9112 3.2.2, the part after the authority); both
 * path and query are copies, so a fragment can be cut off.
 */
static int
http_exchange_finish_head(struct http_exchange *x, const char *method)
{
	const char *url, *p, *q, *end;
	size_t path_off, query_off, i, poff, plen, qoff, qlen;

	if (x->head == NULL && http_exchange_append_nul(x) < 0)
		return -ENOMEM;
	url = x->head;
	end = url + strcspn(url, "#");
	p = url;
	if (strncasecmp(url, "http://", 7) == 0 ||
	    strncasecmp(url, "https://", 8) == 0) {
		p = strstr(url, "://") + 3;
		p += strcspn(p, "/?#");
	}
	q = memchr(p, '?', (size_t)(end - p));
	poff = (size_t)(p - url);
	plen = (size_t)((q != NULL ? q : end) - p);
	qoff = q != NULL ? (size_t)(q + 1 - url) : 0;
	qlen = q != NULL ? (size_t)(end - q - 1) : 0;
	path_off = x->headlen;
	if (plen == 0) {
		if (http_exchange_append(x, "/", 1) < 0 ||
		    http_exchange_append_nul(x) < 0)
			return -ENOMEM;
	} else if (http_exchange_append_copy(x, poff, plen) < 0)
		return -ENOMEM;
	query_off = x->headlen;
	if (http_exchange_append_copy(x, qoff, qlen) < 0)
		return -ENOMEM;
	if (x->nfields > 0) {
		x->headers = calloc(x->nfields, sizeof(*x->headers));
		if (x->headers == NULL)
			return -ENOMEM;
	}
	for (i = 0; i < x->nfields; i++) {
		x->headers[i].name = x->head + x->fields[i].name;
		x->headers[i].value = x->head + x->fields[i].value;
	}
	x->req.method = method;
	x->req.url = x->head;
	x->req.path = x->head + path_off;
	x->req.query = x->head + query_off;
	x->req.headers = x->headers;
	x->req.nheaders = x->nfields;
	return 0;
}

/* ---- Output ----------------------------------------------------------- */

static void
http_conn_write_cb(uv_write_t *req, int status)
{
	struct http_conn *c = req->handle->data;

	free(req);
	if (c->closing)
		return;
	if (status < 0) {
		log_debug("http write failed", LF_STR("peer", c->peer),
		    LF_STR("error", uv_strerror(status)), LF_END);
		http_conn_close(c);
		return;
	}
	http_conn_process(c, true);
}

/*
 * Writes bytes: directly when the socket takes them, else the rest through
 * a queued write with its own copy.  Returns 0 or a libuv error.
 */
static int
http_conn_write(struct http_conn *c, const char *p, size_t n)
{
	struct http_wreq *w;
	uv_buf_t b;
	int k = 0, rc;

	if (uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp) == 0) {
		b = uv_buf_init((char *)p, (unsigned)n);
		k = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
		if (k < 0 && k != UV_EAGAIN)
			return k;
		if (k < 0)
			k = 0;
	}
	if ((size_t)k == n)
		return 0;
	w = malloc(sizeof(*w) + (n - (size_t)k));
	if (w == NULL)
		return UV_ENOMEM;
	memcpy(w->data, p + k, n - (size_t)k);
	b = uv_buf_init(w->data, (unsigned)(n - (size_t)k));
	rc = uv_write(
	    &w->req, (uv_stream_t *)&c->tcp, &b, 1, http_conn_write_cb);
	if (rc < 0)
		free(w);
	return rc;
}

/* ---- Timer ------------------------------------------------------------ */

static void http_conn_timeout_cb(uv_timer_t *t);

/* (Re)starts the connection's one timer in the given mode. */
static void
http_conn_timer_set(struct http_conn *c, enum http_timer_mode m)
{
	uint64_t ms;

	if (c->closing)
		return;
	c->tmode = m;
	switch (m) {
	case HTTP_TIMER_HEADER:
		ms = c->srv->header_timeout_ms;
		break;
	case HTTP_TIMER_BODY:
	case HTTP_TIMER_IDLE:
		ms = c->srv->idle_timeout_ms;
		break;
	case HTTP_TIMER_LINGER:
		ms = HTTP_LINGER_MS;
		break;
	case HTTP_TIMER_NONE:
	default:
		uv_timer_stop(&c->timer);
		return;
	}
	uv_timer_start(&c->timer, http_conn_timeout_cb, ms, 0);
}

/*
 * Sets the timer for the state the connection has settled in: header and
 * body timers are started by the parser's callbacks, the idle timer when
 * nothing is under way, none while answers are awaited.
 */
static void
http_conn_arm(struct http_conn *c)
{
	enum http_timer_mode want;

	if (c->lingering)
		want = HTTP_TIMER_LINGER;
	else if (c->phase == HTTP_PHASE_HEAD)
		want = HTTP_TIMER_HEADER;
	else if (c->phase == HTTP_PHASE_BODY || c->phase == HTTP_PHASE_TRAILER)
		want = HTTP_TIMER_BODY;
	else if (c->phase == HTTP_PHASE_IDLE && c->queue == NULL &&
	    c->pending == NULL)
		want = HTTP_TIMER_IDLE;
	else
		want = HTTP_TIMER_NONE;
	if (want != c->tmode)
		http_conn_timer_set(c, want);
}

/* ---- Failing a request ------------------------------------------------ */

static void
http_conn_drop_pending(struct http_conn *c)
{
	free(c->pending);
	c->pending = NULL;
	c->npending = 0;
	c->full = false;
}

/*
 * Answers the request being parsed (or a new exchange, when none is) with
 * an error of the server's own and stops parsing: the answer carries
 * Connection: close and waits for the earlier answers like any other.
 */
static void
http_conn_fail(struct http_conn *c, int status, const char *reason)
{
	struct http_exchange *x = c->cur;
	char body[64];
	int n;

	if (c->closing)
		return;
	log_info("http request refused", LF_STR("peer", c->peer),
	    LF_INT("status", status), LF_STR("reason", reason), LF_END);
	if (status == 413)
		c->srv->stats.too_large++;
	else
		c->srv->stats.refused++;
	c->cur = NULL;
	c->phase = HTTP_PHASE_DONE;
	c->fail_status = 0;
	http_conn_drop_pending(c);
	if (x == NULL)
		x = http_exchange_new(c);
	if (x == NULL) {
		http_conn_close(c);
		return;
	}
	x->send_continue = false;
	x->keep_alive = false;
	x->is_head = false;
	n = snprintf(body, sizeof(body), "%s\n", http_status_text(status));
	if (n < 0)
		n = 0;
	if (http_exchange_build(x, c->srv, status, "text/plain; charset=utf-8",
		body, (size_t)n, NULL, true) < 0)
		http_conn_close(c);
}

/* Records why a callback stops llhttp; returns the code it returns. */
static int
http_conn_reject(struct http_conn *c, int status, const char *reason)
{
	c->fail_status = status;
	c->fail_reason = reason;
	llhttp_set_error_reason(&c->parser, reason);
	return HPE_USER;
}

/* ---- llhttp callbacks -------------------------------------------------- */

/* RFC 9112 2.2: leading empty lines are skipped by llhttp, before this. */
static int
http_conn_message_begin_cb(llhttp_t *p)
{
	struct http_conn *c = p->data;

	c->cur = http_exchange_new(c);
	if (c->cur == NULL)
		return http_conn_reject(c, 503, "out of memory");
	c->phase = HTTP_PHASE_HEAD;
	c->head_raw = 0;
	c->prev_byte = 0;
	c->hdr = HTTP_HDR_NONE;
	http_conn_timer_set(c, HTTP_TIMER_HEADER);
	return HPE_PAUSED;
}

static int
http_conn_url_cb(llhttp_t *p, const char *at, size_t n)
{
	struct http_conn *c = p->data;
	struct http_exchange *x = c->cur;

	if (x->url_len + n > HTTP_URL_MAX)
		return http_conn_reject(c, 414, "request target too long");
	if (http_exchange_append(x, at, n) < 0)
		return http_conn_reject(c, 503, "out of memory");
	x->url_len += n;
	return 0;
}

static int
http_conn_url_complete_cb(llhttp_t *p)
{
	struct http_conn *c = p->data;

	if (http_exchange_append_nul(c->cur) < 0)
		return http_conn_reject(c, 503, "out of memory");
	return 0;
}

/* Starts a new header field: RFC 9112 5, at most HTTP_HEADER_COUNT_MAX. */
static int
http_conn_field_start(struct http_conn *c, struct http_exchange *x)
{
	struct http_field *f;
	size_t cap;

	if (x->nfields >= HTTP_HEADER_COUNT_MAX)
		return http_conn_reject(c, 431, "too many header fields");
	if (x->nfields == x->capfields) {
		cap = x->capfields != 0 ? x->capfields * 2 : 8;
		f = realloc(x->fields, cap * sizeof(*f));
		if (f == NULL)
			return http_conn_reject(c, 503, "out of memory");
		x->fields = f;
		x->capfields = cap;
	}
	x->fields[x->nfields].name = x->headlen;
	x->fields[x->nfields].value = 0;
	x->fields[x->nfields].value_len = 0;
	x->nfields++;
	c->hdr = HTTP_HDR_NAME;
	return 0;
}

/*
 * Trailer fields (RFC 9112 7.1.2) are counted against the same limits as
 * the header section, and dropped.
 */
static int
http_conn_trailer_bytes(struct http_conn *c, size_t n, bool field_end)
{
	struct http_exchange *x = c->cur;

	x->trailer_bytes += n;
	if (field_end)
		x->ntrailers++;
	if (x->trailer_bytes > HTTP_HEADER_BYTES ||
	    x->ntrailers > HTTP_HEADER_COUNT_MAX)
		return http_conn_reject(c, 431, "trailer section too large");
	return 0;
}

static int
http_conn_header_field_cb(llhttp_t *p, const char *at, size_t n)
{
	struct http_conn *c = p->data;
	struct http_exchange *x = c->cur;
	int rc;

	if (c->phase == HTTP_PHASE_TRAILER)
		return http_conn_trailer_bytes(c, n, false);
	if (c->hdr != HTTP_HDR_NAME && (rc = http_conn_field_start(c, x)) != 0)
		return rc;
	x->header_bytes += n;
	if (x->header_bytes > HTTP_HEADER_BYTES)
		return http_conn_reject(c, 431, "header section too large");
	if (http_exchange_append(x, at, n) < 0)
		return http_conn_reject(c, 503, "out of memory");
	return 0;
}

static int
http_conn_header_field_complete_cb(llhttp_t *p)
{
	struct http_conn *c = p->data;
	struct http_exchange *x = c->cur;
	int rc;

	if (c->phase == HTTP_PHASE_TRAILER)
		return http_conn_trailer_bytes(c, 0, true);
	if (c->hdr != HTTP_HDR_NAME && (rc = http_conn_field_start(c, x)) != 0)
		return rc;
	if (http_exchange_append_nul(x) < 0)
		return http_conn_reject(c, 503, "out of memory");
	x->fields[x->nfields - 1].value = x->headlen;
	c->hdr = HTTP_HDR_VALUE;
	return 0;
}

static int
http_conn_header_value_cb(llhttp_t *p, const char *at, size_t n)
{
	struct http_conn *c = p->data;
	struct http_exchange *x = c->cur;

	if (c->phase == HTTP_PHASE_TRAILER)
		return http_conn_trailer_bytes(c, n, false);
	if (c->hdr != HTTP_HDR_VALUE)
		return http_conn_reject(c, 400, "header value without a name");
	x->header_bytes += n;
	if (x->header_bytes > HTTP_HEADER_BYTES)
		return http_conn_reject(c, 431, "header section too large");
	if (http_exchange_append(x, at, n) < 0)
		return http_conn_reject(c, 503, "out of memory");
	x->fields[x->nfields - 1].value_len += n;
	return 0;
}

/* RFC 9110 5.5: leading and trailing white space is not the value's. */
static int
http_conn_header_value_complete_cb(llhttp_t *p)
{
	struct http_conn *c = p->data;
	struct http_exchange *x = c->cur;
	struct http_field *f;
	size_t lead = 0;
	char *v;

	if (c->phase == HTTP_PHASE_TRAILER)
		return 0;
	if (c->hdr != HTTP_HDR_VALUE)
		return http_conn_reject(c, 400, "header value without a name");
	f = &x->fields[x->nfields - 1];
	v = x->head != NULL ? x->head + f->value : NULL;
	while (v != NULL && f->value_len > 0 &&
	    (v[f->value_len - 1] == ' ' || v[f->value_len - 1] == '\t'))
		f->value_len--;
	while (v != NULL && lead < f->value_len &&
	    (v[lead] == ' ' || v[lead] == '\t'))
		lead++;
	if (lead > 0)
		memmove(v, v + lead, f->value_len - lead);
	f->value_len -= lead;
	x->headlen = f->value + f->value_len;
	if (http_exchange_append_nul(x) < 0)
		return http_conn_reject(c, 503, "out of memory");
	c->hdr = HTTP_HDR_NONE;
	return 0;
}

/*
 * Checks the header section once it is whole: field names are tokens with
 * no white space before the colon (RFC 9112 5.1), Host appears once in
 * HTTP/1.1 and at most once in HTTP/1.0 (RFC 9112 3.2).
 */
static int
http_conn_check_head(struct http_conn *c, struct http_exchange *x)
{
	size_t i, nhost = 0;
	const char *s;

	for (i = 0; i < x->req.nheaders; i++) {
		s = x->req.headers[i].name;
		if (*s == '\0')
			return http_conn_reject(c, 400, "empty field name");
		for (; *s != '\0'; s++)
			if (!http_is_tchar((unsigned char)*s))
				return http_conn_reject(
				    c, 400, "invalid field name");
		if (strcasecmp(x->req.headers[i].name, "Host") == 0)
			nhost++;
	}
	if (nhost > 1 || (nhost == 0 && !x->http10))
		return http_conn_reject(c, 400, "missing or repeated Host");
	return 0;
}

/*
 * The end of the head: the request is checked, a Content-Length over
 * max_body is refused here without reading the body (413), and an
 * "Expect: 100-continue" gets its interim answer (RFC 9110 10.1.1) when
 * the body is acceptable.
 */
static int
http_conn_headers_complete_cb(llhttp_t *p)
{
	struct http_conn *c = p->data;
	struct http_exchange *x = c->cur;
	const char *expect;
	bool chunked, has_cl;
	int rc;

	if (p->http_major != 1)
		return http_conn_reject(c, 505, "HTTP version not supported");
	x->http10 = p->http_minor == 0;
	x->is_head = p->method == HTTP_HEAD;
	if (http_exchange_finish_head(
		x, llhttp_method_name((llhttp_method_t)p->method)) < 0)
		return http_conn_reject(c, 503, "out of memory");
	rc = http_conn_check_head(c, x);
	if (rc != 0)
		return rc;
	chunked = (p->flags & F_CHUNKED) != 0;
	has_cl = (p->flags & F_CONTENT_LENGTH) != 0;
	if (has_cl && p->content_length > c->srv->max_body)
		return http_conn_reject(c, 413, "content too large");
	x->body_max = has_cl ? p->content_length : c->srv->max_body;
	expect = http_request_header(&x->req, "Expect");
	if (expect != NULL) {
		if (strcasecmp(expect, "100-continue") != 0)
			return http_conn_reject(c, 417, "unknown expectation");
		x->send_continue = !x->http10 &&
		    (chunked || (has_cl && p->content_length > 0));
	}
	c->phase = HTTP_PHASE_BODY;
	http_conn_timer_set(c, HTTP_TIMER_BODY);
	return HPE_PAUSED;
}

/* Body bytes, at most body_max (max_body for a chunked body): 413. */
static int
http_conn_body_cb(llhttp_t *p, const char *at, size_t n)
{
	struct http_conn *c = p->data;
	struct http_exchange *x = c->cur;
	size_t cap;
	char *b;

	if (n > x->body_max - x->body_len)
		return http_conn_reject(c, 413, "content too large");
	if (x->body_len + n + 1 > x->body_cap) {
		cap = x->body_cap != 0 ? x->body_cap : HTTP_BODY_INITIAL;
		while (cap < x->body_len + n + 1)
			cap *= 2;
		if (cap > x->body_max + 1)
			cap = (size_t)x->body_max + 1;
		b = realloc(x->body, cap);
		if (b == NULL)
			return http_conn_reject(c, 503, "out of memory");
		x->body = b;
		x->body_cap = cap;
	}
	memcpy(x->body + x->body_len, at, n);
	x->body_len += n;
	http_conn_timer_set(c, HTTP_TIMER_BODY);
	return 0;
}

/*
 * A chunk's size is known before its data (RFC 9112 7.1): one that would
 * take the body past the limit is refused before it is read.  The last
 * chunk starts the trailer section, whose bytes are checked like the
 * head's.
 */
static int
http_conn_chunk_header_cb(llhttp_t *p)
{
	struct http_conn *c = p->data;
	struct http_exchange *x = c->cur;

	if (p->content_length == 0) {
		c->phase = HTTP_PHASE_TRAILER;
		c->head_raw = 0;
		c->prev_byte = '\n';
		return HPE_PAUSED;
	}
	if (p->content_length > x->body_max - x->body_len)
		return http_conn_reject(c, 413, "content too large");
	return 0;
}

/*
 * A request is complete: it waits in the queue for the handler.  Parsing
 * pauses here, always, and stays paused while the queue is full; after a
 * request that ends the connection (RFC 9112 9.3, 9.6) nothing more is
 * parsed.
 */
static int
http_conn_message_complete_cb(llhttp_t *p)
{
	struct http_conn *c = p->data;
	struct http_exchange *x = c->cur;

	x->keep_alive = llhttp_should_keep_alive(p) != 0 && p->upgrade == 0;
	if (x->body != NULL)
		x->body[x->body_len] = '\0';
	x->req.body = x->body != NULL ? x->body : "";
	x->req.body_len = x->body_len;
	x->state = HTTP_X_COMPLETE;
	c->cur = NULL;
	c->phase = x->keep_alive ? HTTP_PHASE_IDLE : HTTP_PHASE_DONE;
	http_conn_timer_set(c, HTTP_TIMER_NONE);
	if (c->nqueue >= HTTP_PIPELINE_MAX)
		c->full = true;
	return HPE_PAUSED;
}

/* ---- Input ------------------------------------------------------------ */

/* Keeps unparsed input while the queue is full (one read at most). */
static void
http_conn_keep(struct http_conn *c, const char *p, size_t n)
{
	char *q = malloc(n);

	if (q == NULL) {
		http_conn_close(c);
		return;
	}
	memcpy(q, p, n);
	free(c->pending);
	c->pending = q;
	c->npending = n;
}

/*
 * RFC 9112 2.2: a bare LF as a line end is refused in the head and the
 * trailer section (llhttp 8 takes it in some places).  Returns false on
 * one.
 */
static bool
http_conn_scan(struct http_conn *c, const char *p, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		if (p[i] == '\n' && c->prev_byte != '\r')
			return false;
		c->prev_byte = (unsigned char)p[i];
	}
	return true;
}

/*
 * Feeds input to llhttp.  Each pause ends a run of bytes that lies in one
 * phase, so head and trailer bytes are scanned and counted exactly.  With
 * the queue full, the rest is kept for later; once parsing is done, the
 * rest is dropped.
 */
static void
http_conn_feed(struct http_conn *c, const char *p, size_t n)
{
	bool paused = false;

	/* After a pause, llhttp may owe callbacks that need no more input. */
	while ((n > 0 || paused) && !c->closing) {
		enum http_phase phase = c->phase;
		struct http_exchange *x = c->cur;
		const char *pos;
		llhttp_errno_t err;
		size_t used;

		if (phase == HTTP_PHASE_DONE)
			return;
		if (c->full) {
			if (n > 0)
				http_conn_keep(c, p, n);
			return;
		}
		err = llhttp_execute(&c->parser, p, n);
		used = n;
		if (err != HPE_OK) {
			pos = llhttp_get_error_pos(&c->parser);
			if (pos >= p && pos <= p + n)
				used = (size_t)(pos - p);
		}
		paused = err == HPE_PAUSED;
		if (paused)
			llhttp_resume(&c->parser);
		if (phase == HTTP_PHASE_HEAD || phase == HTTP_PHASE_TRAILER) {
			int bad = 0;

			if (!http_conn_scan(c, p, used))
				bad = 400;
			c->head_raw += used;
			if (bad == 0 && c->head_raw > HTTP_HEAD_RAW_MAX)
				bad = 431;
			if (bad != 0) {
				/*
				 * A trailer section ends with its message: the
				 * request is complete but not yet dispatched,
				 * and the refusal is its answer.
				 */
				if (c->cur == NULL && x != NULL &&
				    x->state == HTTP_X_COMPLETE) {
					c->cur = x;
					x->state = HTTP_X_PARSING;
				}
				http_conn_fail(c, bad,
				    bad == 400 ? "bare LF line end"
					       : "header section too large");
				return;
			}
		}
		if (err == HPE_PAUSED_UPGRADE) {
			/* Answered, then closed: no protocol switch here. */
			c->phase = HTTP_PHASE_DONE;
			return;
		}
		if (err == HPE_PAUSED_H2_UPGRADE) {
			http_conn_fail(c, 505, "HTTP/2 preface");
			return;
		}
		if (err != HPE_OK && err != HPE_PAUSED) {
			if (c->fail_status != 0)
				http_conn_fail(
				    c, c->fail_status, c->fail_reason);
			else
				http_conn_fail(c, 400,
				    llhttp_get_error_reason(&c->parser));
			return;
		}
		p += used;
		n -= used;
	}
}

static void http_conn_update_reading(struct http_conn *c);

static void
http_conn_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct http_conn *c = h->data;

	(void)suggested;
	*buf = uv_buf_init(c->srv->readbuf, sizeof(c->srv->readbuf));
}

static void
http_conn_read_cb(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
	struct http_conn *c = st->data;

	if (nread == 0 || c->closing)
		return;
	if (nread < 0) {
		if (nread != UV_EOF) {
			log_debug("http read failed", LF_STR("peer", c->peer),
			    LF_STR("error", uv_strerror((int)nread)), LF_END);
			http_conn_close(c);
			return;
		}
		/* libuv stops reading at EOF; answers may still go out. */
		c->eof = true;
		c->reading = false;
		if (c->lingering)
			http_conn_close(c);
		else
			http_conn_process(c, true);
		return;
	}
	if (c->lingering) {
		c->linger_bytes += (uint64_t)nread;
		if (c->linger_bytes > HTTP_LINGER_BYTES + c->srv->max_body)
			http_conn_close(c);
		return;
	}
	http_conn_feed(c, buf->base, (size_t)nread);
	http_conn_process(c, true);
}

/* Starts or stops reading to match what the connection can take now. */
static void
http_conn_update_reading(struct http_conn *c)
{
	bool want;

	if (c->closing)
		return;
	want = !c->eof &&
	    (c->lingering ||
		(c->phase != HTTP_PHASE_DONE && !c->full &&
		    uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp) <
			HTTP_WRITE_QUEUE_MAX));
	if (want == c->reading)
		return;
	if (want) {
		if (uv_read_start((uv_stream_t *)&c->tcp, http_conn_alloc_cb,
			http_conn_read_cb) == 0)
			c->reading = true;
	} else {
		uv_read_stop((uv_stream_t *)&c->tcp);
		c->reading = false;
	}
}

/* Has the connection processed on the loop's next turn (see kick_cb). */
static void
http_conn_kick(struct http_conn *c)
{
	struct http_server *srv = c->srv;

	if (c->kicked || c->closing)
		return;
	c->kicked = true;
	c->kick_next = srv->kicked;
	srv->kicked = c;
	if (!uv_is_active((uv_handle_t *)&srv->kick))
		uv_timer_start(&srv->kick, http_server_kick_cb, 0, 0);
}

static void
http_conn_unkick(struct http_conn *c)
{
	struct http_conn **pp;

	if (!c->kicked)
		return;
	for (pp = &c->srv->kicked; *pp != NULL; pp = &(*pp)->kick_next)
		if (*pp == c) {
			*pp = c->kick_next;
			break;
		}
	c->kicked = false;
	c->kick_next = NULL;
}

static void
http_server_kick_cb(uv_timer_t *t)
{
	struct http_server *srv = t->data;
	struct http_conn *c;

	while ((c = srv->kicked) != NULL) {
		srv->kicked = c->kick_next;
		c->kicked = false;
		c->kick_next = NULL;
		http_conn_process(c, true);
	}
}

/* ---- Life cycle -------------------------------------------------------- */

static void
http_conn_close_cb(uv_handle_t *h)
{
	struct http_conn *c = h->data;
	struct http_server *srv = c->srv;
	bool linked = c->linked;

	if (--c->handles > 0)
		return;
	if (linked) {
		if (c->prev != NULL)
			c->prev->next = c->next;
		else
			srv->conns = c->next;
		if (c->next != NULL)
			c->next->prev = c->prev;
	}
	free(c);
	if (linked) {
		srv->nopen--;
		http_server_check_done(srv);
	}
}

/*
 * Closes the connection now: exchanges the handler holds are orphaned
 * (http_respond() frees them), the others are freed.  The object itself
 * goes in the last close callback.
 */
static void
http_conn_close(struct http_conn *c)
{
	struct http_exchange *x, *next;

	if (c->closing)
		return;
	c->closing = true;
	http_conn_unkick(c);
	for (x = c->queue; x != NULL; x = next) {
		next = x->next;
		if (x->state == HTTP_X_DISPATCHED) {
			x->conn = NULL;
			x->next = NULL;
		} else
			http_exchange_free(x);
	}
	c->queue = c->tail = c->cur = NULL;
	c->nqueue = 0;
	http_conn_drop_pending(c);
	if (c->served) {
		c->srv->nactive--;
		fdguard_count(FDGUARD_TRACKER, -1);
	}
	c->served = false;
	uv_close((uv_handle_t *)&c->tcp, http_conn_close_cb);
	uv_close((uv_handle_t *)&c->timer, http_conn_close_cb);
}

static void
http_conn_shutdown_cb(uv_shutdown_t *req, int status)
{
	struct http_conn *c = req->handle->data;

	if (c->closing)
		return;
	if (status < 0 || c->eof)
		http_conn_close(c);
}

/*
 * The lingering close of RFC 9112 9.6: the write side is shut down once
 * the queued answers are out, then input is read and dropped until the
 * client closes, HTTP_LINGER_MS pass or too much arrives.
 */
static void
http_conn_finish(struct http_conn *c)
{
	if (c->closing || c->lingering)
		return;
	c->lingering = true;
	c->phase = HTTP_PHASE_DONE;
	http_conn_drop_pending(c);
	if (uv_shutdown(&c->shutdown_req, (uv_stream_t *)&c->tcp,
		http_conn_shutdown_cb) < 0) {
		http_conn_close(c);
		return;
	}
	http_conn_timer_set(c, HTTP_TIMER_LINGER);
}

/* Unlinks the request being parsed (the queue's tail) and frees it. */
static void
http_conn_drop_cur(struct http_conn *c)
{
	struct http_exchange *x = c->cur, **pp;

	c->cur = NULL;
	if (x == NULL)
		return;
	for (pp = &c->queue; *pp != NULL; pp = &(*pp)->next)
		if (*pp == x) {
			*pp = x->next;
			break;
		}
	c->tail = NULL;
	for (pp = &c->queue; *pp != NULL; pp = &(*pp)->next)
		c->tail = *pp;
	c->nqueue--;
	http_exchange_free(x);
}

/*
 * Writes the answers at the front of the queue, in request order, and a
 * 100 Continue owed to the request being read once it is at the front.
 */
static void
http_conn_flush(struct http_conn *c)
{
	static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
	struct http_exchange *x;
	bool close;
	int rc;

	while (!c->closing && !c->lingering && (x = c->queue) != NULL) {
		if (x->state == HTTP_X_ANSWERED) {
			close = x->close_after;
			rc = http_conn_write(c, x->answer, x->answer_len);
			c->queue = x->next;
			if (c->queue == NULL)
				c->tail = NULL;
			c->nqueue--;
			http_exchange_free(x);
			if (rc < 0) {
				log_debug("http write failed",
				    LF_STR("peer", c->peer),
				    LF_STR("error", uv_strerror(rc)), LF_END);
				http_conn_close(c);
				return;
			}
			if (close) {
				http_conn_finish(c);
				return;
			}
			continue;
		}
		if (x->send_continue) {
			x->send_continue = false;
			if (x->state == HTTP_X_PARSING &&
			    http_conn_write(c, cont, sizeof(cont) - 1) < 0) {
				http_conn_close(c);
				return;
			}
		}
		break;
	}
}

/* Hands the complete requests to the handler, oldest first. */
static void
http_conn_dispatch(struct http_conn *c)
{
	struct http_server *srv = c->srv;
	struct http_exchange *x;

	while (!c->closing) {
		for (x = c->queue; x != NULL && x->state != HTTP_X_COMPLETE;
		     x = x->next)
			;
		if (x == NULL)
			return;
		x->state = HTTP_X_DISPATCHED;
		srv->stats.requests++;
		srv->handler(x, &x->req, srv->arg);
	}
}

/* True when kept input can be parsed or a request waits for the handler. */
static bool
http_conn_has_work(const struct http_conn *c)
{
	const struct http_exchange *x;

	if (c->full && c->nqueue < HTTP_PIPELINE_MAX)
		return true;
	for (x = c->queue; x != NULL; x = x->next)
		if (x->state == HTTP_X_COMPLETE)
			return true;
	return false;
}

/*
 * Moves the connection forward after any event: writes what can be
 * written, parses kept input once the queue has room, calls the handler.
 * A handler that answers at once re-enters through http_respond(); the
 * busy flag turns that into one more turn of this loop.  Called from
 * http_respond() outside of the handler (dispatch false), it only writes:
 * the handler is never called from inside http_respond(); what else there
 * is to do waits for the loop's next turn.
 */
static void
http_conn_process(struct http_conn *c, bool dispatch)
{
	char *buf;
	size_t n;

	if (c->busy) {
		c->again = true;
		return;
	}
	c->busy = true;
	do {
		c->again = false;
		http_conn_flush(c);
		if (c->closing || c->lingering)
			break;
		if (!dispatch) {
			if (http_conn_has_work(c))
				http_conn_kick(c);
			break;
		}
		if (c->full && c->nqueue < HTTP_PIPELINE_MAX) {
			c->full = false;
			buf = c->pending;
			n = c->npending;
			c->pending = NULL;
			c->npending = 0;
			if (buf != NULL)
				http_conn_feed(c, buf, n);
			free(buf);
			c->again = true;
		}
		http_conn_dispatch(c);
	} while (c->again && !c->closing);
	c->busy = false;
	if (c->closing)
		return;
	if (c->eof && !c->full && !c->lingering) {
		/* Nothing more will come: a partial request is dropped. */
		http_conn_drop_cur(c);
		c->phase = HTTP_PHASE_DONE;
		if (c->queue == NULL) {
			http_conn_finish(c);
			if (c->closing)
				return;
		}
	}
	http_conn_update_reading(c);
	http_conn_arm(c);
}

static void
http_conn_timeout_cb(uv_timer_t *t)
{
	struct http_conn *c = t->data;

	if (c->closing)
		return;
	switch (c->tmode) {
	case HTTP_TIMER_HEADER:
	case HTTP_TIMER_BODY:
		c->tmode = HTTP_TIMER_NONE;
		http_conn_fail(c, 408,
		    c->phase == HTTP_PHASE_HEAD ? "header timeout"
						: "body timeout");
		http_conn_process(c, true);
		break;
	case HTTP_TIMER_IDLE:
		log_debug(
		    "http connection idle", LF_STR("peer", c->peer), LF_END);
		http_conn_close(c);
		break;
	case HTTP_TIMER_LINGER:
	case HTTP_TIMER_NONE:
	default:
		http_conn_close(c);
		break;
	}
}

/*
 * True when c's descriptor would leave too few free (fdguard.h: the
 * server's fd_reserve for the rest of the daemon, and room for the
 * relay's connections).  Such a client gets the 503 of a full server, so
 * that a flood of webhook connections can neither take the descriptors
 * the store, the relay and the forwarder need nor drive the listener into
 * EMFILE, where libuv closes new connections without a word.  Logs it.
 */
static bool
http_conn_fd_short(const struct http_conn *c)
{
	uv_os_fd_t fd;

	if (uv_fileno((const uv_handle_t *)&c->tcp, &fd) != 0 || fd < 0)
		return false;
	return !fdguard_admit(FDGUARD_TRACKER, fd, c->srv->fd_reserve, c->peer);
}

/*
 * Takes the connection waiting on the listener.  Over max_connections it
 * is answered 503 (RFC 9110 15.6.4, with Retry-After) and closed.
 */
static void
http_conn_accept(struct http_server *srv)
{
	struct sockaddr_storage ss;
	struct http_exchange *x;
	struct http_conn *c;
	int rc, len = sizeof(ss);

	c = calloc(1, sizeof(*c));
	if (c == NULL) {
		log_warn("http accept failed", LF_STR("error", "out of memory"),
		    LF_END);
		return;
	}
	c->srv = srv;
	c->id = ++srv->next_id;
	rc = uv_tcp_init(srv->loop, &c->tcp);
	if (rc < 0) {
		free(c);
		return;
	}
	c->tcp.data = c;
	c->handles = 1;
	rc = uv_accept((uv_stream_t *)&srv->listener, (uv_stream_t *)&c->tcp);
	if (rc == 0)
		rc = uv_timer_init(srv->loop, &c->timer);
	if (rc < 0) {
		log_warn("http accept failed", LF_STR("error", uv_strerror(rc)),
		    LF_END);
		c->closing = true;
		uv_close((uv_handle_t *)&c->tcp, http_conn_close_cb);
		return;
	}
	c->timer.data = c;
	c->handles = 2;
	c->next = srv->conns;
	if (srv->conns != NULL)
		srv->conns->prev = c;
	srv->conns = c;
	srv->nopen++;
	c->linked = true;

	memset(&ss, 0, sizeof(ss));
	if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) == 0)
		cidr_format_addr(
		    (struct sockaddr *)&ss, c->peer, sizeof(c->peer));
	else
		snprintf(c->peer, sizeof(c->peer), "unknown");
	llhttp_init(&c->parser, HTTP_REQUEST, &srv->settings);
	c->parser.data = c;
	uv_tcp_nodelay(&c->tcp, 1);

	if (http_conn_fd_short(c)) {
		/*
		 * Answered and closed now, not after an asynchronous write:
		 * uv_close() frees the descriptor at once, before libuv
		 * accepts the next connection of a burst (which would
		 * otherwise run the process into EMFILE).  A fresh socket's
		 * buffer takes the short answer whole.
		 */
		static const char refuse[] =
		    "HTTP/1.1 503 Service Unavailable\r\n"
		    "Content-Type: text/plain; charset=utf-8\r\n"
		    "Content-Length: 20\r\nRetry-After: 1\r\n"
		    "Connection: close\r\n\r\nService Unavailable\n";
		uv_buf_t b = uv_buf_init((char *)refuse, sizeof(refuse) - 1);

		srv->stats.refused++;
		(void)uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
		http_conn_close(c);
		return;
	}
	if (srv->nactive >= srv->max_connections) {
		log_warn("http client refused", LF_STR("peer", c->peer),
		    LF_STR("reason", "too many connections"),
		    LF_UINT("max_connections", srv->max_connections), LF_END);
		c->phase = HTTP_PHASE_DONE;
		x = http_exchange_new(c);
		if (x == NULL ||
		    http_exchange_build(x, srv, 503,
			"text/plain; charset=utf-8", "Service Unavailable\n",
			20, "Retry-After: 1\r\n", true) < 0) {
			http_conn_close(c);
			return;
		}
		http_conn_process(c, true);
		return;
	}
	c->served = true;
	srv->nactive++;
	fdguard_count(FDGUARD_TRACKER, 1);
	srv->stats.connections++;
	log_debug("http connection opened", LF_STR("peer", c->peer),
	    LF_UINT("conn", c->id), LF_END);
	http_conn_process(c, true);
}

/* ---- The answer -------------------------------------------------------- */

void
http_respond(struct http_exchange *x, int status, const char *content_type,
    const char *body, size_t len, const char *extra_headers)
{
	struct http_conn *c = x->conn;

	if (x->state != HTTP_X_DISPATCHED) {
		log_error(
		    "http_respond on a request not awaiting an answer", LF_END);
		return;
	}
	if (status < 100 || status > 599)
		status = 500;
	if (c == NULL) {
		log_debug("http answer dropped", LF_STR("peer", x->peer),
		    LF_STR("method", x->req.method),
		    LF_STR("path", x->req.path), LF_INT("status", status),
		    LF_END);
		http_exchange_free(x);
		return;
	}
	if (http_exchange_build(x, c->srv, status, content_type, body, len,
		extra_headers, !x->keep_alive) < 0) {
		log_warn("http answer failed", LF_STR("peer", x->peer),
		    LF_STR("error", "out of memory"), LF_END);
		http_conn_close(c); /* orphans x */
		http_exchange_free(x);
		return;
	}
	log_debug("http request", LF_STR("peer", x->peer),
	    LF_STR("method", x->req.method), LF_STR("path", x->req.path),
	    LF_INT("status", status), LF_UINT("bytes", len),
	    LF_UINT("ms", uv_now(c->srv->loop) - x->started), LF_END);
	http_conn_process(c, false);
}

/* ---- The listener ------------------------------------------------------ */

static void
http_server_connection_cb(uv_stream_t *l, int status)
{
	struct http_server *srv = l->data;

	if (status < 0) {
		log_warn("http accept failed",
		    LF_STR("error", uv_strerror(status)), LF_END);
		return;
	}
	if (srv->shutting_down)
		return;
	http_conn_accept(srv);
}

/*
 * Resolves "host:port" at start-up (blocking getaddrinfo is fine here: the
 * loop is not running yet).  "*" means every IPv4 address.
 */
static int
http_server_resolve(const char *listen, struct sockaddr_storage *ss)
{
	struct addrinfo hints, *res = NULL;
	char host[256], port[16];
	int p, rc;

	if (listen == NULL ||
	    config_split_hostport(listen, host, sizeof(host), &p) < 0)
		return -EINVAL;
	snprintf(port, sizeof(port), "%d", p);
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	rc = getaddrinfo(
	    strcmp(host, "*") == 0 ? NULL : host, port, &hints, &res);
	if (rc != 0 || res == NULL)
		return -EADDRNOTAVAIL;
	if (res->ai_addrlen > sizeof(*ss)) {
		freeaddrinfo(res);
		return -EADDRNOTAVAIL;
	}
	memset(ss, 0, sizeof(*ss));
	memcpy(ss, res->ai_addr, res->ai_addrlen);
	freeaddrinfo(res);
	return 0;
}

static void
http_server_handle_closed_cb(uv_handle_t *h)
{
	struct http_server *srv = h->data;

	srv->handles--;
	http_server_check_done(srv);
}

/* Closes the server's own handles (the listener and the kick timer). */
static void
http_server_close_handles(struct http_server *srv)
{
	uv_close((uv_handle_t *)&srv->listener, http_server_handle_closed_cb);
	uv_close((uv_handle_t *)&srv->kick, http_server_handle_closed_cb);
}

/* Once every handle and connection is closed: done, then free. */
static void
http_server_check_done(struct http_server *srv)
{
	void (*done)(void *);
	void *arg;

	if (!srv->shutting_down || srv->handles > 0 || srv->nopen > 0)
		return;
	done = srv->done;
	arg = srv->done_arg;
	if (srv->port != 0)
		log_info("http stopped",
		    LF_UINT("connections", srv->stats.connections),
		    LF_UINT("requests", srv->stats.requests), LF_END);
	if (done != NULL)
		done(arg);
	free(srv);
}

static void
http_server_settings(llhttp_settings_t *s)
{
	llhttp_settings_init(s);
	s->on_message_begin = http_conn_message_begin_cb;
	s->on_url = http_conn_url_cb;
	s->on_url_complete = http_conn_url_complete_cb;
	s->on_header_field = http_conn_header_field_cb;
	s->on_header_field_complete = http_conn_header_field_complete_cb;
	s->on_header_value = http_conn_header_value_cb;
	s->on_header_value_complete = http_conn_header_value_complete_cb;
	s->on_headers_complete = http_conn_headers_complete_cb;
	s->on_body = http_conn_body_cb;
	s->on_chunk_header = http_conn_chunk_header_cb;
	s->on_message_complete = http_conn_message_complete_cb;
}

int
http_server_start(struct http_server **out, uv_loop_t *loop,
    const struct http_server_opts *opts, http_handler handler, void *arg)
{
	struct http_server *srv;
	struct sockaddr_storage ss;
	int rc, len;

	*out = NULL;
	if (opts == NULL || handler == NULL)
		return -EINVAL;
	srv = calloc(1, sizeof(*srv));
	if (srv == NULL)
		return -ENOMEM;
	srv->loop = loop;
	srv->handler = handler;
	srv->arg = arg;
	/* Bodies are held in memory: the limit must fit a size_t. */
	srv->max_body = opts->max_body < (uint64_t)(SIZE_MAX / 2)
	    ? opts->max_body
	    : (uint64_t)(SIZE_MAX / 2);
	srv->header_timeout_ms = opts->header_timeout_ms > 0
	    ? (uint64_t)opts->header_timeout_ms
	    : HTTP_DEFAULT_HEADER_TIMEOUT_MS;
	srv->idle_timeout_ms = opts->idle_timeout_ms > 0
	    ? (uint64_t)opts->idle_timeout_ms
	    : HTTP_DEFAULT_IDLE_TIMEOUT_MS;
	srv->max_connections = opts->max_connections > 0
	    ? opts->max_connections
	    : HTTP_DEFAULT_MAX_CONNECTIONS;
	srv->fd_reserve =
	    opts->fd_reserve > 0 ? opts->fd_reserve : HTTP_FD_RESERVE;
	http_server_settings(&srv->settings);
	rc = http_server_resolve(opts->listen, &ss);
	if (rc < 0) {
		log_error("cannot resolve the tracker's listen address",
		    LF_STR("listen", opts->listen), LF_END);
		free(srv);
		return rc;
	}
	rc = uv_tcp_init(loop, &srv->listener);
	if (rc < 0) {
		free(srv);
		return rc;
	}
	/* uv_timer_init() cannot fail. */
	uv_timer_init(loop, &srv->kick);
	srv->listener.data = srv;
	srv->kick.data = srv;
	srv->handles = 2;
	rc = uv_tcp_bind(&srv->listener, (struct sockaddr *)&ss, 0);
	if (rc == 0)
		rc = uv_listen((uv_stream_t *)&srv->listener, HTTP_BACKLOG,
		    http_server_connection_cb);
	if (rc < 0) {
		log_error("cannot listen for HTTP",
		    LF_STR("listen", opts->listen),
		    LF_STR("error", uv_strerror(rc)), LF_END);
		/* The struct is freed once the handles are closed. */
		srv->shutting_down = true;
		http_server_close_handles(srv);
		return rc;
	}
	len = sizeof(ss);
	if (uv_tcp_getsockname(&srv->listener, (struct sockaddr *)&ss, &len) ==
	    0) {
		if (ss.ss_family == AF_INET)
			srv->port =
			    ntohs(((struct sockaddr_in *)&ss)->sin_port);
		else if (ss.ss_family == AF_INET6)
			srv->port =
			    ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
	}
	log_info("http listening", LF_STR("listen", opts->listen),
	    LF_INT("port", srv->port), LF_END);
	fdguard_listening(FDGUARD_TRACKER, true);
	*out = srv;
	return 0;
}

void
http_server_shutdown(
    struct http_server *srv, void (*done)(void *arg), void *arg)
{
	struct http_conn *c, *next;

	if (srv->shutting_down)
		return;
	srv->shutting_down = true;
	fdguard_listening(FDGUARD_TRACKER, false);
	srv->done = done;
	srv->done_arg = arg;
	http_server_close_handles(srv);
	for (c = srv->conns; c != NULL; c = next) {
		next = c->next;
		http_conn_close(c);
	}
	http_server_check_done(srv);
}

int
http_server_port(const struct http_server *srv)
{
	return srv->port;
}

struct http_server_stats
http_server_stats(const struct http_server *srv)
{
	struct http_server_stats s = srv->stats;

	s.active = srv->nactive;
	return s;
}
