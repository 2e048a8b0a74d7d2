"""The forwarder end to end (docs/forwarding.md): messages go through the
real daemon to the Mailgun simulator, and what Mailgun got, what the store
says (`redrive log --json`, `redrive show --json`) and what the daemon
logged are checked against each other.

Every fault the simulator can inject ends with the message sent and
nothing lost; a 2xx is never followed by a second send; 401/403/404 and a
200 that is not Mailgun's pause the forwarder until a probe succeeds; a
restart picks up what is still queued."""

import json
import re
import smtplib
import time

import pytest

from mailgun_fixtures import (API_KEY, DOMAIN, SCALE, mailgun_config,  # noqa: F401
                              mailgun_sim)
from smtputil import split_received

QUEUED_TEXT = re.compile(rb"^2\.0\.0 Ok: queued as ([0-9]+)$")


# ---- helpers ----------------------------------------------------------------

def send(d, rcpts, data=None, sender="app@example.com"):
    """One message through smtplib; returns its local id."""
    if data is None:
        data = (b"From: App <app@example.com>\r\n"
                b"To: Someone <someone@example.net>\r\n"
                b"Subject: forward test\r\n"
                b"\r\n"
                b"Hello.\r\n"
                b".a line with a leading dot\r\n")
    s = d.smtp()
    try:
        code, _ = s.mail(sender)
        assert code == 250
        for r in rcpts:
            code, text = s.rcpt(r)
            assert code == 250, (r, code, text)
        code, text = s.data(data)
        assert code == 250, (code, text)
        m = QUEUED_TEXT.match(text)
        assert m, text
        return int(m.group(1))
    finally:
        s.quit()


def wait_until(pred, timeout, what):
    deadline = time.monotonic() + timeout * SCALE
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            pytest.fail("timed out waiting for " + what)
        time.sleep(0.05)


def by_id(d):
    return {m["id"]: m for m in d.log_json()}


def wait_status(d, ids, status="sent", timeout=15):
    """Waits until every message in ids has the given derived status."""
    def done():
        rows = by_id(d)
        return all(i in rows and rows[i]["status"] == status for i in ids)
    wait_until(done, timeout, "messages %r to be %s; log:\n%s" % (
        ids, status, d.log()))
    return by_id(d)


def show(d, mid):
    rc, out, err = d.cli("show", mid, "--json")
    assert rc == 0, err
    return json.loads(out.decode().splitlines()[0])


def log_lines(d, pattern):
    return [ln for ln in d.all_logs().splitlines() if re.search(pattern, ln)]


def check_sent(d, sim, mid, rcpts, copies=1):
    """The message went out: Mailgun got `copies` requests carrying it,
    each with exactly the envelope's recipients, the stored bytes and the
    local id; the store says sent with the id of the last one, bare."""
    row = by_id(d)[mid]
    assert row["status"] == "sent", row
    got = sim.messages_for(mid)
    assert len(got) == copies, (copies, got)
    raw = d.raw_message(mid)
    for m in got:
        assert sorted(m["recipients"]) == sorted(rcpts), m["recipients"]
        assert sim.body(m) == raw, "the message part differs"
        assert m["via"] == "mime"
    last = got[-1]
    assert row["mailgun_id"] == last["id"], (row, last["id"])
    assert not row["mailgun_id"].startswith("<")
    assert row["attempts"] >= 1
    for r in row["recipients"]:
        assert r["status"] == "sent", r
        assert r["attempts"] == 1, r
        assert r["reason"] is None
    return row


def check_no_send_after_2xx(d, sim, mid):
    """Every request Mailgun saw is a send in the store, the accepted one
    is the only one with an id and the last one, and nothing follows."""
    time.sleep(1.3 * SCALE)  # longer than retry_max: any retry would show
    sends = show(d, mid)["sends"]
    reqs = sim.requests()
    assert len(reqs) == len(sends), (reqs, sends)
    ided = [s for s in sends if s["mailgun_id"] is not None]
    assert len(ided) == 1, sends
    assert sends[-1] is ided[0], sends
    assert sends[-1]["http_status"] == 200
    return sends


