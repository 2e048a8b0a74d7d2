"""The tracker and the re-drive scheduler end to end (issue 4, DESIGN.md
"Data flow", "Webhooks", FACTS.md 2, 3 and 6): mail goes through the real
daemon to the Mailgun simulator, the simulator posts signed webhooks back
to the daemon's tracker, and what the store says (`redrive log --json`,
`redrive show --json`) is checked against what the simulator recorded
(/_sim/messages, /_sim/events, /_sim/requests, /_sim/webhooks).

Timings are short: [retry] backoff_base 300ms, backoff_factor 2, so the
n-th re-drive is due 300ms * 2^(n-1) after the failure that caused it;
the scheduler looks at least every 2 s (REDRIVE_TICK_MS), which bounds
how late a re-drive may start.  Times are compared on the simulator's
clock (event timestamps, send times), which is the machine's clock, at
sub-second precision (`show --json` has whole seconds only).

Webhook answers are checked with hand-made requests signed with
hmac/sha256 (timestamp || token) against the tracker on its own port."""

import json
import os
import re
import sqlite3
import time

import pytest

from mailgun_fixtures import DOMAIN, SCALE
from tracker_fixtures import (BACKOFF_MS, FACTOR, HOOK_PATH, SIGNING_KEY,
                              TICK, event_data, hook_body, new_token, sign,
                              tracker, tracker_sim, wait_until)  # noqa: F401
from tmpfs import fill, small_tmpfs

BACKOFF = BACKOFF_MS / 1000.0
# A re-drive is not due before failure + backoff; the daemon stores ms and
# the simulator's timestamps have us, so allow a rounding millisecond.
EPS = 0.002
# Long enough for any re-drive that was (wrongly) scheduled to show up.
SETTLE = BACKOFF + TICK + 0.6
# After every recipient ended delivered: time for a duplicate to show.
SHORT = 0.6


def one(items, what):
    assert len(items) == 1, "expected one %s, got %r" % (what, items)
    return items[0]


def failed_ts(t, mgid, addr):
    """The simulator's timestamp of the failure of that send to addr."""
    return one(t.sim_events(mgid, addr, "failed"), "failed event")["timestamp"]


def check_no_more_sends(t, mid, count, settle=SETTLE):
    """Waits for any re-drive that should not happen, then checks that the
    simulator got exactly `count` sends of the message."""
    time.sleep(settle * SCALE)
    t.sim.idle(5)
    sends = t.sends(mid)
    assert len(sends) == count, sends
    return sends


# ---- delivered --------------------------------------------------------------

def test_delivered(tracker):
    t = tracker()
    addr = "ok@example.net"
    mid = t.send([addr])
    r = t.wait_rcpt(mid, addr, "delivered")
    assert r["attempts"] == 1 and r["reason"] is None, r
    assert r["next_attempt_at"] is None, r
    mg = one(t.sends(mid), "send")
    assert mg["via"] == "mime"
    row = t.row(mid)
    assert row["status"] == "delivered", row
    assert row["mailgun_id"] == mg["id"], row
    obj = t.show(mid)
    evs = [e for e in obj["events"] if e["recipient"] == addr]
    names = [e["event"] for e in evs]
    assert "accepted" in names and "delivered" in names, evs
    dl = one([e for e in evs if e["event"] == "delivered"], "delivered")
    assert dl["mailgun_id"] == mg["id"], dl
    assert dl["code"] == 250, dl
    assert [s["via"] for s in obj["sends"]] == ["mime"], obj["sends"]
    # Every webhook the simulator posted was answered 200 at once.
    t.sim.idle(5)
    hooks = t.hooks_of(mg["id"])
    assert sorted(h["event"] for h in hooks) == ["accepted", "delivered"]
    for h in hooks:
        assert h["state"] == "delivered", h
        assert [a["status"] for a in h["attempts"]] == [200], h
    assert t.log_lines(r'msg="webhook recorded" event=delivered ')
    assert SIGNING_KEY not in t.d.all_logs()


# ---- re-drive through the storage URL ---------------------------------------

