/*
 * fuzz_http: libFuzzer target for the tracker's HTTP request path
 * (tracker/http_server.c on llhttp), driven for real: one http_server runs
 * on 127.0.0.1 port 0 in this process's libuv loop; each input is written
 * through a fresh loopback TCP connection, the client's write side is shut
 * down, and the loop runs until the server has answered and closed.  The
 * per-connection code is tied to libuv's stream (writes, the lingering
 * close, read start/stop), so it is fed through a socket rather than
 * refactored; that is slower but exercises exactly what runs in the daemon.
 *
 * Byte 0 picks how the handler answers: 0 at once with 200 and a body,
 * 1 later from a check callback in reverse order (the server must still
 * answer in request order), 2 at once with 404 and no body.  The rest is
 * the bytes the client sends.
 *
 * Asserted beyond "no crash":
 * - every request the handler sees is well formed: a non-empty token for
 *   method, URL within HTTP_URL_MAX, at most HTTP_HEADER_COUNT_MAX headers
 *   with token names and trimmed values free of CR, LF and NUL, each found
 *   again by http_request_header(), a NUL after the body, body within
 *   max_body;
 * - the bytes sent back are a sequence of well-formed responses
 *   ("HTTP/1.1 NNN ...", one Content-Length, that many body bytes, none
 *   for HEAD and 1xx), one per request handled, in request order with the
 *   status the handler gave, followed by at most one refusal of the
 *   server's own (400, 408, 413, 414, 417, 431, 505) with Connection:
 *   close, and nothing after it;
 * - the server's stats count the same requests and refusals;
 * - the connection is closed within FUZZ_HTTP_DEADLINE_MS of the client's
 *   EOF (no hang), and every connection is gone before the next input.
 */
/* The assertions are the point: never compiled out. */
#undef NDEBUG
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <uv.h>

#include "redrive/http_server.h"
#include "redrive/log.h"
#include "redrive/timeutil.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_HTTP_MAX_BODY 4096
#define FUZZ_HTTP_DEADLINE_MS 10000
#define FUZZ_HTTP_MAX_REQS 256
#define FUZZ_HTTP_RESP_MAX (1024 * 1024)

/* The state of one input's exchange with the server. */
struct fuzz_http {
	uv_loop_t loop;
	uv_check_t check;
	struct http_server *srv;
	int port;
	int mode;
	/* Requests handled, in order: status given, HEAD or not. */
	int status[FUZZ_HTTP_MAX_REQS];
	bool head[FUZZ_HTTP_MAX_REQS];
	size_t nreqs;
	/* Exchanges held for a later answer (mode 1). */
	struct http_exchange *held[FUZZ_HTTP_MAX_REQS];
	int held_status[FUZZ_HTTP_MAX_REQS];
	size_t nheld;
	/* The client side. */
	uv_poll_t poll;
	int fd;
	const char *out;
	size_t outlen, outoff;
	char *in;
	size_t inlen;
	bool eof, poll_closed;
};

static struct fuzz_http fuzz_http;

/* RFC 9110 5.6.2 tchar. */
static bool
fuzz_http_tchar(unsigned char ch)
{
	return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') ||
	    (ch >= 'A' && ch <= 'Z') || strchr("!#$%&'*+-.^_`|~", ch) != NULL;
}

/* Asserts that s is a non-empty token. */
static void
fuzz_http_check_token(const char *s)
{
	assert(s != NULL && s[0] != '\0');
	for (; *s != '\0'; s++)
		assert(fuzz_http_tchar((unsigned char)*s));
}

/* Checks one request as the handler sees it. */
static void
fuzz_http_check_request(const struct http_request *req)
{
	size_t i, n;

	fuzz_http_check_token(req->method);
	assert(req->url != NULL && req->url[0] != '\0');
	assert(strlen(req->url) <= HTTP_URL_MAX);
	assert(req->path != NULL && req->query != NULL && req->peer != NULL);
	assert(req->nheaders <= HTTP_HEADER_COUNT_MAX);
	for (i = 0; i < req->nheaders; i++) {
		const char *v = req->headers[i].value;

		fuzz_http_check_token(req->headers[i].name);
		assert(v != NULL);
		n = strlen(v);
		assert(strpbrk(v, "\r\n") == NULL);
		if (n > 0) {
			assert(v[0] != ' ' && v[0] != '\t');
			assert(v[n - 1] != ' ' && v[n - 1] != '\t');
		}
		assert(http_request_header(req, req->headers[i].name) != NULL);
	}
	assert(req->body != NULL && req->body[req->body_len] == '\0');
	assert(req->body_len <= FUZZ_HTTP_MAX_BODY);
}

/* The handler: records the request and answers per the mode. */
static void
fuzz_http_handler(
    struct http_exchange *x, const struct http_request *req, void *arg)
{
	struct fuzz_http *f = arg;
	int status = f->mode == 2 ? 404 : 200;

