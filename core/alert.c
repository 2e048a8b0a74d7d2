/*
 * alert: the alert sender (alert.h, docs/alerts.md).
 *
 * A repeating timer asks the store for the pending alerts that are due
 * (store_alerts_due, which also runs the failure-rate check).  Each alert
 * becomes a "try": one piece of work per channel still to send.  Mail goes
 * through [alert] smtp with libesmtp in a libuv threadpool job (a libesmtp
 * session blocks, so it never runs on the loop thread), with STARTTLS
 * (RFC 3207) required for smtp_tls = starttls and AUTH (RFC 4954) PLAIN or
 * LOGIN when smtp_user is set; without smtp, through Mailgun's
 * messages.mime on the forwarder's client.  The webhook is a POST of
 * {"text": ...} (Slack's incoming-webhook format) with libcurl's easy
 * interface, also in the threadpool.  When every channel of a try has
 * answered, one store job records which channels are done and either
 * marks the alert sent or keeps it pending with its next time (30 s
 * doubling to 1 h) and the error, logged at warn.
 *
 * The mail is a plain RFC 5322 message (CRLF line ends, RFC 5322 3.6
 * fields: Date, From, To, Subject, Message-ID), 8bit UTF-8 text.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/ssl.h>
#include <uv.h>

/* libesmtp declares its TLS and AUTH calls only after these two. */
#include <auth-client.h>

#include <libesmtp.h>

#include "redrive/alert.h"
#include "redrive/config.h"
#include "redrive/log.h"
#include "redrive/mailgun.h"
#include "redrive/store_alerts.h"
#include "redrive/timeutil.h"

/* How often the store is asked for due alerts. */
#define ALERT_POLL_MS 1000
/* Alerts in flight at most. */
#define ALERT_MAX_TRIES 16
/* Backoff: the first retry, the most. */
#define ALERT_BACKOFF_MIN_MS 30000
#define ALERT_BACKOFF_MAX_MS 3600000
/* Timeouts of one SMTP session step and of one webhook POST, seconds. */
#define ALERT_SMTP_TIMEOUT_S 20
#define ALERT_WEBHOOK_TIMEOUT_MS 20000
/* The longest error text kept. */
#define ALERT_ERR_MAX 512

struct alert;
struct alert_try;

/* One channel's work in the threadpool. */
struct alert_work {
	uv_work_t req;
	struct alert_try *t;
	unsigned channel; /* STORE_ALERT_MAIL or STORE_ALERT_WEBHOOK */
	bool ok;
	char err[ALERT_ERR_MAX];
	int auth_event; /* a libesmtp certificate event, 0 */
};

/* One alert being sent. */
struct alert_try {
	struct alert *a;
	struct alert_try *next;
	int64_t id;
	unsigned attempts;
	unsigned done;	  /* channels done (before and now) */
	unsigned waiting; /* channel works not finished */
	char *msg;	  /* the RFC 5322 mail, CRLF */
	size_t msglen;
	char *json; /* the webhook body */
	char err[ALERT_ERR_MAX];
};

struct alert {
	uv_loop_t *loop;
	const struct config *cfg;
	struct store *st;
	struct mailgun *mg;
	uv_timer_t timer;
	unsigned required; /* channels configured */
	struct alert_try *tries;
	size_t ntries;
	unsigned jobs; /* store jobs out */
	bool due_out;
	bool first; /* the first look: every pending alert is due */
	bool closing;
	bool timer_closed;
	bool curl_init;
	char from[512];
	struct alert_stats stats;
};

static void alert_try_finish(struct alert_try *t);

int64_t
alert_backoff_ms(unsigned n)
{
	int64_t d = ALERT_BACKOFF_MIN_MS;

	while (n > 1 && d < ALERT_BACKOFF_MAX_MS) {
		d *= 2;
		n--;
	}
	return d < ALERT_BACKOFF_MAX_MS ? d : ALERT_BACKOFF_MAX_MS;
}

