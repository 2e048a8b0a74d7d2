/*
 * mailgun_parse: the pure half of the Mailgun client.  It reads Mailgun's
 * answers (status, content type, body, two headers) and decides what the
 * forwarder does with them: accept (and keep the bare message id), retry
 * later (honouring "try again after", X-RateLimit-Reset and Retry-After),
 * pause the forwarder (a configuration or account problem), or reject the
 * message with Mailgun's own words.  No I/O and no clock: the caller
 * passes the time, so that tests are exact.  The rules and the real
 * payloads behind them are in shared/mailgun/FACTS.md sections 1.3, 1.4
 * and 6.
 */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

#include "redrive/log.h"
#include "redrive/mailgun.h"
#include "redrive/timeutil.h"

/* The longest wait, in seconds, a hint may ask for (about 31 years). */
#define MAILGUN_HINT_MAX_S 1000000000LL
/* Room for an escaped MAILGUN_MESSAGE_MAX bytes (\xNN each) and "...". */
#define MAILGUN_ESCAPED_MAX (MAILGUN_MESSAGE_MAX * 4 + 8)
/* Room for a date as Mailgun writes it, "Mon, 20 Dec 2021 20:33:21 UTC". */
#define MAILGUN_DATE_MAX 64

/*
 * Parses the decimal seconds at s (digits only up to end, or up to the
 * first non-digit when end is NULL) into *secs.  Returns the pointer past
 * the digits, or NULL on no digits or a value above MAILGUN_HINT_MAX_S.
 */
static const char *
mailgun_parse_secs(const char *s, long long *secs)
{
	char *end = NULL;
	long long v;

	if (!isdigit((unsigned char)*s))
		return NULL;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno != 0 || end == s || v < 0 || v > MAILGUN_HINT_MAX_S)
		return NULL;
	*secs = v;
	return end;
}

/*
 * Copies the date that starts at s into buf: the tokens of an RFC 5322
 * date-time (RFC 5322 section 3.3), "Mon, 20 Dec 2021 20:33:21 UTC", six
 * when a day name with its comma leads, else five, without the punctuation
 * a sentence may put after it.  Returns 0 or -ENOENT.
 */
static int
mailgun_copy_date(const char *s, char *buf, size_t buflen)
{
	size_t n = 0, tokens = 0, want = 5;
	bool in_token = false;

	while (*s == ' ' || *s == '\t')
		s++;
	for (; *s != '\0' && n + 1 < buflen; s++) {
		bool space = (*s == ' ' || *s == '\t');

		if (space && in_token) {
			tokens++;
			in_token = false;
			if (tokens == 1 && n > 0 && buf[n - 1] == ',')
				want = 6;
			if (tokens == want)
				break;
		}
		if (space) {
			if (n > 0 && buf[n - 1] != ' ')
				buf[n++] = ' ';
			continue;
		}
		in_token = true;
		buf[n++] = *s;
	}
	if (*s != '\0' && n + 1 >= buflen)
		return -ENOENT;
	while (n > 0 && strchr(" .,;)\"'", buf[n - 1]) != NULL)
		n--;
	buf[n] = '\0';
	return n > 0 ? 0 : -ENOENT;
}

/*
 * Mailgun's 420 and 429 bodies end in "try again after Mon, 20 Dec 2021
 * 20:33:21 UTC" or "try again after 120 seconds" (FACTS.md 1.4).  The
 * first such phrase counts; a number counts as seconds when "second"
 * follows it, else what follows must be a date.
 */
