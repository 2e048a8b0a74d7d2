/*
 * mailgun: the asynchronous client of Mailgun's HTTP API.  It owns one
 * libcurl multi handle driven by the daemon's libuv loop the way curl's
 * docs/examples/multi-uv.c does it: curl tells us through
 * CURLMOPT_SOCKETFUNCTION which sockets to watch (one uv_poll_t each,
 * allocated there and freed in its close callback) and through
 * CURLMOPT_TIMERFUNCTION when to call back (one non-repeating uv_timer_t);
 * after every curl_multi_socket_action the finished transfers are
 * collected and their callbacks run.  One multi handle means one
 * connection cache, so connections are reused (and multiplexed over
 * HTTP/2 where the server offers it).  The name resolver must be the
 * threaded one, or DNS would block the loop.
 *
 * A request (struct mailgun_req) owns its easy handle, its MIME body and
 * up to MAILGUN_BODY_MAX bytes of the answer; the message it sends is
 * streamed from the caller's buffer.  The request ends in exactly one call
 * of its callback: from the loop when curl finishes it, or from
 * mailgun_close with -ECANCELED.  The pure decisions about an answer live
 * in mailgun_parse.c.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>
#include <uv.h>

#include "redrive/log.h"
#include "redrive/mailgun.h"
#include "redrive/metrics.h"
#include "redrive/timeutil.h"

#define MAILGUN_USER_AGENT "redrive/0.1.0"
#define MAILGUN_CONNECT_TIMEOUT_MS 10000
/* Room for the value of X-RateLimit-Reset or Retry-After. */
#define MAILGUN_HEADER_MAX 64

/* One socket curl asked us to watch. */
struct mailgun_poll {
	uv_poll_t poll;
	curl_socket_t fd;
	struct mailgun *mg;
	struct mailgun_poll *prev, *next;
};

/* One request in flight. */
struct mailgun_req {
	struct mailgun *mg;
	struct mailgun_req *prev, *next;
	CURL *easy;
	curl_mime *mime;
	const unsigned char *msg; /* the caller's, alive until cb runs */
	size_t msg_len;
	size_t msg_pos;
	int64_t redrive_id; /* -1 for a resend */
	mailgun_cb cb;
	mailgun_body_cb body_cb; /* a GET that hands back its body */
	void *arg;
	size_t body_max; /* bytes of the answer kept */
	bool get;
	uint64_t started; /* uv_hrtime() */
	char *body;
	size_t body_len, body_cap;
	bool body_cut;
	char ratelimit_reset[MAILGUN_HEADER_MAX];
	char retry_after[MAILGUN_HEADER_MAX];
	char errbuf[CURL_ERROR_SIZE];
};

struct mailgun {
	uv_loop_t *loop;
	CURLM *multi;
	uv_timer_t timer;
	char *api_base;
	char *api_key;
	char *ca_file;
	char *mime_url;
	char *events_url;
	struct curl_slist *headers;
	long timeout_ms;
	long connect_timeout_ms;
	unsigned concurrency;
	unsigned in_flight;
	unsigned open_handles; /* the timer and every poll not yet closed */
	bool closing;
	struct mailgun_req *reqs;
	struct mailgun_poll *polls;
	struct metrics_histogram seconds; /* answered requests */
};

static void mailgun_check_multi_info(struct mailgun *mg);

/*
 * Frees the client itself, once its last libuv handle has closed.
 */
static void
mailgun_free(struct mailgun *mg)
{
	curl_slist_free_all(mg->headers);
	free(mg->api_base);
	free(mg->api_key);
	free(mg->ca_file);
	free(mg->mime_url);
	free(mg->events_url);
	free(mg);
	curl_global_cleanup();
}

/*
 * Close callback of the timer and of every poll: a poll's memory goes
 * here, and the client's once closing has begun and nothing is left open.
 */
static void
mailgun_handle_close_cb(uv_handle_t *h)
{
	struct mailgun *mg;

	if (h->type == UV_POLL) {
		struct mailgun_poll *p = h->data;

		mg = p->mg;
		free(p);
	} else
		mg = h->data;
	mg->open_handles--;
	if (mg->closing && mg->open_handles == 0)
		mailgun_free(mg);
}

/* Unlinks a poll and closes it; its memory goes in the close callback. */
static void
mailgun_poll_close(struct mailgun_poll *p)
{
	struct mailgun *mg = p->mg;

	if (mg->polls == p)
		mg->polls = p->next;
	else if (p->prev != NULL)
		p->prev->next = p->next;
	if (p->next != NULL)
		p->next->prev = p->prev;
	p->prev = p->next = NULL;
	(void)uv_poll_stop(&p->poll);
	uv_close((uv_handle_t *)&p->poll, mailgun_handle_close_cb);
}