@pytest.mark.parametrize("reason", ["espblock", "blacklisted"])
def test_blocked_ip_redriven_through_storage(tracker, reason):
    """554 5.7.1 permanent (a blocked shared IP): re-driven through the
    event's storage URL once the backoff has passed, then delivered."""
    t = tracker()
    addr = "blocked@example.net"
    rule = "fail-then-deliver:1"
    if reason != "espblock":
        rule += ",reason=" + reason
    t.sim.rules({addr: rule})
    mid = t.send([addr])
    r = t.wait_rcpt(mid, addr, "delivered", timeout=10)
    assert r["attempts"] == 2, r
    assert r["reason"] is None, r

    first, again = t.sends(mid)
    assert first["via"] == "mime" and again["via"] == "storage"
    assert again["recipients"] == [addr], again
    assert again["resend_of"] == first["id"], again
    # The storage URL of the event, exactly: one POST on its path.
    storage_path = first["storage_url"].split(str(t.sim.base_url), 1)[1]
    posts = [q for q in t.sim.requests()
             if q["method"] == "POST" and q["path"].startswith("/v3/domains/")]
    assert [(q["path"], q["status"]) for q in posts] == [(storage_path, 200)]
    # Not before the backoff, counted from the failure.
    fail_at = failed_ts(t, first["id"], addr)
    assert again["time"] >= fail_at + BACKOFF - EPS, (again["time"], fail_at)
    assert again["time"] <= fail_at + BACKOFF + TICK + 2.0, \
        (again["time"], fail_at)

    obj = t.show(mid)
    assert [s["via"] for s in obj["sends"]] == ["mime", "storage"], obj
    s2 = obj["sends"][1]
    assert s2["recipients"] == [addr], s2
    assert s2["mailgun_id"] == again["id"], s2
    assert s2["http_status"] == 200, s2
    fl = one([e for e in obj["events"] if e["event"] == "failed"], "failure")
    assert fl["severity"] == "permanent" and fl["reason"] == reason, fl
    assert fl["code"] == 554 and fl["enhanced_code"] == "5.7.1", fl
    assert fl["mailgun_id"] == first["id"], fl
    dl = one([e for e in obj["events"] if e["event"] == "delivered"],
             "delivery")
    assert dl["mailgun_id"] == again["id"], dl
    row = t.row(mid)
    assert row["status"] == "delivered", row
    assert row["mailgun_id"] == again["id"], row
    assert t.log_lines(r'msg="re-drive scheduled" id=%d ' % mid)
    assert t.log_lines(r'msg="re-drive" id=%d .*via=storage result=accepted'
                       % mid)
    assert check_no_more_sends(t, mid, 2, SHORT)


def test_temporary_failures_not_redriven(tracker):
    """A temporary failure leaves the message to Mailgun's own retries: the
    recipient is deferred and never re-driven; Mailgun's later success
    delivers it; a recipient whose outcome never comes stays sent."""
    t = tracker()
    tmp, tmpok, quiet = ("tmp@example.net", "tmpok@example.net",
                         "quiet@example.net")
    t.sim.rules({tmp: "fail-temporary",
                 tmpok: "fail-temporary:then=delivered",
                 quiet: "drop-webhook"})
    mid = t.send([tmp, tmpok, quiet])
    t.wait_rcpt(mid, tmp, "deferred")
    t.wait_rcpt(mid, tmpok, "delivered")
    check_no_more_sends(t, mid, 1)
    r = t.rcpt(mid, tmp)
    assert r["status"] == "deferred", r
    assert r["attempts"] == 1 and r["next_attempt_at"] is None, r
    assert t.rcpt(mid, tmpok)["attempts"] == 1
    assert t.rcpt(mid, quiet)["status"] == "sent"
    assert t.row(mid)["status"] == "sent", t.row(mid)
    fl = one(t.events_of(mid, tmp, "failed"), "failure")
    assert fl["severity"] == "temporary" and fl["reason"] == "generic", fl
    assert fl["code"] == 451, fl
    assert len(t.events_of(mid, tmpok, "failed")) == 1
    assert len(t.sim.requests()) == 1
    assert not t.log_lines("re-drive scheduled")


def test_old_temporary_redriven(tracker):
    """reason "old" is terminal whatever its severity (FACTS.md 3.5)."""
    t = tracker(retry={"backoff_base": "1s"})
    addr = "old@example.net"
    t.sim.rules({addr: "fail-temporary:reason=old,code=602"})
    mid = t.send([addr])
    r = t.wait_rcpt(mid, addr, "retrying")
    assert r["next_attempt_at"] is not None, r
    # The next send is delivered (Mailgun's new IP passes).
    t.sim.rules({addr: "delivered"})
    r = t.wait_rcpt(mid, addr, "delivered", timeout=10)
    assert r["attempts"] == 2, r
    first, again = t.sends(mid)
    assert again["via"] == "storage" and again["recipients"] == [addr]
    fail_at = failed_ts(t, first["id"], addr)
    assert again["time"] >= fail_at + 1.0 - EPS, (again["time"], fail_at)
    fl = one(t.events_of(mid, addr, "failed"), "failure")
    assert fl["severity"] == "temporary" and fl["reason"] == "old", fl
    assert fl["code"] == 602, fl
    assert [s["via"] for s in t.show(mid)["sends"]] == ["mime", "storage"]


