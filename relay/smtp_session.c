/*
 * smtp_session: one SMTP client of the relay, as an explicit state machine
 * with a command table (RFC 5321 4.1, 4.3.2; OpenSMTPD's smtp_session.c is
 * the model).  A session owns its TCP handle and its one timer, its
 * command-line buffer, the DATA reader and the transaction being built.
 *
 * Input arrives in the server's shared read buffer; a session keeps only
 * what it has not processed yet: a partial command line (at most
 * SMTP_LINE_MAX bytes) or, while it waits for the store's commit, the bytes
 * a pipelining client sent after DATA.  Replies are gathered in an output
 * buffer and written once per read (RFC 2920 lets a server batch them).
 *
 * When the data has ended the message goes to the store's group commit
 * and reading stops; "250 2.0.0 Ok: queued as <id>" is written only in the
 * store's callback, after the commit.  The transaction (struct smtp_txn)
 * is what the store holds on to: if the session goes away first, the
 * transaction is orphaned and the callback frees it without touching the
 * session (STYLE.md: an async reply never touches a session that may be
 * gone).
 *
 * STARTTLS (RFC 3207) puts a struct smtp_tls (relay/smtp_tls.c, memory
 * BIOs) between the socket and the state machine: bytes read go through
 * it, replies go out through SSL_write.  AUTH (RFC 4954) checks passwords
 * on the threadpool (relay/smtp_auth.c) while the session waits in
 * SMTP_STATE_AUTH_WAIT with reading stopped, like a commit; the request is
 * orphaned if the session closes first, so its answer never reaches a
 * freed session.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "redrive/cidr.h"
#include "redrive/config.h"
#include "redrive/fdguard.h"
#include "redrive/log.h"
#include "redrive/message.h"
#include "redrive/smtp_auth.h"
#include "redrive/smtp_data.h"
#include "redrive/smtp_parse.h"
#include "redrive/smtp_tls.h"
#include "redrive/store.h"
#include "redrive/timeutil.h"
#include "smtp_int.h"

/* Replies waiting in the output buffer at most; past it, reading pauses. */
#define SMTP_OUT_MAX ((size_t)64 * 1024)
/* Bytes queued in libuv for writing at most before reading pauses. */
#define SMTP_WRITE_QUEUE_MAX ((size_t)256 * 1024)
/* The Received field is at most this long. */
#define SMTP_RECEIVED_MAX 1024
/*
 * File descriptors kept free for the rest of the daemon (the store's
 * files, alerts, the resolver) on top of one per forwarder connection;
 * fdguard.h keeps room for the tracker's connections besides.
 */
#define SMTP_FD_RESERVE 16

enum smtp_state {
	SMTP_STATE_INIT = 0,  /* greeted; no HELO/EHLO yet */
	SMTP_STATE_READY,     /* HELO/EHLO done, no transaction */
	SMTP_STATE_MAIL,      /* MAIL accepted, no recipient yet */
	SMTP_STATE_RCPT,      /* at least one recipient */
	SMTP_STATE_DATA,      /* reading message data */
	SMTP_STATE_COMMIT,    /* waiting for the store's commit */
	SMTP_STATE_AUTH_WAIT, /* AUTH: password check or failure delay */
	SMTP_STATE_CLOSED,    /* closing: no more input */
};

/*
 * A mail transaction (RFC 5321 3.3).  Once submitted to the store it
 * belongs to the store's callback, which frees it.
 */
struct smtp_txn {
	struct smtp_session *session; /* NULL once orphaned */
	char *mail_from;
	char **rcpts;
	size_t nrcpts;
	size_t caprcpts;
	struct smtp_mail_params params;
	int64_t received_at;
	/* uv_hrtime() at MAIL, for the latency histogram */
	uint64_t started;
	char *msg; /* Received field + data */
	size_t msglen;
	char *subject;
	char *message_id;
	char helo[SMTP_DOMAIN_MAX + 1]; /* copies: the store reads them */
	char addr[64];			/* after the session may be gone */
	char auth_user[SMTP_AUTH_USER_MAX + 1]; /* "" if not authenticated */
	struct store_new_message m;
};

/* Where an AUTH exchange stands (RFC 4954 4: 334 continuations). */
enum smtp_auth_step {
	SMTP_AUTH_NONE = 0,
	SMTP_AUTH_PLAIN,      /* 334 sent; the PLAIN response comes next */
	SMTP_AUTH_LOGIN_USER, /* 334 Username: sent */
	SMTP_AUTH_LOGIN_PASS, /* 334 Password: sent */
};

struct smtp_session {
	struct smtp_server *srv;
	struct smtp_session *prev;
	struct smtp_session *next;
	uv_tcp_t tcp;
	uv_timer_t timer;
	uint64_t id;
	enum smtp_state state;
	bool esmtp;
	bool served; /* counted in srv->nactive */
	bool closing;
	bool reading;
	bool close_after_write;
	bool after_txn_close; /* shutdown came during a transaction */
	bool linked;	      /* in the server's list */
	int handles;
	char addr[64];
	char helo[SMTP_DOMAIN_MAX + 1];
	char line[SMTP_LINE_MAX];
	size_t linelen;
	bool line_overflow;
	struct smtp_data data;
	struct smtp_txn *txn;
	char *pending; /* input received while waiting for a commit */
	size_t npending;
	char *out;
	size_t outlen;
	size_t outcap;
	/* STARTTLS (RFC 3207) and AUTH (RFC 4954). */
	struct smtp_tls *tls; /* set from the STARTTLS 220 on */
	bool loopback;	      /* the client connects from loopback */
	enum smtp_auth_step auth_step;
	const char *auth_mech;		/* "PLAIN" or "LOGIN", for logs */
	struct smtp_auth_req *auth_req; /* password check under way */
	unsigned auth_failures;		/* in this session */
	char auth_user[SMTP_AUTH_USER_MAX + 1]; /* "" until AUTH succeeds */
	char auth_try[SMTP_AUTH_USER_MAX + 1];	/* the user being checked */
};

struct smtp_wreq {
	uv_write_t req;
	size_t len;
	char data[];
};

typedef void (*smtp_handler)(
    struct smtp_session *s, const char *arg, size_t arglen);

static void smtp_session_input(struct smtp_session *s, const char *p, size_t n);
static void smtp_session_tls_input(
    struct smtp_session *s, const char *p, size_t n);
static void smtp_session_close(struct smtp_session *s);
static void smtp_session_flush(struct smtp_session *s);

struct smtp_session *
smtp_session_next(struct smtp_session *s)
{
	return s->next;
}

/* ---- Transactions ----------------------------------------------------- */

static void
smtp_txn_free(struct smtp_txn *t)
{
	size_t i;

	if (t == NULL)
		return;
	free(t->mail_from);
	for (i = 0; i < t->nrcpts; i++)
		free(t->rcpts[i]);
	free(t->rcpts);
	free(t->msg);
	free(t->subject);
	free(t->message_id);
	free(t);
}

/* Drops the transaction being built (RSET, EHLO, errors). */
static void
smtp_session_reset(struct smtp_session *s)
{
	smtp_txn_free(s->txn);
	s->txn = NULL;
	smtp_data_free(&s->data);
	s->state = s->helo[0] != '\0' ? SMTP_STATE_READY : SMTP_STATE_INIT;
}

/* ---- Output ----------------------------------------------------------- */

/*
 * Appends one reply line (CR LF added).  Replies past SMTP_OUT_MAX are a
 * broken invariant of the read pause, so the session is closed instead.
 */
