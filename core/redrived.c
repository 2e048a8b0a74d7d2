/*
 * redrived: the daemon's main.  It loads the configuration, opens the
 * store, starts the relay and the forwarder (when [mailgun] api_key and
 * domain are set) on the one libuv loop, and runs until SIGTERM or SIGINT;
 * then it stops accepting, lets open SMTP transactions finish (bounded),
 * closes the forwarder (requests in flight are canceled; their messages
 * stay queued), drains the store and exits 0.  SIGHUP reopens the logs.
 * The loop is owned here; uv_loop_close() must succeed at the end, which
 * proves every handle was closed.
 */
#include <errno.h>
#include <getopt.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <uv.h>

#include "redrive/alert.h"
#include "redrive/config.h"
#include "redrive/forward.h"
#include "redrive/mailgun.h"
#include "redrive/metrics.h"
#include "redrive/reconcile.h"
#include "redrive/redrive.h"
#include "redrive/retention.h"
#include "redrive/tracker.h"
#include "redrive/log.h"
#include "redrive/smtp_server.h"
#include "redrive/store.h"
#include "redrive/version.h"

/* How long open SMTP transactions may take to finish at shutdown. */
#define REDRIVED_GRACE_MS 10000

struct redrived {
	uv_loop_t loop;
	struct config cfg;
	struct store *store;
	struct smtp_server *smtp;
	struct forward *fwd;
	struct redrive *redrive;
	struct tracker *tracker;
	struct alert *alert;
	struct reconcile *reconcile;
	struct metrics_registry metrics; /* what /metrics and /healthz read */
	struct retention *retention;
	int closing; /* listeners (relay, tracker) still shutting down */
	uv_signal_t sigterm;
	uv_signal_t sigint;
	uv_signal_t sighup;
	bool stopping;
};

static void
redrived_usage(FILE *f)
{
	fprintf(f,
	    "usage: redrived [-c FILE] [--check-config] [--version] [--help]\n"
	    "\n"
	    "  -c, --config FILE  configuration file (default: "
	    "$REDRIVE_CONFIG,\n"
	    "                     else " CONFIG_DEFAULT_PATH ")\n"
	    "      --check-config load the configuration, report, and exit\n"
	    "      --version      print the version and exit\n"
	    "  -h, --help         print this help and exit\n"
	    "\n"
	    "Runs in the foreground and logs to stderr (logfmt).\n"
	    "SIGTERM/SIGINT stop it cleanly; SIGHUP reopens the logs.\n"
	    "See redrived(8) and redrive.conf(5).\n");
}

/*
 * The last step of a shutdown: the forwarder goes first (its canceled
 * requests record nothing; its record jobs already queued still run),
 * then the store drains and closes.
 */
static void
redrived_close_rest(struct redrived *d)
{
	/* First: its Mailgun requests use the forwarder's client. */
	alert_close(d->alert);
	d->alert = NULL;
	reconcile_close(d->reconcile);
	d->reconcile = NULL;
	retention_close(d->retention);
	d->retention = NULL;
	redrive_close(d->redrive);
	d->redrive = NULL;
	forward_close(d->fwd);
	d->fwd = NULL;
	store_close(d->store);
	d->store = NULL;
}

static void
redrived_smtp_done_cb(void *arg)
{
	struct redrived *d = arg;

	d->smtp = NULL;
	/* Every transaction has had its answer. */
	if (--d->closing == 0)
		redrived_close_rest(d);
}

static void
redrived_tracker_done_cb(void *arg)
{
	struct redrived *d = arg;

	d->tracker = NULL;
	if (--d->closing == 0)
		redrived_close_rest(d);
}

static void
redrived_kick_cb(void *arg)
{
	struct redrived *d = arg;

	forward_kick(d->fwd);
}

/* An event from the Events API scheduled a re-drive. */
static void
redrived_redrive_kick_cb(void *arg)
{
	struct redrived *d = arg;

	redrive_kick(d->redrive);
}

/* ---- The registry of /metrics and /healthz ----------------------------- */

