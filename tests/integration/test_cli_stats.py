"""`redrive stats`, `redrive tail`, `redrive purge` and the daemon's
[store] retention (issue 5, DESIGN.md "The CLI", docs/cli.md).

stats: a known traffic mix sent through the real daemon to the Mailgun
simulator (delivered, a blocked IP re-driven through the storage URL and
then delivered, a hard bounce), and a store built by SQL with every state,
checked number by number.  tail: events inserted with sqlite3 while it
runs show up on its stdout, one line each, only the new ones (or the
older ones first with --since); SIGINT and SIGTERM end it with 0, a store
that goes away with 1.  purge and retention: exactly the finished messages
received before the cut-off go, with every dependent row; unfinished and
newer ones stay."""

import json
import os
import queue
import signal
import sqlite3
import subprocess
import threading
import time

import pytest

from conftest import BUILD, SANITIZER_MARKS, SCALE
from mailgun_fixtures import DOMAIN  # noqa: F401
from test_cli_offline import add_message, add_rcpt, new_store, run
from tracker_fixtures import tracker, tracker_sim, wait_until  # noqa: F401

STATES = ["queued", "sent", "deferred", "retrying", "delivered", "failed"]
STATS_KEYS = {"since", "messages", "recipients", "delivery_rate",
              "redrive_success_rate", "top_reasons", "top_domains"}
TAIL_KEYS = {"id", "message_id", "at", "recipient", "event", "severity",
             "reason", "code", "enhanced_code", "message", "mailgun_id"}
HOUR = 3600 * 1000


def now_ms():
    return int(time.time() * 1000)


def stats_json(store, *args):
    code, out, err = run("--db", store, "stats", "--json", *args)
    assert code == 0, err
    lines = out.decode("utf-8").splitlines()
    assert len(lines) == 1, out
    obj = json.loads(lines[0])
    assert set(obj) == STATS_KEYS, obj
    assert list(obj["recipients"]) == STATES, obj
    return obj


# ---- stats ----------------------------------------------------------------------

def test_stats_traffic_mix(tracker):
    """Four recipients through the daemon and the simulator: two delivered,
    one blocked (espblock) then re-driven through the storage URL and
    delivered, one hard bounce."""
    t = tracker()
    rules = {
        "blocked@b.example": "fail-then-deliver:1",
        "hard@b.example": "fail-permanent:code=550,enhanced=5.1.1,"
                          "reason=bounce",
    }
    t.sim.rules(rules)
    mid = t.send(["ok1@a.example", "ok2@A.example", "blocked@b.example",
                  "hard@b.example"])
    for a in ("ok1@a.example", "ok2@A.example", "blocked@b.example"):
        t.wait_rcpt(mid, a, "delivered", timeout=15)
    t.wait_rcpt(mid, "hard@b.example", "failed")

    obj = stats_json(t.d.store, "--since", "1h")
    assert obj["messages"] == 1, obj
    assert obj["recipients"] == {"queued": 0, "sent": 0, "deferred": 0,
                                 "retrying": 0, "delivered": 3,
                                 "failed": 1}, obj
    assert obj["delivery_rate"] == pytest.approx(0.75), obj
    # blocked@ was re-driven (a storage send) and delivered; hard@ was not.
    assert obj["redrive_success_rate"] == pytest.approx(1.0), obj
    assert obj["top_reasons"] == [{"name": "bounce", "count": 1},
                                  {"name": "espblock", "count": 1}], obj
    assert obj["top_domains"] == [{"name": "a.example", "count": 2},
                                  {"name": "b.example", "count": 2}], obj
    since = time.strptime(obj["since"], "%Y-%m-%dT%H:%M:%SZ")
    assert abs(time.mktime(since) - time.mktime(
        time.gmtime(time.time() - 3600))) < 120, obj

    # Out of the window: nothing, rates null.
    code, out, err = run("--db", t.d.store, "stats", "--json", "--since",
                         "2999-01-01T00:00:00Z")
    assert code == 0, err
    empty = json.loads(out)
    assert empty["messages"] == 0 and empty["top_reasons"] == []
    assert empty["delivery_rate"] is None
    assert empty["redrive_success_rate"] is None
    assert set(empty["recipients"].values()) == {0}

    code, out, err = run("--db", t.d.store, "stats")
    assert code == 0, err
    text = out.decode()
    for want in ("Messages:", "delivered", "Delivery rate:", "75.0%",
                 "Re-drive success rate:", "100.0% (1 of 1)", "bounce",
                 "espblock", "a.example"):
        assert want in text, text