/*
 * A watched socket is ready (or failed: status < 0, then curl learns it
 * through CURL_CSELECT_ERR).  Runs on the loop; the poll may be closed by
 * curl's socket callback during the action, but is freed only later.
 */
static void
mailgun_poll_cb(uv_poll_t *h, int status, int events)
{
	struct mailgun_poll *p = h->data;
	struct mailgun *mg = p->mg;
	int flags = 0, running = 0;

	if (mg->closing)
		return;
	if (status < 0)
		flags = CURL_CSELECT_ERR;
	else {
		if (events & UV_READABLE)
			flags |= CURL_CSELECT_IN;
		if (events & UV_WRITABLE)
			flags |= CURL_CSELECT_OUT;
	}
	(void)curl_multi_socket_action(mg->multi, p->fd, flags, &running);
	mailgun_check_multi_info(mg);
}

/* curl's timeout expired: let it do its time-based work. */
static void
mailgun_timer_cb(uv_timer_t *t)
{
	struct mailgun *mg = t->data;
	int running = 0;

	if (mg->closing)
		return;
	(void)curl_multi_socket_action(
	    mg->multi, CURL_SOCKET_TIMEOUT, 0, &running);
	mailgun_check_multi_info(mg);
}

/*
 * CURLMOPT_TIMERFUNCTION: curl wants to be called in timeout_ms (-1:
 * never).  Zero means "as soon as possible but not from here", so the
 * timer waits 1 ms (multi-uv.c does the same).
 */
static int
mailgun_curl_timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
	struct mailgun *mg = userp;

	(void)multi;
	if (timeout_ms < 0) {
		(void)uv_timer_stop(&mg->timer);
		return 0;
	}
	if (timeout_ms == 0)
		timeout_ms = 1;
	if (uv_timer_start(
		&mg->timer, mailgun_timer_cb, (uint64_t)timeout_ms, 0) != 0)
		return -1;
	return 0;
}

/*
 * CURLMOPT_SOCKETFUNCTION: watch s for what, or stop watching it.  The
 * poll is created on first use and tied to the socket with
 * curl_multi_assign; on CURL_POLL_REMOVE it is closed (curl closes the
 * socket after this returns).  Returning -1 makes curl fail the transfers
 * of the socket.
 */
static int
mailgun_curl_socket_cb(
    CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
	struct mailgun *mg = userp;
	struct mailgun_poll *p = socketp;
	int events = 0;

	(void)easy;
	if (what == CURL_POLL_REMOVE) {
		if (p != NULL) {
			(void)curl_multi_assign(mg->multi, s, NULL);
			mailgun_poll_close(p);
		}
		return 0;
	}
	if (p == NULL) {
		p = calloc(1, sizeof(*p));
		if (p == NULL)
			return -1;
		if (uv_poll_init_socket(mg->loop, &p->poll, s) != 0) {
			free(p);
			return -1;
		}
		p->fd = s;
		p->mg = mg;
		p->poll.data = p;
		p->next = mg->polls;
		if (mg->polls != NULL)
			mg->polls->prev = p;
		mg->polls = p;
		mg->open_handles++;
		if (curl_multi_assign(mg->multi, s, p) != CURLM_OK) {
			mailgun_poll_close(p);
			return -1;
		}
	}
	if (what == CURL_POLL_IN || what == CURL_POLL_INOUT)
		events |= UV_READABLE;
	if (what == CURL_POLL_OUT || what == CURL_POLL_INOUT)
		events |= UV_WRITABLE;
	if (uv_poll_start(&p->poll, events, mailgun_poll_cb) != 0)
		return -1;
	return 0;
}

/*
 * CURLOPT_WRITEFUNCTION: keeps the first body_max bytes of the
 * answer, growing the buffer by doubling up to that bound, and swallows
 * the rest (the transfer goes on; the excess is not needed to classify).
 */
static size_t
mailgun_write_cb(char *data, size_t size, size_t nmemb, void *userp)
{
	struct mailgun_req *req = userp;
	size_t n = size * nmemb, room, take;

	if (req->body_len >= req->body_max) {
		req->body_cut = req->body_cut || n > 0;
		return n;
	}
	room = req->body_max - req->body_len;
	take = n < room ? n : room;
	if (req->body_len + take > req->body_cap) {
		size_t cap = req->body_cap > 0 ? req->body_cap : 1024;
		char *nb;

		while (cap < req->body_len + take)
			cap *= 2;
		if (cap > req->body_max)
			cap = req->body_max;
		nb = realloc(req->body, cap);
		if (nb == NULL)
			return 0; /* fails the transfer: CURLE_WRITE_ERROR */
		req->body = nb;
		req->body_cap = cap;
	}
	memcpy(req->body + req->body_len, data, take);
	req->body_len += take;
	if (take < n)
		req->body_cut = true;
	return n;
}

