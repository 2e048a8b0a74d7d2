/*
 * message: reads header fields out of a stored message (message.h).  It
 * owns the little of RFC 5322 that redrive needs: where the header section
 * ends (2.1: the first empty line), how a field is found (2.2: the name
 * before the colon, compared case-insensitively) and unfolded (2.2.3), and
 * the msg-id of the Message-ID field (3.6.4).  Lines may end in CR LF or,
 * leniently, in a bare LF.  No I/O, no recursion; the only allocation is
 * the result, never larger than the field.  Never reads past len.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "redrive/message.h"

/* RFC 5322 2.1.1: a line is at most 998 characters; an id fits in one. */
#define MESSAGE_ID_MAX 998

/* One line of msg: [start, end) without its line end; next line at next. */
struct message_line {
	size_t start;
	size_t end;
	size_t next;
};

static bool
message_is_wsp(char c)
{
	return c == ' ' || c == '\t';
}

static unsigned char
message_lower(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return (unsigned char)(c - 'A' + 'a');
	return c;
}

/*
 * Finds the line at pos: it ends at LF, or at len; a CR before either is
 * dropped (a message cut between CR and LF ends its last line alike).
 */
static void
message_line_at(const char *msg, size_t len, size_t pos, struct message_line *l)
{
	const char *lf = memchr(msg + pos, '\n', len - pos);

	l->start = pos;
	if (lf == NULL) {
		l->end = len;
		l->next = len;
	} else {
		l->end = (size_t)(lf - msg);
		l->next = l->end + 1;
	}
	if (l->end > pos && msg[l->end - 1] == '\r')
		l->end--;
}

/*
 * True when the line msg[l) starts the field called name: the name (any
 * case), optional white space (RFC 5322 4.5.8 obs-optional), then ":".
 * *value is set just past the colon.
 */
static bool
message_field_is(const char *msg, const struct message_line *l,
    const char *name, size_t namelen, size_t *value)
{
	size_t i;

	if (l->end - l->start < namelen + 1)
		return false;
	for (i = 0; i < namelen; i++) {
		if (message_lower((unsigned char)msg[l->start + i]) !=
		    message_lower((unsigned char)name[i]))
			return false;
	}
	for (i = l->start + namelen; i < l->end && message_is_wsp(msg[i]); i++)
		;
	if (i >= l->end || msg[i] != ':')
		return false;
	*value = i + 1;
	return true;
}

/*
 * Finds the field called name in the header section: on success
 * [*vstart, *vend) is its raw value, from just past the colon to the end
 * of its last continuation line (line ends inside are folds).  The section
 * ends at the first empty line (RFC 5322 2.1), so the body is never
 * searched.  A line of white space only is a continuation (obs-FWS).
 */
static bool
message_find(
    const char *msg, size_t len, const char *name, size_t *vstart, size_t *vend)
{
	struct message_line l;
	size_t namelen = strlen(name), pos = 0;
	bool found = false;

	if (namelen == 0)
		return false;
	while (pos < len) {
		message_line_at(msg, len, pos, &l);
		if (l.end == l.start)
			break;
		if (found) {
			if (!message_is_wsp(msg[l.start]))
				break;
			*vend = l.end;
		} else if (!message_is_wsp(msg[l.start]) &&
		    message_field_is(msg, &l, name, namelen, vstart)) {
			found = true;
			*vend = l.end;
		}
		pos = l.next;
	}
	return found;
}

/*
 * Copies the value msg[vstart, vend) unfolded (RFC 5322 2.2.3: a line end
 * inside the field, always followed by WSP there, is removed) and trimmed
 * into a new string of at most max bytes.  A cut never splits a UTF-8
 * sequence: a partial trailing one is dropped.
 */
static char *
message_unfold(const char *msg, size_t vstart, size_t vend, size_t max)
{
	size_t cap = vend - vstart < max ? vend - vstart : max;
	size_t i, o = 0, k, need;
	unsigned char c, lead;
	bool cut = false, started = false;
	char *out;

	out = malloc(cap + 1);
	if (out == NULL)
		return NULL;
	for (i = vstart; i < vend; i++) {
		c = (unsigned char)msg[i];
		if (c == '\n' ||
		    (c == '\r' && i + 1 < vend && msg[i + 1] == '\n'))
			continue;
		if (!started && message_is_wsp((char)c))
			continue;
		started = true;
		if (o == cap) {
			cut = (c & 0xc0) == 0x80;
			break;
		}
		out[o++] = (char)c;
	}
	if (cut) {
		/* The next byte continues a sequence: drop its start. */
		for (k = o; k > 0 && o - k < 3 &&
		     ((unsigned char)out[k - 1] & 0xc0) == 0x80;
		     k--)
			;
		if (k > 0 && (unsigned char)out[k - 1] >= 0xc0) {
			lead = (unsigned char)out[k - 1];
			need = lead >= 0xf0 ? 4 : lead >= 0xe0 ? 3 : 2;
			if (o - (k - 1) < need)
				o = k - 1;
		}
	}
	while (o > 0 && message_is_wsp(out[o - 1]))
		o--;
	out[o] = '\0';
	return out;
}

char *
message_header(const char *msg, size_t len, const char *name, size_t max)
{
	size_t vstart, vend;

	if (msg == NULL || name == NULL ||
	    !message_find(msg, len, name, &vstart, &vend))
		return NULL;
	return message_unfold(msg, vstart, vend, max);
}

/*
 * RFC 5322 3.6.4: the first "<...>" of the Message-ID field, without its
 * brackets.  Not usable: no field, no brackets, an empty id, or one with
 * white space, control bytes or another "<" inside.
 */
char *
message_id(const char *msg, size_t len)
{
	char *v, *lt, *gt, *p;
	size_t n;

	v = message_header(msg, len, "Message-ID", MESSAGE_ID_MAX);
	if (v == NULL)
		return NULL;
	lt = strchr(v, '<');
	gt = lt != NULL ? strchr(lt + 1, '>') : NULL;
	if (gt == NULL || gt == lt + 1)
		goto fail;
	for (p = lt + 1; p < gt; p++) {
		unsigned char c = (unsigned char)*p;

		if (c <= 0x20 || c == 0x7f || c == '<')
			goto fail;
	}
	n = (size_t)(gt - lt - 1);
	memmove(v, lt + 1, n);
	v[n] = '\0';
	return v;
fail:
	free(v);
	return NULL;
}

char *
message_id_bare(char *id)
{
	size_t s = 0, e;

	if (id == NULL)
		return NULL;
	e = strlen(id);
	while (s < e && message_is_wsp(id[s]))
		s++;
	while (e > s && message_is_wsp(id[e - 1]))
		e--;
	if (e - s >= 2 && id[s] == '<' && id[e - 1] == '>') {
		s++;
		e--;
		while (s < e && message_is_wsp(id[s]))
			s++;
		while (e > s && message_is_wsp(id[e - 1]))
			e--;
	}
	memmove(id, id + s, e - s);
	id[e - s] = '\0';
	return id;
}
