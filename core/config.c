/*
 * config: the INI configuration (config.h), parsed by libinih.
 *
 * One table, config_keys[], lists every key: its section and name, the
 * kind of value, where it lives in struct config, its range and its
 * default written in the file's own syntax.  config_defaults() feeds the
 * defaults through the same setters as the file, so a default can never
 * be a value the file would refuse.  config_load() then reads the file,
 * applies the MAILGUN_* environment overrides and checks the rules that
 * span keys.
 *
 * libinih calls a handler per key but does not say on which line (the
 * system library is built without INI_HANDLER_LINENO), and it goes on
 * after the first error.  So the file is fed through our own line reader
 * (config_reader_cb), which counts lines, refuses overlong lines and NUL
 * bytes instead of letting inih split or cut them, strips leading blanks
 * (an indented line is an ordinary line, never a continuation of the
 * previous value) and checks section names as they appear.  Only the
 * first error is kept; a syntax error that inih reports on an earlier
 * line wins over a later one of ours.
 *
 * Secrets (api_key, webhook_signing_key, smtp_password) may be written
 * as env:NAME or file:PATH.  Their values never appear in an error: the
 * messages name the key, the variable or the file instead.  Every string
 * is owned by struct config and freed by config_free(); secrets are
 * wiped before they are freed.
 */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <ini.h>

#include "redrive/cidr.h"
#include "redrive/config.h"
#include "redrive/log.h"
#include "redrive/timeutil.h"

/* The longest duration any key takes: ten years. */
#define CONFIG_DUR_MAX ((int64_t)3650 * 24 * 60 * 60 * 1000)
/* The longest first line read from a file:PATH secret. */
#define CONFIG_SECRET_MAX 4096
/* The longest list entry (a network, a reason, a code range). */
#define CONFIG_TOKEN_MAX 128
/* How many bytes of a bad value an error message shows. */
#define CONFIG_QUOTE_MAX 64

enum config_kind {
	CONFIG_K_BOOL,
	CONFIG_K_STR,	   /* free text, no control bytes, may be empty */
	CONFIG_K_NONEMPTY, /* as STR, but required */
	CONFIG_K_SECRET,   /* literal, env:NAME or file:PATH */
	CONFIG_K_SIGNING,  /* comma-separated secrets */
	CONFIG_K_SIZE,	   /* uint64_t bytes */
	CONFIG_K_DURATION, /* int64_t ms */
	CONFIG_K_UINT,	   /* unsigned */
	CONFIG_K_RATE,	   /* double 0..1 */
	CONFIG_K_LISTEN,   /* numeric host or "*", port 1..65535 */
	CONFIG_K_HOSTPORT, /* empty, or any host with port 1..65535 */
	CONFIG_K_HOSTNAME, /* empty: gethostname(2) */
	CONFIG_K_ALLOW,	   /* struct cidr list */
	CONFIG_K_WORDS,	   /* char * list */
	CONFIG_K_CODES,	   /* struct config_code_range list */
	CONFIG_K_ENHANCED, /* char * list of "5.1", "5.1.1" */
	CONFIG_K_DOMAIN,   /* empty or a domain name */
	CONFIG_K_APIBASE,  /* http(s) URL, trailing '/' dropped */
	CONFIG_K_URL,	   /* empty or an http(s) URL */
	CONFIG_K_HTTPPATH, /* "/..." */
	CONFIG_K_TLSMODE,  /* starttls, tls, none */
	CONFIG_K_LEVEL,	   /* a log level name */
	CONFIG_K_ADDRESS,  /* empty or something with an '@' */
};

struct config_key {
	const char *section;
	const char *name;
	enum config_kind kind;
	size_t off;  /* the field in struct config */
	size_t noff; /* lists: the count field */
	int64_t min; /* numbers: the range */
	int64_t max;
	const char *range; /* the range in words, for messages */
	const char *def;   /* the default, as the file would say it */
	const char *env;   /* the environment variable overriding it */
};

#define CONFIG_F(f) offsetof(struct config, f)
#define CONFIG_KEY(s, n, k, f, def)                            \
	{                                                      \
		s, n, k, CONFIG_F(f), 0, 0, 0, NULL, def, NULL \
	}
#define CONFIG_NUM(s, n, k, f, lo, hi, r, def)                \
	{                                                     \
		s, n, k, CONFIG_F(f), 0, lo, hi, r, def, NULL \
	}
#define CONFIG_LIST(s, n, k, f, nf, def)                                  \
	{                                                                 \
		s, n, k, CONFIG_F(f), CONFIG_F(nf), 0, 0, NULL, def, NULL \
	}
#define CONFIG_ENV(s, n, k, f, def, env)                      \
	{                                                     \
		s, n, k, CONFIG_F(f), 0, 0, 0, NULL, def, env \
	}

