/*
 * Unit tests of redrive-sendmail's modules: the message reader (line ends,
 * the "." rule, the size limit, CR LF split across reads), the RFC 5322
 * address-list parser (on raw bytes, every prefix of the input included),
 * the header fix-up (Bcc removed, From/Date/Message-ID added), and the
 * SMTP client's reply parsing and dot-stuffing over a socketpair.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "redrive/sendmail.h"

/* Reads in[0..len) as stdin would be; returns the rc, fills out. */
static int
test_read(const char *in, size_t len, bool dot_ends, uint64_t max,
    struct sendmail_buf *out)
{
	FILE *f = fmemopen((void *)(uintptr_t)in, len, "r");
	int rc;

	assert_non_null(f);
	rc = sendmail_msg_read(f, dot_ends, max, out);
	fclose(f);
	return rc;
}

static void
test_read_line_ends(void **state)
{
	struct sendmail_buf b = { 0 };
	const char in[] = "From someone Mon Jan 1\nA: b\r\n\nx\ry\nlast";

	(void)state;
	assert_int_equal(test_read(in, sizeof(in) - 1, true, 1000, &b), 0);
	assert_string_equal(b.data, "A: b\r\n\r\nx\ry\r\nlast\r\n");
	sendmail_buf_free(&b);
}

static void
test_read_dot(void **state)
{
	struct sendmail_buf b = { 0 };
	const char in[] = "a\n..b\n.\r\nafter\n";

	(void)state;
	assert_int_equal(test_read(in, sizeof(in) - 1, true, 1000, &b), 0);
	assert_string_equal(b.data, "a\r\n..b\r\n");
	sendmail_buf_free(&b);
	assert_int_equal(test_read(in, sizeof(in) - 1, false, 1000, &b), 0);
	assert_string_equal(b.data, "a\r\n..b\r\n.\r\nafter\r\n");
	sendmail_buf_free(&b);
}

static void
test_read_limit(void **state)
{
	struct sendmail_buf b = { 0 };
	const char in[] = "12345\n12345\n";

	(void)state;
	/* 14 bytes once CR LF: 14 fits, 13 does not. */
	assert_int_equal(test_read(in, sizeof(in) - 1, true, 14, &b), 0);
	assert_int_equal(b.len, 14);
	sendmail_buf_free(&b);
	assert_int_equal(test_read(in, sizeof(in) - 1, true, 13, &b), -EFBIG);
	sendmail_buf_free(&b);
	/* A line with no end at all is bounded too. */
	assert_int_equal(
	    test_read("xxxxxxxxxxxxxxxxxxxx", 20, true, 10, &b), -EFBIG);
	sendmail_buf_free(&b);
}

/* A CR LF that straddles the reader's 64 KiB chunks is one line end. */
static void
test_read_split_crlf(void **state)
{
	struct sendmail_buf b = { 0 };
	size_t n = 65536 + 10, i;
	char *in = malloc(n);

	(void)state;
	assert_non_null(in);
	memset(in, 'a', n);
	in[65535] = '\r';
	in[65536] = '\n';
	in[n - 1] = '\n';
	assert_int_equal(test_read(in, n, true, 1 << 20, &b), 0);
	assert_int_equal(b.len, n + 1);
	assert_memory_equal(b.data + 65535, "\r\n", 2);
	for (i = 0; i < 65535; i++)
		assert_int_equal(b.data[i], 'a');
	assert_memory_equal(b.data + n - 1, "\r\n", 2);
	sendmail_buf_free(&b);
	free(in);
}

/* Parses s; checks the addresses against want (NULL-terminated). */
static void
test_parse_one(const char *s, const char *const *want)
{
	struct sendmail_rcpts r = { 0 };
	size_t i;

	assert_int_equal(sendmail_addr_parse(s, strlen(s), "h.example", &r), 0);
	for (i = 0; want[i] != NULL; i++) {
		assert_true(i < r.n);
		assert_string_equal(r.addr[i], want[i]);
	}
	assert_int_equal(r.n, i);
	sendmail_rcpts_free(&r);
}

