/*
 * test_mailgun_client: the Mailgun client against an HTTP/1.1 server that
 * runs on a libuv TCP listener (127.0.0.1, a port picked by the kernel) in
 * the same loop.  The server reads each request whole (by Content-Length),
 * keeps a copy, and answers with the canned response of the test, or
 * never.  The tests check the request byte by byte (method, path, Basic
 * auth, the multipart form parsed here: the `to` fields in order, the
 * message part exact with its filename, v:redrive-id), the limits (1000
 * recipients, concurrency), the transport errors (timeout, refused), the
 * reuse of one connection, cancellation on close, and that every loop
 * closes with nothing left open.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>
#include <curl/curl.h>
#include <uv.h>

#include "canned_http.h"
#include "redrive/log.h"
#include "redrive/mailgun.h"
#include "redrive/metrics.h"

#define MAX_PARTS 1100

/* ---- A request as the server saw it ----------------------------- */

struct part {
	char name[64];
	char filename[64];
	char type[64];
	const char *data;
	size_t len;
};

/*
 * Copies the value of header name (case-insensitive) of request req into
 * buf; returns false when absent.
 */
static bool
req_header(const char *req, const char *name, char *buf, size_t buflen)
{
	const char *end = strstr(req, "\r\n\r\n"), *p, *eol;
	size_t nl = strlen(name), vl;

	assert_non_null(end);
	for (p = strstr(req, "\r\n"); p != NULL && p < end;
	     p = strstr(p + 2, "\r\n")) {
		if (strncasecmp(p + 2, name, nl) != 0 || p[2 + nl] != ':')
			continue;
		p += 2 + nl + 1;
		while (*p == ' ')
			p++;
		eol = strstr(p, "\r\n");
		vl = (size_t)(eol - p);
		assert_true(vl < buflen);
		memcpy(buf, p, vl);
		buf[vl] = '\0';
		return true;
	}
	return false;
}

/* Copies attr="value" from a Content-Disposition line into buf. */
static void
disp_attr(
    const char *line, size_t llen, const char *attr, char *buf, size_t buflen)
{
	char key[32];
	const char *p, *q;

	buf[0] = '\0';
	(void)snprintf(key, sizeof(key), "; %s=\"", attr);
	p = memmem(line, llen, key, strlen(key));
	if (p == NULL)
		return;
	p += strlen(key);
	q = memchr(p, '"', llen - (size_t)(p - line));
	assert_non_null(q);
	assert_true((size_t)(q - p) < buflen);
	memcpy(buf, p, (size_t)(q - p));
	buf[q - p] = '\0';
}

/*
 * Splits a multipart/form-data body (RFC 7578, RFC 2046 section 5.1.1)
 * into parts; returns how many.
 */
static size_t
parse_multipart(const char *req, size_t rlen, struct part *parts, size_t max)
{
	char ctype[256], delim[300];
	const char *body, *end = req + rlen, *p, *next, *hend, *line, *eol;
	const char *b;
	size_t n = 0, dl;

	assert_true(req_header(req, "Content-Type", ctype, sizeof(ctype)));
	assert_memory_equal(ctype, "multipart/form-data; boundary=", 30);
	b = ctype + 30;
	assert_true(strlen(b) > 0);
	(void)snprintf(delim, sizeof(delim), "\r\n--%s", b);
	dl = strlen(delim);
	body = strstr(req, "\r\n\r\n") + 4;
	/* The body opens with the delimiter without its CRLF. */
	assert_memory_equal(body, delim + 2, dl - 2);
	p = body + dl - 2;
	for (;;) {
		if (p + 2 <= end && memcmp(p, "--", 2) == 0)
			break; /* the close delimiter */
		assert_memory_equal(p, "\r\n", 2);
		p += 2;
		hend = memmem(p, (size_t)(end - p), "\r\n\r\n", 4);
		assert_non_null(hend);
		next = memmem(hend + 4, (size_t)(end - hend - 4), delim, dl);
		assert_non_null(next);
		assert_true(n < max);
		memset(&parts[n], 0, sizeof(parts[n]));
		for (line = p; line < hend; line = eol + 2) {
			eol =
			    memmem(line, (size_t)(hend + 2 - line), "\r\n", 2);
			assert_non_null(eol);
			if (strncasecmp(line, "Content-Disposition: form-data",
				30) == 0) {
				disp_attr(line, (size_t)(eol - line), "name",
				    parts[n].name, sizeof(parts[n].name));
				disp_attr(line, (size_t)(eol - line),
				    "filename", parts[n].filename,
				    sizeof(parts[n].filename));
			} else if (strncasecmp(line, "Content-Type: ", 14) ==
			    0) {
				assert_true((size_t)(eol - line - 14) <
				    sizeof(parts[n].type));
				memcpy(parts[n].type, line + 14,
				    (size_t)(eol - line - 14));
			}
		}
		parts[n].data = hend + 4;
		parts[n].len = (size_t)(next - hend - 4);
		n++;
		p = next + dl;
	}
	assert_true(p + 4 == end && memcmp(p, "--\r\n", 4) == 0);
	return n;
}