# ---- given up ---------------------------------------------------------------

def test_hard_bounces_and_suppressions_fail(tracker):
    """Never re-driven: a hard bounce, the three suppressions, a 5.1.x
    bad mailbox, and a delayed bounce after delivered (which counts)."""
    t = tracker()
    cases = {
        "hard@example.net": ("fail-permanent:code=550,enhanced=5.1.1,"
                             "reason=bounce", "bounce", 550),
        "sb@example.net": ("fail-permanent:reason=suppress-bounce",
                           "suppress-bounce", 605),
        "su@example.net": ("fail-permanent:reason=suppress-unsubscribe",
                           "suppress-unsubscribe", 606),
        "sc@example.net": ("fail-permanent:reason=suppress-complaint",
                           "suppress-complaint", 607),
        "mbox@example.net": ("fail-permanent:code=550,enhanced=5.1.1",
                             "generic", 550),
        "late@example.net": ("delayed-bounce", "generic", 550),
    }
    t.sim.rules({a: c[0] for a, c in cases.items()})
    mid = t.send(list(cases))
    for a in cases:
        t.wait_rcpt(mid, a, "failed")
    check_no_more_sends(t, mid, 1)
    assert len(t.sim.requests()) == 1, t.sim.requests()
    row = t.row(mid)
    assert row["status"] == "failed", row
    for a, (_, reason, code) in cases.items():
        r = t.rcpt(mid, a)
        assert r["status"] == "failed", r
        assert r["attempts"] == 1, r
        assert r["next_attempt_at"] is None, r
        assert isinstance(r["reason"], str) and r["reason"].strip(), r
        assert str(code) in r["reason"] or reason in r["reason"], r
        fl = one(t.events_of(mid, a, "failed"), "failure of " + a)
        assert fl["severity"] == "permanent", fl
        assert fl["reason"] == reason and fl["code"] == code, fl
    # The delayed bounce came after its delivery.
    late = t.events_of(mid, "late@example.net")
    names = [e["event"] for e in late]
    assert names.index("delivered") < names.index("failed"), late
    assert [s["via"] for s in t.show(mid)["sends"]] == ["mime"]
    assert len(t.log_lines(r'msg="recipient failed" id=%d ' % mid)) == \
        len(cases)
    assert not t.log_lines("re-drive scheduled")


def test_max_attempts_reached(tracker):
    """max_attempts = 3 counts every send: mime, then two storage resends,
    each after its backoff (300ms, then 600ms), then failed."""
    t = tracker(retry={"max_attempts": "3"})
    addr = "always@example.net"
    t.sim.rules({addr: "fail-permanent:reason=espblock"})
    mid = t.send([addr])
    r = t.wait_rcpt(mid, addr, "failed", timeout=15)
    assert r["attempts"] == 3, r
    assert r["reason"].startswith("gave up after 3 sends"), r
    assert r["next_attempt_at"] is None, r
    sends = check_no_more_sends(t, mid, 3)
    assert [s["via"] for s in sends] == ["mime", "storage", "storage"]
    for n in (1, 2):
        fail_at = failed_ts(t, sends[n - 1]["id"], addr)
        due = fail_at + BACKOFF * FACTOR ** (n - 1)
        assert sends[n]["time"] >= due - EPS, (n, sends[n]["time"], due)
    assert len(t.events_of(mid, addr, "failed")) == 3
    obj = t.show(mid)
    assert [s["via"] for s in obj["sends"]] == ["mime", "storage", "storage"]
    assert obj["status"] == "failed"
    assert len(t.log_lines(r'msg="recipient failed" id=%d ' % mid)) == 1


# ---- the spooled copy -------------------------------------------------------

