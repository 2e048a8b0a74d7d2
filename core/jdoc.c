/*
 * jdoc: a strict JSON parser into one read-only document (jdoc.h), and
 * the canonical writer of the webhook digest.
 *
 * Why not jansson's tree: under webhook load its parse (a stream read one
 * byte at a time, a hash table and an allocation per object, an
 * allocation per string and per value) was two fifths of the tracker's
 * loop thread.  Here a document is one arena: values, member arrays, keys
 * and strings are carved from chunks that grow by doubling, the first
 * sized from the text, so a webhook body costs one malloc.  Arrays and
 * objects are built on two scratch stacks (values, members) and copied to
 * the arena, contiguous, when they close; each object also gets its
 * members sorted by key, which finds duplicates (refused) in n log n,
 * serves lookups by binary search and gives the canonical order.
 *
 * What is accepted is jansson's json_loadb(JSON_REJECT_DUPLICATES)
 * exactly (its load.c, 2.14): the grammar of RFC 8259 with an object or
 * an array on top; white space is space, tab, LF and CR; nesting up to
 * 2048; valid UTF-8 only; the escapes \" \\ \/ \b \f \n \r \t \uXXXX with
 * surrogates paired and \u0000 refused; raw control characters refused
 * in strings; integers (no fraction, no exponent) within long long;
 * reals that do not overflow.  The canonical text is that of jansson's
 * dump.c with JSON_SORT_KEYS | JSON_COMPACT.  Recursion is bounded by the
 * depth limit (a frame is small: 2048 of them fit any thread's stack).
 */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "redrive/jdoc.h"

/* The smallest and largest chunk; the first is sized from the text. */
#define JDOC_CHUNK_MIN ((size_t)4096)
#define JDOC_CHUNK_MAX ((size_t)1 << 20)
/* Scratch entries kept on the parser's own storage before the heap. */
#define JDOC_SCRATCH_SMALL 32
/* Objects up to this size are sorted by insertion, larger by qsort. */
#define JDOC_SORT_SMALL 16
/* A real's text: jansson's "%.17g" with ".0" appended, at most. */
#define JDOC_REAL_TEXT 64

struct jdoc_chunk {
	struct jdoc_chunk *next;
};

struct jdoc {
	struct jdoc_value root;
	struct jdoc_chunk *chunks; /* the heap chunks, newest first */
	char *cur;		   /* free space in the current chunk */
	size_t left;
	size_t next_cap; /* the size of the next chunk */
};

struct jdoc_parser {
	const unsigned char *p, *end;
	struct jdoc *doc;
	int err; /* 0, -EINVAL or -ENOMEM */
	struct jdoc_value *vals;
	size_t nvals, capvals;
	struct jdoc_member *mems;
	size_t nmems, capmems;
	struct jdoc_value vals_small[JDOC_SCRATCH_SMALL];
	struct jdoc_member mems_small[JDOC_SCRATCH_SMALL];
};

/* Rounds n up to the arena's alignment (8: pointers, doubles). */
static size_t
jdoc_align(size_t n)
{
	return (n + 7) & ~(size_t)7;
}

/* n bytes from the document's arena, or NULL (out of memory). */
static void *
jdoc_alloc(struct jdoc *doc, size_t n)
{
	struct jdoc_chunk *c;
	size_t cap;
	void *p;

	n = jdoc_align(n);
	if (n > doc->left) {
		cap = doc->next_cap;
		if (cap < n)
			cap = n;
		c = malloc(jdoc_align(sizeof(*c)) + cap);
		if (c == NULL)
			return NULL;
		c->next = doc->chunks;
		doc->chunks = c;
		doc->cur = (char *)c + jdoc_align(sizeof(*c));
		doc->left = cap;
		if (doc->next_cap < JDOC_CHUNK_MAX)
			doc->next_cap *= 2;
	}
	p = doc->cur;
	doc->cur += n;
	doc->left -= n;
	return p;
}