/* ---- The loop, the client, the results -------------------------- */

struct got {
	int calls;
	struct mailgun_result r;
	char *id;
	char *message;
	struct mailgun *mg;    /* for callbacks that act on the client */
	const char *const *to; /* a second send from the callback */
	int resend_rc;
};

struct fixture {
	uv_loop_t loop;
	uv_timer_t watchdog;
	bool expired;
	struct srv srv;
	struct mailgun *mg;
	char base[64];
};

static void
got_cb(const struct mailgun_result *r, void *arg)
{
	struct got *g = arg;

	g->calls++;
	g->r = *r;
	free(g->id);
	free(g->message);
	g->id = r->id != NULL ? strdup(r->id) : NULL;
	g->message = r->message != NULL ? strdup(r->message) : NULL;
	g->r.id = g->id;
	g->r.message = g->message;
}

static void
got_clear(struct got *g)
{
	free(g->id);
	free(g->message);
	memset(g, 0, sizeof(*g));
}

static void
watchdog_cb(uv_timer_t *t)
{
	struct fixture *f = t->data;

	f->expired = true;
}

static struct fixture *
fixture_new(int64_t timeout_ms, unsigned concurrency)
{
	struct fixture *f = calloc(1, sizeof(*f));
	struct mailgun_opts o = { 0 };
	char err[256];

	assert_non_null(f);
	assert_int_equal(uv_loop_init(&f->loop), 0);
	assert_int_equal(uv_timer_init(&f->loop, &f->watchdog), 0);
	f->watchdog.data = f;
	assert_int_equal(
	    uv_timer_start(&f->watchdog, watchdog_cb, 10000, 0), 0);
	uv_unref((uv_handle_t *)&f->watchdog);
	srv_start(&f->srv, &f->loop);
	(void)snprintf(
	    f->base, sizeof(f->base), "http://127.0.0.1:%d/", f->srv.port);
	o.api_base = f->base;
	o.domain = "example.com";
	o.api_key = "key";
	o.timeout_ms = timeout_ms;
	o.concurrency = concurrency;
	assert_int_equal(
	    mailgun_new(&f->mg, &f->loop, &o, err, sizeof(err)), 0);
	assert_string_equal(err, "");
	return f;
}

/* Runs the loop until *calls reaches want (or the watchdog fires). */
static void
run_until(struct fixture *f, const int *calls, int want)
{
	while (*calls < want && !f->expired)
		(void)uv_run(&f->loop, UV_RUN_ONCE);
	assert_false(f->expired);
	assert_int_equal(*calls, want);
}

/* Closes everything; the loop must then close with nothing left. */
static void
fixture_free(struct fixture *f)
{
	mailgun_close(f->mg);
	srv_stop(&f->srv);
	uv_close((uv_handle_t *)&f->watchdog, NULL);
	assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
	assert_int_equal(uv_loop_close(&f->loop), 0);
	free(f);
}

static const char ok_body[] = "{\"id\": \"<20160107220803.17329.90097@"
			      "DOMAIN.TEST>\", \"message\": \"Queued. Thank "
			      "you.\"}";

static void
respond_ok(struct srv *srv)
{
	srv_respond(srv, "200 OK", "Content-Type: application/json\r\n",
	    ok_body, strlen(ok_body));
}

/* ---- Tests ---------------------------------------------------------- */

/*
 * The whole request of a send: line, auth, agent, and the form in order
 * with the message byte-exact (200 KiB with CRLFs, NULs and 8-bit bytes,
 * so that curl reads it in many pieces).
 */
