/*
 * Unit tests for core/metrics.c: the histogram (bucket edges, the +Inf
 * bucket, NaN and negatives, sum and count), the exposition writer
 * (HELP/TYPE lines, labels, integer and float values, NaN and infinities,
 * growth past the first allocation, a line too long), and metrics_render()
 * with every module off and with a registry whose numbers are known: each
 * redrive_* family is there once with its TYPE, the sums documented in
 * docs/observability.md hold, buckets are cumulative and +Inf == _count.
 */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "redrive/forward.h"
#include "redrive/metrics.h"
#include "redrive/reconcile.h"
#include "redrive/redrive.h"
#include "redrive/smtp_server.h"
#include "redrive/store.h"
#include "redrive/tracker.h"

/* The value of the sample line that starts with prefix + " "; fails if none
 * or more than one. */
static double
test_value(const char *text, const char *prefix)
{
	const char *p = text, *hit = NULL;
	size_t n = strlen(prefix);
	char *end;
	double v;

	while (p != NULL && *p != '\0') {
		if (strncmp(p, prefix, n) == 0 && p[n] == ' ') {
			assert_null(hit);
			hit = p + n + 1;
		}
		p = strchr(p, '\n');
		if (p != NULL)
			p++;
	}
	if (hit == NULL) {
		fail_msg("no sample %s", prefix);
		return NAN;
	}
	if (strncmp(hit, "+Inf", 4) == 0)
		return INFINITY;
	v = strtod(hit, &end);
	assert_true(end != hit && *end == '\n');
	return v;
}

/* Counts lines of text that start with prefix. */
static size_t
test_count(const char *text, const char *prefix)
{
	const char *p = text;
	size_t n = 0;

	while (p != NULL && *p != '\0') {
		if (strncmp(p, prefix, strlen(prefix)) == 0)
			n++;
		p = strchr(p, '\n');
		if (p != NULL)
			p++;
	}
	return n;
}

static void
test_metrics_histogram(void **state)
{
	struct metrics_histogram h;
	size_t i;
	uint64_t total = 0;

	(void)state;
	memset(&h, 0, sizeof(h));
	metrics_histogram_observe(&h, 0.001);  /* on the first bound */
	metrics_histogram_observe(&h, 0.0011); /* just above it */
	metrics_histogram_observe(&h, 300);    /* on the last bound */
	metrics_histogram_observe(&h, 300.5);  /* +Inf */
	metrics_histogram_observe(&h, -1);     /* counts as 0 */
	metrics_histogram_observe(&h, NAN);    /* counts as 0 */
	assert_int_equal(h.counts[0], 3);
	assert_int_equal(h.counts[1], 1);
	assert_int_equal(h.counts[METRICS_NBOUNDS - 1], 1);
	assert_int_equal(h.counts[METRICS_NBOUNDS], 1);
	assert_int_equal(h.count, 6);
	assert_true(fabs(h.sum - (0.001 + 0.0011 + 300 + 300.5)) < 1e-9);
	for (i = 0; i <= METRICS_NBOUNDS; i++)
		total += h.counts[i];
	assert_int_equal(total, h.count);
	for (i = 1; i < METRICS_NBOUNDS; i++)
		assert_true(METRICS_BOUNDS[i - 1] < METRICS_BOUNDS[i]);
}

static void
test_metrics_writer(void **state)
{
	struct metrics_buf b;

	(void)state;
	memset(&b, 0, sizeof(b));
	assert_int_equal(metrics_family(&b, "x_total", "counter", "An x."), 0);
	assert_int_equal(metrics_sample_u64(&b, "x_total", NULL,
			     UINT64_C(18446744073709551615)),
	    0);
	assert_int_equal(
	    metrics_sample_u64(&b, "x_total", "code=\"200\"", 7), 0);
	assert_int_equal(metrics_sample_double(&b, "y", NULL, 0.25), 0);
	assert_int_equal(metrics_sample_double(&b, "y", "a=\"b\"", NAN), 0);
	assert_int_equal(metrics_sample_double(&b, "y", NULL, INFINITY), 0);
	assert_int_equal(metrics_sample_double(&b, "y", NULL, -INFINITY), 0);
	assert_string_equal(b.data,
	    "# HELP x_total An x.\n"
	    "# TYPE x_total counter\n"
	    "x_total 18446744073709551615\n"
	    "x_total{code=\"200\"} 7\n"
	    "y 0.25\n"
	    "y{a=\"b\"} NaN\n"
	    "y +Inf\n"
	    "y -Inf\n");
	assert_int_equal(b.len, strlen(b.data));
	free(b.data);
}