static bool
redrived_smtp_stats(void *arg, struct smtp_server_stats *out)
{
	struct redrived *d = arg;

	if (d->smtp == NULL)
		return false;
	*out = smtp_server_stats(d->smtp);
	return true;
}

static bool
redrived_forward_stats(void *arg, struct forward_stats *out)
{
	struct redrived *d = arg;

	if (d->fwd == NULL)
		return false;
	*out = forward_stats(d->fwd);
	return true;
}

static bool
redrived_redrive_stats(void *arg, struct redrive_stats *out)
{
	struct redrived *d = arg;

	if (d->redrive == NULL)
		return false;
	*out = redrive_stats(d->redrive);
	return true;
}

static bool
redrived_store_stats(void *arg, struct store_stats *out)
{
	struct redrived *d = arg;

	if (d->store == NULL)
		return false;
	*out = store_stats(d->store);
	return true;
}

static bool
redrived_reconcile_stats(void *arg, struct reconcile_stats *out)
{
	struct redrived *d = arg;

	if (d->reconcile == NULL)
		return false;
	*out = reconcile_stats(d->reconcile);
	return true;
}

static bool
redrived_mailgun_seconds(void *arg, struct metrics_histogram *out)
{
	struct redrived *d = arg;
	struct mailgun *mg;

	if (d->fwd == NULL)
		return false;
	mg = forward_mailgun(d->fwd);
	if (mg == NULL)
		return false;
	mailgun_latency(mg, out);
	return true;
}

static bool
redrived_alert_stats(void *arg, struct metrics_alert_stats *out)
{
	struct redrived *d = arg;
	struct alert_stats s;

	if (d->alert == NULL)
		return false;
	s = alert_stats(d->alert);
	out->sent = s.sent;
	out->pending = s.pending;
	return true;
}

/* Fills the registry; the modules it points at may start later. */
static void
redrived_registry(struct redrived *d)
{
	d->metrics.arg = d;
	d->metrics.smtp = redrived_smtp_stats;
	d->metrics.forward = redrived_forward_stats;
	d->metrics.redrive = redrived_redrive_stats;
	d->metrics.store = redrived_store_stats;
	d->metrics.reconcile = redrived_reconcile_stats;
	d->metrics.mailgun_seconds = redrived_mailgun_seconds;
	d->metrics.alerts = redrived_alert_stats;
}

/* A message was stored: the forwarder may have work. */
static void
redrived_stored_cb(int64_t id, void *arg)
{
	struct redrived *d = arg;

	(void)id;
	forward_kick(d->fwd);
}

/*
 * Starts the forwarder when [mailgun] api_key and domain are set; without
 * them messages are stored and stay queued (one warning says so).
 */
static int
redrived_forwarder(struct redrived *d)
{
	const struct config *c = &d->cfg;
	int rc;

	if (c->mailgun.api_key == NULL || c->mailgun.api_key[0] == '\0' ||
	    c->mailgun.domain == NULL || c->mailgun.domain[0] == '\0') {
		log_warn("forwarder off: no [mailgun] api_key/domain; messages "
			 "stay queued",
		    LF_END);
		return 0;
	}
	rc = forward_new(&d->fwd, &d->loop, c, d->store);
	if (rc < 0)
		return rc;
	if (d->smtp != NULL)
		smtp_server_on_stored(d->smtp, redrived_stored_cb, d);
	/* Re-drives share the forwarder's client and its concurrency. */
	rc = redrive_new(&d->redrive, &d->loop, c, d->store,
	    forward_mailgun(d->fwd), redrived_kick_cb, d);
	if (rc < 0)
		return rc;
	/* So does reconciliation, which the tracker's events need. */
	if (!c->tracker.enabled)
		return 0;
	return reconcile_new(&d->reconcile, &d->loop, c, d->store,
	    forward_mailgun(d->fwd), redrived_redrive_kick_cb, d);
}

