/*
 * smtp_server: the relay's listener.  It binds [relay] listen, hands each
 * connection to a new session (smtp_session.c), keeps the list of open
 * sessions and the counters, and runs the shutdown: stop accepting, 421
 * to idle sessions, a grace period for transactions under way, then the
 * done callback once every handle is closed.
 */
#include <sys/resource.h>

#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "redrive/config.h"
#include "redrive/fdguard.h"
#include "redrive/log.h"
#include "redrive/smtp_auth.h"
#include "redrive/smtp_server.h"
#include "redrive/smtp_tls.h"
#include "smtp_int.h"

/* Backlog of the listen socket: no collapse under a burst of clients. */
#define SMTP_BACKLOG 1024

static void smtp_server_check_done(struct smtp_server *srv);
static void smtp_server_free_cb(uv_handle_t *h);

/*
 * Loads what STARTTLS and AUTH need, when configured: the TLS context
 * (tls_cert, tls_key) and the users file (auth_users).  A bad certificate,
 * key or users file stops the daemon at start with the reason.
 */
static int
smtp_server_load_security(struct smtp_server *srv, const struct config *cfg)
{
	char err[1024];
	int rc;

	if (cfg->relay.tls_cert != NULL && cfg->relay.tls_cert[0] != '\0') {
		srv->tls_ctx = smtp_tls_ctx_new(
		    cfg->relay.tls_cert, cfg->relay.tls_key, err, sizeof(err));
		if (srv->tls_ctx == NULL) {
			log_error("cannot load the relay's TLS certificate",
			    LF_STR("error", err), LF_END);
			return -EINVAL;
		}
	}
	if (cfg->relay.auth_users != NULL && cfg->relay.auth_users[0] != '\0') {
		rc = smtp_auth_users_load(
		    cfg->relay.auth_users, &srv->users, err, sizeof(err));
		if (rc < 0) {
			log_error("cannot load the relay's auth_users file",
			    LF_STR("error", err), LF_END);
			return rc;
		}
		log_info("smtp auth users loaded",
		    LF_STR("file", cfg->relay.auth_users),
		    LF_UINT("users", smtp_auth_users_count(srv->users)),
		    LF_END);
	}
	return 0;
}

/* Frees the server struct and what it loaded at start. */
static void
smtp_server_free(struct smtp_server *srv)
{
	smtp_tls_ctx_free(srv->tls_ctx);
	smtp_auth_users_free(srv->users);
	free(srv);
}

static void
smtp_server_connection_cb(uv_stream_t *l, int status)
{
	struct smtp_server *srv = l->data;
	int rc;

	if (status < 0) {
		log_warn("smtp accept failed",
		    LF_STR("error", uv_strerror(status)), LF_END);
		return;
	}
	rc = smtp_session_accept(srv);
	if (rc < 0)
		log_warn("smtp accept failed", LF_STR("error", uv_strerror(rc)),
		    LF_END);
}

/*
 * Resolves "host:port" at start-up (blocking getaddrinfo is fine here: the
 * loop is not running yet).  "*" means every IPv4 address.
 */
static int
smtp_server_resolve(const char *listen, struct sockaddr_storage *ss)
{
	struct addrinfo hints, *res = NULL;
	char host[256], port[16];
	int p, rc;

	if (config_split_hostport(listen, host, sizeof(host), &p) < 0)
		return -EINVAL;
	snprintf(port, sizeof(port), "%d", p);
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE;
	rc =
	    getaddrinfo(strcmp(host, "*") == 0 || host[0] == '\0' ? NULL : host,
		port, &hints, &res);
	if (rc != 0 || res == NULL)
		return -EADDRNOTAVAIL;
	memset(ss, 0, sizeof(*ss));
	memcpy(ss, res->ai_addr, res->ai_addrlen);
	freeaddrinfo(res);
	return 0;
}

/*
 * Warns at start when RLIMIT_NOFILE cannot hold max_connections sessions
 * besides the descriptors kept for the rest of the daemon: past that,
 * clients get 421 before max_connections is reached (smtp_session.c).
 */
static void
smtp_server_check_nofile(const struct config *cfg)
{
	struct rlimit rl;
	unsigned reserve = smtp_session_fd_reserve(cfg) +
	    (cfg->tracker.enabled ? FDGUARD_SHARE : 0);

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0 ||
	    rl.rlim_cur == RLIM_INFINITY ||
	    rl.rlim_cur >= (rlim_t)cfg->relay.max_connections + reserve)
		return;
	log_warn("the file descriptor limit is below what max_connections "
		 "needs: clients will be refused with 421 sooner",
	    LF_UINT("rlimit_nofile", (uint64_t)rl.rlim_cur),
	    LF_UINT("max_connections", cfg->relay.max_connections),
	    LF_UINT("reserved", reserve), LF_END);
}

