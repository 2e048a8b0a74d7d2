/*
 * cmd_show: `redrive show ID`, one message in full: its fields, each
 * recipient with its state, the sends made to Mailgun and the events
 * Mailgun reported, for a person or as one JSON object; or, with --raw,
 * the stored message bytes exactly as the relay stored them (what Mailgun
 * received).  ID is resolved by store_db_resolve(): the local id, a
 * Mailgun id or the Message-ID.
 */
#include <errno.h>
#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "redrive/store.h"

#include "cli.h"

static void
cmd_show_usage(FILE *fp)
{
	fputs("usage: redrive show ID [--json | --raw]\n"
	      "\n"
	      "Shows one message: its fields, its recipients, the sends to "
	      "Mailgun and the\n"
	      "events Mailgun reported.  ID is the local id (as in \"queued "
	      "as ID\"), a\n"
	      "Mailgun id, or the Message-ID (with or without angle "
	      "brackets).\n"
	      "\n"
	      "  --json      one JSON object\n"
	      "  --raw       the stored message bytes, exactly\n"
	      "  -h, --help  print this help\n",
	    fp);
}

/* Prints "  Label:       value" with the value escaped; NULL as "-". */
static void
cmd_show_field(const char *label, const char *value)
{
	fprintf(stdout, "%-12s ", label);
	cli_put(stdout, value != NULL ? value : "-", SIZE_MAX, false);
	fputc('\n', stdout);
}

/* Writes what a person wants to know of one recipient. */
static void
cmd_show_rcpt(const struct store_recipient_row *rc)
{
	char when[64];

	fputs("  ", stdout);
	cli_put(stdout, rc->address, SIZE_MAX, false);
	fputc('\n', stdout);
	fputs("    status ", stdout);
	cli_put(stdout, rc->status, SIZE_MAX, false);
	fprintf(stdout, ", attempts %d", rc->attempts);
	if (rc->reason != NULL) {
		fputs(", reason ", stdout);
		cli_put(stdout, rc->reason, SIZE_MAX, false);
	}
	fputc('\n', stdout);
	if (rc->last_error != NULL) {
		fputs("    last error: ", stdout);
		cli_put(stdout, rc->last_error, SIZE_MAX, false);
		fputc('\n', stdout);
	}
	if (rc->next_attempt_at != 0 &&
	    (strcmp(rc->status, "retrying") == 0 ||
		strcmp(rc->status, "queued") == 0))
		fprintf(stdout, "    next attempt: %s\n",
		    cli_time(rc->next_attempt_at, when, sizeof(when)));
	if (rc->mailgun_id != NULL) {
		fputs("    mailgun id: ", stdout);
		cli_put(stdout, rc->mailgun_id, SIZE_MAX, false);
		fputc('\n', stdout);
	}
}

static void
cmd_show_sends(const struct store_send_row *s, size_t n)
{
	char when[64];
	size_t i, j;

	fputs("\nSends:\n", stdout);
	if (n == 0)
		fputs("  none\n", stdout);
	for (i = 0; i < n; i++) {
		fprintf(
		    stdout, "  %s  ", cli_time(s[i].at, when, sizeof(when)));
		cli_put(stdout, s[i].via, SIZE_MAX, false);
		if (s[i].http_status != 0)
			fprintf(stdout, "  HTTP %d", s[i].http_status);
		if (s[i].mailgun_id != NULL) {
			fputs("  id ", stdout);
			cli_put(stdout, s[i].mailgun_id, SIZE_MAX, false);
		}
		fputc('\n', stdout);
		if (s[i].nrecipients > 0) {
			fputs("    to ", stdout);
			for (j = 0; j < s[i].nrecipients; j++) {
				if (j > 0)
					fputs(", ", stdout);
				cli_put(stdout, s[i].recipients[j], SIZE_MAX,
				    false);
			}
			fputc('\n', stdout);
		}
		if (s[i].result != NULL) {
			fputs("    result: ", stdout);
			cli_put(stdout, s[i].result, SIZE_MAX, false);
			fputc('\n', stdout);
		}
	}
}

