"""`redrive retry ID [--recipient ADDR]` against a store it did not write.

The store is built the way test_cli_offline.py builds one (the schema from
core/store_schema.c, rows inserted with Python's sqlite3), then
build/redrive retry is run and the rows it changed are read back: a
retrying recipient gets next_attempt_at = now, a failed one becomes
retrying due now (its reason cleared, the message no longer finished), a
queued one is due now; sent, deferred and delivered ones are left alone.
Exit codes: 0 something was made due, 1 nothing was / unknown ID or
recipient, 2 usage.  The daemon picking the change up is tested with the
daemon (tests/unit/test_redrive.c drives the scheduler itself).
"""

import time

import pytest

from test_cli_offline import add_message, add_rcpt, ms, new_store, run

T1 = "2026-11-28T00:31:27Z"
LATER = ms("2030-01-01T00:00:00Z")
MG1 = "20261128003127.1.ABCDEF@mg.example.com"


@pytest.fixture
def store(tmp_path):
    path = tmp_path / "redrive.db"
    db = new_store(path)
    add_message(db, 1, ms(T1), "app@example.com", subject="one",
                message_id="one@example.com", mailgun_id=MG1)
    add_rcpt(db, 1, 1, "bob@example.org", "failed", 1,
             "bounce: 550 5.1.1 No such user",
             "bounce: 550 5.1.1 No such user", MG1)
    add_rcpt(db, 2, 1, "carol@example.org", "delivered", 1, mailgun_id=MG1)
    add_rcpt(db, 3, 1, "dave@example.org", "retrying", 1, None,
             "old: Too old", MG1, LATER)
    db.execute("UPDATE messages SET finished_at = ? WHERE id = 1",
               (ms(T1) + 1000,))
    add_message(db, 2, ms(T1), "app@example.com", subject="two")
    add_rcpt(db, 4, 2, "erin@example.org", "sent", 1)
    add_rcpt(db, 5, 2, "frank@example.org", "deferred", 1)
    add_message(db, 3, ms(T1), "app@example.com", subject="three")
    add_rcpt(db, 6, 3, "gina@example.org", "queued", 0, None,
             "503 busy", None, LATER)
    db.commit()
    db.close()
    return path


def rcpt(store, rid):
    import sqlite3

    db = sqlite3.connect(str(store))
    try:
        return db.execute(
            "SELECT status, reason, last_error, next_attempt_at"
            " FROM recipients WHERE id = ?", (rid,)).fetchone()
    finally:
        db.close()


def finished_at(store, mid):
    import sqlite3

    db = sqlite3.connect(str(store))
    try:
        return db.execute("SELECT finished_at FROM messages WHERE id = ?",
                          (mid,)).fetchone()[0]
    finally:
        db.close()


def test_retry_one_recipient(store):
    before = int(time.time() * 1000)
    code, out, err = run("--db", store, "retry", "1", "--recipient",
                         "BOB@example.org", check_stderr_empty=True)
    after = int(time.time() * 1000)
    assert code == 0
    assert out == b"message 1: bob@example.org due now (was failed)\n"
    status, reason, last_error, nxt = rcpt(store, 1)
    assert (status, reason) == ("retrying", None)
    assert last_error == "bounce: 550 5.1.1 No such user"
    assert before <= nxt <= after
    assert finished_at(store, 1) is None
    # dave was not named: untouched.
    assert rcpt(store, 3) == ("retrying", None, "old: Too old", LATER)


def test_retry_whole_message(store):
    code, out, err = run("--db", store, "retry", "<one@example.com>",
                         check_stderr_empty=True)
    assert code == 0
    assert out.decode().splitlines() == [
        "message 1: bob@example.org due now (was failed)",
        "message 1: dave@example.org due now (was retrying)",
    ]
    assert rcpt(store, 2)[0] == "delivered"
    assert rcpt(store, 3)[3] < LATER
    # By the Mailgun id too, and a queued recipient.
    code, out, _ = run("--db", store, "retry", "3")
    assert code == 0
    assert out == b"message 3: gina@example.org due now (was queued)\n"
    assert rcpt(store, 6)[0] == "queued"
    assert rcpt(store, 6)[3] < LATER
    code, out, _ = run("--db", store, "retry", MG1, "--recipient",
                       "dave@example.org")
    assert code == 0


def test_nothing_to_retry_exits_1(store):
    code, out, err = run("--db", store, "retry", "2")
    assert code == 1
    assert out == b""
    assert err.splitlines() == [
        "redrive: nothing to retry: erin@example.org is sent",
        "redrive: nothing to retry: frank@example.org is deferred",
    ]
    code, out, err = run("--db", store, "retry", "1", "--recipient",
                         "carol@example.org")
    assert (code, out) == (1, b"")
    assert err == "redrive: nothing to retry: carol@example.org is delivered\n"
    assert rcpt(store, 4)[0] == "sent"


def test_unknown_id_or_recipient_exits_1(store):
    code, out, err = run("--db", store, "retry", "999")
    assert (code, out) == (1, b"")
    assert "no message matches '999'" in err
    code, out, err = run("--db", store, "retry", "1", "--recipient",
                         "nobody@example.org")
    assert (code, out) == (1, b"")
    assert err == "redrive: message 1 has no recipient nobody@example.org\n"


@pytest.mark.parametrize("args", [
    ("retry",),
    ("retry", "1", "2"),
    ("retry", "1", "--recipient"),
    ("retry", "1", "--recipient", ""),
    ("retry", "--bogus", "1"),
])
def test_retry_usage_exits_2(store, args):
    code, out, err = run("--db", store, *args)
    assert code == 2, (args, err)
    assert out == b""
    assert "retry" in err
    assert rcpt(store, 1)[0] == "failed"


def test_retry_help():
    code, out, err = run("retry", "--help")
    assert code == 0 and err == ""
    assert out.decode().startswith("usage: redrive retry ID [--recipient "
                                   "ADDR]")
    code, out, _ = run("--help")
    assert b"retry ID [--recipient ADDR]" in out


def test_retry_missing_store(tmp_path):
    missing = tmp_path / "nope.db"
    code, out, err = run("--db", missing, "retry", "1")
    assert (code, out) == (1, b"")
    assert "no store at" in err
    assert not missing.exists()