static bool
alert_set(const char *s)
{
	return s != NULL && s[0] != '\0';
}

/* Frees a once nothing refers to it any more. */
static void
alert_maybe_free(struct alert *a)
{
	if (!a->closing || !a->timer_closed || a->tries != NULL ||
	    a->jobs > 0 || a->due_out)
		return;
	if (a->curl_init)
		curl_global_cleanup();
	free(a);
}

static void
alert_try_free(struct alert_try *t)
{
	free(t->msg);
	free(t->json);
	free(t);
}

static void
alert_try_unlink(struct alert_try *t)
{
	struct alert_try **p;

	for (p = &t->a->tries; *p != NULL; p = &(*p)->next)
		if (*p == t) {
			*p = t->next;
			t->a->ntries--;
			return;
		}
}

/* Adds "; what" to the try's error text. */
static void
alert_try_error(struct alert_try *t, const char *what)
{
	size_t n = strlen(t->err);

	(void)snprintf(
	    t->err + n, sizeof(t->err) - n, "%s%s", n > 0 ? "; " : "", what);
}

/* ---- Building the mail and the webhook body ---------------------------- */

/*
 * The RFC 5322 message of an alert: header fields (3.6), an empty line,
 * the body with every line end made CRLF (2.3).
 */
static int
alert_build_mail(const struct alert *a, const struct store_alert *al,
    char **out, size_t *len)
{
	char date[64];
	const char *p;
	FILE *f;

	*out = NULL;
	f = open_memstream(out, len);
	if (f == NULL)
		return -ENOMEM;
	fprintf(f,
	    "Date: %s\r\nFrom: %s\r\nTo: %s\r\nSubject: %s\r\n"
	    "Message-ID: <redrive-alert-%" PRId64 "-%u@%s>\r\n"
	    "MIME-Version: 1.0\r\n"
	    "Content-Type: text/plain; charset=utf-8\r\n"
	    "Content-Transfer-Encoding: 8bit\r\n"
	    "Auto-Submitted: auto-generated\r\n"
	    "X-Redrive-Alert: %s\r\n\r\n",
	    time_format_rfc5322(time_now_ms(), date, sizeof(date)), a->from,
	    a->cfg->alert.to, al->subject, al->id, al->attempts,
	    alert_set(a->cfg->relay.hostname) ? a->cfg->relay.hostname
					      : "localhost",
	    al->kind);
	for (p = al->body; *p != '\0'; p++) {
		if (*p == '\r')
			continue;
		if (*p == '\n')
			fputc('\r', f);
		fputc(*p, f);
	}
	if (p == al->body || p[-1] != '\n')
		fputs("\r\n", f);
	if (fclose(f) != 0) {
		free(*out);
		*out = NULL;
		return -ENOMEM;
	}
	return 0;
}

/* {"text": "subject\n\nbody"}: Slack's incoming-webhook format. */
static char *
alert_build_json(const struct store_alert *al)
{
	json_t *o;
	char *text = NULL, *out = NULL;
	size_t n = strlen(al->subject) + strlen(al->body) + 3;

	text = malloc(n);
	if (text == NULL)
		return NULL;
	(void)snprintf(text, n, "%s\n\n%s", al->subject, al->body);
	o = json_pack("{s:s}", "text", text);
	if (o != NULL)
		out = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	free(text);
	return out;
}

/* ---- SMTP through libesmtp (threadpool) -------------------------------- */

/* AUTH (RFC 4954): libesmtp asks for the user and the password. */
static int
alert_smtp_interact(
    auth_client_request_t req, char **result, int fields, void *arg)
{
	const struct config *cfg = arg;
	int i;

	for (i = 0; i < fields; i++) {
		if (req[i].flags & AUTH_USER)
			result[i] = cfg->alert.smtp_user;
		else if (req[i].flags & AUTH_PASS)
			result[i] = cfg->alert.smtp_password;
		else
			result[i] = NULL;
	}
	return 1;
}