def test_storage_expired_sends_spooled_copy(tracker):
    """The stored copy is gone (404): the spooled copy goes through
    messages.mime instead, to that recipient only."""
    t = tracker()
    addr = "gone@example.net"
    t.sim.rules({addr: "fail-then-deliver:1"})
    mid = t.send([addr])
    wait_until(lambda: t.sends(mid), 5, "the first send")
    assert t.sim.expire_storage()["expired"] == 1
    r = t.wait_rcpt(mid, addr, "delivered", timeout=10)
    assert r["attempts"] == 2, r
    first, again = t.sends(mid)
    assert first["via"] == "mime" and again["via"] == "mime"
    assert again["recipients"] == [addr]
    assert t.sim.body(again) == t.d.raw_message(mid)
    fail_at = failed_ts(t, first["id"], addr)
    reqs = [(q["path"].rsplit("/", 1)[-1] if "/messages/" in q["path"]
             else q["path"], q["status"]) for q in t.sim.requests()]
    assert reqs == [("/v3/%s/messages.mime" % DOMAIN, 200),
                    (first["storage_key"], 404),
                    ("/v3/%s/messages.mime" % DOMAIN, 200)], reqs
    storage_req = t.sim.requests()[1]
    assert storage_req["time"] >= fail_at + BACKOFF - EPS
    obj = t.show(mid)
    vias = [(s["via"], s["http_status"]) for s in obj["sends"]]
    assert vias == [("mime", 200), ("storage", 404), ("mime", 200)], vias
    assert obj["sends"][2]["mailgun_id"] == again["id"]
    assert obj["sends"][2]["recipients"] == [addr]
    assert t.row(mid)["mailgun_id"] == again["id"]


def test_past_storage_ttl_sends_spooled_copy(tracker):
    """Past [retry] storage_ttl (from the first acceptance) the daemon does
    not try the storage URL at all."""
    t = tracker(retry={"storage_ttl": "100ms"})
    addr = "ttl@example.net"
    t.sim.rules({addr: "fail-then-deliver:1"})
    mid = t.send([addr])
    r = t.wait_rcpt(mid, addr, "delivered", timeout=10)
    assert r["attempts"] == 2, r
    first, again = t.sends(mid)
    assert first["via"] == "mime" and again["via"] == "mime"
    assert again["time"] >= failed_ts(t, first["id"], addr) + BACKOFF - EPS
    assert not [q for q in t.sim.requests() if "/messages/" in q["path"]]
    assert [s["via"] for s in t.show(mid)["sends"]] == ["mime", "mime"]


# ---- per recipient ----------------------------------------------------------

def test_only_the_failed_recipient_redriven(tracker):
    t = tracker()
    a, b, c = "a@example.net", "b@example.org", "c@example.com"
    t.sim.rules({b: "fail-then-deliver:1"})
    mid = t.send([a, b, c])
    t.wait_rcpt(mid, b, "delivered", timeout=10)
    t.wait_rcpt(mid, a, "delivered")
    t.wait_rcpt(mid, c, "delivered")
    sends = check_no_more_sends(t, mid, 2, SHORT)
    assert sends[0]["via"] == "mime" and sends[0]["recipients"] == [a, b, c]
    assert sends[1]["via"] == "storage" and sends[1]["recipients"] == [b]
    assert [t.rcpt(mid, x)["attempts"] for x in (a, b, c)] == [1, 2, 1]
    obj = t.show(mid)
    assert [s["recipients"] for s in obj["sends"]] == [[a, b, c], [b]]
    assert obj["status"] == "delivered"
    for x in (a, c):
        assert not t.events_of(mid, x, "failed")
        assert len(t.events_of(mid, x, "delivered")) == 1


# ---- webhook answers --------------------------------------------------------

def bounce_for(mid, mgid, addr):
    """A permanent hard bounce for a real message (would fail it)."""
    return event_data("failed", addr, redrive_id=mid, message_id=mgid,
                      extra={"severity": "permanent", "reason": "bounce",
                             "log-level": "error",
                             "delivery-status": {
                                 "code": 550, "enhanced-code": "5.1.1",
                                 "message": "5.1.1 No such user",
                                 "description": ""}})


def delivered_message(t, addr="ok@example.net"):
    mid = t.send([addr])
    t.wait_rcpt(mid, addr, "delivered")
    t.sim.idle(5)
    return mid, one(t.sends(mid), "send")["id"]


def snapshot(t, mid):
    obj = t.show(mid)
    return (json.dumps(obj["recipients"], sort_keys=True),
            json.dumps(obj["events"], sort_keys=True), obj["status"])