# ---- sending ----------------------------------------------------------------

def test_one_recipient(daemon, mailgun_sim, mailgun_config):
    d = daemon(mailgun_config())
    data = (b"From: A <a@example.com>\r\n"
            b"To: B <b@example.net>\r\n"
            b"Subject: one\r\n"
            b"Message-ID: <one.fwd@client.test>\r\n"
            b"\r\n"
            b"line one\r\n"
            b".a leading dot, stuffed on the wire\r\n"
            b"\xc3\xa9 8-bit\r\n")
    mid = send(d, ["b@example.net"], data)
    wait_status(d, [mid])
    row = check_sent(d, mailgun_sim, mid, ["b@example.net"])
    m = mailgun_sim.messages_for(mid)[0]
    assert m["variables"] == {"redrive-id": str(mid)}
    # The part is the client's message (smtplib dot-stuffs it, the relay
    # unstuffs it) behind one Received field.
    field, rest = split_received(mailgun_sim.body(m))
    assert rest == data
    assert row["attempts"] == 1
    obj = show(d, mid)
    assert len(obj["sends"]) == 1
    s = obj["sends"][0]
    assert s["via"] == "mime"
    assert s["mailgun_id"] == m["id"]
    assert s["result"] == "Queued. Thank you."
    assert s["recipients"] == ["b@example.net"]
    # The Mailgun id finds the message too.
    rc, out, _ = d.cli("show", "<%s>" % m["id"], "--json")
    assert rc == 0 and json.loads(out.decode().splitlines()[0])["id"] == mid
    assert log_lines(d, r'msg="message sent" id=%d ' % mid)
    assert API_KEY not in d.all_logs()


def test_many_recipients(daemon, mailgun_sim, mailgun_config):
    d = daemon(mailgun_config())
    rcpts = ["to%d@dest%d.example" % (i, i % 3) for i in range(7)]
    # Headers name two of them; the envelope decides (Bcc included).
    data = (b"To: to0@dest0.example\r\nCc: to1@dest1.example\r\n"
            b"Subject: seven\r\n\r\nhi all\r\n")
    mid = send(d, rcpts, data)
    wait_status(d, [mid])
    check_sent(d, mailgun_sim, mid, rcpts)
    m = mailgun_sim.messages_for(mid)[0]
    assert m["recipients"] == rcpts  # the RCPT order, each once
    assert show(d, mid)["sends"][0]["recipients"] == rcpts


def test_oldest_first(daemon, mailgun_sim, mailgun_config):
    """With one request at a time, messages leave in the order stored."""
    mailgun_sim.auth_fail(True)
    d = daemon(mailgun_config(concurrency=1), allow_errors=True)
    ids = [send(d, ["n%d@example.net" % i]) for i in range(5)]
    wait_until(lambda: log_lines(d, "forwarding paused"), 10, "the pause")
    mailgun_sim.auth_fail(False)
    wait_status(d, ids)
    order = [int(m["variables"]["redrive-id"])
             for m in mailgun_sim.messages()]
    assert order == ids, order


def test_1500_recipients_split(daemon, mailgun_sim, mailgun_config):
    over = mailgun_config()
    over["relay"] = {"max_recipients": "2000"}
    d = daemon(over)
    rcpts = ["user%04d@example.net" % i for i in range(1500)]
    mid = send(d, rcpts, b"Subject: many\r\n\r\nto many\r\n")
    wait_status(d, [mid], timeout=30)
    got = mailgun_sim.messages_for(mid)
    assert [len(m["recipients"]) for m in got] == [1000, 500]
    assert got[0]["recipients"] == rcpts[:1000]
    assert got[1]["recipients"] == rcpts[1000:]
    raw = d.raw_message(mid)
    assert all(mailgun_sim.body(m) == raw for m in got)
    row = by_id(d)[mid]
    assert len(row["recipients"]) == 1500
    assert all(r["status"] == "sent" and r["attempts"] == 1
               for r in row["recipients"])
    sends = show(d, mid)["sends"]
    assert [len(s["recipients"]) for s in sends] == [1000, 500]
    assert [s["mailgun_id"] for s in sends] == [m["id"] for m in got]
    # The latest Mailgun id is the message's.
    assert row["mailgun_id"] == got[1]["id"]


