/*
 * sendmail_smtp: the small blocking SMTP client of redrive-sendmail.  One
 * connection to the local relay, one command at a time (no pipelining),
 * every reply awaited with poll(2) and a timeout (30 s by default: the
 * relay answers at once, a longer wait means it is stuck).  Replies are
 * parsed as RFC 5321 4.2: "NNN-text" lines continue, "NNN text" ends;
 * every line of a reply must carry the same code.
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include "redrive/sendmail.h"

/* Milliseconds of CLOCK_MONOTONIC. */
static long long
sendmail_smtp_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * Waits until fd is ready for events or the deadline passes.  Returns 0,
 * -ETIMEDOUT or a negative errno code.
 */
static int
sendmail_smtp_wait(int fd, short events, long long deadline)
{
	struct pollfd pfd;
	long long left;
	int n;

	for (;;) {
		left = deadline - sendmail_smtp_now_ms();
		if (left <= 0)
			return -ETIMEDOUT;
		pfd.fd = fd;
		pfd.events = events;
		pfd.revents = 0;
		n = poll(&pfd, 1, left > 60000 ? 60000 : (int)left);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n > 0)
			return 0;
	}
}

/* Connects one address with a non-blocking connect and a deadline. */
static int
sendmail_smtp_try(const struct addrinfo *ai, long long deadline)
{
	socklen_t slen = sizeof(int);
	int fd, rc, soerr = 0;

	fd = socket(ai->ai_family,
	    ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol);
	if (fd < 0)
		return -errno;
	if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
		if (errno != EINPROGRESS) {
			rc = -errno;
			goto fail;
		}
		rc = sendmail_smtp_wait(fd, POLLOUT, deadline);
		if (rc < 0)
			goto fail;
		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &slen) < 0) {
			rc = -errno;
			goto fail;
		}
		if (soerr != 0) {
			rc = -soerr;
			goto fail;
		}
	}
	return fd;
fail:
	close(fd);
	return rc;
}

/* Connects to the relay: see the header. */
int
sendmail_smtp_connect(struct sendmail_smtp *c, const char *host, int port,
    int timeout_ms, char *err, size_t errlen)
{
	struct addrinfo hints, *res = NULL, *ai;
	char portstr[16];
	long long deadline;
	int rc, fd = -1;

	memset(c, 0, sizeof(*c));
	c->fd = -1;
	c->timeout_ms = timeout_ms;
	if (host[0] == '\0' || strcmp(host, "*") == 0 ||
	    strcmp(host, "0.0.0.0") == 0)
		host = "127.0.0.1";
	else if (strcmp(host, "::") == 0)
		host = "::1";
	snprintf(portstr, sizeof(portstr), "%d", port);
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	rc = getaddrinfo(host, portstr, &hints, &res);
	if (rc != 0) {
		snprintf(err, errlen, "cannot resolve %s: %s", host,
		    gai_strerror(rc));
		return -EHOSTUNREACH;
	}
	deadline = sendmail_smtp_now_ms() + timeout_ms;
	rc = -ECONNREFUSED;
	for (ai = res; ai != NULL; ai = ai->ai_next) {
		fd = sendmail_smtp_try(ai, deadline);
		if (fd >= 0)
			break;
		rc = fd;
	}
	freeaddrinfo(res);
	if (fd < 0) {
		snprintf(err, errlen, "cannot connect to %s port %d: %s", host,
		    port, strerror(-rc));
		return rc;
	}
	c->fd = fd;
	return 0;
}

/* Writes all of p, waiting for room with the reply timeout. */
static int
sendmail_smtp_write(struct sendmail_smtp *c, const char *p, size_t len)
{
	long long deadline = sendmail_smtp_now_ms() + c->timeout_ms;
	ssize_t n;
	int rc;

	while (len > 0) {
		n = send(c->fd, p, len, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			rc = sendmail_smtp_wait(c->fd, POLLOUT, deadline);
			if (rc < 0)
				return rc;
			continue;
		}
		if (n < 0)
			return errno == EPIPE ? -ECONNRESET : -errno;
		p += n;
		len -= (size_t)n;
		deadline = sendmail_smtp_now_ms() + c->timeout_ms;
	}
	return 0;
}

/*
 * Reads one reply line (without CR LF) into line (linemax bytes).  Returns
 * its length, -ETIMEDOUT, -ECONNRESET when the relay closed the
 * connection, -EPROTO when the line is too long.
 */
static int
sendmail_smtp_line(
    struct sendmail_smtp *c, char *line, size_t linemax, long long deadline)
{
	char *lf;
	size_t len;
	ssize_t n;
	int rc;