static void
test_send_mime_request(void **state)
{
	static const char *const to[] = { "alice@example.com",
		"Bob <bob@example.org>", "carol@example.net" };
	static const char head[] = "Subject: hi\r\n\r\n.\r\n";
	struct fixture *f = fixture_new(5000, 4);
	size_t mlen = (size_t)200 * 1024, i, n;
	unsigned char *msg = malloc(mlen);
	struct part *parts = calloc(MAX_PARTS, sizeof(*parts));
	struct got g = { 0 };
	char hv[256];
	uint32_t x = 12345;
	const char *req;

	(void)state;
	assert_non_null(msg);
	assert_non_null(parts);
	for (i = 0; i < mlen; i++) {
		x = x * 1103515245u + 12345u;
		msg[i] = (unsigned char)(x >> 16);
	}
	for (i = 0; head[i] != '\0'; i++)
		msg[i] = (unsigned char)head[i];
	respond_ok(&f->srv);
	assert_int_equal(
	    mailgun_send_mime(f->mg, to, 3, msg, mlen, 42, got_cb, &g), 0);
	assert_int_equal(mailgun_in_flight(f->mg), 1);
	assert_int_equal(g.calls, 0);
	run_until(f, &g.calls, 1);

	assert_int_equal(g.r.outcome, MAILGUN_OK);
	assert_int_equal(g.r.transport, 0);
	assert_int_equal(g.r.http_status, 200);
	assert_string_equal(g.r.id, "20160107220803.17329.90097@DOMAIN.TEST");
	assert_string_equal(g.r.message, "Queued. Thank you.");
	assert_true(g.r.seconds > 0.0 && g.r.seconds < 10.0);
	assert_int_equal(mailgun_in_flight(f->mg), 0);
	assert_true(mailgun_can_send(f->mg));

	assert_int_equal(f->srv.nreqs, 1);
	req = f->srv.reqs[0];
	assert_memory_equal(
	    req, "POST /v3/example.com/messages.mime HTTP/1.1\r\n", 45);
	assert_true(req_header(req, "Authorization", hv, sizeof(hv)));
	assert_string_equal(hv, "Basic YXBpOmtleQ=="); /* api:key */
	assert_true(req_header(req, "User-Agent", hv, sizeof(hv)));
	assert_string_equal(hv, "redrive/0.1.0");
	assert_false(req_header(req, "Expect", hv, sizeof(hv)));

	n = parse_multipart(req, f->srv.req_lens[0], parts, MAX_PARTS);
	assert_int_equal(n, 5);
	for (i = 0; i < 3; i++) {
		assert_string_equal(parts[i].name, "to");
		assert_string_equal(parts[i].filename, "");
		assert_int_equal(parts[i].len, strlen(to[i]));
		assert_memory_equal(parts[i].data, to[i], parts[i].len);
	}
	assert_string_equal(parts[3].name, "v:redrive-id");
	assert_int_equal(parts[3].len, 2);
	assert_memory_equal(parts[3].data, "42", 2);
	assert_string_equal(parts[4].name, "message");
	assert_string_equal(parts[4].filename, "message.mime");
	assert_string_equal(parts[4].type, "message/rfc822");
	assert_int_equal(parts[4].len, mlen);
	assert_memory_equal(parts[4].data, msg, mlen);

	got_clear(&g);
	fixture_free(f);
	free(parts);
	free(msg);
}

/* The domain is percent-encoded into the path; an empty message is sent. */
static void
test_send_mime_domain_escaped(void **state)
{
	static const char *const to[] = { "a@example.com" };
	struct fixture *f = calloc(1, sizeof(*f));
	struct mailgun_opts o = { 0 };
	struct part parts[4] = { 0 };
	struct got g = { 0 };
	char err[128];

	(void)state;
	assert_non_null(f);
	assert_int_equal(uv_loop_init(&f->loop), 0);
	assert_int_equal(uv_timer_init(&f->loop, &f->watchdog), 0);
	f->watchdog.data = f;
	assert_int_equal(
	    uv_timer_start(&f->watchdog, watchdog_cb, 10000, 0), 0);
	uv_unref((uv_handle_t *)&f->watchdog);
	srv_start(&f->srv, &f->loop);
	(void)snprintf(
	    f->base, sizeof(f->base), "http://127.0.0.1:%d", f->srv.port);
	o.api_base = f->base;
	o.domain = "exa/mple.com";
	o.api_key = "key";
	o.timeout_ms = 5000;
	o.concurrency = 1;
	assert_int_equal(
	    mailgun_new(&f->mg, &f->loop, &o, err, sizeof(err)), 0);
	respond_ok(&f->srv);
	assert_int_equal(
	    mailgun_send_mime(f->mg, to, 1, NULL, 0, 7, got_cb, &g), 0);
	run_until(f, &g.calls, 1);
	assert_int_equal(g.r.outcome, MAILGUN_OK);
	assert_memory_equal(f->srv.reqs[0],
	    "POST /v3/exa%2Fmple.com/messages.mime HTTP/1.1\r\n", 48);
	assert_int_equal(
	    parse_multipart(f->srv.reqs[0], f->srv.req_lens[0], parts, 4), 3);
	assert_string_equal(parts[2].name, "message");
	assert_int_equal(parts[2].len, 0);
	got_clear(&g);
	fixture_free(f);
}

