/*
 * jdoc: a JSON text (RFC 8259) parsed into one read-only document, for the
 * webhook path, where jansson's tree was two fifths of the tracker's loop
 * time under load.  One allocation for a typical webhook body (values,
 * keys and strings share an arena), no I/O, any thread (a document is
 * used by one thread at a time).
 *
 * It accepts exactly what jansson's json_loadb(JSON_REJECT_DUPLICATES)
 * accepts (but for one quirk of jansson's reader: it skips a NUL byte
 * right after a number or a literal, which jdoc refuses), and jdoc_canon()
 * writes exactly what json_dumps(JSON_SORT_KEYS | JSON_COMPACT) writes, byte
 * for byte: the webhook digest of an event is SHA-256 of that text and digests
 * recorded by earlier builds (which used jansson) must stay valid.
 * tests/unit/test_jdoc.c and the fuzz target tests/fuzz/fuzz_jdoc.c hold it to
 * jansson input by input.  So: the top value is an object or an array; nesting
 * is at most JDOC_DEPTH_MAX deep; strings are valid UTF-8 (RFC 3629), escapes
 * are checked (a lone surrogate and \u0000 are refused), control characters
 * must be escaped; duplicate keys in one object are refused; a number without
 * fraction or exponent is an integer and must fit in long long; a real must not
 * overflow a double; nothing but white space may follow.
 */
#ifndef REDRIVE_JDOC_H
#define REDRIVE_JDOC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* jansson's JSON_PARSER_MAX_DEPTH: arrays and objects nested deeper fail. */
#define JDOC_DEPTH_MAX 2048
/* The longest text parsed (counts are kept in 32 bits). */
#define JDOC_TEXT_MAX ((size_t)1 << 30)

enum jdoc_type {
	JDOC_NULL = 0,
	JDOC_FALSE,
	JDOC_TRUE,
	JDOC_INTEGER,
	JDOC_REAL,
	JDOC_STRING,
	JDOC_ARRAY,
	JDOC_OBJECT,
};

struct jdoc_member;

/*
 * A value.  Read it through the functions below, which all take NULL (a
 * missing value) and answer as for a value of no type.
 */
struct jdoc_value {
	enum jdoc_type type;
	uint32_t n; /* string: bytes; array: items; object: members */
	union {
		long long i;
		double d;
		const char *s; /* NUL-terminated, no NUL inside */
		struct jdoc_value *items;
		struct {
			struct jdoc_member *members; /* in the text's order */
			struct jdoc_member **by_key; /* sorted as jansson */
		} o;
	} u;
};

struct jdoc_member {
	const char *key; /* NUL-terminated, no NUL inside */
	uint32_t keylen;
	struct jdoc_value value;
};

struct jdoc;

/*
 * Parses len bytes at text (no NUL needed).  Returns 0 and a document in
 * *out (free it with jdoc_free), -EINVAL when the text is not JSON as
 * above, -ENOMEM.  The document does not point into text.
 */
int jdoc_parse(const char *text, size_t len, struct jdoc **out);

/* The top value of a document: an object or an array. */
const struct jdoc_value *jdoc_root(const struct jdoc *doc);

/* Frees a document and every value in it; NULL is fine. */
void jdoc_free(struct jdoc *doc);

/*
 * The length of the valid UTF-8 sequence (RFC 3629 section 4) at s, which
 * has n > 0 bytes, or 0 when the bytes there are not one (NUL included).
 */
size_t jdoc_utf8_len(const unsigned char *s, size_t n);

/* The type checks; false for NULL. */
bool jdoc_is_object(const struct jdoc_value *v);
bool jdoc_is_string(const struct jdoc_value *v);
bool jdoc_is_integer(const struct jdoc_value *v);
bool jdoc_is_real(const struct jdoc_value *v);
bool jdoc_is_true(const struct jdoc_value *v);

/* A string's bytes (NUL-terminated) and length; NULL and 0 if not one. */
const char *jdoc_string(const struct jdoc_value *v);
size_t jdoc_string_len(const struct jdoc_value *v);

/* An integer's or a real's value; 0 for anything else. */
long long jdoc_integer(const struct jdoc_value *v);
double jdoc_real(const struct jdoc_value *v);

/*
 * The value of key (NUL-terminated) in object o, or NULL when o is not an
 * object or has no such key.
 */
const struct jdoc_value *jdoc_get(const struct jdoc_value *o, const char *key);

/* An object's members in the text's order: count, and the i-th (or NULL). */
size_t jdoc_object_size(const struct jdoc_value *o);
const struct jdoc_member *jdoc_object_member(
    const struct jdoc_value *o, size_t i);

/*
 * A growing output buffer, started on the caller's storage (jdoc_out_init)
 * and moved to the heap when that is full; a failed allocation marks it
 * failed and drops what follows.  jdoc_out_free() frees the heap copy.
 */
struct jdoc_out {
	char *p;
	size_t len, cap;
	bool heap;
	bool fail;
};

void jdoc_out_init(struct jdoc_out *o, char *buf, size_t cap);
void jdoc_out_free(struct jdoc_out *o);

/*
 * Appends v as json_dumps(v, JSON_SORT_KEYS | JSON_COMPACT) writes it
 * (keys sorted bytewise, the shorter first on a common prefix; no white
 * space; strings escaped as jansson does; reals with 17 significant
 * digits).  Returns 0, or -ENOMEM when the buffer failed.
 */
int jdoc_canon(struct jdoc_out *o, const struct jdoc_value *v);

#endif
