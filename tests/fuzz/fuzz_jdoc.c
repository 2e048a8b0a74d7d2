/*
 * fuzz_jdoc: libFuzzer target for core/jdoc.c, differential against
 * jansson, whose json_loadb(JSON_REJECT_DUPLICATES) and json_dumps(
 * JSON_SORT_KEYS | JSON_COMPACT) jdoc must match exactly (the webhook
 * digests recorded by builds that used jansson stay valid only then).
 *
 * Asserted for every input:
 * - jdoc_parse() returns 0, -EINVAL or -ENOMEM, and accepts exactly when
 *   jansson accepts, but for text holding a NUL byte: jansson's reader
 *   skips a NUL that follows a number or a literal (it takes the byte
 *   given back after the token for an empty buffer), which jdoc refuses
 *   as RFC 8259 does, so there jdoc may only refuse more;
 * - when both accept, jdoc_canon() writes byte for byte what json_dumps
 *   writes, the top object's members come in jansson's order (the text's)
 *   with the same keys, and jdoc_get() finds each of them;
 * - parsing again gives the same text.
 */
/* The assertions are the point: never compiled out. */
#undef NDEBUG
#include <assert.h>
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "redrive/jdoc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The canonical text of a document, malloc'ed; its length in *len. */
static char *
fuzz_jdoc_canon(const struct jdoc *doc, size_t *len)
{
	struct jdoc_out o;
	char *text;

	jdoc_out_init(&o, NULL, 0);
	assert(jdoc_canon(&o, jdoc_root(doc)) == 0);
	text = malloc(o.len + 1);
	assert(text != NULL);
	memcpy(text, o.p, o.len);
	text[o.len] = '\0';
	*len = o.len;
	jdoc_out_free(&o);
	return text;
}

/* The top object's members against jansson's, in order. */
static void
fuzz_jdoc_members(const struct jdoc *doc, json_t *j)
{
	const struct jdoc_value *root = jdoc_root(doc);
	const struct jdoc_member *m;
	size_t i = 0;
	void *it;

	if (!json_is_object(j)) {
		assert(!jdoc_is_object(root));
		return;
	}
	assert(jdoc_object_size(root) == json_object_size(j));
	for (it = json_object_iter(j); it != NULL;
	     it = json_object_iter_next(j, it), i++) {
		m = jdoc_object_member(root, i);
		assert(m != NULL);
		assert(m->keylen == json_object_iter_key_len(it));
		assert(memcmp(m->key, json_object_iter_key(it), m->keylen) ==
		    0);
		assert(jdoc_get(root, m->key) == &m->value);
	}
	assert(jdoc_object_member(root, i) == NULL);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct jdoc *doc = NULL, *again = NULL;
	json_error_t jerr;
	json_t *j;
	char *mine, *mine2, *theirs;
	size_t len, len2;
	char *text;
	int rc;

	if (size > 256 * 1024)
		return 0;
	/* The text in its own allocation of its exact size. */
	text = malloc(size > 0 ? size : 1);
	assert(text != NULL);
	if (size > 0)
		memcpy(text, data, size);
	rc = jdoc_parse(text, size, &doc);
	assert(rc == 0 || rc == -EINVAL || rc == -ENOMEM);
	assert((rc == 0) == (doc != NULL));
	j = json_loadb(text, size, JSON_REJECT_DUPLICATES, &jerr);
	if (rc == -ENOMEM ||
	    (j == NULL && json_error_code(&jerr) == json_error_out_of_memory))
		goto out;
	if (memchr(text, '\0', size) != NULL)
		assert(rc != 0 || j != NULL);
	else
		assert((rc == 0) == (j != NULL));
	if (rc != 0 || j == NULL)
		goto out;
	mine = fuzz_jdoc_canon(doc, &len);
	theirs = json_dumps(j, JSON_SORT_KEYS | JSON_COMPACT);
	assert(theirs != NULL);
	assert(len == strlen(theirs) && memcmp(mine, theirs, len) == 0);
	fuzz_jdoc_members(doc, j);
	assert(jdoc_parse(text, size, &again) == 0);
	mine2 = fuzz_jdoc_canon(again, &len2);
	assert(len2 == len && memcmp(mine, mine2, len) == 0);
	free(mine2);
	free(mine);
	free(theirs);
out:
	jdoc_free(again);
	jdoc_free(doc);
	json_decref(j);
	free(text);
	return 0;
}
