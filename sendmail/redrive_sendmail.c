/*
 * redrive-sendmail: a sendmail-compatible command for programs that pipe
 * mail into /usr/sbin/sendmail (PHP mail(), cron, git send-email).  It
 * reads the message on stdin, takes the recipients from the arguments and,
 * with -t, from the To, Cc and Bcc fields, and submits it over SMTP to the
 * relay at [relay] listen of the configuration.  It prints nothing but
 * errors (one line each) and exits with sendmail's codes (sysexits.h):
 * 0 done, 64 usage, 65 bad message or no recipients, 69 the relay is not
 * there or refused the message for good (5xx), 75 a temporary failure
 * (4xx, a timeout: try again later), 76 a reply that is not SMTP, 78 a bad
 * configuration.
 *
 * Only [relay] listen and max_message_size are read from the configuration
 * (with libinih, values checked by the config module's own parsers): the
 * rest of the file, secrets included, is the daemon's business, and a cron
 * job cannot resolve the daemon's env:NAME secrets anyway.
 */
#include <errno.h>
#include <ini.h>
#include <limits.h>
#include <pwd.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <unistd.h>

#include "redrive/config.h"
#include "redrive/sendmail.h"
#include "redrive/version.h"

#define SENDMAIL_TIMEOUT_MS (30 * 1000)

/* The command line. */
struct sendmail_args {
	bool extract;	       /* -t */
	bool ignore_dots;      /* -i, -oi */
	const char *from;      /* -f, -r */
	const char *full_name; /* -F */
	const char *config;    /* -C */
	char **rcpts;	       /* the arguments after the options */
	int nrcpts;
};

/* What the configuration says, and where parsing it failed. */
struct sendmail_conf {
	char host[256];
	int port;
	uint64_t max_size;
	char err[CONFIG_ERR_MAX];
	int err_line;
};

static void
sendmail_usage(FILE *f)
{
	fputs("usage: redrive-sendmail [-t] [-i | -oi] [-f FROM] [-F NAME] "
	      "[-C FILE] [-bm]\n"
	      "                        [-oXXX ...] [RCPT ...]\n"
	      "\n"
	      "Reads a message on stdin and submits it to the redrive relay "
	      "over SMTP.\n"
	      "\n"
	      "  -t          recipients from the To, Cc and Bcc fields too "
	      "(Bcc is\n"
	      "              removed from the message)\n"
	      "  -i, -oi     a line holding only \".\" does not end the "
	      "message\n"
	      "  -f FROM     envelope sender (default: LOGIN@HOSTNAME; \"<>\" "
	      "for none)\n"
	      "  -F NAME     full name for the From field added when the "
	      "message has none\n"
	      "  -C FILE     configuration (default: $REDRIVE_CONFIG, else\n"
	      "              " CONFIG_DEFAULT_PATH ")\n"
	      "  -bm         read the message and deliver it (the only mode)\n"
	      "  -oXXX, -B, -N, -R, -V, -h, -L, -v\n"
	      "              accepted and ignored, as other sendmails do\n"
	      "  --help      print this help;  --version  print the version\n"
	      "\n"
	      "Exit status (sysexits.h): 0 ok, 64 usage, 65 bad message or no "
	      "recipients,\n"
	      "69 relay unavailable or message refused (5xx), 75 temporary "
	      "failure (4xx),\n"
	      "76 protocol error, 78 configuration error.  See "
	      "redrive-sendmail(8).\n",
	    f);
}

/*
 * Parses the sendmail command line: single-letter options, a value either
 * attached ("-fa@b") or in the next argument; "--" ends the options.
 * Returns 0, 1 for --help/--version (done), or EX_USAGE.
 */