/* Notes a certificate problem (libesmtp then refuses the session). */
static void
alert_smtp_event(smtp_session_t s, int event, void *arg, ...)
{
	struct alert_work *w = arg;

	(void)s;
	if (event == SMTP_EV_INVALID_PEER_CERTIFICATE ||
	    event == SMTP_EV_NO_PEER_CERTIFICATE ||
	    event == SMTP_EV_WRONG_PEER_CERTIFICATE ||
	    event == SMTP_EV_UNUSABLE_CA_LIST)
		w->auth_event = event;
}

/* The TLS context for STARTTLS: peer verification always on. */
static SSL_CTX *
alert_smtp_tls(const struct config *cfg, char *err, size_t errlen)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());

	if (ctx == NULL) {
		(void)snprintf(err, errlen, "cannot create a TLS context");
		return NULL;
	}
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	/*
	 * TLS 1.2 at most: libesmtp 1.1 at times loses the EHLO reply
	 * (RFC 3207 4.2) that follows a TLS 1.3 NewSessionTicket, then
	 * sees no AUTH and quits (docs/alerts.md).
	 */
	if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1 ||
	    SSL_CTX_set_max_proto_version(ctx, TLS1_2_VERSION) != 1) {
		(void)snprintf(err, errlen, "cannot set the TLS version");
		SSL_CTX_free(ctx);
		return NULL;
	}
	if (alert_set(cfg->alert.smtp_ca_file)
		? SSL_CTX_load_verify_locations(
		      ctx, cfg->alert.smtp_ca_file, NULL) != 1
		: SSL_CTX_set_default_verify_paths(ctx) != 1) {
		(void)snprintf(err, errlen, "cannot load the CA certificates");
		SSL_CTX_free(ctx);
		return NULL;
	}
	return ctx;
}

/* Sets the protocol timeouts of a session. */
static void
alert_smtp_timeouts(smtp_session_t s)
{
	static const int which[] = { Timeout_GREETING, Timeout_ENVELOPE,
		Timeout_DATA, Timeout_TRANSFER, Timeout_DATA2 };
	size_t i;

	for (i = 0; i < sizeof(which) / sizeof(which[0]); i++)
		(void)smtp_set_timeout(s,
		    which[i] | Timeout_OVERRIDE_RFC2822_MINIMUM,
		    ALERT_SMTP_TIMEOUT_S);
}

/* Checks the outcome of a finished session; fills w->ok or w->err. */
static void
alert_smtp_outcome(struct alert_work *w, smtp_message_t m, smtp_recipient_t r)
{
	const smtp_status_t *ms = smtp_message_transfer_status(m);
	const smtp_status_t *rs = smtp_recipient_status(r);
	char buf[256];

	if (rs != NULL && rs->code != 0 && (rs->code < 200 || rs->code > 299))
		(void)snprintf(w->err, sizeof(w->err),
		    "smtp: recipient refused: %d %s", rs->code,
		    rs->text != NULL ? rs->text : "");
	else if (ms == NULL || ms->code == 0)
		(void)snprintf(w->err, sizeof(w->err), "smtp: no answer: %s%s",
		    smtp_strerror(smtp_errno(), buf, sizeof(buf)),
		    w->auth_event != 0
			? " (the server's certificate is not trusted)"
			: "");
	else if (ms->code < 200 || ms->code > 299)
		(void)snprintf(w->err, sizeof(w->err),
		    "smtp: not accepted: %d %s", ms->code,
		    ms->text != NULL ? ms->text : "");
	else
		w->ok = true;
}

