/*
 * metrics: what GET /metrics and GET /healthz need, and nothing that does
 * I/O.  Three parts:
 *
 *  - a latency histogram (struct metrics_histogram) that modules embed in
 *    their stats and fill with metrics_histogram_observe(); one fixed set
 *    of bucket bounds in seconds (METRICS_BOUNDS), so a zeroed struct is a
 *    valid empty histogram;
 *  - a writer of Prometheus' text exposition format 0.0.4 (# HELP, # TYPE,
 *    samples with labels, histograms as _bucket{le=...}, _sum, _count)
 *    into a growing buffer (struct metrics_buf);
 *  - the registry (struct metrics_registry) that redrived fills with
 *    callbacks to the other modules' stats, and metrics_render() that
 *    turns them into the exposition.
 *
 * Loop thread only (the registry's callbacks read loop-thread state).
 */
#ifndef REDRIVE_METRICS_H
#define REDRIVE_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The media type of the exposition format. */
#define METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

/* The histogram's finite upper bounds, in seconds, ascending. */
#define METRICS_NBOUNDS 17
extern const double METRICS_BOUNDS[METRICS_NBOUNDS];

/*
 * A histogram of durations in seconds.  counts[i] holds the observations
 * v <= METRICS_BOUNDS[i] that no smaller bound took (not cumulative);
 * counts[METRICS_NBOUNDS] those above every bound.  Zero it to start.
 */
struct metrics_histogram {
	uint64_t counts[METRICS_NBOUNDS + 1];
	uint64_t count;
	double sum;
};

/* Records one observation (negative or NaN values count as 0). */
void metrics_histogram_observe(struct metrics_histogram *h, double seconds);

/* ---- The exposition writer --------------------------------------------- */

/* A growing text buffer.  Zero it to start; free data with free(). */
struct metrics_buf {
	char *data; /* NUL-terminated while len > 0 */
	size_t len;
	size_t cap;
	int err; /* the first error (-ENOMEM); later writes are no-ops */
};

/* Appends printf-style text.  Returns 0 or b->err. */
int metrics_printf(struct metrics_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/*
 * Writes "# HELP name help" and "# TYPE name type" (type: counter, gauge,
 * histogram).  help must not hold a newline or a backslash.
 */
int metrics_family(struct metrics_buf *b, const char *name, const char *type,
    const char *help);

/*
 * Writes one sample line "name{labels} value"; labels is NULL or the text
 * between the braces, already escaped ("code=\"200\"").  Integers are
 * written exactly; doubles with %.17g, NaN and infinities as Prometheus
 * spells them.
 */
int metrics_sample_u64(
    struct metrics_buf *b, const char *name, const char *labels, uint64_t v);
int metrics_sample_double(
    struct metrics_buf *b, const char *name, const char *labels, double v);

/* Writes a whole histogram family: HELP, TYPE, buckets, _sum, _count. */
int metrics_histogram_write(struct metrics_buf *b, const char *name,
    const char *help, const struct metrics_histogram *h);

/* ---- The registry ------------------------------------------------------ */

struct smtp_server_stats;
struct forward_stats;
struct redrive_stats;
struct store_stats;
struct tracker_stats;
struct reconcile_stats;

/* Alert counters, when an alert module runs. */
struct metrics_alert_stats {
	uint64_t sent;	  /* alerts delivered */
	uint64_t pending; /* alerts kept for a later try */
};

/*
 * Where the numbers come from.  Each callback fills *out and returns true,
 * or returns false when its module is off (not started, or closed); a NULL
 * callback counts as off.  arg is handed to each.  The tracker's own
 * counters are passed to metrics_render() directly.
 */
struct metrics_registry {
	void *arg;
	bool (*smtp)(void *arg, struct smtp_server_stats *out);
	bool (*forward)(void *arg, struct forward_stats *out);
	bool (*redrive)(void *arg, struct redrive_stats *out);
	bool (*store)(void *arg, struct store_stats *out);
	bool (*reconcile)(void *arg, struct reconcile_stats *out);
	bool (*alerts)(void *arg, struct metrics_alert_stats *out);
	/* The Mailgun client's request durations. */
	bool (*mailgun_seconds)(void *arg, struct metrics_histogram *out);
};

/*
 * Writes every redrive_* metric (docs/observability.md lists them) into b,
 * from reg (may be NULL: every module off) and the tracker's counters ts.
 * Returns 0 or a negative errno code (b->err).
 */
int metrics_render(struct metrics_buf *b, const struct metrics_registry *reg,
    const struct tracker_stats *ts);

#endif