/*
 * Copies the value of header line (len bytes, "Name: value\r\n") into buf
 * when its name is name (case-insensitive, RFC 9110 section 5.1), trimmed
 * and cut to the buffer.
 */
static void
mailgun_header_take(
    const char *line, size_t len, const char *name, char *buf, size_t buflen)
{
	size_t nlen = strlen(name), i = 0;

	if (len <= nlen || line[nlen] != ':' ||
	    strncasecmp(line, name, nlen) != 0)
		return;
	line += nlen + 1;
	len -= nlen + 1;
	while (len > 0 && (*line == ' ' || *line == '\t')) {
		line++;
		len--;
	}
	while (len > 0 &&
	    (line[len - 1] == '\r' || line[len - 1] == '\n' ||
		line[len - 1] == ' ' || line[len - 1] == '\t'))
		len--;
	for (; i < len && i + 1 < buflen; i++)
		buf[i] = line[i];
	buf[i] = '\0';
}

/*
 * CURLOPT_HEADERFUNCTION: one header line at a time, status lines
 * included.  A status line starts a new answer (after a 100 Continue, for
 * instance), so what was taken before it is forgotten.
 */
static size_t
mailgun_header_cb(char *line, size_t size, size_t nmemb, void *userp)
{
	struct mailgun_req *req = userp;
	size_t n = size * nmemb;

	if (n >= 5 && strncmp(line, "HTTP/", 5) == 0) {
		req->ratelimit_reset[0] = '\0';
		req->retry_after[0] = '\0';
		return n;
	}
	mailgun_header_take(line, n, "X-RateLimit-Reset", req->ratelimit_reset,
	    sizeof(req->ratelimit_reset));
	mailgun_header_take(
	    line, n, "Retry-After", req->retry_after, sizeof(req->retry_after));
	return n;
}

/*
 * curl_mime_data_cb read callback of the `message` part: copies the next
 * bytes of the caller's buffer into curl's.
 */
static size_t
mailgun_msg_read_cb(char *buf, size_t size, size_t nitems, void *arg)
{
	struct mailgun_req *req = arg;
	size_t want = size * nitems, left = req->msg_len - req->msg_pos;

	if (want > left)
		want = left;
	if (want > 0)
		memcpy(buf, req->msg + req->msg_pos, want);
	req->msg_pos += want;
	return want;
}

/*
 * curl_mime_data_cb seek callback: curl rewinds the part when it has to
 * send the body again (a retried request on a reused connection).
 */
static int
mailgun_msg_seek_cb(void *arg, curl_off_t offset, int origin)
{
	struct mailgun_req *req = arg;

	if (origin != SEEK_SET || offset < 0 ||
	    (uint64_t)offset > (uint64_t)req->msg_len)
		return CURL_SEEKFUNC_FAIL;
	req->msg_pos = (size_t)offset;
	return CURL_SEEKFUNC_OK;
}

/* Maps a transfer's CURLcode to the errno code a result carries. */
static int
mailgun_curl_errno(CURLcode c)
{
	switch (c) {
	case CURLE_OPERATION_TIMEDOUT:
		return -ETIMEDOUT;
	case CURLE_COULDNT_CONNECT:
		return -ECONNREFUSED;
	case CURLE_GOT_NOTHING:
	case CURLE_RECV_ERROR:
	case CURLE_SEND_ERROR:
	case CURLE_PARTIAL_FILE:
		return -ECONNRESET;
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_ENGINE_NOTFOUND:
	case CURLE_SSL_ENGINE_SETFAILED:
	case CURLE_SSL_CERTPROBLEM:
	case CURLE_SSL_CIPHER:
	case CURLE_SSL_ENGINE_INITFAILED:
	case CURLE_SSL_CACERT_BADFILE:
	case CURLE_SSL_SHUTDOWN_FAILED:
	case CURLE_SSL_CRL_BADFILE:
	case CURLE_SSL_ISSUER_ERROR:
	case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
	case CURLE_SSL_INVALIDCERTSTATUS:
	case CURLE_SSL_CLIENTCERT:
	case CURLE_USE_SSL_FAILED:
		return -EPROTO;
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_RESOLVE_PROXY:
		return -EHOSTUNREACH;
	default:
		return -EIO;
	}
}

static const char *
mailgun_outcome_name(enum mailgun_outcome o)
{
	switch (o) {
	case MAILGUN_OK:
		return "ok";
	case MAILGUN_RETRY:
		return "retry";
	case MAILGUN_PAUSE:
		return "pause";
	case MAILGUN_REJECT:
		return "reject";
	}
	return "?";
}

/*
 * Fills res for a finished transfer: a transport error (code != CURLE_OK,
 * or cancel < 0) or an answer to classify.  Reads from the easy handle,
 * so it runs before the handle goes.
 */
