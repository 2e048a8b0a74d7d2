"""The `redrive` command against a store it did not write, daemon not running.

Each test builds a store with Python's sqlite3 module: the schema is taken
at test time from the C string literals of core/store_schema.c (the CLI
never migrates, so it cannot create one), user_version is set to the number
of migrations, and known rows are inserted.  Then build/redrive is run
(REDRIVE_BUILD names the build directory; default ../../build from this
file) and its output, types and exit codes are checked against the promises
of DESIGN.md ("The CLI"): 0 ok, 1 not found or failed, 2 usage.
"""

import calendar
import hashlib
import json
import os
import pathlib
import re
import sqlite3
import subprocess
import time

import pytest

from conftest import SCALE, VALGRIND, VALGRIND_CMD

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent.parent
BUILD = pathlib.Path(os.environ.get("REDRIVE_BUILD", str(ROOT / "build")))
REDRIVE = BUILD / "redrive"
SCHEMA_C = ROOT / "core" / "store_schema.c"

LOG_KEYS = {
    "id", "received_at", "from", "subject", "message_id", "mailgun_id",
    "size", "status", "attempts", "recipients",
}
RCPT_KEYS = {"address", "status", "attempts", "reason", "next_attempt_at"}
SHOW_EXTRA_KEYS = {"helo", "client_addr", "auth_user", "sends", "events"}
SEND_KEYS = {"at", "recipients", "mailgun_id", "via", "result"}
EVENT_KEYS = {
    "at", "recipient", "event", "severity", "reason", "code", "message",
    "mailgun_id",
}

BODY1 = (b"Received: from app.local (localhost [127.0.0.1])\r\n"
         b"Subject: Invoice 1\r\n"
         b"Message-ID: <inv1@example.com>\r\n\r\n"
         b"hello\r\n..leading dot kept\r\n\x00\xff\xfe 8-bit\r\n")


def ms(text):
    """RFC 3339 UTC ("2026-11-28T00:31:27Z") to epoch milliseconds."""
    return calendar.timegm(time.strptime(text, "%Y-%m-%dT%H:%M:%SZ")) * 1000


def schema_migrations():
    """The migrations of core/store_schema.c, one SQL text per entry.

    A small C tokenizer over the initializer of store_migrations[]:
    comments are skipped, adjacent string literals concatenate, a comma
    ends a migration.
    """
    src = SCHEMA_C.read_text()
    start = src.index("store_migrations[] = {")
    i = src.index("{", start) + 1
    escapes = {"n": "\n", "t": "\t", "\\": "\\", '"': '"', "'": "'"}
    migrations, cur = [], None
    while True:
        c = src[i]
        if src.startswith("/*", i):
            i = src.index("*/", i) + 2
        elif src.startswith("//", i):
            i = src.index("\n", i)
        elif c == '"':
            i += 1
            out = []
            while src[i] != '"':
                if src[i] == "\\":
                    out.append(escapes[src[i + 1]])
                    i += 2
                else:
                    out.append(src[i])
                    i += 1
            i += 1
            cur = (cur or "") + "".join(out)
        elif c in ",}":
            if cur is not None:
                migrations.append(cur)
                cur = None
            if c == "}":
                break
            i += 1
        elif c.isspace():
            i += 1
        else:
            raise AssertionError("unexpected %r in store_migrations[]" % c)
    assert migrations, "no migrations found in store_schema.c"
    return migrations


MIGRATIONS = schema_migrations()


def new_store(path, version=None):
    db = sqlite3.connect(str(path))
    db.execute("PRAGMA journal_mode=WAL")
    for sql in MIGRATIONS:
        db.executescript(sql)
    db.execute("PRAGMA user_version=%d"
               % (len(MIGRATIONS) if version is None else version))
    db.commit()
    return db


def add_message(db, mid, received, mail_from, subject=None, message_id=None,
                mailgun_id=None, size=100, helo="app.local",
                client_addr="127.0.0.1", auth_user=None):
    db.execute(
        "INSERT INTO messages (id, received_at, mail_from, helo, client_addr,"
        " auth_user, subject, message_id, size, mailgun_id)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (mid, received, mail_from, helo, client_addr, auth_user, subject,
         message_id, size, mailgun_id))


