"""GET /healthz, GET /metrics and reconciliation through the Events API
(issue 5, DESIGN.md "Webhooks", FACTS.md 1.3 and 3.7), through the real
daemon and the Mailgun simulator.

/metrics is parsed here with a small parser of Prometheus' text format
0.0.4 (HELP and TYPE before the samples of their family, labels,
histogram buckets ascending and cumulative, +Inf equal to _count), and
its values are checked to move with traffic.  Reconciliation is shown on
a message whose delivered webhook never comes (the simulator's
`drop-webhook` rule): the daemon finds the delivery in the Events API."""

import json
import math
import re
import sqlite3
import time

import pytest

from tracker_fixtures import (hook_body, event_data, tracker, tracker_sim,
                              wait_until)  # noqa: F401

# ---- the exposition format -----------------------------------------------------

NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
SAMPLE = re.compile(r"^(%s)(?:\{(.*)\})? (\S+)$" % NAME)
LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*(,|$)')


def parse_labels(text):
    out, pos = {}, 0
    while pos < len(text):
        m = LABEL.match(text, pos)
        assert m, "bad labels: %r" % text
        assert m.group(1) not in out, "label twice: %r" % text
        out[m.group(1)] = m.group(2)
        pos = m.end()
    return out


def parse_value(text):
    if text in ("+Inf", "-Inf", "NaN"):
        return float(text.replace("Inf", "inf").replace("NaN", "nan"))
    return float(text)


def parse_metrics(text):
    """Returns {family: {"type", "help", "samples": [(name, labels, v)]}};
    asserts the format's rules on the way."""
    assert text.endswith("\n")
    fams, cur = {}, None
    for line in text.split("\n")[:-1]:
        if line.startswith("# HELP "):
            name, _, help_ = line[7:].partition(" ")
            assert re.fullmatch(NAME, name), line
            assert name not in fams, "family twice: " + name
            fams[name] = {"help": help_, "type": None, "samples": []}
            cur = name
            continue
        if line.startswith("# TYPE "):
            name, _, typ = line[7:].partition(" ")
            assert name == cur, "TYPE without its HELP: " + line
            assert typ in ("counter", "gauge", "histogram", "summary",
                           "untyped"), line
            fams[name]["type"] = typ
            continue
        assert not line.startswith("#"), line
        m = SAMPLE.match(line)
        assert m, "bad sample line: %r" % line
        name, labels, value = m.group(1), parse_labels(m.group(2) or ""), \
            parse_value(m.group(3))
        fam = fams[cur]
        if fam["type"] == "histogram":
            assert name in (cur + "_bucket", cur + "_sum", cur + "_count"), \
                line
        else:
            assert name == cur, "sample outside its family: " + line
        fam["samples"].append((name, labels, value))
    for name, fam in fams.items():
        assert fam["type"] is not None, name
        assert fam["samples"], "family without samples: " + name
        if fam["type"] == "histogram":
            check_histogram(name, fam)
    return fams


def check_histogram(name, fam):
    buckets = [(s[1]["le"], s[2]) for s in fam["samples"]
               if s[0] == name + "_bucket"]
    assert buckets and buckets[-1][0] == "+Inf", buckets
    bounds = [parse_value(b[0]) for b in buckets]
    assert bounds == sorted(bounds) and len(set(bounds)) == len(bounds)
    counts = [b[1] for b in buckets]
    assert counts == sorted(counts), "buckets not cumulative: %r" % buckets
    count = [s[2] for s in fam["samples"] if s[0] == name + "_count"]
    total = [s[2] for s in fam["samples"] if s[0] == name + "_sum"]
    assert len(count) == 1 and len(total) == 1
    assert counts[-1] == count[0], "+Inf bucket != _count"
    assert total[0] >= 0 and not math.isnan(total[0])


def value(fams, name, **labels):
    for sname, slabels, v in fams[name]["samples"]:
        if sname == name and slabels == {k: str(x) for k, x in
                                         labels.items()}:
            return v
    pytest.fail("no sample %s%r" % (name, labels))


def hist_count(fams, name):
    return value_of(fams[name], name + "_count")


def value_of(fam, sname):
    return [s[2] for s in fam["samples"] if s[0] == sname][0]


def test_parser_rejects_what_it_should():
    """The parser above can fail: a few broken expositions."""
    good = ("# HELP a_total A.\n# TYPE a_total counter\na_total 1\n"
            "# HELP h H.\n# TYPE h histogram\n"
            'h_bucket{le="1"} 1\nh_bucket{le="+Inf"} 2\nh_sum 3\nh_count 2\n')
    parse_metrics(good)
    for bad in (good.replace('h_bucket{le="+Inf"} 2', 'h_bucket{le="+Inf"} 0'),
                good.replace("h_count 2", "h_count 3"),
                good.replace("# TYPE a_total counter\n", ""),
                good.replace("a_total 1", "a_total{x=1} 1"),
                good.replace("a_total 1", "b_total 1"),
                good[:-1]):
        with pytest.raises(AssertionError):
            parse_metrics(bad)