static void smtp_session_reply(struct smtp_session *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
smtp_session_reply(struct smtp_session *s, const char *fmt, ...)
{
	char line[SMTP_LINE_MAX + 64];
	va_list ap;
	int n;
	size_t need;
	char *p;

	if (s->closing)
		return;
	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line) - 2, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n > sizeof(line) - 3)
		n = (int)(sizeof(line) - 3);
	line[n++] = '\r';
	line[n++] = '\n';
	need = s->outlen + (size_t)n;
	if (need > s->outcap) {
		size_t cap = s->outcap != 0 ? s->outcap : 512;

		while (cap < need)
			cap *= 2;
		if (cap > SMTP_OUT_MAX + sizeof(line)) {
			log_warn("smtp output overflow",
			    LF_STR("client", s->addr), LF_END);
			smtp_session_close(s);
			return;
		}
		p = realloc(s->out, cap);
		if (p == NULL) {
			smtp_session_close(s);
			return;
		}
		s->out = p;
		s->outcap = cap;
	}
	memcpy(s->out + s->outlen, line, (size_t)n);
	s->outlen += (size_t)n;
}

/* Starts or stops reading to match what the session can take now. */
static void smtp_session_update_reading(struct smtp_session *s);

static void
smtp_session_write_cb(uv_write_t *req, int status)
{
	struct smtp_wreq *w = (struct smtp_wreq *)req;
	struct smtp_session *s = req->handle->data;

	free(w);
	if (status < 0) {
		if (status != UV_ECANCELED && !s->closing) {
			log_debug("smtp write failed",
			    LF_STR("client", s->addr),
			    LF_STR("error", uv_strerror(status)), LF_END);
			smtp_session_close(s);
		}
		return;
	}
	if (s->closing)
		return;
	if (s->close_after_write &&
	    uv_stream_get_write_queue_size((uv_stream_t *)&s->tcp) == 0) {
		smtp_session_close(s);
		return;
	}
	smtp_session_update_reading(s);
}

/*
 * Writes len bytes to the socket: directly when the socket takes them,
 * else through a queued write with its own copy.  Returns 0, or -1 when
 * the session was closed.
 */
static int
smtp_session_send(struct smtp_session *s, const char *buf, size_t len)
{
	struct smtp_wreq *w;
	uv_buf_t b;
	int n, rc;

	n = 0;
	if (uv_stream_get_write_queue_size((uv_stream_t *)&s->tcp) == 0) {
		b = uv_buf_init((char *)buf, (unsigned)len);
		n = uv_try_write((uv_stream_t *)&s->tcp, &b, 1);
		if (n < 0 && n != UV_EAGAIN) {
			smtp_session_close(s);
			return -1;
		}
		if (n < 0)
			n = 0;
	}
	if ((size_t)n < len) {
		size_t rest = len - (size_t)n;

		w = malloc(sizeof(*w) + rest);
		if (w == NULL) {
			smtp_session_close(s);
			return -1;
		}
		w->len = rest;
		memcpy(w->data, buf + n, rest);
		b = uv_buf_init(w->data, (unsigned)rest);
		rc = uv_write(&w->req, (uv_stream_t *)&s->tcp, &b, 1,
		    smtp_session_write_cb);
		if (rc < 0) {
			free(w);
			smtp_session_close(s);
			return -1;
		}
	}
	return 0;
}

/*
 * Once STARTTLS has been answered, replies go through SSL_write and what
 * OpenSSL has for the peer (handshake records included) to the socket.
 * Replies made while the handshake runs (a timeout's 421) are dropped:
 * nothing may be said in the clear any more.
 */
static int
smtp_session_tls_flush(struct smtp_session *s)
{
	char buf[16 * 1024];
	size_t n;

	if (s->outlen > 0 && smtp_tls_is_open(s->tls) &&
	    smtp_tls_write(s->tls, s->out, s->outlen) < 0) {
		smtp_session_close(s);
		return -1;
	}
	s->outlen = 0;
	while ((n = smtp_tls_pending_out(s->tls, buf, sizeof(buf))) > 0)
		if (smtp_session_send(s, buf, n) < 0)
			return -1;
	return 0;
}

/* Writes what the output buffer holds (through TLS once it is started). */
static void
smtp_session_flush(struct smtp_session *s)
{
	if (s->closing)
		return;
	if (s->tls != NULL) {
		if (smtp_session_tls_flush(s) < 0)
			return;
	} else if (s->outlen > 0) {
		if (smtp_session_send(s, s->out, s->outlen) < 0)
			return;
		s->outlen = 0;
	}
	if (!s->closing && s->close_after_write &&
	    uv_stream_get_write_queue_size((uv_stream_t *)&s->tcp) == 0)
		smtp_session_close(s);
}

static void smtp_session_touch(struct smtp_session *s);
/* Sends a last reply, then closes once it is written. */
static void smtp_session_reply_close(struct smtp_session *s, const char *fmt,
    ...) __attribute__((format(printf, 2, 3)));

static void
smtp_session_reply_close(struct smtp_session *s, const char *fmt, ...)
{
	char line[SMTP_LINE_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	smtp_session_reply(s, "%s", line);
	s->close_after_write = true;
	s->state = SMTP_STATE_CLOSED;
	smtp_session_update_reading(s);
	/* A client that never reads the last reply is closed at timeout. */
	smtp_session_touch(s);
	smtp_session_flush(s);
}

/* ---- Reading ----------------------------------------------------------- */

static void
smtp_session_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct smtp_session *s = h->data;

	(void)suggested;
	*buf = uv_buf_init(s->srv->readbuf, sizeof(s->srv->readbuf));
}

static void
smtp_session_read_cb(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
	struct smtp_session *s = st->data;

	if (nread == 0 || s->closing)
		return;
	if (nread < 0) {
		if (nread != UV_EOF)
			log_debug("smtp read failed", LF_STR("client", s->addr),
			    LF_STR("error", uv_strerror((int)nread)), LF_END);
		smtp_session_close(s);
		return;
	}
	if (s->tls != NULL)
		smtp_session_tls_input(s, buf->base, (size_t)nread);
	else
		smtp_session_input(s, buf->base, (size_t)nread);
	smtp_session_flush(s);
	if (!s->closing)
		smtp_session_update_reading(s);
}

static void
smtp_session_update_reading(struct smtp_session *s)
{
	bool want;

	if (s->closing)
		return;
	want = s->state != SMTP_STATE_COMMIT && s->state != SMTP_STATE_CLOSED &&
	    s->state != SMTP_STATE_AUTH_WAIT &&
	    uv_stream_get_write_queue_size((uv_stream_t *)&s->tcp) <
		SMTP_WRITE_QUEUE_MAX;
	if (want == s->reading)
		return;
	if (want) {
		if (uv_read_start((uv_stream_t *)&s->tcp, smtp_session_alloc_cb,
			smtp_session_read_cb) == 0)
			s->reading = true;
	} else {
		uv_read_stop((uv_stream_t *)&s->tcp);
		s->reading = false;
	}
}

/* ---- Timer ------------------------------------------------------------- */

static void
smtp_session_timeout_cb(uv_timer_t *t)
{
	struct smtp_session *s = t->data;

	if (s->closing)
		return;
	if (s->state == SMTP_STATE_CLOSED) {
		/* The last reply could not be written within timeout. */
		log_info("smtp session closed unread",
		    LF_UINT("session", s->id), LF_STR("client", s->addr),
		    LF_UINT("queued",
			uv_stream_get_write_queue_size((uv_stream_t *)&s->tcp)),
		    LF_END);
		smtp_session_close(s);
		return;
	}
	if (s->tls != NULL && !smtp_tls_is_open(s->tls)) {
		log_info("smtp tls handshake failed", LF_UINT("session", s->id),
		    LF_STR("client", s->addr), LF_STR("error", "timeout"),
		    LF_END);
		smtp_session_close(s);
		return;
	}
	log_info("smtp session timed out", LF_UINT("session", s->id),
	    LF_STR("client", s->addr), LF_END);
	if (s->state == SMTP_STATE_DATA)
		smtp_data_free(&s->data);
	smtp_session_reply_close(s, "421 4.4.2 %s Error: timeout exceeded",
	    s->srv->cfg->relay.hostname);
}