def add_rcpt(db, rid, mid, address, status, attempts=0, reason=None,
             last_error=None, mailgun_id=None, next_attempt_at=None):
    db.execute(
        "INSERT INTO recipients (id, message_id, address, status, attempts,"
        " reason, last_error, mailgun_id, next_attempt_at, updated_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 1)",
        (rid, mid, address, status, attempts, reason, last_error, mailgun_id,
         next_attempt_at))


T1 = "2026-11-28T00:31:27Z"
T2 = "2026-11-28T01:00:00Z"
T3 = "2026-11-28T02:00:00Z"
T4 = "2026-11-28T03:00:00Z"
NEXT2 = "2026-11-28T05:16:00Z"
MG1 = "20261128003127.1.ABCDEF@mg.example.com"


@pytest.fixture
def store(tmp_path):
    """A store with four messages, one of each interesting shape.

    1: failed (bob delivered, carol bounced), two sends, three events,
       a body with CRLF, dots, NUL and 8-bit bytes.
    2: retrying, from the null sender, a subject with a Latin-1 byte and
       an ANSI escape; its body was purged.
    3: queued to three recipients, no subject, no Message-ID.
    4: delivered, a UTF-8 subject with a right-to-left override.
    """
    path = tmp_path / "redrive.db"
    db = new_store(path)
    add_message(db, 1, ms(T1), "app@example.com", "Invoice 1",
                "inv1@example.com", MG1, size=len(BODY1))
    add_rcpt(db, 1, 1, "bob@example.org", "delivered", 1, mailgun_id=MG1)
    add_rcpt(db, 2, 1, "carol@example.net", "failed", 2, "bounce",
             "550 5.1.1 mailbox unknown", MG1)
    db.execute("INSERT INTO bodies (message_id, data) VALUES (1, ?)",
               (BODY1,))
    db.execute(
        "INSERT INTO attempts (id, message_id, at, via, http_status,"
        " mailgun_id, result) VALUES (1, 1, ?, 'mime', 200, ?, 'Queued."
        " Thank you.'), (2, 1, ?, 'storage', 200, ?, 'Queued. Thank you.')",
        (ms(T1) + 1000, MG1, ms(T1) + 600000, MG1))
    db.execute("INSERT INTO attempt_rcpts VALUES (1, 1), (1, 2), (2, 2)")
    db.execute(
        "INSERT INTO events (id, message_id, recipient_id, at, received_at,"
        " event, severity, reason, code, enhanced_code, message, mailgun_id)"
        " VALUES"
        " (1, 1, 1, ?, ?, 'delivered', NULL, NULL, 250, '2.0.0', 'OK', ?),"
        " (2, 1, 2, ?, ?, 'failed', 'temporary', 'generic', 421, '4.7.0',"
        "  'try later', ?),"
        " (3, 1, 2, ?, ?, 'failed', 'permanent', 'bounce', 550, '5.1.1',"
        "  'mailbox unknown', ?)",
        (ms(T1) + 5000, ms(T1) + 6000, MG1,
         ms(T1) + 4000, ms(T1) + 7000, MG1,
         ms(T1) + 700000, ms(T1) + 701000, MG1))

    add_message(db, 2, ms(T2), "", None, "<ignored>", None)
    db.execute("UPDATE messages SET subject = CAST(? AS TEXT) WHERE id = 2",
               (b"Caf\xe9 \x1b[31mred",))
    add_rcpt(db, 3, 2, "dave@example.org", "retrying", 1, "old",
             "not delivered in 8 hours", None, ms(NEXT2))

    add_message(db, 3, ms(T3), "noreply@shop.example", None, None, None)
    for rid, addr in ((4, "e@example.org"), (5, "f@example.org"),
                      (6, "g@other.example")):
        add_rcpt(db, rid, 3, addr, "queued")

    add_message(db, 4, ms(T4), "app@example.com",
                "Gr\u00fc\u00dfe \u2713 \u202eevil", "m4@example.com")
    add_rcpt(db, 7, 4, "h@example.org", "delivered", 1)
    db.commit()
    db.close()
    return path