/* 1000 recipients go out as 1000 `to` fields; 1001 are refused. */
static void
test_recipient_limit(void **state)
{
	struct fixture *f = fixture_new(5000, 2);
	const char **to = calloc(1001, sizeof(*to));
	char(*addrs)[32] = calloc(1001, sizeof(*addrs));
	struct part *parts = calloc(MAX_PARTS, sizeof(*parts));
	struct got g = { 0 };
	size_t i, n;

	(void)state;
	assert_non_null(to);
	assert_non_null(addrs);
	assert_non_null(parts);
	for (i = 0; i < 1001; i++) {
		(void)snprintf(
		    addrs[i], sizeof(addrs[i]), "r%zu@example.com", i);
		to[i] = addrs[i];
	}
	assert_int_equal(
	    mailgun_send_mime(f->mg, to, 1001, "x", 1, 1, got_cb, &g), -E2BIG);
	assert_int_equal(mailgun_in_flight(f->mg), 0);
	assert_int_equal(
	    mailgun_send_mime(f->mg, to, 0, "x", 1, 1, got_cb, &g), -EINVAL);
	respond_ok(&f->srv);
	assert_int_equal(
	    mailgun_send_mime(f->mg, to, 1000, "x", 1, 1, got_cb, &g), 0);
	run_until(f, &g.calls, 1);
	assert_int_equal(g.r.outcome, MAILGUN_OK);
	n = parse_multipart(
	    f->srv.reqs[0], f->srv.req_lens[0], parts, MAX_PARTS);
	assert_int_equal(n, 1002);
	for (i = 0; i < 1000; i++) {
		assert_string_equal(parts[i].name, "to");
		assert_int_equal(parts[i].len, strlen(to[i]));
		assert_memory_equal(parts[i].data, to[i], parts[i].len);
	}
	got_clear(&g);
	fixture_free(f);
	free(parts);
	free(addrs);
	free(to);
}

/*
 * At `concurrency` requests in flight the next is -EAGAIN; closing the
 * client then ends both with -ECANCELED before mailgun_close returns, and
 * a send from such a callback is refused.
 */
static void
cancel_cb(const struct mailgun_result *r, void *arg)
{
	struct got *g = arg;

	got_cb(r, arg);
	g->resend_rc = mailgun_send_mime(g->mg, g->to, 1, "x", 1, 2, got_cb, g);
}

static void
test_concurrency_and_cancel(void **state)
{
	static const char *const to[] = { "a@example.com" };
	struct fixture *f = fixture_new(5000, 2);
	struct got g1 = { 0 }, g2 = { 0 }, g3 = { 0 };

	(void)state;
	f->srv.silent = true;
	g1.mg = g2.mg = f->mg;
	g1.to = g2.to = to;
	assert_true(mailgun_can_send(f->mg));
	assert_int_equal(
	    mailgun_send_mime(f->mg, to, 1, "x", 1, 1, cancel_cb, &g1), 0);
	assert_int_equal(
	    mailgun_send_mime(f->mg, to, 1, "y", 1, 2, cancel_cb, &g2), 0);
	assert_int_equal(mailgun_in_flight(f->mg), 2);
	assert_false(mailgun_can_send(f->mg));
	assert_int_equal(
	    mailgun_send_mime(f->mg, to, 1, "z", 1, 3, got_cb, &g3), -EAGAIN);
	assert_int_equal(mailgun_resend(f->mg, "http://127.0.0.1:1/x",
			     "a@example.com", got_cb, &g3),
	    -EAGAIN);
	/* Let both requests reach the server. */
	while (f->srv.nreqs < 2 && !f->expired)
		(void)uv_run(&f->loop, UV_RUN_ONCE);
	assert_int_equal(f->srv.nreqs, 2);
	assert_int_equal(g1.calls + g2.calls, 0);

	mailgun_close(f->mg);
	assert_int_equal(g1.calls, 1);
	assert_int_equal(g2.calls, 1);
	assert_int_equal(g3.calls, 0);
	assert_int_equal(g1.r.transport, -ECANCELED);
	assert_int_equal(g2.r.transport, -ECANCELED);
	assert_int_equal(g1.r.outcome, MAILGUN_RETRY);
	assert_int_equal(g1.r.http_status, 0);
	assert_non_null(g1.r.message);
	assert_int_equal(g1.resend_rc, -ECANCELED);
	assert_int_equal(g2.resend_rc, -ECANCELED);
	mailgun_close(f->mg); /* a second close is a no-op */
	got_clear(&g1);
	got_clear(&g2);
	got_clear(&g3);
	fixture_free(f); /* closes again: still a no-op */
}