	fuzz_http_check_request(req);
	assert(f->nreqs < FUZZ_HTTP_MAX_REQS);
	f->status[f->nreqs] = status;
	f->head[f->nreqs] = strcmp(req->method, "HEAD") == 0;
	f->nreqs++;
	if (f->mode == 1) {
		f->held[f->nheld] = x;
		f->held_status[f->nheld] = status;
		f->nheld++;
		return;
	}
	if (status == 404)
		http_respond(x, 404, NULL, NULL, 0, NULL);
	else
		http_respond(x, 200, "text/plain", req->path, strlen(req->path),
		    "X-Fuzz: 1\r\n");
}

/* Answers the held exchanges, last first. */
static void
fuzz_http_check_cb(uv_check_t *h)
{
	struct fuzz_http *f = h->data;

	while (f->nheld > 0) {
		f->nheld--;
		http_respond(f->held[f->nheld], f->held_status[f->nheld],
		    "text/plain", "later", 5, NULL);
	}
}

/* Starts the server once, for the whole run. */
static void
fuzz_http_init(struct fuzz_http *f)
{
	struct http_server_opts o;
	int devnull, rc;

	devnull = open("/dev/null", O_WRONLY);
	assert(devnull >= 0);
	log_set_fd(devnull);
	log_set_level(LOG_LEVEL_ERROR);
	assert(uv_loop_init(&f->loop) == 0);
	assert(uv_check_init(&f->loop, &f->check) == 0);
	f->check.data = f;
	assert(uv_check_start(&f->check, fuzz_http_check_cb) == 0);
	memset(&o, 0, sizeof(o));
	o.listen = "127.0.0.1:0";
	o.max_body = FUZZ_HTTP_MAX_BODY;
	o.header_timeout_ms = 5000;
	o.idle_timeout_ms = 5000;
	o.max_connections = 10;
	rc = http_server_start(&f->srv, &f->loop, &o, fuzz_http_handler, f);
	assert(rc == 0);
	f->port = http_server_port(f->srv);
	assert(f->port > 0);
}

static void
fuzz_http_poll_closed_cb(uv_handle_t *h)
{
	struct fuzz_http *f = h->data;

	f->poll_closed = true;
}

/* The client socket: writes the input, then reads until EOF. */
static void
fuzz_http_poll_cb(uv_poll_t *h, int status, int events)
{
	struct fuzz_http *f = h->data;
	char buf[16384];
	ssize_t n;

	if (status < 0) {
		f->eof = true;
		uv_close((uv_handle_t *)h, fuzz_http_poll_closed_cb);
		return;
	}
	if ((events & UV_WRITABLE) && f->outoff < f->outlen) {
		n = send(f->fd, f->out + f->outoff, f->outlen - f->outoff,
		    MSG_NOSIGNAL);
		if (n > 0)
			f->outoff += (size_t)n;
		else if (n < 0 && errno != EAGAIN && errno != EINTR)
			f->outoff = f->outlen; /* the server closed first */
		if (f->outoff == f->outlen) {
			(void)shutdown(f->fd, SHUT_WR);
			uv_poll_start(h, UV_READABLE, fuzz_http_poll_cb);
		}
	}
	if (events & UV_READABLE) {
		for (;;) {
			n = recv(f->fd, buf, sizeof(buf), 0);
			if (n > 0) {
				assert(
				    f->inlen + (size_t)n <= FUZZ_HTTP_RESP_MAX);
				memcpy(f->in + f->inlen, buf, (size_t)n);
				f->inlen += (size_t)n;
				continue;
			}
			if (n < 0 && (errno == EAGAIN || errno == EINTR))
				return;
			/* EOF, or a reset after the server's close. */
			f->eof = true;
			uv_poll_stop(h);
			uv_close((uv_handle_t *)h, fuzz_http_poll_closed_cb);
			return;
		}
	}
}

/* True for the statuses the server sends on its own. */
static bool
fuzz_http_refusal(int status)
{
	return status == 400 || status == 408 || status == 413 ||
	    status == 414 || status == 417 || status == 431 || status == 505;
}

/*
 * Parses what the server sent: returns the number of final answers
 * matched to handled requests; *refused tells whether a refusal followed.
 */