/*
 * Restarts the session's one timer: it fires when `timeout` passes without
 * a complete command line or line of data (a trickling client included).
 */
static void
smtp_session_touch(struct smtp_session *s)
{
	if (s->closing)
		return;
	uv_timer_start(&s->timer, smtp_session_timeout_cb,
	    (uint64_t)s->srv->cfg->relay.timeout_ms, 0);
}

/* ---- Commands (RFC 5321 4.1.1) ------------------------------------------ */

static bool
smtp_prefix(const char *arg, size_t arglen, const char *word)
{
	size_t n = strlen(word);

	return arglen >= n && strncasecmp(arg, word, n) == 0;
}

static void
smtp_cmd_helo(
    struct smtp_session *s, const char *arg, size_t arglen, bool esmtp)
{
	const struct config *cfg = s->srv->cfg;
	size_t n;

	if (smtp_parse_helo(arg, arglen) != SMTP_PARSE_OK) {
		smtp_session_reply(s, "501 5.5.4 Syntax: %s hostname",
		    esmtp ? "EHLO" : "HELO");
		return;
	}
	/* Keep the first word only; the rest is a comment some send. */
	for (n = 0; n < arglen && arg[n] != ' ' && n < SMTP_DOMAIN_MAX; n++)
		;
	memcpy(s->helo, arg, n);
	s->helo[n] = '\0';
	s->esmtp = esmtp;
	/* RFC 5321 4.1.4: HELO/EHLO in a session clears the transaction. */
	smtp_session_reset(s);
	if (!esmtp) {
		smtp_session_reply(s, "250 %s", cfg->relay.hostname);
		return;
	}
	smtp_session_reply(s, "250-%s", cfg->relay.hostname);
	smtp_session_reply(s, "250-PIPELINING");
	smtp_session_reply(s, "250-SIZE %llu",
	    (unsigned long long)cfg->relay.max_message_size);
	smtp_session_reply(s, "250-8BITMIME");
	smtp_session_reply(s, "250-ENHANCEDSTATUSCODES");
	/* RFC 3207 4.2: no STARTTLS once TLS is up. */
	if (s->srv->tls_ctx != NULL && s->tls == NULL)
		smtp_session_reply(s, "250-STARTTLS");
	if (s->srv->users != NULL && (s->tls != NULL || s->loopback))
		smtp_session_reply(s, "250-AUTH PLAIN LOGIN");
	smtp_session_reply(s, "250 SMTPUTF8");
}

static void
smtp_cmd_ehlo(struct smtp_session *s, const char *arg, size_t arglen)
{
	smtp_cmd_helo(s, arg, arglen, true);
}

static void
smtp_cmd_helo_plain(struct smtp_session *s, const char *arg, size_t arglen)
{
	smtp_cmd_helo(s, arg, arglen, false);
}

/* The answer to a command that the session's state does not allow. */
static bool
smtp_session_check_order(struct smtp_session *s, enum smtp_verb verb)
{
	if (s->state == SMTP_STATE_INIT) {
		smtp_session_reply(s, "503 5.5.1 Error: send HELO/EHLO first");
		return false;
	}
	switch (verb) {
	case SMTP_VERB_MAIL:
		if (s->state != SMTP_STATE_READY) {
			smtp_session_reply(
			    s, "503 5.5.1 Error: nested MAIL command");
			return false;
		}
		return true;
	case SMTP_VERB_RCPT:
		if (s->state != SMTP_STATE_MAIL &&
		    s->state != SMTP_STATE_RCPT) {
			smtp_session_reply(
			    s, "503 5.5.1 Error: need MAIL command");
			return false;
		}
		return true;
	case SMTP_VERB_DATA:
		if (s->state != SMTP_STATE_RCPT) {
			smtp_session_reply(
			    s, "503 5.5.1 Error: need RCPT command");
			return false;
		}
		return true;
	default:
		return true;
	}
}

/* Writes a parameter name out of arg for the 555 answer, escaped. */
static void
smtp_session_reply_param(struct smtp_session *s, const char *arg, size_t arglen)
{
	char esc[96];
	const char *gt = memchr(arg, '>', arglen);
	const char *p = gt != NULL ? gt + 1 : arg + arglen;
	size_t n;

	while (p < arg + arglen && *p == ' ')
		p++;
	n = (size_t)(arg + arglen - p);
	log_escape(esc, sizeof(esc), p, n, 64);
	smtp_session_reply(s, "555 5.5.4 Unsupported option: %s", esc);
}

static void
smtp_cmd_mail(struct smtp_session *s, const char *arg, size_t arglen)
{
	const struct config *cfg = s->srv->cfg;
	char addr[SMTP_PATH_MAX + 1];
	struct smtp_mail_params params;
	struct smtp_txn *t;
	int rc;

	if (!smtp_session_check_order(s, SMTP_VERB_MAIL))
		return;
	if (cfg->relay.require_auth && s->auth_user[0] == '\0') {
		smtp_session_reply(s, "530 5.7.0 Authentication required");
		return;
	}
	if (!smtp_prefix(arg, arglen, "FROM:")) {
		smtp_session_reply(s, "501 5.5.4 Syntax: MAIL FROM:<address>");
		return;
	}
	memset(&params, 0, sizeof(params));
	rc = smtp_parse_mail(arg, arglen, addr, sizeof(addr), &params);
	if (rc == SMTP_PARSE_PARAM) {
		smtp_session_reply_param(s, arg, arglen);
		return;
	}
	if (rc != SMTP_PARSE_OK) {
		smtp_session_reply(s, "501 5.1.7 Bad sender address syntax");
		return;
	}
	if (params.has_size && params.size > cfg->relay.max_message_size) {
		smtp_session_reply(s,
		    "552 5.3.4 Message size exceeds fixed "
		    "maximum message size");
		return;
	}
	t = calloc(1, sizeof(*t));
	if (t == NULL || (t->mail_from = strdup(addr)) == NULL) {
		free(t);
		smtp_session_reply(s, "451 4.3.0 Error: out of memory");
		return;
	}
	t->params = params;
	t->session = s;
	t->started = uv_hrtime();
	s->txn = t;
	s->state = SMTP_STATE_MAIL;
	smtp_session_reply(s, "250 2.1.0 Ok");
}

