/*
 * cmd_log: `redrive log`, the mail log, newest first, one row per message,
 * like mailq for Postfix: a table for people (at most CLI_TABLE_WIDTH
 * columns, each recipient that is not delivered on a line of its own with
 * its state and why), or JSON Lines with the fields DESIGN.md promises.
 * The JSON object of a message is built here for `show --json` too.
 */
#include <errno.h>
#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "redrive/store.h"
#include "redrive/timeutil.h"

#include "cli.h"

#define CMD_LOG_DEFAULT_LIMIT 50

/* The states a message can be in, as --status names them. */
static const char *const cmd_log_states[] = {
	"queued",
	"sent",
	"deferred",
	"retrying",
	"delivered",
	"failed",
};

#define CMD_LOG_NSTATES (sizeof(cmd_log_states) / sizeof(cmd_log_states[0]))

/* The table's columns, in characters; with one space between each. */
#define CMD_LOG_W_ID 7
#define CMD_LOG_W_RECEIVED 20
#define CMD_LOG_W_STATUS 9
#define CMD_LOG_W_FROM 20
#define CMD_LOG_W_SUBJECT 18
#define CMD_LOG_W_RCPTS                                        \
	(CLI_TABLE_WIDTH - CMD_LOG_W_ID - CMD_LOG_W_RECEIVED - \
	    CMD_LOG_W_STATUS - CMD_LOG_W_FROM - CMD_LOG_W_SUBJECT - 5)
/* Recipient lines are indented to the RECEIVED column. */
#define CMD_LOG_INDENT (CMD_LOG_W_ID + 1)

struct cmd_log_ctx {
	bool json;
	bool header_done;
	long rows;
};

static void
cmd_log_usage(FILE *fp)
{
	fputs("usage: redrive log [--status S[,S...]] [--to ADDR] "
	      "[--from ADDR]\n"
	      "                   [--since WHEN] [--limit N] [--json]\n"
	      "\n"
	      "Lists messages, newest first, one row per message.\n"
	      "\n"
	      "  --status S[,S...]  only messages in these states: queued, "
	      "sent, deferred,\n"
	      "                     retrying, delivered, failed (a message's "
	      "state is\n"
	      "                     derived from its recipients'); may be "
	      "repeated\n"
	      "  --to ADDR          only messages to ADDR (any case), or to "
	      "any address\n"
	      "                     of a domain with @domain\n"
	      "  --from ADDR        only messages from ADDR (envelope sender; "
	      "<> for the\n"
	      "                     null sender), or from @domain\n"
	      "  --since WHEN       only messages received since WHEN: a "
	      "duration back\n"
	      "                     from now (15m, 24h, 7d) or an RFC 3339 "
	      "time\n"
	      "  --limit N          at most N messages (default 50, with "
	      "--json too)\n"
	      "  --json             JSON Lines, one object per message\n"
	      "  -h, --help         print this help\n",
	    fp);
}

/*
 * Adds the states of a --status argument (comma-separated) to *mask, one
 * bit per cmd_log_states[] entry.  Returns 0, or -EINVAL with the
 * offending item reported.
 */
static int
cmd_log_parse_status(const char *arg, unsigned *mask)
{
	const char *p = arg, *comma;
	size_t len, i;

	for (;;) {
		comma = strchr(p, ',');
		len = comma != NULL ? (size_t)(comma - p) : strlen(p);
		for (i = 0; i < CMD_LOG_NSTATES; i++)
			if (strlen(cmd_log_states[i]) == len &&
			    strncmp(p, cmd_log_states[i], len) == 0)
				break;
		if (i == CMD_LOG_NSTATES) {
			cli_usage_error("log",
			    "unknown status '%.*s' in --status %s (one of "
			    "queued, sent, deferred, retrying, delivered, "
			    "failed)",
			    (int)(len > 64 ? 64 : len), p, arg);
			return -EINVAL;
		}
		*mask |= 1U << i;
		if (comma == NULL)
			return 0;
		p = comma + 1;
	}
}

