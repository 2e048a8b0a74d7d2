/*
 * cli_util: the helpers every `redrive` command uses: error and usage
 * lines, opening the store through the config or --db, terminal-safe
 * printing of peer-supplied strings, and JSON construction.
 *
 * Everything printed from the store may come from a peer (an SMTP client
 * wrote the subject and the addresses, Mailgun wrote the error texts), so
 * the human output escapes control characters, invalid UTF-8 and the
 * Unicode controls that reorder or hide text on a terminal, and the JSON
 * output replaces invalid UTF-8 by U+FFFD so that it is always valid JSON
 * (RFC 8259 section 8.1 requires UTF-8).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "redrive/config.h"
#include "redrive/store.h"
#include "redrive/timeutil.h"

#include "cli.h"

/* The longest escape cli_put() writes for one character: "\uNNNN". */
#define CLI_TOKEN_MAX 8

void
cli_error(const char *fmt, ...)
{
	va_list ap;

	fflush(stdout);
	fputs("redrive: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

int
cli_usage_error(const char *cmd, const char *fmt, ...)
{
	va_list ap;

	fflush(stdout);
	fputs("redrive: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	if (cmd != NULL)
		fprintf(stderr, "Try 'redrive %s --help'.\n", cmd);
	else
		fputs("Try 'redrive --help'.\n", stderr);
	return CLI_EXIT_USAGE;
}

/*
 * getopt_long() leaves the offending argument at argv[optind - 1] for an
 * unknown long option and in optopt for a short one.
 */
int
cli_getopt_error(const char *cmd, int c, char **argv)
{
	const char *arg = optind > 0 ? argv[optind - 1] : "";
	char opt[3] = { '-', (char)optopt, '\0' };

	if (optopt != 0 && (arg == NULL || arg[0] != '-' || arg[1] != '-'))
		arg = opt;
	if (c == ':')
		return cli_usage_error(cmd, "option %s needs an argument", arg);
	return cli_usage_error(cmd, "unknown option %s", arg);
}

/*
 * Finds the store path: --db, else [store] path of the config.  A config
 * that nobody named (neither -c nor $REDRIVE_CONFIG) and that does not
 * exist stands for the defaults, so a fresh install still finds its store.
 * cfg is loaded (the caller frees it) and *path may point into it.
 */
static int
cli_store_path(const struct cli *cli, struct config *cfg, const char **path)
{
	char err[CONFIG_ERR_MAX];
	const char *cfgpath;
	bool named = true;
	int ret;

	memset(cfg, 0, sizeof(*cfg));
	if (cli->db_path != NULL) {
		*path = cli->db_path;
		return 0;
	}
	cfgpath = cli->config_path;
	if (cfgpath == NULL) {
		cfgpath = getenv("REDRIVE_CONFIG");
		if (cfgpath == NULL || cfgpath[0] == '\0') {
			cfgpath = CONFIG_DEFAULT_PATH;
			named = false;
		}
	}
	if (!named && access(cfgpath, F_OK) != 0 && errno == ENOENT) {
		ret = config_defaults(cfg);
		if (ret != 0) {
			cli_error(
			    "cannot set up the defaults: %s", strerror(-ret));
			return ret;
		}
	} else {
		err[0] = '\0';
		ret = config_load(cfg, cfgpath, err, sizeof(err));
		if (ret != 0) {
			cli_error("%s", err[0] != '\0' ? err : strerror(-ret));
			fputs("(--db FILE names the store without a config)\n",
			    stderr);
			return ret;
		}
	}
	if (cfg->store.path == NULL || cfg->store.path[0] == '\0') {
		cli_error("%s: no [store] path", cfgpath);
		return -EINVAL;
	}
	*path = cfg->store.path;
	return 0;
}

int
cli_open_store(const struct cli *cli, bool readonly, struct store_db **out)
{
	struct config cfg;
	const char *path = NULL;
	char err[512];
	int ret, code = CLI_EXIT_OK;

	*out = NULL;
	ret = cli_store_path(cli, &cfg, &path);
	if (ret != 0) {
		code = CLI_EXIT_FAIL;
		goto out;
	}
	err[0] = '\0';
	ret = store_db_open(out, path, readonly, err, sizeof(err));
	if (ret != 0) {
		cli_error("%s", err[0] != '\0' ? err : strerror(-ret));
		code = CLI_EXIT_FAIL;
	}
out:
	config_free(&cfg);
	return code;
}

/*
 * Returns the length (1 to 4) of the well-formed UTF-8 sequence at s[0..n)
 * and its code point, or 0 when s does not start one (RFC 3629 section 4:
 * no overlong forms, no surrogates, nothing past U+10FFFF).
 */
static size_t
cli_utf8_seq(const unsigned char *s, size_t n, uint32_t *cp)
{
	unsigned char lo = 0x80, hi = 0xbf;
	size_t len, i;
	uint32_t c;

	if (n == 0)
		return 0;
	if (s[0] < 0x80) {
		*cp = s[0];
		return 1;
	}
	if (s[0] >= 0xc2 && s[0] <= 0xdf) {
		len = 2;
		c = s[0] & 0x1f;
	} else if (s[0] >= 0xe0 && s[0] <= 0xef) {
		len = 3;
		c = s[0] & 0x0f;
		if (s[0] == 0xe0)
			lo = 0xa0;
		else if (s[0] == 0xed)
			hi = 0x9f;
	} else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
		len = 4;
		c = s[0] & 0x07;
		if (s[0] == 0xf0)
			lo = 0x90;
		else if (s[0] == 0xf4)
			hi = 0x8f;
	} else {
		return 0;
	}
	if (n < len || s[1] < lo || s[1] > hi)
		return 0;
	for (i = 1; i < len; i++) {
		if (i > 1 && (s[i] < 0x80 || s[i] > 0xbf))
			return 0;
		c = (c << 6) | (s[i] & 0x3f);
	}
	*cp = c;
	return len;
}

/*
 * True for the code points a terminal must not get raw: C1 controls, and
 * the format characters that reorder or hide text (bidirectional marks,
 * embeddings, overrides and isolates; line and paragraph separators).
 */
static bool
cli_hidden_cp(uint32_t cp)
{
	return (cp >= 0x80 && cp <= 0x9f) || cp == 0x061c || cp == 0x200e ||
	    cp == 0x200f || (cp >= 0x2028 && cp <= 0x202e) ||
	    (cp >= 0x2066 && cp <= 0x2069);
}

/* The letter of the two-character escape of c (n for \n), or NUL if none. */
static char
cli_short_escape(uint32_t c)
{
	switch (c) {
	case '\\':
		return '\\';
	case '\n':
		return 'n';
	case '\r':
		return 'r';
	case '\t':
		return 't';
	default:
		return '\0';
	}
}

/*
 * Produces the display form of the character at s[0..n) into tok
 * (CLI_TOKEN_MAX bytes, not NUL-terminated) with its byte length in
 * *toklen and its width in columns in *cols.  Returns the source bytes it
 * stands for (at least 1).
 */
static size_t
cli_token(
    const unsigned char *s, size_t n, char *tok, size_t *toklen, size_t *cols)
{
	static const char hex[] = "0123456789abcdef";
	uint32_t cp = 0;
	size_t len;

	len = cli_utf8_seq(s, n, &cp);
	if (len == 1 && cp >= 0x20 && cp < 0x7f && cp != '\\') {
		tok[0] = (char)cp;
		*toklen = *cols = 1;
		return 1;
	}
	if (len == 1 && cli_short_escape(cp) != '\0') {
		tok[0] = '\\';
		tok[1] = cli_short_escape(cp);
		*toklen = *cols = 2;
		return 1;
	}
	if (len > 1 && !cli_hidden_cp(cp)) {
		memcpy(tok, s, len);
		*toklen = len;
		*cols = 1;
		return len;
	}
	if (len > 1) {
		tok[0] = '\\';
		tok[1] = 'u';
		tok[2] = hex[(cp >> 12) & 0xf];
		tok[3] = hex[(cp >> 8) & 0xf];
		tok[4] = hex[(cp >> 4) & 0xf];
		tok[5] = hex[cp & 0xf];
		*toklen = *cols = 6;
		return len;
	}
	/* A control byte, or a byte that starts no well-formed sequence. */
	tok[0] = '\\';
	tok[1] = 'x';
	tok[2] = hex[s[0] >> 4];
	tok[3] = hex[s[0] & 0xf];
	*toklen = *cols = 4;
	return 1;
}

/*
 * Two passes: the first measures the escaped text, so that a string that
 * fits is written whole and one that does not is cut at a character
 * boundary with room left for "...".
 */
size_t
cli_put(FILE *fp, const char *s, size_t width, bool pad)
{
	const unsigned char *p = (const unsigned char *)s;
	char tok[CLI_TOKEN_MAX];
	size_t n, i, used, toklen, cols, total = 0, budget;
	bool cut = false;

	n = s != NULL ? strlen(s) : 0;
	for (i = 0; i < n && total <= width;) {
		i += cli_token(p + i, n - i, tok, &toklen, &cols);
		total += cols;
	}
	if (total > width) {
		cut = true;
		budget = width >= 3 ? width - 3 : 0;
	} else {
		budget = width;
	}
	used = 0;
	for (i = 0; i < n;) {
		size_t step = cli_token(p + i, n - i, tok, &toklen, &cols);

		if (used + cols > budget)
			break;
		fwrite(tok, 1, toklen, fp);
		used += cols;
		i += step;
	}
	if (cut) {
		for (i = 0; i < 3 && used < width; i++, used++)
			fputc('.', fp);
	}
	for (; pad && used < width; used++)
		fputc(' ', fp);
	return used;
}

const char *
cli_time(int64_t ms, char *buf, size_t buflen)
{
	return time_format_rfc3339(ms, buf, buflen);
}

/*
 * Copies s with every byte outside a well-formed UTF-8 sequence replaced
 * by U+FFFD (EF BF BD), one per byte.
 */
json_t *
cli_json_str(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t n, i, len, o = 0;
	uint32_t cp;
	json_t *j;
	char *buf;

	if (s == NULL)
		return json_null();
	n = strlen(s);
	if (n > (SIZE_MAX - 1) / 3)
		return NULL;
	buf = malloc(n * 3 + 1);
	if (buf == NULL)
		return NULL;
	for (i = 0; i < n; i += len) {
		len = cli_utf8_seq(p + i, n - i, &cp);
		if (len == 0) {
			memcpy(buf + o, "\xef\xbf\xbd", 3);
			o += 3;
			len = 1;
		} else {
			memcpy(buf + o, p + i, len);
			o += len;
		}
	}
	buf[o] = '\0';
	j = json_stringn(buf, o);
	free(buf);
	return j;
}

json_t *
cli_json_time(int64_t ms)
{
	char buf[64];

	return json_string(cli_time(ms, buf, sizeof(buf)));
}

void
cli_json_set(json_t *obj, const char *key, json_t *v, int *err)
{
	if (v == NULL || json_object_set_new(obj, key, v) != 0)
		*err = -ENOMEM;
}

void
cli_json_append(json_t *arr, json_t *v, int *err)
{
	if (v == NULL || json_array_append_new(arr, v) != 0)
		*err = -ENOMEM;
}

int
cli_json_print(const json_t *obj)
{
	if (json_dumpf(obj, stdout, JSON_COMPACT) != 0)
		return -EIO;
	if (fputc('\n', stdout) == EOF)
		return -EIO;
	return 0;
}

int
cli_finish(int code)
{
	if (fflush(stdout) != 0 || ferror(stdout)) {
		fprintf(stderr, "redrive: cannot write the output: %s\n",
		    strerror(errno));
		return CLI_EXIT_FAIL;
	}
	return code;
}
