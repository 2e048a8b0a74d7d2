/*
 * smtp_parse: the SMTP command parser (smtp_parse.h).  It owns the syntax
 * of command lines (RFC 5321 4.1.1), of the paths in MAIL and RCPT (RFC
 * 5321 4.1.2, with RFC 6531's UTF-8 extensions), of the MAIL parameters
 * redrive offers (RFC 1870 SIZE, RFC 6152 BODY, RFC 6531 SMTPUTF8) and the
 * size limits of RFC 5321 4.5.3.1.  It does no I/O and no allocation,
 * never recurses, never reads past the length it is given and never writes
 * past the buffer it is given, so it can be fed any bytes (tests, fuzzers).
 *
 * Where clients in the wild differ from the RFC the parser is lenient in
 * documented ways: several spaces after the verb, trailing spaces, one
 * space after "FROM:"/"TO:", dots anywhere in a dot-string local part,
 * underscores in domain labels, and anything after the first word of a
 * HELO/EHLO argument.  It is strict where leniency would hurt: control
 * bytes, paths without angle brackets, invalid UTF-8, and lengths.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "redrive/smtp_parse.h"

/* RFC 5321 4.5.3.1.1: the local part of a mailbox is at most 64 octets. */
#define SMTP_PARSE_LOCAL_MAX 64

/* The verbs of RFC 5321 4.1.1 and of the extensions we know about. */
struct smtp_parse_verb {
	const char *name;
	enum smtp_verb verb;
};

static const struct smtp_parse_verb smtp_parse_verbs[] = {
	{ "HELO", SMTP_VERB_HELO },
	{ "EHLO", SMTP_VERB_EHLO },
	{ "MAIL", SMTP_VERB_MAIL },
	{ "RCPT", SMTP_VERB_RCPT },
	{ "DATA", SMTP_VERB_DATA },
	{ "RSET", SMTP_VERB_RSET },
	{ "NOOP", SMTP_VERB_NOOP },
	{ "QUIT", SMTP_VERB_QUIT },
	{ "VRFY", SMTP_VERB_VRFY },
	{ "EXPN", SMTP_VERB_EXPN },
	{ "HELP", SMTP_VERB_HELP },
	{ "STARTTLS", SMTP_VERB_STARTTLS },
	{ "AUTH", SMTP_VERB_AUTH },
	{ "BDAT", SMTP_VERB_BDAT },
};

/* What smtp_parse_path() found between the angle brackets. */
struct smtp_parse_path {
	size_t mbox;	 /* the mailbox, after any source route */
	size_t mboxlen;	 /* 0 for the null path "<>" */
	size_t locallen; /* octets of the local part */
	bool has_domain; /* "@" domain followed the local part */
	bool quoted;	 /* the local part was a quoted string */
	bool route;	 /* a source route was stripped */
	bool eight_bit;	 /* the mailbox holds UTF-8 beyond ASCII */
};

/* ASCII-only case folding: the C locale's, whatever the process's is. */
static unsigned char
smtp_parse_lower(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return (unsigned char)(c - 'A' + 'a');
	return c;
}

/* True when s[0..n) equals the NUL-terminated lit, ignoring ASCII case. */
static bool
smtp_parse_ieq(const char *s, size_t n, const char *lit)
{
	size_t i;

	for (i = 0; i < n; i++) {
		if (lit[i] == '\0' ||
		    smtp_parse_lower((unsigned char)s[i]) !=
			smtp_parse_lower((unsigned char)lit[i]))
			return false;
	}
	return lit[n] == '\0';
}

/* True when s[0..n) starts with lit, ignoring ASCII case. */
static bool
smtp_parse_iprefix(const char *s, size_t n, const char *lit)
{
	size_t l = strlen(lit);

	return n >= l && smtp_parse_ieq(s, l, lit);
}

static bool
smtp_parse_is_alnum(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    (c >= '0' && c <= '9');
}

/* RFC 5321 4.1.2 / RFC 5322 3.2.3 atext. */
static bool
smtp_parse_is_atext(unsigned char c)
{
	return smtp_parse_is_alnum(c) ||
	    (c != '\0' && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL);
}

/* RFC 5321 4.1.2 qtextSMTP: %d32-33 / %d35-91 / %d93-126. */
static bool
smtp_parse_is_qtext(unsigned char c)
{
	return c >= 32 && c <= 126 && c != '"' && c != '\\';
}

