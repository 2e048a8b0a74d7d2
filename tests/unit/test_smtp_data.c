/*
 * Unit tests of the DATA reader (relay/smtp_data.c).  Every case is fed
 * whole, byte by byte, cut once at every position and, for short inputs,
 * cut twice at every pair of positions; each piece is a heap buffer of
 * exactly its size, so ASan catches a read past it.  All ways must give
 * the same result: bytes consumed, end seen, error, 8-bit flag, size and
 * stored bytes.  Random inputs are compared with a reference reader
 * written the obvious way (whole input, look-ahead) from the rules in
 * smtp_data.h.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "redrive/smtp_data.h"

#define LIT(s) (s), (sizeof(s) - 1)

/*
 * Copies raw bytes (test inputs are byte strings, not C strings: nothing
 * here is NUL-terminated on purpose).
 */
static void
put_bytes(char *dst, const void *src, size_t n)
{
	memcpy(dst, src, n);
}

/* What one run of the reader ended with. */
struct result {
	size_t consumed;
	bool done;
	enum smtp_data_error error;
	bool eight_bit;
	uint64_t size;
	char *buf;
	size_t len;
};

static void
result_free(struct result *r)
{
	free(r->buf);
	memset(r, 0, sizeof(*r));
}

/*
 * Feeds in[0..n) cut at the positions cuts[0..ncuts) (ascending), each
 * piece copied to a buffer of exactly its size.  A piece is fed until the
 * reader stops taking bytes; once the end is seen no more is fed.
 */
static void
run_cuts(const char *in, size_t n, uint64_t max, const size_t *cuts,
    size_t ncuts, struct result *r)
{
	struct smtp_data d;
	size_t start = 0, end, i, used;
	char *piece;

	memset(r, 0, sizeof(*r));
	smtp_data_init(&d, max);
	for (i = 0; i <= ncuts && !d.done; i++) {
		end = i < ncuts ? cuts[i] : n;
		piece = malloc(end - start + 1);
		assert_non_null(piece);
		memcpy(piece, in + start, end - start);
		used = smtp_data_feed(&d, piece, end - start);
		free(piece);
		assert_true(used <= end - start);
		if (used < end - start)
			assert_true(d.done);
		r->consumed += used;
		start = end;
	}
	/* Nothing more is taken after the end. */
	if (d.done)
		assert_int_equal(smtp_data_feed(&d, "x\r\n", 3), 0);
	r->done = d.done;
	r->error = d.error;
	r->eight_bit = d.eight_bit;
	r->size = d.size;
	assert_true(d.len <= d.cap);
	assert_true((uint64_t)d.cap <= max);
	assert_true((uint64_t)d.len <= d.size);
	if (d.error != SMTP_DATA_OK) {
		assert_null(d.buf);
		assert_int_equal(d.len, 0);
	} else {
		assert_true((uint64_t)d.len == d.size);
	}
	r->buf = smtp_data_take(&d, &r->len);
	assert_null(d.buf);
	assert_int_equal(d.len, 0);
	if (r->len == 0)
		assert_null(r->buf);
	smtp_data_free(&d);
}

static void
run_whole(const char *in, size_t n, uint64_t max, struct result *r)
{
	run_cuts(in, n, max, NULL, 0, r);
}

static void
assert_same(const struct result *a, const struct result *b)
{
	assert_int_equal(a->consumed, b->consumed);
	assert_int_equal(a->done, b->done);
	assert_int_equal(a->error, b->error);
	assert_int_equal(a->eight_bit, b->eight_bit);
	assert_int_equal(a->size, b->size);
	assert_int_equal(a->len, b->len);
	if (a->len > 0)
		assert_memory_equal(a->buf, b->buf, a->len);
}

/*
 * Runs in[0..n) whole, byte by byte, cut at every position and (when
 * short) at every pair of positions; asserts every way agrees and returns
 * the whole run's result in *r.
 */
