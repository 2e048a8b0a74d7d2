/*
 * test_http_server: the tracker's HTTP/1.1 server, for real.  Each test
 * starts a server on 127.0.0.1 (a port the kernel picks) and runs its loop
 * in a thread of its own; the test itself is the client, with blocking
 * sockets and receive timeouts, so cmocka's asserts run in the main thread.
 * The handler (loop thread) echoes the request back in headers and body,
 * or holds the exchanges and answers them later from a timer (in reverse
 * order, in batches, or after the client is gone).  Every test ends with
 * http_server_shutdown(), its done callback, and uv_loop_close() == 0;
 * exchanges still held then are answered after the server is gone, which
 * frees them (ASan and valgrind check that nothing leaks or is touched
 * after free).
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <uv.h>

#include "redrive/http_server.h"
#include "redrive/log.h"

#define HOLD_MAX 64

enum fx_mode {
	FX_ECHO = 0, /* answer at once */
	FX_HOLD,     /* answer only after the server is gone */
	FX_REVERSE3, /* hold three, then answer them last first */
	FX_BATCH,    /* a 50 ms timer answers all held, last first */
	FX_DELAY,    /* a 300 ms timer answers all held */
};

struct fx {
	uv_loop_t loop;
	uv_async_t stop;
	uv_timer_t timer;
	pthread_t thread;
	bool running;
	struct http_server *srv;
	int port;
	enum fx_mode mode;
	/* Loop thread only (read by the test after the join). */
	struct http_exchange *held[HOLD_MAX];
	const struct http_request *held_req[HOLD_MAX];
	int nheld;
	int max_held;
	char order[HOLD_MAX][16]; /* paths in the order they were answered */
	int norder;
	bool done_called;
	int late_answers; /* answered after the server was gone */
	bool answering;	  /* inside fx_answer_held() */
	int reentered;	  /* handler calls from inside http_respond() */
	/* Shared while the loop runs. */
	pthread_mutex_t mu;
	int seen;
	struct http_server_stats stats; /* as seen by the last handler call */
	FILE *log;
};

/* ---- The loop thread --------------------------------------------------- */

/* Answers with the request echoed: fields in X- headers, the body back. */
static void
fx_echo(struct http_exchange *x, const struct http_request *req)
{
	const char *host = http_request_header(req, "host");
	size_t n = strlen(req->url) * 2 + 512;
	char *extra = malloc(n);

	if (extra == NULL)
		abort();
	snprintf(extra, n,
	    "X-Method: %s\r\nX-Path: %s\r\nX-Query: %s\r\nX-Host: %s\r\n"
	    "X-Nheaders: %zu\r\nX-Peer: %s\r\n",
	    req->method, req->path, req->query, host != NULL ? host : "-",
	    req->nheaders, req->peer);
	if (req->body_len > 0)
		http_respond(x, 200, "application/octet-stream", req->body,
		    req->body_len, extra);
	else
		http_respond(
		    x, 200, "text/plain", req->path, strlen(req->path), extra);
	free(extra);
}

/* Answers every held exchange, the last one first. */
static void
fx_answer_held(struct fx *f)
{
	int i;

	f->answering = true;
	for (i = f->nheld - 1; i >= 0; i--) {
		if (f->norder < HOLD_MAX)
			snprintf(f->order[f->norder++], sizeof(f->order[0]),
			    "%s", f->held_req[i]->path);
		fx_echo(f->held[i], f->held_req[i]);
	}
	f->nheld = 0;
	f->answering = false;
}

static void
fx_timer_cb(uv_timer_t *t)
{
	fx_answer_held(t->data);
}

static void
fx_handler(struct http_exchange *x, const struct http_request *req, void *arg)
{
	struct fx *f = arg;

	if (f->answering)
		f->reentered++;
	pthread_mutex_lock(&f->mu);
	f->seen++;
	f->stats = http_server_stats(f->srv);
	pthread_mutex_unlock(&f->mu);
	if (f->mode == FX_ECHO || f->nheld == HOLD_MAX) {
		fx_echo(x, req);
		return;
	}
	f->held[f->nheld] = x;
	f->held_req[f->nheld] = req;
	f->nheld++;
	if (f->nheld > f->max_held)
		f->max_held = f->nheld;
	if (f->mode == FX_REVERSE3 && f->nheld == 3)
		uv_timer_start(&f->timer, fx_timer_cb, 20, 0);
	if (f->mode == FX_DELAY && !uv_is_active((uv_handle_t *)&f->timer))
		uv_timer_start(&f->timer, fx_timer_cb, 300, 0);
}

/* The server is gone: held exchanges are orphans, answering frees them. */
static void
fx_done_cb(void *arg)
{
	struct fx *f = arg;
	int i;

	f->done_called = true;
	for (i = 0; i < f->nheld; i++) {
		http_respond(f->held[i], 200, NULL, NULL, 0, NULL);
		f->late_answers++;
	}
	f->nheld = 0;
}

static void
fx_stop_cb(uv_async_t *a)
{
	struct fx *f = a->data;

	uv_close((uv_handle_t *)&f->timer, NULL);
	uv_close((uv_handle_t *)a, NULL);
	http_server_shutdown(f->srv, fx_done_cb, f);
}

static void *
fx_thread(void *arg)
{
	struct fx *f = arg;

	uv_run(&f->loop, UV_RUN_DEFAULT);
	return NULL;
}

/* ---- Fixture ----------------------------------------------------------- */

static struct fx *
fx_start(void **state, enum fx_mode mode, struct http_server_opts *opts)
{
	struct fx *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	*state = f;
	f->mode = mode;
	pthread_mutex_init(&f->mu, NULL);
	f->log = tmpfile();
	assert_non_null(f->log);
	log_set_fd(fileno(f->log));
	log_set_level(LOG_LEVEL_DEBUG);
	assert_int_equal(uv_loop_init(&f->loop), 0);
	assert_int_equal(uv_async_init(&f->loop, &f->stop, fx_stop_cb), 0);
	f->stop.data = f;
	assert_int_equal(uv_timer_init(&f->loop, &f->timer), 0);
	f->timer.data = f;
	if (mode == FX_BATCH)
		uv_timer_start(&f->timer, fx_timer_cb, 50, 50);
	opts->listen = "127.0.0.1:0";
	assert_int_equal(
	    http_server_start(&f->srv, &f->loop, opts, fx_handler, f), 0);
	f->port = http_server_port(f->srv);
	assert_true(f->port > 0);
	assert_int_equal(pthread_create(&f->thread, NULL, fx_thread, f), 0);
	f->running = true;
	return f;
}