/* One libesmtp session.  Threadpool: touches no loop state. */
static void
alert_smtp_work(uv_work_t *req)
{
	struct alert_work *w = req->data;
	const struct config *cfg = w->t->a->cfg;
	smtp_session_t s = NULL;
	smtp_message_t m;
	smtp_recipient_t r;
	auth_context_t actx = NULL;
	SSL_CTX *ctx = NULL;
	char buf[256];

	s = smtp_create_session();
	if (s == NULL) {
		(void)snprintf(w->err, sizeof(w->err), "smtp: out of memory");
		return;
	}
	alert_smtp_timeouts(s);
	(void)smtp_set_eventcb(s, alert_smtp_event, w);
	if (smtp_set_server(s, cfg->alert.smtp) == 0)
		goto fail;
	if (strcmp(cfg->alert.smtp_tls, "starttls") == 0) {
		ctx = alert_smtp_tls(cfg, w->err, sizeof(w->err));
		if (ctx == NULL)
			goto out;
		if (smtp_starttls_set_ctx(s, ctx) == 0 ||
		    smtp_starttls_enable(s, Starttls_REQUIRED) == 0)
			goto fail;
	}
	if (alert_set(cfg->alert.smtp_user)) {
		actx = auth_create_context();
		if (actx == NULL)
			goto fail;
		(void)auth_set_mechanism_flags(actx, AUTH_PLUGIN_PLAIN, 0);
		(void)auth_set_interact_cb(
		    actx, alert_smtp_interact, (void *)cfg);
		if (smtp_auth_set_context(s, actx) == 0)
			goto fail;
	}
	m = smtp_add_message(s);
	if (m == NULL || smtp_set_reverse_path(m, w->t->a->from) == 0)
		goto fail;
	r = smtp_add_recipient(m, cfg->alert.to);
	if (r == NULL)
		goto fail;
	smtp_set_message_str(m, w->t->msg);
	if (smtp_start_session(s) == 0)
		goto fail;
	alert_smtp_outcome(w, m, r);
	goto out;
fail:
	(void)snprintf(w->err, sizeof(w->err), "smtp %s: %s%s", cfg->alert.smtp,
	    smtp_strerror(smtp_errno(), buf, sizeof(buf)),
	    w->auth_event != 0 ? " (the server's certificate is not trusted)"
			       : "");
out:
	if (s != NULL)
		smtp_destroy_session(s);
	if (actx != NULL)
		auth_destroy_context(actx);
	SSL_CTX_free(ctx);
	/*
	 * OpenSSL keeps per-thread state (error queue, DRBGs) that it frees
	 * only when the thread exits; libuv's pool threads never do, so at
	 * exit OPENSSL_cleanup() orphans it (valgrind: definitely lost under
	 * SSL_CTX_new_ex).  Free it here, on the thread that made it.
	 */
	OPENSSL_thread_stop();
}

/* ---- The webhook through libcurl easy (threadpool) --------------------- */

static size_t
alert_discard(char *p, size_t size, size_t n, void *arg)
{
	(void)p;
	(void)arg;
	return size * n;
}

/* One POST.  Threadpool: touches no loop state. */
static void
alert_webhook_work(uv_work_t *req)
{
	struct alert_work *w = req->data;
	const struct config *cfg = w->t->a->cfg;
	struct curl_slist *h = NULL;
	long status = 0;
	CURLcode cc;
	CURL *c;

	c = curl_easy_init();
	h = curl_slist_append(NULL, "Content-Type: application/json");
	if (c == NULL || h == NULL) {
		(void)snprintf(
		    w->err, sizeof(w->err), "webhook: out of memory");
		goto out;
	}
	(void)curl_easy_setopt(c, CURLOPT_URL, cfg->alert.webhook_url);
	(void)curl_easy_setopt(c, CURLOPT_POSTFIELDS, w->t->json);
	(void)curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
	(void)curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	(void)curl_easy_setopt(
	    c, CURLOPT_TIMEOUT_MS, (long)ALERT_WEBHOOK_TIMEOUT_MS);
	(void)curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, alert_discard);
	(void)curl_easy_setopt(c, CURLOPT_USERAGENT, "redrive");
	cc = curl_easy_perform(c);
	if (cc != CURLE_OK) {
		(void)snprintf(w->err, sizeof(w->err), "webhook: %s",
		    curl_easy_strerror(cc));
		goto out;
	}
	(void)curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
	if (status < 200 || status > 299)
		(void)snprintf(
		    w->err, sizeof(w->err), "webhook: HTTP %ld", status);
	else
		w->ok = true;
