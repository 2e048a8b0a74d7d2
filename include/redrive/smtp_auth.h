/*
 * smtp_auth: SMTP AUTH for the relay (RFC 4954, SASL PLAIN RFC 4616 and
 * LOGIN): the users file ([relay] auth_users, "user:crypt-hash" lines),
 * the decoding of the client's base64 responses, and password checks on
 * libuv's threadpool (a yescrypt hash costs tens of milliseconds: never on
 * the loop).  Loading and decoding do no I/O on the loop and are pure.
 */
#ifndef REDRIVE_SMTP_AUTH_H
#define REDRIVE_SMTP_AUTH_H

#include <stdbool.h>
#include <stddef.h>

#include <uv.h>

/* The longest user name accepted (in the file and from clients). */
#define SMTP_AUTH_USER_MAX 255
/* The longest password accepted from a client. */
#define SMTP_AUTH_PASS_MAX 255

struct smtp_auth_users;
struct smtp_auth_req;

/*
 * Reads the users file at path: one "user:hash" per line, '#' comments and
 * blank lines allowed; the hash is a crypt(5) string ("$y$...", "$6$...").
 * A missing or unreadable file, a malformed line or a user named twice is
 * an error, described as "FILE:LINE: reason" in err.  Returns 0 and *out
 * (free with smtp_auth_users_free), or a negative errno code.
 */
int smtp_auth_users_load(
    const char *path, struct smtp_auth_users **out, char *err, size_t errlen);

/* Frees the table (NULL-safe). */
void smtp_auth_users_free(struct smtp_auth_users *u);

/* How many users the table holds. */
size_t smtp_auth_users_count(const struct smtp_auth_users *u);

/*
 * Decodes one base64 SASL response (RFC 4954 4: the whole line, padding
 * required, no white space) into out (outcap bytes, NUL-terminated).
 * Returns 0 and *outlen, -EINVAL for bad base64, -EOVERFLOW when too long.
 */
int smtp_auth_b64_decode(
    const char *in, size_t inlen, char *out, size_t outcap, size_t *outlen);

/*
 * Splits a decoded PLAIN message "authzid NUL authcid NUL passwd" (RFC
 * 4616 2).  An authzid other than empty or the authcid is refused (no
 * proxy authorization).  Returns 0 with user and pass NUL-terminated, or
 * -EINVAL.
 */
int smtp_auth_plain_split(const char *msg, size_t len, char *user,
    size_t usercap, char *pass, size_t passcap);

/* True when user is an acceptable name (printable, no ':' or spaces). */
bool smtp_auth_user_valid(const char *user, size_t len);

/*
 * Checks pass against hash (blocking; thread-safe: crypt_rn).  The
 * comparison takes the same time wherever the hashes differ.
 */
bool smtp_auth_verify(const char *pass, const char *hash);

/* Called on the loop with the result of smtp_auth_check(). */
typedef void (*smtp_auth_done_cb)(void *arg, bool ok);

/*
 * Starts checking user's password on the threadpool; cb(arg, ok) runs on
 * the loop when done, unless the request was orphaned first.  The user's
 * hash and the password are copied (the password is wiped after use); an
 * unknown user costs a hash too and fails.  Returns 0 and *out, or a
 * negative errno code (cb will not run).
 */
int smtp_auth_check(uv_loop_t *loop, const struct smtp_auth_users *u,
    const char *user, const char *pass, smtp_auth_done_cb cb, void *arg,
    struct smtp_auth_req **out);

/*
 * Detaches a request from its caller (the session is going away): its
 * callback will not run and it frees itself when the work is over.
 */
void smtp_auth_orphan(struct smtp_auth_req *r);

#endif
