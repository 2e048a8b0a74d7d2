/*
 * fuzz_smtp_data: libFuzzer target for the DATA reader (relay/smtp_data.c).
 * The first four input bytes are control: byte 0 picks max_size (small
 * limits reach SMTP_DATA_TOO_BIG), bytes 1-3 seed the positions where the
 * rest, the bytes after "354", is cut into chunks.  The rest is fed three
 * times: whole, in those chunks, and one byte at a time (when short).
 *
 * Asserted beyond "no crash":
 * - the three feeds agree exactly: bytes consumed, done, error, eight_bit,
 *   size and the message bytes (a cut anywhere changes nothing);
 * - all input is consumed until the end of data; after it, the consumed
 *   bytes end with CR LF "." CR LF (or are just "." CR LF at the start);
 *   never a bare LF in that sequence;
 * - an accepted message holds no NUL and no bare CR or LF (every line ends
 *   in CR LF), no line over SMTP_DATA_LINE_MAX octets, at most max_size
 *   bytes, its size equals its length, and eight_bit says whether it has a
 *   byte >= 0x80; a refused one holds no buffer;
 * - smtp_data_reply() has a 3-digit code for every error.
 */
/* The assertions are the point: never compiled out. */
#undef NDEBUG
#include <assert.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "redrive/smtp_data.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* What one feed ended with. */
struct fuzz_data_result {
	size_t used;
	bool done;
	enum smtp_data_error error;
	bool eight_bit;
	uint64_t size;
	char *msg;
	size_t len;
};

/* A small PRNG (xorshift32) for the chunk sizes. */
static uint32_t
fuzz_data_rand(uint32_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 17;
	*s ^= *s << 5;
	return *s;
}

/*
 * Feeds p[0..n) in chunks: mode 0 whole, 1 random sizes from seed, 2 one
 * byte at a time.  Each chunk is its own allocation so that a read past it
 * is caught.  Stops at the end of data, as the session does.
 */
static void
fuzz_data_run(const char *p, size_t n, uint64_t max, int mode, uint32_t seed,
    struct fuzz_data_result *res)
{
	struct smtp_data d;
	size_t off = 0;

	smtp_data_init(&d, max);
	while (off < n && !d.done) {
		size_t k = n - off, got;
		char *chunk;

		if (mode == 1)
			k = 1 + fuzz_data_rand(&seed) % (k < 64 ? k : 64);
		else if (mode == 2)
			k = 1;
		chunk = malloc(k);
		assert(chunk != NULL);
		memcpy(chunk, p + off, k);
		got = smtp_data_feed(&d, chunk, k);
		free(chunk);
		assert(got <= k);
		assert(got == k || d.done);
		off += got;
	}
	res->used = off;
	res->done = d.done;
	res->error = d.error;
	res->eight_bit = d.eight_bit;
	res->size = d.size;
	if (d.error != SMTP_DATA_OK)
		assert(d.buf == NULL);
	res->msg = smtp_data_take(&d, &res->len);
	assert(d.buf == NULL);
	assert((res->msg == NULL) == (res->len == 0));
	smtp_data_free(&d);
}

/* Checks the end-of-data sequence and an accepted message. */
static void
fuzz_data_check(
    const char *p, size_t n, uint64_t max, const struct fuzz_data_result *r)
{
	size_t i, line = 0;
	bool eight = false;

	assert(r->used <= n);
	if (!r->done) {
		assert(r->used == n);
		return;
	}
	assert((r->used == 3 && memcmp(p, ".\r\n", 3) == 0) ||
	    (r->used >= 5 && memcmp(p + r->used - 5, "\r\n.\r\n", 5) == 0));
	if (r->error != SMTP_DATA_OK) {
		const char *reply = smtp_data_reply(r->error);

		assert(reply != NULL && strlen(reply) > 4);
		assert(reply[0] >= '4' && reply[0] <= '5' && reply[3] == ' ');
		assert(r->msg == NULL);
		return;
	}
	assert(r->len <= max);
	assert(r->size == r->len);
	for (i = 0; i < r->len; i++) {
		unsigned char ch = (unsigned char)r->msg[i];

		assert(ch != '\0');
		if (ch >= 0x80)
			eight = true;
		if (ch == '\r')
			assert(i + 1 < r->len && r->msg[i + 1] == '\n');
		if (ch == '\n') {
			assert(i > 0 && r->msg[i - 1] == '\r');
			assert(line + 1 <= SMTP_DATA_LINE_MAX);
			line = 0;
		} else {
			line++;
		}
	}
	assert(line == 0);
	assert(eight == r->eight_bit);
}

/* Compares two feeds of the same input. */
static void
fuzz_data_same(
    const struct fuzz_data_result *a, const struct fuzz_data_result *b)
{
	assert(a->used == b->used);
	assert(a->done == b->done);
	assert(a->error == b->error);
	assert(a->eight_bit == b->eight_bit);
	assert(a->size == b->size);
	assert(a->len == b->len);
	assert(a->len == 0 || memcmp(a->msg, b->msg, a->len) == 0);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint64_t maxes[] = { 0, 1, 16, 100, 1000, 4096,
		UINT64_MAX };
	struct fuzz_data_result whole, cut, bytes;
	const char *p;
	uint64_t max;
	uint32_t seed;
	size_t n;

	if (size < 4)
		return 0;
	max = maxes[data[0] % (sizeof(maxes) / sizeof(maxes[0]))];
	seed =
	    ((uint32_t)data[1] << 16 | (uint32_t)data[2] << 8 | data[3]) | 1u;
	p = (const char *)data + 4;
	n = size - 4;
	fuzz_data_run(p, n, max, 0, seed, &whole);
	fuzz_data_check(p, n, max, &whole);
	fuzz_data_run(p, n, max, 1, seed, &cut);
	fuzz_data_same(&whole, &cut);
	free(cut.msg);
	if (n <= 4096) {
		fuzz_data_run(p, n, max, 2, seed, &bytes);
		fuzz_data_same(&whole, &bytes);
		free(bytes.msg);
	}
	free(whole.msg);
	return 0;
}