static void
test_addr_lists(void **state)
{
	(void)state;
	test_parse_one(
	    "a@b.example", (const char *const[]){ "a@b.example", NULL });
	test_parse_one("Ann <a@b.example>, \"Doe, Bob\" <bob@x.example>",
	    (const char *const[]){ "a@b.example", "bob@x.example", NULL });
	test_parse_one("team: c@x.example, (note, here) d@x.example;, e@y",
	    (const char *const[]){ "c@x.example", "d@x.example", "e@y", NULL });
	test_parse_one(
	    "undisclosed-recipients:;", (const char *const[]){ NULL });
	test_parse_one("\"john doe\"@x.example, root",
	    (const char *const[]){
		"\"john doe\"@x.example", "root@h.example", NULL });
	test_parse_one("<@relay.example:a@b.example>, A@B.example",
	    (const char *const[]){ "a@b.example", NULL });
	test_parse_one("a @ b.example (comment\r\n (nested)) ,\r\n\t c@d",
	    (const char *const[]){ "a@b.example", "c@d", NULL });
	test_parse_one(" , ,", (const char *const[]){ NULL });
}

static void
test_addr_errors(void **state)
{
	struct sendmail_rcpts r = { 0 };
	char big[400];

	(void)state;
	assert_int_equal(sendmail_addr_parse("a\001b@c", 6, "h", &r), -EINVAL);
	memset(big, 'a', sizeof(big));
	assert_int_equal(
	    sendmail_addr_parse(big, sizeof(big), "h", &r), -EINVAL);
	assert_int_equal(sendmail_addr_parse("<a<b@c>", 7, "h", &r), -EINVAL);
	sendmail_rcpts_free(&r);
}

/* Every prefix of a tricky list parses or is refused, never over-read. */
static void
test_addr_every_cut(void **state)
{
	const char s[] = "Grp: \"q\\\"x, y\" <a@b>, (c (d) \\) e) f@g; "
			 "<@r:h@i>, \"j\"@k";
	struct sendmail_rcpts r = { 0 };
	size_t n;
	char *copy;
	int rc;

	(void)state;
	for (n = 0; n <= sizeof(s) - 1; n++) {
		copy = malloc(n ? n : 1);
		assert_non_null(copy);
		memcpy(copy, s, n);
		rc = sendmail_addr_parse(copy, n, "h", &r);
		assert_true(rc == 0 || rc == -EINVAL);
		sendmail_rcpts_free(&r);
		free(copy);
	}
}

/* Runs prepare over msg; returns the new text. */
static char *
test_prepare(const char *msg, bool extract, struct sendmail_rcpts *r)
{
	struct sendmail_buf b = { 0 };
	struct sendmail_msg_opts o = { 0 };

	assert_int_equal(sendmail_buf_add(&b, msg, strlen(msg)), 0);
	o.extract = extract;
	o.from_addr = "me@h.example";
	o.full_name = "Me \"Q\"";
	o.hostname = "h.example";
	o.rcpts = r;
	assert_int_equal(sendmail_msg_prepare(&b, &o), 0);
	return b.data;
}

static void
test_prepare_bcc_and_extract(void **state)
{
	struct sendmail_rcpts r = { 0 };
	const char in[] = "From: x@y\r\nDate: d\r\nMessage-ID: <m@y>\r\n"
			  "To: a@b\r\nbcc: s@b,\r\n t@b\r\nCc: c@b\r\n"
			  "\r\nBcc: body@b\r\n";
	char *out;

	(void)state;
	out = test_prepare(in, true, &r);
	assert_string_equal(out,
	    "From: x@y\r\nDate: d\r\nMessage-ID: <m@y>\r\n"
	    "To: a@b\r\nCc: c@b\r\n\r\nBcc: body@b\r\n");
	assert_int_equal(r.n, 4);
	assert_string_equal(r.addr[0], "a@b");
	assert_string_equal(r.addr[1], "s@b");
	assert_string_equal(r.addr[2], "t@b");
	assert_string_equal(r.addr[3], "c@b");
	free(out);
	sendmail_rcpts_free(&r);
	/* Without -t, the Bcc field still goes and nothing is extracted. */
	out = test_prepare(in, false, &r);
	assert_null(strstr(out, "s@b"));
	assert_int_equal(r.n, 0);
	free(out);
}

