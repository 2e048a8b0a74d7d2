/*
 * test_policy: tracker/policy.c under DESIGN.md's default [retry] keys
 * (config_defaults) and under edited ones.  The decision for each reason
 * and severity FACTS.md 3.5 lists ("old" temporary re-driven, generic
 * temporary waits, espblock and blacklisted re-driven, bounce and the
 * suppressions given up on), generic permanent failures by code and
 * enhanced code (dotted prefixes: "5.1" is not "5.10"), the suppression
 * codes 605-607 whatever the lists say, the explanations, and the backoff
 * arithmetic with its saturation.
 */
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "redrive/config.h"
#include "redrive/policy.h"
#include "redrive/webhook.h"

#define MIN_MS ((int64_t)60 * 1000)

/* A failed event as the webhook module would normalise it. */
static struct webhook_event
failed(const char *severity, const char *reason, int code, const char *enhanced)
{
	struct webhook_event ev;

	memset(&ev, 0, sizeof(ev));
	ev.event = (char *)"failed";
	ev.severity = (char *)severity;
	ev.reason = (char *)reason;
	ev.code = code;
	ev.enhanced_code = (char *)enhanced;
	return ev;
}

/* Replaces a word list of cfg with n copies of words. */
static void
set_words(char **list, size_t *count, const char *const *words, size_t n)
{
	size_t i;

	for (i = 0; i < *count; i++) {
		free(list[i]);
		list[i] = NULL;
	}
	for (i = 0; i < n; i++) {
		list[i] = strdup(words[i]);
		assert_non_null(list[i]);
	}
	*count = n;
}

static int
setup(void **state)
{
	struct config *cfg = calloc(1, sizeof(*cfg));

	if (cfg == NULL || config_defaults(cfg) != 0) {
		free(cfg);
		return -1;
	}
	*state = cfg;
	return 0;
}

static int
teardown(void **state)
{
	config_free(*state);
	free(*state);
	return 0;
}

/* Decides and checks the decision and, when want_why is set, the text. */
static void
check(const struct config *cfg, struct webhook_event ev,
    enum policy_decision want, const char *want_why)
{
	char why[256];
	enum policy_decision got;

	memset(why, 0, sizeof(why));
	got = policy_decide(cfg, &ev, why, sizeof(why));
	if (got != want)
		fail_msg("%s/%s/%d/%s: decision %d, want %d (%s)",
		    ev.severity != NULL ? ev.severity : "-",
		    ev.reason != NULL ? ev.reason : "-", ev.code,
		    ev.enhanced_code != NULL ? ev.enhanced_code : "-", got,
		    want, why);
	assert_true(why[0] != '\0');
	if (want_why != NULL && strcmp(why, want_why) != 0)
		fail_msg("why \"%s\", want \"%s\"", why, want_why);
	/* The same decision without an explanation buffer. */
	assert_int_equal(policy_decide(cfg, &ev, NULL, 0), want);
}

static void
test_defaults(void **state)
{
	const struct config *cfg = *state;

	assert_int_equal(cfg->retry.max_attempts, 5);
	assert_int_equal(cfg->retry.backoff_base_ms, 4 * MIN_MS);
	assert_int_equal(cfg->retry.backoff_factor, 4);
	assert_int_equal(cfg->retry.nreasons, 3);
	assert_int_equal(cfg->retry.ncodes, 1);
	assert_int_equal(cfg->retry.codes[0].lo, 500);
	assert_int_equal(cfg->retry.codes[0].hi, 554);
	assert_int_equal(cfg->retry.nnever_reasons, 4);
	assert_int_equal(cfg->retry.nnever_enhanced, 1);
	assert_string_equal(cfg->retry.never_enhanced[0], "5.1");
}