/* A server that never answers: -ETIMEDOUT after timeout_ms. */
static void
test_timeout(void **state)
{
	static const char *const to[] = { "a@example.com" };
	struct fixture *f = fixture_new(300, 1);
	struct got g = { 0 };

	(void)state;
	f->srv.silent = true;
	assert_int_equal(
	    mailgun_send_mime(f->mg, to, 1, "x", 1, 5, got_cb, &g), 0);
	run_until(f, &g.calls, 1);
	assert_int_equal(g.r.outcome, MAILGUN_RETRY);
	assert_int_equal(g.r.transport, -ETIMEDOUT);
	assert_int_equal(g.r.http_status, 0);
	assert_null(g.r.id);
	assert_non_null(g.r.message);
	assert_true(strlen(g.r.message) > 0);
	assert_true(g.r.seconds >= 0.25 && g.r.seconds < 5.0);
	assert_int_equal(f->srv.nreqs, 1);
	got_clear(&g);
	fixture_free(f);
}

/* A port nobody listens on: -ECONNREFUSED. */
static void
test_refused(void **state)
{
	static const char *const to[] = { "a@example.com" };
	struct fixture *f = calloc(1, sizeof(*f));
	struct mailgun_opts o = { 0 };
	struct sockaddr_in sa;
	socklen_t sl = sizeof(sa);
	struct got g = { 0 };
	char err[128];
	int fd;

	(void)state;
	assert_non_null(f);
	fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(fd >= 0);
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
	assert_int_equal(close(fd), 0);

	assert_int_equal(uv_loop_init(&f->loop), 0);
	(void)snprintf(f->base, sizeof(f->base), "http://127.0.0.1:%d",
	    ntohs(sa.sin_port));
	o.api_base = f->base;
	o.domain = "example.com";
	o.api_key = "key";
	o.timeout_ms = 5000;
	o.concurrency = 1;
	assert_int_equal(
	    mailgun_new(&f->mg, &f->loop, &o, err, sizeof(err)), 0);
	assert_int_equal(
	    mailgun_send_mime(f->mg, to, 1, "x", 1, 6, got_cb, &g), 0);
	while (g.calls == 0)
		assert_int_equal(uv_run(&f->loop, UV_RUN_ONCE) >= 0, 1);
	assert_int_equal(g.calls, 1);
	assert_int_equal(g.r.outcome, MAILGUN_RETRY);
	assert_int_equal(g.r.transport, -ECONNREFUSED);
	assert_int_equal(g.r.http_status, 0);
	assert_non_null(g.r.message);
	got_clear(&g);
	mailgun_close(f->mg);
	assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
	assert_int_equal(uv_loop_close(&f->loop), 0);
	free(f);
}

/* The second send goes from the first's callback. */
static void
again_cb(const struct mailgun_result *r, void *arg)
{
	struct got *g = arg;

	got_cb(r, arg);
	if (g->calls == 1)
		g->resend_rc = mailgun_send_mime(
		    g->mg, g->to, 1, "again", 5, 2, again_cb, g);
}

/* Two sequential requests share one TCP connection. */
static void
test_keepalive(void **state)
{
	static const char *const to[] = { "a@example.com" };
	struct fixture *f = fixture_new(5000, 1);
	struct got g = { 0 };

	(void)state;
	respond_ok(&f->srv);
	g.mg = f->mg;
	g.to = to;
	assert_int_equal(
	    mailgun_send_mime(f->mg, to, 1, "first", 5, 1, again_cb, &g), 0);
	run_until(f, &g.calls, 2);
	assert_int_equal(g.resend_rc, 0);
	assert_int_equal(g.r.outcome, MAILGUN_OK);
	assert_int_equal(f->srv.nreqs, 2);
	assert_int_equal(f->srv.accepts, 1);
	got_clear(&g);
	fixture_free(f);
}

/*
 * Answers come through the classification: a 429 with a lower-case
 * X-RateLimit-Reset in ms, Mailgun's text/plain 401, a 200 body of 1 MiB
 * (kept to MAILGUN_BODY_MAX; the answer is still read to its end).
 */