size_t
jdoc_utf8_len(const unsigned char *s, size_t n)
{
	unsigned char c = s[0];
	unsigned char lo = 0x80, hi = 0xbf;
	size_t need, i;

	if (c >= 0x01 && c <= 0x7f)
		return 1;
	if (c >= 0xc2 && c <= 0xdf)
		need = 1;
	else if (c >= 0xe0 && c <= 0xef)
		need = 2;
	else if (c >= 0xf0 && c <= 0xf4)
		need = 3;
	else
		return 0;
	if (c == 0xe0)
		lo = 0xa0;
	else if (c == 0xed)
		hi = 0x9f;
	else if (c == 0xf0)
		lo = 0x90;
	else if (c == 0xf4)
		hi = 0x8f;
	if (n < need + 1)
		return 0;
	for (i = 1; i <= need; i++) {
		if (s[i] < (i == 1 ? lo : 0x80) || s[i] > (i == 1 ? hi : 0xbf))
			return 0;
	}
	return need + 1;
}

/* Marks the parse failed (the first error stays). */
static bool
jdoc_fail(struct jdoc_parser *ps, int err)
{
	if (ps->err == 0)
		ps->err = err;
	return false;
}

static void
jdoc_skip_ws(struct jdoc_parser *ps)
{
	while (ps->p < ps->end &&
	    (*ps->p == ' ' || *ps->p == '\n' || *ps->p == '\r' ||
		*ps->p == '\t'))
		ps->p++;
}

/* The value of four hex digits at s, or -1. */
static long
jdoc_hex4(const unsigned char *s)
{
	long v = 0;
	int i;

	for (i = 0; i < 4; i++) {
		v <<= 4;
		if (s[i] >= '0' && s[i] <= '9')
			v |= s[i] - '0';
		else if (s[i] >= 'a' && s[i] <= 'f')
			v |= s[i] - 'a' + 10;
		else if (s[i] >= 'A' && s[i] <= 'F')
			v |= s[i] - 'A' + 10;
		else
			return -1;
	}
	return v;
}