def run(*args, env=None, check_stderr_empty=False):
    """Runs build/redrive with args; returns (code, stdout bytes, stderr)."""
    if not REDRIVE.exists():
        pytest.fail("%s is missing: run `make build/redrive` first" % REDRIVE)
    e = {k: v for k, v in os.environ.items() if k != "REDRIVE_CONFIG"}
    if env:
        e.update(env)
    cmd = [str(REDRIVE)] + [str(a) for a in args]
    if VALGRIND:
        cmd = VALGRIND_CMD + cmd
    p = subprocess.run(cmd, env=e, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=30 * SCALE)
    stderr = p.stderr.decode("utf-8", "replace")
    if VALGRIND:
        assert p.returncode != 99 and \
            not re.search(r"^==\d+== ", stderr, re.M), \
            "valgrind report from %r:\n%s" % (args, stderr)
    if check_stderr_empty:
        assert stderr == ""
    return p.returncode, p.stdout, stderr


def log_json(store, *args):
    code, out, err = run("--db", store, "log", "--json", *args)
    assert code == 0, err
    text = out.decode("utf-8")  # strict: the output must be UTF-8
    return [json.loads(line) for line in text.splitlines()]


def ids(store, *args):
    return [m["id"] for m in log_json(store, *args)]


def test_log_json_fields_and_types(store):
    code, out, err = run("--db", store, "log", "--json",
                         check_stderr_empty=True)
    assert code == 0
    lines = out.decode("utf-8").split("\n")
    assert lines[-1] == ""  # every object ends its own line
    rows = [json.loads(line) for line in lines[:-1]]
    assert [r["id"] for r in rows] == [4, 3, 2, 1]
    for r in rows:
        assert set(r) == LOG_KEYS
        assert type(r["id"]) is int
        assert type(r["size"]) is int
        assert type(r["attempts"]) is int
        assert type(r["received_at"]) is str
        assert type(r["from"]) is str
        assert type(r["recipients"]) is list
        for rc in r["recipients"]:
            assert set(rc) == RCPT_KEYS
            assert type(rc["attempts"]) is int

    m1 = rows[3]
    assert m1 == {
        "id": 1, "received_at": T1, "from": "app@example.com",
        "subject": "Invoice 1", "message_id": "inv1@example.com",
        "mailgun_id": MG1, "size": len(BODY1), "status": "failed",
        "attempts": 2,
        "recipients": [
            {"address": "bob@example.org", "status": "delivered",
             "attempts": 1, "reason": None, "next_attempt_at": None},
            {"address": "carol@example.net", "status": "failed",
             "attempts": 2, "reason": "bounce", "next_attempt_at": None},
        ],
    }
    m2 = rows[2]
    assert m2["from"] == ""
    assert m2["status"] == "retrying"
    assert m2["attempts"] == 0
    assert m2["mailgun_id"] is None
    # An 8-bit byte that is not UTF-8 becomes U+FFFD; ESC stays data.
    assert m2["subject"] == "Caf\ufffd \x1b[31mred"
    assert m2["recipients"] == [
        {"address": "dave@example.org", "status": "retrying", "attempts": 1,
         "reason": None, "next_attempt_at": NEXT2}]
    m3 = rows[1]
    assert m3["subject"] is None and m3["message_id"] is None
    assert m3["status"] == "queued"
    assert [rc["status"] for rc in m3["recipients"]] == ["queued"] * 3
    m4 = rows[0]
    assert m4["status"] == "delivered"
    assert m4["subject"] == "Gr\u00fc\u00dfe \u2713 \u202eevil"
    # UTF-8 is written as is, not as \u escapes; the output is compact.
    assert "Grüße ✓".encode("utf-8") in out
    assert b'{"id":4,' in out


