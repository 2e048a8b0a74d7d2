/*
 * canned_http: the unit tests' HTTP/1.1 server (canned_http.h).
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include <cmocka.h>
#include <uv.h>

#include "canned_http.h"

struct conn {
	uv_tcp_t tcp;
	struct srv *srv;
	char *buf;
	size_t len, cap;
	struct conn *next;
};

static void
srv_conn_close_cb(uv_handle_t *h)
{
	struct conn *c = h->data;

	free(c->buf);
	free(c);
}

static void
srv_conn_close(struct conn *c)
{
	struct conn **pp;

	for (pp = &c->srv->conns; *pp != NULL; pp = &(*pp)->next)
		if (*pp == c) {
			*pp = c->next;
			break;
		}
	uv_close((uv_handle_t *)&c->tcp, srv_conn_close_cb);
}

static void
srv_alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
	struct conn *c = h->data;

	(void)hint;
	if (c->cap - c->len < 65536) {
		c->cap = c->cap * 2 + 65536;
		c->buf = realloc(c->buf, c->cap + 1);
		assert_non_null(c->buf);
	}
	buf->base = c->buf + c->len;
	buf->len = c->cap - c->len;
}

static void
srv_write_cb(uv_write_t *w, int status)
{
	(void)status;
	free(w);
}

/* Returns the request's length once it is all in c->buf, else 0. */
static size_t
srv_request_len(const struct conn *c)
{
	const char *end, *p;
	size_t head, clen = 0;

	c->buf[c->len] = '\0';
	end = memmem(c->buf, c->len, "\r\n\r\n", 4);
	if (end == NULL)
		return 0;
	head = (size_t)(end - c->buf) + 4;
	for (p = c->buf; p < end; p++)
		if (p[0] == '\n' &&
		    strncasecmp(p + 1, "Content-Length:", 15) == 0)
			clen = strtoul(p + 16, NULL, 10);
	return c->len >= head + clen ? head + clen : 0;
}

static void
srv_read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
	struct conn *c = s->data;
	struct srv *srv = c->srv;
	size_t rlen;

	(void)buf;
	if (n < 0) {
		srv_conn_close(c);
		return;
	}
	c->len += (size_t)n;
	if (srv->blurt && n > 0) {
		uv_write_t *w = malloc(sizeof(*w));
		uv_buf_t b =
		    uv_buf_init(srv->response, (unsigned)srv->response_len);

		assert_non_null(w);
		srv->blurt = false;
		srv->nreqs++;
		srv->reqs[srv->nreqs - 1] = NULL;
		assert_int_equal(uv_write(w, s, &b, 1, srv_write_cb), 0);
		return;
	}
	for (;;) {
		rlen = srv_request_len(c);
		if (rlen == 0)
			break;
		assert_true(srv->nreqs < SRV_MAX_REQS);
		srv->reqs[srv->nreqs] = malloc(rlen + 1);
		assert_non_null(srv->reqs[srv->nreqs]);
		memcpy(srv->reqs[srv->nreqs], c->buf, rlen);
		srv->reqs[srv->nreqs][rlen] = '\0';
		srv->req_lens[srv->nreqs] = rlen;
		srv->nreqs++;
		memmove(c->buf, c->buf + rlen, c->len - rlen);
		c->len -= rlen;
		if (!srv->silent &&
		    (srv->answer_limit == 0 ||
			srv->nreqs <= srv->answer_limit)) {
			uv_write_t *w = malloc(sizeof(*w));
			uv_buf_t b = uv_buf_init(
			    srv->response, (unsigned)srv->response_len);

			assert_non_null(w);
			assert_int_equal(
			    uv_write(w, s, &b, 1, srv_write_cb), 0);
		}
	}
}

static void
srv_connection_cb(uv_stream_t *l, int status)
{
	struct srv *srv = l->data;
	struct conn *c;

	assert_int_equal(status, 0);
	c = calloc(1, sizeof(*c));
	assert_non_null(c);
	c->srv = srv;
	assert_int_equal(uv_tcp_init(srv->loop, &c->tcp), 0);
	c->tcp.data = c;
	assert_int_equal(uv_accept(l, (uv_stream_t *)&c->tcp), 0);
	c->next = srv->conns;
	srv->conns = c;
	srv->accepts++;
	assert_int_equal(
	    uv_read_start((uv_stream_t *)&c->tcp, srv_alloc_cb, srv_read_cb),
	    0);
}

void
srv_start(struct srv *srv, uv_loop_t *loop)
{
	struct sockaddr_in sa;
	struct sockaddr_storage ss;
	int sl = sizeof(ss);

	memset(srv, 0, sizeof(*srv));
	srv->loop = loop;
	assert_int_equal(uv_tcp_init(loop, &srv->listener), 0);
	srv->listener.data = srv;
	assert_int_equal(uv_ip4_addr("127.0.0.1", 0, &sa), 0);
	assert_int_equal(
	    uv_tcp_bind(&srv->listener, (const struct sockaddr *)&sa, 0), 0);
	assert_int_equal(
	    uv_listen((uv_stream_t *)&srv->listener, 16, srv_connection_cb), 0);
	assert_int_equal(
	    uv_tcp_getsockname(&srv->listener, (struct sockaddr *)&ss, &sl), 0);
	srv->port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

void
srv_respond(struct srv *srv, const char *status, const char *headers,
    const char *body, size_t blen)
{
	size_t need = strlen(status) + strlen(headers) + blen + 128;
	int n;

	free(srv->response);
	srv->response = malloc(need);
	assert_non_null(srv->response);
	n = snprintf(srv->response, need,
	    "HTTP/1.1 %s\r\n%sContent-Length: %zu\r\n\r\n", status, headers,
	    blen);
	assert_true(n > 0 && (size_t)n + blen < need);
	memcpy(srv->response + n, body, blen);
	srv->response_len = (size_t)n + blen;
}

void
srv_stop(struct srv *srv)
{
	int i;

	while (srv->conns != NULL)
		srv_conn_close(srv->conns);
	uv_close((uv_handle_t *)&srv->listener, NULL);
	for (i = 0; i < srv->nreqs; i++)
		free(srv->reqs[i]);
	free(srv->response);
}
