/*
 * metrics: latency histograms, a writer of Prometheus' text exposition
 * format 0.0.4, and the rendering of every redrive_* metric from the
 * registry that redrived fills (metrics.h).
 *
 * The format (prometheus.io, "Exposition formats", text format 0.0.4):
 * one "# HELP name text" and one "# TYPE name type" line per family,
 * before its samples; a sample is "name{label="value",...} value" with
 * the value a Go-style float ("+Inf", "-Inf", "NaN"); a histogram is the
 * cumulative counters name_bucket{le="bound"} in ascending order ending
 * with le="+Inf", whose value equals name_count, then name_sum and
 * name_count.  Lines end with "\n".
 *
 * Counters are the modules' own, counted since the daemon started (a
 * restart resets them, which Prometheus' rate() handles as a counter
 * reset); docs/observability.md says where each number comes from.
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "redrive/forward.h"
#include "redrive/metrics.h"
#include "redrive/reconcile.h"
#include "redrive/redrive.h"
#include "redrive/smtp_server.h"
#include "redrive/store.h"
#include "redrive/tracker.h"

/*
 * From 1 ms (a local SMTP transaction, a fast API answer) to 5 min (the
 * relay's and Mailgun client's default timeouts are 5 min and 30 s).
 */
const double METRICS_BOUNDS[METRICS_NBOUNDS] = { 0.001, 0.0025, 0.005, 0.01,
	0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300 };

/* The most bytes one formatted piece may take before it is cut. */
#define METRICS_LINE_MAX 1024

void
metrics_histogram_observe(struct metrics_histogram *h, double seconds)
{
	size_t i;

	if (!(seconds > 0)) /* NaN and negatives */
		seconds = 0;
	for (i = 0; i < METRICS_NBOUNDS; i++)
		if (seconds <= METRICS_BOUNDS[i])
			break;
	h->counts[i]++;
	h->count++;
	h->sum += seconds;
}

/* Makes room for n more bytes and the NUL.  Returns 0 or b->err. */
static int
metrics_buf_grow(struct metrics_buf *b, size_t n)
{
	size_t cap;
	char *p;

	if (b->err != 0)
		return b->err;
	if (b->len + n + 1 <= b->cap)
		return 0;
	cap = b->cap > 0 ? b->cap : 4096;
	while (cap < b->len + n + 1)
		cap *= 2;
	p = realloc(b->data, cap);
	if (p == NULL) {
		b->err = -ENOMEM;
		return b->err;
	}
	b->data = p;
	b->cap = cap;
	return 0;
}

int
metrics_printf(struct metrics_buf *b, const char *fmt, ...)
{
	char line[METRICS_LINE_MAX];
	va_list ap;
	int n;

	if (b->err != 0)
		return b->err;
	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(line)) {
		b->err = -EOVERFLOW;
		return b->err;
	}
	if (metrics_buf_grow(b, (size_t)n) != 0)
		return b->err;
	memcpy(b->data + b->len, line, (size_t)n + 1);
	b->len += (size_t)n;
	return 0;
}

int
metrics_family(
    struct metrics_buf *b, const char *name, const char *type, const char *help)
{
	metrics_printf(b, "# HELP %s %s\n", name, help);
	return metrics_printf(b, "# TYPE %s %s\n", name, type);
}

int
metrics_sample_u64(
    struct metrics_buf *b, const char *name, const char *labels, uint64_t v)
{
	if (labels != NULL)
		return metrics_printf(
		    b, "%s{%s} %" PRIu64 "\n", name, labels, v);
	return metrics_printf(b, "%s %" PRIu64 "\n", name, v);
}

/* Go's spelling of a float, as the format wants it. */
static void
metrics_float(double v, char *buf, size_t len)
{
	if (isnan(v))
		(void)snprintf(buf, len, "NaN");
	else if (isinf(v))
		(void)snprintf(buf, len, "%s", v > 0 ? "+Inf" : "-Inf");
	else
		(void)snprintf(buf, len, "%.17g", v);
}

int
metrics_sample_double(
    struct metrics_buf *b, const char *name, const char *labels, double v)
{
	char val[64];

	metrics_float(v, val, sizeof(val));
	if (labels != NULL)
		return metrics_printf(b, "%s{%s} %s\n", name, labels, val);
	return metrics_printf(b, "%s %s\n", name, val);
}

int
metrics_histogram_write(struct metrics_buf *b, const char *name,
    const char *help, const struct metrics_histogram *h)
{
	char label[64], sum[64];
	uint64_t cum = 0;
	size_t i;

	metrics_family(b, name, "histogram", help);
	for (i = 0; i < METRICS_NBOUNDS; i++) {
		cum += h->counts[i];
		(void)snprintf(
		    label, sizeof(label), "le=\"%g\"", METRICS_BOUNDS[i]);
		metrics_printf(
		    b, "%s_bucket{%s} %" PRIu64 "\n", name, label, cum);
	}
	cum += h->counts[METRICS_NBOUNDS];
	metrics_printf(b, "%s_bucket{le=\"+Inf\"} %" PRIu64 "\n", name, cum);
	metrics_float(h->sum, sum, sizeof(sum));
	metrics_printf(b, "%s_sum %s\n", name, sum);
	return metrics_printf(b, "%s_count %" PRIu64 "\n", name, h->count);
}

/* A counter or gauge family with one unlabelled sample. */
static void
metrics_one(struct metrics_buf *b, const char *name, const char *type,
    const char *help, uint64_t v)
{
	metrics_family(b, name, type, help);
	metrics_sample_u64(b, name, NULL, v);
}

