/*
 * cmd_purge: `redrive purge --older-than WHEN`, a write like `retry`.  It
 * deletes the finished messages (every recipient delivered or failed)
 * received before WHEN, with their bodies, recipients, sends and events,
 * in transactions of STORE_PURGE_BATCH messages so that a running daemon
 * never waits long for the store; a message that is not final is never
 * touched.  Webhook tokens recorded before WHEN go too, but never those
 * of the last CMD_PURGE_TOKEN_KEEP_MS (twice the default [tracker]
 * timestamp_window: a signature is fresh while its timestamp is within a
 * window either side of now, so a webhook may come back fresh until two
 * windows after it arrived, and its token must refuse it until then).  Prints
 * how many messages were removed.  Exit codes: 0 done (nothing to remove
 * included), 1 store failure, 2 usage.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "redrive/store.h"
#include "redrive/timeutil.h"

#include "cli.h"

/* Tokens younger than this are kept whatever WHEN says. */
#define CMD_PURGE_TOKEN_KEEP_MS (2 * 24LL * 60 * 60 * 1000)

static void
cmd_purge_usage(FILE *fp)
{
	fputs("usage: redrive purge --older-than WHEN\n"
	      "\n"
	      "Deletes the finished messages (every recipient delivered or "
	      "failed)\n"
	      "received before WHEN, with their bodies, recipients, sends and "
	      "events, and\n"
	      "the webhook tokens recorded before WHEN (never those of the "
	      "last 24 hours).\n"
	      "Messages that are not final are kept.  The daemon does the "
	      "same on its\n"
	      "own with [store] retention.\n"
	      "\n"
	      "  --older-than WHEN  a duration back from now (15m, 24h, 7d) "
	      "or an RFC 3339\n"
	      "                     time\n"
	      "  -h, --help         print this help\n",
	    fp);
}

int
cmd_purge_run(const struct cli *cli, int argc, char **argv)
{
	enum { OPT_OLDER = 256 };
	static const struct option opts[] = {
		{ "older-than", required_argument, NULL, OPT_OLDER },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct store_db *db = NULL;
	int64_t now = time_now_ms(), before = 0, tokens_before;
	bool have_before = false;
	uint64_t messages = 0, tokens = 0;
	int c, ret, code;

	optind = 0;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
		switch (c) {
		case OPT_OLDER:
			if (time_parse_when(optarg, now, &before) != 0)
				return cli_usage_error("purge",
				    "bad WHEN '%s' for --older-than: a "
				    "duration (15m, 24h, 7d) or an RFC 3339 "
				    "time",
				    optarg);
			have_before = true;
			break;
		case 'h':
			cmd_purge_usage(stdout);
			return cli_finish(CLI_EXIT_OK);
		default:
			return cli_getopt_error("purge", c, argv);
		}
	}
	if (optind < argc)
		return cli_usage_error(
		    "purge", "unexpected argument '%s'", argv[optind]);
	if (!have_before)
		return cli_usage_error("purge", "missing --older-than WHEN");
	tokens_before = now - CMD_PURGE_TOKEN_KEEP_MS;
	if (before < tokens_before)
		tokens_before = before;

	code = cli_open_store(cli, false, &db);
	if (code != CLI_EXIT_OK)
		return code;
	ret = store_db_purge(db, before, tokens_before, &messages, &tokens);
	if (ret != 0) {
		cli_error("cannot purge the store (%" PRIu64
			  " messages removed before the failure): %s",
		    messages,
		    ret == -ENOMEM ? strerror(ENOMEM) : store_db_errmsg(db));
		code = CLI_EXIT_FAIL;
	} else {
		fprintf(stdout,
		    "purged %" PRIu64 " finished message%s and %" PRIu64
		    " webhook token%s\n",
		    messages, messages == 1 ? "" : "s", tokens,
		    tokens == 1 ? "" : "s");
	}
	store_db_close(db);
	return cli_finish(code);
}