static void
test_not_failures(void **state)
{
	const struct config *cfg = *state;
	static const char *const events[] = { "delivered", "accepted", "opened",
		"clicked", "complained", "unsubscribed", "rejected", "stored",
		"something-new" };
	struct webhook_event ev;
	char why[64];
	size_t i;

	for (i = 0; i < sizeof(events) / sizeof(events[0]); i++) {
		ev = failed("permanent", "bounce", 550, "5.1.1");
		ev.event = (char *)events[i];
		check(cfg, ev, POLICY_IGNORE, NULL);
	}
	ev = failed("permanent", "old", 550, NULL);
	ev.event = NULL;
	check(cfg, ev, POLICY_IGNORE, "event (none) is not a failure");
	ev.event = (char *)"delivered";
	check(cfg, ev, POLICY_IGNORE, "event delivered is not a failure");
	assert_int_equal(
	    policy_decide(cfg, NULL, why, sizeof(why)), POLICY_IGNORE);
	ev.event = (char *)"FAILED";
	check(cfg, ev, POLICY_REDRIVE, NULL);
}

static void
test_temporary(void **state)
{
	const struct config *cfg = *state;

	/* FACTS.md 6.1: Mailgun still retries; re-driving duplicates. */
	check(cfg, failed("temporary", "generic", 451, "4.7.652"), POLICY_WAIT,
	    "temporary failure, reason generic: Mailgun is still retrying");
	check(
	    cfg, failed("temporary", "generic", 498, NULL), POLICY_WAIT, NULL);
	check(cfg, failed("temporary", "generic", 550, "5.7.1"), POLICY_WAIT,
	    NULL);
	check(cfg, failed("temporary", "espblock", 0, NULL), POLICY_WAIT, NULL);
	check(cfg, failed("temporary", "greylisted", 450, NULL), POLICY_WAIT,
	    NULL);
	check(cfg, failed("temporary", "bounce", 550, "5.1.1"), POLICY_WAIT,
	    NULL);
	check(cfg, failed("temporary", NULL, 0, NULL), POLICY_WAIT,
	    "temporary failure, reason (none): Mailgun is still retrying");
	/* "old" is terminal whatever the severity (FACTS.md 3.5). */
	check(cfg, failed("temporary", "old", 498, NULL), POLICY_REDRIVE,
	    "reason old: Mailgun gave up after its own retries");
	check(cfg, failed("permanent", "old", 602, NULL), POLICY_REDRIVE,
	    "reason old: Mailgun gave up after its own retries");
	check(cfg, failed(NULL, "old", 0, NULL), POLICY_REDRIVE, NULL);
	check(cfg, failed("Temporary", "OLD", 0, NULL), POLICY_REDRIVE, NULL);
	check(cfg, failed("TEMPORARY", "generic", 0, NULL), POLICY_WAIT, NULL);
}

static void
test_permanent_reasons(void **state)
{
	const struct config *cfg = *state;

	check(cfg, failed("permanent", "espblock", 0, NULL), POLICY_REDRIVE,
	    "reason espblock: blocked by the receiving ESP; another IP may "
	    "pass");
	check(cfg, failed("permanent", "blacklisted", 554, "5.7.1"),
	    POLICY_REDRIVE, NULL);
	check(cfg, failed("permanent", "bounce", 550, NULL), POLICY_GIVE_UP,
	    "reason bounce: hard bounce: Mailgun suppresses the address");
	check(cfg, failed("permanent", "BOUNCE", 550, NULL), POLICY_GIVE_UP,
	    NULL);
	check(cfg, failed("permanent", "suppress-bounce", 605, NULL),
	    POLICY_GIVE_UP,
	    "reason suppress-bounce: address on a Mailgun suppression list: "
	    "a resend is dropped again");
	check(cfg, failed("permanent", "suppress-unsubscribe", 606, NULL),
	    POLICY_GIVE_UP, NULL);
	check(cfg, failed("permanent", "suppress-complaint", 607, NULL),
	    POLICY_GIVE_UP, NULL);
	/* Not in any list and no code in a range. */
	check(cfg, failed("permanent", "greylisted", 0, NULL), POLICY_GIVE_UP,
	    "reason greylisted, code 0: in no re-drive list, given up");
	check(
	    cfg, failed("permanent", "unknown", 0, NULL), POLICY_GIVE_UP, NULL);
	check(cfg, failed("permanent", NULL, 0, NULL), POLICY_GIVE_UP, NULL);
	/* ... but a code in a range re-drives whatever the reason. */
	check(cfg, failed("permanent", "greylisted", 550, NULL), POLICY_REDRIVE,
	    "code 550 within 500-554");
	check(cfg, failed(NULL, NULL, 554, NULL), POLICY_REDRIVE, NULL);
}