/* Every key of DESIGN.md "Configuration (INI)", in its order. */
static const struct config_key config_keys[] = {
	CONFIG_KEY("relay", "enabled", CONFIG_K_BOOL, relay.enabled, "yes"),
	CONFIG_KEY(
	    "relay", "listen", CONFIG_K_LISTEN, relay.listen, "127.0.0.1:2525"),
	CONFIG_KEY("relay", "hostname", CONFIG_K_HOSTNAME, relay.hostname, ""),
	CONFIG_LIST("relay", "allow", CONFIG_K_ALLOW, relay.allow, relay.nallow,
	    "127.0.0.0/8 ::1"),
	CONFIG_NUM("relay", "max_message_size", CONFIG_K_SIZE,
	    relay.max_message_size, 1024, INT64_MAX, "1K or more", "25M"),
	CONFIG_NUM("relay", "max_recipients", CONFIG_K_UINT,
	    relay.max_recipients, 1, 100000, "1 to 100000", "1000"),
	CONFIG_NUM("relay", "max_connections", CONFIG_K_UINT,
	    relay.max_connections, 1, INT_MAX, "1 or more", "1000"),
	CONFIG_NUM("relay", "timeout", CONFIG_K_DURATION, relay.timeout_ms, 1,
	    CONFIG_DUR_MAX, "1ms to 3650d", "5m"),
	CONFIG_KEY("relay", "tls_cert", CONFIG_K_STR, relay.tls_cert, ""),
	CONFIG_KEY("relay", "tls_key", CONFIG_K_STR, relay.tls_key, ""),
	CONFIG_KEY("relay", "auth_users", CONFIG_K_STR, relay.auth_users, ""),
	CONFIG_KEY(
	    "relay", "require_auth", CONFIG_K_BOOL, relay.require_auth, "no"),

	CONFIG_ENV("mailgun", "api_key", CONFIG_K_SECRET, mailgun.api_key, "",
	    "MAILGUN_API_KEY"),
	CONFIG_ENV("mailgun", "domain", CONFIG_K_DOMAIN, mailgun.domain, "",
	    "MAILGUN_DOMAIN"),
	CONFIG_ENV("mailgun", "api_base", CONFIG_K_APIBASE, mailgun.api_base,
	    "https://api.mailgun.net", "MAILGUN_API_BASE"),
	{ "mailgun", "webhook_signing_key", CONFIG_K_SIGNING,
	    CONFIG_F(mailgun.signing_keys), CONFIG_F(mailgun.nsigning_keys), 0,
	    0, NULL, "", "MAILGUN_WEBHOOK_SIGNING_KEY" },
	CONFIG_NUM("mailgun", "timeout", CONFIG_K_DURATION, mailgun.timeout_ms,
	    1, CONFIG_DUR_MAX, "1ms to 3650d", "30s"),
	CONFIG_NUM("mailgun", "concurrency", CONFIG_K_UINT, mailgun.concurrency,
	    1, 1000, "1 to 1000", "16"),
	CONFIG_NUM("mailgun", "retry_min", CONFIG_K_DURATION,
	    mailgun.retry_min_ms, 1, CONFIG_DUR_MAX, "1ms to 3650d", "1s"),
	CONFIG_NUM("mailgun", "retry_max", CONFIG_K_DURATION,
	    mailgun.retry_max_ms, 1, CONFIG_DUR_MAX, "1ms to 3650d", "5m"),
	CONFIG_KEY("mailgun", "ca_file", CONFIG_K_STR, mailgun.ca_file, ""),

	CONFIG_KEY("tracker", "enabled", CONFIG_K_BOOL, tracker.enabled, "yes"),
	CONFIG_KEY("tracker", "listen", CONFIG_K_LISTEN, tracker.listen,
	    "127.0.0.1:8025"),
	CONFIG_KEY("tracker", "path", CONFIG_K_HTTPPATH, tracker.path,
	    "/webhooks/mailgun"),
	CONFIG_NUM("tracker", "max_body", CONFIG_K_SIZE, tracker.max_body, 1024,
	    INT64_MAX, "1K or more", "1M"),
	CONFIG_NUM("tracker", "timestamp_window", CONFIG_K_DURATION,
	    tracker.timestamp_window_ms, 1, CONFIG_DUR_MAX, "1ms to 3650d",
	    "24h"),
	CONFIG_NUM("tracker", "reconcile_after", CONFIG_K_DURATION,
	    tracker.reconcile_after_ms, 0, CONFIG_DUR_MAX, "0s (off) to 3650d",
	    "2h"),
	CONFIG_NUM("tracker", "reconcile_interval", CONFIG_K_DURATION,
	    tracker.reconcile_interval_ms, 1, CONFIG_DUR_MAX, "1ms to 3650d",
	    "5m"),
	CONFIG_NUM("tracker", "reconcile_batch", CONFIG_K_UINT,
	    tracker.reconcile_batch, 1, 1000, "1 to 1000", "10"),

	CONFIG_NUM("retry", "max_attempts", CONFIG_K_UINT, retry.max_attempts,
	    1, 1000, "1 to 1000", "5"),
	CONFIG_NUM("retry", "backoff_base", CONFIG_K_DURATION,
	    retry.backoff_base_ms, 1, CONFIG_DUR_MAX, "1ms to 3650d", "4m"),
	CONFIG_NUM("retry", "backoff_factor", CONFIG_K_UINT,
	    retry.backoff_factor, 1, 1000, "1 to 1000", "4"),
	CONFIG_LIST("retry", "reasons", CONFIG_K_WORDS, retry.reasons,
	    retry.nreasons, "old espblock blacklisted"),
	CONFIG_LIST("retry", "codes", CONFIG_K_CODES, retry.codes, retry.ncodes,
	    "500-554"),
	CONFIG_LIST("retry", "never_reasons", CONFIG_K_WORDS,
	    retry.never_reasons, retry.nnever_reasons,
	    "bounce suppress-bounce suppress-unsubscribe suppress-complaint"),
	CONFIG_LIST("retry", "never_enhanced", CONFIG_K_ENHANCED,
	    retry.never_enhanced, retry.nnever_enhanced, "5.1"),
	CONFIG_NUM("retry", "storage_ttl", CONFIG_K_DURATION,
	    retry.storage_ttl_ms, 1, CONFIG_DUR_MAX, "1ms to 3650d", "72h"),

	CONFIG_KEY("alert", "to", CONFIG_K_ADDRESS, alert.to, ""),
	CONFIG_KEY("alert", "from", CONFIG_K_ADDRESS, alert.from, ""),
	CONFIG_KEY("alert", "smtp", CONFIG_K_HOSTPORT, alert.smtp, ""),
	CONFIG_KEY("alert", "smtp_user", CONFIG_K_STR, alert.smtp_user, ""),
	CONFIG_KEY(
	    "alert", "smtp_password", CONFIG_K_SECRET, alert.smtp_password, ""),
	CONFIG_KEY(
	    "alert", "smtp_tls", CONFIG_K_TLSMODE, alert.smtp_tls, "starttls"),
	CONFIG_KEY(
	    "alert", "smtp_ca_file", CONFIG_K_STR, alert.smtp_ca_file, ""),
	CONFIG_KEY("alert", "webhook_url", CONFIG_K_URL, alert.webhook_url, ""),
	CONFIG_KEY(
	    "alert", "failure_rate", CONFIG_K_RATE, alert.failure_rate, "0.2"),
	CONFIG_NUM("alert", "failure_window", CONFIG_K_DURATION,
	    alert.failure_window_ms, 1, CONFIG_DUR_MAX, "1ms to 3650d", "15m"),
	CONFIG_NUM("alert", "failure_min", CONFIG_K_UINT, alert.failure_min, 1,
	    INT_MAX, "1 or more", "10"),

	CONFIG_KEY("store", "path", CONFIG_K_NONEMPTY, store.path,
	    "/var/lib/redrive/redrive.db"),
	CONFIG_NUM("store", "retention", CONFIG_K_DURATION, store.retention_ms,
	    1, CONFIG_DUR_MAX, "1ms to 3650d", "30d"),

	CONFIG_KEY("log", "level", CONFIG_K_LEVEL, log.level, "info"),
};

#define CONFIG_NKEYS (sizeof(config_keys) / sizeof(config_keys[0]))

static const char *const config_sections[] = { "relay", "mailgun", "tracker",
	"retry", "alert", "store", "log" };

/* The state of one config_load() or config_defaults(). */
struct config_ctx {
	struct config *cfg;
	const char *path;	/* the file, for messages; NULL: none */
	FILE *fp;		/* the file being read */
	int lineno;		/* lines the reader has returned */
	int line;		/* the line being applied; 0: none */
	const char *envname;	/* the variable being applied, or NULL */
	int read_errno;		/* a read(2) error of the reader */
	int seen[CONFIG_NKEYS]; /* the line that set each key; 0: default */
	char *err;
	size_t errlen;
	int err_line; /* the line of the kept error */
	int rc;	      /* the first error, 0 while none */
};

/* The field of struct config a key describes. */
static void *
config_field(struct config *cfg, const struct config_key *k)
{
	return (char *)cfg + k->off;
}

