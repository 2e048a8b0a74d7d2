/*
 * policy: the retry policy of DESIGN.md ("The default retry policy"),
 * every part of it a [retry] key of struct config.  It decides, for one
 * normalised webhook event, whether the failure waits (Mailgun still
 * retries), is re-driven, or is given up on, and it computes the backoff
 * before the n-th re-drive.  Pure functions of their arguments: no I/O, no
 * clock, no state; any thread.
 *
 * The order of the rules matters and follows FACTS.md 3.5, 3.6 and 6.1-2:
 * only a failure concerns the policy; a temporary failure waits, because a
 * re-drive while Mailgun retries sends a second copy, unless its reason is
 * "old" (terminal whatever the severity); the never-lists come before the
 * re-drive lists, so that a hard bounce or a bad mailbox is never re-sent
 * even when its code lies in a re-drive range; what no list names is given
 * up on, so that every failure ends re-driven or reported.
 */
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "redrive/config.h"
#include "redrive/policy.h"

/* Mailgun's suppression codes (FACTS.md 3.4): 605, 606 and 607. */
#define POLICY_SUPPRESS_LO 605
#define POLICY_SUPPRESS_HI 607

/* Writes the explanation into why (whylen bytes), if the caller wants it. */
static void policy_why(char *why, size_t whylen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
policy_why(char *why, size_t whylen, const char *fmt, ...)
{
	va_list ap;

	if (why == NULL || whylen == 0)
		return;
	va_start(ap, fmt);
	/* NOLINTNEXTLINE(clang-analyzer-valist.Uninitialized) */
	(void)vsnprintf(why, whylen, fmt, ap);
	va_end(ap);
}

/* True when s equals one of the n words (ASCII case ignored). */
static bool
policy_in_list(char *const *list, size_t n, const char *s)
{
	size_t i;

	if (s == NULL)
		return false;
	for (i = 0; i < n; i++) {
		if (list[i] != NULL && strcasecmp(list[i], s) == 0)
			return true;
	}
	return false;
}

/*
 * True when the enhanced status code (RFC 3463 section 2) code lies under
 * prefix, compared part by part: "5.1" matches "5.1" and "5.1.1" but not
 * "5.10.1" or "5.11".
 */
static bool
policy_enhanced_match(const char *prefix, const char *code)
{
	size_t n;

	if (prefix == NULL || code == NULL || prefix[0] == '\0')
		return false;
	n = strlen(prefix);
	if (strncmp(prefix, code, n) != 0)
		return false;
	return code[n] == '\0' || code[n] == '.';
}

/*
 * A short account of why a reason given up on was: the reasons of the
 * default never_reasons get their cause, others name the list.
 */
static const char *
policy_never_text(const char *reason)
{
	if (strcasecmp(reason, "bounce") == 0)
		return "hard bounce: Mailgun suppresses the address";
	if (strncasecmp(reason, "suppress-", 9) == 0)
		return "address on a Mailgun suppression list: a resend is "
		       "dropped again";
	return "listed in never_reasons";
}

/* The same for a reason re-driven. */
static const char *
policy_redrive_text(const char *reason)
{
	if (strcasecmp(reason, "old") == 0)
		return "Mailgun gave up after its own retries";
	if (strcasecmp(reason, "espblock") == 0)
		return "blocked by the receiving ESP; another IP may pass";
	if (strcasecmp(reason, "blacklisted") == 0)
		return "sending IP on a block list; another IP may pass";
	return "listed in reasons";
}

enum policy_decision
policy_decide(const struct config *cfg, const struct webhook_event *ev,
    char *why, size_t whylen)
{
	const char *reason;
	size_t i;

	if (ev == NULL || ev->event == NULL ||
	    strcasecmp(ev->event, "failed") != 0) {
		policy_why(why, whylen, "event %s is not a failure",
		    ev != NULL && ev->event != NULL ? ev->event : "(none)");
		return POLICY_IGNORE;
	}
	reason = ev->reason != NULL ? ev->reason : "(none)";
	/* FACTS.md 6.1: Mailgun retries a temporary failure for ~8 h. */
	if (ev->severity != NULL &&
	    strcasecmp(ev->severity, "temporary") == 0 &&
	    strcasecmp(reason, "old") != 0) {
		policy_why(why, whylen,
		    "temporary failure, reason %s: Mailgun is still retrying",
		    reason);
		return POLICY_WAIT;
	}
	if (policy_in_list(cfg->retry.never_reasons, cfg->retry.nnever_reasons,
		ev->reason)) {
		policy_why(why, whylen, "reason %s: %s", reason,
		    policy_never_text(reason));
		return POLICY_GIVE_UP;
	}
	for (i = 0; i < cfg->retry.nnever_enhanced; i++) {
		if (!policy_enhanced_match(
			cfg->retry.never_enhanced[i], ev->enhanced_code))
			continue;
		policy_why(why, whylen,
		    "enhanced code %s within never_enhanced %s: bad mailbox or "
		    "address",
		    ev->enhanced_code, cfg->retry.never_enhanced[i]);
		return POLICY_GIVE_UP;
	}
	/*
	 * Codes 605-607 mean Mailgun dropped the message without an attempt
	 * because the address is on one of its suppression lists (FACTS.md
	 * 3.4, 3.5, 6.2).  A re-drive is dropped again until someone removes
	 * the suppression, so these give up whatever the lists say: the
	 * reason (suppress-*, or the legacy "hardfail") may have been edited
	 * out of never_reasons, or be one no list names, and the code may lie
	 * in an edited codes range.
	 */
	if (ev->code >= POLICY_SUPPRESS_LO && ev->code <= POLICY_SUPPRESS_HI) {
		policy_why(why, whylen,
		    "code %d: address on a Mailgun suppression list", ev->code);
		return POLICY_GIVE_UP;
	}
	if (policy_in_list(
		cfg->retry.reasons, cfg->retry.nreasons, ev->reason)) {
		policy_why(why, whylen, "reason %s: %s", reason,
		    policy_redrive_text(reason));
		return POLICY_REDRIVE;
	}
	for (i = 0; ev->code > 0 && i < cfg->retry.ncodes; i++) {
		const struct config_code_range *r = &cfg->retry.codes[i];

		if (ev->code < r->lo || ev->code > r->hi)
			continue;
		if (r->lo == r->hi)
			policy_why(
			    why, whylen, "code %d within %d", ev->code, r->lo);
		else
			policy_why(why, whylen, "code %d within %d-%d",
			    ev->code, r->lo, r->hi);
		return POLICY_REDRIVE;
	}
	policy_why(why, whylen,
	    "reason %s, code %d: in no re-drive list, given up", reason,
	    ev->code);
	return POLICY_GIVE_UP;
}

/*
 * backoff_base * backoff_factor^(n-1), computed step by step so that it
 * saturates at INT64_MAX instead of overflowing; n 0 counts as 1.  A
 * factor of 0 or 1 ends the loop at once (the result no longer changes).
 */
int64_t
policy_backoff_ms(const struct config *cfg, unsigned n)
{
	int64_t v = cfg->retry.backoff_base_ms;
	int64_t f = (int64_t)cfg->retry.backoff_factor;
	unsigned i;

	if (v <= 0)
		return 0;
	if (n <= 1)
		return v;
	if (f == 0)
		return 0;
	if (f == 1)
		return v;
	for (i = 1; i < n; i++) {
		if (v > INT64_MAX / f)
			return INT64_MAX;
		v *= f;
	}
	return v;
}
