/*
 * store_tokens: the webhook tokens of the replay window, in memory, for
 * the store thread (store_int.h).
 *
 * A webhook's token is refused a second time (FACTS.md 3.8).  The tokens
 * are stored in webhook_tokens, one row per token in arrival order (an
 * integer key: each commit appends to the same last pages), and looked up
 * here instead of through an index on the token: new tokens are random,
 * so such an index put every webhook on a page of its own, and those page
 * writes were the largest single cost of a webhook (docs/bench.md).
 *
 * What is held: for each token of the last `keep` milliseconds, 64 bits of
 * the token and of its event's digest (SipHash-2-4 under a random key of
 * the process: a sender cannot choose tokens that collide), and its
 * arrival time, in a ring in arrival order (24 bytes), plus an
 * open-addressing table of ring slots keyed by the token's bits (linear
 * probing, at most half full, deletion by backward shift; 8 bytes a
 * token).  Two distinct tokens share 64 bits with probability 2^-64 per
 * pair: such a webhook would be refused as a replay, never recorded twice.
 * (SHA-256 through OpenSSL's EVP was 9% of the store thread's CPU.)
 *
 * Transactions: the store thread runs a batch of jobs in one transaction,
 * each in its own savepoint.  A token added by a job is in the ring at
 * once (a later job of the same batch must see it); the marks taken at
 * BEGIN and at each SAVEPOINT are ring positions, and undoing a job or
 * the transaction takes the ring's newest entries off back to the mark,
 * so the set holds exactly what is committed plus what the open
 * transaction added.
 *
 * Not thread-safe: used by the store thread only.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <sys/random.h>
#include <sys/types.h>

#include <sqlite3.h>

#include "store_int.h"

/* The first ring; it doubles when full. */
#define STORE_TOKENS_MIN 1024
/* The largest ring: the table's slots hold a ring index in 32 bits. */
#define STORE_TOKENS_MAX ((size_t)1 << 30)

struct store_tokens_entry {
	uint64_t tok; /* the token's bits */
	uint64_t dig; /* its event's digest's bits */
	int64_t at;   /* arrival, ms since the epoch */
};

struct store_tokens {
	struct store_tokens_entry *ring; /* cap entries; seq & (cap - 1) */
	size_t cap;
	uint64_t head, tail; /* sequence numbers: [head, tail) is held */
	uint32_t *slot;	     /* 2 * cap: ring index + 1, 0 empty */
	uint64_t txn_mark, job_mark;
	unsigned char key[16]; /* SipHash key, random per set */
	bool loaded;
};

static uint64_t
store_tokens_rotl(uint64_t x, unsigned b)
{
	return (x << b) | (x >> (64 - b));
}

/* One SipRound on v[0..3]. */
static void
store_tokens_sipround(uint64_t *v)
{
	v[0] += v[1];
	v[1] = store_tokens_rotl(v[1], 13);
	v[1] ^= v[0];
	v[0] = store_tokens_rotl(v[0], 32);
	v[2] += v[3];
	v[3] = store_tokens_rotl(v[3], 16);
	v[3] ^= v[2];
	v[0] += v[3];
	v[3] = store_tokens_rotl(v[3], 21);
	v[3] ^= v[0];
	v[2] += v[1];
	v[1] = store_tokens_rotl(v[1], 17);
	v[1] ^= v[2];
	v[2] = store_tokens_rotl(v[2], 32);
}

/* Little-endian 64 bits of p[0..n), n <= 8. */
static uint64_t
store_tokens_le(const unsigned char *p, size_t n)
{
	uint64_t v = 0;

	while (n-- > 0)
		v = (v << 8) | p[n];
	return v;
}

uint64_t
store_tokens_siphash(const unsigned char key[16], const void *data, size_t len)
{
	const unsigned char *p = data;
	uint64_t k0 = store_tokens_le(key, 8), k1 = store_tokens_le(key + 8, 8);
	uint64_t v[4], m, b = (uint64_t)len << 56;
	size_t i;

	v[0] = k0 ^ 0x736f6d6570736575ULL;
	v[1] = k1 ^ 0x646f72616e646f6dULL;
	v[2] = k0 ^ 0x6c7967656e657261ULL;
	v[3] = k1 ^ 0x7465646279746573ULL;
	for (i = 0; i + 8 <= len; i += 8) {
		m = store_tokens_le(p + i, 8);
		v[3] ^= m;
		store_tokens_sipround(v);
		store_tokens_sipround(v);
		v[0] ^= m;
	}
	b |= store_tokens_le(p + i, len - i);
	v[3] ^= b;
	store_tokens_sipround(v);
	store_tokens_sipround(v);
	v[0] ^= b;
	v[2] ^= 0xff;
	for (i = 0; i < 4; i++)
		store_tokens_sipround(v);
	return v[0] ^ v[1] ^ v[2] ^ v[3];
}