/* The count field of a list key. */
static size_t *
config_count(struct config *cfg, const struct config_key *k)
{
	return (size_t *)(void *)((char *)cfg + k->noff);
}

/* Frees s after wiping it (secrets must not linger in freed memory). */
static void
config_wipe_free(char *s)
{
	if (s == NULL)
		return;
	explicit_bzero(s, strlen(s));
	free(s);
}

/*
 * Records an error: "FILE:LINE: reason", "FILE: reason" or "environment:
 * reason".  Only the first error is kept unless force is set (a syntax
 * error found on an earlier line).  Returns rc.
 */
static int config_fail_at(struct config_ctx *ctx, int line, bool force, int rc,
    const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static int
config_fail_at(
    struct config_ctx *ctx, int line, bool force, int rc, const char *fmt, ...)
{
	char reason[CONFIG_ERR_MAX];
	va_list ap;

	va_start(ap, fmt);
	/*
	 * clang-tidy 14 reports a false "uninitialized va_list" here when it
	 * analyses another file first in the same run (its va_list checker
	 * keeps the first file's va_list type).
	 */
	/* NOLINTNEXTLINE(clang-analyzer-valist.Uninitialized) */
	vsnprintf(reason, sizeof(reason), fmt, ap);
	va_end(ap);
	if (ctx->rc != 0 && !force)
		return rc;
	ctx->rc = rc;
	ctx->err_line = line;
	if (ctx->err == NULL || ctx->errlen == 0)
		return rc;
	if (ctx->envname != NULL)
		snprintf(ctx->err, ctx->errlen, "environment: %s", reason);
	else if (ctx->path != NULL && line > 0)
		snprintf(ctx->err, ctx->errlen, "%s:%d: %s", ctx->path, line,
		    reason);
	else if (ctx->path != NULL)
		snprintf(ctx->err, ctx->errlen, "%s: %s", ctx->path, reason);
	else
		snprintf(ctx->err, ctx->errlen, "%s", reason);
	return rc;
}

/* An error on the line being applied. */
#define config_fail(ctx, rc, ...) \
	config_fail_at((ctx), (ctx)->line, false, (rc), __VA_ARGS__)

/* Quotes and escapes a value for a message, at most max source bytes. */
static const char *
config_q(char *buf, size_t buflen, const char *v, size_t max)
{
	size_t n;

	if (buflen < 3) {
		if (buflen > 0)
			buf[0] = '\0';
		return buf;
	}
	buf[0] = '"';
	n = log_escape(buf + 1, buflen - 2, v, strlen(v), max);
	buf[1 + n] = '"';
	buf[2 + n] = '\0';
	return buf;
}

/* Replaces *dst with a copy of v (n bytes). */
static int
config_set_strn(char **dst, const char *v, size_t n, bool secret)
{
	char *s = strndup(v, n);

	if (s == NULL)
		return -ENOMEM;
	if (secret)
		config_wipe_free(*dst);
	else
		free(*dst);
	*dst = s;
	return 0;
}

static int
config_set_str(char **dst, const char *v, bool secret)
{
	return config_set_strn(dst, v, strlen(v), secret);
}

/* True when s holds a control byte (below 0x20, or DEL). */
static bool
config_has_ctl(const char *s)
{
	for (; *s != '\0'; s++)
		if ((unsigned char)*s < 0x20 || (unsigned char)*s == 0x7f)
			return true;
	return false;
}

/* True when s is made only of letters, digits, '.', '-' and '_'. */
static bool
config_is_name(const char *s, size_t max)
{
	size_t n = 0;

	for (; s[n] != '\0'; n++) {
		char c = s[n];

		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
			(c >= '0' && c <= '9') || c == '.' || c == '-' ||
			c == '_'))
			return false;
	}
	return n > 0 && n <= max;
}

/*
 * The next entry of a list separated by blanks or commas.  Returns its
 * start and *len, or NULL at the end.
 */
static const char *
config_next_token(const char **pp, size_t *len)
{
	const char *p = *pp;
	const char *start;
	const char *seps = " \t,";

	p += strspn(p, seps);
	if (*p == '\0') {
		*pp = p;
		return NULL;
	}
	start = p;
	p += strcspn(p, seps);
	*len = (size_t)(p - start);
	*pp = p;
	return start;
}

/* Copies a list entry into tok (CONFIG_TOKEN_MAX bytes); false if long. */
static bool
config_token_copy(char *tok, const char *start, size_t len)
{
	if (len >= CONFIG_TOKEN_MAX)
		return false;
	memcpy(tok, start, len);
	tok[len] = '\0';
	return true;
}

/*
 * Resolves a secret written as env:NAME or file:PATH (any other value is
 * the secret itself) into *out.  The messages name the variable or the
 * file, never what they hold.
 */
static int
config_resolve_secret(struct config_ctx *ctx, const char *label, const char *v,
    size_t vlen, char **out)
{
	char q[CONFIG_QUOTE_MAX * 4 + 8];
	char name[CONFIG_TOKEN_MAX * 2];
	char buf[CONFIG_SECRET_MAX];
	const char *s;
	FILE *fp = NULL;
	size_t n;
	int rc = 0;

	if (vlen >= 4 && strncmp(v, "env:", 4) == 0) {
		if (vlen - 4 == 0 || vlen - 4 >= sizeof(name))
			return config_fail(ctx, -EINVAL,
			    "%s: env: needs a variable name of 1 to %zu bytes",
			    label, sizeof(name) - 1);
		memcpy(name, v + 4, vlen - 4);
		name[vlen - 4] = '\0';
		s = getenv(name);
		if (s == NULL || *s == '\0') {
			log_escape(
			    q, sizeof(q), name, strlen(name), CONFIG_QUOTE_MAX);
			return config_fail(ctx, -EINVAL,
			    "%s: env:%s: the variable is unset or empty", label,
			    q);
		}
		return config_set_str(out, s, true);
	}
	if (vlen < 5 || strncmp(v, "file:", 5) != 0)
		return config_set_strn(out, v, vlen, true);
	if (vlen - 5 == 0 || vlen - 5 >= sizeof(name))
		return config_fail(ctx, -EINVAL,
		    "%s: file: needs a path of 1 to %zu bytes", label,
		    sizeof(name) - 1);
	memcpy(name, v + 5, vlen - 5);
	name[vlen - 5] = '\0';
	log_escape(q, sizeof(q), name, strlen(name), CONFIG_QUOTE_MAX);
	fp = fopen(name, "re");
	if (fp == NULL || fgets(buf, sizeof(buf), fp) == NULL) {
		if (fp == NULL || ferror(fp))
			rc = config_fail(ctx, -EINVAL,
			    "%s: file:%s: cannot read: %s", label, q,
			    strerror(errno));
		else
			rc = config_fail(ctx, -EINVAL,
			    "%s: file:%s: the file is empty", label, q);
		goto out;
	}
	n = strlen(buf);
	if (n == sizeof(buf) - 1 && buf[n - 1] != '\n' && getc(fp) != EOF) {
		rc = config_fail(ctx, -EINVAL,
		    "%s: file:%s: the first line is longer than %d bytes",
		    label, q, CONFIG_SECRET_MAX - 2);
		goto out;
	}
	if (n > 0 && buf[n - 1] == '\n')
		n--;
	if (n > 0 && buf[n - 1] == '\r')
		n--;
	if (n == 0) {
		rc = config_fail(ctx, -EINVAL,
		    "%s: file:%s: the first line is empty", label, q);
		goto out;
	}
	rc = config_set_strn(out, buf, n, true);
out:
	explicit_bzero(buf, sizeof(buf));
	if (fp != NULL)
		fclose(fp);
	return rc;
}