def test_webhook_verification(tracker):
    """Bad, missing and stale signatures are 401 and change nothing, their
    token included: the same token, well signed and fresh, is then
    recorded (and the late bounce after delivered fails the recipient)."""
    t = tracker(tracker={"timestamp_window": "5m"})
    addr = "ok@example.net"
    mid, mgid = delivered_message(t, addr)
    before = snapshot(t, mid)
    ev = bounce_for(mid, mgid, addr)
    tok = new_token()
    now = int(time.time())
    bad = [
        hook_body(ev, now, tok, key="not-the-signing-key"),
        hook_body(ev, now, tok, signature=sign(str(now), new_token())),
        hook_body(ev, now, tok, signature=sign(str(now), tok)[:-1]),
        hook_body(ev, now, tok, signature=""),
        hook_body(ev, now - 3600, tok),          # stale
        hook_body(ev, now + 3600, tok),          # from the future
        json.dumps({"event-data": ev}).encode(),  # no signature at all
    ]
    for body in bad:
        status, text = t.post_hook(body)
        assert status == 401, (status, text, body[:200])
    assert snapshot(t, mid) == before
    assert t.rcpt(mid, addr)["status"] == "delivered"
    # Four minutes old: within the 5m window.
    status, text = t.post_hook(hook_body(ev, now - 240, tok))
    assert status == 200, text
    assert t.rcpt(mid, addr)["status"] == "failed"
    fl = one(t.events_of(mid, addr, "failed"), "the bounce")
    assert fl["reason"] == "bounce" and fl["code"] == 550, fl
    assert t.log_lines("webhook refused: bad signature")
    assert t.log_lines("webhook refused: timestamp outside the window")
    assert SIGNING_KEY not in t.d.all_logs()


def test_webhook_replay_and_reused_token(tracker):
    """A replay of a recorded webhook (same body) is 200 and changes
    nothing; its token with other event data is 401; the same event
    under a new token is a duplicate too."""
    t = tracker()
    addr = "ok@example.net"
    mid, mgid = delivered_message(t, addr)
    hooks = t.hooks_of(mgid)
    dl = one([h for h in hooks if h["event"] == "delivered"], "hook")
    before = snapshot(t, mid)
    # The test posts the recorded body again, byte for byte.
    status, text = t.post_hook(dl["body"].encode())
    assert status == 200, text
    # The simulator replays it (Mailgun's retry: same signature block).
    idx = t.sim.webhooks().index(dl)
    new = t.sim.replay_webhook(idx)["index"]
    t.sim.idle(5)
    rep = t.sim.webhooks()[new]
    assert rep["state"] == "delivered", rep
    assert [a["status"] for a in rep["attempts"]] == [200], rep
    assert snapshot(t, mid) == before
    # Same token, other event data: a forgery under a captured signature.
    obj = json.loads(dl["body"])
    forged = dict(obj)
    forged["event-data"] = bounce_for(mid, mgid, addr)
    status, text = t.post_hook(json.dumps(forged).encode())
    assert status == 401, text
    tweaked = json.loads(dl["body"])
    tweaked["event-data"]["timestamp"] += 1.0
    status, text = t.post_hook(json.dumps(tweaked).encode())
    assert status == 401, text
    assert snapshot(t, mid) == before
    assert t.rcpt(mid, addr)["status"] == "delivered"
    # The same event (event-data.id) under a fresh token: a duplicate.
    status, text = t.post_hook(hook_body(obj["event-data"]))
    assert status == 200, text
    assert snapshot(t, mid) == before
    assert t.log_lines("token reused with other event data")


def test_webhook_token_remembered_across_restart(tracker):
    """Tokens are looked up in memory and read back from the store when
    the daemon starts: after a restart, a captured signature on forged
    event data is still refused, and Mailgun's retry of the recorded
    webhook is still a harmless 200."""
    t = tracker()
    addr = "ok@example.net"
    mid, mgid = delivered_message(t, addr)
    dl = one([h for h in t.hooks_of(mgid) if h["event"] == "delivered"],
             "hook")
    before = snapshot(t, mid)
    t.d.restart()
    obj = json.loads(dl["body"])
    forged = dict(obj)
    forged["event-data"] = bounce_for(mid, mgid, addr)
    status, text = t.post_hook(json.dumps(forged).encode())
    assert status == 401, text
    assert t.log_lines("token reused with other event data")
    back = t.log_lines("webhook tokens read back from the store")
    # Once per run: none in the first, the first run's in the second.
    assert len(back) == 2 and " tokens=0 " in back[0], back
    assert re.search(r" tokens=[1-9]", back[1]), back
    status, text = t.post_hook(dl["body"].encode())
    assert status == 200, text
    assert snapshot(t, mid) == before
    assert t.rcpt(mid, addr)["status"] == "delivered"