/* 64 bits of s: SipHash-2-4 under the set's random key. */
static uint64_t
store_tokens_bits(const struct store_tokens *t, const char *s)
{
	return store_tokens_siphash(t->key, s, strlen(s));
}

static size_t
store_tokens_smask(const struct store_tokens *t)
{
	return 2 * t->cap - 1;
}

static struct store_tokens_entry *
store_tokens_at(const struct store_tokens *t, uint64_t seq)
{
	return &t->ring[seq & (t->cap - 1)];
}

/* Puts ring sequence seq into the table. */
static void
store_tokens_index(struct store_tokens *t, uint64_t seq)
{
	size_t m = store_tokens_smask(t), i;

	i = (size_t)store_tokens_at(t, seq)->tok & m;
	while (t->slot[i] != 0)
		i = (i + 1) & m;
	t->slot[i] = (uint32_t)(seq & (t->cap - 1)) + 1;
}

/* Takes ring sequence seq out of the table (backward-shift deletion). */
static void
store_tokens_unindex(struct store_tokens *t, uint64_t seq)
{
	size_t m = store_tokens_smask(t), i, j, k;
	uint32_t want = (uint32_t)(seq & (t->cap - 1)) + 1;

	i = (size_t)store_tokens_at(t, seq)->tok & m;
	while (t->slot[i] != want) {
		if (t->slot[i] == 0)
			return; /* not there: nothing to undo */
		i = (i + 1) & m;
	}
	j = i;
	for (;;) {
		j = (j + 1) & m;
		if (t->slot[j] == 0)
			break;
		k = (size_t)t->ring[t->slot[j] - 1].tok & m;
		/* Stays when its home lies cyclically in (i, j]. */
		if (i <= j ? (i < k && k <= j) : (i < k || k <= j))
			continue;
		t->slot[i] = t->slot[j];
		i = j;
	}
	t->slot[i] = 0;
}

/* Doubles the ring and rebuilds the table; 0 or -ENOMEM. */
static int
store_tokens_grow(struct store_tokens *t)
{
	struct store_tokens_entry *ring;
	size_t cap = t->cap != 0 ? 2 * t->cap : STORE_TOKENS_MIN;
	uint32_t *slot;
	uint64_t s;

	if (cap > STORE_TOKENS_MAX)
		return -ENOMEM;
	ring = calloc(cap, sizeof(*ring));
	slot = calloc(2 * cap, sizeof(*slot));
	if (ring == NULL || slot == NULL) {
		free(ring);
		free(slot);
		return -ENOMEM;
	}
	for (s = t->head; s != t->tail; s++)
		ring[s & (cap - 1)] = *store_tokens_at(t, s);
	free(t->ring);
	free(t->slot);
	t->ring = ring;
	t->slot = slot;
	t->cap = cap;
	for (s = t->head; s != t->tail; s++)
		store_tokens_index(t, s);
	return 0;
}

struct store_tokens *
store_tokens_new(void)
{
	struct store_tokens *t = calloc(1, sizeof(*t));

	if (t == NULL)
		return NULL;
	/*
	 * A key no sender can know: tokens that collide in the table (or in
	 * their 64 bits) cannot be chosen, not even by one holding the
	 * signing key.
	 */
	if (getrandom(t->key, sizeof(t->key), 0) != (ssize_t)sizeof(t->key) ||
	    store_tokens_grow(t) != 0) {
		free(t);
		return NULL;
	}
	return t;
}

void
store_tokens_free(struct store_tokens *t)
{
	if (t == NULL)
		return;
	free(t->ring);
	free(t->slot);
	free(t);
}

size_t
store_tokens_count(const struct store_tokens *t)
{
	return (size_t)(t->tail - t->head);
}

