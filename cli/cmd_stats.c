/*
 * cmd_stats: `redrive stats [--since WHEN] [--json]`, a summary of the
 * messages received since WHEN (default 24h back): their number, the
 * recipients in each state, the delivery rate, the re-drive success rate,
 * the top failure reasons and the top recipient domains, all from one
 * snapshot of the store (store_db_stats_read).  --json prints one object
 * with exactly the fields docs/cli.md lists; the human form is a short
 * report.  Exit codes: 0 ok, 1 store failure, 2 usage.
 */
#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "redrive/store.h"
#include "redrive/timeutil.h"

#include "cli.h"

/* The default window: the last day. */
#define CMD_STATS_DEFAULT_SINCE_MS (24LL * 60 * 60 * 1000)

/* Indexes of store_state_names[] (queued sent deferred retrying ...). */
#define CMD_STATS_DELIVERED 4
#define CMD_STATS_FAILED 5

static void
cmd_stats_usage(FILE *fp)
{
	fputs("usage: redrive stats [--since WHEN] [--json]\n"
	      "\n"
	      "Summarises the messages received since WHEN: recipients per "
	      "state, the\n"
	      "delivery rate (delivered / (delivered + failed)), the re-drive "
	      "success\n"
	      "rate, the top failure reasons and recipient domains.\n"
	      "\n"
	      "  --since WHEN  a duration back from now (15m, 24h, 7d) or an "
	      "RFC 3339\n"
	      "                time; default 24h\n"
	      "  --json        one JSON object\n"
	      "  -h, --help    print this help\n",
	    fp);
}

/* num / den as a JSON real, or null when den is 0. */
static json_t *
cmd_stats_rate(int64_t num, int64_t den)
{
	return den > 0 ? json_real((double)num / (double)den) : json_null();
}

/* A top list as [{name, count}, ...]; NULL when out of memory. */
static json_t *
cmd_stats_top(const struct store_stats_item *items, size_t n)
{
	json_t *arr, *o;
	size_t i;
	int err = 0;

	arr = json_array();
	if (arr == NULL)
		return NULL;
	for (i = 0; i < n && err == 0; i++) {
		o = json_object();
		if (o == NULL) {
			err = -ENOMEM;
			break;
		}
		cli_json_set(o, "name", cli_json_str(items[i].name), &err);
		cli_json_set(o, "count", json_integer(items[i].count), &err);
		cli_json_append(arr, o, &err);
	}
	if (err != 0) {
		json_decref(arr);
		return NULL;
	}
	return arr;
}

/* Prints the --json object.  0 or a negative errno code. */
static int
cmd_stats_json(const struct store_db_stats *s, int64_t since)
{
	json_t *obj, *rc;
	size_t i;
	int err = 0;

	obj = json_object();
	rc = json_object();
	if (obj == NULL || rc == NULL) {
		json_decref(obj);
		json_decref(rc);
		return -ENOMEM;
	}
	for (i = 0; i < STORE_NSTATES; i++)
		cli_json_set(rc, store_state_names[i],
		    json_integer(s->recipients[i]), &err);
	cli_json_set(obj, "since", cli_json_time(since), &err);
	cli_json_set(obj, "messages", json_integer(s->messages), &err);
	cli_json_set(obj, "recipients", rc, &err);
	cli_json_set(obj, "delivery_rate",
	    cmd_stats_rate(s->recipients[CMD_STATS_DELIVERED],
		s->recipients[CMD_STATS_DELIVERED] +
		    s->recipients[CMD_STATS_FAILED]),
	    &err);
	cli_json_set(obj, "redrive_success_rate",
	    cmd_stats_rate(s->redriven_delivered, s->redriven_final), &err);
	cli_json_set(
	    obj, "top_reasons", cmd_stats_top(s->reasons, s->nreasons), &err);
	cli_json_set(
	    obj, "top_domains", cmd_stats_top(s->domains, s->ndomains), &err);
	/* Rates with 6 significant digits: 0.6, not 0.59999999999999998. */
	if (err == 0 &&
	    (json_dumpf(obj, stdout, JSON_COMPACT | JSON_REAL_PRECISION(6)) !=
		    0 ||
		fputc('\n', stdout) == EOF))
		err = -EIO;
	json_decref(obj);
	return err;
}