/* Parses --limit: a positive decimal integer.  Returns 0 or -EINVAL. */
static int
cmd_log_parse_limit(const char *arg, long *out)
{
	char *end;
	long v;

	if (arg[0] < '0' || arg[0] > '9')
		return -EINVAL;
	errno = 0;
	v = strtol(arg, &end, 10);
	if (errno != 0 || *end != '\0' || v <= 0)
		return -EINVAL;
	*out = v;
	return 0;
}

/*
 * Checks an address filter: "@domain" or an address; "<>" stands for the
 * null sender (when null_ok).  Returns the text to filter on, or NULL
 * after reporting a usage error.
 */
static const char *
cmd_log_parse_addr(const char *opt, const char *arg, bool null_ok)
{
	if (null_ok && strcmp(arg, "<>") == 0)
		return "";
	if (arg[0] == '\0' || strcmp(arg, "@") == 0) {
		cli_usage_error("log", "%s needs an address or @domain", opt);
		return NULL;
	}
	return arg;
}

json_t *
cmd_log_json(const struct store_message_row *row, bool detail)
{
	json_t *obj, *rcpts, *r;
	const struct store_recipient_row *rc;
	size_t i;
	int err = 0;

	obj = json_object();
	rcpts = json_array();
	if (obj == NULL || rcpts == NULL) {
		json_decref(obj);
		json_decref(rcpts);
		return NULL;
	}
	cli_json_set(obj, "id", json_integer(row->id), &err);
	cli_json_set(obj, "received_at", cli_json_time(row->received_at), &err);
	cli_json_set(obj, "from", cli_json_str(row->mail_from), &err);
	cli_json_set(obj, "subject", cli_json_str(row->subject), &err);
	cli_json_set(obj, "message_id", cli_json_str(row->message_id), &err);
	cli_json_set(obj, "mailgun_id", cli_json_str(row->mailgun_id), &err);
	cli_json_set(obj, "size", json_integer(row->size), &err);
	cli_json_set(obj, "status", cli_json_str(row->status), &err);
	cli_json_set(obj, "attempts", json_integer(row->attempts), &err);
	for (i = 0; i < row->nrcpts; i++) {
		rc = &row->rcpts[i];
		r = json_object();
		if (r == NULL) {
			err = -ENOMEM;
			break;
		}
		cli_json_set(r, "address", cli_json_str(rc->address), &err);
		cli_json_set(r, "status", cli_json_str(rc->status), &err);
		cli_json_set(r, "attempts", json_integer(rc->attempts), &err);
		cli_json_set(r, "reason",
		    strcmp(rc->status, "failed") == 0 ? cli_json_str(rc->reason)
						      : json_null(),
		    &err);
		cli_json_set(r, "next_attempt_at",
		    strcmp(rc->status, "retrying") == 0 &&
			    rc->next_attempt_at != 0
			? cli_json_time(rc->next_attempt_at)
			: json_null(),
		    &err);
		if (detail) {
			cli_json_set(r, "last_error",
			    cli_json_str(rc->last_error), &err);
			cli_json_set(r, "mailgun_id",
			    cli_json_str(rc->mailgun_id), &err);
		}
		cli_json_append(rcpts, r, &err);
	}
	cli_json_set(obj, "recipients", rcpts, &err);
	if (err != 0) {
		json_decref(obj);
		return NULL;
	}
	return obj;
}