static void
smtp_cmd_rcpt(struct smtp_session *s, const char *arg, size_t arglen)
{
	const struct config *cfg = s->srv->cfg;
	char addr[SMTP_PATH_MAX + 1];
	struct smtp_txn *t;
	size_t i;
	int rc;

	if (!smtp_session_check_order(s, SMTP_VERB_RCPT))
		return;
	t = s->txn;
	if (!smtp_prefix(arg, arglen, "TO:")) {
		smtp_session_reply(s, "501 5.5.4 Syntax: RCPT TO:<address>");
		return;
	}
	rc = smtp_parse_rcpt(
	    arg, arglen, t->params.smtputf8, addr, sizeof(addr));
	if (rc == SMTP_PARSE_PARAM) {
		smtp_session_reply_param(s, arg, arglen);
		return;
	}
	if (rc != SMTP_PARSE_OK) {
		smtp_session_reply(s, "501 5.1.3 Bad recipient address syntax");
		return;
	}
	/* A repeated recipient is accepted once (Mailgun ignores repeats). */
	for (i = 0; i < t->nrcpts; i++) {
		if (strcasecmp(t->rcpts[i], addr) == 0) {
			smtp_session_reply(s, "250 2.1.5 Ok");
			return;
		}
	}
	if (t->nrcpts >= cfg->relay.max_recipients) {
		smtp_session_reply(s, "452 4.5.3 Error: too many recipients");
		return;
	}
	if (t->nrcpts == t->caprcpts) {
		size_t cap = t->caprcpts != 0 ? t->caprcpts * 2 : 4;
		char **r = realloc(t->rcpts, cap * sizeof(*r));

		if (r == NULL) {
			smtp_session_reply(s, "451 4.3.0 Error: out of memory");
			return;
		}
		t->rcpts = r;
		t->caprcpts = cap;
	}
	t->rcpts[t->nrcpts] = strdup(addr);
	if (t->rcpts[t->nrcpts] == NULL) {
		smtp_session_reply(s, "451 4.3.0 Error: out of memory");
		return;
	}
	t->nrcpts++;
	s->state = SMTP_STATE_RCPT;
	smtp_session_reply(s, "250 2.1.5 Ok");
}

static void
smtp_cmd_data(struct smtp_session *s, const char *arg, size_t arglen)
{
	(void)arg;
	if (!smtp_session_check_order(s, SMTP_VERB_DATA))
		return;
	if (arglen != 0) {
		smtp_session_reply(s, "501 5.5.4 Syntax: DATA");
		return;
	}
	smtp_data_init(&s->data, s->srv->cfg->relay.max_message_size);
	s->txn->received_at = time_now_ms();
	s->state = SMTP_STATE_DATA;
	smtp_session_reply(s, "354 End data with <CR><LF>.<CR><LF>");
}

static void
smtp_cmd_rset(struct smtp_session *s, const char *arg, size_t arglen)
{
	(void)arg;
	(void)arglen;
	smtp_session_reset(s);
	smtp_session_reply(s, "250 2.0.0 Ok");
}

static void
smtp_cmd_noop(struct smtp_session *s, const char *arg, size_t arglen)
{
	(void)arg;
	(void)arglen;
	smtp_session_reply(s, "250 2.0.0 Ok");
}

static void
smtp_cmd_quit(struct smtp_session *s, const char *arg, size_t arglen)
{
	(void)arg;
	(void)arglen;
	smtp_session_reply_close(s, "221 2.0.0 Bye");
}

/* RFC 5321 3.5.3: 252 when the server will not verify. */
static void
smtp_cmd_vrfy(struct smtp_session *s, const char *arg, size_t arglen)
{
	(void)arg;
	if (arglen == 0) {
		smtp_session_reply(s, "501 5.5.4 Syntax: VRFY address");
		return;
	}
	smtp_session_reply(s,
	    "252 2.5.0 Cannot VRFY user, but will accept "
	    "message and attempt delivery");
}

static void
smtp_cmd_help(struct smtp_session *s, const char *arg, size_t arglen)
{
	(void)arg;
	(void)arglen;
	smtp_session_reply(s,
	    "214 2.0.0 Commands: HELO EHLO MAIL RCPT DATA "
	    "RSET NOOP QUIT VRFY HELP");
}

static void
smtp_cmd_not_implemented(struct smtp_session *s, const char *arg, size_t arglen)
{
	(void)arg;
	(void)arglen;
	smtp_session_reply(s, "502 5.5.1 Error: command not implemented");
}

static void
smtp_cmd_unknown(struct smtp_session *s, const char *arg, size_t arglen)
{
	(void)arg;
	(void)arglen;
	smtp_session_reply(s, "500 5.5.2 Error: command not recognized");
}

/* ---- STARTTLS (RFC 3207) ------------------------------------------------ */

/*
 * RFC 3207 4: "220 Ready to start TLS" in the clear, then every byte is
 * TLS.  The rest of the input already read is dropped by
 * smtp_session_input (CVE-2011-0411).  The handshake must end within the
 * session's timeout.
 */
static void
smtp_cmd_starttls(struct smtp_session *s, const char *arg, size_t arglen)
{
	(void)arg;
	if (s->srv->tls_ctx == NULL) {
		smtp_cmd_not_implemented(s, arg, arglen);
		return;
	}
	if (s->tls != NULL) {
		smtp_session_reply(s, "503 5.5.1 Error: TLS already active");
		return;
	}
	if (!smtp_session_check_order(s, SMTP_VERB_STARTTLS))
		return;
	if (s->state != SMTP_STATE_READY) {
		smtp_session_reply(s,
		    "503 5.5.1 Error: STARTTLS not allowed during a mail "
		    "transaction");
		return;
	}
	if (arglen != 0) {
		smtp_session_reply(s, "501 5.5.4 Syntax: STARTTLS");
		return;
	}
	smtp_session_reply(s, "220 2.0.0 Ready to start TLS");
	smtp_session_flush(s);
	if (s->closing)
		return;
	s->tls = smtp_tls_new(s->srv->tls_ctx);
	if (s->tls == NULL) {
		log_warn("smtp tls setup failed", LF_UINT("session", s->id),
		    LF_STR("client", s->addr), LF_END);
		smtp_session_close(s);
		return;
	}
	smtp_session_touch(s);
}

/*
 * Input once STARTTLS was answered: the bytes go to OpenSSL; during the
 * handshake only its records go back; afterwards the decrypted bytes go
 * to the state machine.  A failed handshake closes this session only.
 */
static void
smtp_session_tls_input(struct smtp_session *s, const char *p, size_t n)
{
	char buf[16 * 1024], err[256], desc[128];
	long k;
	int rc;

	rc = smtp_tls_feed(s->tls, p, n, err, sizeof(err));
	if (rc == SMTP_TLS_ERROR) {
		log_info(smtp_tls_is_open(s->tls) ? "smtp tls error"
						  : "smtp tls handshake failed",
		    LF_UINT("session", s->id), LF_STR("client", s->addr),
		    LF_STR("error", err), LF_END);
		/* Let the alert out if the socket takes it at once. */
		if (smtp_session_tls_flush(s) == 0)
			smtp_session_close(s);
		return;
	}
	if (rc == SMTP_TLS_AGAIN)
		return; /* the caller flushes the handshake records */
	if (rc == SMTP_TLS_DONE) {
		smtp_tls_describe(s->tls, desc, sizeof(desc));
		log_debug("smtp tls established", LF_UINT("session", s->id),
		    LF_STR("client", s->addr), LF_STR("tls", desc), LF_END);
		/*
		 * RFC 3207 4.2: forget what the client said before: HELO,
		 * transaction, and any authentication.
		 */
		s->helo[0] = '\0';
		s->esmtp = false;
		s->auth_user[0] = '\0';
		s->auth_step = SMTP_AUTH_NONE;
		smtp_session_reset(s);
		smtp_session_touch(s);
	}
	/* Every decrypted byte goes in (kept if the state must wait). */
	while (!s->closing) {
		k = smtp_tls_read(s->tls, buf, sizeof(buf));
		if (k < 0) {
			smtp_session_close(s);
			return;
		}
		if (k == 0)
			break;
		smtp_session_input(s, buf, (size_t)k);
	}
	explicit_bzero(buf, sizeof(buf));
}

/* ---- AUTH (RFC 4954) ---------------------------------------------------- */

static void smtp_session_resume(struct smtp_session *s);