static void
mailgun_req_result(struct mailgun_req *req, CURLcode code, int cancel,
    struct mailgun_result *res)
{
	const char *ctype = NULL, *text;
	long status = 0;

	memset(res, 0, sizeof(*res));
	res->seconds = (double)(uv_hrtime() - req->started) / 1e9;
	(void)curl_easy_getinfo(req->easy, CURLINFO_RESPONSE_CODE, &status);
	if (cancel < 0) {
		res->outcome = MAILGUN_RETRY;
		res->transport = cancel;
		res->message = strdup("canceled: the Mailgun client closed");
		return;
	}
	if (code != CURLE_OK) {
		res->outcome = MAILGUN_RETRY;
		res->transport = mailgun_curl_errno(code);
		res->http_status = status;
		text = req->errbuf[0] != '\0' ? req->errbuf
					      : curl_easy_strerror(code);
		res->message = strdup(text);
		return;
	}
	(void)curl_easy_getinfo(req->easy, CURLINFO_CONTENT_TYPE, &ctype);
	if (mailgun_classify(status, ctype, req->body, req->body_len,
		req->ratelimit_reset[0] != '\0' ? req->ratelimit_reset : NULL,
		req->retry_after[0] != '\0' ? req->retry_after : NULL,
		time_now_ms(), res) != 0) {
		res->outcome = MAILGUN_RETRY;
		res->transport = -ENOMEM;
		return;
	}
	/* A GET of the Events API: any complete 2xx is the answer. */
	if (req->body_cb != NULL && status >= 200 && status < 300) {
		res->outcome = req->body_cut ? MAILGUN_RETRY : MAILGUN_OK;
		if (req->body_cut) {
			free(res->message);
			res->message = strdup("answer too large");
		}
	}
}

/*
 * Ends a request: takes its result, detaches and frees everything curl
 * owns for it, logs, then runs the callback (so the callback sees the slot
 * free and may send again) and frees the request.
 */
static void
mailgun_req_finish(
    struct mailgun *mg, struct mailgun_req *req, CURLcode code, int cancel)
{
	struct mailgun_result res;

	mailgun_req_result(req, code, cancel, &res);
	if (cancel == 0)
		metrics_histogram_observe(&mg->seconds, res.seconds);
	(void)curl_multi_remove_handle(mg->multi, req->easy);
	curl_easy_cleanup(req->easy);
	curl_mime_free(req->mime);
	if (mg->reqs == req)
		mg->reqs = req->next;
	else if (req->prev != NULL)
		req->prev->next = req->next;
	if (req->next != NULL)
		req->next->prev = req->prev;
	mg->in_flight--;

	log_debug("mailgun request done", LF_INT("id", req->redrive_id),
	    LF_INT("status", res.http_status), LF_DBL("seconds", res.seconds),
	    LF_STR("outcome", mailgun_outcome_name(res.outcome)),
	    LF_STR("mailgun_id", res.id), LF_END);
	if (res.outcome != MAILGUN_OK)
		log_warn("mailgun request failed",
		    LF_INT("id", req->redrive_id),
		    LF_INT("status", res.http_status),
		    LF_STR("outcome", mailgun_outcome_name(res.outcome)),
		    LF_INT("errno", -res.transport),
		    LF_STR("reason", res.message), LF_END);

	if (req->body_cb != NULL)
		req->body_cb(&res, req->body, req->body_len, req->arg);
	else
		req->cb(&res, req->arg);
	mailgun_result_clear(&res);
	free(req->body);
	free(req);
}

/*
 * Collects the transfers curl has finished and ends them.  Stops early if
 * a callback closed the client (mailgun_close then ended the rest).
 */
static void
mailgun_check_multi_info(struct mailgun *mg)
{
	struct mailgun_req *req;
	CURLMsg *m;
	int pending;

	while (!mg->closing) {
		m = curl_multi_info_read(mg->multi, &pending);
		if (m == NULL)
			break;
		if (m->msg != CURLMSG_DONE)
			continue;
		req = NULL;
		(void)curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, &req);
		if (req != NULL)
			mailgun_req_finish(mg, req, m->data.result, 0);
	}
}

/*
 * Returns a malloc'd copy of s without trailing slashes; NULL on ENOMEM.
 */
static char *
mailgun_strdup_noslash(const char *s)
{
	size_t len = strlen(s);
	char *out;

	while (len > 0 && s[len - 1] == '/')
		len--;
	out = malloc(len + 1);
	if (out == NULL)
		return NULL;
	memcpy(out, s, len);
	out[len] = '\0';
	return out;
}

/*
 * Builds {api_base}/v3/{domain}/messages.mime and .../events with the domain
 * percent-encoded (RFC 3986 section 2.1): a '/' in it must not change the
 * path (FACTS.md 1.3, the "Magnificent" 200).
 */