static void
cmd_log_header(void)
{
	cli_put(stdout, "ID", CMD_LOG_W_ID, true);
	fputc(' ', stdout);
	cli_put(stdout, "RECEIVED", CMD_LOG_W_RECEIVED, true);
	fputc(' ', stdout);
	cli_put(stdout, "STATUS", CMD_LOG_W_STATUS, true);
	fputc(' ', stdout);
	cli_put(stdout, "FROM", CMD_LOG_W_FROM, true);
	fputc(' ', stdout);
	cli_put(stdout, "SUBJECT", CMD_LOG_W_SUBJECT, true);
	fputc(' ', stdout);
	cli_put(stdout, "RCPTS", CMD_LOG_W_RCPTS, false);
	fputc('\n', stdout);
}

/*
 * Writes one recipient that is not delivered: its address, state, and
 * what a person wants to know next (reason, next attempt, last error), cut
 * to the table's width.
 */
static void
cmd_log_rcpt_line(const struct store_recipient_row *rc)
{
	char when[64];
	size_t col = CMD_LOG_INDENT;

	fprintf(stdout, "%*s", CMD_LOG_INDENT, "");
	col += cli_put(stdout, rc->address, CLI_TABLE_WIDTH - col, false);
	col += cli_put(stdout, " ", CLI_TABLE_WIDTH - col, false);
	col += cli_put(stdout, rc->status, CLI_TABLE_WIDTH - col, false);
	if (rc->reason != NULL) {
		col += cli_put(stdout, " (", CLI_TABLE_WIDTH - col, false);
		col +=
		    cli_put(stdout, rc->reason, CLI_TABLE_WIDTH - col, false);
		col += cli_put(stdout, ")", CLI_TABLE_WIDTH - col, false);
	}
	if (rc->next_attempt_at != 0 &&
	    (strcmp(rc->status, "retrying") == 0 ||
		strcmp(rc->status, "queued") == 0)) {
		col += cli_put(stdout, ", next ", CLI_TABLE_WIDTH - col, false);
		col += cli_put(stdout,
		    cli_time(rc->next_attempt_at, when, sizeof(when)),
		    CLI_TABLE_WIDTH - col, false);
	}
	if (rc->last_error != NULL && rc->last_error[0] != '\0') {
		col += cli_put(stdout, ": ", CLI_TABLE_WIDTH - col, false);
		cli_put(stdout, rc->last_error, CLI_TABLE_WIDTH - col, false);
	}
	fputc('\n', stdout);
}

/* Writes one message of the table and its undelivered recipients. */
static void
cmd_log_table_row(const struct store_message_row *row)
{
	char buf[64];
	size_t i;

	snprintf(buf, sizeof(buf), "%lld", (long long)row->id);
	cli_put(stdout, buf, CMD_LOG_W_ID, true);
	fputc(' ', stdout);
	cli_put(stdout, cli_time(row->received_at, buf, sizeof(buf)),
	    CMD_LOG_W_RECEIVED, true);
	fputc(' ', stdout);
	cli_put(stdout, row->status, CMD_LOG_W_STATUS, true);
	fputc(' ', stdout);
	cli_put(stdout, row->mail_from[0] != '\0' ? row->mail_from : "<>",
	    CMD_LOG_W_FROM, true);
	fputc(' ', stdout);
	cli_put(stdout, row->subject, CMD_LOG_W_SUBJECT, true);
	fputc(' ', stdout);
	if (row->nrcpts == 1) {
		cli_put(stdout, row->rcpts[0].address, CMD_LOG_W_RCPTS, false);
	} else {
		snprintf(buf, sizeof(buf), "%zu", row->nrcpts);
		cli_put(stdout, buf, CMD_LOG_W_RCPTS, false);
	}
	fputc('\n', stdout);
	for (i = 0; i < row->nrcpts; i++)
		if (strcmp(row->rcpts[i].status, "delivered") != 0)
			cmd_log_rcpt_line(&row->rcpts[i]);
}

