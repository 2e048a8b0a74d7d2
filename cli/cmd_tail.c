/*
 * cmd_tail: `redrive tail [--since WHEN] [--json]`, the events of the
 * store as they are committed, like `tail -f` of a mail log.  It follows
 * the events table by id: it starts after the highest id there is (with
 * --since, the events recorded since WHEN come first), and every
 * CMD_TAIL_POLL_MS reads what was committed after the last id it printed,
 * each poll in one read transaction.  One line per event, flushed at
 * once: time, message id, recipient, event, severity and reason, code,
 * text; or JSON Lines with the fields of `show --json`'s events plus id
 * and message_id.  Runs until SIGINT or SIGTERM (exit 0), or until the
 * store goes away or fails (exit 1).
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "redrive/store.h"
#include "redrive/timeutil.h"

#include "cli.h"

/* How often the store is read for new events. */
#define CMD_TAIL_POLL_MS 250
/* The most events one poll prints; the next poll goes on at once. */
#define CMD_TAIL_BATCH 1000

/* What the row callback needs. */
struct cmd_tail_ctx {
	bool json;
	long rows; /* printed by the current poll */
};

/* Set by the signal handler: stop after the current poll. */
static volatile sig_atomic_t cmd_tail_stop;

static void
cmd_tail_usage(FILE *fp)
{
	fputs("usage: redrive tail [--since WHEN] [--json]\n"
	      "\n"
	      "Prints the events redrive records (webhooks, reconciliation) "
	      "as they are\n"
	      "committed, one line each, until interrupted (SIGINT or "
	      "SIGTERM: exit 0).\n"
	      "\n"
	      "  --since WHEN  first print the events recorded since WHEN (a "
	      "duration\n"
	      "                back from now: 15m, 24h, 7d; or an RFC 3339 "
	      "time)\n"
	      "  --json        JSON Lines, one object per event\n"
	      "  -h, --help    print this help\n",
	    fp);
}

static void
cmd_tail_signal(int sig)
{
	(void)sig;
	cmd_tail_stop = 1;
}

/* The JSON of one event: show --json's event fields, id and message_id. */
static int
cmd_tail_json(const struct store_tail_row *row)
{
	const struct store_event_row *e = &row->ev;
	json_t *o;
	int err = 0;

	o = json_object();
	if (o == NULL)
		return -ENOMEM;
	cli_json_set(o, "id", json_integer(row->id), &err);
	cli_json_set(o, "message_id",
	    row->message_id != 0 ? json_integer(row->message_id) : json_null(),
	    &err);
	cli_json_set(o, "at", cli_json_time(e->at), &err);
	cli_json_set(o, "recipient", cli_json_str(e->recipient), &err);
	cli_json_set(o, "event", cli_json_str(e->event), &err);
	cli_json_set(o, "severity", cli_json_str(e->severity), &err);
	cli_json_set(o, "reason", cli_json_str(e->reason), &err);
	cli_json_set(o, "code",
	    e->code != 0 ? json_integer(e->code) : json_null(), &err);
	cli_json_set(o, "enhanced_code", cli_json_str(e->enhanced_code), &err);
	cli_json_set(o, "message", cli_json_str(e->message), &err);
	cli_json_set(o, "mailgun_id", cli_json_str(e->mailgun_id), &err);
	if (err == 0)
		err = cli_json_print(o);
	json_decref(o);
	return err;
}

/*
 * One line for people: "TIME  MESSAGE  RECIPIENT  EVENT[ SEVERITY/REASON]
 * [CODE[ ENHANCED]][: TEXT]", peer text escaped.
 */
static void
cmd_tail_line(const struct store_tail_row *row)
{
	const struct store_event_row *e = &row->ev;
	char when[64];

	fprintf(stdout, "%s  %-6lld  ", cli_time(e->at, when, sizeof(when)),
	    (long long)row->message_id);
	cli_put(
	    stdout, e->recipient != NULL ? e->recipient : "-", SIZE_MAX, false);
	fputs("  ", stdout);
	cli_put(stdout, e->event, SIZE_MAX, false);
	if (e->severity != NULL || e->reason != NULL) {
		fputc(' ', stdout);
		cli_put(stdout, e->severity != NULL ? e->severity : "-",
		    SIZE_MAX, false);
		fputc('/', stdout);
		cli_put(stdout, e->reason != NULL ? e->reason : "-", SIZE_MAX,
		    false);
	}
	if (e->code != 0)
		fprintf(stdout, " %d", e->code);
	if (e->enhanced_code != NULL) {
		fputc(' ', stdout);
		cli_put(stdout, e->enhanced_code, SIZE_MAX, false);
	}
	if (e->message != NULL && e->message[0] != '\0') {
		fputs(": ", stdout);
		cli_put(stdout, e->message, 200, false);
	}
	fputc('\n', stdout);
}