static void
run_all(const char *in, size_t n, uint64_t max, struct result *r)
{
	struct result o;
	size_t *cuts, i, j, c[2];

	run_whole(in, n, max, r);

	cuts = malloc((n + 1) * sizeof(*cuts));
	assert_non_null(cuts);
	for (i = 0; i < n; i++)
		cuts[i] = i + 1;
	run_cuts(in, n, max, cuts, n > 0 ? n - 1 : 0, &o);
	assert_same(r, &o);
	result_free(&o);
	free(cuts);

	/* Long inputs: one cut every few bytes, and around each CR/LF. */
	for (i = 0; i <= n; i++) {
		if (n > 4096 && i % 97 != 0 && i + 2 < n &&
		    memchr(in + i, '\n', 2) == NULL &&
		    memchr(in + i, '\r', 2) == NULL)
			continue;
		c[0] = i;
		run_cuts(in, n, max, c, 1, &o);
		assert_same(r, &o);
		result_free(&o);
	}
	if (n > 80)
		return;
	for (i = 0; i <= n; i++) {
		for (j = i; j <= n; j++) {
			c[0] = i;
			c[1] = j;
			run_cuts(in, n, max, c, 2, &o);
			assert_same(r, &o);
			result_free(&o);
		}
	}
}

/* Asserts a complete, accepted message: stored bytes and consumption. */
static void
expect_msg(
    const char *in, size_t n, size_t consumed, const char *want, size_t wantlen)
{
	struct result r;

	run_all(in, n, 1 << 20, &r);
	assert_true(r.done);
	assert_int_equal(r.error, SMTP_DATA_OK);
	assert_int_equal(r.consumed, consumed);
	assert_int_equal(r.len, wantlen);
	assert_int_equal(r.size, wantlen);
	if (wantlen > 0)
		assert_memory_equal(r.buf, want, wantlen);
	result_free(&r);
}

/* ---- framing ------------------------------------------------------------ */

static void
test_simple(void **state)
{
	static const char in[] = "Subject: hi\r\n\r\nbody\r\n.\r\n";
	static const char want[] = "Subject: hi\r\n\r\nbody\r\n";

	(void)state;
	expect_msg(LIT(in), sizeof(in) - 1, LIT(want));
}

static void
test_empty(void **state)
{
	struct result r;

	(void)state;
	/* ".\r\n" right away: an empty message, accepted. */
	run_all(LIT(".\r\n"), 1 << 20, &r);
	assert_true(r.done);
	assert_int_equal(r.error, SMTP_DATA_OK);
	assert_int_equal(r.consumed, 3);
	assert_int_equal(r.len, 0);
	assert_int_equal(r.size, 0);
	assert_null(r.buf);
	result_free(&r);

	/* One empty line. */
	expect_msg(LIT("\r\n.\r\n"), 5, LIT("\r\n"));

	/* Nothing yet: not done, all consumed. */
	run_all("", 0, 100, &r);
	assert_false(r.done);
	assert_int_equal(r.consumed, 0);
	result_free(&r);
}

static void
test_dot_unstuffing(void **state)
{
	(void)state;
	expect_msg(LIT("..\r\n.\r\n"), 7, LIT(".\r\n"));
	expect_msg(LIT("a\r\n..\r\n.\r\n"), 10, LIT("a\r\n.\r\n"));
	expect_msg(LIT("...\r\n.\r\n"), 8, LIT("..\r\n"));
	expect_msg(LIT(".foo\r\n..bar\r\nx.y\r\n.\r\n"), 21,
	    LIT("foo\r\n.bar\r\nx.y\r\n"));
	/* Only the first dot of a line; dots elsewhere stay. */
	expect_msg(LIT("a.\r\n. .\r\n.\r\n"), 12, LIT("a.\r\n .\r\n"));
	/* Unstuffing after a bare LF too (it is normalised). */
	expect_msg(LIT("a\n..b\r\n.\r\n"), 10, LIT("a\r\n.b\r\n"));
	/* ".\r" + not LF: the dot is stuffing; the CR is bare (below). */
}

static void
test_pipelined(void **state)
{
	static const char in[] = "\r\n.\r\nQUIT\r\n";
	struct result r;

	(void)state;
	run_all(LIT(in), 1 << 20, &r);
	assert_true(r.done);
	assert_int_equal(r.consumed, 5); /* up to the LF of ".\r\n" */
	assert_int_equal(r.len, 2);
	assert_memory_equal(r.buf, "\r\n", 2);
	result_free(&r);

	expect_msg(LIT("a\r\n.\r\nMAIL FROM:<b@c>\r\nRCPT TO:<d@e>\r\n"), 6,
	    LIT("a\r\n"));
	/* The end is seen whatever follows, even another end. */
	expect_msg(LIT("a\r\n.\r\n.\r\n"), 6, LIT("a\r\n"));
}

