/*
 * cmd_retry: `redrive retry ID [--recipient ADDR]`, the CLI's one write.
 * It makes the message's recipients (or the one named) due now through
 * store_db_retry(): a 'retrying' recipient is re-driven at once, a
 * 'failed' one is re-driven again because a person asked for it, a
 * 'queued' one is sent at once.  The running daemon picks the change up
 * from the store without a restart (its re-drive timer looks every few
 * seconds, its forwarder at least every 30 s).  Recipients that are
 * 'sent', 'deferred' (Mailgun owns them) or 'delivered' are left alone.
 *
 * Exit codes: 0 when at least one recipient was made due, 1 when none was
 * (or the ID or the recipient is unknown, or the store failed), 2 usage.
 */
#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "redrive/store.h"
#include "redrive/store_events.h"
#include "redrive/timeutil.h"

#include "cli.h"

static void
cmd_retry_usage(FILE *fp)
{
	fputs("usage: redrive retry ID [--recipient ADDR]\n"
	      "\n"
	      "Makes the recipients of a message due now: a retrying or "
	      "failed recipient\n"
	      "is re-driven (from Mailgun's stored copy while it lasts, else "
	      "from the\n"
	      "spooled copy), a queued one is sent.  Sent, deferred and "
	      "delivered\n"
	      "recipients are left alone.  The running daemon picks the "
	      "change up; it\n"
	      "need not be restarted.  ID is the local id, a Mailgun id or "
	      "the Message-ID.\n"
	      "\n"
	      "  --recipient ADDR  only this recipient (ASCII case ignored)\n"
	      "  -h, --help        print this help\n"
	      "\n"
	      "Exit status: 0 something was made due, 1 nothing was (or no "
	      "such message\n"
	      "or recipient), 2 usage error.\n",
	    fp);
}

/* A recipient left alone, kept to say why when nothing was retried. */
struct cmd_retry_left {
	char *address;
	char *was;
};

/* What store_db_retry reported. */
struct cmd_retry_ctx {
	int64_t id;
	unsigned changed;
	struct cmd_retry_left *left;
	size_t nleft;
	size_t capleft;
	bool nomem;
};

/*
 * Called by store_db_retry after its commit for each recipient: prints
 * "message ID: ADDR due now (was STATUS)" for a changed one and keeps the
 * others for the "nothing to retry" lines.
 */
static void
cmd_retry_cb(const char *address, const char *was, bool changed, void *arg)
{
	struct cmd_retry_ctx *ctx = arg;
	struct cmd_retry_left *grown, *l;
	size_t cap;

	if (changed) {
		ctx->changed++;
		fprintf(stdout, "message %lld: ", (long long)ctx->id);
		cli_put(stdout, address, SIZE_MAX, false);
		fputs(" due now (was ", stdout);
		cli_put(stdout, was, SIZE_MAX, false);
		fputs(")\n", stdout);
		return;
	}
	if (ctx->nomem)
		return;
	if (ctx->nleft == ctx->capleft) {
		cap = ctx->capleft != 0 ? ctx->capleft * 2 : 8;
		grown = reallocarray(ctx->left, cap, sizeof(*grown));
		if (grown == NULL) {
			ctx->nomem = true;
			return;
		}
		ctx->left = grown;
		ctx->capleft = cap;
	}
	l = &ctx->left[ctx->nleft];
	l->address = strdup(address);
	l->was = strdup(was);
	if (l->address == NULL || l->was == NULL) {
		free(l->address);
		free(l->was);
		ctx->nomem = true;
		return;
	}
	ctx->nleft++;
}

static void
cmd_retry_ctx_clear(struct cmd_retry_ctx *ctx)
{
	size_t i;

	for (i = 0; i < ctx->nleft; i++) {
		free(ctx->left[i].address);
		free(ctx->left[i].was);
	}
	free(ctx->left);
	memset(ctx, 0, sizeof(*ctx));
}

/* Says, for each recipient left alone, why there was nothing to retry. */
static void
cmd_retry_nothing(const struct cmd_retry_ctx *ctx)
{
	size_t i;

	if (ctx->nomem || ctx->nleft == 0) {
		cli_error(
		    "nothing to retry in message %lld", (long long)ctx->id);
		return;
	}
	for (i = 0; i < ctx->nleft; i++) {
		fputs("redrive: nothing to retry: ", stderr);
		cli_put(stderr, ctx->left[i].address, SIZE_MAX, false);
		fputs(" is ", stderr);
		cli_put(stderr, ctx->left[i].was, SIZE_MAX, false);
		fputc('\n', stderr);
	}
}

/* Resolves the ID and makes its recipients due. */
static int
cmd_retry_one(struct store_db *db, const char *text, const char *rcpt)
{
	struct cmd_retry_ctx ctx;
	int64_t id = 0;
	int ret, code = CLI_EXIT_OK;

	memset(&ctx, 0, sizeof(ctx));
	ret = store_db_resolve(db, text, &id);
	if (ret == -ENOENT || ret == -EINVAL) {
		cli_error("no message matches '%s'", text);
		return CLI_EXIT_FAIL;
	}
	if (ret != 0) {
		cli_error("cannot look up '%s': %s", text, store_db_errmsg(db));
		return CLI_EXIT_FAIL;
	}
	ctx.id = id;
	ret = store_db_retry(db, id, rcpt, time_now_ms(), cmd_retry_cb, &ctx);
	if (ret == -ENOENT) {
		if (rcpt != NULL) {
			fprintf(stderr,
			    "redrive: message %lld has no recipient ",
			    (long long)id);
			cli_put(stderr, rcpt, SIZE_MAX, false);
			fputc('\n', stderr);
		} else
			cli_error(
			    "message %lld has no recipients", (long long)id);
		code = CLI_EXIT_FAIL;
	} else if (ret < 0) {
		cli_error("cannot retry message %lld: %s", (long long)id,
		    ret == -ENOMEM ? strerror(ENOMEM) : store_db_errmsg(db));
		code = CLI_EXIT_FAIL;
	} else if (ret == 0) {
		cmd_retry_nothing(&ctx);
		code = CLI_EXIT_FAIL;
	}
	cmd_retry_ctx_clear(&ctx);
	return cli_finish(code);
}

int
cmd_retry_run(const struct cli *cli, int argc, char **argv)
{
	enum { OPT_RECIPIENT = 256 };
	static const struct option opts[] = {
		{ "recipient", required_argument, NULL, OPT_RECIPIENT },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct store_db *db = NULL;
	const char *rcpt = NULL;
	int c, code;

	optind = 0;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
		switch (c) {
		case OPT_RECIPIENT:
			if (optarg[0] == '\0')
				return cli_usage_error(
				    "retry", "--recipient needs an address");
			rcpt = optarg;
			break;
		case 'h':
			cmd_retry_usage(stdout);
			return cli_finish(CLI_EXIT_OK);
		default:
			return cli_getopt_error("retry", c, argv);
		}
	}
	if (optind >= argc)
		return cli_usage_error("retry", "missing ID");
	if (optind + 1 < argc)
		return cli_usage_error(
		    "retry", "unexpected argument '%s'", argv[optind + 1]);

	code = cli_open_store(cli, false, &db);
	if (code != CLI_EXIT_OK)
		return code;
	code = cmd_retry_one(db, argv[optind], rcpt);
	store_db_close(db);
	return code;
}