static void
cmd_show_events(const struct store_event_row *e, size_t n)
{
	char when[64];
	size_t i;

	fputs("\nEvents:\n", stdout);
	if (n == 0)
		fputs("  none\n", stdout);
	for (i = 0; i < n; i++) {
		fprintf(
		    stdout, "  %s  ", cli_time(e[i].at, when, sizeof(when)));
		cli_put(stdout, e[i].event, SIZE_MAX, false);
		if (e[i].severity != NULL) {
			fputs(" (", stdout);
			cli_put(stdout, e[i].severity, SIZE_MAX, false);
			fputc(')', stdout);
		}
		if (e[i].recipient != NULL) {
			fputs("  ", stdout);
			cli_put(stdout, e[i].recipient, SIZE_MAX, false);
		}
		fputc('\n', stdout);
		if (e[i].reason != NULL || e[i].code != 0 ||
		    e[i].message != NULL) {
			fputs("   ", stdout);
			if (e[i].reason != NULL) {
				fputs(" reason ", stdout);
				cli_put(stdout, e[i].reason, SIZE_MAX, false);
			}
			if (e[i].code != 0)
				fprintf(stdout, " code %d", e[i].code);
			if (e[i].enhanced_code != NULL) {
				fputc(' ', stdout);
				cli_put(stdout, e[i].enhanced_code, SIZE_MAX,
				    false);
			}
			if (e[i].message != NULL) {
				fputs(": ", stdout);
				cli_put(stdout, e[i].message, SIZE_MAX, false);
			}
			fputc('\n', stdout);
		}
	}
}

static void
cmd_show_human(const struct store_message_row *m,
    const struct store_send_row *s, size_t nsends,
    const struct store_event_row *e, size_t nevents)
{
	char buf[64];
	size_t i;

	snprintf(buf, sizeof(buf), "%lld", (long long)m->id);
	cmd_show_field("ID:", buf);
	cmd_show_field("Received:", cli_time(m->received_at, buf, sizeof(buf)));
	cmd_show_field("From:", m->mail_from[0] != '\0' ? m->mail_from : "<>");
	cmd_show_field("Subject:", m->subject);
	cmd_show_field("Message-ID:", m->message_id);
	cmd_show_field("Mailgun id:", m->mailgun_id);
	snprintf(buf, sizeof(buf), "%lld bytes", (long long)m->size);
	cmd_show_field("Size:", buf);
	cmd_show_field("Status:", m->status);
	snprintf(buf, sizeof(buf), "%d", m->attempts);
	cmd_show_field("Attempts:", buf);
	cmd_show_field("HELO:", m->helo);
	cmd_show_field("Client:", m->client_addr);
	cmd_show_field("Auth user:", m->auth_user);
	fputs("\nRecipients:\n", stdout);
	for (i = 0; i < m->nrcpts; i++)
		cmd_show_rcpt(&m->rcpts[i]);
	cmd_show_sends(s, nsends);
	cmd_show_events(e, nevents);
}

/* Builds the "sends" array of show --json. */
static json_t *
cmd_show_sends_json(const struct store_send_row *s, size_t n)
{
	json_t *arr, *o, *to;
	size_t i, j;
	int err = 0;

	arr = json_array();
	if (arr == NULL)
		return NULL;
	for (i = 0; i < n && err == 0; i++) {
		o = json_object();
		to = json_array();
		if (o == NULL || to == NULL) {
			json_decref(o);
			json_decref(to);
			err = -ENOMEM;
			break;
		}
		for (j = 0; j < s[i].nrecipients; j++)
			cli_json_append(
			    to, cli_json_str(s[i].recipients[j]), &err);
		cli_json_set(o, "at", cli_json_time(s[i].at), &err);
		cli_json_set(o, "recipients", to, &err);
		cli_json_set(
		    o, "mailgun_id", cli_json_str(s[i].mailgun_id), &err);
		cli_json_set(o, "via", cli_json_str(s[i].via), &err);
		cli_json_set(o, "result", cli_json_str(s[i].result), &err);
		cli_json_set(o, "http_status",
		    s[i].http_status != 0 ? json_integer(s[i].http_status)
					  : json_null(),
		    &err);
		cli_json_append(arr, o, &err);
	}
	if (err != 0) {
		json_decref(arr);
		return NULL;
	}
	return arr;
}

/* Builds the "events" array of show --json. */
static json_t *
cmd_show_events_json(const struct store_event_row *e, size_t n)
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
		cli_json_set(o, "at", cli_json_time(e[i].at), &err);
		cli_json_set(
		    o, "recipient", cli_json_str(e[i].recipient), &err);
		cli_json_set(o, "event", cli_json_str(e[i].event), &err);
		cli_json_set(o, "severity", cli_json_str(e[i].severity), &err);
		cli_json_set(o, "reason", cli_json_str(e[i].reason), &err);
		cli_json_set(o, "code",
		    e[i].code != 0 ? json_integer(e[i].code) : json_null(),
		    &err);
		cli_json_set(
		    o, "enhanced_code", cli_json_str(e[i].enhanced_code), &err);
		cli_json_set(o, "message", cli_json_str(e[i].message), &err);
		cli_json_set(
		    o, "mailgun_id", cli_json_str(e[i].mailgun_id), &err);
		cli_json_append(arr, o, &err);
	}
	if (err != 0) {
		json_decref(arr);
		return NULL;
	}
	return arr;
}

