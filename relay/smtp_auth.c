/*
 * smtp_auth: the relay's SMTP AUTH back end (RFC 4954).  The users file
 * is read once at start ("user:crypt-hash" lines; `redrive passwd USER`
 * makes one) and a bad file stops the daemon with FILE:LINE.  Passwords
 * are checked with libxcrypt's crypt_rn on libuv's threadpool, so a slow
 * hash (yescrypt) never stalls the loop; the request carries copies of
 * what it needs, so the session that asked may go away meanwhile: it
 * orphans the request, which then frees itself.  Base64 goes through
 * OpenSSL's EVP_DecodeBlock after a strict check of the input.
 */
#include <crypt.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "redrive/smtp_auth.h"

/* A users file line is at most this long. */
#define SMTP_AUTH_LINE_MAX 1024

struct smtp_auth_user {
	char *name;
	char *hash;
};

struct smtp_auth_users {
	struct smtp_auth_user *v;
	size_t n;
	size_t cap;
};

struct smtp_auth_req {
	uv_work_t work;
	smtp_auth_done_cb cb;
	void *arg;
	bool orphaned;
	bool known;
	bool ok;
	char hash[CRYPT_OUTPUT_SIZE];
	char pass[SMTP_AUTH_PASS_MAX + 1];
};

void
smtp_auth_users_free(struct smtp_auth_users *u)
{
	size_t i;

	if (u == NULL)
		return;
	for (i = 0; i < u->n; i++) {
		free(u->v[i].name);
		free(u->v[i].hash);
	}
	free(u->v);
	free(u);
}

size_t
smtp_auth_users_count(const struct smtp_auth_users *u)
{
	return u != NULL ? u->n : 0;
}

bool
smtp_auth_user_valid(const char *user, size_t len)
{
	size_t i;

	if (len == 0 || len > SMTP_AUTH_USER_MAX)
		return false;
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)user[i];

		if (c <= 0x20 || c == 0x7f || c == ':')
			return false;
	}
	return true;
}

static const char *
smtp_auth_users_find(const struct smtp_auth_users *u, const char *user)
{
	size_t i;

	for (i = 0; u != NULL && i < u->n; i++)
		if (strcmp(u->v[i].name, user) == 0)
			return u->v[i].hash;
	return NULL;
}

/* Checks and adds one "user:hash" line; returns NULL or the reason. */
static const char *
smtp_auth_users_add(struct smtp_auth_users *u, char *line, size_t len)
{
	char *colon = memchr(line, ':', len);
	const char *hash;
	size_t ulen, hlen, i;
	int cs;

	if (colon == NULL)
		return "expected user:crypt-hash";
	ulen = (size_t)(colon - line);
	hash = colon + 1;
	hlen = len - ulen - 1;
	if (!smtp_auth_user_valid(line, ulen))
		return "bad user name (1 to 255 printable characters, "
		       "no ':' or spaces)";
	*colon = '\0';
	if (smtp_auth_users_find(u, line) != NULL)
		return "user named twice";
	if (hlen == 0 || hlen >= CRYPT_OUTPUT_SIZE || hash[0] != '$')
		return "bad hash (expected a crypt string such as $y$...)";
	for (i = 0; i < hlen; i++)
		if ((unsigned char)hash[i] <= 0x20 || hash[i] == 0x7f)
			return "bad hash (white space or control character)";
	cs = crypt_checksalt(hash);
	if (cs != CRYPT_SALT_OK && cs != CRYPT_SALT_TOO_CHEAP)
		return "hash method unknown, disabled or legacy "
		       "(use yescrypt or SHA-512 crypt)";
	if (u->n == u->cap) {
		size_t cap = u->cap != 0 ? u->cap * 2 : 8;
		struct smtp_auth_user *v = realloc(u->v, cap * sizeof(*v));

		if (v == NULL)
			return "out of memory";
		u->v = v;
		u->cap = cap;
	}
	u->v[u->n].name = strdup(line);
	u->v[u->n].hash = strndup(hash, hlen);
	if (u->v[u->n].name == NULL || u->v[u->n].hash == NULL) {
		free(u->v[u->n].name);
		free(u->v[u->n].hash);
		return "out of memory";
	}
	u->n++;
	return NULL;
}