/* After an AUTH exchange: commands again, and what was pipelined. */
static void
smtp_session_auth_finish(struct smtp_session *s, const char *reply)
{
	s->state = SMTP_STATE_READY;
	smtp_session_reply(s, "%s", reply);
	smtp_session_resume(s);
}

/* The failure delay is over: the 535 goes out now. */
static void
smtp_session_auth_delay_cb(uv_timer_t *t)
{
	struct smtp_session *s = t->data;

	if (s->closing || s->state != SMTP_STATE_AUTH_WAIT)
		return;
	smtp_session_auth_finish(
	    s, "535 5.7.8 Authentication credentials invalid");
}

/*
 * The outcome of one AUTH.  After SMTP_AUTH_FREE_FAILURES failures in a
 * session each further 535 waits 1 s, 2 s, then 4 s (on the session's
 * timer: the loop goes on); the SMTP_AUTH_MAX_FAILURES-th closes it.
 */
#define SMTP_AUTH_FREE_FAILURES 3
#define SMTP_AUTH_MAX_FAILURES 10

static void
smtp_session_auth_result(struct smtp_session *s, bool ok)
{
	unsigned extra;
	uint64_t delay;

	if (ok) {
		memcpy(s->auth_user, s->auth_try, sizeof(s->auth_user));
		log_info("smtp auth ok", LF_UINT("session", s->id),
		    LF_STR("client", s->addr), LF_STR("user", s->auth_user),
		    LF_STR("mechanism", s->auth_mech), LF_END);
		smtp_session_auth_finish(
		    s, "235 2.7.0 Authentication successful");
		return;
	}
	s->auth_failures++;
	log_info("smtp auth failed", LF_UINT("session", s->id),
	    LF_STR("client", s->addr), LF_STR("user", s->auth_try),
	    LF_STR("mechanism", s->auth_mech),
	    LF_UINT("failures", s->auth_failures), LF_END);
	if (s->auth_failures >= SMTP_AUTH_MAX_FAILURES) {
		smtp_session_reply(
		    s, "535 5.7.8 Authentication credentials invalid");
		smtp_session_reply_close(s,
		    "421 4.7.0 %s Error: too many authentication failures",
		    s->srv->cfg->relay.hostname);
		return;
	}
	if (s->auth_failures <= SMTP_AUTH_FREE_FAILURES) {
		smtp_session_auth_finish(
		    s, "535 5.7.8 Authentication credentials invalid");
		return;
	}
	extra = s->auth_failures - SMTP_AUTH_FREE_FAILURES - 1;
	delay = (uint64_t)1000 << (extra < 2 ? extra : 2);
	s->state = SMTP_STATE_AUTH_WAIT;
	uv_timer_start(&s->timer, smtp_session_auth_delay_cb, delay, 0);
	smtp_session_update_reading(s);
}

/* The threadpool's answer (never called for a closed session). */
static void
smtp_session_auth_done_cb(void *arg, bool ok)
{
	struct smtp_session *s = arg;

	s->auth_req = NULL;
	if (s->closing || s->state != SMTP_STATE_AUTH_WAIT)
		return;
	smtp_session_auth_result(s, ok);
	smtp_session_flush(s);
}

/*
 * Checks user/pass on the threadpool; the session stops reading until the
 * answer (input already read is kept).  The password is wiped here.
 */
static void
smtp_session_auth_check(struct smtp_session *s, const char *user, char *pass)
{
	int rc;

	s->auth_step = SMTP_AUTH_NONE;
	snprintf(s->auth_try, sizeof(s->auth_try), "%s", user);
	s->state = SMTP_STATE_AUTH_WAIT;
	uv_timer_stop(&s->timer);
	rc = smtp_auth_check(s->srv->loop, s->srv->users, user, pass,
	    smtp_session_auth_done_cb, s, &s->auth_req);
	explicit_bzero(pass, strlen(pass));
	if (rc < 0) {
		log_warn("smtp auth check failed to start",
		    LF_UINT("session", s->id), LF_STR("error", uv_strerror(rc)),
		    LF_END);
		smtp_session_auth_finish(
		    s, "454 4.7.0 Temporary authentication failure");
		return;
	}
	smtp_session_update_reading(s);
}

/* A malformed credential counts as a failure, without a hash to check. */
static void
smtp_session_auth_bad(struct smtp_session *s, const char *user)
{
	s->auth_step = SMTP_AUTH_NONE;
	/* user may be s->auth_try itself (LOGIN's user): never copy onto it. */
	if (user != s->auth_try)
		snprintf(s->auth_try, sizeof(s->auth_try), "%s", user);
	s->state = SMTP_STATE_AUTH_WAIT;
	smtp_session_auth_result(s, false);
}

/* Decodes a PLAIN message (RFC 4616) and checks it. */
static void
smtp_session_auth_plain(struct smtp_session *s, const char *b64, size_t len)
{
	char msg[SMTP_LINE_MAX], user[SMTP_AUTH_USER_MAX + 1];
	char pass[SMTP_AUTH_PASS_MAX + 1];
	size_t mlen;

	s->auth_step = SMTP_AUTH_NONE;
	if (smtp_auth_b64_decode(b64, len, msg, sizeof(msg), &mlen) < 0) {
		smtp_session_reply(s, "501 5.5.2 Cannot decode response");
		return;
	}
	if (smtp_auth_plain_split(
		msg, mlen, user, sizeof(user), pass, sizeof(pass)) < 0) {
		explicit_bzero(msg, sizeof(msg));
		smtp_session_auth_bad(s, "");
		return;
	}
	explicit_bzero(msg, sizeof(msg));
	smtp_session_auth_check(s, user, pass);
	explicit_bzero(pass, sizeof(pass));
}

/*
 * A response line after 334 (RFC 4954 4): "*" cancels; else base64 of
 * what the step expects.
 */
static void
smtp_session_auth_response(struct smtp_session *s, const char *line, size_t len)
{
	char buf[SMTP_LINE_MAX];
	size_t n;
	enum smtp_auth_step step = s->auth_step;

	if (len == 1 && line[0] == '*') {
		s->auth_step = SMTP_AUTH_NONE;
		smtp_session_reply(s, "501 5.0.0 Authentication cancelled");
		return;
	}
	if (step == SMTP_AUTH_PLAIN) {
		smtp_session_auth_plain(s, line, len);
		return;
	}
	if (smtp_auth_b64_decode(line, len, buf, sizeof(buf), &n) < 0) {
		s->auth_step = SMTP_AUTH_NONE;
		smtp_session_reply(s, "501 5.5.2 Cannot decode response");
		return;
	}
	if (step == SMTP_AUTH_LOGIN_USER) {
		if (!smtp_auth_user_valid(buf, n) || memchr(buf, '\0', n)) {
			smtp_session_auth_bad(s, "");
			return;
		}
		memcpy(s->auth_try, buf, n + 1);
		s->auth_step = SMTP_AUTH_LOGIN_PASS;
		smtp_session_reply(s, "334 UGFzc3dvcmQ6"); /* Password: */
		return;
	}
	/* SMTP_AUTH_LOGIN_PASS */
	if (n == 0 || n > SMTP_AUTH_PASS_MAX || memchr(buf, '\0', n) != NULL) {
		explicit_bzero(buf, sizeof(buf));
		smtp_session_auth_bad(s, s->auth_try);
		return;
	}
	{
		char user[SMTP_AUTH_USER_MAX + 1];

		memcpy(user, s->auth_try, sizeof(user));
		smtp_session_auth_check(s, user, buf);
	}
	explicit_bzero(buf, sizeof(buf));
}