static int
mailgun_build_url(struct mailgun *mg, const char *domain)
{
	CURL *easy = curl_easy_init();
	char *esc = NULL;
	size_t need;
	int rc = -ENOMEM;

	if (easy == NULL)
		goto out;
	esc = curl_easy_escape(easy, domain, 0);
	if (esc == NULL)
		goto out;
	need = strlen(mg->api_base) + strlen(esc) + 32;
	mg->mime_url = malloc(need);
	mg->events_url = malloc(need);
	if (mg->mime_url == NULL || mg->events_url == NULL)
		goto out;
	(void)snprintf(
	    mg->mime_url, need, "%s/v3/%s/messages.mime", mg->api_base, esc);
	(void)snprintf(
	    mg->events_url, need, "%s/v3/%s/events", mg->api_base, esc);
	rc = 0;
out:
	curl_free(esc);
	curl_easy_cleanup(easy);
	return rc;
}

/* Sets the options of the multi handle and ties it to mg. */
static int
mailgun_multi_setup(struct mailgun *mg)
{
	bool ok = true;

	mg->multi = curl_multi_init();
	if (mg->multi == NULL)
		return -ENOMEM;
	ok &= curl_multi_setopt(mg->multi, CURLMOPT_SOCKETFUNCTION,
		  mailgun_curl_socket_cb) == CURLM_OK;
	ok &= curl_multi_setopt(mg->multi, CURLMOPT_SOCKETDATA, mg) == CURLM_OK;
	ok &= curl_multi_setopt(mg->multi, CURLMOPT_TIMERFUNCTION,
		  mailgun_curl_timer_cb) == CURLM_OK;
	ok &= curl_multi_setopt(mg->multi, CURLMOPT_TIMERDATA, mg) == CURLM_OK;
	ok &= curl_multi_setopt(mg->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS,
		  (long)mg->concurrency) == CURLM_OK;
	ok &= curl_multi_setopt(mg->multi, CURLMOPT_MAXCONNECTS,
		  (long)mg->concurrency) == CURLM_OK;
	return ok ? 0 : -EINVAL;
}

/*
 * Checks the options and libcurl's features, then builds the client.
 * Only the threaded (or c-ares) resolver keeps DNS off the loop thread.
 */
int
mailgun_new(struct mailgun **out, uv_loop_t *loop,
    const struct mailgun_opts *opts, char *err, size_t errlen)
{
	const curl_version_info_data *vi;
	struct mailgun *mg = NULL;
	int rc = -EINVAL;

	*out = NULL;
	if (errlen > 0)
		err[0] = '\0';
	if (opts->api_base == NULL || opts->api_base[0] == '\0' ||
	    opts->domain == NULL || opts->domain[0] == '\0' ||
	    opts->api_key == NULL || opts->api_key[0] == '\0') {
		(void)snprintf(err, errlen,
		    "mailgun: api_base, domain and api_key are required");
		return -EINVAL;
	}
	if (opts->concurrency == 0 || opts->timeout_ms <= 0 ||
	    opts->timeout_ms > 24LL * 3600 * 1000) {
		(void)snprintf(err, errlen,
		    "mailgun: concurrency must be at least 1 and the timeout "
		    "between 1 ms and 24 h");
		return -EINVAL;
	}
	vi = curl_version_info(CURLVERSION_NOW);
	if (vi == NULL || (vi->features & CURL_VERSION_ASYNCHDNS) == 0) {
		(void)snprintf(err, errlen,
		    "mailgun: libcurl %s has no asynchronous resolver "
		    "(threaded or c-ares); DNS lookups would block the daemon",
		    vi != NULL ? vi->version : "?");
		return -ENOTSUP;
	}
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		(void)snprintf(err, errlen, "mailgun: curl_global_init failed");
		return -EIO;
	}
	mg = calloc(1, sizeof(*mg));
	if (mg == NULL) {
		curl_global_cleanup();
		return -ENOMEM;
	}
	mg->loop = loop;
	mg->concurrency = opts->concurrency;
	mg->timeout_ms = (long)opts->timeout_ms;
	mg->connect_timeout_ms = mg->timeout_ms < MAILGUN_CONNECT_TIMEOUT_MS
	    ? mg->timeout_ms
	    : MAILGUN_CONNECT_TIMEOUT_MS;
	rc = -ENOMEM;
	mg->api_base = mailgun_strdup_noslash(opts->api_base);
	mg->api_key = strdup(opts->api_key);
	if (opts->ca_file != NULL)
		mg->ca_file = strdup(opts->ca_file);
	/* An empty Expect: stops curl waiting for 100-continue. */
	mg->headers = curl_slist_append(NULL, "Expect:");
	if (mg->api_base == NULL || mg->api_key == NULL ||
	    (opts->ca_file != NULL && mg->ca_file == NULL) ||
	    mg->headers == NULL)
		goto fail;
	rc = mailgun_build_url(mg, opts->domain);
	if (rc != 0)
		goto fail;
	rc = uv_timer_init(loop, &mg->timer);
	if (rc != 0)
		goto fail;
	mg->timer.data = mg;
	mg->open_handles = 1;
	rc = mailgun_multi_setup(mg);
	if (rc != 0) {
		/* Nothing in flight yet: the timer is all there is to close. */
		(void)snprintf(err, errlen, "mailgun: curl multi setup failed");
		if (mg->multi != NULL)
			(void)curl_multi_cleanup(mg->multi);
		mg->multi = NULL;
		mg->closing = true;
		uv_close((uv_handle_t *)&mg->timer, mailgun_handle_close_cb);
		return rc;
	}
	if (strncasecmp(mg->api_base, "https://", 8) != 0)
		log_warn("mailgun api_base is not https: the API key travels "
			 "in clear",
		    LF_STR("api_base", mg->api_base), LF_END);
	*out = mg;
	return 0;
