/*
 * cmd_passwd: `redrive passwd USER` prints a line for the relay's users
 * file ([relay] auth_users): "USER:HASH", where HASH is a yescrypt crypt(5)
 * string made by libxcrypt with a fresh random salt from getrandom(2).
 * The password is read from standard input: from a terminal without echo
 * and twice (to catch typos), else as one line (for scripts).  Nothing
 * but the line is printed; the password never is.
 *
 * Exit codes: 0 ok, 1 no password or a hashing failure, 2 usage.
 */
#include <crypt.h>
#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <termios.h>
#include <unistd.h>

#include "redrive/smtp_auth.h"

#include "cli.h"

/* Random bytes for the salt (yescrypt uses up to 32 of them). */
#define CMD_PASSWD_SALT_BYTES 32

static void
cmd_passwd_usage(FILE *fp)
{
	fputs("usage: redrive passwd USER\n"
	      "\n"
	      "Reads a password on standard input (without echo from a "
	      "terminal, else\n"
	      "one line) and prints \"USER:HASH\" (yescrypt) for the file "
	      "that [relay]\n"
	      "auth_users names.  Restart redrived after changing that "
	      "file.\n"
	      "\n"
	      "  -h, --help  print this help\n"
	      "\n"
	      "Exit status: 0 ok, 1 failed, 2 usage error.\n",
	    fp);
}

/*
 * Reads one line from fp into buf (without its line end).  Returns its
 * length, or -1 at EOF before any byte or when it does not fit.
 */
static int
cmd_passwd_line(FILE *fp, char *buf, size_t buflen)
{
	size_t n;

	if (fgets(buf, (int)buflen, fp) == NULL)
		return -1;
	n = strlen(buf);
	if (n > 0 && buf[n - 1] == '\n')
		buf[--n] = '\0';
	else if (!feof(fp))
		return -1; /* longer than the buffer */
	if (n > 0 && buf[n - 1] == '\r')
		buf[--n] = '\0';
	return (int)n;
}

/* Reads the password from the terminal on fd 0 without echo. */
static int
cmd_passwd_tty(const char *prompt, char *buf, size_t buflen)
{
	struct termios old, quiet;
	int n;

	if (tcgetattr(STDIN_FILENO, &old) != 0)
		return -1;
	quiet = old;
	quiet.c_lflag &= ~(tcflag_t)ECHO;
	quiet.c_lflag |= ECHONL;
	fputs(prompt, stderr);
	fflush(stderr);
	if (tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet) != 0)
		return -1;
	n = cmd_passwd_line(stdin, buf, buflen);
	tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
	return n;
}

/* Gets the password into pass; returns 0 or a CLI exit code. */
static int
cmd_passwd_read(char *pass, size_t passlen)
{
	char again[SMTP_AUTH_PASS_MAX + 2];
	int n, m;

	if (isatty(STDIN_FILENO)) {
		n = cmd_passwd_tty("Password: ", pass, passlen);
		if (n > 0) {
			m = cmd_passwd_tty("Again: ", again, sizeof(again));
			if (m != n || strcmp(again, pass) != 0) {
				explicit_bzero(again, sizeof(again));
				cli_error("the passwords differ");
				return CLI_EXIT_FAIL;
			}
			explicit_bzero(again, sizeof(again));
		}
	} else {
		n = cmd_passwd_line(stdin, pass, passlen);
	}
	if (n <= 0) {
		cli_error("no password (or one over %d bytes) on standard "
			  "input",
		    SMTP_AUTH_PASS_MAX);
		return CLI_EXIT_FAIL;
	}
	if ((size_t)n > SMTP_AUTH_PASS_MAX) {
		cli_error("the password is over %d bytes", SMTP_AUTH_PASS_MAX);
		return CLI_EXIT_FAIL;
	}
	return 0;
}

/* Hashes pass with yescrypt and a random salt into out. */
static int
cmd_passwd_hash(const char *pass, char *out, size_t outlen)
{
	unsigned char rnd[CMD_PASSWD_SALT_BYTES];
	char setting[CRYPT_GENSALT_OUTPUT_SIZE];
	struct crypt_data *cd = NULL;
	const char *h;
	ssize_t got;
	int rc = CLI_EXIT_FAIL;

	got = getrandom(rnd, sizeof(rnd), 0);
	if (got != (ssize_t)sizeof(rnd)) {
		cli_error("cannot get random bytes: %s", strerror(errno));
		goto out;
	}
	if (crypt_gensalt_rn("$y$", 0, (const char *)rnd, (int)sizeof(rnd),
		setting, (int)sizeof(setting)) == NULL) {
		cli_error("cannot make a yescrypt salt: %s", strerror(errno));
		goto out;
	}
	cd = calloc(1, sizeof(*cd));
	if (cd == NULL) {
		cli_error("out of memory");
		goto out;
	}
	h = crypt_rn(pass, setting, cd, (int)sizeof(*cd));
	if (h == NULL || h[0] == '*' || strlen(h) >= outlen) {
		cli_error("cannot hash the password: %s", strerror(errno));
		goto out;
	}
	memcpy(out, h, strlen(h) + 1);
	rc = 0;
out:
	if (cd != NULL) {
		explicit_bzero(cd, sizeof(*cd));
		free(cd);
	}
	explicit_bzero(rnd, sizeof(rnd));
	return rc;
}

int
cmd_passwd_run(const struct cli *cli, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	char pass[SMTP_AUTH_PASS_MAX + 2];
	char hash[CRYPT_OUTPUT_SIZE];
	const char *user;
	int c, rc;

	(void)cli;
	optind = 0;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
		switch (c) {
		case 'h':
			cmd_passwd_usage(stdout);
			return cli_finish(CLI_EXIT_OK);
		default:
			return cli_getopt_error("passwd", c, argv);
		}
	}
	if (argc - optind != 1)
		return cli_usage_error("passwd", "expected one USER");
	user = argv[optind];
	if (!smtp_auth_user_valid(user, strlen(user)))
		return cli_usage_error("passwd",
		    "bad user name (1 to %d printable characters, no ':' or "
		    "spaces)",
		    SMTP_AUTH_USER_MAX);
	rc = cmd_passwd_read(pass, sizeof(pass));
	if (rc == 0)
		rc = cmd_passwd_hash(pass, hash, sizeof(hash));
	explicit_bzero(pass, sizeof(pass));
	if (rc != 0)
		return rc;
	printf("%s:%s\n", user, hash);
	return cli_finish(CLI_EXIT_OK);
}