/* ---- smuggling ---------------------------------------------------------- */

/*
 * None of these ends the data (CVE-2023-51764): after each, a command
 * that a lenient server would run must stay message content, consumed by
 * the reader.  The real end that follows is found, and what is pipelined
 * after it stays unconsumed.  bare_cr: the sequence holds a bare CR.
 */
static void
smuggle(const char *seq, const char *stored, bool bare_cr)
{
	static const char cmd[] = "MAIL FROM:<x>\r\n";
	static const char end[] = ".\r\n";
	static const char after[] = "RCPT TO:<victim@example.com>\r\n";
	char in[256], want[256];
	size_t n = 0, upto, wn;
	struct result r;
	int lead;

	for (lead = 0; lead < 2; lead++) {
		/* With and without a line before the sequence. */
		n = 0;
		wn = 0;
		if (lead) {
			put_bytes(in, "a", 1);
			put_bytes(want, "a", 1);
			n = wn = 1;
		}
		put_bytes(in + n, seq, strlen(seq));
		n += strlen(seq);
		memcpy(in + n, cmd, sizeof(cmd) - 1);
		n += sizeof(cmd) - 1;

		/* Up to here: no end of data, everything consumed. */
		run_all(in, n, 1 << 20, &r);
		assert_false(r.done);
		assert_int_equal(r.consumed, n);
		result_free(&r);

		memcpy(in + n, end, sizeof(end) - 1);
		n += sizeof(end) - 1;
		upto = n;
		memcpy(in + n, after, sizeof(after) - 1);
		n += sizeof(after) - 1;

		run_all(in, n, 1 << 20, &r);
		assert_true(r.done);
		assert_int_equal(r.consumed, upto);
		assert_int_equal(
		    r.error, bare_cr ? SMTP_DATA_BARE_CR : SMTP_DATA_OK);
		if (!bare_cr) {
			put_bytes(want + wn, stored, strlen(stored));
			wn += strlen(stored);
			memcpy(want + wn, cmd, sizeof(cmd) - 1);
			wn += sizeof(cmd) - 1;
			assert_int_equal(r.len, wn);
			assert_memory_equal(r.buf, want, wn);
		}
		result_free(&r);
	}
}

static void
test_smuggling(void **state)
{
	(void)state;
	/* Bare LFs become CR LF, and a "." line that is not the end is
	 * unstuffed to an empty line. */
	smuggle("\n.\n", "\r\n\r\n", false);
	smuggle("\r\n.\n", "\r\n\r\n", false);
	smuggle("\n.\r\n", "\r\n\r\n", false);
	smuggle("\r.\r", "", true);
	smuggle("\r\n.\r", "", true);
	smuggle("\n.\r", "", true);
	smuggle("\r.\r\n", "", true);
	smuggle("\r\r\n.\r\r\n", "", true);
}

/* Stored forms of the smuggling sequences, checked byte for byte. */
static void
test_bare_lf_normalised(void **state)
{
	(void)state;
	expect_msg(LIT("a\nb\n\r\n.\r\n"), 9, LIT("a\r\nb\r\n\r\n"));
	expect_msg(LIT("a\r\n.\nb\r\n.\r\n"), 11, LIT("a\r\n\r\nb\r\n"));
	/* The second "." line began after a bare LF: not the end either. */
	expect_msg(LIT("\n.\n.\r\n.\r\n"), 9, LIT("\r\n\r\n\r\n"));
	expect_msg(LIT("\n\n\r\n.\r\n"), 7, LIT("\r\n\r\n\r\n"));
}

/* ---- errors ------------------------------------------------------------- */

static void
expect_error(const char *in, size_t n, uint64_t max, size_t consumed,
    enum smtp_data_error err)
{
	struct result r;

	run_all(in, n, max, &r);
	assert_true(r.done);
	assert_int_equal(r.consumed, consumed);
	assert_int_equal(r.error, err);
	result_free(&r);
}