/*
 * webhook_signing_key: comma-separated keys (several during a rotation),
 * each literal, env:NAME or file:PATH.  An empty entry ("a,,b", a
 * trailing comma) is refused; an empty value means no key.
 */
static int
config_apply_signing(struct config_ctx *ctx, const struct config_key *k,
    const char *label, const char *value, bool resolve)
{
	char *keys[CONFIG_MAX_SIGNING_KEYS] = { NULL };
	char **dst = config_field(ctx->cfg, k);
	size_t *cnt = config_count(ctx->cfg, k);
	const char *p = value;
	size_t n = 0, i;
	int rc = 0;

	if (value[strspn(value, " \t")] == '\0')
		p = NULL;
	while (p != NULL) {
		const char *comma = strchr(p, ',');
		size_t len = comma != NULL ? (size_t)(comma - p) : strlen(p);

		while (len > 0 && (p[len - 1] == ' ' || p[len - 1] == '\t'))
			len--;
		while (len > 0 && (*p == ' ' || *p == '\t')) {
			p++;
			len--;
		}
		if (len == 0) {
			rc = config_fail(ctx, -EINVAL,
			    "%s: an empty key in the comma-separated list",
			    label);
			goto out;
		}
		if (n == CONFIG_MAX_SIGNING_KEYS) {
			rc = config_fail(ctx, -EINVAL, "%s: more than %d keys",
			    label, CONFIG_MAX_SIGNING_KEYS);
			goto out;
		}
		if (resolve)
			rc =
			    config_resolve_secret(ctx, label, p, len, &keys[n]);
		else
			rc = config_set_strn(&keys[n], p, len, true);
		if (rc != 0)
			goto out;
		n++;
		p = comma != NULL ? comma + 1 : NULL;
	}
	for (i = 0; i < *cnt; i++) {
		config_wipe_free(dst[i]);
		dst[i] = NULL;
	}
	for (i = 0; i < n; i++) {
		dst[i] = keys[i];
		keys[i] = NULL;
	}
	*cnt = n;
out:
	for (i = 0; i < CONFIG_MAX_SIGNING_KEYS; i++)
		config_wipe_free(keys[i]);
	return rc;
}

/* allow: networks for cidr_parse(), at least one. */
static int
config_apply_allow(struct config_ctx *ctx, const struct config_key *k,
    const char *label, const char *value)
{
	struct cidr list[CONFIG_MAX_ALLOW];
	char tok[CONFIG_TOKEN_MAX];
	char q[CONFIG_QUOTE_MAX * 4 + 8];
	const char *p = value;
	const char *t;
	size_t n = 0, len;

	while ((t = config_next_token(&p, &len)) != NULL) {
		if (!config_token_copy(tok, t, len) ||
		    cidr_parse(tok, &list[n]) != 0) {
			if (len < CONFIG_TOKEN_MAX)
				config_q(q, sizeof(q), tok, CONFIG_QUOTE_MAX);
			else
				config_q(q, sizeof(q), t, CONFIG_QUOTE_MAX);
			return config_fail(ctx, -EINVAL,
			    "%s: %s is not a network (use 127.0.0.0/8, ::1, "
			    "10.1.2.3, fe80::/10)",
			    label, q);
		}
		if (++n == CONFIG_MAX_ALLOW && *p != '\0' &&
		    p[strspn(p, " \t,")] != '\0')
			return config_fail(ctx, -EINVAL,
			    "%s: more than %d networks", label,
			    CONFIG_MAX_ALLOW);
	}
	if (n == 0)
		return config_fail(ctx, -EINVAL,
		    "%s: no network given (the relay would refuse every "
		    "client; the default is 127.0.0.0/8 ::1)",
		    label);
	memcpy(config_field(ctx->cfg, k), list, n * sizeof(list[0]));
	*config_count(ctx->cfg, k) = n;
	return 0;
}

/* Reads 3 digits at *pp as an SMTP-style code 100..999. */
static bool
config_code(const char **pp, int *out)
{
	const char *p = *pp;
	int i, v = 0;

	for (i = 0; i < 3; i++) {
		if (p[i] < '0' || p[i] > '9')
			return false;
		v = v * 10 + (p[i] - '0');
	}
	if (v < 100)
		return false;
	*pp = p + 3;
	*out = v;
	return true;
}

/* True for an enhanced status code prefix: "5.1" or "5.1.1" (RFC 3463). */
static bool
config_is_enhanced(const char *s)
{
	int parts = 0;

	if (s[0] != '2' && s[0] != '4' && s[0] != '5')
		return false;
	s++;
	while (*s == '.') {
		size_t nd = strspn(s + 1, "0123456789");

		if (nd == 0 || nd > 3)
			return false;
		s += 1 + nd;
		parts++;
	}
	return *s == '\0' && parts >= 1 && parts <= 2;
}

/*
 * The three list kinds of [retry]: reasons (words), codes ("500-554" or
 * "550") and enhanced code prefixes.  Empty lists are allowed.
 */
