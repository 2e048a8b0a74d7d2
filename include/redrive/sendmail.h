/*
 * sendmail: the parts of redrive-sendmail, the sendmail-compatible
 * submission command.  sendmail_msg reads a message from a stream (line
 * ends made CR LF, the "." line rule of sendmail), parses RFC 5322 address
 * lists, and fixes up the header section (Bcc removed; From, Date and
 * Message-ID added when missing).  sendmail_smtp is a small blocking SMTP
 * client with a timeout per reply.  Single-threaded; no libuv.
 */
#ifndef REDRIVE_SENDMAIL_H
#define REDRIVE_SENDMAIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* RFC 5321 4.5.3.1.3: a path is at most 256 octets, brackets included. */
#define SENDMAIL_ADDR_MAX 254
#define SENDMAIL_RCPT_MAX 10000
#define SENDMAIL_REPLY_MAX 2048

/* A growable byte buffer; the owner frees data. */
struct sendmail_buf {
	char *data;
	size_t len;
	size_t cap;
};

/* A list of unique recipient addresses (malloc'd strings). */
struct sendmail_rcpts {
	char **addr;
	size_t n;
	size_t cap;
};

/* Appends n bytes; returns 0 or -ENOMEM. */
int sendmail_buf_add(struct sendmail_buf *b, const void *p, size_t n);

/* Frees the buffer's bytes; NULL-safe; leaves it empty. */
void sendmail_buf_free(struct sendmail_buf *b);

/* Frees every address; NULL-safe; leaves the list empty. */
void sendmail_rcpts_free(struct sendmail_rcpts *r);

/*
 * Reads a message from in into out (which must be empty): every line end
 * (LF or CR LF) becomes CR LF, a last line without one gets one.  dot_ends:
 * a line holding only "." ends the input (sendmail without -i).  A first
 * line "From " (an mbox separator) is dropped.  Returns 0, -EFBIG when the
 * message is longer than max bytes, -EIO on a read error, -ENOMEM.
 */
int sendmail_msg_read(
    FILE *in, bool dot_ends, uint64_t max, struct sendmail_buf *out);

/*
 * Parses an RFC 5322 3.4 address list (mailboxes, "Name <a@b>", groups,
 * quoted strings, comments) of len bytes and adds each address to r, once
 * (compared without case).  An address without "@" gets "@" and
 * default_domain appended (sendmail qualifies local names).  Returns 0,
 * -EINVAL for an address that is too long or holds control characters,
 * -E2BIG past SENDMAIL_RCPT_MAX recipients, -ENOMEM.
 */
int sendmail_addr_parse(const char *s, size_t len, const char *default_domain,
    struct sendmail_rcpts *r);

/* What sendmail_msg_prepare needs to know. */
struct sendmail_msg_opts {
	bool extract;	       /* -t: To, Cc and Bcc name the recipients */
	const char *from_addr; /* the address of an added From */
	const char *full_name; /* -F, or NULL */
	const char *hostname;  /* for Message-ID and unqualified names */
	struct sendmail_rcpts *rcpts; /* -t adds to it */
};

/*
 * Rewrites msg (CR LF lines, from sendmail_msg_read) in place: removes
 * every Bcc field (after reading it when extract is set), adds From, Date
 * and Message-ID at the end of the header section when the message has
 * none, and separates a body that does not follow an empty line.  Returns
 * 0, -EINVAL (a bad address in a header), -E2BIG or -ENOMEM.
 */
int sendmail_msg_prepare(
    struct sendmail_buf *msg, const struct sendmail_msg_opts *o);

/* A connection to the relay. */
struct sendmail_smtp {
	int fd;
	int timeout_ms;
	char rbuf[4096];
	size_t rlen;
	char reply[SENDMAIL_REPLY_MAX]; /* the last reply, lines joined */
	int code;			/* its code */
	bool ext_size;			/* EHLO announced SIZE */
};

/*
 * Connects to host:port (a name or a literal; "*", "0.0.0.0" and "::" mean
 * the loopback) within timeout_ms.  Returns 0 or a negative errno code;
 * err then holds the reason.
 */
int sendmail_smtp_connect(struct sendmail_smtp *c, const char *host, int port,
    int timeout_ms, char *err, size_t errlen);

/*
 * Sends line (without CR LF; NULL sends nothing) and reads the reply into
 * c->code and c->reply.  Returns 0, -ETIMEDOUT, -EPROTO (a malformed
 * reply), -ECONNRESET (the relay closed the connection), or another
 * negative errno code.
 */
int sendmail_smtp_cmd(struct sendmail_smtp *c, const char *line);

/*
 * Sends the message msg (CR LF lines) as DATA content (RFC 5321 4.5.2:
 * a leading "." doubled) and the final ".", then reads the reply.  Returns
 * as sendmail_smtp_cmd.
 */
int sendmail_smtp_data(struct sendmail_smtp *c, const char *msg, size_t len);

/* Closes the connection; safe to call twice. */
void sendmail_smtp_close(struct sendmail_smtp *c);

#endif