/* "87.5% (7 of 8)" or "- (none)". */
static void
cmd_stats_put_rate(const char *label, int64_t num, int64_t den)
{
	if (den > 0)
		fprintf(stdout, "%-22s %.1f%% (%lld of %lld)\n", label,
		    100.0 * (double)num / (double)den, (long long)num,
		    (long long)den);
	else
		fprintf(stdout, "%-22s - (none)\n", label);
}

static void
cmd_stats_put_top(
    const char *title, const struct store_stats_item *items, size_t n)
{
	size_t i;

	fprintf(stdout, "%s:%s\n", title, n == 0 ? " none" : "");
	for (i = 0; i < n; i++) {
		fprintf(stdout, "  %8lld  ", (long long)items[i].count);
		cli_put(stdout, items[i].name, 60, false);
		fputc('\n', stdout);
	}
}

/* The report for people. */
static void
cmd_stats_human(const struct store_db_stats *s, int64_t since)
{
	char when[64];
	int64_t total = 0;
	size_t i;

	for (i = 0; i < STORE_NSTATES; i++)
		total += s->recipients[i];
	fprintf(stdout, "Since %s\n", cli_time(since, when, sizeof(when)));
	fprintf(stdout, "%-22s %lld\n", "Messages:", (long long)s->messages);
	fprintf(stdout, "%-22s %lld\n", "Recipients:", (long long)total);
	for (i = 0; i < STORE_NSTATES; i++)
		fprintf(stdout, "  %-20s %lld\n", store_state_names[i],
		    (long long)s->recipients[i]);
	cmd_stats_put_rate("Delivery rate:", s->recipients[CMD_STATS_DELIVERED],
	    s->recipients[CMD_STATS_DELIVERED] +
		s->recipients[CMD_STATS_FAILED]);
	cmd_stats_put_rate(
	    "Re-drive success rate:", s->redriven_delivered, s->redriven_final);
	cmd_stats_put_top("Top failure reasons", s->reasons, s->nreasons);
	cmd_stats_put_top("Top recipient domains", s->domains, s->ndomains);
}

int
cmd_stats_run(const struct cli *cli, int argc, char **argv)
{
	enum { OPT_SINCE = 256, OPT_JSON };
	static const struct option opts[] = {
		{ "since", required_argument, NULL, OPT_SINCE },
		{ "json", no_argument, NULL, OPT_JSON },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct store_db_stats s;
	struct store_db *db = NULL;
	int64_t now = time_now_ms(), since;
	bool json = false;
	int c, ret, code;

	since = now - CMD_STATS_DEFAULT_SINCE_MS;
	optind = 0;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
		switch (c) {
		case OPT_SINCE:
			if (time_parse_when(optarg, now, &since) != 0)
				return cli_usage_error("stats",
				    "bad WHEN '%s' for --since: a duration "
				    "(15m, 24h, 7d) or an RFC 3339 time",
				    optarg);
			break;
		case OPT_JSON:
			json = true;
			break;
		case 'h':
			cmd_stats_usage(stdout);
			return cli_finish(CLI_EXIT_OK);
		default:
			return cli_getopt_error("stats", c, argv);
		}
	}
	if (optind < argc)
		return cli_usage_error(
		    "stats", "unexpected argument '%s'", argv[optind]);

	code = cli_open_store(cli, true, &db);
	if (code != CLI_EXIT_OK)
		return code;
	ret = store_db_stats_read(db, since, &s);
	if (ret != 0) {
		cli_error("cannot read the store: %s",
		    ret == -ENOMEM ? strerror(ENOMEM) : store_db_errmsg(db));
		store_db_close(db);
		return CLI_EXIT_FAIL;
	}
	if (json) {
		ret = cmd_stats_json(&s, since);
		if (ret == -ENOMEM) {
			cli_error("%s", strerror(ENOMEM));
			code = CLI_EXIT_FAIL;
		}
	} else
		cmd_stats_human(&s, since);
	store_db_stats_clear(&s);
	store_db_close(db);
	return cli_finish(code);
}