int
mailgun_parse_try_again(const char *text, int64_t now, int64_t *at)
{
	static const char key[] = "try again after ";
	char date[MAILGUN_DATE_MAX];
	const char *p, *end;
	long long secs;
	int64_t ms;

	if (text == NULL)
		return -ENOENT;
	p = strcasestr(text, key);
	if (p == NULL)
		return -ENOENT;
	p += sizeof(key) - 1;
	end = mailgun_parse_secs(p, &secs);
	if (end != NULL && strncasecmp(end, " second", 7) == 0) {
		*at = now + (int64_t)secs * 1000;
		return 0;
	}
	/* A date may start with a digit too: the day name is optional. */
	if (mailgun_copy_date(p, date, sizeof(date)) != 0)
		return -ENOENT;
	if (time_parse_rfc5322(date, &ms) != 0)
		return -ENOENT;
	*at = ms;
	return 0;
}

/*
 * Trims blanks around value[0..) into buf (NUL-terminated).  Returns 0, or
 * -EINVAL when nothing is left or it does not fit.
 */
static int
mailgun_trim_copy(const char *value, char *buf, size_t buflen)
{
	size_t len;

	if (value == NULL)
		return -EINVAL;
	while (*value == ' ' || *value == '\t')
		value++;
	len = strlen(value);
	while (len > 0 && isspace((unsigned char)value[len - 1]))
		len--;
	if (len == 0 || len >= buflen)
		return -EINVAL;
	memcpy(buf, value, len);
	buf[len] = '\0';
	return 0;
}

/*
 * X-RateLimit-Reset holds epoch milliseconds in a real recording
 * (1620637982656) while mailgun-go reads epoch seconds: a value above
 * 10^12 is taken as milliseconds (FACTS.md 1.4).
 */
int
mailgun_parse_ratelimit_reset(const char *value, int64_t *at)
{
	char buf[32];
	char *end = NULL;
	unsigned long long v;
	size_t i;

	if (mailgun_trim_copy(value, buf, sizeof(buf)) != 0)
		return -EINVAL;
	for (i = 0; buf[i] != '\0'; i++)
		if (!isdigit((unsigned char)buf[i]))
			return -EINVAL;
	errno = 0;
	v = strtoull(buf, &end, 10);
	if (errno != 0 || end == buf || *end != '\0' || v == 0 ||
	    v > (unsigned long long)INT64_MAX)
		return -EINVAL;
	if (v > 1000000000000ULL)
		*at = (int64_t)v;
	else
		*at = (int64_t)v * 1000;
	return 0;
}

/*
 * Retry-After (RFC 9110 section 10.2.3): delay-seconds, or an HTTP-date,
 * whose IMF-fixdate form is an RFC 5322 date-time in GMT.
 */
static int
mailgun_parse_retry_after(const char *value, int64_t now, int64_t *at)
{
	char buf[MAILGUN_DATE_MAX];
	const char *end;
	long long secs;
	int64_t ms;

	if (mailgun_trim_copy(value, buf, sizeof(buf)) != 0)
		return -EINVAL;
	if (isdigit((unsigned char)buf[0])) {
		end = mailgun_parse_secs(buf, &secs);
		if (end == NULL || *end != '\0')
			return -EINVAL;
		*at = now + (int64_t)secs * 1000;
		return 0;
	}
	if (time_parse_rfc5322(buf, &ms) != 0)
		return -EINVAL;
	*at = ms;
	return 0;
}

/*
 * Returns a malloc'd copy of s cut to MAILGUN_MESSAGE_MAX bytes at a
 * UTF-8 character boundary, with "..." when cut; NULL on ENOMEM.
 */
static char *
mailgun_message_dup(const char *s)
{
	size_t len = strlen(s);
	char *out;

	if (len <= MAILGUN_MESSAGE_MAX)
		return strdup(s);
	len = MAILGUN_MESSAGE_MAX;
	while (len > 0 && ((unsigned char)s[len] & 0xc0) == 0x80)
		len--;
	out = malloc(len + 4);
	if (out == NULL)
		return NULL;
	memcpy(out, s, len);
	memcpy(out + len, "...", 4);
	return out;
}

/*
 * Returns a malloc'd "prefix: text" (or text alone when prefix is NULL);
 * NULL on ENOMEM.
 */
