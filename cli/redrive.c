/*
 * redrive: the main of the `redrive` command.  Parses the global options
 * (-c/--config, --db, --help, --version) up to the command name, then hands
 * the rest of the command line to the command, whose argv[0] is its own
 * name.  Exit codes are DESIGN.md's: 0 ok, 1 not found or failed, 2 usage.
 */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"

struct redrive_cmd {
	const char *name;
	int (*run)(const struct cli *cli, int argc, char **argv);
};

static const struct redrive_cmd redrive_cmds[] = {
	{ "log", cmd_log_run },
	{ "show", cmd_show_run },
	{ "retry", cmd_retry_run },
	{ "stats", cmd_stats_run },
	{ "tail", cmd_tail_run },
	{ "purge", cmd_purge_run },
	{ "passwd", cmd_passwd_run },
};

static void
redrive_usage(FILE *fp)
{
	fputs("usage: redrive [-c FILE | --db FILE] COMMAND [OPTIONS]\n"
	      "       redrive --help | --version\n"
	      "\n"
	      "Reads redrive's mail log from its store; the daemon need not "
	      "run, except\n"
	      "for retry, whose change the daemon carries out.  retry and "
	      "purge write.\n"
	      "\n"
	      "Commands:\n"
	      "  log [--status S[,S...]] [--to ADDR] [--from ADDR] "
	      "[--since WHEN]\n"
	      "      [--limit N] [--json]\n"
	      "                     messages, newest first, one row per "
	      "message\n"
	      "  show ID [--json | --raw]\n"
	      "                     one message: recipients, sends, events; "
	      "--raw prints\n"
	      "                     the stored message bytes\n"
	      "  retry ID [--recipient ADDR]\n"
	      "                     re-drive now: makes the message's "
	      "retrying, failed or\n"
	      "                     queued recipients due for the running "
	      "daemon\n"
	      "  stats [--since WHEN] [--json]\n"
	      "                     recipients per state, delivery and "
	      "re-drive rates, top\n"
	      "                     failure reasons and domains (default "
	      "since 24h)\n"
	      "  tail [--since WHEN] [--json]\n"
	      "                     follows new events as they are "
	      "committed, until ^C\n"
	      "  purge --older-than WHEN\n"
	      "                     deletes finished messages received "
	      "before WHEN\n"
	      "  passwd USER        reads a password on stdin, prints "
	      "USER:HASH for the\n"
	      "                     relay's auth_users file\n"
	      "\n"
	      "Options:\n"
	      "  -c, --config FILE  the configuration naming the store "
	      "([store] path);\n"
	      "                     default $REDRIVE_CONFIG, else "
	      "/etc/redrive/redrive.conf\n"
	      "  --db FILE          the store itself (the configuration is "
	      "not read)\n"
	      "  -h, --help         print this help\n"
	      "  --version          print the version\n"
	      "\n"
	      "ID is the local id, a Mailgun id or the Message-ID. WHEN is a "
	      "duration back\n"
	      "from now (15m, 24h, 7d) or an RFC 3339 time.  'redrive COMMAND "
	      "--help' tells\n"
	      "more.  Exit status: 0 ok, 1 not found or failed, 2 usage "
	      "error.\n"
	      "See redrive(1) and redrive.conf(5).\n",
	    fp);
}

int
main(int argc, char **argv)
{
	enum { OPT_DB = 256, OPT_VERSION };
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "db", required_argument, NULL, OPT_DB },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, OPT_VERSION },
		{ NULL, 0, NULL, 0 },
	};
	struct cli cli;
	size_t i;
	int c;

	memset(&cli, 0, sizeof(cli));
	opterr = 0;
	/* '+': stop at the command name; its options are its own. */
	while ((c = getopt_long(argc, argv, "+:c:h", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			cli.config_path = optarg;
			break;
		case OPT_DB:
			cli.db_path = optarg;
			break;
		case 'h':
			redrive_usage(stdout);
			return cli_finish(CLI_EXIT_OK);
		case OPT_VERSION:
			fputs("redrive " REDRIVE_VERSION "\n", stdout);
			return cli_finish(CLI_EXIT_OK);
		default:
			return cli_getopt_error(NULL, c, argv);
		}
	}
	if (optind >= argc) {
		redrive_usage(stderr);
		return CLI_EXIT_USAGE;
	}
	for (i = 0; i < sizeof(redrive_cmds) / sizeof(redrive_cmds[0]); i++)
		if (strcmp(argv[optind], redrive_cmds[i].name) == 0)
			return redrive_cmds[i].run(
			    &cli, argc - optind, argv + optind);
	return cli_usage_error(NULL, "unknown command '%s'", argv[optind]);
}