/* The webhook answers by code: the tracker's and the HTTP server's own. */
static void
metrics_webhooks(struct metrics_buf *b, const struct tracker_stats *ts)
{
	static const char name[] = "redrive_webhook_requests_total";
	const struct {
		const char *code;
		uint64_t v;
	} rows[] = {
		{ "200", ts->answers[1] },
		{ "400", ts->answers[2] },
		{ "401", ts->answers[3] },
		{ "404", ts->not_found },
		{ "405", ts->bad_method },
		{ "413", ts->too_large },
		{ "503", ts->answers[5] },
		{ "other", ts->answers[0] + ts->refused },
	};
	char label[32];
	size_t i;

	metrics_family(b, name, "counter",
	    "Requests the tracker's HTTP server answered, by status code "
	    "(GET /healthz and /metrics not counted).");
	for (i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		(void)snprintf(
		    label, sizeof(label), "code=\"%s\"", rows[i].code);
		metrics_sample_u64(b, name, label, rows[i].v);
	}
}

int
metrics_render(struct metrics_buf *b, const struct metrics_registry *reg,
    const struct tracker_stats *ts)
{
	struct smtp_server_stats ss;
	struct forward_stats fs;
	struct redrive_stats rs;
	struct reconcile_stats cs;
	struct metrics_alert_stats as;
	struct metrics_histogram mh;
	struct store_stats st;
	void *arg = reg != NULL ? reg->arg : NULL;

	memset(&ss, 0, sizeof(ss));
	memset(&fs, 0, sizeof(fs));
	memset(&rs, 0, sizeof(rs));
	memset(&cs, 0, sizeof(cs));
	memset(&as, 0, sizeof(as));
	memset(&mh, 0, sizeof(mh));
	memset(&st, 0, sizeof(st));
	if (reg != NULL) {
		if (reg->smtp == NULL || !reg->smtp(arg, &ss))
			memset(&ss, 0, sizeof(ss));
		if (reg->forward == NULL || !reg->forward(arg, &fs))
			memset(&fs, 0, sizeof(fs));
		if (reg->redrive == NULL || !reg->redrive(arg, &rs))
			memset(&rs, 0, sizeof(rs));
		if (reg->reconcile == NULL || !reg->reconcile(arg, &cs))
			memset(&cs, 0, sizeof(cs));
		if (reg->alerts == NULL || !reg->alerts(arg, &as))
			memset(&as, 0, sizeof(as));
		if (reg->mailgun_seconds == NULL ||
		    !reg->mailgun_seconds(arg, &mh))
			memset(&mh, 0, sizeof(mh));
		if (reg->store == NULL || !reg->store(arg, &st))
			memset(&st, 0, sizeof(st));
	}

	metrics_one(b, "redrive_messages_received_total", "counter",
	    "Messages stored and acknowledged with 250 by the relay.",
	    ss.messages);
	metrics_one(b, "redrive_recipients_sent_total", "counter",
	    "Recipient sends Mailgun accepted (forwarder and storage "
	    "re-drives).",
	    fs.sent + rs.resent);
	metrics_one(b, "redrive_recipients_delivered_total", "counter",
	    "Recipients an event (webhook or Events API) made delivered.",
	    ts->delivered + cs.delivered);
	metrics_one(b, "redrive_recipients_failed_total", "counter",
	    "Recipients that ended failed (policy gave up, or Mailgun "
	    "rejected the send).",
	    ts->gave_up + cs.failed + fs.failed);
	metrics_one(b, "redrive_redrives_total", "counter",
	    "Re-drives started: storage resends accepted plus recipients "
	    "requeued for the spooled copy.",
	    rs.resent + rs.requeued);
	metrics_one(b, "redrive_reconciled_total", "counter",
	    "Recipients whose state an Events API lookup changed.",
	    cs.reconciled);
	metrics_webhooks(b, ts);
	metrics_one(b, "redrive_webhook_tokens", "gauge",
	    "Webhook tokens held in memory to refuse replays (read back at "
	    "the first webhook after a start).",
	    st.webhook_tokens);
	metrics_one(b, "redrive_webhook_tokens_bytes", "gauge",
	    "Memory those tokens take, bytes.", st.webhook_token_bytes);
	metrics_one(b, "redrive_forward_queue_depth", "gauge",
	    "Queued recipients at the forwarder's last look.", fs.queued);
	metrics_one(b, "redrive_forward_in_flight", "gauge",
	    "Forwarder requests at Mailgun now.", fs.in_flight);
	metrics_one(b, "redrive_forward_paused", "gauge",
	    "1 while forwarding is paused (401/403 or a wrong api_base).",
	    fs.paused ? 1 : 0);
	metrics_one(b, "redrive_alerts_sent_total", "counter",
	    "Alerts delivered.", as.sent);
	metrics_one(b, "redrive_alerts_pending", "gauge",
	    "Alerts kept for a later try.", as.pending);
	metrics_one(b, "redrive_smtp_connections_active", "gauge",
	    "SMTP sessions open now.", ss.active);
	metrics_histogram_write(b, "redrive_smtp_transaction_seconds",
	    "SMTP transactions, from MAIL to the reply after the data.",
	    &ss.txn_seconds);
	metrics_histogram_write(b, "redrive_mailgun_request_seconds",
	    "Mailgun API requests, from start to answer (or transport "
	    "error).",
	    &mh);
	return b->err;
}