/* store_db_log() callback: prints one message; stops on a write error. */
static int
cmd_log_row_cb(const struct store_message_row *row, void *arg)
{
	struct cmd_log_ctx *ctx = arg;
	json_t *obj;
	int ret;

	ctx->rows++;
	if (ctx->json) {
		obj = cmd_log_json(row, false);
		if (obj == NULL)
			return -ENOMEM;
		ret = cli_json_print(obj);
		json_decref(obj);
		return ret;
	}
	if (!ctx->header_done) {
		cmd_log_header();
		ctx->header_done = true;
	}
	cmd_log_table_row(row);
	return ferror(stdout) ? -EIO : 0;
}

int
cmd_log_run(const struct cli *cli, int argc, char **argv)
{
	enum {
		OPT_STATUS = 256,
		OPT_TO,
		OPT_FROM,
		OPT_SINCE,
		OPT_LIMIT,
		OPT_JSON
	};
	static const struct option opts[] = {
		{ "status", required_argument, NULL, OPT_STATUS },
		{ "to", required_argument, NULL, OPT_TO },
		{ "from", required_argument, NULL, OPT_FROM },
		{ "since", required_argument, NULL, OPT_SINCE },
		{ "limit", required_argument, NULL, OPT_LIMIT },
		{ "json", no_argument, NULL, OPT_JSON },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *statuses[CMD_LOG_NSTATES];
	struct store_log_filter f;
	struct cmd_log_ctx ctx;
	struct store_db *db = NULL;
	unsigned mask = 0;
	size_t i;
	int c, ret, code = CLI_EXIT_OK;

	memset(&f, 0, sizeof(f));
	memset(&ctx, 0, sizeof(ctx));
	f.limit = CMD_LOG_DEFAULT_LIMIT;
	optind = 0;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
		switch (c) {
		case OPT_STATUS:
			if (cmd_log_parse_status(optarg, &mask) != 0)
				return CLI_EXIT_USAGE;
			break;
		case OPT_TO:
			f.to = cmd_log_parse_addr("--to", optarg, false);
			if (f.to == NULL)
				return CLI_EXIT_USAGE;
			break;
		case OPT_FROM:
			f.from = cmd_log_parse_addr("--from", optarg, true);
			if (f.from == NULL)
				return CLI_EXIT_USAGE;
			break;
		case OPT_SINCE:
			if (time_parse_when(optarg, time_now_ms(), &f.since) !=
			    0)
				return cli_usage_error("log",
				    "bad WHEN '%s' for --since: a duration "
				    "(15m, 24h, 7d) or an RFC 3339 time",
				    optarg);
			break;
		case OPT_LIMIT:
			if (cmd_log_parse_limit(optarg, &f.limit) != 0)
				return cli_usage_error("log",
				    "bad --limit '%s': a positive integer",
				    optarg);
			break;
		case OPT_JSON:
			ctx.json = true;
			break;
		case 'h':
			cmd_log_usage(stdout);
			return cli_finish(CLI_EXIT_OK);
		default:
			return cli_getopt_error("log", c, argv);
		}
	}
	if (optind < argc)
		return cli_usage_error(
		    "log", "unexpected argument '%s'", argv[optind]);
	for (i = 0; i < CMD_LOG_NSTATES; i++)
		if ((mask & (1U << i)) != 0)
			statuses[f.nstatuses++] = cmd_log_states[i];
	f.statuses = f.nstatuses != 0 ? statuses : NULL;

	code = cli_open_store(cli, true, &db);
	if (code != CLI_EXIT_OK)
		return code;
	ret = store_db_log(db, &f, cmd_log_row_cb, &ctx);
	if (ret == -EIO && ferror(stdout)) {
		code = cli_finish(CLI_EXIT_FAIL);
	} else if (ret != 0) {
		cli_error("cannot read the log: %s",
		    ret == -ENOMEM ? strerror(ENOMEM) : store_db_errmsg(db));
		code = CLI_EXIT_FAIL;
	} else if (ctx.rows == 0 && !ctx.json) {
		fputs("No messages.\n", stdout);
	}
	store_db_close(db);
	return cli_finish(code);
}