@pytest.fixture
def mixed_store(tmp_path):
    """Every state, two windows: message 1 is 3 days old, 2..4 are new."""
    path = tmp_path / "redrive.db"
    db = new_store(path)
    now = now_ms()
    add_message(db, 1, now - 72 * HOUR, "a@s")
    add_rcpt(db, 1, 1, "old@old.example", "delivered", 1)
    add_message(db, 2, now - HOUR, "a@s")
    add_rcpt(db, 2, 2, "q@x.example", "queued")
    add_rcpt(db, 3, 2, "s@x.example", "sent", 1)
    add_rcpt(db, 4, 2, "d@y.example", "deferred", 1)
    add_message(db, 3, now - HOUR, "a@s")
    add_rcpt(db, 5, 3, "r@y.example", "retrying", 1, "old")
    add_rcpt(db, 6, 3, "ok@y.example", "delivered", 2)
    add_rcpt(db, 7, 3, "f@z.example", "failed", 3,
             "gave up after 3 sends: espblock: 554 blocked")
    add_message(db, 4, now - HOUR, "a@s")
    add_rcpt(db, 8, 4, "api@z.example", "failed", 0, "400 bad address")
    db.execute(
        "INSERT INTO events (message_id, recipient_id, at, received_at,"
        " event, severity, reason, code) VALUES"
        " (3, 7, ?1, ?1, 'failed', 'permanent', 'espblock', 554),"
        " (3, 7, ?1, ?1, 'failed', 'permanent', 'espblock', 554),"
        " (3, 5, ?1, ?1, 'failed', 'temporary', 'old', NULL),"
        " (2, 4, ?1, ?1, 'failed', 'temporary', 'generic', 421)",
        (now - HOUR + 1000,))
    db.commit()
    db.close()
    return path


def test_stats_every_state(mixed_store):
    obj = stats_json(mixed_store)  # default: the last 24 hours
    assert obj["messages"] == 3
    assert obj["recipients"] == {"queued": 1, "sent": 1, "deferred": 1,
                                 "retrying": 1, "delivered": 1, "failed": 2}
    assert obj["delivery_rate"] == pytest.approx(1 / 3)
    # ok@ (2 sends) delivered, f@ (3 sends) failed; r@ is not final.
    assert obj["redrive_success_rate"] == pytest.approx(0.5)
    assert obj["top_reasons"] == [
        {"name": "espblock", "count": 2},
        {"name": "400 bad address", "count": 1},
        {"name": "old", "count": 1},
    ]
    assert obj["top_domains"] == [
        {"name": "y.example", "count": 3},
        {"name": "x.example", "count": 2},
        {"name": "z.example", "count": 2},
    ]
    every = stats_json(mixed_store, "--since", "7d")
    assert every["messages"] == 4
    assert every["recipients"]["delivered"] == 2
    assert every["delivery_rate"] == pytest.approx(0.5)
    assert {"name": "old.example", "count": 1} in every["top_domains"]


@pytest.mark.parametrize("args", [
    ("stats", "--since", "yesterday"),
    ("stats", "--since"),
    ("stats", "extra"),
    ("stats", "--bogus"),
    ("tail", "--since", "-1h"),
    ("tail", "extra"),
    ("purge",),
    ("purge", "--older-than", "soon"),
    ("purge", "--older-than", "7d", "extra"),
])
def test_usage_errors(mixed_store, args):
    code, out, err = run("--db", mixed_store, *args)
    assert code == 2, (args, err)
    assert out == b""
    assert err.startswith("redrive: ")


def test_help():
    for cmd in ("stats", "tail", "purge"):
        code, out, err = run(cmd, "--help")
        assert code == 0 and err == ""
        assert out.decode().startswith("usage: redrive %s" % cmd)
    code, out, _ = run("--help")
    for cmd in ("stats", "tail", "purge"):
        assert "  %s " % cmd in out.decode()


# ---- tail -----------------------------------------------------------------------