/* store_db_events_after() callback: prints and flushes one event. */
static int
cmd_tail_row_cb(const struct store_tail_row *row, void *arg)
{
	struct cmd_tail_ctx *ctx = arg;
	int ret = 0;

	ctx->rows++;
	if (ctx->json)
		ret = cmd_tail_json(row);
	else
		cmd_tail_line(row);
	if (ret == 0 && (fflush(stdout) != 0 || ferror(stdout)))
		ret = -EIO;
	return ret;
}

/* Sleeps ms unless a signal comes first. */
static void
cmd_tail_sleep(long ms)
{
	struct timespec ts;

	ts.tv_sec = ms / 1000;
	ts.tv_nsec = (ms % 1000) * 1000000L;
	(void)nanosleep(&ts, NULL);
}

/* Installs the handlers of SIGINT and SIGTERM; SIGPIPE ends with EPIPE. */
static void
cmd_tail_signals(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = cmd_tail_signal;
	sigemptyset(&sa.sa_mask);
	(void)sigaction(SIGINT, &sa, NULL);
	(void)sigaction(SIGTERM, &sa, NULL);
	sa.sa_handler = SIG_IGN;
	(void)sigaction(SIGPIPE, &sa, NULL);
}

/*
 * The loop: print what is new, sleep, until a signal.  A full batch is
 * followed at once by the next.  Returns an exit code.
 */
static int
cmd_tail_follow(struct store_db *db, int64_t after, int64_t since, bool json)
{
	struct cmd_tail_ctx ctx;
	int64_t last = after;
	int ret;

	ctx.json = json;
	while (!cmd_tail_stop) {
		if (store_db_present(db) != 0) {
			cli_error("the store is gone");
			return CLI_EXIT_FAIL;
		}
		ctx.rows = 0;
		ret = store_db_events_after(db, last, since, CMD_TAIL_BATCH,
		    cmd_tail_row_cb, &ctx, &last);
		if (ret == -EIO && ferror(stdout))
			return cli_finish(CLI_EXIT_FAIL);
		if (ret != 0) {
			cli_error("cannot read the store: %s",
			    ret == -ENOMEM ? strerror(ENOMEM)
					   : store_db_errmsg(db));
			return CLI_EXIT_FAIL;
		}
		if (ctx.rows < CMD_TAIL_BATCH)
			cmd_tail_sleep(CMD_TAIL_POLL_MS);
	}
	return cli_finish(CLI_EXIT_OK);
}

int
cmd_tail_run(const struct cli *cli, int argc, char **argv)
{
	enum { OPT_SINCE = 256, OPT_JSON };
	static const struct option opts[] = {
		{ "since", required_argument, NULL, OPT_SINCE },
		{ "json", no_argument, NULL, OPT_JSON },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct store_db *db = NULL;
	int64_t since = 0, after = 0;
	bool json = false, have_since = false;
	int c, ret, code;

	optind = 0;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
		switch (c) {
		case OPT_SINCE:
			if (time_parse_when(optarg, time_now_ms(), &since) != 0)
				return cli_usage_error("tail",
				    "bad WHEN '%s' for --since: a duration "
				    "(15m, 24h, 7d) or an RFC 3339 time",
				    optarg);
			have_since = true;
			break;
		case OPT_JSON:
			json = true;
			break;
		case 'h':
			cmd_tail_usage(stdout);
			return cli_finish(CLI_EXIT_OK);
		default:
			return cli_getopt_error("tail", c, argv);
		}
	}
	if (optind < argc)
		return cli_usage_error(
		    "tail", "unexpected argument '%s'", argv[optind]);

	code = cli_open_store(cli, true, &db);
	if (code != CLI_EXIT_OK)
		return code;
	cmd_tail_signals();
	/* Without --since: only what comes after the newest event now. */
	if (!have_since) {
		ret = store_db_events_max(db, &after);
		if (ret != 0) {
			cli_error(
			    "cannot read the store: %s", store_db_errmsg(db));
			store_db_close(db);
			return CLI_EXIT_FAIL;
		}
	}
	code = cmd_tail_follow(db, after, since, json);
	store_db_close(db);
	return code;
}