static void
test_bare_cr(void **state)
{
	(void)state;
	expect_error(LIT("a\rb\r\n.\r\n"), 100, 8, SMTP_DATA_BARE_CR);
	expect_error(LIT("\r\r\n.\r\n"), 100, 6, SMTP_DATA_BARE_CR);
	expect_error(LIT("a\r\r\r\n.\r\nX"), 100, 8, SMTP_DATA_BARE_CR);
	expect_error(LIT(".\rx\r\n.\r\n"), 100, 8, SMTP_DATA_BARE_CR);
	expect_error(LIT("\r.\r\n.\r\n"), 100, 7, SMTP_DATA_BARE_CR);
}

static void
test_nul(void **state)
{
	(void)state;
	expect_error(LIT("a\0b\r\n.\r\n"), 100, 8, SMTP_DATA_NUL);
	expect_error(LIT("\0\r\n.\r\n"), 100, 6, SMTP_DATA_NUL);
	expect_error(LIT(".\0\r\n.\r\n"), 100, 7, SMTP_DATA_NUL);
	/* The first error wins. */
	expect_error(LIT("\0\r\r\n.\r\n"), 100, 7, SMTP_DATA_NUL);
	expect_error(LIT("\r\0\r\n.\r\n"), 100, 7, SMTP_DATA_BARE_CR);
}

/* A line of text bytes of length n, then end, then the end of data. */
static char *
long_line(size_t text, const char *eol, const char *lead, size_t *n)
{
	size_t ll = strlen(lead), el = strlen(eol);
	char *p = malloc(ll + text + el + 5 + 1);

	assert_non_null(p);
	put_bytes(p, lead, ll);
	memset(p + ll, 'x', text);
	put_bytes(p + ll + text, eol, el);
	put_bytes(p + ll + text + el, ".\r\n", 3);
	*n = ll + text + el + 3;
	return p;
}

static void
test_line_length(void **state)
{
	struct result r;
	size_t n;
	char *p;

	(void)state;
	/* 998 + CR LF = 1000 octets: fine (RFC 5321 4.5.3.1.6). */
	p = long_line(998, "\r\n", "", &n);
	run_all(p, n, 1 << 20, &r);
	assert_true(r.done);
	assert_int_equal(r.error, SMTP_DATA_OK);
	assert_int_equal(r.len, 1000);
	result_free(&r);
	free(p);

	/* 999 + CR LF: too long. */
	p = long_line(999, "\r\n", "", &n);
	expect_error(p, n, 1 << 20, n, SMTP_DATA_LINE_TOO_LONG);
	free(p);

	/* A bare LF line end counts as the CR LF it becomes. */
	p = long_line(998, "\n", "", &n);
	run_all(p, n, 1 << 20, &r);
	assert_false(r.done); /* "\n.\r\n" is no end */
	assert_int_equal(r.error, SMTP_DATA_OK);
	result_free(&r);
	free(p);
	p = long_line(999, "\n", "", &n);
	run_whole(p, n, 1 << 20, &r);
	assert_int_equal(r.error, SMTP_DATA_LINE_TOO_LONG);
	result_free(&r);
	free(p);

	/* The stuffed dot does not count: the stored line is 998. */
	p = long_line(998, "\r\n", ".", &n);
	run_all(p, n, 1 << 20, &r);
	assert_true(r.done);
	assert_int_equal(r.error, SMTP_DATA_OK);
	assert_int_equal(r.len, 1000);
	result_free(&r);
	free(p);

	/* A huge line, then the end is still found. */
	p = long_line(100000, "\r\n", "", &n);
	expect_error(p, n, 1 << 20, n, SMTP_DATA_LINE_TOO_LONG);
	free(p);

	/* Long lines one after the other are each fine. */
	p = malloc(3 * 1000 + 3);
	assert_non_null(p);
	for (n = 0; n < 3; n++) {
		memset(p + n * 1000, 'y', 998);
		put_bytes(p + n * 1000 + 998, "\r\n", 2);
	}
	put_bytes(p + 3000, ".\r\n", 3);
	run_all(p, 3003, 1 << 20, &r);
	assert_true(r.done);
	assert_int_equal(r.error, SMTP_DATA_OK);
	assert_int_equal(r.len, 3000);
	result_free(&r);
	free(p);
}

