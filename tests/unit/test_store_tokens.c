/*
 * Unit tests of the in-memory token set (core/store_tokens.c): finding
 * what was added with the same or another digest across the ring's
 * growth, letting go by arrival time, the transaction marks (a job undone,
 * a transaction undone, a mark the expiry went past), loading from
 * webhook_tokens by arrival time, and a long random run checked against a
 * plain list, which exercises the table's backward-shift deletion.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "../../core/store_int.h"

static void
test_name(char *buf, size_t len, const char *kind, unsigned n)
{
	snprintf(buf, len, "%s-%08u", kind, n);
}

/*
 * SipHash-2-4 against the reference vectors (Aumasson and Bernstein,
 * "SipHash: a fast short-input PRF", appendix A, and the reference
 * implementation's vectors.h): key 00..0f, message 00..len-1.
 */
static void
test_siphash_vectors(void **state)
{
	unsigned char key[16], msg[16];
	unsigned i;

	(void)state;
	for (i = 0; i < 16; i++)
		key[i] = msg[i] = (unsigned char)i;
	assert_true(store_tokens_siphash(key, msg, 0) == 0x726fdb47dd0e0e31ULL);
	assert_true(store_tokens_siphash(key, msg, 8) == 0x93f5f5799a932462ULL);
	assert_true(
	    store_tokens_siphash(key, msg, 15) == 0xa129ca6149be45e5ULL);
}

/* Many tokens: the ring and the table grow; each is found as added. */
static void
test_add_find_grow(void **state)
{
	struct store_tokens *t = store_tokens_new();
	char tok[32], dig[32];
	unsigned i;

	(void)state;
	assert_non_null(t);
	for (i = 0; i < 20000; i++) {
		test_name(tok, sizeof(tok), "tok", i);
		test_name(dig, sizeof(dig), "dig", i);
		assert_int_equal(
		    store_tokens_find(t, tok, dig), STORE_TOKENS_NEW);
		assert_int_equal(store_tokens_add(t, tok, dig, 1000 + i), 0);
	}
	assert_int_equal(store_tokens_count(t), 20000);
	for (i = 0; i < 20000; i++) {
		test_name(tok, sizeof(tok), "tok", i);
		test_name(dig, sizeof(dig), "dig", i);
		assert_int_equal(
		    store_tokens_find(t, tok, dig), STORE_TOKENS_SAME);
		assert_int_equal(
		    store_tokens_find(t, tok, "other"), STORE_TOKENS_OTHER);
	}
	assert_int_equal(store_tokens_find(t, "tok-x", "d"), STORE_TOKENS_NEW);
	assert_true(store_tokens_bytes(t) >= 20000 * 24);
	store_tokens_free(t);
}

/* Expiry lets go of what arrived before the cut, oldest first. */
static void
test_expire(void **state)
{
	struct store_tokens *t = store_tokens_new();
	char tok[32];
	unsigned i;

	(void)state;
	for (i = 0; i < 3000; i++) {
		test_name(tok, sizeof(tok), "tok", i);
		assert_int_equal(store_tokens_add(t, tok, "d", i), 0);
	}
	store_tokens_expire(t, 1500);
	assert_int_equal(store_tokens_count(t), 1500);
	for (i = 0; i < 3000; i++) {
		test_name(tok, sizeof(tok), "tok", i);
		assert_int_equal(store_tokens_find(t, tok, "d"),
		    i < 1500 ? STORE_TOKENS_NEW : STORE_TOKENS_SAME);
	}
	store_tokens_expire(t, 1000000);
	assert_int_equal(store_tokens_count(t), 0);
	store_tokens_free(t);
}

/* The marks: a job undone, then the whole transaction. */
static void
test_marks(void **state)
{
	struct store_tokens *t = store_tokens_new();

	(void)state;
	assert_int_equal(store_tokens_add(t, "old", "d", 1), 0);
	store_tokens_txn_begin(t);
	store_tokens_job_begin(t);
	assert_int_equal(store_tokens_add(t, "a", "d", 2), 0);
	store_tokens_job_begin(t);
	assert_int_equal(store_tokens_add(t, "b", "d", 2), 0);
	assert_int_equal(store_tokens_add(t, "c", "d", 2), 0);
	store_tokens_job_undo(t);
	assert_int_equal(store_tokens_find(t, "a", "d"), STORE_TOKENS_SAME);
	assert_int_equal(store_tokens_find(t, "b", "d"), STORE_TOKENS_NEW);
	assert_int_equal(store_tokens_find(t, "c", "d"), STORE_TOKENS_NEW);
	store_tokens_txn_undo(t);
	assert_int_equal(store_tokens_find(t, "a", "d"), STORE_TOKENS_NEW);
	assert_int_equal(store_tokens_find(t, "old", "d"), STORE_TOKENS_SAME);
	assert_int_equal(store_tokens_count(t), 1);

	/* A committed transaction stays; an expiry past a mark is safe. */
	store_tokens_txn_begin(t);
	store_tokens_job_begin(t);
	assert_int_equal(store_tokens_add(t, "e", "d", 3), 0);
	store_tokens_txn_begin(t); /* the next transaction */
	store_tokens_job_begin(t);
	assert_int_equal(store_tokens_add(t, "f", "d", 4), 0);
	store_tokens_expire(t, 10);
	assert_int_equal(store_tokens_count(t), 0);
	store_tokens_job_undo(t);
	store_tokens_txn_undo(t);
	assert_int_equal(store_tokens_count(t), 0);
	assert_int_equal(store_tokens_add(t, "g", "d", 11), 0);
	assert_int_equal(store_tokens_find(t, "g", "d"), STORE_TOKENS_SAME);
	store_tokens_free(t);
}

