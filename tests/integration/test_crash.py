"""Promise 1: no acknowledged message is ever lost.  Eight clients send 500
messages while the daemon is SIGKILLed at a random moment; after a restart
on the same store every message that got "250 ... queued as ID" is there,
complete and byte-exact.  Messages stored but never acknowledged (killed
between commit and reply) are allowed, but they too must be complete."""

import random
import re
import smtplib
import threading
import time

from smtputil import scale, split_received

QUEUED_TEXT = re.compile(rb"^2\.0\.0 Ok: queued as ([0-9]+)$")
NTHREADS = 8
NMESSAGES = 500


def make_message(i, rng):
    marker = b"crash-marker-%04d" % i
    lines = [b"Subject: " + marker,
             b"Message-ID: <" + marker + b"@client.test>",
             b"From: sender%d@x.test" % i, b"To: rcpt%d@y.test" % i, b""]
    for j in range(rng.randint(1, 150)):
        lines.append(b"%s line %d %s" % (marker, j,
                                          b"x" * rng.randint(0, 120)))
    lines.append(b"." + marker + b" dotted line")
    lines.append(b"end " + marker)
    return marker, b"\r\n".join(lines) + b"\r\n"


def test_kill9_loses_no_acknowledged_message(daemon):
    rng = random.Random()
    seed = rng.randrange(1 << 30)
    rng.seed(seed)
    print("seed", seed)
    msgs = [make_message(i, rng) for i in range(NMESSAGES)]
    by_marker = {m: (i, data) for i, (m, data) in enumerate(msgs)}
    kill_after = rng.randint(150, 300)

    d = daemon()
    lock = threading.Condition()
    acked = {}          # message index -> id
    todo = list(range(NMESSAGES))
    state = {"killed": False, "acks": 0}
    pre_kill_errors = []

    def worker():
        s = None
        try:
            s = smtplib.SMTP("127.0.0.1", d.port, local_hostname="client.test",
                             timeout=10 * scale())
            code, _ = s.ehlo()
            if code != 250:
                raise smtplib.SMTPResponseException(code, b"EHLO")
            while True:
                with lock:
                    if not todo:
                        return
                    i = todo.pop(0)
                marker, data = msgs[i]
                code, _ = s.mail("sender%d@x.test" % i)
                if code != 250:
                    raise smtplib.SMTPResponseException(code, b"MAIL")
                code, _ = s.rcpt("rcpt%d@y.test" % i)
                if code != 250:
                    raise smtplib.SMTPResponseException(code, b"RCPT")
                code, text = s.data(data)
                if code != 250:
                    raise smtplib.SMTPResponseException(code, text)
                m = QUEUED_TEXT.match(text)
                if not m:
                    raise AssertionError("bad 250 text %r" % text)
                with lock:
                    acked[i] = int(m.group(1))
                    state["acks"] += 1
                    lock.notify_all()
        except (smtplib.SMTPException, OSError, AssertionError) as e:
            with lock:
                if not state["killed"]:
                    pre_kill_errors.append(repr(e))
                lock.notify_all()
        finally:
            if s is not None:
                try:
                    s.close()
                except OSError:
                    pass

    threads = [threading.Thread(target=worker, daemon=True)
               for _ in range(NTHREADS)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    with lock:
        ok = lock.wait_for(lambda: state["acks"] >= kill_after or
                           pre_kill_errors or not any(
                               t.is_alive() for t in threads),
                           timeout=60 * scale())
        assert ok, "clients stalled before the kill"
        assert not pre_kill_errors, pre_kill_errors
        state["killed"] = True
        acks_at_kill = state["acks"]
        d.kill()
    took = time.monotonic() - t0
    for t in threads:
        t.join(20 * scale())
        assert not t.is_alive(), "a client hangs after the kill"
    print("killed after %d acks (target %d) in %.2fs; %d acks in all"
          % (acks_at_kill, kill_after, took, len(acked)))
    assert acks_at_kill >= kill_after

    d.start()  # same config, same store
    ids = list(acked.values())
    assert len(set(ids)) == len(ids), "one id acknowledged twice"
    for i, mid in acked.items():
        marker, data = msgs[i]
        field, rest = split_received(d.raw_message(mid))
        assert b"by redrive.test" in field
        assert rest == data, "acked message %d (id %d) differs" % (i, mid)

    rows = d.log_json()
    stored = {r["id"]: r for r in rows}
    missing = [mid for mid in ids if mid not in stored]
    assert not missing, "acknowledged ids missing from log: %r" % missing
    unacked = 0
    seen = set()
    acked_ids = set(ids)
    for mid, r in stored.items():
        if mid in acked_ids:
            continue
        unacked += 1
        _, rest = split_received(d.raw_message(mid))
        m = re.match(rb"Subject: (crash-marker-[0-9]{4})\r\n", rest)
        assert m, "stored message %d is not one we sent: %r" % (
            mid, rest[:200])
        i, data = by_marker[m.group(1)]
        assert rest == data, "unacked stored message %d is incomplete" % mid
        assert r["from"] == "sender%d@x.test" % i
        assert i not in seen
        seen.add(i)
    print("stored but not acknowledged: %d" % unacked)
    for r in rows:
        assert [x["status"] for x in r["recipients"]] == ["queued"], r

    # The restarted daemon serves again.
    s = smtplib.SMTP("127.0.0.1", d.port, local_hostname="client.test",
                     timeout=10 * scale())
    s.ehlo()
    s.mail("after@x.test")
    s.rcpt("after@y.test")
    code, text = s.data(b"Subject: after restart\r\n\r\nok\r\n")
    assert code == 250 and QUEUED_TEXT.match(text), (code, text)
    assert int(QUEUED_TEXT.match(text).group(1)) not in stored
    s.quit()