/*
 * AUTH mechanism [initial-response] (RFC 4954 4).  Offered only over TLS
 * or from loopback: elsewhere a password would cross the network in the
 * clear (538, RFC 4954 6).
 */
static void
smtp_cmd_auth(struct smtp_session *s, const char *arg, size_t arglen)
{
	const char *sp, *ir = NULL;
	size_t mlen, irlen = 0;

	if (s->srv->users == NULL) {
		smtp_cmd_not_implemented(s, arg, arglen);
		return;
	}
	if (!smtp_session_check_order(s, SMTP_VERB_AUTH))
		return;
	if (s->auth_user[0] != '\0') {
		smtp_session_reply(s, "503 5.5.1 Error: already authenticated");
		return;
	}
	if (s->state != SMTP_STATE_READY) {
		smtp_session_reply(s,
		    "503 5.5.1 Error: AUTH not allowed during a mail "
		    "transaction");
		return;
	}
	if (s->tls == NULL && !s->loopback) {
		smtp_session_reply(s,
		    "538 5.7.11 Encryption required for requested "
		    "authentication mechanism");
		return;
	}
	sp = memchr(arg, ' ', arglen);
	mlen = sp != NULL ? (size_t)(sp - arg) : arglen;
	if (sp != NULL) {
		ir = sp + 1;
		irlen = arglen - mlen - 1;
	}
	if (mlen == 0) {
		smtp_session_reply(s, "501 5.5.4 Syntax: AUTH mechanism");
		return;
	}
	if (mlen == 5 && strncasecmp(arg, "PLAIN", 5) == 0) {
		s->auth_mech = "PLAIN";
		if (ir == NULL) {
			s->auth_step = SMTP_AUTH_PLAIN;
			smtp_session_reply(s, "334 ");
			return;
		}
		/* RFC 4954 4: "=" is an empty initial response. */
		if (irlen == 1 && ir[0] == '=')
			irlen = 0;
		smtp_session_auth_plain(s, ir, irlen);
		return;
	}
	if (mlen == 5 && strncasecmp(arg, "LOGIN", 5) == 0) {
		s->auth_mech = "LOGIN";
		s->auth_step = SMTP_AUTH_LOGIN_USER;
		if (ir == NULL) {
			smtp_session_reply(
			    s, "334 VXNlcm5hbWU6"); /* Username: */
			return;
		}
		smtp_session_auth_response(s, ir, irlen);
		return;
	}
	smtp_session_reply(s, "504 5.5.4 Unrecognized authentication type");
}

/* The command table, indexed by enum smtp_verb. */
static const smtp_handler smtp_commands[] = {
	[SMTP_VERB_UNKNOWN] = smtp_cmd_unknown,
	[SMTP_VERB_HELO] = smtp_cmd_helo_plain,
	[SMTP_VERB_EHLO] = smtp_cmd_ehlo,
	[SMTP_VERB_MAIL] = smtp_cmd_mail,
	[SMTP_VERB_RCPT] = smtp_cmd_rcpt,
	[SMTP_VERB_DATA] = smtp_cmd_data,
	[SMTP_VERB_RSET] = smtp_cmd_rset,
	[SMTP_VERB_NOOP] = smtp_cmd_noop,
	[SMTP_VERB_QUIT] = smtp_cmd_quit,
	[SMTP_VERB_VRFY] = smtp_cmd_vrfy,
	[SMTP_VERB_EXPN] = smtp_cmd_not_implemented,
	[SMTP_VERB_HELP] = smtp_cmd_help,
	[SMTP_VERB_STARTTLS] = smtp_cmd_starttls,
	[SMTP_VERB_AUTH] = smtp_cmd_auth,
	[SMTP_VERB_BDAT] = smtp_cmd_not_implemented,
};

static void
smtp_session_command(struct smtp_session *s, const char *line, size_t len)
{
	struct smtp_command c;

	smtp_session_touch(s);
	if (s->auth_step != SMTP_AUTH_NONE) {
		/* RFC 4954 4: a line after 334 is a response, not a command. */
		smtp_session_auth_response(s, line, len);
		return;
	}
	if (smtp_parse_command(line, len, &c) != SMTP_PARSE_OK) {
		smtp_session_reply(s, "500 5.5.2 Error: bad command syntax");
		return;
	}
	if ((size_t)c.verb >= sizeof(smtp_commands) / sizeof(smtp_commands[0]))
		c.verb = SMTP_VERB_UNKNOWN;
	smtp_commands[c.verb](s, c.arg, c.arglen);
}

/* ---- End of data and the commit ---------------------------------------- */

/*
 * Copies the HELO name into dst for the Received field, replacing anything
 * that could break the header's syntax.
 */
static void
smtp_session_clean_name(char *dst, size_t dstlen, const char *src)
{
	size_t i;

	for (i = 0; src[i] != '\0' && i + 1 < dstlen; i++) {
		char c = src[i];

		if (c <= 0x20 || c >= 0x7f || c == '(' || c == ')' ||
		    c == '\\' || c == ';')
			c = '_';
		dst[i] = c;
	}
	dst[i] = '\0';
}

/*
 * Builds the stored message: one Received field (RFC 5321 4.4; the
 * protocol keyword per RFC 3848 and RFC 6531), then the data as received.
 * It never names a recipient: "for <...>" could reveal a Bcc.
 */
static int
smtp_session_build_message(struct smtp_session *s, struct smtp_txn *t)
{
	const struct config *cfg = s->srv->cfg;
	char hdr[SMTP_RECEIVED_MAX], helo[SMTP_DOMAIN_MAX + 1], date[64];
	char with[16];
	const char *proto;
	char *data;
	size_t datalen;
	int n;

	smtp_session_clean_name(helo, sizeof(helo), s->helo);
	time_format_rfc5322(t->received_at, date, sizeof(date));
	if (t->params.smtputf8)
		proto = "UTF8SMTP";
	else
		proto = s->esmtp ? "ESMTP" : "SMTP";
	/* RFC 3848, RFC 6531 4.3: S for TLS, A for AUTH (ESMTPSA...). */
	snprintf(with, sizeof(with), "%s%s%s", proto,
	    s->esmtp && s->tls != NULL ? "S" : "",
	    s->esmtp && s->auth_user[0] != '\0' ? "A" : "");
	n = snprintf(hdr, sizeof(hdr),
	    "Received: from %s ([%s])\r\n\tby %s (redrive) with %s; %s\r\n",
	    helo, s->addr, cfg->relay.hostname, with, date);
	if (n < 0 || (size_t)n >= sizeof(hdr))
		return -EOVERFLOW;
	data = smtp_data_take(&s->data, &datalen);
	t->msg = malloc((size_t)n + datalen + 1);
	if (t->msg == NULL) {
		free(data);
		return -ENOMEM;
	}
	memcpy(t->msg, hdr, (size_t)n);
	if (datalen > 0)
		memcpy(t->msg + n, data, datalen);
	t->msglen = (size_t)n + datalen;
	t->msg[t->msglen] = '\0';
	t->subject =
	    message_header(data != NULL ? data : "", datalen, "Subject", 998);
	t->message_id = message_id(data != NULL ? data : "", datalen);
	free(data);
	return 0;
}

/* What comes after a transaction: more input, or the shutdown's 421. */
static void
smtp_session_resume(struct smtp_session *s)
{
	char *buf;
	size_t n;

	if (s->closing)
		return;
	if (s->after_txn_close || s->srv->shutting_down) {
		smtp_session_reply_close(s,
		    "421 4.3.2 %s Service shutting down",
		    s->srv->cfg->relay.hostname);
		return;
	}
	smtp_session_touch(s);
	if (s->pending != NULL) {
		buf = s->pending;
		n = s->npending;
		s->pending = NULL;
		s->npending = 0;
		smtp_session_input(s, buf, n);
		free(buf);
	}
	smtp_session_flush(s);
	smtp_session_update_reading(s);
}