/* Writes code point cp (valid, not a surrogate) as UTF-8; its length. */
static size_t
jdoc_put_utf8(unsigned char *d, long cp)
{
	if (cp < 0x80) {
		d[0] = (unsigned char)cp;
		return 1;
	}
	if (cp < 0x800) {
		d[0] = (unsigned char)(0xc0 | (cp >> 6));
		d[1] = (unsigned char)(0x80 | (cp & 0x3f));
		return 2;
	}
	if (cp < 0x10000) {
		d[0] = (unsigned char)(0xe0 | (cp >> 12));
		d[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
		d[2] = (unsigned char)(0x80 | (cp & 0x3f));
		return 3;
	}
	d[0] = (unsigned char)(0xf0 | (cp >> 18));
	d[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3f));
	d[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
	d[3] = (unsigned char)(0x80 | (cp & 0x3f));
	return 4;
}

/*
 * Decodes the escapes of the string body [s, e), which the scan found
 * well-formed, into d.  Returns the decoded length, or -1 on what only
 * decoding sees: \u0000, a lone or badly paired surrogate.
 */
static long
jdoc_unescape(const unsigned char *s, const unsigned char *e, unsigned char *d)
{
	unsigned char *start = d;
	long cp, lo;

	while (s < e) {
		if (*s != '\\') {
			*d++ = *s++;
			continue;
		}
		s++;
		switch (*s) {
		case 'b':
			*d++ = '\b';
			break;
		case 'f':
			*d++ = '\f';
			break;
		case 'n':
			*d++ = '\n';
			break;
		case 'r':
			*d++ = '\r';
			break;
		case 't':
			*d++ = '\t';
			break;
		case 'u':
			cp = jdoc_hex4(s + 1);
			s += 4;
			if (cp == 0)
				return -1;
			if (cp >= 0xdc00 && cp <= 0xdfff)
				return -1;
			if (cp >= 0xd800 && cp <= 0xdbff) {
				if (e - s < 7 || s[1] != '\\' || s[2] != 'u')
					return -1;
				lo = jdoc_hex4(s + 3);
				if (lo < 0xdc00 || lo > 0xdfff)
					return -1;
				cp = ((cp - 0xd800) << 10) + (lo - 0xdc00) +
				    0x10000;
				s += 6;
			}
			d += jdoc_put_utf8(d, cp);
			break;
		default: /* " \ / */
			*d++ = *s;
			break;
		}
		s++;
	}
	return (long)(d - start);
}

/*
 * A string at ps->p (its opening quote): checked, decoded into the arena,
 * NUL-terminated.  Sets *s and *len.
 */
static bool
jdoc_string_at(struct jdoc_parser *ps, const char **s, uint32_t *len)
{
	const unsigned char *b = ps->p + 1, *q = b, *end = ps->end;
	bool esc = false;
	unsigned char *d;
	size_t cl;
	long n;

	for (;;) {
		if (q >= end)
			return jdoc_fail(ps, -EINVAL);
		if (*q == '"')
			break;
		if (*q < 0x20)
			return jdoc_fail(ps, -EINVAL);
		if (*q == '\\') {
			esc = true;
			if (end - q < 2)
				return jdoc_fail(ps, -EINVAL);
			switch (q[1]) {
			case '"':
			case '\\':
			case '/':
			case 'b':
			case 'f':
			case 'n':
			case 'r':
			case 't':
				q += 2;
				continue;
			case 'u':
				if (end - q < 6 || jdoc_hex4(q + 2) < 0)
					return jdoc_fail(ps, -EINVAL);
				q += 6;
				continue;
			default:
				return jdoc_fail(ps, -EINVAL);
			}
		}
		if (*q < 0x80) {
			q++;
			continue;
		}
		cl = jdoc_utf8_len(q, (size_t)(end - q));
		if (cl == 0)
			return jdoc_fail(ps, -EINVAL);
		q += cl;
	}
	d = jdoc_alloc(ps->doc, (size_t)(q - b) + 1);
	if (d == NULL)
		return jdoc_fail(ps, -ENOMEM);
	if (!esc) {
		memcpy(d, b, (size_t)(q - b));
		n = (long)(q - b);
	} else {
		n = jdoc_unescape(b, q, d);
		if (n < 0)
			return jdoc_fail(ps, -EINVAL);
	}
	d[n] = '\0';
	*s = (const char *)d;
	*len = (uint32_t)n;
	ps->p = q + 1;
	return true;
}

/*
 * A number at ps->p, by jansson's lexer: -?(0|[1-9][0-9]*)(\.[0-9]+)?
 * ([eE][+-]?[0-9]+)?; an integer when it has neither fraction nor
 * exponent, converted by strtoll (out of range fails), else by strtod
 * (overflow fails, underflow does not).  strtod reads '.' as the decimal
 * point in the C locale, which the daemon never leaves (no setlocale).
 */
static bool
jdoc_number_at(struct jdoc_parser *ps, struct jdoc_value *out)
{
	const unsigned char *s = ps->p, *q = s, *end = ps->end;
	bool real = false;
	char small[JDOC_REAL_TEXT], *buf = small, *tail = NULL;
	unsigned long long u = 0;
	size_t n, digits;

	if (q < end && *q == '-')
		q++;
	if (q < end && *q == '0') {
		q++;
		if (q < end && *q >= '0' && *q <= '9')
			return jdoc_fail(ps, -EINVAL);
	} else if (q < end && *q >= '1' && *q <= '9') {
		while (q < end && *q >= '0' && *q <= '9')
			q++;
	} else {
		return jdoc_fail(ps, -EINVAL);
	}
	digits = (size_t)(q - s) - (*s == '-');
	if (q < end && *q == '.') {
		real = true;
		q++;
		if (q >= end || *q < '0' || *q > '9')
			return jdoc_fail(ps, -EINVAL);
		while (q < end && *q >= '0' && *q <= '9')
			q++;
	}
	if (q < end && (*q == 'e' || *q == 'E')) {
		real = true;
		q++;
		if (q < end && (*q == '+' || *q == '-'))
			q++;
		if (q >= end || *q < '0' || *q > '9')
			return jdoc_fail(ps, -EINVAL);
		while (q < end && *q >= '0' && *q <= '9')
			q++;
	}
	ps->p = q;
	n = (size_t)(q - s);
	if (!real && digits <= 18) {
		/* Fits: 18 digits are below 2^63. */
		for (q = s + (*s == '-'); q < ps->p; q++)
			u = u * 10 + (unsigned)(*q - '0');
		out->type = JDOC_INTEGER;
		out->u.i = *s == '-' ? -(long long)u : (long long)u;
		return true;
	}
	if (n >= sizeof(small)) {
		buf = malloc(n + 1);
		if (buf == NULL)
			return jdoc_fail(ps, -ENOMEM);
	}
	memcpy(buf, s, n);
	buf[n] = '\0';
	errno = 0;
	if (!real) {
		out->type = JDOC_INTEGER;
		out->u.i = strtoll(buf, &tail, 10);
		if (errno == ERANGE)
			(void)jdoc_fail(ps, -EINVAL);
	} else {
		out->type = JDOC_REAL;
		out->u.d = strtod(buf, &tail);
		if ((out->u.d == HUGE_VAL || out->u.d == -HUGE_VAL) &&
		    errno == ERANGE)
			(void)jdoc_fail(ps, -EINVAL);
	}
	if (ps->err == 0 && tail != buf + n)
		(void)jdoc_fail(ps, -EINVAL);
	if (buf != small)
		free(buf);
	return ps->err == 0;
}

/* One of the literals true, false, null at ps->p. */
static bool
jdoc_literal_at(struct jdoc_parser *ps, const char *word, enum jdoc_type type,
    struct jdoc_value *out)
{
	size_t n = strlen(word);

	if ((size_t)(ps->end - ps->p) < n || memcmp(ps->p, word, n) != 0)
		return jdoc_fail(ps, -EINVAL);
	ps->p += n;
	out->type = type;
	return true;
}

/*
 * A scratch stack of *cap entries of sz bytes at arr, twice as large:
 * moved off the parser's own storage (small) the first time.  Returns the
 * new array (and doubles *cap), or NULL with arr left as it was.
 */
static void *
jdoc_scratch_grow(void *arr, size_t *cap, size_t sz, const void *small)
{
	size_t ncap = *cap * 2;
	void *np;

	if (arr == small) {
		np = malloc(ncap * sz);
		if (np != NULL)
			memcpy(np, arr, *cap * sz);
	} else {
		np = realloc(arr, ncap * sz);
	}
	if (np != NULL)
		*cap = ncap;
	return np;
}

/* jansson's compare_keys: bytewise, the shorter first on a common prefix. */
static int
jdoc_key_cmp(const struct jdoc_member *x, const struct jdoc_member *y)
{
	int r = memcmp(
	    x->key, y->key, x->keylen < y->keylen ? x->keylen : y->keylen);

	if (r != 0)
		return r;
	return x->keylen < y->keylen ? -1 : x->keylen > y->keylen;
}

static int
jdoc_key_qcmp(const void *a, const void *b)
{
	return jdoc_key_cmp(
	    *(struct jdoc_member *const *)a, *(struct jdoc_member *const *)b);
}

/* Sorts an object's by_key index; false when two keys are the same. */
static bool
jdoc_sort_keys(struct jdoc_member **k, size_t n)
{
	struct jdoc_member *m;
	size_t i, j;

	if (n <= JDOC_SORT_SMALL) {
		for (i = 1; i < n; i++) {
			m = k[i];
			for (j = i; j > 0 && jdoc_key_cmp(k[j - 1], m) > 0; j--)
				k[j] = k[j - 1];
			k[j] = m;
		}
	} else {
		qsort(k, n, sizeof(struct jdoc_member *), jdoc_key_qcmp);
	}
	for (i = 1; i < n; i++)
		if (jdoc_key_cmp(k[i - 1], k[i]) == 0)
			return false;
	return true;
}

static bool jdoc_value_at(
    struct jdoc_parser *ps, unsigned depth, struct jdoc_value *out);

/* An object at ps->p (its '{'), nested depth deep. */
static bool
jdoc_object_at(struct jdoc_parser *ps, unsigned depth, struct jdoc_value *out)
{
	size_t base = ps->nmems, n, i;
	struct jdoc_member *m;
	struct jdoc_member **k;
	struct jdoc_value v;
	void *grown;

	if (depth > JDOC_DEPTH_MAX)
		return jdoc_fail(ps, -EINVAL);
	ps->p++;
	jdoc_skip_ws(ps);
	if (ps->p < ps->end && *ps->p == '}') {
		ps->p++;
		goto close;
	}
	for (;;) {
		if (ps->nmems == ps->capmems) {
			grown = jdoc_scratch_grow(ps->mems, &ps->capmems,
			    sizeof(*ps->mems), ps->mems_small);
			if (grown == NULL)
				return jdoc_fail(ps, -ENOMEM);
			ps->mems = grown;
		}
		m = &ps->mems[ps->nmems];
		jdoc_skip_ws(ps);
		if (ps->p >= ps->end || *ps->p != '"' ||
		    !jdoc_string_at(ps, &m->key, &m->keylen))
			return jdoc_fail(ps, -EINVAL);
		ps->nmems++;
		jdoc_skip_ws(ps);
		if (ps->p >= ps->end || *ps->p != ':')
			return jdoc_fail(ps, -EINVAL);
		ps->p++;
		/* ps->mems may move while the value is parsed: no m. */
		if (!jdoc_value_at(ps, depth, &v))
			return false;
		ps->mems[ps->nmems - 1].value = v;
		jdoc_skip_ws(ps);
		if (ps->p < ps->end && *ps->p == ',') {
			ps->p++;
			continue;
		}
		if (ps->p < ps->end && *ps->p == '}') {
			ps->p++;
			break;
		}
		return jdoc_fail(ps, -EINVAL);
	}
close:
	n = ps->nmems - base;
	out->type = JDOC_OBJECT;
	out->n = (uint32_t)n;
	out->u.o.members = NULL;
	out->u.o.by_key = NULL;
	if (n == 0)
		return true;
	m = jdoc_alloc(ps->doc, n * sizeof(*m));
	k = jdoc_alloc(ps->doc, n * sizeof(struct jdoc_member *));
	if (m == NULL || k == NULL)
		return jdoc_fail(ps, -ENOMEM);
	memcpy(m, ps->mems + base, n * sizeof(*m));
	ps->nmems = base;
	for (i = 0; i < n; i++)
		k[i] = &m[i];
	if (!jdoc_sort_keys(k, n))
		return jdoc_fail(ps, -EINVAL);
	out->u.o.members = m;
	out->u.o.by_key = k;
	return true;
}

/* An array at ps->p (its '['), nested depth deep. */
static bool
jdoc_array_at(struct jdoc_parser *ps, unsigned depth, struct jdoc_value *out)
{
	size_t base = ps->nvals, n;
	struct jdoc_value v, *items;
	void *grown;

	if (depth > JDOC_DEPTH_MAX)
		return jdoc_fail(ps, -EINVAL);
	ps->p++;
	jdoc_skip_ws(ps);
	if (ps->p < ps->end && *ps->p == ']') {
		ps->p++;
		goto close;
	}
	for (;;) {
		if (!jdoc_value_at(ps, depth, &v))
			return false;
		if (ps->nvals == ps->capvals) {
			grown = jdoc_scratch_grow(ps->vals, &ps->capvals,
			    sizeof(*ps->vals), ps->vals_small);
			if (grown == NULL)
				return jdoc_fail(ps, -ENOMEM);
			ps->vals = grown;
		}
		ps->vals[ps->nvals++] = v;
		jdoc_skip_ws(ps);
		if (ps->p < ps->end && *ps->p == ',') {
			ps->p++;
			continue;
		}
		if (ps->p < ps->end && *ps->p == ']') {
			ps->p++;
			break;
		}
		return jdoc_fail(ps, -EINVAL);
	}
close:
	n = ps->nvals - base;
	out->type = JDOC_ARRAY;
	out->n = (uint32_t)n;
	out->u.items = NULL;
	if (n == 0)
		return true;
	items = jdoc_alloc(ps->doc, n * sizeof(*items));
	if (items == NULL)
		return jdoc_fail(ps, -ENOMEM);
	memcpy(items, ps->vals + base, n * sizeof(*items));
	ps->nvals = base;
	out->u.items = items;
	return true;
}

/* Any value at ps->p (white space first), inside depth containers. */
static bool
jdoc_value_at(struct jdoc_parser *ps, unsigned depth, struct jdoc_value *out)
{
	memset(out, 0, sizeof(*out));
	jdoc_skip_ws(ps);
	if (ps->p >= ps->end)
		return jdoc_fail(ps, -EINVAL);
	switch (*ps->p) {
	case '{':
		return jdoc_object_at(ps, depth + 1, out);
	case '[':
		return jdoc_array_at(ps, depth + 1, out);
	case '"':
		out->type = JDOC_STRING;
		return jdoc_string_at(ps, &out->u.s, &out->n);
	case 't':
		return jdoc_literal_at(ps, "true", JDOC_TRUE, out);
	case 'f':
		return jdoc_literal_at(ps, "false", JDOC_FALSE, out);
	case 'n':
		return jdoc_literal_at(ps, "null", JDOC_NULL, out);
	default:
		if (*ps->p == '-' || (*ps->p >= '0' && *ps->p <= '9'))
			return jdoc_number_at(ps, out);
		return jdoc_fail(ps, -EINVAL);
	}
}

int
jdoc_parse(const char *text, size_t len, struct jdoc **out)
{
	struct jdoc_parser ps;
	struct jdoc *doc;
	size_t first;
	int rc;

	*out = NULL;
	if (text == NULL || len > JDOC_TEXT_MAX)
		return -EINVAL;
	/* Enough for a webhook body in one go: values and copies. */
	first = len * 3;
	if (first < JDOC_CHUNK_MIN)
		first = JDOC_CHUNK_MIN;
	if (first > JDOC_CHUNK_MAX)
		first = JDOC_CHUNK_MAX;
	doc = malloc(jdoc_align(sizeof(*doc)) + first);
	if (doc == NULL)
		return -ENOMEM;
	memset(doc, 0, sizeof(*doc));
	doc->cur = (char *)doc + jdoc_align(sizeof(*doc));
	doc->left = first;
	doc->next_cap = first * 2;
	memset(&ps, 0, offsetof(struct jdoc_parser, vals_small));
	ps.p = (const unsigned char *)text;
	ps.end = ps.p + len;
	ps.doc = doc;
	ps.vals = ps.vals_small;
	ps.capvals = JDOC_SCRATCH_SMALL;
	ps.mems = ps.mems_small;
	ps.capmems = JDOC_SCRATCH_SMALL;
	jdoc_skip_ws(&ps);
	if (ps.p >= ps.end || (*ps.p != '{' && *ps.p != '['))
		(void)jdoc_fail(&ps, -EINVAL);
	else if (jdoc_value_at(&ps, 0, &doc->root)) {
		jdoc_skip_ws(&ps);
		if (ps.p != ps.end)
			(void)jdoc_fail(&ps, -EINVAL);
	}
	rc = ps.err;
	if (ps.vals != ps.vals_small)
		free(ps.vals);
	if (ps.mems != ps.mems_small)
		free(ps.mems);
	if (rc != 0) {
		jdoc_free(doc);
		return rc;
	}
	*out = doc;
	return 0;
}

const struct jdoc_value *
jdoc_root(const struct jdoc *doc)
{
	return &doc->root;
}

void
jdoc_free(struct jdoc *doc)
{
	struct jdoc_chunk *c, *next;

	if (doc == NULL)
		return;
	for (c = doc->chunks; c != NULL; c = next) {
		next = c->next;
		free(c);
	}
	free(doc);
}

bool
jdoc_is_object(const struct jdoc_value *v)
{
	return v != NULL && v->type == JDOC_OBJECT;
}

bool
jdoc_is_string(const struct jdoc_value *v)
{
	return v != NULL && v->type == JDOC_STRING;
}

bool
jdoc_is_integer(const struct jdoc_value *v)
{
	return v != NULL && v->type == JDOC_INTEGER;
}

bool
jdoc_is_real(const struct jdoc_value *v)
{
	return v != NULL && v->type == JDOC_REAL;
}

bool
jdoc_is_true(const struct jdoc_value *v)
{
	return v != NULL && v->type == JDOC_TRUE;
}

const char *
jdoc_string(const struct jdoc_value *v)
{
	return jdoc_is_string(v) ? v->u.s : NULL;
}

size_t
jdoc_string_len(const struct jdoc_value *v)
{
	return jdoc_is_string(v) ? v->n : 0;
}

long long
jdoc_integer(const struct jdoc_value *v)
{
	return jdoc_is_integer(v) ? v->u.i : 0;
}

double
jdoc_real(const struct jdoc_value *v)
{
	return jdoc_is_real(v) ? v->u.d : 0.0;
}

const struct jdoc_value *
jdoc_get(const struct jdoc_value *o, const char *key)
{
	struct jdoc_member want;
	size_t lo = 0, hi, mid;
	int r;

	if (!jdoc_is_object(o) || key == NULL)
		return NULL;
	want.key = key;
	want.keylen = (uint32_t)strnlen(key, UINT32_MAX);
	hi = o->n;
	while (lo < hi) {
		mid = lo + (hi - lo) / 2;
		r = jdoc_key_cmp(o->u.o.by_key[mid], &want);
		if (r == 0)
			return &o->u.o.by_key[mid]->value;
		if (r < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

size_t
jdoc_object_size(const struct jdoc_value *o)
{
	return jdoc_is_object(o) ? o->n : 0;
}

const struct jdoc_member *
jdoc_object_member(const struct jdoc_value *o, size_t i)
{
	return jdoc_is_object(o) && i < o->n ? &o->u.o.members[i] : NULL;
}

void
jdoc_out_init(struct jdoc_out *o, char *buf, size_t cap)
{
	o->p = buf;
	o->len = 0;
	o->cap = cap;
	o->heap = false;
	o->fail = false;
}

void
jdoc_out_free(struct jdoc_out *o)
{
	if (o->heap)
		free(o->p);
	o->p = NULL;
	o->len = o->cap = 0;
	o->heap = false;
}

/* Appends n bytes; on failure marks o failed and drops the rest. */
static void
jdoc_put(struct jdoc_out *o, const char *s, size_t n)
{
	size_t cap;
	char *np;

	if (o->fail)
		return;
	if (n > o->cap - o->len) {
		cap = o->cap > 0 ? o->cap : 256;
		while (n > cap - o->len) {
			if (cap > SIZE_MAX / 2) {
				o->fail = true;
				return;
			}
			cap *= 2;
		}
		np = o->heap ? realloc(o->p, cap) : malloc(cap);
		if (np == NULL) {
			o->fail = true;
			return;
		}
		if (!o->heap && o->len > 0)
			memcpy(np, o->p, o->len);
		o->p = np;
		o->cap = cap;
		o->heap = true;
	}
	memcpy(o->p + o->len, s, n);
	o->len += n;
}

/*
 * A string as jansson's dump_string writes it without JSON_ENSURE_ASCII
 * or JSON_ESCAPE_SLASH.  The strings are valid UTF-8, whose multi-byte
 * sequences never hold a byte below 0x80: bytewise is exact.
 */
static void
jdoc_canon_string(struct jdoc_out *o, const char *s, size_t n)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t i, run = 0;
	unsigned char ch;
	char esc[6];

	jdoc_put(o, "\"", 1);
	for (i = 0; i < n; i++) {
		ch = (unsigned char)s[i];
		if (ch >= 0x20 && ch != '"' && ch != '\\')
			continue;
		jdoc_put(o, s + run, i - run);
		run = i + 1;
		esc[0] = '\\';
		switch (ch) {
		case '"':
		case '\\':
			esc[1] = (char)ch;
			break;
		case '\b':
			esc[1] = 'b';
			break;
		case '\f':
			esc[1] = 'f';
			break;
		case '\n':
			esc[1] = 'n';
			break;
		case '\r':
			esc[1] = 'r';
			break;
		case '\t':
			esc[1] = 't';
			break;
		default:
			esc[1] = 'u';
			esc[2] = '0';
			esc[3] = '0';
			esc[4] = hex[ch >> 4];
			esc[5] = hex[ch & 0xf];
			jdoc_put(o, esc, 6);
			continue;
		}
		jdoc_put(o, esc, 2);
	}
	jdoc_put(o, s + run, n - run);
	jdoc_put(o, "\"", 1);
}

/* An integer in decimal ("%lld"). */
static void
jdoc_canon_integer(struct jdoc_out *o, long long v)
{
	char buf[24], *p = buf + sizeof(buf);
	unsigned long long u =
	    v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;

	do {
		*--p = (char)('0' + u % 10);
		u /= 10;
	} while (u != 0);
	if (v < 0)
		*--p = '-';
	jdoc_put(o, p, (size_t)(buf + sizeof(buf) - p));
}

/*
 * A real as jansson's jsonp_dtostr writes it at precision 17: "%.17g",
 * the locale's decimal comma (if any) made a point, ".0" appended when
 * there is neither a point nor an exponent, and the exponent stripped of
 * its '+' and leading zeros.
 */
static void
jdoc_canon_real(struct jdoc_out *o, double d)
{
	char buf[JDOC_REAL_TEXT], *e, *start, *digits;
	int n = snprintf(buf, sizeof(buf) - 3, "%.17g", d);
	size_t len;

	if (n < 0 || (size_t)n >= sizeof(buf) - 3) {
		o->fail = true;
		return;
	}
	len = (size_t)n;
	for (e = buf; *e != '\0'; e++)
		if (*e == ',')
			*e = '.';
	if (strchr(buf, '.') == NULL && strchr(buf, 'e') == NULL) {
		memcpy(buf + len, ".0", 3);
		len += 2;
	}
	e = strchr(buf, 'e');
	if (e != NULL) {
		start = e + 1;
		digits = start + 1;
		if (*start == '-')
			start++;
		while (*digits == '0')
			digits++;
		if (digits != start) {
			memmove(
			    start, digits, len - (size_t)(digits - buf) + 1);
			len -= (size_t)(digits - start);
		}
	}
	jdoc_put(o, buf, len);
}

int
jdoc_canon(struct jdoc_out *o, const struct jdoc_value *v)
{
	size_t i;

	if (v == NULL) {
		o->fail = true;
		return -ENOMEM;
	}
	switch (v->type) {
	case JDOC_OBJECT:
		jdoc_put(o, "{", 1);
		for (i = 0; i < v->n && !o->fail; i++) {
			if (i > 0)
				jdoc_put(o, ",", 1);
			jdoc_canon_string(
			    o, v->u.o.by_key[i]->key, v->u.o.by_key[i]->keylen);
			jdoc_put(o, ":", 1);
			(void)jdoc_canon(o, &v->u.o.by_key[i]->value);
		}
		jdoc_put(o, "}", 1);
		break;
	case JDOC_ARRAY:
		jdoc_put(o, "[", 1);
		for (i = 0; i < v->n && !o->fail; i++) {
			if (i > 0)
				jdoc_put(o, ",", 1);
			(void)jdoc_canon(o, &v->u.items[i]);
		}
		jdoc_put(o, "]", 1);
		break;
	case JDOC_STRING:
		jdoc_canon_string(o, v->u.s, v->n);
		break;
	case JDOC_INTEGER:
		jdoc_canon_integer(o, v->u.i);
		break;
	case JDOC_REAL:
		jdoc_canon_real(o, v->u.d);
		break;
	case JDOC_TRUE:
		jdoc_put(o, "true", 4);
		break;
	case JDOC_FALSE:
		jdoc_put(o, "false", 5);
		break;
	case JDOC_NULL:
		jdoc_put(o, "null", 4);
		break;
	}
	return o->fail ? -ENOMEM : 0;
}
