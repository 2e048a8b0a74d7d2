/*
 * cli: what the files of the `redrive` command share and nobody else sees:
 * the global options, the exit codes of DESIGN.md, opening the store,
 * escaping peer-supplied text for a terminal, and building JSON that is
 * valid whatever bytes the store holds.  Single-threaded.
 */
#ifndef REDRIVE_CLI_H
#define REDRIVE_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <jansson.h>

#include "redrive/store.h"

#ifndef REDRIVE_VERSION
#define REDRIVE_VERSION "0.1.0"
#endif

/* The exit codes promised in DESIGN.md ("The CLI"). */
enum cli_exit {
	CLI_EXIT_OK = 0, /* done (a log with no rows included) */
	CLI_EXIT_FAIL = 1, /* not found, or the store failed */
	CLI_EXIT_USAGE = 2, /* an unknown command, option, status or WHEN */
};

/* The table of `redrive log` never gets wider than this. */
#define CLI_TABLE_WIDTH 100

/* The global options, parsed by main before the command. */
struct cli {
	const char *config_path; /* -c FILE; NULL: $REDRIVE_CONFIG or default */
	const char *db_path; /* --db FILE: the store, config not read */
};

/* A command: argv[0] is its name; returns an exit code. */
int cmd_log_run(const struct cli *cli, int argc, char **argv);
int cmd_show_run(const struct cli *cli, int argc, char **argv);
int cmd_retry_run(const struct cli *cli, int argc, char **argv);
int cmd_stats_run(const struct cli *cli, int argc, char **argv);
int cmd_tail_run(const struct cli *cli, int argc, char **argv);
int cmd_purge_run(const struct cli *cli, int argc, char **argv);
int cmd_passwd_run(const struct cli *cli, int argc, char **argv);

/*
 * Builds the `log --json` object of row (DESIGN.md's fields).  detail adds
 * what `show --json` shows of each recipient beyond that (last_error,
 * mailgun_id).  Returns a new reference or NULL (out of memory).
 */
json_t *cmd_log_json(const struct store_message_row *row, bool detail);

/* Prints "redrive: " and the message to stderr. */
void cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/*
 * Reports a usage error of command cmd (NULL: the global options) on
 * stderr with a pointer to its --help.  Returns CLI_EXIT_USAGE.
 */
int cli_usage_error(const char *cmd, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/*
 * Reports what getopt_long() (with a leading ':' in its optstring and
 * opterr off) returned as an error: c is '?' or ':'.  Returns
 * CLI_EXIT_USAGE.
 */
int cli_getopt_error(const char *cmd, int c, char **argv);

/*
 * Opens the store named by --db, else by [store] path of the config (-c,
 * else $REDRIVE_CONFIG, else the default path; a default config file that
 * does not exist means the built-in defaults).  Prints the reason and
 * returns CLI_EXIT_FAIL on failure; CLI_EXIT_OK and *out otherwise.
 */
int cli_open_store(const struct cli *cli, bool readonly, struct store_db **out);

/*
 * Writes s to fp for a terminal: control bytes, invalid UTF-8, C1 and
 * bidirectional controls escaped (\n, \t, \\, \xNN, \uNNNN), at most width
 * columns (truncated ones end in "..."), padded with spaces to width when
 * pad.  NULL prints nothing.  Returns the columns written.
 */
size_t cli_put(FILE *fp, const char *s, size_t width, bool pad);

/* Formats ms as RFC 3339 UTC without fraction into buf (>= 32 bytes). */
const char *cli_time(int64_t ms, char *buf, size_t buflen);

/*
 * A JSON string of s with every byte that is not part of well-formed UTF-8
 * replaced by U+FFFD; json_null() for NULL.  NULL only when out of memory.
 */
json_t *cli_json_str(const char *s);

/* A JSON string of ms as cli_time() formats it. */
json_t *cli_json_time(int64_t ms);

/*
 * Sets obj[key] to v, stealing v; a NULL v (a failed constructor) or a
 * failed set records -ENOMEM in *err.  So that a builder checks once.
 */
void cli_json_set(json_t *obj, const char *key, json_t *v, int *err);

/* Appends v to arr, stealing v, the same way. */
void cli_json_append(json_t *arr, json_t *v, int *err);

/*
 * Prints obj as one line of JSON Lines on stdout (compact, UTF-8 as is).
 * Returns 0 or -EIO.
 */
int cli_json_print(const json_t *obj);

/*
 * Flushes stdout; on a write error prints it and returns CLI_EXIT_FAIL,
 * else returns code.
 */
int cli_finish(int code);

#endif