/* RFC 5321 4.1.3 dcontent: %d33-90 / %d94-126. */
static bool
smtp_parse_is_dcontent(unsigned char c)
{
	return c >= 33 && c <= 126 && c != '[' && c != '\\' && c != ']';
}

/* A control byte (C0 or DEL), NUL included. */
static bool
smtp_parse_is_ctl(unsigned char c)
{
	return c < 0x20 || c == 0x7f;
}

/*
 * Returns the length of the well-formed UTF-8 sequence (RFC 3629 4) at
 * s[0..n) that encodes one non-ASCII character, or 0 when there is none:
 * no overlong forms, no surrogates, nothing above U+10FFFF.
 */
static size_t
smtp_parse_utf8_len(const char *s, size_t n)
{
	const unsigned char *u = (const unsigned char *)s;
	unsigned char lo = 0x80, hi = 0xbf;
	size_t len, i;

	if (n == 0 || u[0] < 0xc2 || u[0] > 0xf4)
		return 0;
	if (u[0] < 0xe0) {
		len = 2;
	} else if (u[0] < 0xf0) {
		len = 3;
		if (u[0] == 0xe0)
			lo = 0xa0;
		else if (u[0] == 0xed)
			hi = 0x9f;
	} else {
		len = 4;
		if (u[0] == 0xf0)
			lo = 0x90;
		else if (u[0] == 0xf4)
			hi = 0x8f;
	}
	if (n < len || u[1] < lo || u[1] > hi)
		return 0;
	for (i = 2; i < len; i++) {
		if (u[i] < 0x80 || u[i] > 0xbf)
			return 0;
	}
	return len;
}

/* Returns SMTP_PARSE_NUL when s[0..n) holds a control byte, else OK. */
static int
smtp_parse_check_ctl(const char *s, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		if (smtp_parse_is_ctl((unsigned char)s[i]))
			return SMTP_PARSE_NUL;
	}
	return SMTP_PARSE_OK;
}

/*
 * Splits a command line (RFC 5321 4.1.1): the verb, then end of line or
 * SP and the argument.  Leniency: several spaces after the verb and
 * trailing spaces (and tabs) are dropped.  A NUL anywhere gives SMTP_PARSE_NUL
 * (out is filled all the same); other control bytes are left to the argument
 * parsers, which reject them.
 */
int
smtp_parse_command(const char *line, size_t len, struct smtp_command *out)
{
	size_t v, a, e, i;

	out->verb = SMTP_VERB_UNKNOWN;
	out->arg = "";
	out->arglen = 0;
	if (len == 0)
		return SMTP_PARSE_OK;
	for (v = 0; v < len && line[v] != ' '; v++)
		;
	for (i = 0; i < sizeof(smtp_parse_verbs) / sizeof(smtp_parse_verbs[0]);
	     i++) {
		if (smtp_parse_ieq(line, v, smtp_parse_verbs[i].name)) {
			out->verb = smtp_parse_verbs[i].verb;
			break;
		}
	}
	for (a = v; a < len && line[a] == ' '; a++)
		;
	for (e = len; e > a && (line[e - 1] == ' ' || line[e - 1] == '\t'); e--)
		;
	out->arg = line + a;
	out->arglen = e - a;
	if (memchr(line, '\0', len) != NULL)
		return SMTP_PARSE_NUL;
	return SMTP_PARSE_OK;
}

/*
 * Parses a Domain (RFC 5321 4.1.2) at s[*pos..n): dot-separated labels of
 * letters, digits and inner hyphens (and, leniently, underscores); also
 * U-labels (RFC 6531 3.3), which must be valid UTF-8 (the callers decide
 * whether 8-bit is allowed at all).  No empty label, no hyphen at either
 * end of a label, no trailing dot.  Advances *pos past it; *eight_bit is
 * set when 8-bit bytes were seen.
 */