/* A transaction got its final reply: one observation of its length. */
static void
smtp_session_observe(struct smtp_session *s, const struct smtp_txn *t)
{
	metrics_histogram_observe(&s->srv->stats.txn_seconds,
	    (double)(uv_hrtime() - t->started) / 1e9);
}

static void
smtp_session_stored_cb(int status, int64_t id, void *arg)
{
	struct smtp_txn *t = arg;
	struct smtp_session *s = t->session;

	if (status == 0) {
		log_info("message queued", LF_INT("id", id),
		    LF_STR("from", t->mail_from), LF_UINT("rcpts", t->nrcpts),
		    LF_UINT("size", t->msglen),
		    LF_STR("client", t->m.client_addr),
		    LF_STR("message_id", t->message_id),
		    LF_STR("acked", s != NULL ? "yes" : "no"), LF_END);
	} else {
		log_warn("message not stored", LF_STR("from", t->mail_from),
		    LF_STR("client", t->m.client_addr),
		    LF_STR("error", strerror(-status)), LF_END);
	}
	if (s == NULL) {
		/* The client left before the commit; it never heard 250. */
		smtp_txn_free(t);
		return;
	}
	smtp_session_observe(s, t);
	s->txn = NULL;
	smtp_txn_free(t);
	s->state = SMTP_STATE_READY;
	if (status == 0) {
		s->srv->stats.messages++;
		smtp_session_reply(
		    s, "250 2.0.0 Ok: queued as %lld", (long long)id);
		if (s->srv->stored_cb != NULL)
			s->srv->stored_cb(id, s->srv->stored_arg);
	} else {
		s->srv->stats.rejected++;
		smtp_session_reply(s,
		    "451 4.3.0 Error: cannot store the "
		    "message, try again later");
	}
	smtp_session_resume(s);
}

static void
smtp_session_data_end(struct smtp_session *s)
{
	struct smtp_txn *t = s->txn;
	enum smtp_data_error err = s->data.error;
	int rc;

	smtp_session_touch(s);
	if (err != SMTP_DATA_OK) {
		s->srv->stats.rejected++;
		smtp_session_observe(s, t);
		log_info("message rejected", LF_UINT("session", s->id),
		    LF_STR("client", s->addr), LF_STR("from", t->mail_from),
		    LF_STR("reply", smtp_data_reply(err)), LF_END);
		smtp_session_reply(s, "%s", smtp_data_reply(err));
		smtp_session_reset(s);
		if (s->after_txn_close)
			smtp_session_resume(s);
		return;
	}
	rc = smtp_session_build_message(s, t);
	if (rc < 0) {
		smtp_session_observe(s, t);
		smtp_session_reply(s, "451 4.3.0 Error: out of memory");
		smtp_session_reset(s);
		return;
	}
	t->m.received_at = t->received_at;
	t->m.mail_from = t->mail_from;
	t->m.rcpts = (const char *const *)t->rcpts;
	t->m.nrcpts = t->nrcpts;
	memcpy(t->helo, s->helo, sizeof(t->helo));
	memcpy(t->addr, s->addr, sizeof(t->addr));
	t->m.helo = t->helo;
	t->m.client_addr = t->addr;
	memcpy(t->auth_user, s->auth_user, sizeof(t->auth_user));
	t->m.auth_user = t->auth_user[0] != '\0' ? t->auth_user : NULL;
	t->m.subject = t->subject;
	t->m.message_id = t->message_id;
	t->m.smtputf8 = t->params.smtputf8;
	t->m.data = t->msg;
	t->m.len = t->msglen;
	s->state = SMTP_STATE_COMMIT;
	uv_timer_stop(&s->timer);
	smtp_session_update_reading(s);
	rc = store_submit(s->srv->store, &t->m, smtp_session_stored_cb, t);
	if (rc < 0) {
		smtp_session_observe(s, t);
		s->state = SMTP_STATE_READY;
		smtp_session_reply(s,
		    "451 4.3.0 Error: cannot store the "
		    "message, try again later");
		smtp_session_reset(s);
		smtp_session_resume(s);
	}
}

/* ---- Input ------------------------------------------------------------- */

/* Keeps input that arrived while the session waits for its commit. */
static void
smtp_session_keep(struct smtp_session *s, const char *p, size_t n)
{
	char *q = realloc(s->pending, s->npending + n);

	if (q == NULL) {
		smtp_session_close(s);
		return;
	}
	memcpy(q + s->npending, p, n);
	s->pending = q;
	s->npending += n;
}

/* Strips the line end (CR LF, or a bare LF) from a command line. */
static size_t
smtp_line_trim(const char *line, size_t len)
{
	if (len > 0 && line[len - 1] == '\n')
		len--;
	if (len > 0 && line[len - 1] == '\r')
		len--;
	return len;
}

/*
 * Feeds input to the state machine: message data to the DATA reader,
 * everything else split into command lines of at most SMTP_LINE_MAX
 * octets (RFC 5321 4.5.3.1.4); a longer line is answered 500 and skipped.
 */
static void
smtp_session_input(struct smtp_session *s, const char *p, size_t n)
{
	bool was_tls = s->tls != NULL;

	while (n > 0 && !s->closing) {
		const char *lf;
		size_t take, linelen, adv;

		if (s->state == SMTP_STATE_CLOSED)
			return;
		/*
		 * RFC 3207 4, CVE-2011-0411: what the client pipelined after
		 * STARTTLS was sent in the clear; it is dropped, never read
		 * as commands nor fed to TLS.
		 */
		if (s->tls != NULL && !was_tls)
			return;
		/*
		 * A read may hold thousands of pipelined commands (NOOPs: 6
		 * bytes in, 14 out): hand the replies to the socket as they
		 * pile up, so that the output buffer stays under
		 * SMTP_OUT_MAX; the write queue then pauses reading.
		 */
		if (s->outlen >= SMTP_OUT_MAX / 2) {
			smtp_session_flush(s);
			continue;
		}
		if (s->state == SMTP_STATE_COMMIT ||
		    s->state == SMTP_STATE_AUTH_WAIT) {
			smtp_session_keep(s, p, n);
			return;
		}
		if (s->state == SMTP_STATE_DATA) {
			size_t used = smtp_data_feed(&s->data, p, n);

			if (memchr(p, '\n', used) != NULL)
				smtp_session_touch(s);
			p += used;
			n -= used;
			if (s->data.done)
				smtp_session_data_end(s);
			continue;
		}
		if (s->linelen == 0 && !s->line_overflow) {
			adv = smtp_parse_line(p, n, &linelen);
			if (adv > 0 && adv <= SMTP_LINE_MAX) {
				smtp_session_command(s, p, linelen);
				p += adv;
				n -= adv;
				continue;
			}
		}
		lf = memchr(p, '\n', n);
		take = lf != NULL ? (size_t)(lf - p) + 1 : n;
		if (!s->line_overflow && s->linelen + take > SMTP_LINE_MAX) {
			s->line_overflow = true;
			s->linelen = 0;
		}
		if (s->line_overflow) {
			if (lf != NULL) {
				s->line_overflow = false;
				smtp_session_touch(s);
				smtp_session_reply(
				    s, "500 5.5.2 Error: line too long");
			}
		} else {
			memcpy(s->line + s->linelen, p, take);
			s->linelen += take;
			if (lf != NULL) {
				linelen = smtp_line_trim(s->line, s->linelen);
				s->linelen = 0;
				smtp_session_command(s, s->line, linelen);
			}
		}
		p += take;
		n -= take;
	}
}