def test_log_filters(store):
    assert ids(store, "--status", "failed") == [1]
    assert ids(store, "--status", "queued,retrying") == [3, 2]
    assert ids(store, "--status", "failed", "--status", "queued") == [3, 1]
    assert ids(store, "--status", "sent,deferred") == []
    assert ids(store, "--to", "CAROL@Example.NET") == [1]
    assert ids(store, "--to", "carol@example") == []
    assert ids(store, "--to", "@example.org") == [4, 3, 2, 1]
    assert ids(store, "--to", "@other.example") == [3]
    assert ids(store, "--to", "@EXAMPLE.net") == [1]
    assert ids(store, "--from", "app@example.com") == [4, 1]
    assert ids(store, "--from", "@shop.example") == [3]
    assert ids(store, "--from", "<>") == [2]
    assert ids(store, "--since", T2) == [4, 3, 2]
    assert ids(store, "--since", "2026-11-28T01:00:01Z") == [4, 3]
    assert ids(store, "--limit", "2") == [4, 3]
    assert ids(store, "--limit", "1", "--status", "failed,retrying") == [2]
    assert ids(store, "--to", "@example.org", "--from", "app@example.com",
               "--since", T1, "--limit", "10") == [4, 1]
    # A duration: everything here is long past "1m" ago... or in the
    # future, depending on today's date; either way the code is 0.
    code, _, err = run("--db", store, "log", "--since", "1m")
    assert code == 0, err


def test_log_default_limit_is_50(tmp_path):
    path = tmp_path / "many.db"
    db = new_store(path)
    for i in range(1, 61):
        add_message(db, i, 1000 * i, "a@x.example", "s%d" % i)
        add_rcpt(db, i, i, "b@y.example", "sent", 1)
    db.commit()
    db.close()
    got = ids(path)
    assert got == list(range(60, 10, -1))
    code, out, _ = run("--db", path, "log")
    assert code == 0
    table = out.decode().splitlines()
    assert len([line for line in table if not line.startswith(" ")]) == 51
    assert ids(path, "--limit", "100") == list(range(60, 0, -1))


def test_log_table(store):
    code, out, err = run("--db", store, "log", check_stderr_empty=True)
    assert code == 0
    assert b"\x1b" not in out  # no raw control characters reach a terminal
    assert "\u202e".encode() not in out
    text = out.decode("utf-8")
    lines = text.splitlines()
    for line in lines:
        assert len(line) <= 100, line
    header = lines[0].split()
    assert header == ["ID", "RECEIVED", "STATUS", "FROM", "SUBJECT", "RCPTS"]
    rows = [line for line in lines[1:] if not line.startswith(" ")]
    assert [r.split()[0] for r in rows] == ["4", "3", "2", "1"]
    r1 = rows[3].split()
    assert r1[1:4] == [T1, "failed", "app@example.com"]
    assert r1[-1] == "2"  # two recipients: a count
    r2 = rows[2]
    assert r2.split()[1:4] == [T2, "retrying", "<>"]
    assert "\\x1b[31m" in r2 or "Caf\\xe9" in r2
    assert r2.rstrip().endswith("dave@example.org")  # one: the address
    assert "Gr\u00fc\u00dfe" in rows[0] and "\\u202e" in rows[0]
    # Recipients that are not delivered, indented, with state and why.
    assert any(line.startswith(" ") and "carol@example.net failed (bounce)"
               in line and "550 5.1.1 mailbox unknown" in line
               for line in lines)
    assert any(line.startswith(" ") and "dave@example.org retrying" in line
               and NEXT2 in line for line in lines)
    assert not any(line.startswith(" ") and "bob@example.org" in line
                   for line in lines)
    assert sum(1 for line in lines
               if line.startswith(" ") and " queued" in line) == 3


def test_log_table_truncates_long_fields(tmp_path):
    path = tmp_path / "long.db"
    db = new_store(path)
    add_message(db, 1, ms(T1), "x" * 200 + "@example.com", "s" * 300)
    add_rcpt(db, 1, 1, "r" * 150 + "@example.org", "failed", 1, "bounce",
             "e" * 500)
    db.commit()
    db.close()
    code, out, _ = run("--db", path, "log")
    assert code == 0
    lines = out.decode().splitlines()
    assert len(lines) == 3
    for line in lines:
        assert len(line) <= 100
    assert "..." in lines[1] and "..." in lines[2]


def test_log_empty_store(tmp_path):
    path = tmp_path / "empty.db"
    new_store(path).close()
    code, out, _ = run("--db", path, "log", "--json")
    assert (code, out) == (0, b"")
    code, out, _ = run("--db", path, "log")
    assert code == 0
    assert b"ID" not in out