# ---- helpers -------------------------------------------------------------------

def metrics(t):
    status, headers, body = t.request("GET", "/metrics")
    assert status == 200, body
    ctype = {k.lower(): v for k, v in headers.items()}["content-type"]
    assert ctype.startswith("text/plain; version=0.0.4"), ctype
    return parse_metrics(body.decode("utf-8"))


def healthz(t, timeout=10):
    status, headers, body = t.request("GET", "/healthz", timeout=timeout)
    ctype = {k.lower(): v for k, v in headers.items()}["content-type"]
    assert ctype == "application/json", ctype
    return status, json.loads(body)


EXPECTED = {
    "redrive_messages_received_total": "counter",
    "redrive_recipients_sent_total": "counter",
    "redrive_recipients_delivered_total": "counter",
    "redrive_recipients_failed_total": "counter",
    "redrive_redrives_total": "counter",
    "redrive_webhook_requests_total": "counter",
    "redrive_webhook_tokens": "gauge",
    "redrive_webhook_tokens_bytes": "gauge",
    "redrive_forward_queue_depth": "gauge",
    "redrive_forward_in_flight": "gauge",
    "redrive_forward_paused": "gauge",
    "redrive_alerts_sent_total": "counter",
    "redrive_alerts_pending": "gauge",
    "redrive_smtp_connections_active": "gauge",
    "redrive_smtp_transaction_seconds": "histogram",
    "redrive_mailgun_request_seconds": "histogram",
}


# ---- /healthz -------------------------------------------------------------------

def test_healthz_ok(tracker):
    t = tracker()
    status, h = healthz(t)
    assert status == 200
    assert h == {"status": "ok", "store": "ok", "forwarder": "running",
                 "relay": "ok", "tracker": "ok"}
    status, _, _ = t.request("POST", "/healthz", b"x")
    assert status == 405


def test_healthz_paused_forwarder(tracker):
    t = tracker(allow_errors=True)
    t.sim.auth_fail(True)
    try:
        s = t.d.smtp()
        s.sendmail("app@example.com", ["p@example.net"],
                   b"Subject: paused\r\n\r\nbody\r\n")
        s.quit()
        wait_until(lambda: healthz(t)[1]["forwarder"] != "running", 10,
                   "the forwarder to pause")
        status, h = healthz(t)
        assert status == 200
        assert h["status"] == "degraded"
        assert h["store"] == "ok"
        assert h["forwarder"].startswith("paused: 401"), h
        fams = metrics(t)
        assert value(fams, "redrive_forward_paused") == 1
    finally:
        t.sim.auth_fail(False)


def test_healthz_store_locked_is_503(tracker):
    """Another process holds the store's write lock past the busy
    timeout: the store cannot commit, and /healthz says so with 503."""
    t = tracker(allow_errors=True)
    lock = sqlite3.connect(t.d.store, isolation_level=None, timeout=10)
    lock.execute("BEGIN EXCLUSIVE")
    try:
        status, h = healthz(t, timeout=30)
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    assert status == 503, h
    assert h["status"] == "degraded"
    assert h["store"].startswith("error: "), h
    status, h = healthz(t)
    assert status == 200 and h["store"] == "ok"


# ---- /metrics -------------------------------------------------------------------

def test_metrics_format_and_names(tracker):
    t = tracker()
    fams = metrics(t)
    for name, typ in EXPECTED.items():
        assert name in fams, name
        assert fams[name]["type"] == typ, (name, fams[name]["type"])
    for code in ("200", "400", "401", "404", "405", "413", "503"):
        assert value(fams, "redrive_webhook_requests_total", code=code) == 0
    assert value(fams, "redrive_alerts_pending") == 0