# ---- faults -----------------------------------------------------------------

# fault -> copies Mailgun ends up with.  A 5xx after acceptance and an
# answer slower than [mailgun] timeout are the at-least-once cases.
FAULTS = {
    "500": 1,
    "502": 1,
    "503": 1,
    "504": 1,
    "429-date:2": 1,
    "429-seconds:2": 1,
    "429-seconds:2,reset=ms": 1,
    "420:2": 1,
    "slow:3": 2,
    "drop": 1,
    "accept-then-500": 2,
    "accept-then-drop": 2,
}


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_fault_then_sent(daemon, mailgun_sim, mailgun_config, fault):
    d = daemon(mailgun_config())
    mailgun_sim.faults(fault)
    rcpts = ["a@example.net", "b@example.org"]
    t0 = time.time()
    mid = send(d, rcpts)
    wait_status(d, [mid], timeout=20)
    check_sent(d, mailgun_sim, mid, rcpts, copies=FAULTS[fault])
    sends = check_no_send_after_2xx(d, mailgun_sim, mid)
    assert len(sends) == 2, sends
    first = sends[0]
    assert first["mailgun_id"] is None
    assert first["result"], first
    row = by_id(d)[mid]
    for r in row["recipients"]:
        assert r["attempts"] == 1  # the accepted request only
    if fault.startswith(("429", "420")):
        # Mailgun's "try again after" holds the whole domain.
        assert first["http_status"] == int(fault[:3])
        assert log_lines(d, r'level=warn msg="Mailgun rate limit; '
                            r'forwarding held" status=%s' % fault[:3])
        reqs = mailgun_sim.requests()
        assert reqs[1]["time"] - reqs[0]["time"] >= 1.0, reqs
    elif fault in ("slow:3", "drop", "accept-then-drop"):
        assert first["http_status"] is None, first  # no answer
    else:
        assert first["http_status"] in (500, 502, 503, 504), first
    if fault == "accept-then-500":
        # Mailgun kept the first copy although it answered 500.
        got = mailgun_sim.messages_for(mid)
        assert [m["answered"] for m in got] == [500, 200], got
    assert time.time() - t0 < 20 * SCALE


def test_rejected(daemon, mailgun_sim, mailgun_config):
    d = daemon(mailgun_config())
    text = "to parameter is not a valid address. please check documentation"
    mailgun_sim.faults("400:" + text)
    mid = send(d, ["x@example.net", "y@example.net"])
    rows = wait_status(d, [mid], status="failed")
    for r in rows[mid]["recipients"]:
        assert r["status"] == "failed"
        assert r["reason"] == "400 " + text, r
        assert r["attempts"] == 0
    assert mailgun_sim.messages() == []
    time.sleep(1.3 * SCALE)
    assert len(mailgun_sim.requests()) == 1  # never tried again
    sends = show(d, mid)["sends"]
    assert len(sends) == 1 and sends[0]["http_status"] == 400
    assert sends[0]["result"] == text
    assert log_lines(d, r'level=warn msg="Mailgun rejected the message; '
                        r'its recipients failed" id=%d' % mid)


# ---- pause ------------------------------------------------------------------