fail:
	(void)snprintf(err, errlen, "mailgun: %s", uv_strerror(rc));
	mailgun_free(mg);
	return rc;
}

/*
 * Cancels what is in flight (each callback runs now with -ECANCELED),
 * detaches curl from the loop, closes every poll and the timer.  The
 * client is freed by the last close callback.
 */
void
mailgun_close(struct mailgun *mg)
{
	if (mg == NULL || mg->closing)
		return;
	mg->closing = true;
	while (mg->reqs != NULL)
		mailgun_req_finish(mg, mg->reqs, CURLE_OK, -ECANCELED);
	if (mg->multi != NULL) {
		(void)curl_multi_setopt(
		    mg->multi, CURLMOPT_SOCKETFUNCTION, NULL);
		(void)curl_multi_setopt(
		    mg->multi, CURLMOPT_TIMERFUNCTION, NULL);
	}
	while (mg->polls != NULL)
		mailgun_poll_close(mg->polls);
	if (mg->multi != NULL)
		(void)curl_multi_cleanup(mg->multi);
	mg->multi = NULL;
	(void)uv_timer_stop(&mg->timer);
	uv_close((uv_handle_t *)&mg->timer, mailgun_handle_close_cb);
}

bool
mailgun_can_send(const struct mailgun *mg)
{
	return !mg->closing && mg->in_flight < mg->concurrency;
}

unsigned
mailgun_in_flight(const struct mailgun *mg)
{
	return mg->in_flight;
}

/*
 * Options every request shares.  TLS verification is always on; the
 * protocols are limited to HTTP(S) and redirects are not followed, so the
 * key goes nowhere but the URL given.
 */
static bool
mailgun_easy_setup(struct mailgun_req *req, const char *url)
{
	struct mailgun *mg = req->mg;
	CURL *e = req->easy;
	bool ok = true;

	ok &= curl_easy_setopt(e, CURLOPT_URL, url) == CURLE_OK;
	ok &= curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "https,http") ==
	    CURLE_OK;
	ok &= curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L) == CURLE_OK;
	ok &= curl_easy_setopt(e, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC) ==
	    CURLE_OK;
	ok &= curl_easy_setopt(e, CURLOPT_USERNAME, "api") == CURLE_OK;
	ok &= curl_easy_setopt(e, CURLOPT_PASSWORD, mg->api_key) == CURLE_OK;
	ok &= curl_easy_setopt(e, CURLOPT_USERAGENT, MAILGUN_USER_AGENT) ==
	    CURLE_OK;
	ok &= curl_easy_setopt(e, CURLOPT_HTTPHEADER, mg->headers) == CURLE_OK;
	ok &=
	    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, mg->timeout_ms) == CURLE_OK;
	ok &= curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS,
		  mg->connect_timeout_ms) == CURLE_OK;
	ok &= curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L) == CURLE_OK;
	ok &= curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L) == CURLE_OK;
	if (mg->ca_file != NULL)
		ok &= curl_easy_setopt(e, CURLOPT_CAINFO, mg->ca_file) ==
		    CURLE_OK;
	ok &= curl_easy_setopt(e, CURLOPT_HTTP_VERSION,
		  (long)CURL_HTTP_VERSION_2TLS) == CURLE_OK;
	ok &= curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L) == CURLE_OK;
	ok &= curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, mailgun_write_cb) ==
	    CURLE_OK;
	ok &= curl_easy_setopt(e, CURLOPT_WRITEDATA, req) == CURLE_OK;
	ok &= curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, mailgun_header_cb) ==
	    CURLE_OK;
	ok &= curl_easy_setopt(e, CURLOPT_HEADERDATA, req) == CURLE_OK;
	ok &= curl_easy_setopt(e, CURLOPT_ERRORBUFFER, req->errbuf) == CURLE_OK;
	ok &= curl_easy_setopt(e, CURLOPT_PRIVATE, req) == CURLE_OK;
	if (req->get)
		ok &= curl_easy_setopt(e, CURLOPT_HTTPGET, 1L) == CURLE_OK;
	else
		ok &= curl_easy_setopt(e, CURLOPT_MIMEPOST, req->mime) ==
		    CURLE_OK;
	return ok;
}