static void
redrived_stop(struct redrived *d, const char *why)
{
	if (d->stopping)
		return;
	d->stopping = true;
	log_info("redrived stopping", LF_STR("signal", why), LF_END);
	uv_close((uv_handle_t *)&d->sigterm, NULL);
	uv_close((uv_handle_t *)&d->sigint, NULL);
	uv_close((uv_handle_t *)&d->sighup, NULL);
	/* The listeners first; the rest once both have finished. */
	d->closing = 1;
	if (d->smtp != NULL) {
		d->closing++;
		smtp_server_shutdown(
		    d->smtp, REDRIVED_GRACE_MS, redrived_smtp_done_cb, d);
	}
	if (d->tracker != NULL) {
		d->closing++;
		tracker_shutdown(d->tracker, redrived_tracker_done_cb, d);
	}
	if (--d->closing == 0)
		redrived_close_rest(d);
}

static void
redrived_signal_cb(uv_signal_t *h, int signum)
{
	struct redrived *d = h->data;

	if (signum == SIGHUP) {
		log_reopen();
		log_info("logs reopened", LF_END);
		return;
	}
	redrived_stop(d, signum == SIGTERM ? "TERM" : "INT");
}

/*
 * Resolves which configuration file to load: -c, else $REDRIVE_CONFIG,
 * else the default path.  The default path may be missing (built-in
 * defaults are used, with a warning); a named one may not.
 */
static const char *
redrived_config_path(const char *opt, bool *named)
{
	const char *env = getenv("REDRIVE_CONFIG");

	*named = true;
	if (opt != NULL)
		return opt;
	if (env != NULL && env[0] != '\0')
		return env;
	*named = false;
	if (access(CONFIG_DEFAULT_PATH, F_OK) != 0)
		return NULL;
	return CONFIG_DEFAULT_PATH;
}

static int
redrived_signals(struct redrived *d)
{
	int rc;

	uv_signal_init(&d->loop, &d->sigterm);
	uv_signal_init(&d->loop, &d->sigint);
	uv_signal_init(&d->loop, &d->sighup);
	d->sigterm.data = d->sigint.data = d->sighup.data = d;
	rc = uv_signal_start(&d->sigterm, redrived_signal_cb, SIGTERM);
	if (rc == 0)
		rc = uv_signal_start(&d->sigint, redrived_signal_cb, SIGINT);
	if (rc == 0)
		rc = uv_signal_start(&d->sighup, redrived_signal_cb, SIGHUP);
	return rc;
}

/*
 * glibc's malloc gives the top of an arena back to the kernel (madvise)
 * once 128 KiB there is free, until a large mmap'd block is freed and it
 * raises that threshold.  The store thread's arena never sees such a
 * block, and SQLite frees the memory of each job's savepoint and
 * statement journal at its end: measured under webhook load, the
 * madvise calls and the page faults that zero the same pages again took
 * a fifth of the store thread's CPU.  Fixed thresholds instead (setting
 * one turns the adjustment off): blocks from 1 MiB are mmap'd, and an
 * arena keeps up to 4 MiB free at its top.
 */
