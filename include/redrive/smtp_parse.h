/*
 * smtp_parse: the SMTP command parser (RFC 5321 4.1, RFC 1870 SIZE,
 * RFC 6152 8BITMIME, RFC 6531 SMTPUTF8).  No I/O: it is fed one command
 * line at a time, without its line ending, and never reads past the
 * length it is given.  Any thread.
 */
#ifndef REDRIVE_SMTP_PARSE_H
#define REDRIVE_SMTP_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* RFC 5321 4.5.3.1: command line 512 octets with CRLF; path 256. */
#define SMTP_LINE_MAX 512
#define SMTP_PATH_MAX 256
#define SMTP_DOMAIN_MAX 255

enum smtp_verb {
	SMTP_VERB_UNKNOWN = 0,
	SMTP_VERB_HELO,
	SMTP_VERB_EHLO,
	SMTP_VERB_MAIL,
	SMTP_VERB_RCPT,
	SMTP_VERB_DATA,
	SMTP_VERB_RSET,
	SMTP_VERB_NOOP,
	SMTP_VERB_QUIT,
	SMTP_VERB_VRFY,
	SMTP_VERB_EXPN,
	SMTP_VERB_HELP,
	SMTP_VERB_STARTTLS,
	SMTP_VERB_AUTH,
	SMTP_VERB_BDAT,
};

/* Results of the parse functions. */
enum smtp_parse_result {
	SMTP_PARSE_OK = 0,
	SMTP_PARSE_SYNTAX = -1,	  /* 501: bad syntax in the arguments */
	SMTP_PARSE_PARAM = -2,	  /* 555: unknown or bad MAIL/RCPT parameter */
	SMTP_PARSE_TOO_LONG = -3, /* 501: a path or domain over its limit */
	SMTP_PARSE_NUL = -4,	  /* 501: a NUL or other control byte */
};

struct smtp_command {
	enum smtp_verb verb;
	const char *arg; /* points into the line, after the verb and one SP */
	size_t arglen;	 /* trailing spaces removed */
};

/*
 * Splits line[0..len) (no CR LF) into verb and argument.  The verb is
 * matched case-insensitively; "MAIL FROM:" and "RCPT TO:" keep everything
 * after the verb in arg.  Unknown verbs give SMTP_VERB_UNKNOWN.  Returns
 * SMTP_PARSE_OK, or SMTP_PARSE_NUL when the line holds a NUL byte.
 */
int smtp_parse_command(const char *line, size_t len, struct smtp_command *out);

struct smtp_mail_params {
	bool has_size;
	uint64_t size;	/* SIZE=, RFC 1870 */
	bool body_8bit; /* BODY=8BITMIME */
	bool smtputf8;	/* SMTPUTF8 */
};

/*
 * Parses the argument of MAIL ("FROM:<a@b> SIZE=123 BODY=8BITMIME").
 * Accepts "<>" (the null path; *addr empty), strips a source route
 * ("<@x,@y:a@b>"), accepts a space after the colon.  addr receives the
 * mailbox (at most SMTP_PATH_MAX bytes plus NUL; addrlen is its buffer
 * size).  Non-ASCII in the mailbox is accepted only when SMTPUTF8 is
 * among the parameters, and must be valid UTF-8.  Returns an
 * smtp_parse_result.
 */
int smtp_parse_mail(const char *arg, size_t arglen, char *addr, size_t addrlen,
    struct smtp_mail_params *params);

/*
 * Parses the argument of RCPT ("TO:<a@b>").  "<postmaster>" (any case) is
 * accepted and returned as "postmaster".  No RCPT parameters are supported
 * (any is SMTP_PARSE_PARAM).  utf8: the transaction declared SMTPUTF8.
 * Returns an smtp_parse_result.
 */
int smtp_parse_rcpt(
    const char *arg, size_t arglen, bool utf8, char *addr, size_t addrlen);

/*
 * Checks the argument of HELO/EHLO: a domain or an address literal
 * ("[127.0.0.1]", "[IPv6:...]"); lenient about the domain's form (clients
 * send odd names) but not about control bytes or its length.  Only the
 * first word counts (what follows a space is ignored); empty is an error.
 * Returns an smtp_parse_result.
 */
int smtp_parse_helo(const char *arg, size_t arglen);

/*
 * Finds the end of the next command line in buf[0..len).  Lines end in
 * CRLF; a bare LF is taken as a line end too (commands only, never in
 * DATA).  Returns the number of bytes up to and including the line end and
 * sets *linelen to the length without it; returns 0 when no line end is in
 * the buffer yet.
 */
size_t smtp_parse_line(const char *buf, size_t len, size_t *linelen);

#endif