static int
sendmail_parse_args(int argc, char **argv, struct sendmail_args *a)
{
	const char *arg, *val;
	int i;
	char opt;

	for (i = 1; i < argc; i++) {
		arg = argv[i];
		if (strcmp(arg, "--") == 0) {
			i++;
			break;
		}
		if (arg[0] != '-' || arg[1] == '\0')
			break;
		if (strcmp(arg, "--help") == 0) {
			sendmail_usage(stdout);
			return 1;
		}
		if (strcmp(arg, "--version") == 0) {
			printf("redrive-sendmail %s\n", REDRIVE_VERSION);
			return 1;
		}
		opt = arg[1];
		switch (opt) {
		case 't':
		case 'i':
		case 'v':
		case 'm':
		case 'n':
		case 'U':
		case 'G':
			if (arg[2] != '\0')
				goto bad;
			if (opt == 't')
				a->extract = true;
			else if (opt == 'i')
				a->ignore_dots = true;
			continue;
		case 'o':
			/* -oi as -i; any other -oXXX (-odi, -oem, ...) is a
			 * delivery or error mode sendmail accepts: ignored. */
			if (strcmp(arg, "-oi") == 0)
				a->ignore_dots = true;
			else if (arg[2] == '\0')
				goto bad;
			continue;
		case 'b':
			if (strcmp(arg, "-bm") == 0)
				continue;
			fprintf(stderr,
			    "redrive-sendmail: mode %s is not supported "
			    "(only -bm)\n",
			    arg);
			return EX_USAGE;
		case 'f':
		case 'r':
		case 'F':
		case 'C':
		case 'B':
		case 'N':
		case 'R':
		case 'V':
		case 'h':
		case 'L':
			break;
		default:
			goto bad;
		}
		/* The options that take a value. */
		if (arg[2] != '\0') {
			val = arg + 2;
		} else if (i + 1 < argc) {
			val = argv[++i];
		} else {
			fprintf(stderr,
			    "redrive-sendmail: option -%c needs a "
			    "value\n",
			    opt);
			sendmail_usage(stderr);
			return EX_USAGE;
		}
		if (opt == 'f' || opt == 'r')
			a->from = val;
		else if (opt == 'F')
			a->full_name = val;
		else if (opt == 'C')
			a->config = val;
	}
	a->rcpts = argv + i;
	a->nrcpts = argc - i;
	return 0;
bad:
	fprintf(stderr, "redrive-sendmail: unknown option %s\n", arg);
	sendmail_usage(stderr);
	return EX_USAGE;
}

/* libinih handler: [relay] listen and max_message_size, nothing else. */
static int
sendmail_conf_cb(
    void *user, const char *section, const char *name, const char *value)
{
	struct sendmail_conf *c = user;
	char host[256];
	int port;

	if (strcmp(section, "relay") != 0)
		return 1;
	if (strcmp(name, "listen") == 0) {
		if (config_split_hostport(value, host, sizeof(host), &port) <
		    0) {
			snprintf(c->err, sizeof(c->err),
			    "[relay] listen: not host:port");
			return 0;
		}
		memcpy(c->host, host, sizeof(host));
		c->port = port;
	} else if (strcmp(name, "max_message_size") == 0) {
		if (config_parse_size(value, &c->max_size) < 0) {
			snprintf(c->err, sizeof(c->err),
			    "[relay] max_message_size: not a size");
			return 0;
		}
	}
	return 1;
}

/*
 * Loads the relay's address and size limit: the defaults of the config
 * module, then the file (-C, else $REDRIVE_CONFIG, else the default path).
 * A default file that is missing or unreadable (the daemon's file may be
 * 0640) leaves the defaults; a named file must be readable.  Returns 0 or
 * EX_CONFIG.
 */