int
smtp_auth_users_load(
    const char *path, struct smtp_auth_users **out, char *err, size_t errlen)
{
	struct smtp_auth_users *u;
	char *line = NULL;
	size_t cap = 0, lineno = 0;
	ssize_t n;
	const char *why;
	FILE *fp;
	int rc = 0;

	*out = NULL;
	fp = fopen(path, "re");
	if (fp == NULL) {
		rc = -errno;
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return rc;
	}
	u = calloc(1, sizeof(*u));
	if (u == NULL) {
		rc = -ENOMEM;
		snprintf(err, errlen, "%s: out of memory", path);
		goto out;
	}
	while ((n = getline(&line, &cap, fp)) >= 0) {
		size_t len = (size_t)n;

		lineno++;
		if (len > SMTP_AUTH_LINE_MAX) {
			why = "line too long";
			goto bad;
		}
		while (
		    len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
			len--;
		line[len] = '\0';
		if (len == 0 || line[0] == '#')
			continue;
		if (memchr(line, '\0', len) != NULL) {
			why = "NUL byte in line";
			goto bad;
		}
		why = smtp_auth_users_add(u, line, len);
		if (why != NULL)
			goto bad;
	}
	if (ferror(fp)) {
		rc = -EIO;
		snprintf(err, errlen, "%s: read error", path);
		goto out;
	}
	goto out;
bad:
	rc = -EINVAL;
	snprintf(err, errlen, "%s:%zu: %s", path, lineno, why);
out:
	if (line != NULL)
		explicit_bzero(line, cap);
	free(line);
	fclose(fp);
	if (rc < 0) {
		smtp_auth_users_free(u);
		return rc;
	}
	*out = u;
	return 0;
}

/* ---- SASL responses ------------------------------------------------------ */

int
smtp_auth_b64_decode(
    const char *in, size_t inlen, char *out, size_t outcap, size_t *outlen)
{
	unsigned char tmp[1024];
	size_t i, pad = 0, len;
	int n;

	*outlen = 0;
	if (inlen % 4 != 0)
		return -EINVAL;
	if (inlen / 4 * 3 > sizeof(tmp))
		return -EOVERFLOW;
	for (i = 0; i < inlen; i++) {
		unsigned char c = (unsigned char)in[i];

		if (c == '=') {
			/* Padding: only the last one or two characters. */
			if (i + 2 < inlen)
				return -EINVAL;
			pad++;
			continue;
		}
		if (pad > 0)
			return -EINVAL;
		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
			(c >= '0' && c <= '9') || c == '+' || c == '/'))
			return -EINVAL;
	}
	if (inlen == 0) {
		if (outcap == 0)
			return -EOVERFLOW;
		out[0] = '\0';
		return 0;
	}
	n = EVP_DecodeBlock(tmp, (const unsigned char *)in, (int)inlen);
	if (n < 0 || (size_t)n < pad) {
		OPENSSL_cleanse(tmp, sizeof(tmp));
		return -EINVAL;
	}
	/* EVP_DecodeBlock counts the padding as zero bytes. */
	len = (size_t)n - pad;
	if (len + 1 > outcap) {
		OPENSSL_cleanse(tmp, sizeof(tmp));
		return -EOVERFLOW;
	}
	memcpy(out, tmp, len);
	out[len] = '\0';
	*outlen = len;
	OPENSSL_cleanse(tmp, sizeof(tmp));
	return 0;
}