out:
	curl_slist_free_all(h);
	if (c != NULL)
		curl_easy_cleanup(c);
	OPENSSL_thread_stop(); /* as in alert_smtp_work (https) */
}

/* A channel's work is over (or was canceled).  Loop thread. */
static void
alert_work_after(uv_work_t *req, int status)
{
	struct alert_work *w = req->data;
	struct alert_try *t = w->t;
	struct alert *a = t->a;

	if (status == UV_ECANCELED)
		alert_try_error(t, "canceled");
	else if (w->ok)
		t->done |= w->channel;
	else
		alert_try_error(t, w->err);
	free(w);
	t->waiting--;
	alert_try_finish(t);
	if (a->closing)
		alert_maybe_free(a);
}

static int
alert_queue(struct alert_try *t, unsigned channel, uv_work_cb fn)
{
	struct alert_work *w = calloc(1, sizeof(*w));
	int rc;

	if (w == NULL)
		return -ENOMEM;
	w->t = t;
	w->channel = channel;
	w->req.data = w;
	rc = uv_queue_work(t->a->loop, &w->req, fn, alert_work_after);
	if (rc < 0) {
		free(w);
		return rc;
	}
	t->waiting++;
	return 0;
}

/* ---- Mail through Mailgun ---------------------------------------------- */

static void
alert_mailgun_cb(const struct mailgun_result *r, void *arg)
{
	struct alert_try *t = arg;
	struct alert *a = t->a;
	char buf[ALERT_ERR_MAX];

	if (r->outcome == MAILGUN_OK)
		t->done |= STORE_ALERT_MAIL;
	else {
		(void)snprintf(buf, sizeof(buf), "mailgun: %ld %s",
		    r->http_status, r->message != NULL ? r->message : "");
		alert_try_error(t, buf);
	}
	t->waiting--;
	alert_try_finish(t);
	if (a->closing)
		alert_maybe_free(a);
}

/* ---- Tries ------------------------------------------------------------- */

static void
alert_mark_done(int status, void *arg)
{
	struct alert *a = arg;

	(void)status;
	a->jobs--;
	if (a->closing)
		alert_maybe_free(a);
}

/*
 * Every channel of the try has answered: record it (unless closing: then
 * the alert stays as it was, and goes again after a restart).
 */
static void
alert_try_finish(struct alert_try *t)
{
	struct alert *a = t->a;
	bool sent;
	int64_t now, next;
	int rc;

	if (t->waiting > 0)
		return;
	alert_try_unlink(t);
	if (a->closing) {
		/* The caller frees a if this was the last thing. */
		alert_try_free(t);
		return;
	}
	now = time_now_ms();
	sent = (t->done & a->required) == a->required;
	next = now + alert_backoff_ms(t->attempts + 1);
	if (sent) {
		a->stats.sent++;
		log_info("alert sent", LF_INT("alert", t->id), LF_END);
	} else {
		a->stats.failures++;
		log_warn("alert not sent; it will be tried again",
		    LF_INT("alert", t->id), LF_UINT("tries", t->attempts + 1),
		    LF_INT("retry_in_s", (next - now) / 1000),
		    LF_STR("error", t->err), LF_END);
	}
	rc = store_alerts_mark(a->st, t->id, t->done, sent, now, next,
	    sent ? NULL : t->err, alert_mark_done, a);
	if (rc == 0)
		a->jobs++;
	else
		log_error("cannot record an alert's try",
		    LF_INT("alert", t->id), LF_STR("error", strerror(-rc)),
		    LF_END);
	alert_try_free(t);
}