/* ---- Life cycle -------------------------------------------------------- */

static void
smtp_session_close_cb(uv_handle_t *h)
{
	struct smtp_session *s = h->data;

	if (--s->handles > 0)
		return;
	if (s->linked) {
		/* Unlink from the server's list (doubly linked: O(1)). */
		if (s->prev != NULL)
			s->prev->next = s->next;
		else
			s->srv->sessions = s->next;
		if (s->next != NULL)
			s->next->prev = s->prev;
		smtp_server_session_gone(s->srv, s);
	}
	smtp_tls_free(s->tls);
	free(s->pending);
	free(s->out);
	free(s);
}

static void
smtp_session_close(struct smtp_session *s)
{
	if (s->closing)
		return;
	s->closing = true;
	/* A password check under way frees itself; its answer is dropped. */
	smtp_auth_orphan(s->auth_req);
	s->auth_req = NULL;
	if (s->txn != NULL && s->state == SMTP_STATE_COMMIT)
		s->txn->session = NULL; /* the store's callback frees it */
	else
		smtp_txn_free(s->txn);
	s->txn = NULL;
	smtp_data_free(&s->data);
	s->state = SMTP_STATE_CLOSED;
	if (s->served) {
		s->srv->nactive--;
		fdguard_count(FDGUARD_RELAY, -1);
	}
	s->served = false;
	uv_close((uv_handle_t *)&s->tcp, smtp_session_close_cb);
	uv_close((uv_handle_t *)&s->timer, smtp_session_close_cb);
}

void
smtp_session_shutdown(struct smtp_session *s, bool force)
{
	if (s->closing)
		return;
	if (!force &&
	    (s->state == SMTP_STATE_DATA || s->state == SMTP_STATE_COMMIT)) {
		s->after_txn_close = true;
		return;
	}
	if (s->state == SMTP_STATE_COMMIT) {
		smtp_session_close(s);
		return;
	}
	if (s->state == SMTP_STATE_CLOSED) {
		if (force)
			smtp_session_close(s);
		return;
	}
	smtp_session_reply_close(s, "421 4.3.2 %s Service shutting down",
	    s->srv->cfg->relay.hostname);
	if (force && !s->closing)
		smtp_session_close(s);
}

/* The descriptors kept for the forwarder's connections and the rest. */
unsigned
smtp_session_fd_reserve(const struct config *cfg)
{
	return SMTP_FD_RESERVE + cfg->mailgun.concurrency;
}

/*
 * True when the session's descriptor would leave too few free
 * (fdguard.h: the reserve of the rest of the daemon, and room for the
 * tracker's connections).  Such a client is refused like one over
 * max_connections, so that a flood can neither take the descriptors the
 * store, the forwarder and the tracker need nor drive the listener into
 * EMFILE, where libuv closes new connections without a word or a log
 * line.  Logs the refusal.
 */
static bool
smtp_session_fd_short(struct smtp_session *s)
{
	uv_os_fd_t fd;

	if (uv_fileno((uv_handle_t *)&s->tcp, &fd) != 0 || fd < 0)
		return false;
	return !fdguard_admit(
	    FDGUARD_RELAY, fd, smtp_session_fd_reserve(s->srv->cfg), s->addr);
}

/*
 * Takes the connection waiting on the listener.  The session object exists
 * for refused clients too, so that their one-line answer is written before
 * the close, like every other reply.
 */
int
smtp_session_accept(struct smtp_server *srv)
{
	const struct config *cfg = srv->cfg;
	struct sockaddr_storage ss;
	struct smtp_session *s;
	int rc, len = sizeof(ss);

	s = calloc(1, sizeof(*s));
	if (s == NULL)
		return -ENOMEM;
	s->srv = srv;
	s->id = ++srv->next_id;
	rc = uv_tcp_init(srv->loop, &s->tcp);
	if (rc < 0) {
		free(s);
		return rc;
	}
	s->tcp.data = s;
	s->handles = 1;
	rc = uv_accept((uv_stream_t *)&srv->listener, (uv_stream_t *)&s->tcp);
	if (rc == 0)
		rc = uv_timer_init(srv->loop, &s->timer);
	if (rc < 0) {
		s->closing = true;
		uv_close((uv_handle_t *)&s->tcp, smtp_session_close_cb);
		return 0;
	}
	s->timer.data = s;
	s->handles = 2;

	/* Link it: the server walks this list at shutdown. */
	s->next = srv->sessions;
	if (srv->sessions != NULL)
		srv->sessions->prev = s;
	srv->sessions = s;
	srv->nopen++;
	s->linked = true;

	memset(&ss, 0, sizeof(ss));
	if (uv_tcp_getpeername(&s->tcp, (struct sockaddr *)&ss, &len) == 0) {
		cidr_format_addr(
		    (struct sockaddr *)&ss, s->addr, sizeof(s->addr));
		s->loopback = cidr_is_loopback((struct sockaddr *)&ss);
	} else
		snprintf(s->addr, sizeof(s->addr), "unknown");

	if (srv->shutting_down) {
		smtp_session_reply_close(s,
		    "421 4.3.2 %s Service shutting down", cfg->relay.hostname);
		return 0;
	}
	if (!cidr_match_any(
		cfg->relay.allow, cfg->relay.nallow, (struct sockaddr *)&ss)) {
		srv->stats.refused++;
		log_warn("smtp client refused", LF_STR("client", s->addr),
		    LF_STR("reason", "not in allow"), LF_END);
		smtp_session_reply_close(s,
		    "554 5.7.1 %s Error: access denied for %s",
		    cfg->relay.hostname, s->addr);
		return 0;
	}
	if (smtp_session_fd_short(s)) {
		/*
		 * Answered and closed now, not after an asynchronous write:
		 * uv_close() frees the descriptor at once, before libuv
		 * accepts the next connection of a burst (which would
		 * otherwise run the process into EMFILE, where libuv closes
		 * connections without a word).  A fresh socket's buffer takes
		 * the one line whole.
		 */
		char line[SMTP_DOMAIN_MAX + 64];
		uv_buf_t b;
		int n;

		srv->stats.refused++;
		n = snprintf(line, sizeof(line),
		    "421 4.7.0 %s Error: too many connections\r\n",
		    cfg->relay.hostname);
		if (n > 0 && (size_t)n < sizeof(line)) {
			b = uv_buf_init(line, (unsigned)n);
			(void)uv_try_write((uv_stream_t *)&s->tcp, &b, 1);
		}
		smtp_session_close(s);
		return 0;
	}
	if (srv->nactive >= cfg->relay.max_connections) {
		srv->stats.refused++;
		log_warn("smtp client refused", LF_STR("client", s->addr),
		    LF_STR("reason", "too many connections"),
		    LF_UINT("max_connections", cfg->relay.max_connections),
		    LF_END);
		smtp_session_reply_close(s,
		    "421 4.7.0 %s Error: too many connections",
		    cfg->relay.hostname);
		return 0;
	}
	s->served = true;
	srv->nactive++;
	fdguard_count(FDGUARD_RELAY, 1);
	srv->stats.connections++;
	uv_tcp_nodelay(&s->tcp, 1);
	log_debug("smtp session opened", LF_UINT("session", s->id),
	    LF_STR("client", s->addr), LF_END);
	smtp_session_reply(s, "220 %s ESMTP redrive", cfg->relay.hostname);
	smtp_session_touch(s);
	smtp_session_flush(s);
	smtp_session_update_reading(s);
	return 0;
}