static int
smtp_parse_domain(const char *s, size_t n, size_t *pos, bool *eight_bit)
{
	size_t i = *pos, label = 0, l;
	unsigned char c, prev = '.';

	while (i < n) {
		c = (unsigned char)s[i];
		if ((c == '-' && prev == '.') || (c == '.' && prev == '-'))
			return SMTP_PARSE_SYNTAX;
		if (smtp_parse_is_alnum(c) || c == '-' || c == '_') {
			i++;
			label++;
		} else if (c >= 0x80) {
			l = smtp_parse_utf8_len(s + i, n - i);
			if (l == 0)
				return SMTP_PARSE_SYNTAX;
			*eight_bit = true;
			i += l;
			label += l;
		} else if (c == '.' && label > 0) {
			i++;
			label = 0;
		} else {
			break;
		}
		prev = c;
	}
	if (label == 0 || prev == '-')
		return SMTP_PARSE_SYNTAX;
	*pos = i;
	return SMTP_PARSE_OK;
}

/*
 * Parses the local part of a mailbox (RFC 5321 4.1.2 Local-part, RFC 6531
 * 3.3) at s[*pos..n): a quoted string ("a b", backslash escapes kept as
 * sent) or a dot-string.  Leniency: dots are not checked for placement in
 * a dot-string ("a..b", "a."; some mobile carriers hand these out).
 */
static int
smtp_parse_local(
    const char *s, size_t n, size_t *pos, struct smtp_parse_path *p)
{
	size_t i = *pos, l;
	unsigned char c;

	if (i < n && s[i] == '"') {
		p->quoted = true;
		for (i++;; i++) {
			if (i >= n)
				return SMTP_PARSE_SYNTAX;
			c = (unsigned char)s[i];
			if (c == '"')
				break;
			if (c == '\\') {
				/* quoted-pairSMTP = %d92 %d32-126 */
				i++;
				if (i >= n || s[i] < 32 || s[i] > 126)
					return SMTP_PARSE_SYNTAX;
			} else if (c >= 0x80) {
				l = smtp_parse_utf8_len(s + i, n - i);
				if (l == 0)
					return SMTP_PARSE_SYNTAX;
				p->eight_bit = true;
				i += l - 1;
			} else if (!smtp_parse_is_qtext(c)) {
				return SMTP_PARSE_SYNTAX;
			}
		}
		i++;
	} else {
		while (i < n) {
			c = (unsigned char)s[i];
			if (smtp_parse_is_atext(c) || c == '.') {
				i++;
			} else if (c >= 0x80) {
				l = smtp_parse_utf8_len(s + i, n - i);
				if (l == 0)
					return SMTP_PARSE_SYNTAX;
				p->eight_bit = true;
				i += l;
			} else {
				break;
			}
		}
		if (i == *pos)
			return SMTP_PARSE_SYNTAX;
	}
	*pos = i;
	return SMTP_PARSE_OK;
}

/*
 * Parses a Path (RFC 5321 4.1.2) at s[*pos..n):
 *
 *	Path = "<" [ A-d-l ":" ] Mailbox ">"	(or "<>")
 *	Mailbox = Local-part [ "@" ( Domain / address-literal ) ]
 *
 * The domain is optional here; the callers decide when it may be absent.
 * The source route (A-d-l) is checked and skipped.  Then the limits of
 * RFC 5321 4.5.3.1: local part 64, domain 255, the whole path with its
 * brackets 256 octets.  On success *pos is just past the ">".
 */