def test_show_json(store):
    code, out, err = run("--db", store, "show", "1", "--json",
                         check_stderr_empty=True)
    assert code == 0
    text = out.decode("utf-8")
    assert text.endswith("\n") and text.count("\n") == 1
    m = json.loads(text)
    assert LOG_KEYS | SHOW_EXTRA_KEYS <= set(m)
    # The log's fields, the same values.
    log1 = [r for r in log_json(store) if r["id"] == 1][0]
    for k in LOG_KEYS - {"recipients"}:
        assert m[k] == log1[k], k
    for rc, lrc in zip(m["recipients"], log1["recipients"]):
        assert RCPT_KEYS <= set(rc)
        assert {k: rc[k] for k in RCPT_KEYS} == lrc
    assert m["helo"] == "app.local"
    assert m["client_addr"] == "127.0.0.1"
    assert m["auth_user"] is None

    assert len(m["sends"]) == 2
    for s in m["sends"]:
        assert SEND_KEYS <= set(s)
    assert m["sends"][0]["at"] == "2026-11-28T00:31:28Z"
    assert m["sends"][0]["via"] == "mime"
    assert m["sends"][0]["recipients"] == ["bob@example.org",
                                           "carol@example.net"]
    assert m["sends"][0]["mailgun_id"] == MG1
    assert m["sends"][0]["result"] == "Queued. Thank you."
    assert m["sends"][1]["via"] == "storage"
    assert m["sends"][1]["recipients"] == ["carol@example.net"]

    # Events in the order of their own timestamps, not of arrival.
    assert [e["event"] for e in m["events"]] == ["failed", "delivered",
                                                 "failed"]
    for e in m["events"]:
        assert EVENT_KEYS <= set(e)
        assert type(e["code"]) is int
    last = m["events"][2]
    assert last["recipient"] == "carol@example.net"
    assert last["severity"] == "permanent"
    assert last["reason"] == "bounce"
    assert last["code"] == 550
    assert last["message"] == "mailbox unknown"
    assert last["mailgun_id"] == MG1
    assert m["events"][1]["severity"] is None

    # A message nothing happened to yet: empty lists.
    code, out, _ = run("--db", store, "show", "--json", "3")
    assert code == 0
    m3 = json.loads(out)
    assert m3["sends"] == [] and m3["events"] == []
    assert m3["subject"] is None


def test_show_resolves_ids(store):
    for ident in ("1", "inv1@example.com", "<inv1@example.com>", MG1,
                  "<%s>" % MG1):
        code, out, err = run("--db", store, "show", "--json", ident)
        assert code == 0, (ident, err)
        assert json.loads(out)["id"] == 1, ident
    code, out, _ = run("--db", store, "show", "--json", "m4@example.com")
    assert json.loads(out)["id"] == 4


def test_show_human(store):
    code, out, err = run("--db", store, "show", "1", check_stderr_empty=True)
    assert code == 0
    text = out.decode("utf-8")
    for want in ("Status:", "failed", "carol@example.net", "bounce",
                 "550 5.1.1 mailbox unknown", "Sends:", "Events:", MG1,
                 "Queued. Thank you.", "permanent"):
        assert want in text, want
    code, out, _ = run("--db", store, "show", "2")
    assert code == 0
    assert b"\x1b" not in out
    assert NEXT2.encode() in out
    code, out, _ = run("--db", store, "show", "4")
    assert "\u202e".encode() not in out


def test_show_raw_is_byte_exact(store):
    code, out, err = run("--db", store, "show", "--raw", "1",
                         check_stderr_empty=True)
    assert code == 0
    assert out == BODY1
    code, out, _ = run("--db", store, "show", "<inv1@example.com>", "--raw")
    assert (code, out) == (0, BODY1)


def test_show_raw_purged(store):
    code, out, err = run("--db", store, "show", "--raw", "2")
    assert code == 1
    assert out == b""
    assert "purged" in err


def test_store_is_not_modified(store):
    before = hashlib.sha256(store.read_bytes()).hexdigest()
    for args in (("log",), ("log", "--json"), ("show", "1"),
                 ("show", "--json", "1"), ("show", "--raw", "1"),
                 ("stats",), ("stats", "--json", "--since", "30d")):
        code, _, err = run("--db", store, *args)
        assert code == 0, err
    assert hashlib.sha256(store.read_bytes()).hexdigest() == before