int
smtp_server_start(struct smtp_server **out, uv_loop_t *loop,
    const struct config *cfg, struct store *st)
{
	struct smtp_server *srv;
	struct sockaddr_storage ss;
	int rc, len;

	*out = NULL;
	srv = calloc(1, sizeof(*srv));
	if (srv == NULL)
		return -ENOMEM;
	srv->loop = loop;
	srv->cfg = cfg;
	srv->store = st;
	rc = smtp_server_load_security(srv, cfg);
	if (rc < 0) {
		smtp_server_free(srv);
		return rc;
	}
	rc = smtp_server_resolve(cfg->relay.listen, &ss);
	if (rc < 0) {
		log_error("cannot resolve the relay's listen address",
		    LF_STR("listen", cfg->relay.listen), LF_END);
		smtp_server_free(srv);
		return rc;
	}
	rc = uv_tcp_init(loop, &srv->listener);
	if (rc < 0) {
		smtp_server_free(srv);
		return rc;
	}
	srv->listener.data = srv;
	rc = uv_tcp_bind(&srv->listener, (struct sockaddr *)&ss, 0);
	if (rc == 0)
		rc = uv_listen((uv_stream_t *)&srv->listener, SMTP_BACKLOG,
		    smtp_server_connection_cb);
	if (rc < 0) {
		log_error("cannot listen for SMTP",
		    LF_STR("listen", cfg->relay.listen),
		    LF_STR("error", uv_strerror(rc)), LF_END);
		/* The struct is freed once the handle is closed. */
		srv->shutting_down = true;
		uv_close((uv_handle_t *)&srv->listener, smtp_server_free_cb);
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
	log_info("smtp listening", LF_STR("listen", cfg->relay.listen),
	    LF_INT("port", srv->port), LF_END);
	fdguard_listening(FDGUARD_RELAY, true);
	smtp_server_check_nofile(cfg);
	*out = srv;
	return 0;
}

void
smtp_server_on_stored(
    struct smtp_server *srv, smtp_server_stored_cb cb, void *arg)
{
	srv->stored_cb = cb;
	srv->stored_arg = arg;
}

struct smtp_server_stats
smtp_server_stats(const struct smtp_server *srv)
{
	struct smtp_server_stats s = srv->stats;

	s.active = srv->nactive;
	return s;
}

int
smtp_server_port(const struct smtp_server *srv)
{
	return srv->port;
}

void
smtp_server_session_gone(struct smtp_server *srv, struct smtp_session *s)
{
	(void)s;
	srv->nopen--;
	smtp_server_check_done(srv);
}

static void
smtp_server_free_cb(uv_handle_t *h)
{
	struct smtp_server *srv = h->data;
	void (*done)(void *) = srv->done;
	void *arg = srv->done_arg;

	smtp_server_free(srv);
	if (done != NULL)
		done(arg);
}

static void
smtp_server_listener_closed_cb(uv_handle_t *h)
{
	struct smtp_server *srv = h->data;

	srv->listener_closed = true;
	smtp_server_check_done(srv);
}

/*
 * Once the listener and every session are closed, the grace timer is
 * closed last and its close callback frees the server and calls done.
 */
static void
smtp_server_check_done(struct smtp_server *srv)
{
	if (!srv->shutting_down || !srv->listener_closed || srv->nopen > 0)
		return;
	if (!srv->grace_started)
		return;
	if (uv_is_closing((uv_handle_t *)&srv->grace))
		return;
	log_info("smtp stopped", LF_UINT("connections", srv->stats.connections),
	    LF_UINT("messages", srv->stats.messages), LF_END);
	uv_close((uv_handle_t *)&srv->grace, smtp_server_free_cb);
}

static void
smtp_server_grace_cb(uv_timer_t *t)
{
	struct smtp_server *srv = t->data;
	struct smtp_session *s, *next;

	if (srv->nopen > 0)
		log_warn("smtp shutdown grace period over; closing sessions",
		    LF_UINT("sessions", srv->nopen), LF_END);
	for (s = srv->sessions; s != NULL; s = next) {
		next = smtp_session_next(s);
		smtp_session_shutdown(s, true);
	}
}

void
smtp_server_shutdown(struct smtp_server *srv, int64_t grace_ms,
    void (*done)(void *arg), void *arg)
{
	struct smtp_session *s, *next;

	if (srv->shutting_down)
		return;
	srv->shutting_down = true;
	fdguard_listening(FDGUARD_RELAY, false);
	srv->done = done;
	srv->done_arg = arg;
	uv_timer_init(srv->loop, &srv->grace);
	srv->grace.data = srv;
	srv->grace_started = true;
	uv_timer_start(&srv->grace, smtp_server_grace_cb,
	    (uint64_t)(grace_ms > 0 ? grace_ms : 0), 0);
	uv_close((uv_handle_t *)&srv->listener, smtp_server_listener_closed_cb);
	for (s = srv->sessions; s != NULL; s = next) {
		next = smtp_session_next(s);
		smtp_session_shutdown(s, false);
	}
	smtp_server_check_done(srv);
}