static int
smtp_parse_path(const char *s, size_t n, size_t *pos, struct smtp_parse_path *p)
{
	size_t i = *pos, start = *pos, dom;
	int rc;

	memset(p, 0, sizeof(*p));
	if (i >= n || s[i] != '<')
		return SMTP_PARSE_SYNTAX;
	i++;
	if (i < n && s[i] == '>') {
		p->mbox = i;
		*pos = i + 1;
		return SMTP_PARSE_OK;
	}
	/* A-d-l = At-domain *( "," At-domain ); At-domain = "@" Domain */
	if (i < n && s[i] == '@') {
		p->route = true;
		for (;;) {
			if (i >= n || s[i] != '@')
				return SMTP_PARSE_SYNTAX;
			i++;
			rc = smtp_parse_domain(s, n, &i, &p->eight_bit);
			if (rc != SMTP_PARSE_OK)
				return rc;
			if (i < n && s[i] == ',') {
				i++;
				continue;
			}
			if (i < n && s[i] == ':') {
				i++;
				break;
			}
			return SMTP_PARSE_SYNTAX;
		}
	}
	p->mbox = i;
	rc = smtp_parse_local(s, n, &i, p);
	if (rc != SMTP_PARSE_OK)
		return rc;
	p->locallen = i - p->mbox;
	dom = i;
	if (i < n && s[i] == '@') {
		p->has_domain = true;
		i++;
		dom = i;
		if (i < n && s[i] == '[') {
			/* RFC 5321 4.1.3: "[" 1*dcontent "]" */
			for (i++; i < n &&
			     smtp_parse_is_dcontent((unsigned char)s[i]);
			     i++)
				;
			if (i >= n || s[i] != ']' || i == dom + 1)
				return SMTP_PARSE_SYNTAX;
			i++;
		} else {
			rc = smtp_parse_domain(s, n, &i, &p->eight_bit);
			if (rc != SMTP_PARSE_OK)
				return rc;
		}
	}
	if (i >= n || s[i] != '>')
		return SMTP_PARSE_SYNTAX;
	p->mboxlen = i - p->mbox;
	i++;
	if (p->locallen > SMTP_PARSE_LOCAL_MAX ||
	    (p->has_domain && i - 1 - dom > SMTP_DOMAIN_MAX) ||
	    i - start > SMTP_PATH_MAX)
		return SMTP_PARSE_TOO_LONG;
	*pos = i;
	return SMTP_PARSE_OK;
}

/*
 * Matches "FROM:" or "TO:" (any case) and the one optional space after the
 * colon that many clients send.  Advances *pos to the path.
 */
static int
smtp_parse_prefix(const char *s, size_t n, const char *prefix, size_t *pos)
{
	size_t i;

	if (!smtp_parse_iprefix(s, n, prefix))
		return SMTP_PARSE_SYNTAX;
	i = strlen(prefix);
	if (i < n && s[i] == ' ')
		i++;
	*pos = i;
	return SMTP_PARSE_OK;
}

/*
 * Copies the mailbox into addr[0..addrlen) as a C string.  A buffer too
 * small for it gives SMTP_PARSE_TOO_LONG (nothing is cut silently).
 */
static int
smtp_parse_copy(const char *src, size_t len, char *addr, size_t addrlen)
{
	if (addr == NULL || addrlen == 0 || len >= addrlen)
		return SMTP_PARSE_TOO_LONG;
	if (len > 0)
		memcpy(addr, src, len);
	addr[len] = '\0';
	return SMTP_PARSE_OK;
}

/*
 * Checks one esmtp-param (RFC 5321 4.1.2) s[0..n):
 *
 *	esmtp-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-")
 *	esmtp-value   = 1*(%d33-60 / %d62-126)
 *
 * and splits it at "=": *klen is the keyword's length, *val the value's
 * offset (n when there is no value).
 */
static int
smtp_parse_param_split(const char *s, size_t n, size_t *klen, size_t *val)
{
	size_t i;
	unsigned char c;

	for (i = 0; i < n && s[i] != '='; i++) {
		c = (unsigned char)s[i];
		if (!smtp_parse_is_alnum(c) && (c != '-' || i == 0))
			return SMTP_PARSE_PARAM;
	}
	if (i == 0)
		return SMTP_PARSE_PARAM;
	*klen = i;
	*val = n;
	if (i == n)
		return SMTP_PARSE_OK;
	if (i + 1 == n)
		return SMTP_PARSE_PARAM;
	*val = i + 1;
	for (i++; i < n; i++) {
		c = (unsigned char)s[i];
		if (c < 33 || c > 126 || c == '=')
			return SMTP_PARSE_PARAM;
	}
	return SMTP_PARSE_OK;
}

/* RFC 1870 6: size-value ::= 1*20DIGIT, which must fit in 64 bits. */
static int
smtp_parse_size(const char *s, size_t n, uint64_t *out)
{
	uint64_t v = 0;
	size_t i;

	if (n == 0 || n > 20)
		return SMTP_PARSE_PARAM;
	for (i = 0; i < n; i++) {
		unsigned d;

		if (s[i] < '0' || s[i] > '9')
			return SMTP_PARSE_PARAM;
		d = (unsigned)(s[i] - '0');
		if (v > (UINT64_MAX - d) / 10)
			return SMTP_PARSE_PARAM;
		v = v * 10 + d;
	}
	*out = v;
	return SMTP_PARSE_OK;
}