class Tail:
    """`redrive tail` as a process whose stdout lines arrive in a queue."""

    def __init__(self, store, *args):
        env = {k: v for k, v in os.environ.items() if k != "REDRIVE_CONFIG"}
        self.p = subprocess.Popen(
            [os.path.join(BUILD, "redrive"), "--db", str(store), "tail"] +
            list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=env)
        self.lines = queue.Queue()
        self.t = threading.Thread(target=self._read, daemon=True)
        self.t.start()

    def _read(self):
        for ln in self.p.stdout:
            self.lines.put(ln.decode("utf-8"))

    def line(self, timeout=5.0):
        try:
            return self.lines.get(timeout=timeout * SCALE)
        except queue.Empty:
            pytest.fail("redrive tail printed nothing within %.1fs" %
                        (timeout * SCALE))

    def none(self, wait=0.8):
        try:
            ln = self.lines.get(timeout=wait)
        except queue.Empty:
            return
        pytest.fail("redrive tail printed %r" % ln)

    def stop(self, sig=signal.SIGINT):
        if self.p.poll() is None:
            self.p.send_signal(sig)
        try:
            rc = self.p.wait(10 * SCALE)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()
            pytest.fail("redrive tail did not stop")
        self.t.join(5)
        return rc

    def stderr(self):
        err = self.p.stderr.read().decode("utf-8", "replace")
        for mark in SANITIZER_MARKS:
            assert mark not in err, "sanitizer report from tail:\n" + err
        return err


def add_event(path, mid, rid, event, severity=None, reason=None, code=None,
              message=None, mailgun_id=None):
    """Commits one event through a connection of its own, as the daemon
    would; returns its id."""
    db = sqlite3.connect(str(path), timeout=10)
    now = now_ms()
    cur = db.execute(
        "INSERT INTO events (message_id, recipient_id, at, received_at,"
        " event, severity, reason, code, enhanced_code, message,"
        " mailgun_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL, ?, ?)",
        (mid, rid, now - 500, now, event, severity, reason, code, message,
         mailgun_id))
    db.commit()
    eid = cur.lastrowid
    db.close()
    return eid


def test_tail_follows_new_events(mixed_store):
    first = add_event(mixed_store, 2, 3, "accepted")
    tail = Tail(mixed_store, "--json")
    try:
        time.sleep(1.0 * SCALE)  # it has read the highest id by now
        tail.none(0.3)
        e1 = add_event(mixed_store, 2, 3, "delivered", code=250,
                       message="OK", mailgun_id="mg1@x")
        obj = json.loads(tail.line())
        assert set(obj) == TAIL_KEYS, obj
        assert obj["id"] == e1 and e1 > first
        assert obj["message_id"] == 2
        assert obj["recipient"] == "s@x.example"
        assert obj["event"] == "delivered" and obj["code"] == 250
        assert obj["message"] == "OK" and obj["mailgun_id"] == "mg1@x"
        assert obj["severity"] is None and obj["reason"] is None
        e2 = add_event(mixed_store, 3, 7, "failed", "permanent", "bounce",
                       550, "no such user")
        e3 = add_event(mixed_store, 3, None, "opened")
        got = [json.loads(tail.line()), json.loads(tail.line())]
        assert [g["id"] for g in got] == [e2, e3]
        assert got[0]["reason"] == "bounce" and got[0]["code"] == 550
        assert got[1]["recipient"] is None
        tail.none()
    finally:
        rc = tail.stop(signal.SIGINT)
    err = tail.stderr()
    assert rc == 0, err
    assert err == ""


def test_tail_human_since_and_sigterm(mixed_store):
    old = add_event(mixed_store, 3, 7, "failed", "permanent", "espblock",
                    554, "blocked\x1b[31m")
    tail = Tail(mixed_store, "--since", "1m")
    try:
        ln = tail.line()
        assert "f@z.example" in ln and "failed" in ln, ln
        assert "permanent/espblock" in ln and " 554" in ln, ln
        assert "\\x1b[31m" in ln and "\x1b" not in ln, ln
        assert ln.endswith("\n") and ln.count("\n") == 1
        assert "%-6d" % 3 in ln or " 3 " in ln, ln
        tail.none(0.5)
        add_event(mixed_store, 2, 4, "delivered", code=250)
        ln = tail.line()
        assert "d@y.example" in ln and "delivered" in ln, ln
    finally:
        rc = tail.stop(signal.SIGTERM)
    assert rc == 0, tail.stderr()
    assert old > 0


def test_tail_store_gone_exits_1(mixed_store):
    tail = Tail(mixed_store)
    time.sleep(0.5 * SCALE)
    for suffix in ("", "-wal", "-shm"):
        try:
            os.unlink(str(mixed_store) + suffix)
        except FileNotFoundError:
            pass
    try:
        rc = tail.p.wait(10 * SCALE)
    except subprocess.TimeoutExpired:
        tail.stop()
        pytest.fail("redrive tail kept running without its store")
    assert rc == 1
    assert "redrive: " in tail.stderr()