/* Starts the channels of one alert. */
static void
alert_start(struct alert *a, const struct store_alert *al)
{
	struct alert_try *t;
	unsigned need = a->required & ~al->channels_done;
	const char *to[1];
	int rc;

	t = calloc(1, sizeof(*t));
	if (t == NULL)
		return;
	t->a = a;
	t->id = al->id;
	t->attempts = al->attempts;
	t->done = al->channels_done;
	t->next = a->tries;
	a->tries = t;
	a->ntries++;
	/* Held while the channels start, so none can finish it early. */
	t->waiting = 1;
	if (need & STORE_ALERT_MAIL) {
		rc = alert_build_mail(a, al, &t->msg, &t->msglen);
		if (rc == 0 && alert_set(a->cfg->alert.smtp))
			rc = alert_queue(t, STORE_ALERT_MAIL, alert_smtp_work);
		else if (rc == 0 && a->mg != NULL) {
			to[0] = a->cfg->alert.to;
			rc = mailgun_send_mime(a->mg, to, 1, t->msg, t->msglen,
			    0, alert_mailgun_cb, t);
			if (rc == 0)
				t->waiting++;
		} else if (rc == 0)
			rc = -ENOTCONN;
		if (rc == -ENOTCONN)
			alert_try_error(t,
			    "mail: no [alert] smtp and no "
			    "Mailgun forwarder");
		else if (rc < 0)
			alert_try_error(t, strerror(-rc));
	}
	if (need & STORE_ALERT_WEBHOOK) {
		t->json = alert_build_json(al);
		rc = t->json != NULL
		    ? alert_queue(t, STORE_ALERT_WEBHOOK, alert_webhook_work)
		    : -ENOMEM;
		if (rc < 0)
			alert_try_error(t, strerror(-rc));
	}
	t->waiting--;
	alert_try_finish(t);
}

static void
alert_due_cb(int status, struct store_alert_batch *b, void *arg)
{
	struct alert *a = arg;
	size_t i;

	a->due_out = false;
	if (a->closing) {
		store_alert_batch_free(b);
		alert_maybe_free(a);
		return;
	}
	if (status != 0 || b == NULL)
		return;
	a->first = false;
	a->stats.pending = b->pending;
	if (b->rate_raised)
		log_warn(
		    "failure rate above [alert] failure_rate; alert raised",
		    LF_END);
	for (i = 0; i < b->n && a->ntries < ALERT_MAX_TRIES; i++)
		alert_start(a, &b->items[i]);
	store_alert_batch_free(b);
}

/* Asks the store for due alerts (and runs the failure-rate check). */
static void
alert_poll(struct alert *a)
{
	struct store_alerts_rate rate;
	int64_t ids[ALERT_MAX_TRIES];
	struct alert_try *t;
	size_t n = 0;
	int rc;

	if (a->closing || a->due_out || a->required == 0 ||
	    a->ntries >= ALERT_MAX_TRIES)
		return;
	for (t = a->tries; t != NULL && n < ALERT_MAX_TRIES; t = t->next)
		ids[n++] = t->id;
	rate.rate = a->cfg->alert.failure_rate;
	rate.window_ms = a->cfg->alert.failure_window_ms;
	rate.min = a->cfg->alert.failure_min;
	rc = store_alerts_due(a->st, time_now_ms(), a->first,
	    ALERT_MAX_TRIES - a->ntries, ids, n, &rate, alert_due_cb, a);
	if (rc == 0)
		a->due_out = true;
}

static void
alert_timer_cb(uv_timer_t *h)
{
	alert_poll(h->data);
}

void
alert_kick(struct alert *a)
{
	if (a != NULL)
		alert_poll(a);
}