/*
 * Applies one MAIL parameter s[0..n) to params.  Known: SIZE=n (RFC 1870),
 * BODY=7BIT|8BITMIME (RFC 6152), SMTPUTF8 without a value (RFC 6531 3.4).
 * Anything else, a repeat (bodyseen tracks BODY) or a bad value is
 * SMTP_PARSE_PARAM.
 */
static int
smtp_parse_mail_param(
    const char *s, size_t n, struct smtp_mail_params *params, bool *bodyseen)
{
	size_t klen, val;
	int rc;

	rc = smtp_parse_param_split(s, n, &klen, &val);
	if (rc != SMTP_PARSE_OK)
		return rc;
	if (smtp_parse_ieq(s, klen, "SIZE")) {
		if (params->has_size)
			return SMTP_PARSE_PARAM;
		rc = smtp_parse_size(s + val, n - val, &params->size);
		if (rc != SMTP_PARSE_OK)
			return rc;
		params->has_size = true;
		return SMTP_PARSE_OK;
	}
	if (smtp_parse_ieq(s, klen, "BODY")) {
		if (*bodyseen)
			return SMTP_PARSE_PARAM;
		*bodyseen = true;
		if (smtp_parse_ieq(s + val, n - val, "8BITMIME"))
			params->body_8bit = true;
		else if (!smtp_parse_ieq(s + val, n - val, "7BIT"))
			return SMTP_PARSE_PARAM;
		return SMTP_PARSE_OK;
	}
	if (smtp_parse_ieq(s, klen, "SMTPUTF8")) {
		if (params->smtputf8 || val != n)
			return SMTP_PARSE_PARAM;
		params->smtputf8 = true;
		return SMTP_PARSE_OK;
	}
	return SMTP_PARSE_PARAM;
}

/*
 * Walks the parameters after a path, s[*pos..n): each one follows one or
 * more SP (trailing spaces allowed).  A byte right after ">" that is not SP
 * is a syntax error.  params may be NULL (RCPT): then any parameter is
 * SMTP_PARSE_PARAM.
 */
static int
smtp_parse_params(
    const char *s, size_t n, size_t pos, struct smtp_mail_params *params)
{
	bool bodyseen = false;
	size_t i = pos, start;
	int rc;

	while (i < n) {
		if (s[i] != ' ')
			return SMTP_PARSE_SYNTAX;
		while (i < n && s[i] == ' ')
			i++;
		if (i == n)
			break;
		start = i;
		while (i < n && s[i] != ' ')
			i++;
		if (params == NULL)
			return SMTP_PARSE_PARAM;
		rc = smtp_parse_mail_param(
		    s + start, i - start, params, &bodyseen);
		if (rc != SMTP_PARSE_OK)
			return rc;
	}
	return SMTP_PARSE_OK;
}

/*
 * MAIL FROM:<reverse-path> [SP Mail-parameters] (RFC 5321 4.1.1.2).  The
 * order of the checks fixes which error wins: control bytes (NUL), then
 * the path (SYNTAX, TOO_LONG), then the parameters (PARAM), then 8-bit in
 * the address without SMTPUTF8 (SYNTAX; RFC 6531 3.4).
 */
int
smtp_parse_mail(const char *arg, size_t arglen, char *addr, size_t addrlen,
    struct smtp_mail_params *params)
{
	struct smtp_parse_path p;
	size_t i;
	int rc;

	memset(params, 0, sizeof(*params));
	if (addr != NULL && addrlen > 0)
		addr[0] = '\0';
	rc = smtp_parse_check_ctl(arg, arglen);
	if (rc != SMTP_PARSE_OK)
		return rc;
	rc = smtp_parse_prefix(arg, arglen, "FROM:", &i);
	if (rc != SMTP_PARSE_OK)
		return rc;
	rc = smtp_parse_path(arg, arglen, &i, &p);
	if (rc != SMTP_PARSE_OK)
		return rc;
	/* A mailbox needs its domain; "<>" is the null reverse-path. */
	if (p.mboxlen > 0 && !p.has_domain)
		return SMTP_PARSE_SYNTAX;
	rc = smtp_parse_params(arg, arglen, i, params);
	if (rc != SMTP_PARSE_OK)
		return rc;
	if (p.eight_bit && !params->smtputf8)
		return SMTP_PARSE_SYNTAX;
	return smtp_parse_copy(arg + p.mbox, p.mboxlen, addr, addrlen);
}