size_t
store_tokens_bytes(const struct store_tokens *t)
{
	return t->cap * (sizeof(*t->ring) + 2 * sizeof(*t->slot));
}

/* Appends one entry; 0 or -ENOMEM. */
static int
store_tokens_push(
    struct store_tokens *t, uint64_t tok, uint64_t dig, int64_t at)
{
	struct store_tokens_entry *e;
	int rc;

	if (store_tokens_count(t) == t->cap) {
		rc = store_tokens_grow(t);
		if (rc != 0)
			return rc;
	}
	e = store_tokens_at(t, t->tail);
	e->tok = tok;
	e->dig = dig;
	e->at = at;
	store_tokens_index(t, t->tail);
	t->tail++;
	return 0;
}

int
store_tokens_add(
    struct store_tokens *t, const char *token, const char *digest, int64_t at)
{
	return store_tokens_push(
	    t, store_tokens_bits(t, token), store_tokens_bits(t, digest), at);
}

enum store_tokens_seen
store_tokens_find(
    const struct store_tokens *t, const char *token, const char *digest)
{
	size_t m = store_tokens_smask(t), i;
	uint64_t tok = store_tokens_bits(t, token);
	const struct store_tokens_entry *e;

	for (i = (size_t)tok & m; t->slot[i] != 0; i = (i + 1) & m) {
		e = &t->ring[t->slot[i] - 1];
		if (e->tok == tok)
			return e->dig == store_tokens_bits(t, digest)
			    ? STORE_TOKENS_SAME
			    : STORE_TOKENS_OTHER;
	}
	return STORE_TOKENS_NEW;
}

void
store_tokens_expire(struct store_tokens *t, int64_t before)
{
	/*
	 * Oldest first.  An entry that arrived out of order (the clock was
	 * set back) waits behind a younger one: it is held a little longer,
	 * never dropped early.
	 */
	while (t->head != t->tail && store_tokens_at(t, t->head)->at < before) {
		store_tokens_unindex(t, t->head);
		t->head++;
	}
	if (t->txn_mark < t->head)
		t->txn_mark = t->head;
	if (t->job_mark < t->head)
		t->job_mark = t->head;
}

/* Takes the newest entries off, back to sequence mark. */
static void
store_tokens_truncate(struct store_tokens *t, uint64_t mark)
{
	while (t->tail > mark && t->tail > t->head) {
		t->tail--;
		store_tokens_unindex(t, t->tail);
	}
}

void
store_tokens_txn_begin(struct store_tokens *t)
{
	t->txn_mark = t->job_mark = t->tail;
}

void
store_tokens_job_begin(struct store_tokens *t)
{
	t->job_mark = t->tail;
}

void
store_tokens_job_undo(struct store_tokens *t)
{
	store_tokens_truncate(t, t->job_mark);
}

void
store_tokens_txn_undo(struct store_tokens *t)
{
	store_tokens_truncate(t, t->txn_mark);
	t->job_mark = t->tail;
}

bool
store_tokens_loaded(const struct store_tokens *t)
{
	return t->loaded;
}

int
store_tokens_load(struct store_tokens *t, sqlite3 *db, int64_t since)
{
	static const char sql[] = "SELECT token, digest, at FROM webhook_tokens"
				  " WHERE at >= ?1 ORDER BY at";
	sqlite3_stmt *st = NULL;
	const char *tok, *dig;
	int rc;

	store_tokens_truncate(t, t->head);
	rc = store_sql_prepare(db, sql, &st);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_int64(st, 1, since);
	while (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		tok = (const char *)sqlite3_column_text(st, 0);
		dig = (const char *)sqlite3_column_text(st, 1);
		rc = SQLITE_OK;
		if (tok != NULL && dig != NULL &&
		    store_tokens_add(
			t, tok, dig, sqlite3_column_int64(st, 2)) != 0)
			rc = SQLITE_NOMEM;
	}
	if (rc == SQLITE_DONE)
		rc = SQLITE_OK;
	sqlite3_finalize(st);
	if (rc != SQLITE_OK) {
		store_tokens_truncate(t, t->head);
		return rc;
	}
	/* What was read is committed: no undo takes it off again. */
	t->txn_mark = t->job_mark = t->tail;
	t->loaded = true;
	return SQLITE_OK;
}
