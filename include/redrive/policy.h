/*
 * policy: the retry policy of DESIGN.md ("The default retry policy"), every
 * part of it a [retry] key: which failures are re-driven, which are given
 * up on, and the backoff.  Pure functions; any thread.
 */
#ifndef REDRIVE_POLICY_H
#define REDRIVE_POLICY_H

#include <stddef.h>
#include <stdint.h>

#include "redrive/webhook.h"

struct config;

enum policy_decision {
	POLICY_IGNORE = 0, /* not a failure that concerns the policy */
	POLICY_WAIT,	   /* temporary failure: Mailgun is still retrying */
	POLICY_REDRIVE,	   /* terminal and curable: re-drive later */
	POLICY_GIVE_UP,	   /* terminal and not curable: fail and alert */
};

/*
 * Decides what a failed event means under cfg's [retry] keys: temporary
 * failures wait (unless reason "old": terminal whatever the severity);
 * never_reasons and never_enhanced (prefix match, "5.1" matches "5.1.1")
 * give up; reasons or a code within codes re-drive; anything else gives
 * up.  why receives a short explanation (for logs and `show`).
 */
enum policy_decision policy_decide(const struct config *cfg,
    const struct webhook_event *ev, char *why, size_t whylen);

/*
 * The delay before the n-th re-drive (n >= 1): backoff_base *
 * backoff_factor^(n-1), saturating instead of overflowing.
 */
int64_t policy_backoff_ms(const struct config *cfg, unsigned n);

#endif