/* Loading reads the rows that arrived at `since` or later. */
static void
test_load(void **state)
{
	struct store_tokens *t = store_tokens_new();
	sqlite3 *db = NULL;

	(void)state;
	assert_int_equal(sqlite3_open(":memory:", &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db,
			     "CREATE TABLE webhook_tokens (id INTEGER PRIMARY"
			     " KEY, token TEXT NOT NULL, digest TEXT NOT NULL,"
			     " at INTEGER NOT NULL);"
			     "INSERT INTO webhook_tokens (token, digest, at)"
			     " VALUES ('t1', 'd1', 100), ('t2', 'd2', 200),"
			     " ('t3', 'd3', 300);",
			     NULL, NULL, NULL),
	    SQLITE_OK);
	assert_false(store_tokens_loaded(t));
	assert_int_equal(store_tokens_load(t, db, 200), SQLITE_OK);
	assert_true(store_tokens_loaded(t));
	assert_int_equal(store_tokens_count(t), 2);
	assert_int_equal(store_tokens_find(t, "t1", "d1"), STORE_TOKENS_NEW);
	assert_int_equal(store_tokens_find(t, "t2", "d2"), STORE_TOKENS_SAME);
	assert_int_equal(store_tokens_find(t, "t3", "dx"), STORE_TOKENS_OTHER);
	/* What was read is not taken off by an undo. */
	store_tokens_txn_undo(t);
	assert_int_equal(store_tokens_count(t), 2);
	/* A store without the table: an SQLite error, nothing held. */
	assert_int_equal(
	    sqlite3_exec(db, "DROP TABLE webhook_tokens", NULL, NULL, NULL),
	    SQLITE_OK);
	assert_int_not_equal(store_tokens_load(t, db, 0), SQLITE_OK);
	assert_int_equal(store_tokens_count(t), 0);
	sqlite3_close(db);
	store_tokens_free(t);
}

/* The model: every token added and not let go, in arrival order. */
struct model {
	unsigned *id;
	int64_t *at;
	size_t n, cap;
};

static void
model_push(struct model *m, unsigned id, int64_t at)
{
	if (m->n == m->cap) {
		m->cap = m->cap != 0 ? 2 * m->cap : 256;
		m->id = realloc(m->id, m->cap * sizeof(*m->id));
		m->at = realloc(m->at, m->cap * sizeof(*m->at));
		assert_non_null(m->id);
		assert_non_null(m->at);
	}
	m->id[m->n] = id;
	m->at[m->n] = at;
	m->n++;
}

/*
 * A long random run of adds, expiries and undos, every id's answer
 * checked against the model after each step.  Ids come from a small
 * range, so the table keeps clusters that deletion must shift right.
 */
static void
test_random_against_model(void **state)
{
	struct store_tokens *t = store_tokens_new();
	struct model m = { 0 };
	char tok[32];
	size_t txn_mark = 0, job_mark = 0, i, k;
	unsigned seed = 12345, step, id, live[4096];
	int64_t now = 0, cut = 0;
	bool in_txn = false;

	(void)state;
	for (step = 0; step < 40000; step++) {
		seed = seed * 1103515245u + 12345u;
		now += (seed >> 16) % 3;
		switch ((seed >> 8) % 16) {
		case 0:
			store_tokens_txn_begin(t);
			txn_mark = job_mark = m.n;
			in_txn = true;
			break;
		case 1:
			store_tokens_job_begin(t);
			job_mark = m.n;
			break;
		case 2:
			if (!in_txn)
				break;
			store_tokens_job_undo(t);
			if (job_mark > m.n)
				job_mark = m.n;
			m.n = job_mark;
			break;
		case 3:
			if (!in_txn)
				break;
			store_tokens_txn_undo(t);
			if (txn_mark > m.n)
				txn_mark = m.n;
			m.n = job_mark = txn_mark;
			in_txn = false;
			break;
		case 4:
			cut = now - 300;
			store_tokens_expire(t, cut);
			for (k = 0; k < m.n && m.at[k] < cut; k++)
				;
			memmove(m.id, m.id + k, (m.n - k) * sizeof(*m.id));
			memmove(m.at, m.at + k, (m.n - k) * sizeof(*m.at));
			m.n -= k;
			txn_mark = txn_mark > k ? txn_mark - k : 0;
			job_mark = job_mark > k ? job_mark - k : 0;
			break;
		default:
			id = (seed >> 4) % 4096;
			test_name(tok, sizeof(tok), "tok", id);
			for (k = 0; k < m.n && m.id[k] != id; k++)
				;
			if (k < m.n)
				break; /* held: the daemon never adds it twice
					*/
			assert_int_equal(store_tokens_add(t, tok, "d", now), 0);
			model_push(&m, id, now);
			break;
		}
		if (step % 97 != 0 && step < 39990)
			continue;
		memset(live, 0, sizeof(live));
		for (i = 0; i < m.n; i++)
			live[m.id[i]] = 1;
		for (id = 0; id < 4096; id++) {
			test_name(tok, sizeof(tok), "tok", id);
			assert_int_equal(store_tokens_find(t, tok, "d"),
			    live[id] ? STORE_TOKENS_SAME : STORE_TOKENS_NEW);
		}
		assert_int_equal(store_tokens_count(t), m.n);
	}
	free(m.id);
	free(m.at);
	store_tokens_free(t);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_siphash_vectors),
		cmocka_unit_test(test_add_find_grow),
		cmocka_unit_test(test_expire),
		cmocka_unit_test(test_marks),
		cmocka_unit_test(test_load),
		cmocka_unit_test(test_random_against_model),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