static struct http_server_opts
fx_opts(void)
{
	struct http_server_opts o;

	memset(&o, 0, sizeof(o));
	o.max_body = (uint64_t)1024 * 1024;
	o.header_timeout_ms = 5000;
	o.idle_timeout_ms = 5000;
	o.max_connections = 100;
	return o;
}

/* Shuts the server down, joins the loop thread, closes the loop. */
static void
fx_stop(struct fx *f)
{
	if (!f->running)
		return;
	f->running = false;
	uv_async_send(&f->stop);
	pthread_join(f->thread, NULL);
	assert_true(f->done_called);
	assert_int_equal(f->reentered, 0);
	assert_int_equal(uv_loop_close(&f->loop), 0);
}

static int
fx_teardown(void **state)
{
	struct fx *f = *state;

	if (f == NULL)
		return 0;
	fx_stop(f);
	log_set_fd(2);
	log_set_level(LOG_LEVEL_INFO);
	if (getenv("TEST_LOG") != NULL) {
		char buf[4096];
		ssize_t n;
		off_t off = 0;

		while ((n = pread(fileno(f->log), buf, sizeof(buf), off)) > 0) {
			fwrite(buf, 1, (size_t)n, stderr);
			off += n;
		}
	}
	if (f->log != NULL)
		fclose(f->log);
	pthread_mutex_destroy(&f->mu);
	free(f);
	*state = NULL;
	return 0;
}

static int
fx_seen(struct fx *f)
{
	int n;

	pthread_mutex_lock(&f->mu);
	n = f->seen;
	pthread_mutex_unlock(&f->mu);
	return n;
}

/* Waits (5 s at most) until the handler has seen n requests. */
static void
fx_wait_seen(struct fx *f, int n)
{
	int i;

	for (i = 0; i < 1000 && fx_seen(f) < n; i++)
		usleep(5000);
	assert_int_equal(fx_seen(f), n);
}

/* True when the server's log holds s (call after fx_stop). */
static bool
fx_log_has(struct fx *f, const char *s)
{
	static char buf[1 << 20];
	size_t n;

	fflush(f->log);
	n = (size_t)pread(fileno(f->log), buf, sizeof(buf) - 1, 0);
	if (n > sizeof(buf) - 1)
		n = 0;
	buf[n] = '\0';
	return strstr(buf, s) != NULL;
}

/* ---- The client -------------------------------------------------------- */

struct cl {
	int fd;
	char *buf;
	size_t len;
	size_t cap;
};

struct resp {
	int status;
	char head[32768];
	char *body;
	size_t body_len;
};