static void
test_answers(void **state)
{
	static const char *const to[] = { "a@example.com" };
	static const char limit[] = "{\"message\":\"Domain example.com is not "
				    "allowed to send: request limit "
				    "exceeded\"}";
	struct fixture *f = fixture_new(5000, 1);
	size_t big = (size_t)1024 * 1024;
	char *huge = malloc(big);
	struct got g = { 0 };

	(void)state;
	assert_non_null(huge);
	srv_respond(&f->srv, "429 Too Many Requests",
	    "Content-Type: application/json\r\n"
	    "x-ratelimit-reset: 1620637982656\r\n",
	    limit, strlen(limit));
	assert_int_equal(
	    mailgun_send_mime(f->mg, to, 1, "x", 1, 1, got_cb, &g), 0);
	run_until(f, &g.calls, 1);
	assert_int_equal(g.r.outcome, MAILGUN_RETRY);
	assert_int_equal(g.r.transport, 0);
	assert_int_equal(g.r.http_status, 429);
	assert_int_equal(g.r.retry_at, 1620637982656LL);
	assert_string_equal(g.r.message,
	    "Domain example.com is not allowed to "
	    "send: request limit exceeded");

	srv_respond(&f->srv, "401 Unauthorized",
	    "Content-Type: text/plain; charset=utf-8\r\n"
	    "Www-Authenticate: Basic realm=\"MG API\"\r\n",
	    "Forbidden", 9);
	assert_int_equal(
	    mailgun_send_mime(f->mg, to, 1, "x", 1, 2, got_cb, &g), 0);
	run_until(f, &g.calls, 2);
	assert_int_equal(g.r.outcome, MAILGUN_PAUSE);
	assert_int_equal(g.r.http_status, 401);
	assert_string_equal(g.r.message, "Forbidden");

	memset(huge, 'M', big);
	srv_respond(
	    &f->srv, "200 OK", "Content-Type: text/html\r\n", huge, big);
	assert_int_equal(
	    mailgun_send_mime(f->mg, to, 1, "x", 1, 3, got_cb, &g), 0);
	run_until(f, &g.calls, 3);
	assert_int_equal(g.r.outcome, MAILGUN_PAUSE);
	assert_int_equal(g.r.transport, 0);
	assert_non_null(strstr(g.r.message, "api_base looks wrong"));
	assert_true(strlen(g.r.message) < 1024);
	assert_int_equal(f->srv.accepts, 1);
	got_clear(&g);
	fixture_free(f);
	free(huge);
}

/* A resend posts the storage URL as given, with one `to` field. */
static void
test_resend(void **state)
{
	struct fixture *f = fixture_new(5000, 1);
	struct part parts[4] = { 0 };
	struct got g = { 0 };
	char url[256], line[256], hv[64];

	(void)state;
	respond_ok(&f->srv);
	(void)snprintf(url, sizeof(url),
	    "http://127.0.0.1:%d/v3/domains/example.com/messages/"
	    "AgEASDSGFB8y4--TSDGxvccvmQB==",
	    f->srv.port);
	assert_int_equal(
	    mailgun_resend(f->mg, url, "bob@example.com", got_cb, &g), 0);
	run_until(f, &g.calls, 1);
	assert_int_equal(g.r.outcome, MAILGUN_OK);
	(void)snprintf(line, sizeof(line),
	    "POST /v3/domains/example.com/messages/"
	    "AgEASDSGFB8y4--TSDGxvccvmQB== HTTP/1.1\r\n");
	assert_memory_equal(f->srv.reqs[0], line, strlen(line));
	assert_true(
	    req_header(f->srv.reqs[0], "Authorization", hv, sizeof(hv)));
	assert_string_equal(hv, "Basic YXBpOmtleQ==");
	assert_int_equal(
	    parse_multipart(f->srv.reqs[0], f->srv.req_lens[0], parts, 4), 1);
	assert_string_equal(parts[0].name, "to");
	assert_int_equal(parts[0].len, 15);
	assert_memory_equal(parts[0].data, "bob@example.com", 15);

	/* The key never goes to a host that is not Mailgun's. */
	assert_int_equal(mailgun_resend(f->mg,
			     "https://evil.example/v3/domains/x/messages/k",
			     "bob@example.com", got_cb, &g),
	    -EPERM);
	assert_int_equal(
	    mailgun_resend(f->mg, "https://api.mailgun.net.evil.example/v3/x",
		"bob@example.com", got_cb, &g),
	    -EPERM);
	assert_int_equal(
	    mailgun_resend(f->mg, "http://storage.eu.mailgun.net/v3/domains/x",
		"bob@example.com", got_cb, &g),
	    -EPERM);
	(void)snprintf(
	    url, sizeof(url), "http://127.0.0.1:%d/x", f->srv.port + 1);
	assert_int_equal(
	    mailgun_resend(f->mg, url, "bob@example.com", got_cb, &g), -EPERM);
	assert_int_equal(
	    mailgun_resend(f->mg, "not a url", "bob@example.com", got_cb, &g),
	    -EPERM);
	assert_int_equal(
	    mailgun_resend(f->mg, "", "bob@example.com", got_cb, &g), -EINVAL);
	assert_int_equal(mailgun_in_flight(f->mg), 0);
	assert_int_equal(g.calls, 1);
	got_clear(&g);
	fixture_free(f);
}

/* What a mailgun_events() callback got: the result and a body copy. */
struct got_body {
	struct got g;
	char body[512];
	size_t len;
};

static void
got_body_cb(
    const struct mailgun_result *r, const char *body, size_t len, void *arg)
{
	struct got_body *gb = arg;

	got_cb(r, &gb->g);
	gb->len = len < sizeof(gb->body) ? len : sizeof(gb->body);
	if (body != NULL)
		memcpy(gb->body, body, gb->len);
}