def check_paused(d, mids, pattern, linger=0.0):
    """One error line says paused, and the messages stay queued (for
    linger seconds: past retry_max, probes are made, which log no new
    error).  Without linger, the state is read at once: the first probe
    cannot come before retry_max (1s)."""
    wait_until(lambda: log_lines(d, "forwarding paused"), 10,
               "the pause line; log:\n" + d.log())
    time.sleep(linger * SCALE)
    # Not under valgrind: the read must come before the probe (1 s).
    rows = {m["id"]: m for m in d.log_json(valgrind=False)}
    for mid in mids:
        assert rows[mid]["status"] == "queued", rows[mid]
        assert all(r["status"] == "queued" for r in rows[mid]["recipients"])
    errors = log_lines(d, "level=error")
    assert len(errors) == 1, errors
    assert re.search(pattern, errors[0]), errors[0]
    assert API_KEY not in d.all_logs()


def check_probe_gap(sim):
    """After a pause the next request is the probe, retry_max (1s) later."""
    reqs = sim.requests()
    assert len(reqs) == 2, reqs
    assert reqs[1]["time"] - reqs[0]["time"] >= 0.9, reqs


def test_401_pauses_and_resumes(daemon, mailgun_sim, mailgun_config):
    mailgun_sim.auth_fail(True)
    d = daemon(mailgun_config(), allow_errors=True)
    mids = [send(d, ["p%d@example.net" % i]) for i in range(3)]
    check_paused(d, mids,
                 r'level=error msg="Mailgun refused the API key; '
                 r'forwarding paused" status=401 mailgun=Forbidden '
                 r'retry_in=1s$', linger=1.5)
    # Paused: after the first three answers, only a probe every
    # retry_max (1s), not the whole queue again.
    reqs = wait_until(lambda: (lambda r: len(r) >= 5 and r)(
        mailgun_sim.requests()), 10, "probes")
    times = [r["time"] for r in reqs[2:]]
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert gaps and min(gaps) >= 0.9, gaps
    assert mailgun_sim.messages() == []
    mailgun_sim.auth_fail(False)
    wait_status(d, mids)
    assert log_lines(d, 'level=info msg="forwarding resumed"')
    for i, mid in enumerate(mids):
        check_sent(d, mailgun_sim, mid, ["p%d@example.net" % i])
        sends = show(d, mid)["sends"]
        assert sends[-1]["http_status"] == 200
        assert all(s["http_status"] == 401 for s in sends[:-1])


def test_403_pauses_and_resumes(daemon, mailgun_sim, mailgun_config):
    mailgun_sim.faults("403")
    d = daemon(mailgun_config(), allow_errors=True)
    mid = send(d, ["q@example.net"])
    check_paused(d, [mid],
                 r'msg="Mailgun refused to send for the domain; forwarding '
                 r'paused" status=403 mailgun="Domain %s is not allowed to '
                 r'send: Free accounts' % re.escape(DOMAIN))
    wait_status(d, [mid])
    check_sent(d, mailgun_sim, mid, ["q@example.net"])
    check_no_send_after_2xx(d, mailgun_sim, mid)
    check_probe_gap(mailgun_sim)


def test_404_domain_not_found_pauses(daemon, mailgun_sim, mailgun_config):
    mailgun_sim.faults("404:Domain not found: %s" % DOMAIN)
    d = daemon(mailgun_config(), allow_errors=True)
    mid = send(d, ["r@example.net"])
    check_paused(d, [mid], r'status=404 mailgun="Domain not found: ')
    wait_status(d, [mid])
    check_sent(d, mailgun_sim, mid, ["r@example.net"])
    check_probe_gap(mailgun_sim)