static int64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static struct cl *
cl_open(int port)
{
	struct cl *c = calloc(1, sizeof(*c));
	struct sockaddr_in sin;
	struct timeval tv = { .tv_sec = 5, .tv_usec = 0 };
	int one = 1;

	assert_non_null(c);
	c->fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(c->fd >= 0);
	setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_port = htons((uint16_t)port);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(
	    connect(c->fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	c->cap = 1 << 16;
	c->buf = malloc(c->cap);
	assert_non_null(c->buf);
	return c;
}

static void
cl_close(struct cl *c)
{
	if (c == NULL)
		return;
	if (c->fd >= 0)
		close(c->fd);
	free(c->buf);
	free(c);
}

/* Closes with a reset (SO_LINGER 0) instead of a FIN. */
static void
cl_reset(struct cl *c)
{
	struct linger l = { .l_onoff = 1, .l_linger = 0 };

	setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
	cl_close(c);
}

static void
cl_send(struct cl *c, const void *p, size_t n)
{
	const char *s = p;
	ssize_t k;

	while (n > 0) {
		k = send(c->fd, s, n, MSG_NOSIGNAL);
		assert_true(k > 0);
		s += k;
		n -= (size_t)k;
	}
}

static void
cl_sends(struct cl *c, const char *s)
{
	cl_send(c, s, strlen(s));
}

/* Reads more: bytes read, 0 at EOF, -1 on an error or the timeout. */
static ssize_t
cl_more(struct cl *c)
{
	ssize_t n;

	if (c->cap - c->len < 65536) {
		c->cap *= 2;
		c->buf = realloc(c->buf, c->cap);
		assert_non_null(c->buf);
	}
	n = recv(c->fd, c->buf + c->len, c->cap - c->len - 1, 0);
	if (n > 0)
		c->len += (size_t)n;
	return n;
}

/* The value of a response header (first match), or NULL. */
static const char *
resp_header(const struct resp *r, const char *name)
{
	static char val[4096];
	const char *p = strstr(r->head, "\r\n");
	size_t nl = strlen(name), vl;

	while (p != NULL && p[2] != '\r') {
		p += 2;
		if (strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
			p += nl + 1;
			while (*p == ' ')
				p++;
			vl = strcspn(p, "\r");
			if (vl >= sizeof(val))
				vl = sizeof(val) - 1;
			memcpy(val, p, vl);
			val[vl] = '\0';
			return val;
		}
		p = strstr(p, "\r\n");
	}
	return NULL;
}

/*
 * Reads one response (the body by its Content-Length; none when no_body,
 * for HEAD).  Returns 0, or -1 when the connection ended first.
 */
static int
cl_resp_ex(struct cl *c, struct resp *r, bool no_body)
{
	const char *end, *v;
	size_t hl, bl = 0;

	memset(r, 0, sizeof(*r));
	while ((end = memmem(c->buf, c->len, "\r\n\r\n", 4)) == NULL)
		if (cl_more(c) <= 0)
			return -1;
	hl = (size_t)(end - c->buf) + 4;
	if (hl >= sizeof(r->head))
		return -1;
	memcpy(r->head, c->buf, hl);
	r->head[hl] = '\0';
	if (strncmp(r->head, "HTTP/1.1 ", 9) != 0)
		return -1;
	r->status = (int)strtol(r->head + 9, NULL, 10);
	v = resp_header(r, "Content-Length");
	if (v != NULL && !no_body)
		bl = strtoul(v, NULL, 10);
	while (c->len < hl + bl)
		if (cl_more(c) <= 0)
			return -1;
	r->body = malloc(bl + 1);
	assert_non_null(r->body);
	memcpy(r->body, c->buf + hl, bl);
	r->body[bl] = '\0';
	r->body_len = bl;
	memmove(c->buf, c->buf + hl + bl, c->len - hl - bl);
	c->len -= hl + bl;
	return 0;
}

static int
cl_resp(struct cl *c, struct resp *r)
{
	return cl_resp_ex(c, r, false);
}

static void
resp_free(struct resp *r)
{
	free(r->body);
	r->body = NULL;
}

/* True when the server closes the connection with nothing more sent. */
static bool
cl_closed(struct cl *c)
{
	size_t before = c->len;
	ssize_t n;

	for (;;) {
		n = cl_more(c);
		if (n == 0)
			return c->len == before;
		if (n < 0)
			return errno == ECONNRESET && c->len == before;
	}
}

/* Sends a request on a new connection and reads the one answer. */
static void
one_shot(struct fx *f, const char *req, size_t len, struct resp *r)
{
	struct cl *c = cl_open(f->port);

	cl_send(c, req, len);
	assert_int_equal(cl_resp(c, r), 0);
	cl_close(c);
}

/* Expects `status` with Connection: close, then the close. */
static void
expect_refusal(struct fx *f, const char *req, size_t len, int status)
{
	struct cl *c = cl_open(f->port);
	struct resp r;
	const char *v;

	cl_send(c, req, len);
	assert_int_equal(cl_resp(c, &r), 0);
	if (r.status != status)
		print_error("request: %.*s\n", (int)(len < 80 ? len : 80), req);
	assert_int_equal(r.status, status);
	v = resp_header(&r, "Connection");
	assert_non_null(v);
	assert_string_equal(v, "close");
	resp_free(&r);
	assert_true(cl_closed(c));
	cl_close(c);
}

#define REFUSE(f, s, st) expect_refusal((f), (s), sizeof(s) - 1, (st))

/* ---- Pure functions ---------------------------------------------------- */

static void
test_status_text(void **state)
{
	(void)state;
	assert_string_equal(http_status_text(200), "OK");
	assert_string_equal(http_status_text(404), "Not Found");
	assert_string_equal(http_status_text(413), "Content Too Large");
	assert_string_equal(
	    http_status_text(431), "Request Header Fields Too Large");
	assert_string_equal(http_status_text(503), "Service Unavailable");
	assert_string_equal(http_status_text(799), "Unknown");
}

static void
test_request_header(void **state)
{
	struct http_header h[] = { { "Host", "a" }, { "content-type", "x/y" },
		{ "X-Dup", "1" }, { "x-dup", "2" } };
	struct http_request r;

	(void)state;
	memset(&r, 0, sizeof(r));
	r.headers = h;
	r.nheaders = 4;
	assert_string_equal(http_request_header(&r, "HOST"), "a");
	assert_string_equal(http_request_header(&r, "Content-Type"), "x/y");
	assert_string_equal(http_request_header(&r, "x-DUP"), "1");
	assert_null(http_request_header(&r, "Accept"));
}

/* Bad listen addresses fail; a port in use fails and frees itself. */
static void
test_start_errors(void **state)
{
	struct http_server_opts o = fx_opts();
	struct http_server *a = NULL, *b = (struct http_server *)&o;
	FILE *log = tmpfile();
	uv_loop_t loop;
	char listen[64], buf[4096];
	ssize_t n;

	(void)state;
	assert_non_null(log);
	log_set_fd(fileno(log));
	assert_int_equal(uv_loop_init(&loop), 0);
	o.listen = "nonsense";
	assert_int_equal(
	    http_server_start(&b, &loop, &o, fx_handler, NULL), -EINVAL);
	assert_null(b);
	o.listen = "127.0.0.1:0";
	assert_int_equal(http_server_start(&a, &loop, &o, fx_handler, NULL), 0);
	snprintf(listen, sizeof(listen), "127.0.0.1:%d", http_server_port(a));
	o.listen = listen;
	assert_true(http_server_start(&b, &loop, &o, fx_handler, NULL) < 0);
	assert_null(b);
	http_server_shutdown(a, NULL, NULL);
	assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
	assert_int_equal(uv_loop_close(&loop), 0);
	log_set_fd(2);
	n = pread(fileno(log), buf, sizeof(buf) - 1, 0);
	assert_true(n > 0);
	buf[n] = '\0';
	assert_non_null(strstr(buf, "msg=\"cannot listen for HTTP\""));
	fclose(log);
}

/* ---- Requests ---------------------------------------------------------- */

static void
test_get(void **state)
{
	struct http_server_opts o = fx_opts();
	struct fx *f = fx_start(state, FX_ECHO, &o);
	struct resp r;
	const char *d;
	static const char req[] =
	    "GET /hello?x=1&y=2 HTTP/1.1\r\nHost: example.org\r\n"
	    "Accept:  */*  \r\n\r\n";

	one_shot(f, req, sizeof(req) - 1, &r);
	assert_int_equal(r.status, 200);
	assert_string_equal(resp_header(&r, "X-Method"), "GET");
	assert_string_equal(resp_header(&r, "X-Path"), "/hello");
	assert_string_equal(resp_header(&r, "X-Query"), "x=1&y=2");
	assert_string_equal(resp_header(&r, "X-Host"), "example.org");
	assert_string_equal(resp_header(&r, "X-Nheaders"), "2");
	assert_string_equal(resp_header(&r, "X-Peer"), "127.0.0.1");
	assert_string_equal(resp_header(&r, "Content-Type"), "text/plain");
	assert_string_equal(resp_header(&r, "Content-Length"), "6");
	assert_null(resp_header(&r, "Connection"));
	assert_string_equal(r.body, "/hello");
	assert_true(strncmp(r.head, "HTTP/1.1 200 OK\r\n", 17) == 0);
	/* IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT". */
	d = resp_header(&r, "Date");
	assert_non_null(d);
	assert_int_equal(strlen(d), 29);
	assert_true(d[3] == ',' && d[4] == ' ' && d[7] == ' ' && d[11] == ' ' &&
	    d[16] == ' ' && d[19] == ':' && d[22] == ':');
	assert_string_equal(d + 25, " GMT");
	resp_free(&r);
	fx_stop(f);
	assert_int_equal(f->seen, 1);
	assert_true(fx_log_has(f, "msg=\"http request\""));
	assert_true(fx_log_has(f, "path=/hello"));
	assert_true(fx_log_has(f, "status=200"));
}

static void
test_absolute_form(void **state)
{
	struct http_server_opts o = fx_opts();
	struct fx *f = fx_start(state, FX_ECHO, &o);
	static const char req[] =
	    "GET http://example.org/p/q?z=1#frag HTTP/1.1\r\nHost: example.org"
	    "\r\n\r\n";
	struct resp r;

	one_shot(f, req, sizeof(req) - 1, &r);
	assert_int_equal(r.status, 200);
	assert_string_equal(resp_header(&r, "X-Path"), "/p/q");
	assert_string_equal(resp_header(&r, "X-Query"), "z=1");
	resp_free(&r);
}

static void
test_post_body_with_nuls(void **state)
{
	struct http_server_opts o = fx_opts();
	struct fx *f = fx_start(state, FX_ECHO, &o);
	static const char req[] = "POST /in HTTP/1.1\r\nHost: a\r\n"
				  "Content-Length: 9\r\n\r\na\0b\0\0cd\r\n";
	struct resp r;

	one_shot(f, req, sizeof(req) - 1, &r);
	assert_int_equal(r.status, 200);
	assert_string_equal(resp_header(&r, "X-Method"), "POST");
	assert_int_equal(r.body_len, 9);
	assert_memory_equal(r.body, "a\0b\0\0cd\r\n", 9);
	resp_free(&r);
}

static void
test_chunked(void **state)
{
	struct http_server_opts o = fx_opts();
	struct fx *f = fx_start(state, FX_ECHO, &o);
	static const char req[] =
	    "POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
	    "5\r\nhello\r\n6;ext=1\r\n w\0rld\r\n0\r\nX-Trailer: t\r\n\r\n";
	struct resp r;

	one_shot(f, req, sizeof(req) - 1, &r);
	assert_int_equal(r.status, 200);
	assert_int_equal(r.body_len, 11);
	assert_memory_equal(r.body, "hello w\0rld", 11);
	resp_free(&r);
}

static void
test_keep_alive(void **state)
{
	struct http_server_opts o = fx_opts();
	struct fx *f = fx_start(state, FX_ECHO, &o);
	struct cl *c = cl_open(f->port);
	struct resp r;
	char req[128], path[16];
	int i;

	for (i = 1; i <= 3; i++) {
		snprintf(path, sizeof(path), "/r%d", i);
		snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: a\r\n\r\n",
		    path);
		cl_sends(c, req);
		assert_int_equal(cl_resp(c, &r), 0);
		assert_int_equal(r.status, 200);
		assert_string_equal(resp_header(&r, "X-Path"), path);
		assert_null(resp_header(&r, "Connection"));
		resp_free(&r);
	}
	/* Stats as the third call of the handler saw them. */
	pthread_mutex_lock(&f->mu);
	assert_int_equal(f->stats.requests, 3);
	assert_int_equal(f->stats.connections, 1);
	assert_int_equal(f->stats.active, 1);
	pthread_mutex_unlock(&f->mu);
	cl_close(c);
}

/* Three requests in one write, answered last first, arrive in order. */
static void
test_pipelined_reverse(void **state)
{
	struct http_server_opts o = fx_opts();
	struct fx *f = fx_start(state, FX_REVERSE3, &o);
	struct cl *c = cl_open(f->port);
	struct resp r;
	char path[16];
	int i;

	cl_sends(c,
	    "GET /1 HTTP/1.1\r\nHost: a\r\n\r\n"
	    "POST /2 HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\ntwo"
	    "GET /3 HTTP/1.1\r\nHost: a\r\n\r\n");
	for (i = 1; i <= 3; i++) {
		snprintf(path, sizeof(path), "/%d", i);
		assert_int_equal(cl_resp(c, &r), 0);
		assert_int_equal(r.status, 200);
		assert_string_equal(resp_header(&r, "X-Path"), path);
		if (i == 2)
			assert_string_equal(r.body, "two");
		resp_free(&r);
	}
	cl_close(c);
	fx_stop(f);
	assert_int_equal(f->norder, 3);
	assert_string_equal(f->order[0], "/3");
	assert_string_equal(f->order[1], "/2");
	assert_string_equal(f->order[2], "/1");
}

/* 20 pipelined requests: never more than 16 wait for an answer. */
static void
test_pipeline_cap(void **state)
{
	struct http_server_opts o = fx_opts();
	struct fx *f = fx_start(state, FX_BATCH, &o);
	struct cl *c = cl_open(f->port);
	char all[2048], path[16];
	size_t n = 0;
	struct resp r;
	int i;

	for (i = 0; i < 20; i++)
		n += (size_t)snprintf(all + n, sizeof(all) - n,
		    "GET /p%d HTTP/1.1\r\nHost: a\r\n\r\n", i);
	cl_send(c, all, n);
	for (i = 0; i < 20; i++) {
		snprintf(path, sizeof(path), "/p%d", i);
		assert_int_equal(cl_resp(c, &r), 0);
		assert_string_equal(resp_header(&r, "X-Path"), path);
		resp_free(&r);
	}
	cl_close(c);
	fx_stop(f);
	assert_int_equal(f->max_held, 16);
	assert_int_equal(f->seen, 20);
}

static void
test_http10(void **state)
{
	struct http_server_opts o = fx_opts();
	struct fx *f = fx_start(state, FX_ECHO, &o);
	struct cl *c;
	struct resp r;

	/* HTTP/1.0 without keep-alive: answered, then closed. */
	c = cl_open(f->port);
	cl_sends(c, "GET /a HTTP/1.0\r\n\r\n");
	assert_int_equal(cl_resp(c, &r), 0);
	assert_int_equal(r.status, 200);
	assert_string_equal(resp_header(&r, "Connection"), "close");
	resp_free(&r);
	assert_true(cl_closed(c));
	cl_close(c);

	/* HTTP/1.0 with keep-alive: the connection stays. */
	c = cl_open(f->port);
	cl_sends(c, "GET /b HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
	assert_int_equal(cl_resp(c, &r), 0);
	assert_string_equal(resp_header(&r, "Connection"), "keep-alive");
	resp_free(&r);
	cl_sends(c, "GET /c HTTP/1.0\r\n\r\n");
	assert_int_equal(cl_resp(c, &r), 0);
	assert_string_equal(resp_header(&r, "X-Path"), "/c");
	assert_string_equal(resp_header(&r, "Connection"), "close");
	resp_free(&r);
	assert_true(cl_closed(c));
	cl_close(c);

	/* HTTP/1.1 with Connection: close; what follows is not parsed. */
	c = cl_open(f->port);
	cl_sends(c,
	    "GET /d HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
	    "GET /e HTTP/1.1\r\nHost: a\r\n\r\n");
	assert_int_equal(cl_resp(c, &r), 0);
	assert_string_equal(resp_header(&r, "X-Path"), "/d");
	assert_string_equal(resp_header(&r, "Connection"), "close");
	resp_free(&r);
	assert_true(cl_closed(c));
	cl_close(c);
	fx_stop(f);
	assert_int_equal(f->seen, 4);
}

static void
test_head(void **state)
{
	struct http_server_opts o = fx_opts();
	struct fx *f = fx_start(state, FX_ECHO, &o);
	struct cl *c = cl_open(f->port);
	struct resp r;

	cl_sends(c,
	    "HEAD /abc HTTP/1.1\r\nHost: a\r\n\r\n"
	    "GET /next HTTP/1.1\r\nHost: a\r\n\r\n");
	assert_int_equal(cl_resp_ex(c, &r, true), 0);
	assert_int_equal(r.status, 200);
	assert_string_equal(resp_header(&r, "Content-Length"), "4");
	resp_free(&r);
	/* No body was sent: the next answer follows the head directly. */
	assert_int_equal(cl_resp(c, &r), 0);
	assert_string_equal(resp_header(&r, "X-Path"), "/next");
	assert_string_equal(r.body, "/next");
	resp_free(&r);
	cl_close(c);
}

/* ---- Protocol errors --------------------------------------------------- */

static void
test_400(void **state)
{
	struct http_server_opts o = fx_opts();
	struct fx *f = fx_start(state, FX_ECHO, &o);

	REFUSE(f, "GARBAGE\r\n\r\n", 400);
	/* Bare LF line ends, lenient flags off (RFC 9112 2.2). */
	REFUSE(f, "GET / HTTP/1.1\nHost: a\n\n", 400);
	REFUSE(f, "GET / HTTP/1.0\n\n", 400);
	REFUSE(f, "GET / HTTP/1.1\r\nHost: a\r\n\n", 400);
	REFUSE(f, "GET / HTTP/1.1\r\nHost: a\nX: b\r\n\r\n", 400);
	REFUSE(f,
	    "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
	    "1\r\nx\r\n0\r\nX: 1\n\r\n",
	    400);
	REFUSE(f,
	    "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
	    "1\r\nx\r\n0\r\n\n",
	    400);
	/* Bad or conflicting framing. */
	REFUSE(
	    f, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1x\r\n\r\n", 400);
	REFUSE(
	    f, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", 400);
	REFUSE(f,
	    "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n"
	    "Content-Length: 3\r\n\r\nabc",
	    400);
	REFUSE(f,
	    "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n"
	    "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
	    400);
	REFUSE(f,
	    "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
	    "zz\r\n",
	    400);
	/* Host missing or twice, white space before the colon, no name. */
	REFUSE(f, "GET / HTTP/1.1\r\n\r\n", 400);
	REFUSE(f, "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400);
	REFUSE(f, "GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400);
	REFUSE(f, "GET / HTTP/1.1\r\nHost: a\r\n: b\r\n\r\n", 400);
	REFUSE(f, "GET / HTTP/1.1\r\nHost: a\x01\r\n\r\n", 400);
	/* Other refusals of the same kind. */
	REFUSE(f, "GET / HTTP/1.1\r\nHost: a\r\nExpect: magic\r\n\r\n", 417);
	REFUSE(f, "GET /\r\n\r\n", 505);
	fx_stop(f);
	assert_int_equal(f->seen, 0);
	assert_true(fx_log_has(f,
	    "msg=\"http request refused\" peer=127.0.0.1"
	    " status=400"));
	assert_true(fx_log_has(f, "reason=\"bare LF line end\""));
}

/*
 * An error after good requests waits for their answers, which the handler
 * gives late: 200, 200, then 400 and the close.
 */
static void
test_error_after_good_requests(void **state)
{
	struct http_server_opts o = fx_opts();
	struct fx *f = fx_start(state, FX_DELAY, &o);
	struct cl *c = cl_open(f->port);
	struct resp r;

	cl_sends(c,
	    "GET /1 HTTP/1.1\r\nHost: a\r\n\r\n"
	    "GET /2 HTTP/1.1\r\nHost: a\r\n\r\n"
	    "BAD\x01 / HTTP/1.1\r\n\r\n");
	assert_int_equal(cl_resp(c, &r), 0);
	assert_int_equal(r.status, 200);
	assert_string_equal(resp_header(&r, "X-Path"), "/1");
	resp_free(&r);
	assert_int_equal(cl_resp(c, &r), 0);
	assert_int_equal(r.status, 200);
	assert_string_equal(resp_header(&r, "X-Path"), "/2");
	resp_free(&r);
	assert_int_equal(cl_resp(c, &r), 0);
	assert_int_equal(r.status, 400);
	resp_free(&r);
	assert_true(cl_closed(c));
	cl_close(c);
	fx_stop(f);
	assert_int_equal(f->seen, 2);
}

static void
test_413(void **state)
{
	struct http_server_opts o = fx_opts();
	struct fx *f;
	struct cl *c;
	struct resp r;
	char body[101], req[512];
	int n;

	o.max_body = 100;
	f = fx_start(state, FX_ECHO, &o);
	memset(body, 'b', sizeof(body));
	/* By Content-Length: refused before the body is sent. */
	REFUSE(f, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 101\r\n\r\n",
	    413);
	/* Also when the client sends the body anyway (lingering close). */
	c = cl_open(f->port);
	n = snprintf(req, sizeof(req),
	    "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 101\r\n\r\n");
	cl_send(c, req, (size_t)n);
	cl_send(c, body, 101);
	assert_int_equal(cl_resp(c, &r), 0);
	assert_int_equal(r.status, 413);
	resp_free(&r);
	assert_true(cl_closed(c));
	cl_close(c);
	/* Exactly max_body is fine. */
	c = cl_open(f->port);
	n = snprintf(req, sizeof(req),
	    "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n");
	cl_send(c, req, (size_t)n);
	cl_send(c, body, 100);
	assert_int_equal(cl_resp(c, &r), 0);
	assert_int_equal(r.status, 200);
	assert_int_equal(r.body_len, 100);
	resp_free(&r);
	/* Chunked, growing past max_body: 60 + 41. */
	n = snprintf(req, sizeof(req),
	    "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
	    "3c\r\n%.60s\r\n29\r\n%.41s\r\n0\r\n\r\n",
	    body, body);
	cl_send(c, req, (size_t)n);
	assert_int_equal(cl_resp(c, &r), 0);
	assert_int_equal(r.status, 413);
	assert_string_equal(resp_header(&r, "Connection"), "close");
	resp_free(&r);
	assert_true(cl_closed(c));
	cl_close(c);
	/* Chunked, one chunk over the limit: refused at its size line. */
	REFUSE(f,
	    "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
	    "65\r\n",
	    413);
	/* Chunked, exactly max_body in two chunks. */
	c = cl_open(f->port);
	n = snprintf(req, sizeof(req),
	    "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
	    "3c\r\n%.60s\r\n28\r\n%.40s\r\n0\r\n\r\n",
	    body, body);
	cl_send(c, req, (size_t)n);
	assert_int_equal(cl_resp(c, &r), 0);
	assert_int_equal(r.status, 200);
	assert_int_equal(r.body_len, 100);
	resp_free(&r);
	cl_close(c);
	fx_stop(f);
	assert_int_equal(f->seen, 2);
}

static char *
long_request(size_t url_len)
{
	char *s = malloc(url_len + 64);
	size_t n;

	assert_non_null(s);
	n = (size_t)snprintf(s, 64, "GET /");
	memset(s + n, 'u', url_len - 1);
	n += url_len - 1;
	snprintf(s + n, 64, " HTTP/1.1\r\nHost: a\r\n\r\n");
	return s;
}

static void
test_414(void **state)
{
	struct http_server_opts o = fx_opts();
	struct fx *f = fx_start(state, FX_ECHO, &o);
	struct resp r;
	char *s;

	s = long_request(HTTP_URL_MAX);
	one_shot(f, s, strlen(s), &r);
	assert_int_equal(r.status, 200);
	assert_int_equal(strlen(resp_header(&r, "X-Path")), HTTP_URL_MAX);
	resp_free(&r);
	free(s);
	s = long_request(HTTP_URL_MAX + 1);
	expect_refusal(f, s, strlen(s), 414);
	free(s);
}

static void
test_431(void **state)
{
	struct http_server_opts o = fx_opts();
	struct fx *f = fx_start(state, FX_ECHO, &o);
	size_t cap = HTTP_HEADERS_MAX + 30000, n;
	char *s = malloc(cap);
	struct resp r;
	int i;

	assert_non_null(s);
	/* Field bytes: "Host" "a" (5) + "X" + value = HTTP_HEADERS_MAX. */
	n = (size_t)snprintf(s, cap, "GET / HTTP/1.1\r\nHost: a\r\nX: ");
	memset(s + n, 'v', HTTP_HEADERS_MAX - 6);
	n += HTTP_HEADERS_MAX - 6;
	n += (size_t)snprintf(s + n, cap - n, "\r\n\r\n");
	one_shot(f, s, n, &r);
	assert_int_equal(r.status, 200);
	resp_free(&r);
	/* One byte more. */
	n = (size_t)snprintf(s, cap, "GET / HTTP/1.1\r\nHost: a\r\nX: ");
	memset(s + n, 'v', HTTP_HEADERS_MAX - 5);
	n += HTTP_HEADERS_MAX - 5;
	n += (size_t)snprintf(s + n, cap - n, "\r\n\r\n");
	expect_refusal(f, s, n, 431);
	/* 64 fields are fine, 65 are not. */
	n = (size_t)snprintf(s, cap, "GET / HTTP/1.1\r\nHost: a\r\n");
	for (i = 0; i < 63; i++)
		n += (size_t)snprintf(s + n, cap - n, "X-%d: %d\r\n", i, i);
	n += (size_t)snprintf(s + n, cap - n, "\r\n");
	one_shot(f, s, n, &r);
	assert_int_equal(r.status, 200);
	assert_string_equal(resp_header(&r, "X-Nheaders"), "64");
	resp_free(&r);
	n -= 2;
	n += (size_t)snprintf(s + n, cap - n, "X-last: 1\r\n\r\n");
	expect_refusal(f, s, n, 431);
	/* White space llhttp skips counts too. */
	n = (size_t)snprintf(s, cap, "GET / HTTP/1.1\r\nHost: a\r\nX:");
	memset(s + n, ' ', HTTP_HEADERS_MAX + 5000);
	n += HTTP_HEADERS_MAX + 5000;
	n += (size_t)snprintf(s + n, cap - n, "v\r\n\r\n");
	expect_refusal(f, s, n, 431);
	/* And so do trailer fields. */
	n = (size_t)snprintf(s, cap,
	    "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
	    "1\r\nx\r\n0\r\nT: ");
	memset(s + n, 't', (size_t)HTTP_HEADERS_MAX);
	n += (size_t)HTTP_HEADERS_MAX;
	n += (size_t)snprintf(s + n, cap - n, "\r\n\r\n");
	expect_refusal(f, s, n, 431);
	free(s);
	fx_stop(f);
	assert_int_equal(f->seen, 2);
}

/* ---- Timeouts and limits ------------------------------------------------ */

static void
test_header_timeout(void **state)
{
	struct http_server_opts o = fx_opts();
	struct fx *f;
	struct cl *c;
	struct resp r;
	int64_t t0, dt;

	o.header_timeout_ms = 200;
	f = fx_start(state, FX_ECHO, &o);
	c = cl_open(f->port);
	t0 = now_ms();
	cl_sends(c, "GET / HTTP/1.1\r\nHo");
	assert_int_equal(cl_resp(c, &r), 0);
	dt = now_ms() - t0;
	assert_int_equal(r.status, 408);
	assert_string_equal(resp_header(&r, "Connection"), "close");
	assert_true(dt >= 150);
	assert_true(dt < 3000);
	resp_free(&r);
	assert_true(cl_closed(c));
	cl_close(c);
	/* A trickle does not extend it: the clock runs from the first byte. */
	c = cl_open(f->port);
	t0 = now_ms();
	cl_sends(c, "G");
	usleep(100000);
	cl_sends(c, "ET / HTTP/1.1\r\n");
	usleep(50000);
	cl_sends(c, "Host: a\r\n");
	assert_int_equal(cl_resp(c, &r), 0);
	dt = now_ms() - t0;
	assert_int_equal(r.status, 408);
	assert_true(dt >= 150);
	assert_true(dt < 3000);
	resp_free(&r);
	cl_close(c);
}

static void
test_body_and_idle_timeout(void **state)
{
	struct http_server_opts o = fx_opts();
	struct fx *f;
	struct cl *c;
	struct resp r;
	int64_t t0, dt;

	o.idle_timeout_ms = 200;
	f = fx_start(state, FX_ECHO, &o);
	/* A body that stops coming: 408. */
	c = cl_open(f->port);
	cl_sends(c,
	    "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n"
	    "abc");
	assert_int_equal(cl_resp(c, &r), 0);
	assert_int_equal(r.status, 408);
	resp_free(&r);
	assert_true(cl_closed(c));
	cl_close(c);
	/* A keep-alive connection with nothing to do is closed silently. */
	c = cl_open(f->port);
	cl_sends(c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n");
	assert_int_equal(cl_resp(c, &r), 0);
	assert_int_equal(r.status, 200);
	resp_free(&r);
	t0 = now_ms();
	assert_true(cl_closed(c));
	dt = now_ms() - t0;
	assert_true(dt >= 150);
	assert_true(dt < 3000);
	cl_close(c);
	/* So is one that never sends a byte. */
	c = cl_open(f->port);
	assert_true(cl_closed(c));
	cl_close(c);
}

static void
test_connection_cap(void **state)
{
	struct http_server_opts o = fx_opts();
	struct fx *f;
	struct cl *a, *b, *c;
	struct resp r;
	int i;

	o.max_connections = 1;
	f = fx_start(state, FX_ECHO, &o);
	a = cl_open(f->port);
	cl_sends(a, "GET /a HTTP/1.1\r\nHost: a\r\n\r\n");
	assert_int_equal(cl_resp(a, &r), 0);
	assert_int_equal(r.status, 200);
	resp_free(&r);
	/* The second one is refused, even though it sends a request. */
	b = cl_open(f->port);
	cl_sends(b, "GET /b HTTP/1.1\r\nHost: a\r\n\r\n");
	assert_int_equal(cl_resp(b, &r), 0);
	assert_int_equal(r.status, 503);
	assert_string_equal(resp_header(&r, "Connection"), "close");
	assert_string_equal(resp_header(&r, "Retry-After"), "1");
	assert_true(
	    strncmp(r.head, "HTTP/1.1 503 Service Unavailable\r\n", 34) == 0);
	resp_free(&r);
	assert_true(cl_closed(b));
	cl_close(b);
	/* The first one still works; once it is gone, a new one is served. */
	cl_sends(a, "GET /a2 HTTP/1.1\r\nHost: a\r\n\r\n");
	assert_int_equal(cl_resp(a, &r), 0);
	assert_int_equal(r.status, 200);
	resp_free(&r);
	cl_close(a);
	for (i = 0; i < 100; i++) {
		c = cl_open(f->port);
		cl_sends(c, "GET /c HTTP/1.1\r\nHost: a\r\n\r\n");
		assert_int_equal(cl_resp(c, &r), 0);
		cl_close(c);
		if (r.status == 200)
			break;
		resp_free(&r);
		usleep(10000);
	}
	assert_int_equal(r.status, 200);
	resp_free(&r);
	fx_stop(f);
	assert_int_equal(f->stats.connections, 2);
	assert_int_equal(f->stats.active, 1);
	assert_true(fx_log_has(f, "reason=\"too many connections\""));
}

/* ---- Input cut anywhere ------------------------------------------------ */

static void
test_split_everywhere(void **state)
{
	struct http_server_opts o = fx_opts();
	struct fx *f = fx_start(state, FX_ECHO, &o);
	static const char req[] = "POST /x HTTP/1.1\r\nHost: a\r\n"
				  "Content-Length: 5\r\n\r\nhello";
	struct cl *c = cl_open(f->port);
	struct resp r;
	size_t i;

	for (i = 1; i < sizeof(req) - 1; i++) {
		cl_send(c, req, i);
		usleep(1000);
		cl_send(c, req + i, sizeof(req) - 1 - i);
		assert_int_equal(cl_resp(c, &r), 0);
		assert_int_equal(r.status, 200);
		assert_string_equal(resp_header(&r, "X-Method"), "POST");
		assert_string_equal(resp_header(&r, "X-Path"), "/x");
		assert_string_equal(resp_header(&r, "X-Host"), "a");
		assert_string_equal(resp_header(&r, "X-Nheaders"), "2");
		assert_int_equal(r.body_len, 5);
		assert_memory_equal(r.body, "hello", 5);
		resp_free(&r);
	}
	cl_close(c);
	fx_stop(f);
	assert_int_equal(f->seen, (int)sizeof(req) - 2);
}

/* ---- Async answers, orphans, shutdown ---------------------------------- */

static void
test_expect_continue(void **state)
{
	struct http_server_opts o = fx_opts();
	struct fx *f;
	struct cl *c;
	struct resp r;

	o.max_body = 100;
	f = fx_start(state, FX_ECHO, &o);
	c = cl_open(f->port);
	cl_sends(c,
	    "POST /e HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n"
	    "Expect: 100-continue\r\n\r\n");
	assert_int_equal(cl_resp(c, &r), 0);
	assert_int_equal(r.status, 100);
	assert_string_equal(r.head, "HTTP/1.1 100 Continue\r\n\r\n");
	resp_free(&r);
	cl_sends(c, "hello");
	assert_int_equal(cl_resp(c, &r), 0);
	assert_int_equal(r.status, 200);
	assert_string_equal(r.body, "hello");
	resp_free(&r);
	/* Over the limit: 413, no 100. */
	cl_sends(c,
	    "POST /e HTTP/1.1\r\nHost: a\r\nContent-Length: 500\r\n"
	    "Expect: 100-continue\r\n\r\n");
	assert_int_equal(cl_resp(c, &r), 0);
	assert_int_equal(r.status, 413);
	resp_free(&r);
	assert_true(cl_closed(c));
	cl_close(c);
}

/*
 * The 100 Continue of a pipelined request is an answer like the others:
 * it waits for the answer of the request before it.
 */
static void
test_expect_continue_in_order(void **state)
{
	struct http_server_opts o = fx_opts();
	struct fx *f = fx_start(state, FX_DELAY, &o);
	struct cl *c = cl_open(f->port);
	struct resp r;

	cl_sends(c,
	    "GET /1 HTTP/1.1\r\nHost: a\r\n\r\n"
	    "POST /2 HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n"
	    "Expect: 100-continue\r\n\r\n");
	assert_int_equal(cl_resp(c, &r), 0);
	assert_int_equal(r.status, 200);
	assert_string_equal(resp_header(&r, "X-Path"), "/1");
	resp_free(&r);
	assert_int_equal(cl_resp(c, &r), 0);
	assert_int_equal(r.status, 100);
	resp_free(&r);
	cl_sends(c, "hello");
	assert_int_equal(cl_resp(c, &r), 0);
	assert_int_equal(r.status, 200);
	assert_string_equal(resp_header(&r, "X-Path"), "/2");
	assert_string_equal(r.body, "hello");
	resp_free(&r);
	cl_close(c);
}

/* An Upgrade request is answered as a plain one, then the close. */
static void
test_upgrade_refused(void **state)
{
	struct http_server_opts o = fx_opts();
	struct fx *f = fx_start(state, FX_ECHO, &o);
	struct cl *c = cl_open(f->port);
	struct resp r;

	cl_sends(c,
	    "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\n"
	    "Upgrade: websocket\r\n\r\n\x81\x05hello");
	assert_int_equal(cl_resp(c, &r), 0);
	assert_int_equal(r.status, 200);
	assert_string_equal(resp_header(&r, "Connection"), "close");
	resp_free(&r);
	assert_true(cl_closed(c));
	cl_close(c);
}

/* The client resets the connection; the late answer only frees. */
static void
test_orphan(void **state)
{
	struct http_server_opts o = fx_opts();
	struct fx *f = fx_start(state, FX_DELAY, &o);
	struct cl *c = cl_open(f->port);

	cl_sends(c,
	    "POST /o HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\n"
	    "abc");
	fx_wait_seen(f, 1);
	cl_reset(c);
	usleep(500000); /* the 300 ms timer answers the orphan */
	fx_stop(f);
	assert_int_equal(f->norder, 1);
	assert_int_equal(f->late_answers, 0);
	assert_true(fx_log_has(f, "msg=\"http answer dropped\""));
}

/* A client that half-closes after its request still gets the answer. */
static void
test_half_close(void **state)
{
	struct http_server_opts o = fx_opts();
	struct fx *f = fx_start(state, FX_DELAY, &o);
	struct cl *c = cl_open(f->port);
	struct resp r;

	cl_sends(c,
	    "GET /h1 HTTP/1.1\r\nHost: a\r\n\r\n"
	    "GET /h2 HTTP/1.1\r\nHost: a\r\n\r\nGET /partial");
	shutdown(c->fd, SHUT_WR);
	assert_int_equal(cl_resp(c, &r), 0);
	assert_string_equal(resp_header(&r, "X-Path"), "/h1");
	resp_free(&r);
	assert_int_equal(cl_resp(c, &r), 0);
	assert_string_equal(resp_header(&r, "X-Path"), "/h2");
	resp_free(&r);
	assert_true(cl_closed(c));
	cl_close(c);
	fx_stop(f);
	assert_int_equal(f->seen, 2);
}

/*
 * Shutdown with a request held by the handler, an idle connection and a
 * request half sent: every client sees the close, done runs, the held
 * exchanges are answered after the server is gone and freed.
 */
static void
test_shutdown_pending(void **state)
{
	struct http_server_opts o = fx_opts();
	struct fx *f = fx_start(state, FX_HOLD, &o);
	struct cl *a = cl_open(f->port), *b, *c;

	cl_sends(a,
	    "GET /held1 HTTP/1.1\r\nHost: a\r\n\r\n"
	    "GET /held2 HTTP/1.1\r\nHost: a\r\n\r\n");
	fx_wait_seen(f, 2);
	b = cl_open(f->port);
	c = cl_open(f->port);
	cl_sends(c, "POST / HTTP/1.1\r\nHost: a\r\nContent-Le");
	usleep(50000);
	fx_stop(f);
	assert_true(f->done_called);
	assert_int_equal(f->late_answers, 2);
	assert_true(cl_closed(a));
	assert_true(cl_closed(b));
	assert_true(cl_closed(c));
	cl_close(a);
	cl_close(b);
	cl_close(c);
}

/* Many connections and pipelined requests, then a shutdown mid-flight. */
static void
test_shutdown_busy(void **state)
{
	struct http_server_opts o = fx_opts();
	struct fx *f = fx_start(state, FX_BATCH, &o);
	struct cl *c[8];
	char all[4096];
	size_t n = 0;
	int i, j;

	for (j = 0; j < 30; j++)
		n += (size_t)snprintf(all + n, sizeof(all) - n,
		    "GET /b%d HTTP/1.1\r\nHost: a\r\n\r\n", j);
	for (i = 0; i < 8; i++) {
		c[i] = cl_open(f->port);
		cl_send(c[i], all, n);
	}
	usleep(70000);
	fx_stop(f);
	for (i = 0; i < 8; i++)
		cl_close(c[i]);
	assert_true(f->max_held <= HOLD_MAX);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_status_text),
		cmocka_unit_test(test_request_header),
		cmocka_unit_test(test_start_errors),
		cmocka_unit_test_teardown(test_get, fx_teardown),
		cmocka_unit_test_teardown(test_absolute_form, fx_teardown),
		cmocka_unit_test_teardown(
		    test_post_body_with_nuls, fx_teardown),
		cmocka_unit_test_teardown(test_chunked, fx_teardown),
		cmocka_unit_test_teardown(test_keep_alive, fx_teardown),
		cmocka_unit_test_teardown(test_pipelined_reverse, fx_teardown),
		cmocka_unit_test_teardown(test_pipeline_cap, fx_teardown),
		cmocka_unit_test_teardown(test_http10, fx_teardown),
		cmocka_unit_test_teardown(test_head, fx_teardown),
		cmocka_unit_test_teardown(test_400, fx_teardown),
		cmocka_unit_test_teardown(
		    test_error_after_good_requests, fx_teardown),
		cmocka_unit_test_teardown(test_413, fx_teardown),
		cmocka_unit_test_teardown(test_414, fx_teardown),
		cmocka_unit_test_teardown(test_431, fx_teardown),
		cmocka_unit_test_teardown(test_header_timeout, fx_teardown),
		cmocka_unit_test_teardown(
		    test_body_and_idle_timeout, fx_teardown),
		cmocka_unit_test_teardown(test_connection_cap, fx_teardown),
		cmocka_unit_test_teardown(test_split_everywhere, fx_teardown),
		cmocka_unit_test_teardown(test_expect_continue, fx_teardown),
		cmocka_unit_test_teardown(
		    test_expect_continue_in_order, fx_teardown),
		cmocka_unit_test_teardown(test_upgrade_refused, fx_teardown),
		cmocka_unit_test_teardown(test_orphan, fx_teardown),
		cmocka_unit_test_teardown(test_half_close, fx_teardown),
		cmocka_unit_test_teardown(test_shutdown_pending, fx_teardown),
		cmocka_unit_test_teardown(test_shutdown_busy, fx_teardown),
	};

	signal(SIGPIPE, SIG_IGN);
	if (getenv("TEST_FILTER") != NULL)
		cmocka_set_test_filter(getenv("TEST_FILTER"));
	return cmocka_run_group_tests(tests, NULL, NULL);
}