static void
test_permanent_codes(void **state)
{
	const struct config *cfg = *state;

	check(cfg, failed("permanent", "generic", 550, NULL), POLICY_REDRIVE,
	    "code 550 within 500-554");
	check(cfg, failed("permanent", "generic", 554, NULL), POLICY_REDRIVE,
	    "code 554 within 500-554");
	check(cfg, failed("permanent", "generic", 500, NULL), POLICY_REDRIVE,
	    NULL);
	check(cfg, failed("permanent", "generic", 499, NULL), POLICY_GIVE_UP,
	    NULL);
	check(cfg, failed("permanent", "generic", 555, NULL), POLICY_GIVE_UP,
	    "reason generic, code 555: in no re-drive list, given up");
	check(cfg, failed("permanent", "generic", 421, NULL), POLICY_GIVE_UP,
	    NULL);
	check(cfg, failed("permanent", "generic", 625, NULL), POLICY_GIVE_UP,
	    NULL);
	check(
	    cfg, failed("permanent", "generic", 0, NULL), POLICY_GIVE_UP, NULL);
	/* Enhanced codes: 5.1.x is a bad mailbox; 5.7.x policy/reputation. */
	check(cfg, failed("permanent", "generic", 550, "5.1.1"), POLICY_GIVE_UP,
	    "enhanced code 5.1.1 within never_enhanced 5.1: bad mailbox or "
	    "address");
	check(cfg, failed("permanent", "generic", 550, "5.1.10"),
	    POLICY_GIVE_UP, NULL);
	check(cfg, failed("permanent", "generic", 550, "5.1"), POLICY_GIVE_UP,
	    NULL);
	check(cfg, failed("permanent", "generic", 550, "5.7.1"), POLICY_REDRIVE,
	    "code 550 within 500-554");
	check(cfg, failed("permanent", "generic", 554, "5.7.1"), POLICY_REDRIVE,
	    NULL);
	check(cfg, failed("permanent", "generic", 550, "5.10.1"),
	    POLICY_REDRIVE, NULL);
	check(cfg, failed("permanent", "generic", 550, "5.11"), POLICY_REDRIVE,
	    NULL);
	check(cfg, failed("permanent", "generic", 550, "15.1.1"),
	    POLICY_REDRIVE, NULL);
	check(
	    cfg, failed("permanent", "generic", 550, ""), POLICY_REDRIVE, NULL);
	/* never_enhanced wins over the reasons list too. */
	check(cfg, failed("permanent", "espblock", 550, "5.1.1"),
	    POLICY_GIVE_UP, NULL);
	/* The delayed bounce after delivered (FACTS.md 3.6). */
	{
		struct webhook_event ev =
		    failed("permanent", "generic", 550, "5.1.1");

		ev.delayed_bounce = true;
		check(cfg, ev, POLICY_GIVE_UP, NULL);
		ev.enhanced_code = (char *)"5.7.1";
		check(cfg, ev, POLICY_REDRIVE, NULL);
	}
}

/* 605-607 give up even when the lists were edited to allow them. */
static void
test_suppression_codes(void **state)
{
	struct config *cfg = *state;
	static const char *const reasons[] = { "old", "hardfail",
		"suppress-bounce" };

	set_words(
	    cfg->retry.never_reasons, &cfg->retry.nnever_reasons, NULL, 0);
	set_words(cfg->retry.reasons, &cfg->retry.nreasons, reasons, 3);
	cfg->retry.codes[0].lo = 500;
	cfg->retry.codes[0].hi = 699;
	check(cfg, failed("permanent", "suppress-bounce", 605, NULL),
	    POLICY_GIVE_UP, "code 605: address on a Mailgun suppression list");
	check(cfg, failed("permanent", "hardfail", 606, NULL), POLICY_GIVE_UP,
	    NULL);
	check(cfg, failed("permanent", "old", 607, NULL), POLICY_GIVE_UP, NULL);
	check(cfg, failed("permanent", "generic", 608, NULL), POLICY_REDRIVE,
	    "code 608 within 500-699");
	check(cfg, failed("permanent", "generic", 604, NULL), POLICY_REDRIVE,
	    NULL);
	/* The edited lists otherwise rule: suppress-bounce without 605. */
	check(cfg, failed("permanent", "suppress-bounce", 0, NULL),
	    POLICY_REDRIVE, NULL);
}