/* Many lines: the buffer grows past its first allocation intact. */
static void
test_metrics_writer_grows(void **state)
{
	struct metrics_buf b;
	char name[32];
	int i;

	(void)state;
	memset(&b, 0, sizeof(b));
	for (i = 0; i < 2000; i++) {
		(void)snprintf(name, sizeof(name), "m_%d", i);
		assert_int_equal(
		    metrics_sample_u64(&b, name, NULL, (uint64_t)i), 0);
	}
	assert_true(b.len > 4096);
	assert_int_equal(b.len, strlen(b.data));
	assert_true(test_value(b.data, "m_0") == 0);
	assert_true(test_value(b.data, "m_1999") == 1999);
	free(b.data);
}

/* A line longer than the writer's bound is an error, and sticks. */
static void
test_metrics_writer_too_long(void **state)
{
	struct metrics_buf b;
	char name[2048];

	(void)state;
	memset(&b, 0, sizeof(b));
	memset(name, 'a', sizeof(name) - 1);
	name[sizeof(name) - 1] = '\0';
	assert_int_equal(metrics_sample_u64(&b, "ok", NULL, 1), 0);
	assert_int_equal(metrics_sample_u64(&b, name, NULL, 1), -EOVERFLOW);
	assert_int_equal(metrics_sample_u64(&b, "ok2", NULL, 1), -EOVERFLOW);
	assert_string_equal(b.data, "ok 1\n");
	free(b.data);
}

static void
test_metrics_histogram_write(void **state)
{
	struct metrics_histogram h;
	struct metrics_buf b;
	char label[96];
	double prev = 0, v;
	size_t i;

	(void)state;
	memset(&h, 0, sizeof(h));
	memset(&b, 0, sizeof(b));
	metrics_histogram_observe(&h, 0.003);
	metrics_histogram_observe(&h, 0.2);
	metrics_histogram_observe(&h, 0.2);
	metrics_histogram_observe(&h, 1000);
	assert_int_equal(metrics_histogram_write(&b, "t_seconds", "T.", &h), 0);
	assert_int_equal(test_count(b.data, "# HELP t_seconds T.\n"), 1);
	assert_int_equal(test_count(b.data, "# TYPE t_seconds histogram\n"), 1);
	assert_int_equal(
	    test_count(b.data, "t_seconds_bucket{"), METRICS_NBOUNDS + 1);
	for (i = 0; i < METRICS_NBOUNDS; i++) {
		(void)snprintf(label, sizeof(label),
		    "t_seconds_bucket{le=\"%g\"}", METRICS_BOUNDS[i]);
		v = test_value(b.data, label);
		assert_true(v >= prev); /* cumulative */
		prev = v;
	}
	assert_true(test_value(b.data, "t_seconds_bucket{le=\"0.001\"}") == 0);
	assert_true(test_value(b.data, "t_seconds_bucket{le=\"0.005\"}") == 1);
	assert_true(test_value(b.data, "t_seconds_bucket{le=\"0.25\"}") == 3);
	assert_true(test_value(b.data, "t_seconds_bucket{le=\"300\"}") == 3);
	assert_true(test_value(b.data, "t_seconds_bucket{le=\"+Inf\"}") == 4);
	assert_true(test_value(b.data, "t_seconds_count") == 4);
	assert_true(
	    fabs(test_value(b.data, "t_seconds_sum") - 1000.403) < 1e-9);
	/* The order the format wants: buckets, then _sum, then _count. */
	assert_true(strstr(b.data, "le=\"+Inf\"") < strstr(b.data, "_sum "));
	assert_true(strstr(b.data, "_sum ") < strstr(b.data, "_count "));
	free(b.data);
}

/* ---- metrics_render ---------------------------------------------------- */