static int
sendmail_load_conf(const char *path, struct sendmail_conf *c)
{
	struct config def;
	char err[CONFIG_ERR_MAX];
	bool named = true;
	FILE *f;
	int rc, line;

	memset(&def, 0, sizeof(def));
	if (config_defaults(&def) < 0 ||
	    config_split_hostport(
		def.relay.listen, c->host, sizeof(c->host), &c->port) < 0) {
		config_free(&def);
		fprintf(stderr, "redrive-sendmail: out of memory\n");
		return EX_CONFIG;
	}
	c->max_size = def.relay.max_message_size;
	config_free(&def);
	if (path == NULL)
		path = getenv("REDRIVE_CONFIG");
	if (path == NULL || path[0] == '\0') {
		path = CONFIG_DEFAULT_PATH;
		named = false;
	}
	f = fopen(path, "r");
	if (f == NULL) {
		if (!named && (errno == ENOENT || errno == EACCES))
			return 0;
		snprintf(err, sizeof(err), "%s", strerror(errno));
		fprintf(stderr, "redrive-sendmail: %s: %s\n", path, err);
		return EX_CONFIG;
	}
	line = ini_parse_file(f, sendmail_conf_cb, c);
	fclose(f);
	rc = 0;
	if (line != 0) {
		fprintf(stderr, "redrive-sendmail: %s:%d: %s\n", path, line,
		    c->err[0] ? c->err : "syntax error");
		rc = EX_CONFIG;
	}
	return rc;
}

/* The user's login name, for the default sender. */
static const char *
sendmail_login(void)
{
	struct passwd *pw = getpwuid(getuid());

	if (pw != NULL && pw->pw_name != NULL && pw->pw_name[0] != '\0')
		return pw->pw_name;
	return "nobody";
}

/*
 * The user's full name from the GECOS field (up to the first comma), for
 * the From field added when -F is not given; NULL when there is none.
 */
static const char *
sendmail_gecos(char *buf, size_t buflen)
{
	struct passwd *pw = getpwuid(getuid());
	size_t n;

	if (pw == NULL || pw->pw_gecos == NULL)
		return NULL;
	n = strcspn(pw->pw_gecos, ",");
	if (n == 0 || n >= buflen)
		return NULL;
	memcpy(buf, pw->pw_gecos, n);
	buf[n] = '\0';
	return buf;
}

/*
 * Maps a failed step to sendmail's exit code and prints one line saying
 * what failed and what the relay said.
 */
static int
sendmail_fail(
    const struct sendmail_smtp *c, const char *relay, const char *what, int rc)
{
	if (rc == -ETIMEDOUT) {
		fprintf(stderr,
		    "redrive-sendmail: relay %s: no reply to %s "
		    "within %d s\n",
		    relay, what, SENDMAIL_TIMEOUT_MS / 1000);
		return EX_TEMPFAIL;
	}
	if (rc == -ECONNRESET) {
		fprintf(stderr,
		    "redrive-sendmail: relay %s closed the "
		    "connection at %s\n",
		    relay, what);
		return EX_TEMPFAIL;
	}
	if (rc == -EPROTO) {
		fprintf(stderr,
		    "redrive-sendmail: relay %s: malformed reply "
		    "to %s\n",
		    relay, what);
		return EX_PROTOCOL;
	}
	if (rc < 0) {
		fprintf(stderr, "redrive-sendmail: relay %s: %s: %s\n", relay,
		    what, strerror(-rc));
		return EX_TEMPFAIL;
	}
	if (c->code >= 400 && c->code < 500) {
		fprintf(stderr, "redrive-sendmail: relay %s deferred %s: %s\n",
		    relay, what, c->reply);
		return EX_TEMPFAIL;
	}
	if (c->code >= 500) {
		fprintf(stderr, "redrive-sendmail: relay %s refused %s: %s\n",
		    relay, what, c->reply);
		return EX_UNAVAILABLE;
	}
	fprintf(stderr,
	    "redrive-sendmail: relay %s: unexpected reply to %s: "
	    "%s\n",
	    relay, what, c->reply);
	return EX_PROTOCOL;
}

/* Sends line (NULL: none) and expects a reply of class want (2 or 3). */
static int
sendmail_step(struct sendmail_smtp *c, const char *relay, const char *line,
    const char *what, int want)
{
	int rc = sendmail_smtp_cmd(c, line);

	if (rc == 0 && c->code / 100 == want)
		return 0;
	return sendmail_fail(c, relay, what, rc);
}