static char *
mailgun_message_join(const char *prefix, const char *text)
{
	size_t need;
	char *out;

	if (prefix == NULL)
		return mailgun_message_dup(text);
	need = strlen(prefix) + 2 + strlen(text) + 1;
	out = malloc(need);
	if (out == NULL)
		return NULL;
	(void)snprintf(out, need, "%s: %s", prefix, text);
	return out;
}

/*
 * Builds r->message: Mailgun's JSON "message" when there is one (cut, not
 * escaped: jansson already checked it is UTF-8 without NUL), else the body
 * with blanks trimmed, escaped as log values are and cut to
 * MAILGUN_MESSAGE_MAX bytes, else a note that the body was empty.  prefix,
 * when not NULL, leads.  Returns 0 or -ENOMEM.
 */
static int
mailgun_message_set(struct mailgun_result *r, const char *prefix,
    const char *jmsg, const char *text, size_t len)
{
	char esc[MAILGUN_ESCAPED_MAX];
	char *msg;

	while (len > 0 && isspace((unsigned char)*text)) {
		text++;
		len--;
	}
	while (len > 0 && isspace((unsigned char)text[len - 1]))
		len--;
	if (jmsg != NULL) {
		msg = mailgun_message_dup(jmsg);
		if (msg != NULL && prefix != NULL) {
			char *joined = mailgun_message_join(prefix, msg);

			free(msg);
			msg = joined;
		}
	} else {
		if (len > 0)
			(void)log_escape(
			    esc, sizeof(esc), text, len, MAILGUN_MESSAGE_MAX);
		else
			(void)snprintf(esc, sizeof(esc),
			    "HTTP %ld with an empty body", r->http_status);
		msg = mailgun_message_join(prefix, esc);
	}
	if (msg == NULL)
		return -ENOMEM;
	r->message = msg;
	return 0;
}

/*
 * Returns a malloc'd copy of a Mailgun id without its angle brackets
 * ("<20111114174239.25659.5817@samples.mailgun.org>" -> bare, as webhooks
 * carry it; FACTS.md 1.3); NULL with *empty set when nothing is left, NULL
 * alone on ENOMEM.
 */
static char *
mailgun_id_bare(const char *id, bool *empty)
{
	size_t len;
	char *out;

	*empty = false;
	while (*id == ' ' || *id == '\t')
		id++;
	if (*id == '<')
		id++;
	len = strlen(id);
	while (len > 0 && (id[len - 1] == ' ' || id[len - 1] == '\t'))
		len--;
	if (len > 0 && id[len - 1] == '>')
		len--;
	if (len == 0) {
		*empty = true;
		return NULL;
	}
	out = malloc(len + 1);
	if (out == NULL)
		return NULL;
	memcpy(out, id, len);
	out[len] = '\0';
	return out;
}

/*
 * Sets r->retry_at from the first hint that parses: "try again after" in
 * Mailgun's text, then (rate limits only) X-RateLimit-Reset, then
 * Retry-After.
 */
static void
mailgun_retry_hint(struct mailgun_result *r, const char *text, bool rate_limit,
    const char *ratelimit_reset, const char *retry_after, int64_t now)
{
	int64_t at;

	if (mailgun_parse_try_again(text, now, &at) == 0 ||
	    (rate_limit && ratelimit_reset != NULL &&
		mailgun_parse_ratelimit_reset(ratelimit_reset, &at) == 0) ||
	    (retry_after != NULL &&
		mailgun_parse_retry_after(retry_after, now, &at) == 0))
		r->retry_at = at;
}

/*
 * The decision table of FACTS.md 1.3, 1.4 and DESIGN.md "Mailgun".  The
 * body is parsed as JSON (bounded by len) whatever the content type says:
 * Mailgun's 401 is text/plain "Forbidden", and a proxy's 502 page is
 * HTML; content_type only goes into the message of a bogus 2xx.
 */