/*
 * The Events API: a GET with Basic auth of events?query, or of a paging
 * URL on api_base's host (never another host); any 2xx hands the body
 * back as MAILGUN_OK, a 401 is MAILGUN_PAUSE; every answered request is
 * in the latency histogram.
 */
static void
test_events(void **state)
{
	static const char page[] =
	    "{\"items\": [], \"paging\": {\"next\": \"x\"}}";
	struct fixture *f = fixture_new(5000, 1);
	struct metrics_histogram h;
	struct got_body gb;
	char url[256], line[256], hv[64];

	(void)state;
	memset(&gb, 0, sizeof(gb));
	srv_respond(&f->srv, "200 OK", "Content-Type: application/json\r\n",
	    page, strlen(page));
	assert_int_equal(
	    mailgun_events(f->mg, "message-id=a.b%40mg.example&limit=300",
		got_body_cb, &gb),
	    0);
	run_until(f, &gb.g.calls, 1);
	assert_int_equal(gb.g.r.outcome, MAILGUN_OK);
	assert_int_equal(gb.g.r.http_status, 200);
	assert_int_equal(gb.len, strlen(page));
	assert_memory_equal(gb.body, page, gb.len);
	(void)snprintf(line, sizeof(line),
	    "GET /v3/example.com/events?message-id=a.b%%40mg.example"
	    "&limit=300 HTTP/1.1\r\n");
	assert_memory_equal(f->srv.reqs[0], line, strlen(line));
	assert_true(
	    req_header(f->srv.reqs[0], "Authorization", hv, sizeof(hv)));
	assert_string_equal(hv, "Basic YXBpOmtleQ==");
	assert_false(
	    req_header(f->srv.reqs[0], "Content-Type", hv, sizeof(hv)));

	/* A paging URL on api_base's host, exactly as given. */
	(void)snprintf(url, sizeof(url),
	    "http://127.0.0.1:%d/v3/example.com/events/W3siYSI6IGZhbHNlfV0=",
	    f->srv.port);
	assert_int_equal(mailgun_events(f->mg, url, got_body_cb, &gb), 0);
	run_until(f, &gb.g.calls, 2);
	(void)snprintf(line, sizeof(line),
	    "GET /v3/example.com/events/W3siYSI6IGZhbHNlfV0= HTTP/1.1\r\n");
	assert_memory_equal(f->srv.reqs[1], line, strlen(line));
	assert_int_equal(mailgun_events(f->mg,
			     "https://evil.example/v3/example.com/events/x",
			     got_body_cb, &gb),
	    -EPERM);
	assert_int_equal(mailgun_events(f->mg, "q", NULL, &gb), -EINVAL);

	/* A 401 pauses, and the body still comes. */
	srv_respond(&f->srv, "401 Unauthorized", "Content-Type: text/plain\r\n",
	    "Forbidden", 9);
	assert_int_equal(mailgun_events(f->mg, "", got_body_cb, &gb), 0);
	run_until(f, &gb.g.calls, 3);
	assert_int_equal(gb.g.r.outcome, MAILGUN_PAUSE);
	assert_int_equal(gb.len, 9);
	assert_memory_equal(gb.body, "Forbidden", 9);
	assert_memory_equal(
	    f->srv.reqs[2], "GET /v3/example.com/events HTTP", 31);

	mailgun_latency(f->mg, &h);
	assert_int_equal(h.count, 3);
	got_clear(&gb.g);
	fixture_free(f);
}

/*
 * A callback that closes the client while the other request is in flight:
 * the server answers only the first request it reads, so whichever
 * request that is completes and closes the client, and the other ends
 * with -ECANCELED from inside that close.
 */
static void
close_cb(const struct mailgun_result *r, void *arg)
{
	struct got *g = arg;

	got_cb(r, arg);
	mailgun_close(g->mg);
}

static void
test_close_from_callback(void **state)
{
	static const char *const to[] = { "a@example.com" };
	struct fixture *f = fixture_new(5000, 2);
	struct got g1 = { 0 }, g2 = { 0 };
	int total = 0;

	(void)state;
	respond_ok(&f->srv);
	f->srv.answer_limit = 1;
	g1.mg = g2.mg = f->mg;
	assert_int_equal(
	    mailgun_send_mime(f->mg, to, 1, "x", 1, 1, close_cb, &g1), 0);
	assert_int_equal(
	    mailgun_send_mime(f->mg, to, 1, "y", 1, 2, close_cb, &g2), 0);
	while (g1.calls + g2.calls == 0 && !f->expired)
		(void)uv_run(&f->loop, UV_RUN_ONCE);
	total = g1.calls + g2.calls;
	assert_int_equal(total, 2);
	assert_int_equal(g1.calls, 1);
	assert_int_equal(g2.calls, 1);
	if (g1.r.outcome == MAILGUN_OK)
		assert_int_equal(g2.r.transport, -ECANCELED);
	else {
		assert_int_equal(g1.r.transport, -ECANCELED);
		assert_int_equal(g2.r.outcome, MAILGUN_OK);
	}
	got_clear(&g1);
	got_clear(&g2);
	f->mg = NULL; /* closed by the callback; may be freed already */
	fixture_free(f);
}