int
smtp_auth_plain_split(const char *msg, size_t len, char *user, size_t usercap,
    char *pass, size_t passcap)
{
	const char *nul1 = memchr(msg, '\0', len), *nul2, *authc, *pw;
	size_t zlen, ulen, plen;

	if (nul1 == NULL)
		return -EINVAL;
	zlen = (size_t)(nul1 - msg);
	authc = nul1 + 1;
	nul2 = memchr(authc, '\0', len - zlen - 1);
	if (nul2 == NULL)
		return -EINVAL;
	ulen = (size_t)(nul2 - authc);
	pw = nul2 + 1;
	plen = len - zlen - 1 - ulen - 1;
	if (memchr(pw, '\0', plen) != NULL || plen == 0)
		return -EINVAL;
	if (!smtp_auth_user_valid(authc, ulen) || ulen + 1 > usercap ||
	    plen + 1 > passcap)
		return -EINVAL;
	/* RFC 4616 2: an authzid equal to the authcid acts as none. */
	if (zlen != 0 && (zlen != ulen || memcmp(msg, authc, ulen) != 0))
		return -EINVAL;
	memcpy(user, authc, ulen);
	user[ulen] = '\0';
	memcpy(pass, pw, plen);
	pass[plen] = '\0';
	return 0;
}

/* ---- Password checks ---------------------------------------------------- */

bool
smtp_auth_verify(const char *pass, const char *hash)
{
	struct crypt_data *cd;
	const char *h;
	size_t len;
	bool ok = false;

	cd = calloc(1, sizeof(*cd));
	if (cd == NULL)
		return false;
	h = crypt_rn(pass, hash, cd, (int)sizeof(*cd));
	len = strlen(hash);
	if (h != NULL && h[0] != '*' && strlen(h) == len)
		ok = CRYPTO_memcmp(h, hash, len) == 0;
	explicit_bzero(cd, sizeof(*cd));
	free(cd);
	return ok;
}

static void
smtp_auth_work_cb(uv_work_t *w)
{
	struct smtp_auth_req *r = w->data;

	r->ok = smtp_auth_verify(r->pass, r->hash) && r->known;
	explicit_bzero(r->pass, sizeof(r->pass));
}

static void
smtp_auth_after_work_cb(uv_work_t *w, int status)
{
	struct smtp_auth_req *r = w->data;

	if (!r->orphaned)
		r->cb(r->arg, status == 0 && r->ok);
	explicit_bzero(r, sizeof(*r));
	free(r);
}

int
smtp_auth_check(uv_loop_t *loop, const struct smtp_auth_users *u,
    const char *user, const char *pass, smtp_auth_done_cb cb, void *arg,
    struct smtp_auth_req **out)
{
	struct smtp_auth_req *r;
	const char *hash;
	size_t plen = strlen(pass);
	int rc;

	*out = NULL;
	if (plen > SMTP_AUTH_PASS_MAX)
		plen = SMTP_AUTH_PASS_MAX;
	r = calloc(1, sizeof(*r));
	if (r == NULL)
		return -ENOMEM;
	hash = smtp_auth_users_find(u, user);
	r->known = hash != NULL;
	/* An unknown user costs a hash as well (no timing oracle). */
	if (hash == NULL && u != NULL && u->n > 0)
		hash = u->v[0].hash;
	if (hash != NULL)
		snprintf(r->hash, sizeof(r->hash), "%s", hash);
	else
		snprintf(r->hash, sizeof(r->hash), "*");
	memcpy(r->pass, pass, plen);
	r->pass[plen] = '\0';
	r->cb = cb;
	r->arg = arg;
	r->work.data = r;
	rc = uv_queue_work(
	    loop, &r->work, smtp_auth_work_cb, smtp_auth_after_work_cb);
	if (rc < 0) {
		explicit_bzero(r, sizeof(*r));
		free(r);
		return rc;
	}
	*out = r;
	return 0;
}

void
smtp_auth_orphan(struct smtp_auth_req *r)
{
	if (r != NULL)
		r->orphaned = true;
}