/*
 * The SMTP transaction (RFC 5321 3.3): greeting, EHLO (HELO when the relay
 * refuses EHLO), MAIL, one RCPT per recipient, DATA.  Any refusal ends the
 * whole submission, so that nothing is half sent and the caller may simply
 * try again.  Returns 0 or an exit code.
 */
static int
sendmail_submit(const struct sendmail_conf *conf, const char *helo,
    const char *sender, const struct sendmail_rcpts *r,
    const struct sendmail_buf *msg)
{
	struct sendmail_smtp c;
	char relay[300], line[600], err[512];
	size_t i;
	int rc;

	snprintf(relay, sizeof(relay), "%s:%d", conf->host, conf->port);
	if (sendmail_smtp_connect(&c, conf->host, conf->port,
		SENDMAIL_TIMEOUT_MS, err, sizeof(err)) < 0) {
		fprintf(stderr, "redrive-sendmail: relay %s unavailable: %s\n",
		    relay, err);
		return EX_UNAVAILABLE;
	}
	rc = sendmail_step(&c, relay, NULL, "the greeting", 2);
	if (rc != 0)
		goto out;
	snprintf(line, sizeof(line), "EHLO %s", helo);
	rc = sendmail_smtp_cmd(&c, line);
	if (rc == 0 && c.code >= 500) {
		snprintf(line, sizeof(line), "HELO %s", helo);
		rc = sendmail_smtp_cmd(&c, line);
	}
	if (rc != 0 || c.code / 100 != 2) {
		rc = sendmail_fail(&c, relay, "EHLO", rc);
		goto out;
	}
	if (c.ext_size)
		snprintf(line, sizeof(line), "MAIL FROM:<%s> SIZE=%zu", sender,
		    msg->len);
	else
		snprintf(line, sizeof(line), "MAIL FROM:<%s>", sender);
	rc = sendmail_step(&c, relay, line, line, 2);
	if (rc != 0)
		goto out;
	for (i = 0; i < r->n; i++) {
		snprintf(line, sizeof(line), "RCPT TO:<%s>", r->addr[i]);
		rc = sendmail_step(&c, relay, line, line, 2);
		if (rc != 0)
			goto out;
	}
	rc = sendmail_step(&c, relay, "DATA", "DATA", 3);
	if (rc != 0)
		goto out;
	rc = sendmail_smtp_data(&c, msg->data, msg->len);
	if (rc != 0 || c.code / 100 != 2) {
		rc = sendmail_fail(&c, relay, "the message", rc);
		goto out;
	}
	/* The message is the relay's now; QUIT's answer changes nothing. */
	(void)sendmail_smtp_cmd(&c, "QUIT");
	rc = 0;
out:
	if (rc != 0 && c.code != 0) {
		/* A polite QUIT, but no second long wait on a stuck relay. */
		c.timeout_ms = 1000;
		(void)sendmail_smtp_cmd(&c, "QUIT");
	}
	sendmail_smtp_close(&c);
	return rc;
}

/*
 * The envelope sender from -f: angle brackets dropped, "" and "<>" mean
 * the null sender, a name without "@" is qualified with the host name.
 * Returns 0 or EX_USAGE.
 */
static int
sendmail_sender(const char *from, const char *host, char *out, size_t outlen)
{
	struct sendmail_rcpts one = { 0 };
	int rc;

	if (from == NULL) {
		snprintf(out, outlen, "%s@%s", sendmail_login(), host);
		return 0;
	}
	if (from[0] == '\0' || strcmp(from, "<>") == 0) {
		out[0] = '\0';
		return 0;
	}
	rc = sendmail_addr_parse(from, strlen(from), host, &one);
	if (rc < 0 || one.n != 1 || strlen(one.addr[0]) >= outlen) {
		sendmail_rcpts_free(&one);
		fprintf(
		    stderr, "redrive-sendmail: bad sender address: %s\n", from);
		return EX_USAGE;
	}
	memcpy(out, one.addr[0], strlen(one.addr[0]) + 1);
	sendmail_rcpts_free(&one);
	return 0;
}