int
mailgun_classify(long http_status, const char *content_type, const char *body,
    size_t len, const char *ratelimit_reset, const char *retry_after,
    int64_t now, struct mailgun_result *r)
{
	char prefix[160];
	json_error_t jerr;
	json_t *root = NULL;
	const char *jmsg = NULL, *jid = NULL, *hint;
	char *text = NULL;
	bool is_json = false, empty = false;
	int rc = -ENOMEM;

	r->outcome = MAILGUN_RETRY;
	r->transport = 0;
	r->http_status = http_status;
	r->id = NULL;
	r->message = NULL;
	r->retry_at = 0;
	if (body == NULL)
		len = 0;
	if (len > MAILGUN_BODY_MAX)
		len = MAILGUN_BODY_MAX;
	text = malloc(len + 1);
	if (text == NULL)
		goto out;
	if (len > 0)
		memcpy(text, body, len);
	text[len] = '\0';
	if (len > 0)
		root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
	if (json_is_object(root)) {
		is_json = true;
		jmsg = json_string_value(json_object_get(root, "message"));
		jid = json_string_value(json_object_get(root, "id"));
	}
	hint = jmsg != NULL ? jmsg : text;

	if (http_status >= 200 && http_status < 300) {
		if (!is_json) {
			r->outcome = MAILGUN_PAUSE;
			(void)snprintf(prefix, sizeof(prefix),
			    "api_base looks wrong: HTTP %ld answer is not "
			    "Mailgun's JSON (%.40s)",
			    http_status,
			    content_type != NULL ? content_type : "no type");
			rc = mailgun_message_set(r, prefix, NULL, text, len);
			goto out;
		}
		if (jid != NULL) {
			r->id = mailgun_id_bare(jid, &empty);
			if (r->id == NULL && !empty)
				goto out;
		}
		if (r->id != NULL) {
			r->outcome = MAILGUN_OK;
			rc = mailgun_message_set(r, NULL, jmsg, text, len);
			goto out;
		}
		r->outcome = MAILGUN_RETRY;
		(void)snprintf(prefix, sizeof(prefix),
		    "HTTP %ld without a message id", http_status);
		rc = mailgun_message_set(r, prefix, jmsg, text, len);
		goto out;
	}

	if (http_status == 401 || http_status == 403 ||
	    (http_status == 404 && strncmp(hint, "Domain not found", 16) == 0))
		r->outcome = MAILGUN_PAUSE;
	else if (http_status == 420 || http_status == 429) {
		r->outcome = MAILGUN_RETRY;
		mailgun_retry_hint(
		    r, hint, true, ratelimit_reset, retry_after, now);
	} else if (http_status == 408 ||
	    (http_status >= 500 && http_status < 600)) {
		r->outcome = MAILGUN_RETRY;
		mailgun_retry_hint(
		    r, hint, false, ratelimit_reset, retry_after, now);
	} else if (http_status >= 400 && http_status < 500)
		r->outcome = MAILGUN_REJECT;
	else if (http_status >= 100 && http_status < 400) {
		/* A redirect or an interim answer: not Mailgun's API. */
		r->outcome = MAILGUN_PAUSE;
		(void)snprintf(prefix, sizeof(prefix),
		    "api_base looks wrong: HTTP %ld", http_status);
		rc = mailgun_message_set(r, prefix, jmsg, text, len);
		goto out;
	} else
		r->outcome = MAILGUN_RETRY;
	rc = mailgun_message_set(r, NULL, jmsg, text, len);
out:
	json_decref(root);
	free(text);
	if (rc != 0) {
		free(r->id);
		r->id = NULL;
		r->outcome = MAILGUN_RETRY;
	}
	return rc;
}

void
mailgun_result_clear(struct mailgun_result *r)
{
	if (r == NULL)
		return;
	free(r->id);
	free(r->message);
	r->id = NULL;
	r->message = NULL;
}