static int
config_apply_list(struct config_ctx *ctx, const struct config_key *k,
    const char *label, const char *value)
{
	char *words[CONFIG_MAX_LIST] = { NULL };
	struct config_code_range codes[CONFIG_MAX_LIST];
	char tok[CONFIG_TOKEN_MAX];
	char q[CONFIG_QUOTE_MAX * 4 + 8];
	size_t *cnt = config_count(ctx->cfg, k);
	const char *p = value;
	const char *t;
	size_t n = 0, len, i;
	int rc = 0;

	while ((t = config_next_token(&p, &len)) != NULL) {
		bool ok = config_token_copy(tok, t, len);

		config_q(q, sizeof(q), ok ? tok : t, CONFIG_QUOTE_MAX);
		if (n == CONFIG_MAX_LIST) {
			rc = config_fail(ctx, -EINVAL,
			    "%s: more than %d entries", label, CONFIG_MAX_LIST);
			goto out;
		}
		if (k->kind == CONFIG_K_CODES) {
			const char *c = tok;

			codes[n].lo = 0;
			ok = ok && config_code(&c, &codes[n].lo);
			codes[n].hi = codes[n].lo;
			if (ok && *c == '-') {
				c++;
				ok = config_code(&c, &codes[n].hi);
			}
			if (!ok || *c != '\0' || codes[n].lo > codes[n].hi) {
				rc = config_fail(ctx, -EINVAL,
				    "%s: %s is not a code or a range of codes "
				    "(use 550 or 500-554)",
				    label, q);
				goto out;
			}
			n++;
			continue;
		}
		if (k->kind == CONFIG_K_ENHANCED &&
		    (!ok || !config_is_enhanced(tok))) {
			rc = config_fail(ctx, -EINVAL,
			    "%s: %s is not an enhanced status code or prefix "
			    "(use 5.1 or 5.1.1)",
			    label, q);
			goto out;
		}
		if (k->kind == CONFIG_K_WORDS &&
		    (!ok || !config_is_name(tok, CONFIG_TOKEN_MAX))) {
			rc = config_fail(ctx, -EINVAL,
			    "%s: %s is not a reason (letters, digits, '-', "
			    "'_', '.')",
			    label, q);
			goto out;
		}
		words[n] = strdup(tok);
		if (words[n] == NULL) {
			rc = -ENOMEM;
			goto out;
		}
		n++;
	}
	if (k->kind == CONFIG_K_CODES) {
		memcpy(config_field(ctx->cfg, k), codes, n * sizeof(codes[0]));
	} else {
		char **dst = config_field(ctx->cfg, k);

		for (i = 0; i < *cnt; i++)
			free(dst[i]);
		memcpy(dst, words, n * sizeof(words[0]));
		memset(words, 0, sizeof(words));
	}
	*cnt = n;
out:
	for (i = 0; i < CONFIG_MAX_LIST; i++)
		free(words[i]);
	return rc;
}

/* Parses an unsigned decimal: digits only, then strtoull with checks. */
static int
config_parse_uint(const char *s, uint64_t *out)
{
	char *end = NULL;
	unsigned long long v;

	if (*s == '\0' || strspn(s, "0123456789") != strlen(s))
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno == ERANGE)
		return -ERANGE;
	if (end == s || *end != '\0')
		return -EINVAL;
	*out = v;
	return 0;
}

/* True when s is an http:// or https:// URL with a host and no blanks. */
static bool
config_is_url(const char *s)
{
	const char *rest;

	if (strncasecmp(s, "https://", 8) == 0)
		rest = s + 8;
	else if (strncasecmp(s, "http://", 7) == 0)
		rest = s + 7;
	else
		return false;
	if (*rest == '\0' || *rest == '/')
		return false;
	for (; *s != '\0'; s++)
		if ((unsigned char)*s <= 0x20 || (unsigned char)*s >= 0x7f ||
		    *s == '"')
			return false;
	return true;
}

/* Sets hostname from gethostname(2), "localhost" when that fails. */
static int
config_default_hostname(char **dst)
{
	char buf[256];

	if (gethostname(buf, sizeof(buf)) != 0 || buf[0] == '\0')
		return config_set_str(dst, "localhost", false);
	buf[sizeof(buf) - 1] = '\0';
	return config_set_str(dst, buf, false);
}

/* Listen addresses must be numeric (they are bound, not resolved). */
static bool
config_is_listen(const char *v)
{
	char host[INET6_ADDRSTRLEN + 1];
	unsigned char addr[16];
	int port;

	if (config_split_hostport(v, host, sizeof(host), &port) != 0 ||
	    port < 1)
		return false;
	return strcmp(host, "*") == 0 || inet_pton(AF_INET, host, addr) == 1 ||
	    inet_pton(AF_INET6, host, addr) == 1;
}

/*
 * Applies one value to its key.  from_file: the value was written in the
 * file, so secrets are resolved (unless the MAILGUN_* variable overrides
 * the key anyway) and messages carry the line.  Returns 0 or an error
 * already recorded in ctx.
 */