static const char *const test_families[][2] = {
	{ "redrive_messages_received_total", "counter" },
	{ "redrive_recipients_sent_total", "counter" },
	{ "redrive_recipients_delivered_total", "counter" },
	{ "redrive_recipients_failed_total", "counter" },
	{ "redrive_redrives_total", "counter" },
	{ "redrive_reconciled_total", "counter" },
	{ "redrive_webhook_requests_total", "counter" },
	{ "redrive_webhook_tokens", "gauge" },
	{ "redrive_webhook_tokens_bytes", "gauge" },
	{ "redrive_forward_queue_depth", "gauge" },
	{ "redrive_forward_in_flight", "gauge" },
	{ "redrive_forward_paused", "gauge" },
	{ "redrive_alerts_sent_total", "counter" },
	{ "redrive_alerts_pending", "gauge" },
	{ "redrive_smtp_connections_active", "gauge" },
	{ "redrive_smtp_transaction_seconds", "histogram" },
	{ "redrive_mailgun_request_seconds", "histogram" },
};

/* Every family once, with its TYPE right after its HELP. */
static void
test_render_families(const char *text)
{
	char want[160];
	size_t i;

	for (i = 0; i < sizeof(test_families) / sizeof(test_families[0]); i++) {
		(void)snprintf(want, sizeof(want), "# TYPE %s %s\n",
		    test_families[i][0], test_families[i][1]);
		assert_int_equal(test_count(text, want), 1);
		(void)snprintf(
		    want, sizeof(want), "# HELP %s ", test_families[i][0]);
		assert_int_equal(test_count(text, want), 1);
	}
	assert_int_equal(test_count(text, "# TYPE "),
	    sizeof(test_families) / sizeof(test_families[0]));
}

static void
test_metrics_render_off(void **state)
{
	struct tracker_stats ts;
	struct metrics_buf b;

	(void)state;
	memset(&ts, 0, sizeof(ts));
	memset(&b, 0, sizeof(b));
	assert_int_equal(metrics_render(&b, NULL, &ts), 0);
	test_render_families(b.data);
	assert_true(test_value(b.data, "redrive_messages_received_total") == 0);
	assert_true(test_value(b.data,
			"redrive_webhook_requests_total{code=\"413\"}") == 0);
	assert_true(
	    test_value(b.data,
		"redrive_smtp_transaction_seconds_bucket{le=\"+Inf\"}") == 0);
	free(b.data);
}

static bool
test_smtp(void *arg, struct smtp_server_stats *out)
{
	(void)arg;
	memset(out, 0, sizeof(*out));
	out->messages = 11;
	out->active = 2;
	metrics_histogram_observe(&out->txn_seconds, 0.02);
	metrics_histogram_observe(&out->txn_seconds, 7);
	return true;
}

static bool
test_forward(void *arg, struct forward_stats *out)
{
	(void)arg;
	memset(out, 0, sizeof(*out));
	out->sent = 20;
	out->failed = 3;
	out->queued = 5;
	out->in_flight = 4;
	out->paused = true;
	return true;
}

static bool
test_redrive(void *arg, struct redrive_stats *out)
{
	(void)arg;
	memset(out, 0, sizeof(*out));
	out->resent = 2;
	out->requeued = 6;
	return true;
}

static bool
test_reconcile(void *arg, struct reconcile_stats *out)
{
	(void)arg;
	memset(out, 0, sizeof(*out));
	out->reconciled = 9;
	out->delivered = 7;
	out->failed = 1;
	return true;
}

static bool
test_alerts(void *arg, struct metrics_alert_stats *out)
{
	(void)arg;
	out->sent = 13;
	out->pending = 2;
	return true;
}

/* A module that is off: its numbers must not show up. */
static bool
test_off_store(void *arg, struct store_stats *out)
{
	(void)arg;
	out->requests = 999;
	out->webhook_tokens = 999;
	out->webhook_token_bytes = 999;
	return false;
}

/* The store of a daemon that holds webhook tokens. */
static bool
test_store(void *arg, struct store_stats *out)
{
	(void)arg;
	memset(out, 0, sizeof(*out));
	out->webhook_tokens = 12;
	out->webhook_token_bytes = 768;
	return true;
}