static void
alert_raise_done(int status, void *arg)
{
	struct alert *a = arg;

	a->jobs--;
	if (a->closing) {
		alert_maybe_free(a);
		return;
	}
	if (status == 0)
		alert_poll(a);
}

void
alert_forward_paused(int http_status, const char *reason, void *arg)
{
	struct alert *a = arg;
	char subject[160], body[1024];
	int rc;

	if (a == NULL || a->closing)
		return;
	(void)snprintf(subject, sizeof(subject),
	    "redrive: Mailgun refused the request (HTTP %d); forwarding "
	    "paused",
	    http_status);
	(void)snprintf(body, sizeof(body),
	    "Mailgun answered HTTP %d: %s\n\n"
	    "Forwarding is paused: nothing is dropped, every message stays "
	    "queued.\nredrive probes Mailgun every [mailgun] retry_max and "
	    "resumes by itself once the key and the domain work.\n\n"
	    "Check [mailgun] api_key, domain and api_base (US or EU "
	    "region), and the account's state.\n",
	    http_status, reason != NULL && reason[0] != '\0' ? reason : "-");
	rc = store_alerts_raise(
	    a->st, "auth", subject, body, time_now_ms(), alert_raise_done, a);
	if (rc == 0)
		a->jobs++;
	else
		log_error("cannot raise the alert of a pause",
		    LF_STR("error", strerror(-rc)), LF_END);
}

struct alert_stats
alert_stats(const struct alert *a)
{
	struct alert_stats s;

	memset(&s, 0, sizeof(s));
	if (a != NULL)
		s = a->stats;
	return s;
}

int
alert_new(struct alert **out, uv_loop_t *loop, const struct config *cfg,
    struct store *st, struct mailgun *mg)
{
	struct alert *a;

	*out = NULL;
	if (alert_set(cfg->alert.smtp) &&
	    strcmp(cfg->alert.smtp_tls, "tls") == 0) {
		log_error("[alert] smtp_tls = tls (implicit TLS) is not "
			  "supported by libesmtp; use starttls",
		    LF_STR("smtp", cfg->alert.smtp), LF_END);
		return -ENOTSUP;
	}
	a = calloc(1, sizeof(*a));
	if (a == NULL)
		return -ENOMEM;
	a->loop = loop;
	a->cfg = cfg;
	a->st = st;
	a->mg = mg;
	a->first = true;
	if (alert_set(cfg->alert.to))
		a->required |= STORE_ALERT_MAIL;
	if (alert_set(cfg->alert.webhook_url))
		a->required |= STORE_ALERT_WEBHOOK;
	(void)snprintf(a->from, sizeof(a->from), "%s",
	    alert_set(cfg->alert.from) ? cfg->alert.from : "");
	if (a->from[0] == '\0')
		(void)snprintf(a->from, sizeof(a->from), "redrive@%s",
		    alert_set(cfg->relay.hostname) ? cfg->relay.hostname
						   : "localhost");
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		free(a);
		return -ENOMEM;
	}
	a->curl_init = true;
	auth_client_init();
	uv_timer_init(loop, &a->timer);
	a->timer.data = a;
	/* Without a channel nothing is sent: the rows wait. */
	if (a->required != 0)
		(void)uv_timer_start(
		    &a->timer, alert_timer_cb, 0, ALERT_POLL_MS);
	else
		log_info("no [alert] to or webhook_url: alerts are kept in the "
			 "store and sent once one is set",
		    LF_END);
	*out = a;
	return 0;
}

static void
alert_timer_closed(uv_handle_t *h)
{
	struct alert *a = h->data;

	a->timer_closed = true;
	alert_maybe_free(a);
}

void
alert_close(struct alert *a)
{
	if (a == NULL || a->closing)
		return;
	a->closing = true;
	uv_close((uv_handle_t *)&a->timer, alert_timer_closed);
}