def test_metrics_move_with_traffic(tracker):
    t = tracker()
    before = metrics(t)
    n = 3
    mids = [t.send(["m%d@example.net" % i]) for i in range(n)]
    for i, mid in enumerate(mids):
        t.wait_rcpt(mid, "m%d@example.net" % i, "delivered")
    t.sim.idle(10)
    after = metrics(t)

    def delta(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("redrive_messages_received_total") == n
    assert delta("redrive_recipients_sent_total") == n
    assert delta("redrive_recipients_delivered_total") == n
    assert delta("redrive_recipients_failed_total") == 0
    # accepted + delivered webhooks, each answered 200.
    hooks = [h for h in t.sim.webhooks() if h["state"] == "delivered"]
    assert delta("redrive_webhook_requests_total", code="200") == len(hooks)
    assert len(hooks) >= 2 * n
    # Each of them recorded with a token of its own, now held in memory.
    assert delta("redrive_webhook_tokens") == len(hooks)
    assert value(after, "redrive_webhook_tokens_bytes") > 0
    assert value(after, "redrive_forward_queue_depth") == 0
    assert value(after, "redrive_forward_in_flight") == 0
    assert value(after, "redrive_forward_paused") == 0
    assert value(after, "redrive_smtp_connections_active") == 0
    smtp = after["redrive_smtp_transaction_seconds"]
    assert value_of(smtp, "redrive_smtp_transaction_seconds_count") - \
        value_of(before["redrive_smtp_transaction_seconds"],
                 "redrive_smtp_transaction_seconds_count") == n
    mg = after["redrive_mailgun_request_seconds"]
    assert value_of(mg, "redrive_mailgun_request_seconds_count") >= n
    assert value_of(mg, "redrive_mailgun_request_seconds_sum") > 0

    # A bad signature is 401, a wrong path 404, a wrong method 405, a
    # too large body 413: each counted under its code.
    status, _ = t.post_hook(hook_body(event_data("delivered", "x@e.net"),
                                      signature="0" * 64))
    assert status == 401
    assert t.request("GET", "/nowhere")[0] == 404
    assert t.request("GET", "/webhooks/mailgun")[0] == 405
    big = b"{" + b" " * (2 * 1024 * 1024) + b"}"
    try:
        status = t.request("POST", "/webhooks/mailgun", big,
                           {"Content-Type": "application/json"})[0]
    except OSError:
        status = 413  # the server may close before the body is sent
    assert status == 413
    last = metrics(t)
    for code in ("401", "404", "405", "413"):
        assert value(last, "redrive_webhook_requests_total", code=code) - \
            value(after, "redrive_webhook_requests_total", code=code) == 1, \
            code


# ---- reconciliation -------------------------------------------------------------

def test_reconcile_closes_lost_delivered_webhook(tracker):
    t = tracker(tracker={"reconcile_after": "1s",
                         "reconcile_interval": "500ms"})
    addr = "lost@example.net"
    t.sim.rules({addr: "drop-webhook"})
    before = metrics(t)
    mid = t.send([addr])
    r = t.wait_rcpt(mid, addr, "delivered", timeout=20)
    assert r["status"] == "delivered"
    # The simulator never posted the delivered webhook...
    mgid = t.row(mid)["mailgun_id"]
    assert not [h for h in t.hooks_of(mgid) if h["event"] == "delivered"]
    # ...the daemon asked the Events API (the simulator ignores a
    # message-id filter in brackets and answers every message's events;
    # the lookups here carry the bare id, see docs/observability.md)...
    reqs = [q for q in t.sim.requests() if q["method"] == "GET" and
            "/events" in q["path"]]
    assert reqs and all(q["status"] == 200 for q in reqs), reqs
    # ...recorded the event, and logged the reconciled recipient.
    evs = t.events_of(mid, addr, "delivered")
    assert len(evs) == 1, evs
    assert t.log_lines(r'recipient reconciled from the Events API.*'
                       r'recipient=lost@example\.net.*status=delivered')
    after = metrics(t)
    assert value(after, "redrive_recipients_delivered_total") - \
        value(before, "redrive_recipients_delivered_total") == 1
    assert value(after, "redrive_reconciled_total") - \
        value(before, "redrive_reconciled_total") == 1
    # Further rounds do not record it again (it is final now).
    time.sleep(2.0)
    assert len(t.events_of(mid, addr, "delivered")) == 1


def test_reconcile_does_not_double_count_webhooks(tracker):
    """A message whose webhooks came: not looked up once final; a message
    still only 'sent' but whose webhook events were all recorded is looked
    up, and the Events API's copies are duplicates (same event id)."""
    t = tracker(tracker={"reconcile_after": "1s",
                         "reconcile_interval": "500ms"})
    addr = "quiet@example.net"
    t.sim.rules({addr: "accept-only"})
    mid = t.send([addr])
    t.wait_rcpt(mid, addr, "sent")
    wait_until(lambda: len([q for q in t.sim.requests()
                            if q["path"].endswith("/events")]) >= 2,
               10, "two Events API lookups")
    # Only the accepted event, once, whatever the number of lookups.
    evs = t.events_of(mid, addr, "accepted")
    assert len(evs) == 1, evs
    assert t.rcpt(mid, addr)["status"] == "sent"