def test_webhook_disk_full(tracker):
    """The store on a small tmpfs that a filler file has filled: webhooks
    are answered 503 once a commit fails for want of space, the daemon
    keeps running and the store stays sound.  The token of a webhook whose
    commit failed is not remembered: with the space back, Mailgun's retry
    of the very same body is recorded (200 recorded, its event stored
    once), and only a second retry is a duplicate."""
    with small_tmpfs("8m") as mnt:
        db = os.path.join(mnt, "redrive.db")
        t = tracker(store={"path": db}, allow_errors=True)
        try:
            addr = "ok@example.net"
            mid, mgid = delivered_message(t, addr)
            filler = os.path.join(mnt, "filler")
            print("filler: %d bytes" % fill(filler))

            def opened():
                ev = event_data("opened", addr, redrive_id=mid,
                                message_id=mgid)
                return ev, hook_body(ev)

            recorded, refused = [], None
            for _ in range(2000):
                ev, body = opened()
                status, text = t.post_hook(body)
                if status == 503:
                    refused = (ev, body)
                    break
                assert status == 200 and text.startswith(b"recorded"), \
                    (status, text)
                recorded.append(ev["id"])
            assert refused is not None, "2000 webhooks stored on a full disk?"
            print("recorded before the first 503: %d" % len(recorded))
            assert t.d.proc.poll() is None, t.d.log()[-3000:]
            failed = t.log_lines('msg="store commit failed"')
            assert failed and any("full" in ln or "errno=28" in ln
                                  for ln in failed), failed[:5]
            # Still full: the same body is refused again, not taken as seen.
            status, text = t.post_hook(refused[1])
            assert status == 503, (status, text)

            os.unlink(filler)
            status, text = t.post_hook(refused[1])
            assert status == 200 and text.startswith(b"recorded"), \
                (status, text)
            status, text = t.post_hook(refused[1])
            assert status == 200 and text.startswith(b"duplicate"), \
                (status, text)

            con = sqlite3.connect(db, timeout=30)
            try:
                assert [r[0] for r in con.execute("PRAGMA integrity_check")] \
                    == ["ok"]
                ids = [r[0] for r in con.execute(
                    "SELECT event_id FROM events WHERE message_id = ? AND"
                    " event = 'opened' ORDER BY id", (mid,))]
                tok = json.loads(refused[1])["signature"]["token"]
                ntok = con.execute("SELECT count(*) FROM webhook_tokens"
                                   " WHERE token = ?", (tok,)).fetchone()[0]
            finally:
                con.close()
            assert ids == recorded + [refused[0]["id"]], \
                (len(ids), len(recorded))
            assert ntok == 1
            assert t.rcpt(mid, addr)["status"] == "delivered"
            bad = [ln for ln in t.d.all_logs().splitlines()
                   if "level=error" in ln and
                   'msg="store commit failed"' not in ln and
                   'msg="store: recording a webhook event failed"' not in ln]
            assert not bad, "\n".join(bad)
            t.d.stop()
        finally:
            if t.d.proc is not None and t.d.proc.poll() is None:
                t.d.kill()  # before the unmount


def test_webhook_unknown_malformed_and_http(tracker):
    t = tracker(tracker={"max_body": "2K"})
    addr = "ok@example.net"
    mid, mgid = delivered_message(t, addr)
    before = snapshot(t, mid)
    rows_before = t.d.log_json()

    # An unknown message: 200 (Mailgun stops), ignored, token not kept.
    tok = new_token()
    unknown = event_data("delivered", "x@example.net", redrive_id=987654,
                         message_id="nope.1.23456@" + DOMAIN)
    status, text = t.post_hook(hook_body(unknown, token=tok))
    assert status == 200, text
    unknown2 = event_data("failed", "y@example.net",
                          message_id="nope.2.34567@" + DOMAIN,
                          extra={"severity": "permanent",
                                 "reason": "espblock"})
    status, text = t.post_hook(hook_body(unknown2, token=tok))
    assert status == 200, text
    assert t.log_lines("webhook ignored: unknown message")

    # Malformed: not JSON, cut JSON, not an object.
    for body in (b"hello", b'{"signature": {"timestamp": "1"', b"[]",
                 b'"event-data"', b"", b"\xff\xfe{}"):
        status, text = t.post_hook(body)
        assert status == 400, (body, status, text)
    # Well signed, but event-data missing or not an object.
    for ed in (..., "delivered", ["delivered"], 42, None):
        status, text = t.post_hook(hook_body(ed))
        assert status == 400, (ed, status, text)

    # max_body = 2K: a signed body just under it is read (and ignored as
    # unknown), one over it is 413.
    pad = event_data("delivered", "z@example.net", redrive_id=987655,
                     extra={"pad": ""})
    small = hook_body(pad)
    pad["pad"] = "x" * (2048 - 10 - len(small))
    small = hook_body(pad)
    assert 2000 < len(small) <= 2048, len(small)
    status, text = t.post_hook(small)
    assert status == 200, text
    pad["pad"] = "x" * 3000
    status, text = t.post_hook(hook_body(pad))
    assert status == 413, text

    # Method and path.
    for method in ("GET", "PUT", "DELETE"):
        status, hdrs, _ = t.request(method, HOOK_PATH)
        assert status == 405, (method, status)
        assert "POST" in {k.lower(): v for k, v in hdrs.items()}.get(
            "allow", ""), hdrs
    status, _, _ = t.request("POST", HOOK_PATH + "x", b"{}",
                             {"Content-Type": "application/json"})
    assert status == 404
    status, _, _ = t.request("POST", "/webhooks", b"{}",
                             {"Content-Type": "application/json"})
    assert status == 404
    status, _, _ = t.request("GET", "/")
    assert status == 404
    status, hdrs, body = t.request("GET", "/healthz")
    assert status == 200
    assert json.loads(body)["status"] == "ok", body
    status, _, _ = t.request("POST", "/healthz", b"")
    assert status == 405

    # None of it touched the store.
    assert snapshot(t, mid) == before
    assert t.d.log_json() == rows_before