static void
test_max_size(void **state)
{
	struct result r;
	size_t i, n, body;
	char *p;

	(void)state;
	/* "abc\r\n" is 5 stored bytes: max 5 takes it, max 4 does not. */
	run_all(LIT("abc\r\n.\r\n"), 5, &r);
	assert_int_equal(r.error, SMTP_DATA_OK);
	assert_int_equal(r.len, 5);
	result_free(&r);
	run_all(LIT("abc\r\n.\r\n"), 4, &r);
	assert_true(r.done);
	assert_int_equal(r.consumed, 8);
	assert_int_equal(r.error, SMTP_DATA_TOO_BIG);
	assert_int_equal(r.size, 5); /* counted past the maximum */
	assert_int_equal(r.len, 0);  /* nothing kept of a rejected one */
	result_free(&r);

	/* Unstuffed and normalised bytes are what count. */
	run_all(LIT("..\r\n.\r\n"), 3, &r);
	assert_int_equal(r.error, SMTP_DATA_OK);
	result_free(&r);
	run_all(LIT("..\r\n.\r\n"), 2, &r);
	assert_int_equal(r.error, SMTP_DATA_TOO_BIG);
	result_free(&r);
	run_all(LIT("a\nb\r\n.\r\n"), 6, &r);
	assert_int_equal(r.error, SMTP_DATA_OK);
	assert_memory_equal(r.buf, "a\r\nb\r\n", 6);
	result_free(&r);
	run_all(LIT("a\nb\r\n.\r\n"), 5, &r);
	assert_int_equal(r.error, SMTP_DATA_TOO_BIG);
	result_free(&r);

	/* max 0: only the empty message. */
	run_all(LIT(".\r\n"), 0, &r);
	assert_int_equal(r.error, SMTP_DATA_OK);
	result_free(&r);
	run_all(LIT("\r\n.\r\n"), 0, &r);
	assert_int_equal(r.error, SMTP_DATA_TOO_BIG);
	result_free(&r);

	/* A bigger one: exactly max, then max + 1 byte of message. */
	body = 300000;
	p = malloc(body + 1 + 3);
	assert_non_null(p);
	for (i = 0; i < body; i += 100) {
		memset(p + i, 'm', 98);
		put_bytes(p + i + 98, "\r\n", 2);
	}
	put_bytes(p + body, ".\r\n", 3);
	n = body + 3;
	run_whole(p, n, body, &r);
	assert_true(r.done);
	assert_int_equal(r.error, SMTP_DATA_OK);
	assert_int_equal(r.len, body);
	assert_memory_equal(r.buf, p, body);
	result_free(&r);
	run_whole(p, n, body - 1, &r);
	assert_true(r.done);
	assert_int_equal(r.error, SMTP_DATA_TOO_BIG);
	assert_int_equal(r.size, body);
	assert_int_equal(r.consumed, n);
	result_free(&r);
	/* Odd sizes: the buffer never grows past max (run_cuts checks). */
	run_whole(p, n, body + 12345, &r);
	assert_int_equal(r.error, SMTP_DATA_OK);
	result_free(&r);
	/* Byte by byte too. */
	{
		size_t *cuts = malloc(n * sizeof(*cuts));
		struct result o;

		assert_non_null(cuts);
		for (i = 0; i + 1 < n; i++)
			cuts[i] = i + 1;
		run_whole(p, n, body - 1, &r);
		run_cuts(p, n, body - 1, cuts, n - 1, &o);
		assert_same(&r, &o);
		result_free(&r);
		result_free(&o);
		free(cuts);
	}
	free(p);

	/* An earlier error stays the one reported. */
	run_all(LIT("a\rbcdef\r\n.\r\n"), 3, &r);
	assert_int_equal(r.error, SMTP_DATA_BARE_CR);
	result_free(&r);
	run_all(LIT("abcdef\rb\r\n.\r\n"), 3, &r);
	assert_int_equal(r.error, SMTP_DATA_TOO_BIG);
	result_free(&r);
}

static void
test_eight_bit(void **state)
{
	struct result r;

	(void)state;
	run_all(LIT("caf\xc3\xa9\r\n.\r\n"), 100, &r);
	assert_true(r.eight_bit);
	assert_int_equal(r.error, SMTP_DATA_OK);
	result_free(&r);
	run_all(LIT(".\xff\r\n.\r\n"), 100, &r);
	assert_true(r.eight_bit);
	result_free(&r);
	run_all(LIT("plain ascii~\x7f\r\n.\r\n"), 100, &r);
	assert_false(r.eight_bit);
	result_free(&r);
	/* After the end nothing is looked at. */
	run_all(LIT("a\r\n.\r\n\xff"), 100, &r);
	assert_false(r.eight_bit);
	result_free(&r);
}