static void
test_edited_lists(void **state)
{
	struct config *cfg = *state;
	static const char *const grey[] = { "greylisted" };
	static const char *const never[] = { "espblock" };
	static const char *const enh[] = { "5.7.1", "4" };

	/* reasons = greylisted: old and espblock now need a code. */
	set_words(cfg->retry.reasons, &cfg->retry.nreasons, grey, 1);
	check(cfg, failed("permanent", "greylisted", 0, NULL), POLICY_REDRIVE,
	    "reason greylisted: listed in reasons");
	check(cfg, failed("permanent", "old", 0, NULL), POLICY_GIVE_UP, NULL);
	check(cfg, failed("temporary", "old", 550, NULL), POLICY_REDRIVE,
	    "code 550 within 500-554");
	/* never_reasons = espblock: bounce now follows the code. */
	set_words(
	    cfg->retry.never_reasons, &cfg->retry.nnever_reasons, never, 1);
	check(cfg, failed("permanent", "espblock", 550, NULL), POLICY_GIVE_UP,
	    "reason espblock: listed in never_reasons");
	check(cfg, failed("permanent", "bounce", 550, NULL), POLICY_REDRIVE,
	    NULL);
	/* never_enhanced = 5.7.1 4: exact and one-part prefixes. */
	set_words(
	    cfg->retry.never_enhanced, &cfg->retry.nnever_enhanced, enh, 2);
	check(cfg, failed("permanent", "generic", 550, "5.1.1"), POLICY_REDRIVE,
	    NULL);
	check(cfg, failed("permanent", "generic", 550, "5.7.1"), POLICY_GIVE_UP,
	    "enhanced code 5.7.1 within never_enhanced 5.7.1: bad mailbox or "
	    "address");
	check(cfg, failed("permanent", "generic", 550, "5.7.10"),
	    POLICY_REDRIVE, NULL);
	check(cfg, failed("permanent", "generic", 550, "4.2.2"), POLICY_GIVE_UP,
	    NULL);
	check(cfg, failed("permanent", "generic", 550, "44.2.2"),
	    POLICY_REDRIVE, NULL);
	/* codes = 550 and 421-421: single codes and ranges. */
	cfg->retry.codes[0].lo = 550;
	cfg->retry.codes[0].hi = 550;
	cfg->retry.codes[1].lo = 421;
	cfg->retry.codes[1].hi = 421;
	cfg->retry.ncodes = 2;
	check(cfg, failed("permanent", "generic", 550, NULL), POLICY_REDRIVE,
	    "code 550 within 550");
	check(cfg, failed("permanent", "generic", 421, NULL), POLICY_REDRIVE,
	    "code 421 within 421");
	check(cfg, failed("permanent", "generic", 551, NULL), POLICY_GIVE_UP,
	    NULL);
	/* Empty lists: only the reasons list is left, then nothing. */
	cfg->retry.ncodes = 0;
	check(cfg, failed("permanent", "generic", 550, NULL), POLICY_GIVE_UP,
	    NULL);
	set_words(cfg->retry.reasons, &cfg->retry.nreasons, NULL, 0);
	check(cfg, failed("permanent", "greylisted", 550, NULL), POLICY_GIVE_UP,
	    NULL);
	/* A code range of 0 never matches an absent code. */
	cfg->retry.codes[0].lo = 0;
	cfg->retry.codes[0].hi = 999;
	cfg->retry.ncodes = 1;
	check(
	    cfg, failed("permanent", "generic", 0, NULL), POLICY_GIVE_UP, NULL);
}