static int
config_apply(struct config_ctx *ctx, const struct config_key *k,
    const char *value, bool from_file)
{
	struct config *cfg = ctx->cfg;
	char label[96];
	char q[CONFIG_QUOTE_MAX * 4 + 8];
	const char *ov;
	uint64_t u = 0;
	int64_t d = 0;
	int rc;

	if (ctx->envname != NULL)
		snprintf(label, sizeof(label), "%s", ctx->envname);
	else
		snprintf(label, sizeof(label), "[%s] %s", k->section, k->name);
	if (k->kind != CONFIG_K_SECRET && k->kind != CONFIG_K_SIGNING)
		config_q(q, sizeof(q), value, CONFIG_QUOTE_MAX);
	else
		q[0] = '\0';

	switch (k->kind) {
	case CONFIG_K_BOOL:
		if (config_parse_bool(value, config_field(cfg, k)) != 0)
			return config_fail(ctx, -EINVAL,
			    "%s: %s is not a boolean (use yes or no)", label,
			    q);
		return 0;
	case CONFIG_K_NONEMPTY:
	case CONFIG_K_STR:
		if (k->kind == CONFIG_K_NONEMPTY && *value == '\0')
			return config_fail(
			    ctx, -EINVAL, "%s: must not be empty", label);
		if (config_has_ctl(value))
			return config_fail(ctx, -EINVAL,
			    "%s: %s holds a control character", label, q);
		return config_set_str(config_field(cfg, k), value, false);
	case CONFIG_K_SECRET:
		ov = k->env != NULL ? getenv(k->env) : NULL;
		if (from_file && ov != NULL && *ov != '\0')
			return 0; /* overridden below: nothing to resolve */
		if (from_file)
			return config_resolve_secret(ctx, label, value,
			    strlen(value), config_field(cfg, k));
		return config_set_str(config_field(cfg, k), value, true);
	case CONFIG_K_SIGNING:
		ov = getenv(k->env);
		if (from_file && ov != NULL && *ov != '\0')
			return 0;
		return config_apply_signing(ctx, k, label, value, from_file);
	case CONFIG_K_SIZE:
		rc = config_parse_size(value, &u);
		if (rc == -EINVAL)
			return config_fail(ctx, rc,
			    "%s: %s is not a size (use 512K, 25M, 1G)", label,
			    q);
		if (rc != 0 || u < (uint64_t)k->min || u > (uint64_t)k->max)
			return config_fail(ctx, -EINVAL,
			    "%s: %s is out of range (%s)", label, q, k->range);
		*(uint64_t *)config_field(cfg, k) = u;
		return 0;
	case CONFIG_K_DURATION:
		rc = time_parse_duration(value, &d);
		if (rc == -EINVAL)
			return config_fail(ctx, rc,
			    "%s: %s is not a duration (use 500ms, 30s, 4m, 2h, "
			    "7d)",
			    label, q);
		if (rc != 0 || d < k->min || d > k->max)
			return config_fail(ctx, -EINVAL,
			    "%s: %s is out of range (%s)", label, q, k->range);
		*(int64_t *)config_field(cfg, k) = d;
		return 0;
	case CONFIG_K_UINT:
		rc = config_parse_uint(value, &u);
		if (rc == -EINVAL)
			return config_fail(
			    ctx, rc, "%s: %s is not a whole number", label, q);
		if (rc != 0 || u < (uint64_t)k->min || u > (uint64_t)k->max)
			return config_fail(ctx, -EINVAL,
			    "%s: %s is out of range (%s)", label, q, k->range);
		*(unsigned *)config_field(cfg, k) = (unsigned)u;
		return 0;
	case CONFIG_K_RATE: {
		char *end = NULL;
		double r;

		if (*value == '\0' ||
		    strspn(value, "0123456789.") != strlen(value))
			return config_fail(ctx, -EINVAL,
			    "%s: %s is not a number from 0 to 1 (use 0.2)",
			    label, q);
		errno = 0;
		r = strtod(value, &end);
		if (end == value || *end != '\0' || errno != 0 ||
		    !isfinite(r) || r < 0.0 || r > 1.0)
			return config_fail(ctx, -EINVAL,
			    "%s: %s is not a number from 0 to 1 (use 0.2)",
			    label, q);
		*(double *)config_field(cfg, k) = r;
		return 0;
	}
	case CONFIG_K_LISTEN:
		if (!config_is_listen(value))
			return config_fail(ctx, -EINVAL,
			    "%s: %s is not an address:port with a port from 1 "
			    "to 65535 (use 127.0.0.1:2525, [::1]:2525 or "
			    "*:2525)",
			    label, q);
		return config_set_str(config_field(cfg, k), value, false);
	case CONFIG_K_HOSTPORT: {
		char host[256];
		int port;

		if (*value != '\0' &&
		    (config_split_hostport(value, host, sizeof(host), &port) !=
			    0 ||
			port < 1 || config_has_ctl(host) ||
			strpbrk(host, " \t") != NULL))
			return config_fail(ctx, -EINVAL,
			    "%s: %s is not host:port with a port from 1 to "
			    "65535 (use smtp.example.com:587)",
			    label, q);
		return config_set_str(config_field(cfg, k), value, false);
	}
	case CONFIG_K_HOSTNAME:
		if (*value == '\0')
			return config_default_hostname(config_field(cfg, k));
		if (!config_is_name(value, 253))
			return config_fail(ctx, -EINVAL,
			    "%s: %s is not a host name", label, q);
		return config_set_str(config_field(cfg, k), value, false);
	case CONFIG_K_ALLOW:
		return config_apply_allow(ctx, k, label, value);
	case CONFIG_K_WORDS:
	case CONFIG_K_CODES:
	case CONFIG_K_ENHANCED:
		return config_apply_list(ctx, k, label, value);
	case CONFIG_K_DOMAIN:
		if (*value != '\0' &&
		    (!config_is_name(value, 253) || value[0] == '.' ||
			value[0] == '-'))
			return config_fail(ctx, -EINVAL,
			    "%s: %s is not a domain name", label, q);
		return config_set_str(config_field(cfg, k), value, false);
	case CONFIG_K_APIBASE: {
		size_t n = strlen(value);

		while (n > 0 && value[n - 1] == '/')
			n--;
		if (!config_is_url(value))
			return config_fail(ctx, -EINVAL,
			    "%s: %s is not an http:// or https:// URL (use "
			    "https://api.mailgun.net or "
			    "https://api.eu.mailgun.net)",
			    label, q);
		return config_set_strn(config_field(cfg, k), value, n, false);
	}
	case CONFIG_K_URL:
		if (*value != '\0' && !config_is_url(value))
			return config_fail(ctx, -EINVAL,
			    "%s: %s is not an http:// or https:// URL", label,
			    q);
		return config_set_str(config_field(cfg, k), value, false);
	case CONFIG_K_HTTPPATH: {
		size_t i, n = strlen(value);
		bool ok = n > 0 && n <= 190 && value[0] == '/';

		for (i = 0; ok && i < n; i++)
			ok = (unsigned char)value[i] > 0x20 &&
			    (unsigned char)value[i] < 0x7f && value[i] != '?' &&
			    value[i] != '#';
		if (!ok)
			return config_fail(ctx, -EINVAL,
			    "%s: %s is not a URL path (use /webhooks/mailgun)",
			    label, q);
		return config_set_str(config_field(cfg, k), value, false);
	}
	case CONFIG_K_TLSMODE:
		if (strcmp(value, "starttls") != 0 &&
		    strcmp(value, "tls") != 0 && strcmp(value, "none") != 0)
			return config_fail(ctx, -EINVAL,
			    "%s: %s is not one of starttls, tls, none", label,
			    q);
		return config_set_str(config_field(cfg, k), value, false);
	case CONFIG_K_LEVEL: {
		static const char *const names[] = { "debug", "info", "warn",
			"error" };
		enum log_level lv;

		if (log_level_parse(value, &lv) != 0 || (int)lv < 0 ||
		    (int)lv > LOG_LEVEL_ERROR)
			return config_fail(ctx, -EINVAL,
			    "%s: %s is not one of debug, info, warn, error",
			    label, q);
		return config_set_str(config_field(cfg, k), names[lv], false);
	}
	case CONFIG_K_ADDRESS:
		if (*value != '\0' &&
		    (strchr(value, '@') == NULL || config_has_ctl(value)))
			return config_fail(ctx, -EINVAL,
			    "%s: %s is not a mail address (use "
			    "ops@example.com)",
			    label, q);
		return config_set_str(config_field(cfg, k), value, false);
	}
	return config_fail(ctx, -EINVAL, "%s: unknown kind of value", label);
}

/* The key called name in section, or NULL. */
static const struct config_key *
config_find_key(const char *section, const char *name)
{
	size_t i;

	for (i = 0; i < CONFIG_NKEYS; i++)
		if (strcmp(config_keys[i].section, section) == 0 &&
		    strcmp(config_keys[i].name, name) == 0)
			return &config_keys[i];
	return NULL;
}

static bool
config_known_section(const char *section)
{
	size_t i;

	for (i = 0; i < sizeof(config_sections) / sizeof(config_sections[0]);
	     i++)
		if (strcmp(config_sections[i], section) == 0)
			return true;
	return false;
}

/* Records "unknown section [x]" for the line being read. */
static void
config_fail_section(struct config_ctx *ctx, const char *section)
{
	char q[CONFIG_QUOTE_MAX * 4 + 8];

	config_q(q, sizeof(q), section, CONFIG_QUOTE_MAX);
	config_fail(ctx, -EINVAL,
	    "unknown section %s (the sections are relay, mailgun, tracker, "
	    "retry, alert, store, log)",
	    q);
}

/*
 * inih's reader (fgets-like): returns one line without its newline in
 * str (num bytes), leading blanks stripped, or NULL at the end of the
 * file.  A line that does not fit, or that holds a NUL byte, is recorded
 * as an error and handed to inih as an empty line, so that inih never
 * splits or cuts it.  Section headers are checked here, because inih
 * calls no handler for a section without keys.
 */