def test_signed_event_without_event_name(tracker):
    """A well-signed event-data object that names no event is malformed
    input (400), not a store failure (503, which Mailgun retries for
    hours), and changes nothing."""
    t = tracker()
    mid, mgid = delivered_message(t)
    before = snapshot(t, mid)
    ed = bounce_for(mid, mgid, "ok@example.net")
    del ed["event"]
    status, text = t.post_hook(hook_body(ed))
    assert status == 400, (status, text)
    ed["event"] = ""
    status, text = t.post_hook(hook_body(ed))
    assert status == 400, (status, text)
    assert snapshot(t, mid) == before
    status, _, _ = t.request("GET", "/healthz")
    assert status == 200


# ---- restart and `redrive retry` --------------------------------------------

def test_restart_keeps_the_schedule(tracker):
    """A restart during the backoff: the re-drive happens at the time
    scheduled before the restart, not at once and not never."""
    backoff = 3.0 * SCALE  # a stop and a start fit in it under valgrind
    t = tracker(retry={"backoff_base": "%ds" % backoff})
    addr = "blocked@example.net"
    t.sim.rules({addr: "fail-then-deliver:1"})
    mid = t.send([addr])
    r = t.wait_rcpt(mid, addr, "retrying")
    assert r["next_attempt_at"] is not None, r
    t.d.stop()
    stopped = time.time()
    first = one(t.sends(mid), "send")
    fail_at = failed_ts(t, first["id"], addr)
    assert stopped < fail_at + backoff - 1.5, "stopped too late to tell"
    time.sleep(0.3)
    t.d.start()
    t.wait_healthy()
    started = time.time()
    assert started < fail_at + backoff - 0.5, "restarted too late to tell"
    r2 = t.rcpt(mid, addr)
    assert r2["status"] == "retrying", r2
    assert r2["next_attempt_at"] == r["next_attempt_at"], (r, r2)
    r = t.wait_rcpt(mid, addr, "delivered", timeout=12)
    assert r["attempts"] == 2, r
    sends = check_no_more_sends(t, mid, 2, SHORT)
    again = sends[1]
    assert again["via"] == "storage", again
    assert again["time"] >= fail_at + backoff - EPS, (again["time"], fail_at)
    assert again["time"] <= fail_at + backoff + TICK + 2.0 * SCALE
    assert t.d.runs == 2
    assert t.log_lines(r'msg="re-drive" id=%d .*via=storage result=accepted'
                       % mid)


def test_cli_retry_redrives_failed_recipient(tracker):
    """`redrive retry ID` on a hard-bounced recipient: the running daemon
    re-drives it (storage URL) without a restart."""
    t = tracker()
    addr = "hard@example.net"
    t.sim.rules({addr: "fail-permanent:code=550,enhanced=5.1.1,"
                       "reason=bounce"})
    mid = t.send([addr])
    r = t.wait_rcpt(mid, addr, "failed")
    assert r["reason"], r
    check_no_more_sends(t, mid, 1, SHORT)
    # The person fixed the address's problem at Mailgun; retry it.
    t.sim.rules({addr: "delivered"})
    asked = time.time()
    rc, out, err = t.d.cli("retry", mid)
    assert rc == 0, err
    assert out.decode() == "message %d: %s due now (was failed)\n" % (
        mid, addr), out
    r = t.wait_rcpt(mid, addr, "delivered", timeout=10)
    assert r["attempts"] == 2 and r["reason"] is None, r
    first, again = t.sends(mid)
    assert again["via"] == "storage" and again["recipients"] == [addr]
    assert again["time"] >= asked
    assert again["time"] <= asked + TICK + 2.0
    assert t.d.runs == 1
    assert [s["via"] for s in t.show(mid)["sends"]] == ["mime", "storage"]
    assert t.row(mid)["status"] == "delivered"