static void
test_prepare_adds_fields(void **state)
{
	struct sendmail_rcpts r = { 0 };
	const char *want;
	char *out;

	(void)state;
	out = test_prepare("Subject: s\r\n\r\nbody\r\n", false, &r);
	want = "Subject: s\r\nFrom: \"Me \\\"Q\\\"\" <me@h.example>\r\n"
	       "Date: ";
	assert_memory_equal(out, want, strlen(want));
	assert_non_null(strstr(out, "\r\nMessage-ID: <"));
	assert_non_null(strstr(out, "@h.example>\r\n\r\nbody\r\n"));
	free(out);
	/* A body with no header at all gets an empty line before it. */
	out = test_prepare("just text\r\n", false, &r);
	assert_non_null(strstr(out, "@h.example>\r\n\r\njust text\r\n"));
	assert_true(strncmp(out, "From: ", 6) == 0);
	free(out);
	/* A message of header fields only needs no empty line. */
	out = test_prepare("", false, &r);
	assert_null(strstr(out, "\r\n\r\n"));
	free(out);
}

/* The server side of a socketpair: what the client wrote, read back. */
static size_t
test_drain(int fd, char *buf, size_t max)
{
	ssize_t n = recv(fd, buf, max - 1, MSG_DONTWAIT);

	assert_true(n >= 0);
	buf[n] = '\0';
	return (size_t)n;
}

static void
test_smtp_data_and_replies(void **state)
{
	struct sendmail_smtp c;
	const char msg[] = ".a\r\nb\r\n..c\r\n";
	char got[256];
	int sv[2];

	(void)state;
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	memset(&c, 0, sizeof(c));
	c.fd = sv[0];
	c.timeout_ms = 2000;
	assert_int_equal(
	    write(sv[1], "250-one\r\n250-SIZE 10\r\n250 two\r\n", 31), 31);
	assert_int_equal(sendmail_smtp_cmd(&c, "EHLO h"), 0);
	assert_int_equal(c.code, 250);
	assert_true(c.ext_size);
	assert_string_equal(c.reply, "250-one; 250-SIZE 10; 250 two");
	test_drain(sv[1], got, sizeof(got));
	assert_string_equal(got, "EHLO h\r\n");

	assert_int_equal(write(sv[1], "250 ok\r\n", 8), 8);
	assert_int_equal(sendmail_smtp_data(&c, msg, sizeof(msg) - 1), 0);
	test_drain(sv[1], got, sizeof(got));
	assert_string_equal(got, "..a\r\nb\r\n...c\r\n.\r\n");

	/* Lines of one reply with different codes are not SMTP. */
	assert_int_equal(write(sv[1], "250-a\r\n251 b\r\n", 14), 14);
	assert_int_equal(sendmail_smtp_cmd(&c, NULL), -EPROTO);
	assert_int_equal(write(sv[1], "25\r\n", 4), 4);
	assert_int_equal(sendmail_smtp_cmd(&c, NULL), -EPROTO);
	/* No reply: a timeout; then a closed connection. */
	c.timeout_ms = 50;
	assert_int_equal(sendmail_smtp_cmd(&c, NULL), -ETIMEDOUT);
	close(sv[1]);
	assert_int_equal(sendmail_smtp_cmd(&c, NULL), -ECONNRESET);
	sendmail_smtp_close(&c);
	sendmail_smtp_close(&c);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_read_line_ends),
		cmocka_unit_test(test_read_dot),
		cmocka_unit_test(test_read_limit),
		cmocka_unit_test(test_read_split_crlf),
		cmocka_unit_test(test_addr_lists),
		cmocka_unit_test(test_addr_errors),
		cmocka_unit_test(test_addr_every_cut),
		cmocka_unit_test(test_prepare_bcc_and_extract),
		cmocka_unit_test(test_prepare_adds_fields),
		cmocka_unit_test(test_smtp_data_and_replies),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