def test_tail_missing_store(tmp_path):
    code, out, err = run("--db", tmp_path / "none.db", "tail")
    assert (code, out) == (1, b"")
    assert "no store at" in err


# ---- purge and retention -------------------------------------------------------

def build_purge_mix(db, now, old_ms):
    """1 finished old (delivered + failed, with sends, events, a body),
    2 unfinished old (one recipient retrying), 3 finished new, 4 queued
    old, 5 finished old with one failed recipient only, 99999 the newest
    (queued now).  Purge always keeps the message with the highest id and
    that of the newest event (SQLite would reuse their ids): 99999 and 3
    here."""
    add_message(db, 1, now - old_ms, "a@s")
    add_rcpt(db, 1, 1, "d@x.example", "delivered", 1)
    add_rcpt(db, 2, 1, "f@x.example", "failed", 1, "bounce")
    db.execute("UPDATE messages SET finished_at = ? WHERE id = 1", (now,))
    add_message(db, 2, now - old_ms, "a@s")
    add_rcpt(db, 3, 2, "d2@x.example", "delivered", 1)
    add_rcpt(db, 4, 2, "r@x.example", "retrying", 1, "old")
    add_message(db, 3, now - 60 * 1000, "a@s")
    add_rcpt(db, 5, 3, "n@x.example", "delivered", 1)
    db.execute("UPDATE messages SET finished_at = ? WHERE id = 3", (now,))
    add_message(db, 4, now - old_ms, "a@s")
    add_rcpt(db, 6, 4, "q@x.example", "queued")
    add_message(db, 5, now - old_ms - 1000, "a@s")
    add_rcpt(db, 7, 5, "f5@x.example", "failed", 1, "bounce")
    db.execute("UPDATE messages SET finished_at = ? WHERE id = 5", (now,))
    for mid in (1, 2, 3, 4, 5):
        db.execute("INSERT INTO bodies (message_id, data) VALUES (?, ?)",
                   (mid, b"x" * 10))
        db.execute("INSERT INTO attempts (id, message_id, at, via,"
                   " http_status, mailgun_id) VALUES (?, ?, ?, 'mime', 200,"
                   " ?)", (mid, mid, now - old_ms, "mg%d" % mid))
    db.execute("INSERT INTO attempt_rcpts VALUES (1, 1), (1, 2), (2, 3),"
               " (2, 4), (3, 5), (5, 7)")
    db.execute(
        "INSERT INTO events (message_id, recipient_id, at, received_at,"
        " event) VALUES (1, 1, ?1, ?1, 'delivered'), (1, 2, ?1, ?1,"
        " 'failed'), (2, 3, ?1, ?1, 'delivered'), (5, 7, ?1, ?1,"
        " 'failed'), (3, 5, ?1, ?1, 'delivered')", (now - old_ms,))
    add_message(db, 99999, now, "a@s")
    add_rcpt(db, 99999, 99999, "last@x.example", "queued")
    db.execute("INSERT INTO webhook_tokens (token, digest, at) VALUES"
               " ('t-old', 'd', ?), ('t-new', 'd', ?)",
               (now - old_ms, now))


def left(path):
    db = sqlite3.connect(str(path))
    try:
        out = {}
        for table, col in (("messages", "id"), ("bodies", "message_id"),
                           ("recipients", "message_id"),
                           ("attempts", "message_id"),
                           ("events", "message_id")):
            out[table] = sorted({r[0] for r in db.execute(
                "SELECT %s FROM %s" % (col, table))})
        out["attempt_rcpts"] = sorted(r[0] for r in db.execute(
            "SELECT attempt_id FROM attempt_rcpts"))
        out["tokens"] = sorted(r[0] for r in db.execute(
            "SELECT token FROM webhook_tokens"))
        return out
    finally:
        db.close()