@pytest.mark.parametrize("fault", ["magnificent", "no-id"])
def test_200_that_is_not_a_send(daemon, mailgun_sim, mailgun_config, fault):
    """A 200 without Mailgun's JSON id is not a send: no id is recorded for
    it and the message goes again once Mailgun answers properly."""
    mailgun_sim.faults(fault)
    d = daemon(mailgun_config(), allow_errors=(fault == "magnificent"))
    mid = send(d, ["s@example.net"])
    if fault == "magnificent":
        check_paused(d, [mid], r"Mailgun's answer is not its API")
        wait_status(d, [mid])
        check_probe_gap(mailgun_sim)
    wait_status(d, [mid])
    check_sent(d, mailgun_sim, mid, ["s@example.net"])
    sends = check_no_send_after_2xx(d, mailgun_sim, mid)
    assert len(sends) == 2
    assert sends[0]["http_status"] == 200
    assert sends[0]["mailgun_id"] is None
    assert by_id(d)[mid]["recipients"][0]["attempts"] == 1


# ---- restart and shutdown ---------------------------------------------------

def test_restart_sends_what_is_queued(daemon, mailgun_sim, mailgun_config):
    mailgun_sim.auth_fail(True)
    d = daemon(mailgun_config(), allow_errors=True)
    mids = [send(d, ["t%d@example.net" % i]) for i in range(3)]
    wait_until(lambda: log_lines(d, "forwarding paused"), 10, "the pause")
    d.stop()
    assert all(r["status"] == "queued" for r in by_id(d).values())
    mailgun_sim.auth_fail(False)
    d.start()
    wait_status(d, mids)
    for i, mid in enumerate(mids):
        check_sent(d, mailgun_sim, mid, ["t%d@example.net" % i])
    # A third run sends nothing again.
    n = len(mailgun_sim.requests())
    d.restart()
    time.sleep(1.0 * SCALE)
    assert len(mailgun_sim.requests()) == n
    assert len(mailgun_sim.messages()) == 3


def test_shutdown_cancels_in_flight(daemon, mailgun_sim, mailgun_config):
    """SIGTERM with a request in flight: the daemon exits at once, records
    nothing for it and sends the message again on the next start (Mailgun
    had it already: the documented at-least-once case)."""
    mailgun_sim.faults("slow:4")
    d = daemon(mailgun_config(timeout="10s"))
    mid = send(d, ["u@example.net"])
    wait_until(lambda: len(mailgun_sim.messages()) == 1, 10,
               "the slow request to arrive")
    t0 = time.monotonic()
    d.stop()
    assert time.monotonic() - t0 < 3.0 * SCALE
    assert by_id(d)[mid]["status"] == "queued"
    assert show(d, mid)["sends"] == []
    d.start()
    wait_status(d, [mid])
    check_sent(d, mailgun_sim, mid, ["u@example.net"], copies=2)


def test_no_key_no_forwarder(daemon):
    d = daemon()
    mid = send(d, ["v@example.net"])
    time.sleep(0.3)
    assert by_id(d)[mid]["status"] == "queued"
    assert log_lines(d, r'level=warn msg="forwarder off: no \[mailgun\] '
                        r'api_key/domain; messages stay queued"')


def test_hundred_messages(daemon, mailgun_sim, mailgun_config):
    """100 messages over a few connections, every one sent exactly once;
    the daemon then stops cleanly (the fixture checks exit 0, and under
    REDRIVE_VALGRIND=1 that valgrind found no leak or error)."""
    d = daemon(mailgun_config())
    mids = []
    for c in range(4):
        s = d.smtp()
        try:
            for i in range(25):
                n = c * 25 + i
                code, _ = s.mail("app@example.com")
                assert code == 250
                code, _ = s.rcpt("h%03d@example.net" % n)
                assert code == 250
                code, text = s.data(b"Subject: %d\r\n\r\nbody %d\r\n"
                                    % (n, n))
                assert code == 250
                mids.append(int(QUEUED_TEXT.match(text).group(1)))
        finally:
            s.quit()
    wait_status(d, mids, timeout=60)
    got = {}
    for m in mailgun_sim.messages():
        got.setdefault(int(m["variables"]["redrive-id"]), []).append(m)
    assert sorted(got) == sorted(mids)
    assert all(len(v) == 1 for v in got.values())
    d.stop()