int
main(int argc, char **argv)
{
	struct sendmail_args args = { 0 };
	struct sendmail_conf conf = { 0 };
	struct sendmail_rcpts rcpts = { 0 };
	struct sendmail_buf msg = { 0 };
	struct sendmail_msg_opts o = { 0 };
	char host[HOST_NAME_MAX + 1], sender[SENDMAIL_ADDR_MAX + 1];
	char from_addr[SENDMAIL_ADDR_MAX + 1], gecos[256];
	int i, rc;

	rc = sendmail_parse_args(argc, argv, &args);
	if (rc == 1)
		return 0;
	if (rc != 0)
		return rc;
	if (!args.extract && args.nrcpts == 0) {
		fprintf(stderr,
		    "redrive-sendmail: no recipients given (name "
		    "them, or use -t)\n");
		return EX_USAGE;
	}
	rc = sendmail_load_conf(args.config, &conf);
	if (rc != 0)
		return rc;
	if (gethostname(host, sizeof(host)) < 0 || host[0] == '\0')
		memcpy(host, "localhost", sizeof("localhost"));
	host[sizeof(host) - 1] = '\0';
	rc = sendmail_sender(args.from, host, sender, sizeof(sender));
	if (rc != 0)
		goto out;
	for (i = 0; i < args.nrcpts; i++) {
		const char *a = args.rcpts[i];

		if (sendmail_addr_parse(a, strlen(a), host, &rcpts) < 0) {
			fprintf(stderr,
			    "redrive-sendmail: bad recipient address: %s\n", a);
			rc = EX_USAGE;
			goto out;
		}
	}
	rc = sendmail_msg_read(stdin, !args.ignore_dots, conf.max_size, &msg);
	if (rc == -EFBIG) {
		fprintf(stderr,
		    "redrive-sendmail: message larger than "
		    "[relay] max_message_size (%llu bytes)\n",
		    (unsigned long long)conf.max_size);
		rc = EX_DATAERR;
		goto out;
	}
	if (rc < 0) {
		fprintf(stderr, "redrive-sendmail: reading the message: %s\n",
		    strerror(-rc));
		rc = rc == -ENOMEM ? EX_OSERR : EX_IOERR;
		goto out;
	}
	if (sender[0] != '\0')
		memcpy(from_addr, sender, sizeof(sender));
	else
		snprintf(from_addr, sizeof(from_addr), "%s@%s",
		    sendmail_login(), host);
	o.extract = args.extract;
	o.from_addr = from_addr;
	o.full_name = args.full_name ? args.full_name
				     : sendmail_gecos(gecos, sizeof(gecos));
	o.hostname = host;
	o.rcpts = &rcpts;
	rc = sendmail_msg_prepare(&msg, &o);
	if (rc < 0) {
		fprintf(stderr, "redrive-sendmail: %s\n",
		    rc == -ENOMEM ? "out of memory"
			: rc == -E2BIG
			? "too many recipients or header fields"
			: "bad address in a To, Cc or Bcc field");
		rc = rc == -ENOMEM ? EX_OSERR : EX_DATAERR;
		goto out;
	}
	if ((uint64_t)msg.len > conf.max_size) {
		fprintf(stderr,
		    "redrive-sendmail: message larger than "
		    "[relay] max_message_size (%llu bytes)\n",
		    (unsigned long long)conf.max_size);
		rc = EX_DATAERR;
		goto out;
	}
	if (rcpts.n == 0) {
		fprintf(stderr,
		    "redrive-sendmail: no recipient addresses "
		    "found in the header\n");
		rc = EX_DATAERR;
		goto out;
	}
	rc = sendmail_submit(&conf, host, sender, &rcpts, &msg);
out:
	sendmail_rcpts_free(&rcpts);
	sendmail_buf_free(&msg);
	return rc;
}