/* Adds a text field name=value to the request's form. */
static bool
mailgun_form_add(curl_mime *mime, const char *name, const char *value)
{
	curl_mimepart *part = curl_mime_addpart(mime);

	return part != NULL && curl_mime_name(part, name) == CURLE_OK &&
	    curl_mime_data(part, value, CURL_ZERO_TERMINATED) == CURLE_OK;
}

/* Allocates a request with its easy handle and an empty form. */
static struct mailgun_req *
mailgun_req_new(struct mailgun *mg, mailgun_cb cb, void *arg)
{
	struct mailgun_req *req = calloc(1, sizeof(*req));

	if (req == NULL)
		return NULL;
	req->mg = mg;
	req->cb = cb;
	req->arg = arg;
	req->redrive_id = -1;
	req->body_max = MAILGUN_BODY_MAX;
	req->easy = curl_easy_init();
	if (req->easy != NULL)
		req->mime = curl_mime_init(req->easy);
	if (req->easy == NULL || req->mime == NULL) {
		curl_mime_free(req->mime);
		curl_easy_cleanup(req->easy);
		free(req);
		return NULL;
	}
	return req;
}

/* Frees a request that never reached the multi handle. */
static void
mailgun_req_discard(struct mailgun_req *req)
{
	curl_easy_cleanup(req->easy);
	curl_mime_free(req->mime);
	free(req);
}

/*
 * Sets the shared options, hands the request to curl and counts it in
 * flight.  On failure the request is freed.
 */
static int
mailgun_req_start(struct mailgun_req *req, const char *url)
{
	struct mailgun *mg = req->mg;

	if (!mailgun_easy_setup(req, url)) {
		mailgun_req_discard(req);
		return -ENOMEM;
	}
	req->started = uv_hrtime();
	if (curl_multi_add_handle(mg->multi, req->easy) != CURLM_OK) {
		mailgun_req_discard(req);
		return -ENOMEM;
	}
	req->next = mg->reqs;
	if (mg->reqs != NULL)
		mg->reqs->prev = req;
	mg->reqs = req;
	mg->in_flight++;
	return 0;
}

/* Checks what every request needs before one is built. */
static int
mailgun_admit(const struct mailgun *mg, bool has_cb)
{
	if (!has_cb)
		return -EINVAL;
	if (mg->closing)
		return -ECANCELED;
	if (mg->in_flight >= mg->concurrency)
		return -EAGAIN;
	return 0;
}

/*
 * The form of FACTS.md 1.2: `to` once per recipient (only `to` routes;
 * Cc/Bcc headers are ignored), `v:redrive-id`, and `message` as a file
 * part streamed from the caller's buffer.
 */
int
mailgun_send_mime(struct mailgun *mg, const char *const *to, size_t nto,
    const void *msg, size_t len, int64_t redrive_id, mailgun_cb cb, void *arg)
{
	struct mailgun_req *req;
	curl_mimepart *part;
	char idbuf[32];
	size_t i;
	int rc;

	if (to == NULL || nto == 0 || (msg == NULL && len > 0))
		return -EINVAL;
	if (nto > MAILGUN_MAX_RECIPIENTS)
		return -E2BIG;
	for (i = 0; i < nto; i++)
		if (to[i] == NULL || to[i][0] == '\0')
			return -EINVAL;
	rc = mailgun_admit(mg, cb != NULL);
	if (rc != 0)
		return rc;
	req = mailgun_req_new(mg, cb, arg);
	if (req == NULL)
		return -ENOMEM;
	req->msg = msg;
	req->msg_len = len;
	req->redrive_id = redrive_id;
	for (i = 0; i < nto; i++)
		if (!mailgun_form_add(req->mime, "to", to[i]))
			goto nomem;
	(void)snprintf(idbuf, sizeof(idbuf), "%" PRId64, redrive_id);
	if (!mailgun_form_add(req->mime, "v:redrive-id", idbuf))
		goto nomem;
	part = curl_mime_addpart(req->mime);
	if (part == NULL || curl_mime_name(part, "message") != CURLE_OK ||
	    curl_mime_data_cb(part, (curl_off_t)len, mailgun_msg_read_cb,
		mailgun_msg_seek_cb, NULL, req) != CURLE_OK ||
	    curl_mime_filename(part, "message.mime") != CURLE_OK ||
	    curl_mime_type(part, "message/rfc822") != CURLE_OK)
		goto nomem;
	return mailgun_req_start(req, mg->mime_url);
nomem:
	mailgun_req_discard(req);
	return -ENOMEM;
}