static char *
config_reader_cb(char *str, int num, void *stream)
{
	struct config_ctx *ctx = stream;
	size_t cap = num > 1 ? (size_t)num - 1 : 0;
	size_t n = 0;
	bool any = false, lead = true, toolong = false, nul = false;
	int c;

	while ((c = getc(ctx->fp)) != EOF) {
		any = true;
		if (c == '\n')
			break;
		if (c == '\0')
			nul = true;
		if (lead && (c == ' ' || c == '\t'))
			continue;
		lead = false;
		if (n < cap)
			str[n++] = (char)c;
		else
			toolong = true;
	}
	if (ferror(ctx->fp)) {
		ctx->read_errno = errno != 0 ? errno : EIO;
		return NULL;
	}
	if (!any || num < 1)
		return NULL;
	ctx->lineno++;
	ctx->line = ctx->lineno;
	str[n] = '\0';
	if (toolong || nul) {
		if (toolong)
			config_fail(ctx, -EINVAL,
			    "the line is longer than %zu bytes", cap);
		else
			config_fail(ctx, -EINVAL, "the line holds a NUL byte");
		str[0] = '\0';
	} else if (str[0] == '[') {
		char *close = strchr(str, ']');

		if (close != NULL) {
			*close = '\0';
			if (!config_known_section(str + 1))
				config_fail_section(ctx, str + 1);
			*close = ']';
		}
	}
	return str;
}

/* inih's handler: one key of the file.  Returns 1, or 0 on an error. */
static int
config_handler_cb(
    void *user, const char *section, const char *name, const char *value)
{
	struct config_ctx *ctx = user;
	const struct config_key *k;
	char q[CONFIG_QUOTE_MAX * 4 + 8];
	size_t i;

	ctx->line = ctx->lineno;
	if (ctx->rc != 0)
		return 0;
	config_q(q, sizeof(q), name, CONFIG_QUOTE_MAX);
	if (*section == '\0') {
		config_fail(ctx, -EINVAL,
		    "key %s outside any section (put it under [relay], "
		    "[mailgun], ...)",
		    q);
		return 0;
	}
	if (!config_known_section(section)) {
		config_fail_section(ctx, section);
		return 0;
	}
	k = config_find_key(section, name);
	if (k == NULL) {
		config_fail(ctx, -EINVAL, "[%s] unknown key %s", section, q);
		return 0;
	}
	i = (size_t)(k - config_keys);
	if (ctx->seen[i] != 0) {
		config_fail(ctx, -EINVAL,
		    "[%s] %s: duplicate key (first set on line %d)", k->section,
		    k->name, ctx->seen[i]);
		return 0;
	}
	ctx->seen[i] = ctx->line;
	return config_apply(ctx, k, value, true) == 0;
}

/* Reads ctx->path through inih.  Returns 0 or the error recorded. */
static int
config_load_file(struct config_ctx *ctx)
{
	int ret;

	ctx->fp = fopen(ctx->path, "re");
	if (ctx->fp == NULL)
		return config_fail_at(ctx, 0, false, errno != 0 ? -errno : -EIO,
		    "cannot open: %s", strerror(errno));
	ret = ini_parse_stream(config_reader_cb, ctx, config_handler_cb, ctx);
	ctx->line = 0;
	if (ctx->read_errno != 0)
		config_fail_at(ctx, 0, true, -ctx->read_errno,
		    "cannot read: %s", strerror(ctx->read_errno));
	else if (ret == -2)
		config_fail_at(ctx, 0, true, -ENOMEM, "out of memory");
	else if (ret > 0 && (ctx->rc == 0 || ret < ctx->err_line))
		config_fail_at(ctx, ret, true, -EINVAL,
		    "syntax error: expected [section], key = value or a "
		    "# comment");
	fclose(ctx->fp);
	ctx->fp = NULL;
	return ctx->rc;
}

/* Applies MAILGUN_API_KEY, _DOMAIN, _API_BASE, _WEBHOOK_SIGNING_KEY. */
static int
config_load_env(struct config_ctx *ctx)
{
	size_t i;
	int rc;

	for (i = 0; i < CONFIG_NKEYS; i++) {
		const struct config_key *k = &config_keys[i];
		const char *v;

		if (k->env == NULL)
			continue;
		v = getenv(k->env);
		if (v == NULL || *v == '\0')
			continue;
		ctx->envname = k->env;
		ctx->line = 0;
		rc = config_apply(ctx, k, v, false);
		ctx->envname = NULL;
		if (rc != 0)
			return rc;
	}
	return 0;
}

/* The index of a key in config_keys[]. */
static size_t
config_key_index(const char *section, const char *name)
{
	const struct config_key *k = config_find_key(section, name);

	return k != NULL ? (size_t)(k - config_keys) : 0;
}

/* Formats a duration back in the file's syntax, in its largest unit. */
static const char *
config_fmt_duration(char *buf, size_t buflen, int64_t ms)
{
	static const struct {
		const char *unit;
		int64_t mult;
	} units[] = {
		{ "d", (int64_t)24 * 60 * 60 * 1000 },
		{ "h", (int64_t)60 * 60 * 1000 },
		{ "m", (int64_t)60 * 1000 },
		{ "s", 1000 },
	};
	size_t i;

	for (i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		if (ms % units[i].mult == 0) {
			snprintf(buf, buflen, "%lld%s",
			    (long long)(ms / units[i].mult), units[i].unit);
			return buf;
		}
	}
	snprintf(buf, buflen, "%lldms", (long long)ms);
	return buf;
}

/* The rules that span keys; each error names the line that broke it. */
static int
config_check(struct config_ctx *ctx)
{
	struct config *cfg = ctx->cfg;
	int l1, l2;

	if (cfg->mailgun.retry_min_ms > cfg->mailgun.retry_max_ms) {
		char a[32], b[32];

		l1 = ctx->seen[config_key_index("mailgun", "retry_min")];
		l2 = ctx->seen[config_key_index("mailgun", "retry_max")];
		return config_fail_at(ctx, l1 > l2 ? l1 : l2, false, -EINVAL,
		    "[mailgun] retry_min (%s) is longer than retry_max (%s)",
		    config_fmt_duration(
			a, sizeof(a), cfg->mailgun.retry_min_ms),
		    config_fmt_duration(
			b, sizeof(b), cfg->mailgun.retry_max_ms));
	}
	if ((*cfg->relay.tls_cert == '\0') != (*cfg->relay.tls_key == '\0')) {
		l1 = ctx->seen[config_key_index("relay", "tls_cert")];
		l2 = ctx->seen[config_key_index("relay", "tls_key")];
		return config_fail_at(ctx, l1 > l2 ? l1 : l2, false, -EINVAL,
		    "[relay] tls_cert and tls_key must be set together (%s is "
		    "empty)",
		    *cfg->relay.tls_cert == '\0' ? "tls_cert" : "tls_key");
	}
	if (cfg->relay.require_auth && *cfg->relay.auth_users == '\0') {
		l1 = ctx->seen[config_key_index("relay", "require_auth")];
		l2 = ctx->seen[config_key_index("relay", "auth_users")];
		return config_fail_at(ctx, l1 > l2 ? l1 : l2, false, -EINVAL,
		    "[relay] require_auth = yes needs auth_users (a file of "
		    "user:crypt-hash lines)");
	}
	return 0;
}