/*
 * TLS is verified and its failures are -EPROTO: an https api_base on a
 * server that answers in plain HTTP, and a ca_file that does not exist.
 */
static void
test_tls_errors(void **state)
{
	static const char *const to[] = { "a@example.com" };
	static const char *const cas[] = { NULL,
		"/nonexistent/redrive-ca.pem" };
	struct fixture *f;
	struct mailgun_opts o = { 0 };
	struct got g = { 0 };
	char err[128];
	size_t i;

	(void)state;
	for (i = 0; i < 2; i++) {
		f = fixture_new(5000, 1);
		mailgun_close(f->mg);
		respond_ok(&f->srv);
		f->srv.blurt = true;
		(void)snprintf(f->base, sizeof(f->base), "https://127.0.0.1:%d",
		    f->srv.port);
		o.api_base = f->base;
		o.domain = "example.com";
		o.api_key = "key";
		o.ca_file = cas[i];
		o.timeout_ms = 5000;
		o.concurrency = 1;
		assert_int_equal(
		    mailgun_new(&f->mg, &f->loop, &o, err, sizeof(err)), 0);
		assert_int_equal(
		    mailgun_send_mime(f->mg, to, 1, "x", 1, 9, got_cb, &g), 0);
		run_until(f, &g.calls, 1);
		assert_int_equal(g.r.outcome, MAILGUN_RETRY);
		assert_int_equal(g.r.transport, -EPROTO);
		assert_int_equal(g.r.http_status, 0);
		assert_non_null(g.r.message);
		got_clear(&g);
		fixture_free(f);
	}
}

static void
test_new_refuses(void **state)
{
	uv_loop_t loop;
	struct mailgun *mg = (struct mailgun *)(uintptr_t)1;
	struct mailgun_opts o = { 0 };
	char err[256];

	(void)state;
	assert_int_equal(uv_loop_init(&loop), 0);
	o.api_base = "https://api.mailgun.net";
	o.domain = "example.com";
	o.api_key = "";
	o.timeout_ms = 1000;
	o.concurrency = 1;
	assert_int_equal(
	    mailgun_new(&mg, &loop, &o, err, sizeof(err)), -EINVAL);
	assert_null(mg);
	assert_non_null(strstr(err, "api_key"));
	o.api_key = "key";
	o.concurrency = 0;
	assert_int_equal(
	    mailgun_new(&mg, &loop, &o, err, sizeof(err)), -EINVAL);
	o.concurrency = 1;
	o.timeout_ms = 0;
	assert_int_equal(
	    mailgun_new(&mg, &loop, &o, err, sizeof(err)), -EINVAL);
	o.timeout_ms = 1000;
	o.domain = NULL;
	assert_int_equal(
	    mailgun_new(&mg, &loop, &o, err, sizeof(err)), -EINVAL);
	/* A client that never sent anything closes cleanly. */
	o.domain = "example.com";
	assert_int_equal(mailgun_new(&mg, &loop, &o, err, sizeof(err)), 0);
	assert_non_null(mg);
	assert_int_equal(mailgun_in_flight(mg), 0);
	mailgun_close(mg);
	mailgun_close(NULL);
	assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
	assert_int_equal(uv_loop_close(&loop), 0);
}

static int
group_setup(void **state)
{
	(void)state;
	log_set_level(LOG_LEVEL_DEBUG);
	return curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? 0 : -1;
}

static int
group_teardown(void **state)
{
	(void)state;
	curl_global_cleanup();
	return 0;
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_send_mime_request),
		cmocka_unit_test(test_send_mime_domain_escaped),
		cmocka_unit_test(test_recipient_limit),
		cmocka_unit_test(test_concurrency_and_cancel),
		cmocka_unit_test(test_timeout),
		cmocka_unit_test(test_refused),
		cmocka_unit_test(test_keepalive),
		cmocka_unit_test(test_answers),
		cmocka_unit_test(test_resend),
		cmocka_unit_test(test_events),
		cmocka_unit_test(test_close_from_callback),
		cmocka_unit_test(test_tls_errors),
		cmocka_unit_test(test_new_refuses),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