def test_purge_removes_exactly_the_finished_old(tmp_path):
    path = tmp_path / "redrive.db"
    db = new_store(path)
    build_purge_mix(db, now_ms(), 10 * 24 * HOUR)
    db.commit()
    db.close()
    code, out, err = run("--db", path, "purge", "--older-than", "7d")
    assert code == 0, err
    assert out == b"purged 2 finished messages and 1 webhook token\n"
    got = left(path)
    assert got["messages"] == [2, 3, 4, 99999]
    assert got["bodies"] == [2, 3, 4]
    assert got["recipients"] == [2, 3, 4, 99999]
    assert got["attempts"] == [2, 3, 4]
    assert got["events"] == [2, 3]
    assert got["attempt_rcpts"] == [2, 2, 3]
    assert got["tokens"] == ["t-new"]
    # Nothing more to do; a write that is refused on a missing store.
    code, out, err = run("--db", path, "purge", "--older-than", "7d")
    assert (code, out) == (0, b"purged 0 finished messages and 0 webhook "
                              b"tokens\n"), err
    code, out, err = run("--db", tmp_path / "none.db", "purge",
                         "--older-than", "7d")
    assert (code, out) == (1, b"")
    assert not (tmp_path / "none.db").exists()


def test_purge_while_the_daemon_runs(daemon):
    """The daemon keeps its store open and accepts mail during a purge."""
    d = daemon()
    db = sqlite3.connect(d.store, timeout=10)
    build_purge_mix(db, now_ms(), 10 * 24 * HOUR)
    db.commit()
    db.close()
    rc, out, err = d.cli("purge", "--older-than", "7d")
    assert rc == 0, err
    assert out == b"purged 2 finished messages and 1 webhook token\n"
    s = d.smtp()
    try:
        s.sendmail("app@example.com", ["new@x.example"],
                   b"Subject: after purge\r\n\r\nhi\r\n")
    finally:
        s.quit()
    ids = sorted(m["id"] for m in d.log_json())
    assert ids == [2, 3, 4, 99999, 100000], ids


def test_purge_tokens_keep_two_days(tmp_path):
    """A webhook signed up to a window (24 h) ahead of its arrival stays
    fresh until two windows after it: its token is kept that long."""
    path = tmp_path / "redrive.db"
    db = new_store(path)
    now = now_ms()
    db.execute("INSERT INTO webhook_tokens (token, digest, at) VALUES"
               " ('t2h', 'd', ?), ('t25h', 'd', ?), ('t49h', 'd', ?)",
               (now - 2 * HOUR, now - 25 * HOUR, now - 49 * HOUR))
    db.commit()
    db.close()
    code, out, err = run("--db", path, "purge", "--older-than", "1h")
    assert code == 0, err
    assert left(path)["tokens"] == ["t25h", "t2h"]


def test_retention_in_the_daemon(daemon):
    """[store] retention = 1h: at start the daemon deletes the finished
    messages received more than an hour ago, in batches, and nothing
    else; one info line says how many."""
    d = daemon({"store": {"retention": "1h"}})
    d.stop()
    now = now_ms()
    db = sqlite3.connect(d.store)
    build_purge_mix(db, now, 2 * HOUR)
    # Tokens: kept for twice the timestamp window (24 h by default).
    db.execute("INSERT INTO webhook_tokens (token, digest, at) VALUES"
               " ('t30h', 'd', ?), ('t50h', 'd', ?)",
               (now - 30 * HOUR, now - 50 * HOUR))
    # Enough finished old messages for three batches of 500.
    db.execute(
        "WITH RECURSIVE k(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM k"
        " WHERE i < 1100) INSERT INTO messages (id, received_at,"
        " mail_from, size, finished_at) SELECT 1000 + i, ?, 'a@s', 1, ?"
        " FROM k", (now - 3 * HOUR, now))
    db.execute("INSERT INTO recipients (message_id, address, status,"
               " updated_at) SELECT id, 'x@y.example', 'delivered', 1"
               " FROM messages WHERE id > 1000 AND id < 99999")
    db.commit()
    db.close()
    d.start()
    wait_until(lambda: "retention: purged" in d.log(), 10,
               lambda: "the retention line; log:\n" + d.log())
    lines = [ln for ln in d.log().splitlines() if "retention: purged" in ln]
    assert len(lines) == 1, lines
    assert "level=info" in lines[0] and " messages=1102 " in lines[0], lines
    got = left(d.store)
    assert got["messages"] == [2, 3, 4, 99999]
    assert got["recipients"] == [2, 3, 4, 99999]
    assert got["events"] == [2, 3]
    assert got["bodies"] == [2, 3, 4]
    # Tokens are kept for twice the tracker's timestamp window.
    assert got["tokens"] == ["t-new", "t-old", "t30h"]
    d.stop()
    # The next start finds nothing more: no second line.
    d.start()
    time.sleep(0.5 * SCALE)
    d.stop()
    assert "retention: purged" not in d.log()