@pytest.mark.parametrize("args", [
    ("log", "--bogus"),
    ("--bogus", "log"),
    ("-x", "log"),
    ("log", "-x"),
    ("frobnicate",),
    (),
    ("log", "--status", "bogus"),
    ("log", "--status", "failed,bogus"),
    ("log", "--status", ""),
    ("log", "--status", "failed,"),
    ("log", "--status", "FAILED"),
    ("log", "--since", "yesterday"),
    ("log", "--since", "15"),
    ("log", "--since", "-5m"),
    ("log", "--since", "2026-13-01T00:00:00Z"),
    ("log", "--limit", "0"),
    ("log", "--limit", "-5"),
    ("log", "--limit", "abc"),
    ("log", "--limit", "10x"),
    ("log", "--limit", "99999999999999999999999"),
    ("log", "--limit"),
    ("log", "--to", ""),
    ("log", "extra"),
    ("show",),
    ("show", "1", "2"),
    ("show", "1", "--json", "--raw"),
    ("show", "--bogus", "1"),
    ("stats", "--bogus"),
    ("tail", "--bogus"),
    ("purge",),
])
def test_usage_errors_exit_2(store, args):
    code, out, err = run("--db", store, *args)
    assert code == 2, (args, err)
    assert out == b""
    assert err.strip() != ""


def test_not_found_and_store_failures_exit_1(store, tmp_path):
    for ident in ("999", "nobody@nowhere.example", "<nobody@nowhere>", "<>"):
        code, out, err = run("--db", store, "show", ident)
        assert code == 1, ident
        assert out == b""
        assert "no message" in err

    missing = tmp_path / "nope" / "redrive.db"
    code, out, err = run("--db", missing, "log")
    assert (code, out) == (1, b"")
    assert "no store at %s" % missing in err
    code, _, err = run("--db", missing, "show", "1")
    assert code == 1
    assert not missing.exists()

    old = tmp_path / "old.db"
    new_store(old, version=0).close()
    code, out, err = run("--db", old, "log")
    assert (code, out) == (1, b"")
    assert "start redrived once" in err

    newer = tmp_path / "newer.db"
    new_store(newer, version=len(MIGRATIONS) + 1).close()
    code, _, err = run("--db", newer, "log")
    assert code == 1
    assert "newer" in err

    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not a database\n" * 100)
    code, _, err = run("--db", junk, "log")
    assert code == 1
    assert str(junk) in err


def test_help_and_version():
    code, out, err = run("--help")
    assert code == 0 and err == ""
    text = out.decode()
    assert text.startswith("usage: redrive")
    assert " log " in text and " show " in text
    for cmd in ("retry", "stats", "tail", "purge"):
        assert " %s " % cmd in text
    for cmd in ("log", "show"):
        code, out, err = run(cmd, "--help")
        assert code == 0 and err == ""
        assert out.decode().startswith("usage: redrive %s" % cmd)
    code, out, _ = run("log", "--help")
    assert b"default 50" in out
    code, out, err = run("--version")
    assert (code, out, err) == (0, b"redrive 0.1.0\n", "")


def test_store_path_from_config(store, tmp_path):
    conf = tmp_path / "redrive.conf"
    conf.write_text("[store]\npath = %s\n" % store)
    code, out, err = run("-c", conf, "log", "--json")
    assert code == 0, err
    assert len(out.splitlines()) == 4
    code, out, err = run("--config", conf, "show", "--json", "1")
    assert code == 0, err
    code, out, err = run("log", "--json", env={"REDRIVE_CONFIG": str(conf)})
    assert code == 0, err
    assert len(out.splitlines()) == 4
    # -c wins over the environment.
    other = tmp_path / "other.conf"
    other.write_text("[store]\npath = %s\n" % (tmp_path / "none.db"))
    code, _, err = run("-c", conf, "log", env={"REDRIVE_CONFIG": str(other)})
    assert code == 0, err
    code, _, err = run("log", env={"REDRIVE_CONFIG": str(other)})
    assert code == 1
    assert "no store at" in err
    # --db wins over the config, which is then not even read.
    code, _, err = run("-c", tmp_path / "absent.conf", "--db", store, "log")
    assert code == 0, err
    # A config named but missing is a failure.
    code, out, err = run("-c", tmp_path / "absent.conf", "log")
    assert (code, out) == (1, b"")
    assert "absent.conf" in err