static size_t
fuzz_http_check_answers(const struct fuzz_http *f, bool *refused)
{
	const char *p = f->in, *end = f->in + f->inlen;
	size_t nfinal = 0;

	*refused = false;
	while (p < end) {
		const char *hend, *h;
		unsigned long clen = 0;
		int status, ncl = 0;
		bool close = false;

		assert(!*refused); /* nothing after a refusal */
		assert(end - p >= 13 && memcmp(p, "HTTP/1.1 ", 9) == 0);
		assert(p[9] >= '1' && p[9] <= '5' && p[10] >= '0' &&
		    p[10] <= '9' && p[11] >= '0' && p[11] <= '9' &&
		    p[12] == ' ');
		status = (p[9] - '0') * 100 + (p[10] - '0') * 10 + p[11] - '0';
		hend = memmem(p, (size_t)(end - p), "\r\n\r\n", 4);
		assert(hend != NULL);
		for (h = memchr(p, '\n', (size_t)(hend - p));
		     h != NULL && h < hend;
		     h = memchr(h + 1, '\n', (size_t)(hend - h))) {
			if (strncasecmp(h + 1, "Content-Length:", 15) == 0) {
				char *e;

				clen = strtoul(h + 16, &e, 10);
				assert(*e == '\r');
				ncl++;
			}
			if (strncasecmp(h + 1, "Connection: close\r", 18) == 0)
				close = true;
		}
		p = hend + 4;
		if (status < 200) {
			assert(ncl == 0);
			continue;
		}
		assert(ncl == 1);
		if (nfinal < f->nreqs) {
			assert(status == f->status[nfinal]);
			if (!f->head[nfinal]) {
				assert((size_t)(end - p) >= clen);
				p += clen;
			}
			nfinal++;
			continue;
		}
		assert(fuzz_http_refusal(status) && close);
		assert((size_t)(end - p) >= clen);
		p += clen;
		*refused = true;
	}
	return nfinal;
}

/*
 * Connects a blocking client socket to the server (on loopback the kernel
 * completes the handshake before accept).  Each connection binds its own
 * source address in 127.0.0.0/8: the server closes first, so its side of
 * every 4-tuple lingers in TIME_WAIT for a minute, and at a thousand
 * inputs a second one source address would run out of ephemeral ports.
 */
static int
fuzz_http_connect(struct fuzz_http *f)
{
	static uint32_t next = 2;
	struct sockaddr_in sin, src;
	int fd, tries;

	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_port = htons((uint16_t)f->port);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	for (tries = 0; tries < 100; tries++) {
		fd = socket(AF_INET, SOCK_STREAM, 0);
		assert(fd >= 0);
		memset(&src, 0, sizeof(src));
		src.sin_family = AF_INET;
		src.sin_addr.s_addr = htonl(0x7f000000u | (next & 0xffffffu));
		if (++next > 0xfffffeu)
			next = 2;
		if (bind(fd, (struct sockaddr *)&src, sizeof(src)) == 0 &&
		    connect(fd, (struct sockaddr *)&sin, sizeof(sin)) == 0)
			return fd;
		close(fd);
	}
	fprintf(stderr, "fuzz_http: cannot connect to port %d\n", f->port);
	abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static bool started;
	struct fuzz_http *f = &fuzz_http;
	struct http_server_stats before, after;
	int64_t deadline;
	size_t nfinal;
	bool refused;
	int events, rc;

	if (size < 1 || size > 64 * 1024)
		return 0;
	if (!started) {
		fuzz_http_init(f);
		started = true;
	}
	before = http_server_stats(f->srv);
	f->mode = data[0] % 3;
	f->nreqs = f->nheld = 0;
	f->out = (const char *)data + 1;
	f->outlen = size - 1;
	f->outoff = 0;
	f->in = malloc(FUZZ_HTTP_RESP_MAX);
	assert(f->in != NULL);
	f->inlen = 0;
	f->eof = f->poll_closed = false;

	f->fd = fuzz_http_connect(f);
	rc = uv_poll_init_socket(&f->loop, &f->poll, f->fd);
	assert(rc == 0);
	f->poll.data = f;
	events = UV_READABLE | UV_WRITABLE;
	if (f->outlen == 0) {
		(void)shutdown(f->fd, SHUT_WR);
		events = UV_READABLE;
	}
	rc = uv_poll_start(&f->poll, events, fuzz_http_poll_cb);
	assert(rc == 0);
	deadline = time_mono_ms() + FUZZ_HTTP_DEADLINE_MS;
	while (!f->poll_closed || http_server_stats(f->srv).active > 0 ||
	    f->nheld > 0) {
		uv_run(&f->loop, UV_RUN_ONCE);
		if (time_mono_ms() > deadline) {
			fprintf(stderr, "fuzz_http: no close after %d ms\n",
			    FUZZ_HTTP_DEADLINE_MS);
			abort();
		}
	}
	/* Let the server's close callbacks run. */
	uv_run(&f->loop, UV_RUN_NOWAIT);
	close(f->fd);

	nfinal = fuzz_http_check_answers(f, &refused);
	assert(nfinal == f->nreqs);
	after = http_server_stats(f->srv);
	assert(after.requests - before.requests == f->nreqs);
	assert(after.too_large + after.refused - before.too_large -
		before.refused ==
	    (refused ? 1u : 0u));
	free(f->in);
	return 0;
}
