/*
 * message: reads what redrive needs out of a stored RFC 5322 message: the
 * header fields Subject and Message-ID (RFC 5322 3.6.4).  No I/O, no
 * allocation beyond the result; never reads past len.  Any thread.
 */
#ifndef REDRIVE_MESSAGE_H
#define REDRIVE_MESSAGE_H

#include <stddef.h>

/*
 * Finds the first header field called name (case-insensitive) in the header
 * section of msg[0..len) (up to the first empty line), unfolds it (CR LF
 * followed by WSP becomes the WSP), trims surrounding white space, and
 * returns it as a malloc'd NUL-terminated string of at most max bytes (cut
 * on a UTF-8 boundary).  NULL when absent (or out of memory).
 */
char *message_header(const char *msg, size_t len, const char *name, size_t max);

/*
 * Returns the Message-ID header of msg as a malloc'd bare id ("a@b",
 * without the angle brackets), or NULL when there is none usable.
 */
char *message_id(const char *msg, size_t len);

/*
 * Strips one pair of angle brackets and surrounding white space from id in
 * place ("<a@b>" -> "a@b"); returns id.  Mailgun's API answers with
 * brackets, its webhooks carry the bare form; redrive stores the bare one.
 */
char *message_id_bare(char *id);

#endif