static void
test_reply(void **state)
{
	(void)state;
	assert_string_equal(smtp_data_reply(SMTP_DATA_TOO_BIG),
	    "552 5.3.4 Message size exceeds fixed maximum message size");
	assert_memory_equal(
	    smtp_data_reply(SMTP_DATA_LINE_TOO_LONG), "550 5.6.0 ", 10);
	assert_memory_equal(
	    smtp_data_reply(SMTP_DATA_BARE_CR), "550 5.6.0 ", 10);
	assert_memory_equal(smtp_data_reply(SMTP_DATA_NUL), "550 5.6.0 ", 10);
	assert_memory_equal(smtp_data_reply(SMTP_DATA_NOMEM), "451 4.3.0 ", 10);
	/* Never a 2xx, whatever is asked. */
	assert_memory_equal(smtp_data_reply(SMTP_DATA_OK), "451 4.3.0 ", 10);
	assert_memory_equal(
	    smtp_data_reply((enum smtp_data_error)42), "451 4.3.0 ", 10);
	assert_null(strpbrk(smtp_data_reply(SMTP_DATA_BARE_CR), "\r\n"));
}

/* init, take, free, init again: the same struct serves again. */
static void
test_lifecycle(void **state)
{
	struct smtp_data d;
	size_t len;
	char *buf;

	(void)state;
	smtp_data_init(&d, 100);
	assert_int_equal(smtp_data_feed(&d, LIT("x\r\n.\r\n")), 6);
	buf = smtp_data_take(&d, &len);
	assert_int_equal(len, 3);
	assert_memory_equal(buf, "x\r\n", 3);
	free(buf);
	smtp_data_free(&d);
	smtp_data_free(&d);

	/* Freed without being taken, mid-message. */
	smtp_data_init(&d, 100);
	assert_int_equal(smtp_data_feed(&d, LIT("partial")), 7);
	assert_false(d.done);
	smtp_data_free(&d);
	smtp_data_init(&d, 100);
	assert_int_equal(smtp_data_feed(&d, LIT(".\r\n")), 3);
	assert_true(d.done);
	buf = smtp_data_take(&d, &len);
	assert_null(buf);
	assert_int_equal(len, 0);
	smtp_data_free(&d);
}

/* ---- the reference reader and random input ------------------------------ */

struct ref {
	struct result r;
	uint64_t max;
	size_t linelen;
	size_t cap;
};

/* The first error wins, and nothing of the message is kept after it. */
static void
ref_fail(struct ref *f, enum smtp_data_error e)
{
	if (f->r.error != SMTP_DATA_OK)
		return;
	f->r.error = e;
	f->r.len = 0;
}

/* Stores s[0..n) as one piece: all of it fits under max, or none. */
static void
ref_put(struct ref *f, const char *s, size_t n)
{
	f->r.size += n;
	if (f->r.error != SMTP_DATA_OK)
		return;
	if (f->r.size > f->max) {
		ref_fail(f, SMTP_DATA_TOO_BIG);
		return;
	}
	while (f->r.len + n > f->cap) {
		f->cap = f->cap ? f->cap * 2 : 64;
		f->r.buf = realloc(f->r.buf, f->cap);
		assert_non_null(f->r.buf);
	}
	memcpy(f->r.buf + f->r.len, s, n);
	f->r.len += n;
}

static void
ref_text(struct ref *f, char c)
{
	if (f->linelen >= 998) {
		f->linelen = 999;
		ref_fail(f, SMTP_DATA_LINE_TOO_LONG);
	} else {
		f->linelen++;
	}
	if ((unsigned char)c >= 0x80)
		f->r.eight_bit = true;
	ref_put(f, &c, 1);
}

static void
ref_eol(struct ref *f)
{
	ref_put(f, "\r\n", 2);
	f->linelen = 0;
}

/*
 * The rules of smtp_data.h read directly off the whole input: a line at a
 * time, looking ahead as far as needed.  Bytes whose meaning depends on
 * what has not arrived yet (a trailing CR, a "." or ".\r" at a line start)
 * are left pending, as a streaming reader must.
 */