# ---- events that overtake the record of their own send ----------------------
#
# Mailgun may report on a send before the daemon has committed that send
# (its 200 is slow to arrive, or the store is slow to commit).  The
# simulator's `slow:S` fault accepts the send at once (its events and
# webhooks follow within ~0.2 s) and answers S seconds later.

def test_delivered_before_send_recorded(tracker):
    t = tracker()
    addr = "early@example.net"
    t.sim.faults("slow:1")
    mid = t.send([addr])
    r = t.wait_rcpt(mid, addr, "delivered")
    # The webhook came first; wait for the daemon's record of the send.
    wait_until(lambda: t.show(mid)["sends"], 5, "the send's record")
    mg = one(t.sends(mid), "send")
    r = t.rcpt(mid, addr)
    assert r["status"] == "delivered", r
    assert r["attempts"] == 1, r
    obj = t.show(mid)
    assert one(obj["sends"], "send")["mailgun_id"] == mg["id"]
    rc = one(obj["recipients"], "recipient")
    assert rc["mailgun_id"] == mg["id"], rc
    assert obj["mailgun_id"] == mg["id"]
    assert obj["status"] == "delivered"


def test_failure_before_send_recorded(tracker):
    """A failure webhook that beats the record of its send is answered 503
    (nothing stored) and counts when Mailgun brings it again."""
    t = tracker()
    addr = "earlyfail@example.net"
    t.sim.rules({addr: "fail-then-deliver:1"})
    t.sim.faults("slow:1")
    mid = t.send([addr])
    wait_until(lambda: t.show(mid)["sends"], 5, "the send's record")
    # The failure is not lost: it is re-driven, then delivered.
    r = t.wait_rcpt(mid, addr, "delivered", timeout=15)
    assert r["attempts"] == 2, r
    assert [s["via"] for s in t.sends(mid)] == ["mime", "storage"]
    assert "webhook early" in t.d.log()


def test_webhooks_of_a_copy_never_recorded(tracker):
    """Mailgun accepts a send but answers after our timeout: the message
    is sent again and that send recorded.  The first copy's events are
    answered 503 only while the resend waits for its record; after that
    they are kept (200), without a change of state, instead of being
    refused for as long as Mailgun retries them."""
    t = tracker(mailgun={"timeout": "1s"})
    addr = "lostanswer@example.net"
    t.sim.faults("slow:2")
    mid = t.send([addr])
    t.wait_rcpt(mid, addr, "delivered", timeout=15)
    sends = t.sends(mid)
    assert len(sends) == 2, sends     # the unrecorded copy, the resend
    # Our record: the timed-out request (no id) and the resend's id.
    recorded = [s["mailgun_id"] for s in t.show(mid)["sends"]
                if s["mailgun_id"]]
    assert len(recorded) == 1, t.show(mid)["sends"]
    lost = [s for s in sends if s["id"].strip("<>") not in
            [m.strip("<>") for m in recorded]]
    assert len(lost) == 1, (sends, recorded)
    lost_id = lost[0]["id"].strip("<>")

    def lost_hooks():
        return [h for h in t.sim.webhooks()
                if h["message-id"].strip("<>") == lost_id]

    # Every webhook of the lost copy ends answered 200 (the simulator
    # retries each after 0.2 s, a 503 only while the resend was queued).
    wait_until(lambda: lost_hooks() and all(
        h["state"] == "delivered" for h in lost_hooks()), 10,
        "the lost copy's webhooks answered 200")
    kept = [e for e in t.show(mid)["events"]
            if (e.get("mailgun_id") or "").strip("<>") == lost_id]
    assert any(e["event"] == "delivered" for e in kept), t.show(mid)
    assert "never recorded: kept, state unchanged" in t.d.log()
    r = one([r for r in t.show(mid)["recipients"]
             if r["address"] == addr], "recipient")
    assert r["status"] == "delivered" and r["attempts"] == 1, r


def test_resend_failure_before_resend_recorded(tracker):
    """The same race for a storage resend: its failure is not lost."""
    t = tracker()
    addr = "earlyfail2@example.net"
    t.sim.rules({addr: "fail-then-deliver:2"})
    mid = t.send([addr])
    t.wait_rcpt(mid, addr, "retrying")
    t.sim.faults("slow:1")             # the storage resend answers late
    wait_until(lambda: len(t.show(mid)["sends"]) == 2, 5,
               "the storage resend's record")
    r = t.wait_rcpt(mid, addr, "delivered", timeout=15)
    assert r["attempts"] == 3, r
    assert [s["via"] for s in t.sends(mid)] == ["mime", "storage", "storage"]