	for (;;) {
		lf = memchr(c->rbuf, '\n', c->rlen);
		if (lf != NULL) {
			len = (size_t)(lf - c->rbuf);
			if (len > 0 && c->rbuf[len - 1] == '\r')
				len--;
			if (len >= linemax)
				return -EPROTO;
			memcpy(line, c->rbuf, len);
			line[len] = '\0';
			c->rlen -= (size_t)(lf + 1 - c->rbuf);
			memmove(c->rbuf, lf + 1, c->rlen);
			return (int)len;
		}
		if (c->rlen == sizeof(c->rbuf))
			return -EPROTO;
		rc = sendmail_smtp_wait(c->fd, POLLIN, deadline);
		if (rc < 0)
			return rc;
		n = recv(
		    c->fd, c->rbuf + c->rlen, sizeof(c->rbuf) - c->rlen, 0);
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n < 0)
			return errno > 0 ? -errno : -EIO;
		if (n == 0)
			return -ECONNRESET;
		c->rlen += (size_t)n;
	}
}

/*
 * Reads a whole reply (RFC 5321 4.2.1): lines "NNN-" continue, "NNN " or a
 * bare "NNN" ends it.  Joins the lines with "; " into c->reply and notes an
 * EHLO keyword SIZE (RFC 1870).
 */
static int
sendmail_smtp_reply(struct sendmail_smtp *c)
{
	long long deadline = sendmail_smtp_now_ms() + c->timeout_ms;
	char line[1024] = { 0 };
	size_t used = 0;
	int n, code, first = -1;

	c->reply[0] = '\0';
	c->code = 0;
	for (;;) {
		n = sendmail_smtp_line(c, line, sizeof(line), deadline);
		if (n < 0)
			return n;
		if (n < 3 || line[0] < '2' || line[0] > '5' || line[1] < '0' ||
		    line[1] > '9' || line[2] < '0' || line[2] > '9' ||
		    (n > 3 && line[3] != ' ' && line[3] != '-'))
			return -EPROTO;
		code = (line[0] - '0') * 100 + (line[1] - '0') * 10 +
		    (line[2] - '0');
		if (first >= 0 && code != first)
			return -EPROTO;
		first = code;
		if (n > 3 && strncasecmp(line + 4, "SIZE", 4) == 0 &&
		    (line[8] == '\0' || line[8] == ' '))
			c->ext_size = true;
		if (used + 3 < sizeof(c->reply)) {
			int w =
			    snprintf(c->reply + used, sizeof(c->reply) - used,
				"%s%s", used ? "; " : "", line);

			if (w > 0)
				used += (size_t)w;
			if (used >= sizeof(c->reply))
				used = sizeof(c->reply) - 1;
		}
		if (n == 3 || line[3] == ' ')
			break;
	}
	c->code = first;
	return 0;
}

/* Sends one command line and reads its reply: see the header. */
int
sendmail_smtp_cmd(struct sendmail_smtp *c, const char *line)
{
	int rc;

	if (line != NULL) {
		rc = sendmail_smtp_write(c, line, strlen(line));
		if (rc == 0)
			rc = sendmail_smtp_write(c, "\r\n", 2);
		if (rc < 0)
			return rc;
	}
	return sendmail_smtp_reply(c);
}

/*
 * Sends the message with RFC 5321 4.5.2 transparency: every line that
 * starts with "." gets one more; then the "." line that ends the data.
 * Lines are gathered into blocks so that a big message is not one write
 * per line.
 */
int
sendmail_smtp_data(struct sendmail_smtp *c, const char *msg, size_t len)
{
	struct sendmail_buf out = { 0 };
	size_t pos = 0, eol;
	const char *lf;
	int rc = 0;

	while (pos < len) {
		lf = memchr(msg + pos, '\n', len - pos);
		eol = lf ? (size_t)(lf - msg) + 1 : len;
		if (msg[pos] == '.')
			rc = sendmail_buf_add(&out, ".", 1);
		if (rc == 0)
			rc = sendmail_buf_add(&out, msg + pos, eol - pos);
		if (rc < 0)
			goto out;
		pos = eol;
		if (out.len >= 65536) {
			rc = sendmail_smtp_write(c, out.data, out.len);
			if (rc < 0)
				goto out;
			out.len = 0;
		}
	}
	rc = sendmail_buf_add(&out, ".\r\n", 3);
	if (rc == 0)
		rc = sendmail_smtp_write(c, out.data, out.len);
	if (rc == 0)
		rc = sendmail_smtp_reply(c);
out:
	sendmail_buf_free(&out);
	return rc;
}

void
sendmail_smtp_close(struct sendmail_smtp *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
}