static void
test_why_buffer(void **state)
{
	const struct config *cfg = *state;
	struct webhook_event ev = failed("permanent", "old", 0, NULL);
	char why[8];

	memset(why, 'z', sizeof(why));
	assert_int_equal(
	    policy_decide(cfg, &ev, why, sizeof(why)), POLICY_REDRIVE);
	assert_string_equal(why, "reason ");
	memset(why, 'z', sizeof(why));
	assert_int_equal(policy_decide(cfg, &ev, why, 1), POLICY_REDRIVE);
	assert_int_equal(why[0], '\0');
	assert_int_equal(why[1], 'z');
	assert_int_equal(policy_decide(cfg, &ev, why, 0), POLICY_REDRIVE);
	assert_int_equal(why[1], 'z');
}

static void
test_backoff(void **state)
{
	struct config *cfg = *state;

	/* DESIGN.md: 4, 16, 64, 256 minutes. */
	assert_int_equal(policy_backoff_ms(cfg, 1), 4 * MIN_MS);
	assert_int_equal(policy_backoff_ms(cfg, 2), 16 * MIN_MS);
	assert_int_equal(policy_backoff_ms(cfg, 3), 64 * MIN_MS);
	assert_int_equal(policy_backoff_ms(cfg, 4), 256 * MIN_MS);
	assert_int_equal(policy_backoff_ms(cfg, 5), 1024 * MIN_MS);
	assert_int_equal(policy_backoff_ms(cfg, 0), 4 * MIN_MS);
	/* 240000 * 4^22 = 240000 * 2^44 fits; * 2^46 would not. */
	assert_int_equal(policy_backoff_ms(cfg, 23), 240000LL << 44);
	assert_int_equal(policy_backoff_ms(cfg, 24), INT64_MAX);
	assert_int_equal(policy_backoff_ms(cfg, 100), INT64_MAX);
	assert_int_equal(policy_backoff_ms(cfg, UINT_MAX), INT64_MAX);
	/* Exactly at the edge: 1 * 2^62 fits, 2^63 does not. */
	cfg->retry.backoff_base_ms = 1;
	cfg->retry.backoff_factor = 2;
	assert_int_equal(policy_backoff_ms(cfg, 63), INT64_C(1) << 62);
	assert_int_equal(policy_backoff_ms(cfg, 64), INT64_MAX);
	/* A base near the top saturates at once. */
	cfg->retry.backoff_base_ms = INT64_MAX / 2 + 1;
	assert_int_equal(policy_backoff_ms(cfg, 1), INT64_MAX / 2 + 1);
	assert_int_equal(policy_backoff_ms(cfg, 2), INT64_MAX);
	cfg->retry.backoff_base_ms = INT64_MAX;
	cfg->retry.backoff_factor = 1000;
	assert_int_equal(policy_backoff_ms(cfg, 2), INT64_MAX);
	/* A factor of 1 stays flat (and the loop is not run 4e9 times). */
	cfg->retry.backoff_base_ms = 30000;
	cfg->retry.backoff_factor = 1;
	assert_int_equal(policy_backoff_ms(cfg, UINT_MAX), 30000);
	cfg->retry.backoff_factor = 0;
	assert_int_equal(policy_backoff_ms(cfg, 1), 30000);
	assert_int_equal(policy_backoff_ms(cfg, 2), 0);
	cfg->retry.backoff_base_ms = 0;
	cfg->retry.backoff_factor = 4;
	assert_int_equal(policy_backoff_ms(cfg, 3), 0);
	cfg->retry.backoff_base_ms = -5;
	assert_int_equal(policy_backoff_ms(cfg, 3), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_defaults, setup, teardown),
		cmocka_unit_test_setup_teardown(
		    test_not_failures, setup, teardown),
		cmocka_unit_test_setup_teardown(
		    test_temporary, setup, teardown),
		cmocka_unit_test_setup_teardown(
		    test_permanent_reasons, setup, teardown),
		cmocka_unit_test_setup_teardown(
		    test_permanent_codes, setup, teardown),
		cmocka_unit_test_setup_teardown(
		    test_suppression_codes, setup, teardown),
		cmocka_unit_test_setup_teardown(
		    test_edited_lists, setup, teardown),
		cmocka_unit_test_setup_teardown(
		    test_why_buffer, setup, teardown),
		cmocka_unit_test_setup_teardown(test_backoff, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
