/*
 * canned_http: an HTTP/1.1 server for the unit tests, on a libuv TCP
 * listener (127.0.0.1, a port the kernel picks) in the test's own loop.
 * It reads each request whole (by Content-Length), keeps a copy, and
 * answers with the test's canned response, or never.  Used by the tests
 * of the Mailgun client and of the re-drive scheduler, which point a
 * real client at it.
 */
#ifndef REDRIVE_TESTS_CANNED_HTTP_H
#define REDRIVE_TESTS_CANNED_HTTP_H

#include <stdbool.h>
#include <stddef.h>

#include <uv.h>

#define SRV_MAX_REQS 16

struct conn;

struct srv {
	uv_loop_t *loop;
	uv_tcp_t listener;
	int port;
	int accepts;
	bool silent;	  /* never answer */
	int answer_limit; /* answer this many requests at most; 0: all */
	bool blurt;	  /* answer the first bytes read, whatever they are */
	char *response;	  /* the canned answer */
	size_t response_len;
	char *reqs[SRV_MAX_REQS]; /* the requests seen, NUL-terminated copies */
	size_t req_lens[SRV_MAX_REQS];
	int nreqs;
	struct conn *conns;
};

/* Listens on 127.0.0.1, a port of the kernel's choice (srv->port). */
void srv_start(struct srv *srv, uv_loop_t *loop);

/* Sets the canned answer: status line, extra header lines, body. */
void srv_respond(struct srv *srv, const char *status, const char *headers,
    const char *body, size_t blen);

/* Closes the connections and the listener; frees what was kept. */
void srv_stop(struct srv *srv);

#endif