/*
 * RCPT TO:<forward-path> (RFC 5321 4.1.1.3).  "<Postmaster>" without a
 * domain is accepted in any case and returned as "postmaster" (RFC 5321
 * 4.5.1); the null path is not a forward-path.  No parameter is offered.
 */
int
smtp_parse_rcpt(
    const char *arg, size_t arglen, bool utf8, char *addr, size_t addrlen)
{
	struct smtp_parse_path p;
	size_t i;
	int rc;

	if (addr != NULL && addrlen > 0)
		addr[0] = '\0';
	rc = smtp_parse_check_ctl(arg, arglen);
	if (rc != SMTP_PARSE_OK)
		return rc;
	rc = smtp_parse_prefix(arg, arglen, "TO:", &i);
	if (rc != SMTP_PARSE_OK)
		return rc;
	rc = smtp_parse_path(arg, arglen, &i, &p);
	if (rc != SMTP_PARSE_OK)
		return rc;
	if (p.mboxlen == 0)
		return SMTP_PARSE_SYNTAX;
	if (!p.has_domain &&
	    (p.quoted || p.route ||
		!smtp_parse_ieq(arg + p.mbox, p.mboxlen, "postmaster")))
		return SMTP_PARSE_SYNTAX;
	rc = smtp_parse_params(arg, arglen, i, NULL);
	if (rc != SMTP_PARSE_OK)
		return rc;
	if (p.eight_bit && !utf8)
		return SMTP_PARSE_SYNTAX;
	if (!p.has_domain)
		return smtp_parse_copy("postmaster", 10, addr, addrlen);
	return smtp_parse_copy(arg + p.mbox, p.mboxlen, addr, addrlen);
}

/*
 * HELO/EHLO argument (RFC 5321 4.1.1.1): the first word must be a domain
 * or an address literal.  Leniency: the domain's form is not checked (any
 * printable ASCII, or valid UTF-8), and words after the first are ignored
 * (some clients append a comment).  Control bytes anywhere are refused.
 */
int
smtp_parse_helo(const char *arg, size_t arglen)
{
	size_t s, e, i, l;
	int rc;

	rc = smtp_parse_check_ctl(arg, arglen);
	if (rc != SMTP_PARSE_OK)
		return rc;
	for (s = 0; s < arglen && arg[s] == ' '; s++)
		;
	for (e = s; e < arglen && arg[e] != ' '; e++)
		;
	if (e == s)
		return SMTP_PARSE_SYNTAX;
	if (e - s > SMTP_DOMAIN_MAX)
		return SMTP_PARSE_TOO_LONG;
	if (arg[s] == '[') {
		/* address-literal, RFC 5321 4.1.3: "[" 1*dcontent "]" */
		if (e - s < 3 || arg[e - 1] != ']')
			return SMTP_PARSE_SYNTAX;
		for (i = s + 1; i < e - 1; i++) {
			if (!smtp_parse_is_dcontent((unsigned char)arg[i]))
				return SMTP_PARSE_SYNTAX;
		}
		return SMTP_PARSE_OK;
	}
	for (i = s; i < e;) {
		if ((unsigned char)arg[i] < 0x80) {
			i++;
			continue;
		}
		l = smtp_parse_utf8_len(arg + i, e - i);
		if (l == 0)
			return SMTP_PARSE_SYNTAX;
		i += l;
	}
	return SMTP_PARSE_OK;
}

/*
 * Finds the next command line.  RFC 5321 2.3.8 says CRLF; a bare LF is
 * taken too, for commands only (the DATA reader never does).  The CR
 * before the LF, if any, is not part of the line.
 */
size_t
smtp_parse_line(const char *buf, size_t len, size_t *linelen)
{
	const char *lf;
	size_t n;

	*linelen = 0;
	if (len == 0)
		return 0;
	lf = memchr(buf, '\n', len);
	if (lf == NULL)
		return 0;
	n = (size_t)(lf - buf);
	*linelen = n > 0 && buf[n - 1] == '\r' ? n - 1 : n;
	return n + 1;
}