static void
ref_run(const char *p, size_t n, uint64_t max, struct result *out)
{
	struct ref f;
	size_t i = 0;
	bool after_crlf = true;

	memset(&f, 0, sizeof(f));
	f.max = max;
	while (i < n) {
		if (p[i] == '.') {
			if (after_crlf) {
				if (i + 1 == n ||
				    (p[i + 1] == '\r' && i + 2 == n))
					goto pending;
				if (p[i + 1] == '\r' && p[i + 2] == '\n') {
					f.r.done = true;
					f.r.consumed = i + 3;
					goto out;
				}
			}
			i++;
		}
		for (;;) {
			if (i == n)
				goto pending;
			if (p[i] == '\r') {
				if (i + 1 == n)
					goto pending;
				if (p[i + 1] == '\n') {
					ref_eol(&f);
					i += 2;
					after_crlf = true;
					break;
				}
				ref_fail(&f, SMTP_DATA_BARE_CR);
				ref_text(&f, '\r');
				i++;
				continue;
			}
			if (p[i] == '\n') {
				ref_eol(&f);
				i++;
				after_crlf = false;
				break;
			}
			if (p[i] == '\0')
				ref_fail(&f, SMTP_DATA_NUL);
			ref_text(&f, p[i]);
			i++;
		}
	}
pending:
	f.r.consumed = n;
out:
	*out = f.r;
	if (out->len == 0) {
		free(out->buf);
		out->buf = NULL;
	}
}

static uint32_t
rnd(uint32_t *s)
{
	*s = *s * 1103515245u + 12345u;
	return *s >> 8;
}

static void
test_random_vs_reference(void **state)
{
	static const char *tok[] = { ".", ".", "\r", "\r", "\n", "\n", "\r\n",
		"\r\n", "a", "\xc3\xa9", "\0", "..", "\r\n.\r\n", "\n.\n" };
	static char buf[40000];
	struct result a, b;
	size_t cuts[4], n, i, ntok = sizeof(tok) / sizeof(tok[0]);
	uint32_t seed = 1;
	uint64_t max;
	int iter;

	(void)state;
	for (iter = 0; iter < 20000; iter++) {
		n = 0;
		while (n < sizeof(buf) - 1300 && rnd(&seed) % 24 != 0) {
			size_t k = rnd(&seed) % (ntok + 1);

			if (k == ntok) {
				/* Now and then a long run of text. */
				size_t run = rnd(&seed) % 1200;

				memset(buf + n, 'x', run);
				n += run;
				continue;
			}
			{
				const char *t = tok[k];
				size_t tl = t[0] == '\0' ? 1 : strlen(t);

				put_bytes(buf + n, t, tl);
				n += tl;
			}
		}
		max = rnd(&seed) % 4 == 0 ? rnd(&seed) % 64 : 1 << 20;
		ref_run(buf, n, max, &a);
		run_whole(buf, n, max, &b);
		assert_same(&a, &b);
		result_free(&b);
		for (i = 0; i < 4; i++)
			cuts[i] = n > 0 ? rnd(&seed) % (n + 1) : 0;
		/* Sort the four cuts. */
		for (i = 1; i < 4; i++) {
			size_t j = i, t = cuts[i];

			while (j > 0 && cuts[j - 1] > t) {
				cuts[j] = cuts[j - 1];
				j--;
			}
			cuts[j] = t;
		}
		run_cuts(buf, n, max, cuts, 4, &b);
		assert_same(&a, &b);
		result_free(&a);
		result_free(&b);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_simple),
		cmocka_unit_test(test_empty),
		cmocka_unit_test(test_dot_unstuffing),
		cmocka_unit_test(test_pipelined),
		cmocka_unit_test(test_smuggling),
		cmocka_unit_test(test_bare_lf_normalised),
		cmocka_unit_test(test_bare_cr),
		cmocka_unit_test(test_nul),
		cmocka_unit_test(test_line_length),
		cmocka_unit_test(test_max_size),
		cmocka_unit_test(test_eight_bit),
		cmocka_unit_test(test_reply),
		cmocka_unit_test(test_lifecycle),
		cmocka_unit_test(test_random_vs_reference),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