static void
test_metrics_render_values(void **state)
{
	struct metrics_registry reg;
	struct tracker_stats ts;
	struct metrics_buf b;

	(void)state;
	memset(&reg, 0, sizeof(reg));
	memset(&ts, 0, sizeof(ts));
	memset(&b, 0, sizeof(b));
	reg.smtp = test_smtp;
	reg.forward = test_forward;
	reg.redrive = test_redrive;
	reg.reconcile = test_reconcile;
	reg.alerts = test_alerts;
	reg.store = test_off_store;
	ts.answers[1] = 100;
	ts.answers[2] = 4;
	ts.answers[3] = 5;
	ts.answers[5] = 6;
	ts.not_found = 7;
	ts.bad_method = 8;
	ts.too_large = 9;
	ts.delivered = 30;
	ts.gave_up = 2;
	assert_int_equal(metrics_render(&b, &reg, &ts), 0);
	test_render_families(b.data);
	assert_true(
	    test_value(b.data, "redrive_messages_received_total") == 11);
	assert_true(test_value(b.data, "redrive_recipients_sent_total") == 22);
	assert_true(
	    test_value(b.data, "redrive_recipients_delivered_total") == 37);
	assert_true(test_value(b.data, "redrive_recipients_failed_total") == 6);
	assert_true(test_value(b.data, "redrive_redrives_total") == 8);
	assert_true(test_value(b.data, "redrive_reconciled_total") == 9);
	assert_true(test_value(b.data,
			"redrive_webhook_requests_total{code=\"200\"}") == 100);
	assert_true(test_value(b.data,
			"redrive_webhook_requests_total{code=\"400\"}") == 4);
	assert_true(test_value(b.data,
			"redrive_webhook_requests_total{code=\"401\"}") == 5);
	assert_true(test_value(b.data,
			"redrive_webhook_requests_total{code=\"404\"}") == 7);
	assert_true(test_value(b.data,
			"redrive_webhook_requests_total{code=\"405\"}") == 8);
	assert_true(test_value(b.data,
			"redrive_webhook_requests_total{code=\"413\"}") == 9);
	assert_true(test_value(b.data,
			"redrive_webhook_requests_total{code=\"503\"}") == 6);
	assert_true(test_value(b.data, "redrive_forward_queue_depth") == 5);
	assert_true(test_value(b.data, "redrive_forward_in_flight") == 4);
	assert_true(test_value(b.data, "redrive_forward_paused") == 1);
	assert_true(test_value(b.data, "redrive_alerts_sent_total") == 13);
	assert_true(test_value(b.data, "redrive_alerts_pending") == 2);
	assert_true(test_value(b.data, "redrive_smtp_connections_active") == 2);
	assert_true(
	    test_value(b.data,
		"redrive_smtp_transaction_seconds_bucket{le=\"0.025\"}") == 1);
	assert_true(
	    test_value(b.data,
		"redrive_smtp_transaction_seconds_bucket{le=\"+Inf\"}") == 2);
	assert_true(
	    test_value(b.data, "redrive_smtp_transaction_seconds_count") == 2);
	assert_true(
	    test_value(b.data, "redrive_mailgun_request_seconds_count") == 0);
	assert_true(test_value(b.data, "redrive_webhook_tokens") == 0);
	assert_true(test_value(b.data, "redrive_webhook_tokens_bytes") == 0);
	free(b.data);

	/* With the store on, its token gauges. */
	memset(&b, 0, sizeof(b));
	reg.store = test_store;
	assert_int_equal(metrics_render(&b, &reg, &ts), 0);
	test_render_families(b.data);
	assert_true(test_value(b.data, "redrive_webhook_tokens") == 12);
	assert_true(test_value(b.data, "redrive_webhook_tokens_bytes") == 768);
	free(b.data);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_metrics_histogram),
		cmocka_unit_test(test_metrics_writer),
		cmocka_unit_test(test_metrics_writer_grows),
		cmocka_unit_test(test_metrics_writer_too_long),
		cmocka_unit_test(test_metrics_histogram_write),
		cmocka_unit_test(test_metrics_render_off),
		cmocka_unit_test(test_metrics_render_values),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
