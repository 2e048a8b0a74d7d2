"""When the store cannot commit, the client hears 451 and keeps its message
(DESIGN.md promise 1); the daemon keeps serving and stores the next one
once the store is usable again.  The store is made unusable the way it
happens in production: another process holds its write lock."""

import sqlite3
import time

from smtputil import CRLF


def send(d, subject):
    r = d.raw(timeout=15.0)
    r.ehlo()
    assert r.cmd(b"MAIL FROM:<a@example.com>").startswith("250 ")
    assert r.cmd(b"RCPT TO:<b@example.net>").startswith("250 ")
    assert r.cmd(b"DATA").startswith("354 ")
    t = time.monotonic()
    r.send(b"Subject: " + subject + CRLF + CRLF + b"body" + CRLF)
    reply = r.cmd(b".")
    took = time.monotonic() - t
    r.cmd(b"QUIT")
    return reply, took


def test_store_locked_gives_451_then_recovers(daemon):
    d = daemon(allow_errors=True)
    lock = sqlite3.connect(d.store, isolation_level=None, timeout=10)
    lock.execute("BEGIN EXCLUSIVE")
    try:
        reply, took = send(d, b"while locked")
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    assert reply.startswith("451 4.3.0 "), reply
    # The store waited for its busy timeout before giving up.
    assert took >= 4.0, took
    assert d.log_json() == []
    assert "store commit failed" in d.log()

    reply, _ = send(d, b"after unlock")
    assert reply.startswith("250 2.0.0 Ok: queued as "), reply
    rows = d.log_json()
    assert len(rows) == 1 and rows[0]["subject"] == "after unlock"