/*
 * Decides whether the API key may go to url: https on a host under
 * .mailgun.net (every storage host seen: FACTS.md 2.1), or the scheme,
 * host and port of api_base (a test server, a simulator).
 */
static bool
mailgun_url_allowed(const struct mailgun *mg, const char *url)
{
	static const char suffix[] = ".mailgun.net";
	CURLU *u = curl_url(), *base = curl_url();
	char *scheme = NULL, *host = NULL, *port = NULL;
	char *bscheme = NULL, *bhost = NULL, *bport = NULL;
	size_t hl;
	bool ok = false;

	if (u == NULL || base == NULL)
		goto out;
	if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) !=
		CURLUE_OK)
		goto out;
	hl = strlen(host);
	if (strcasecmp(scheme, "https") == 0 && hl > sizeof(suffix) - 1 &&
	    strcasecmp(host + hl - (sizeof(suffix) - 1), suffix) == 0) {
		ok = true;
		goto out;
	}
	if (curl_url_set(base, CURLUPART_URL, mg->api_base, 0) != CURLUE_OK ||
	    curl_url_get(base, CURLUPART_SCHEME, &bscheme, 0) != CURLUE_OK ||
	    curl_url_get(base, CURLUPART_HOST, &bhost, 0) != CURLUE_OK ||
	    curl_url_get(base, CURLUPART_PORT, &bport, CURLU_DEFAULT_PORT) !=
		CURLUE_OK)
		goto out;
	ok = strcasecmp(scheme, bscheme) == 0 && strcasecmp(host, bhost) == 0 &&
	    strcmp(port, bport) == 0;
out:
	curl_free(scheme);
	curl_free(host);
	curl_free(port);
	curl_free(bscheme);
	curl_free(bhost);
	curl_free(bport);
	curl_url_cleanup(u);
	curl_url_cleanup(base);
	return ok;
}

/*
 * Mailgun's resend from storage (FACTS.md 2.2: `curl --user api:KEY
 * {storage.url} -F to=...`): the URL exactly as the event gave it.
 */
int
mailgun_resend(struct mailgun *mg, const char *storage_url, const char *to,
    mailgun_cb cb, void *arg)
{
	struct mailgun_req *req;
	int rc;

	if (storage_url == NULL || storage_url[0] == '\0' || to == NULL ||
	    to[0] == '\0')
		return -EINVAL;
	rc = mailgun_admit(mg, cb != NULL);
	if (rc != 0)
		return rc;
	if (!mailgun_url_allowed(mg, storage_url)) {
		log_warn("mailgun storage url refused: not Mailgun's",
		    LF_STR("url", storage_url), LF_END);
		return -EPERM;
	}
	req = mailgun_req_new(mg, cb, arg);
	if (req == NULL)
		return -ENOMEM;
	if (!mailgun_form_add(req->mime, "to", to)) {
		mailgun_req_discard(req);
		return -ENOMEM;
	}
	return mailgun_req_start(req, storage_url);
}

/*
 * The Events API (FACTS.md 1.3, 3.7): a GET of {api_base}/v3/{domain}/
 * events?query, or of a paging URL exactly as a page gave it, with the
 * same Basic auth and the same check on where the key may go.
 */
int
mailgun_events(
    struct mailgun *mg, const char *query, mailgun_body_cb cb, void *arg)
{
	struct mailgun_req *req;
	char *url = NULL;
	size_t need;
	int rc;

	if (query == NULL)
		return -EINVAL;
	rc = mailgun_admit(mg, cb != NULL);
	if (rc != 0)
		return rc;
	if (strncasecmp(query, "http://", 7) == 0 ||
	    strncasecmp(query, "https://", 8) == 0) {
		if (!mailgun_url_allowed(mg, query)) {
			log_warn("mailgun paging url refused: not Mailgun's",
			    LF_STR("url", query), LF_END);
			return -EPERM;
		}
		url = strdup(query);
	} else {
		need = strlen(mg->events_url) + strlen(query) + 2;
		url = malloc(need);
		if (url != NULL)
			(void)snprintf(url, need, "%s%s%s", mg->events_url,
			    query[0] != '\0' ? "?" : "", query);
	}
	if (url == NULL)
		return -ENOMEM;
	req = mailgun_req_new(mg, NULL, arg);
	if (req == NULL) {
		free(url);
		return -ENOMEM;
	}
	req->body_cb = cb;
	req->get = true;
	req->body_max = MAILGUN_EVENTS_BODY_MAX;
	/* CURLOPT_URL copies the string. */
	rc = mailgun_req_start(req, url);
	free(url);
	return rc;
}

void
mailgun_latency(const struct mailgun *mg, struct metrics_histogram *out)
{
	*out = mg->seconds;
}