static void
redrived_malloc_tuning(void)
{
	(void)mallopt(M_MMAP_THRESHOLD, 1024 * 1024);
	(void)mallopt(M_TRIM_THRESHOLD, 4 * 1024 * 1024);
}

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "check-config", no_argument, NULL, 'C' },
		{ "version", no_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct redrived d;
	const char *opt_config = NULL, *path;
	char err[CONFIG_ERR_MAX];
	bool check = false, named;

	enum log_level level;
	int c, rc, ret = 1;

	redrived_malloc_tuning();
	memset(&d, 0, sizeof(d));
	redrived_registry(&d);
	while ((c = getopt_long(argc, argv, "c:hV", longopts, NULL)) != -1) {
		switch (c) {
		case 'c':
			opt_config = optarg;
			break;
		case 'C':
			check = true;
			break;
		case 'V':
			printf("redrived %s\n", REDRIVE_VERSION);
			return 0;
		case 'h':
			redrived_usage(stdout);
			return 0;
		default:
			redrived_usage(stderr);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "redrived: unexpected argument: %s\n",
		    argv[optind]);
		redrived_usage(stderr);
		return 2;
	}

	path = redrived_config_path(opt_config, &named);
	if (config_load(&d.cfg, path, err, sizeof(err)) < 0) {
		fprintf(stderr, "redrived: %s\n", err);
		return 1;
	}
	if (check) {
		printf("redrived: %s: configuration ok\n",
		    path != NULL ? path : "(built-in defaults)");
		config_free(&d.cfg);
		return 0;
	}
	if (log_level_parse(d.cfg.log.level, &level) == 0)
		log_set_level(level);
	if (path == NULL)
		log_warn("no configuration file; using built-in defaults",
		    LF_STR("looked_for", CONFIG_DEFAULT_PATH), LF_END);

	signal(SIGPIPE, SIG_IGN);
	rc = uv_loop_init(&d.loop);
	if (rc < 0) {
		fprintf(stderr, "redrived: cannot start the event loop: %s\n",
		    uv_strerror(rc));
		config_free(&d.cfg);
		return 1;
	}
	rc = redrived_signals(&d);
	if (rc < 0) {
		fprintf(stderr, "redrived: cannot set up signals: %s\n",
		    uv_strerror(rc));
		goto out_stop;
	}
	rc = store_open(&d.store, d.cfg.store.path, &d.loop, err, sizeof(err));
	if (rc < 0) {
		fprintf(stderr, "redrived: %s\n", err);
		goto out_stop;
	}
	rc = retention_new(&d.retention, &d.loop, &d.cfg, d.store);
	if (rc < 0) {
		fprintf(stderr, "redrived: cannot start retention: %s\n",
		    uv_strerror(rc));
		goto out_stop;
	}
	if (d.cfg.relay.enabled) {
		rc = smtp_server_start(&d.smtp, &d.loop, &d.cfg, d.store);
		if (rc < 0) {
			fprintf(stderr, "redrived: cannot listen on %s: %s\n",
			    d.cfg.relay.listen, uv_strerror(rc));
			goto out_stop;
		}
	}
	if (d.cfg.tracker.enabled) {
		rc = tracker_start(
		    &d.tracker, &d.loop, &d.cfg, d.store, &d.metrics);
		if (rc < 0) {
			fprintf(stderr, "redrived: cannot listen on %s: %s\n",
			    d.cfg.tracker.listen, uv_strerror(rc));
			goto out_stop;
		}
	}
	rc = redrived_forwarder(&d);
	if (rc < 0) {
		fprintf(stderr, "redrived: cannot start the forwarder: %s\n",
		    uv_strerror(rc));
		goto out_stop;
	}
	/* Alerts: after the forwarder, whose client and pauses they use. */
	rc = alert_new(&d.alert, &d.loop, &d.cfg, d.store,
	    d.fwd != NULL ? forward_mailgun(d.fwd) : NULL);
	if (rc < 0) {
		fprintf(stderr, "redrived: cannot start alerts: %s\n",
		    uv_strerror(rc));
		goto out_stop;
	}
	forward_on_pause(d.fwd, alert_forward_paused, d.alert);
	log_info("redrived started", LF_STR("version", REDRIVE_VERSION),
	    LF_STR("config", path != NULL ? path : "(defaults)"),
	    LF_STR("store", d.cfg.store.path),
	    LF_STR("relay", d.cfg.relay.enabled ? d.cfg.relay.listen : "off"),
	    LF_STR("tracker",
		d.cfg.tracker.enabled ? d.cfg.tracker.listen : "off"),
	    LF_END);
	uv_run(&d.loop, UV_RUN_DEFAULT);
	ret = 0;
	goto out_loop;

out_stop:
	/* A start-up failure: close whatever was opened, through the loop. */
	redrived_stop(&d, "startup failure");
	uv_run(&d.loop, UV_RUN_DEFAULT);
out_loop:
	rc = uv_loop_close(&d.loop);
	if (rc != 0) {
		log_error("event loop closed with handles still open",
		    LF_STR("error", uv_strerror(rc)), LF_END);
		ret = 1;
	}
	if (ret == 0)
		log_info("redrived stopped", LF_END);
	config_free(&d.cfg);
	return ret;
}