int
config_defaults(struct config *cfg)
{
	struct config_ctx ctx;
	size_t i;
	int rc = 0;

	memset(cfg, 0, sizeof(*cfg));
	memset(&ctx, 0, sizeof(ctx));
	ctx.cfg = cfg;
	for (i = 0; i < CONFIG_NKEYS && rc == 0; i++)
		rc = config_apply(
		    &ctx, &config_keys[i], config_keys[i].def, false);
	if (rc != 0) {
		config_free(cfg);
		return rc == -ENOMEM ? rc : -EINVAL;
	}
	return 0;
}

int
config_load(struct config *cfg, const char *path, char *err, size_t errlen)
{
	struct config_ctx ctx;
	int rc;

	if (err != NULL && errlen > 0)
		err[0] = '\0';
	memset(&ctx, 0, sizeof(ctx));
	ctx.cfg = cfg;
	ctx.path = path;
	ctx.err = err;
	ctx.errlen = errlen;
	rc = config_defaults(cfg);
	if (rc != 0) {
		config_fail_at(&ctx, 0, true, rc, "out of memory");
		goto out;
	}
	if (path != NULL) {
		rc = config_load_file(&ctx);
		if (rc != 0)
			goto out;
	}
	rc = config_load_env(&ctx);
	if (rc == 0)
		rc = config_check(&ctx);
	if (rc == 0 && path != NULL) {
		cfg->path = strdup(path);
		if (cfg->path == NULL)
			rc = config_fail_at(
			    &ctx, 0, true, -ENOMEM, "out of memory");
	}
out:
	if (rc == -ENOMEM && ctx.rc == 0)
		config_fail_at(&ctx, ctx.line, true, rc, "out of memory");
	if (rc != 0)
		config_free(cfg);
	return rc;
}

void
config_free(struct config *cfg)
{
	size_t i, j;

	if (cfg == NULL)
		return;
	for (i = 0; i < CONFIG_NKEYS; i++) {
		const struct config_key *k = &config_keys[i];

		switch (k->kind) {
		case CONFIG_K_STR:
		case CONFIG_K_NONEMPTY:
		case CONFIG_K_LISTEN:
		case CONFIG_K_HOSTPORT:
		case CONFIG_K_HOSTNAME:
		case CONFIG_K_DOMAIN:
		case CONFIG_K_APIBASE:
		case CONFIG_K_URL:
		case CONFIG_K_HTTPPATH:
		case CONFIG_K_TLSMODE:
		case CONFIG_K_LEVEL:
		case CONFIG_K_ADDRESS:
			free(*(char **)config_field(cfg, k));
			break;
		case CONFIG_K_SECRET:
			config_wipe_free(*(char **)config_field(cfg, k));
			break;
		case CONFIG_K_SIGNING:
		case CONFIG_K_WORDS:
		case CONFIG_K_ENHANCED: {
			char **list = config_field(cfg, k);
			size_t n = *config_count(cfg, k);

			for (j = 0; j < n; j++)
				config_wipe_free(list[j]);
			break;
		}
		default:
			break;
		}
	}
	free(cfg->path);
	memset(cfg, 0, sizeof(*cfg));
}

/* A size: digits, then K, M or G (powers of 1024), then an optional B. */
int
config_parse_size(const char *s, uint64_t *out)
{
	uint64_t v = 0, mult = 1;
	const char *p = s;

	if (s == NULL || *p < '0' || *p > '9')
		return -EINVAL;
	for (; *p >= '0' && *p <= '9'; p++) {
		unsigned d = (unsigned)(*p - '0');

		if (v > (UINT64_MAX - d) / 10) {
			p += strspn(p, "0123456789");
			if (strspn(p, "KkMmGgBb") != strlen(p) || strlen(p) > 2)
				return -EINVAL;
			return -ERANGE;
		}
		v = v * 10 + d;
	}
	switch (*p) {
	case 'K':
	case 'k':
		mult = 1024;
		p++;
		break;
	case 'M':
	case 'm':
		mult = (uint64_t)1024 * 1024;
		p++;
		break;
	case 'G':
	case 'g':
		mult = (uint64_t)1024 * 1024 * 1024;
		p++;
		break;
	default:
		break;
	}
	if (*p == 'B' || *p == 'b')
		p++;
	if (*p != '\0')
		return -EINVAL;
	if (v > UINT64_MAX / mult)
		return -ERANGE;
	*out = v * mult;
	return 0;
}

int
config_parse_bool(const char *s, bool *out)
{
	static const char *const yes[] = { "yes", "true", "on", "1" };
	static const char *const no[] = { "no", "false", "off", "0" };
	size_t i;

	if (s == NULL)
		return -EINVAL;
	for (i = 0; i < 4; i++) {
		if (strcasecmp(s, yes[i]) == 0) {
			*out = true;
			return 0;
		}
		if (strcasecmp(s, no[i]) == 0) {
			*out = false;
			return 0;
		}
	}
	return -EINVAL;
}

/*
 * "host:port", "[v6]:port" or "*:port".  An IPv6 address must be in
 * brackets (RFC 3986 section 3.2.2), so a bare one is refused rather than
 * guessed at.  The port is 1 to 5 digits, 0..65535; callers that bind or
 * connect refuse 0 themselves.
 */
int
config_split_hostport(const char *s, char *host, size_t hostlen, int *port)
{
	const char *h, *colon, *p;
	size_t hl, nd;
	long v = 0;

	if (s == NULL || host == NULL || hostlen == 0)
		return -EINVAL;
	if (*s == '[') {
		const char *close = strchr(s, ']');

		if (close == NULL || close[1] != ':')
			return -EINVAL;
		h = s + 1;
		hl = (size_t)(close - h);
		colon = close + 1;
		if (memchr(h, '[', hl) != NULL)
			return -EINVAL;
	} else {
		colon = strrchr(s, ':');
		if (colon == NULL)
			return -EINVAL;
		h = s;
		hl = (size_t)(colon - s);
		if (memchr(h, ':', hl) != NULL || memchr(h, ']', hl) != NULL)
			return -EINVAL;
	}
	if (hl == 0 || hl >= hostlen)
		return -EINVAL;
	p = colon + 1;
	nd = strspn(p, "0123456789");
	if (nd == 0 || nd > 5 || p[nd] != '\0')
		return -EINVAL;
	for (; *p != '\0'; p++)
		v = v * 10 + (*p - '0');
	if (v > 65535)
		return -EINVAL;
	memcpy(host, h, hl);
	host[hl] = '\0';
	*port = (int)v;
	return 0;
}