/* Prints the show --json object.  Returns 0 or a negative errno code. */
static int
cmd_show_json(const struct store_message_row *m, const struct store_send_row *s,
    size_t nsends, const struct store_event_row *e, size_t nevents)
{
	json_t *obj;
	int err = 0;

	obj = cmd_log_json(m, true);
	if (obj == NULL)
		return -ENOMEM;
	cli_json_set(obj, "helo", cli_json_str(m->helo), &err);
	cli_json_set(obj, "client_addr", cli_json_str(m->client_addr), &err);
	cli_json_set(obj, "auth_user", cli_json_str(m->auth_user), &err);
	cli_json_set(obj, "sends", cmd_show_sends_json(s, nsends), &err);
	cli_json_set(obj, "events", cmd_show_events_json(e, nevents), &err);
	if (err == 0)
		err = cli_json_print(obj);
	json_decref(obj);
	return err;
}

/* Writes the stored bytes of message id to stdout, unchanged. */
static int
cmd_show_raw(struct store_db *db, int64_t id)
{
	void *data = NULL;
	size_t len = 0;
	int ret, code = CLI_EXIT_OK;

	ret = store_db_body(db, id, &data, &len);
	if (ret == -ENOENT) {
		cli_error("the body of message %lld was purged", (long long)id);
		return CLI_EXIT_FAIL;
	}
	if (ret != 0) {
		cli_error("cannot read message %lld: %s", (long long)id,
		    ret == -ENOMEM ? strerror(ENOMEM) : store_db_errmsg(db));
		return CLI_EXIT_FAIL;
	}
	if (len > 0 && fwrite(data, 1, len, stdout) != len)
		code = CLI_EXIT_FAIL;
	free(data);
	return cli_finish(code);
}

/* Resolves, loads and prints one message in the chosen form. */
static int
cmd_show_one(struct store_db *db, const char *text, bool json, bool raw)
{
	struct store_message_row m;
	struct store_send_row *s = NULL;
	struct store_event_row *e = NULL;
	size_t nsends = 0, nevents = 0;
	int64_t id = 0;
	int ret, code = CLI_EXIT_OK;

	memset(&m, 0, sizeof(m));
	ret = store_db_resolve(db, text, &id);
	if (ret == -ENOENT || ret == -EINVAL) {
		cli_error("no message matches '%s'", text);
		return CLI_EXIT_FAIL;
	}
	if (ret != 0) {
		cli_error("cannot look up '%s': %s", text, store_db_errmsg(db));
		return CLI_EXIT_FAIL;
	}
	if (raw)
		return cmd_show_raw(db, id);

	ret = store_db_message(db, id, &m);
	if (ret == 0)
		ret = store_db_sends(db, id, &s, &nsends);
	if (ret == 0)
		ret = store_db_events(db, id, &e, &nevents);
	if (ret == -ENOENT) {
		/* Purged between the lookup and the read. */
		cli_error("no message matches '%s'", text);
		code = CLI_EXIT_FAIL;
		goto out;
	}
	if (ret != 0) {
		cli_error("cannot read message %lld: %s", (long long)id,
		    ret == -ENOMEM ? strerror(ENOMEM) : store_db_errmsg(db));
		code = CLI_EXIT_FAIL;
		goto out;
	}
	if (json) {
		ret = cmd_show_json(&m, s, nsends, e, nevents);
		if (ret == -ENOMEM) {
			cli_error("out of memory");
			code = CLI_EXIT_FAIL;
		}
	} else {
		cmd_show_human(&m, s, nsends, e, nevents);
	}
out:
	store_message_row_clear(&m);
	store_send_rows_free(s, nsends);
	store_event_rows_free(e, nevents);
	return cli_finish(code);
}

int
cmd_show_run(const struct cli *cli, int argc, char **argv)
{
	enum { OPT_JSON = 256, OPT_RAW };
	static const struct option opts[] = {
		{ "json", no_argument, NULL, OPT_JSON },
		{ "raw", no_argument, NULL, OPT_RAW },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct store_db *db = NULL;
	bool json = false, raw = false;
	int c, code;

	optind = 0;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
		switch (c) {
		case OPT_JSON:
			json = true;
			break;
		case OPT_RAW:
			raw = true;
			break;
		case 'h':
			cmd_show_usage(stdout);
			return cli_finish(CLI_EXIT_OK);
		default:
			return cli_getopt_error("show", c, argv);
		}
	}
	if (json && raw)
		return cli_usage_error(
		    "show", "--json and --raw exclude each other");
	if (optind >= argc)
		return cli_usage_error("show", "missing ID");
	if (optind + 1 < argc)
		return cli_usage_error(
		    "show", "unexpected argument '%s'", argv[optind + 1]);

	code = cli_open_store(cli, true, &db);
	if (code != CLI_EXIT_OK)
		return code;
	code = cmd_show_one(db, argv[optind], json, raw);
	store_db_close(db);
	return code;
}
