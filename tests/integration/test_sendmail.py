"""redrive-sendmail: a sendmail-compatible command submitting to the real
daemon.  Each test pipes a message into build/redrive-sendmail with -C
naming the daemon's config, then reads what the store holds with `redrive
log --json` and `redrive show --raw`.  Exit codes are sysexits.h's."""

import getpass
import os
import re
import socket
import subprocess
import threading

from conftest import (BUILD, SANITIZER_MARKS, SCALE, VALGRIND, VALGRIND_CMD,
                      free_port)
from smtputil import split_received

SENDMAIL = os.path.join(BUILD, "redrive-sendmail")
EX_USAGE, EX_DATAERR, EX_UNAVAILABLE, EX_TEMPFAIL, EX_PROTOCOL = \
    64, 65, 69, 75, 76


def run(args, data, conf=None, env_extra=None):
    cmd = [SENDMAIL]
    if VALGRIND:
        cmd = VALGRIND_CMD + cmd
    if conf:
        cmd += ["-C", conf]
    cmd += args
    env = dict(os.environ)
    env.pop("REDRIVE_CONFIG", None)
    env.update(env_extra or {})
    p = subprocess.run(cmd, input=data, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=60 * SCALE, env=env)
    err = p.stderr.decode("utf-8", "replace")
    for mark in SANITIZER_MARKS:
        assert mark not in err, err
    assert p.returncode != 99 and not re.search(r"^==\d+== ", err, re.M), \
        "valgrind report:\n" + err
    return p.returncode, p.stdout, err


def only_message(d):
    rows = d.log_json()
    assert len(rows) == 1, rows
    r = rows[0]
    raw = d.raw_message(r["id"])
    _, rest = split_received(raw)
    return r, rest


def header_and_body(rest):
    head, sep, body = rest.partition(b"\r\n\r\n")
    assert sep, rest
    return head.decode(), body


def rcpts_of(r):
    return sorted(x["address"] for x in r["recipients"])


def test_extract_to_cc_bcc(daemon):
    d = daemon()
    msg = (b"From: App <app@example.com>\n"
           b"To: Ann <ann@example.com>, \"Doe, Bob\" <bob@example.com>\n"
           b"Cc: team: carol@example.com, (a comment) dave@example.com;\n"
           b"Bcc: secret@example.com,\n"
           b"  other-secret@example.com\n"
           b"Subject: extract\n"
           b"Date: Mon, 1 Jan 2024 00:00:00 +0000\n"
           b"Message-ID: <x1@example.com>\n"
           b"\n"
           b"hello\n")
    rc, out, err = run(["-t", "-f", "app@example.com"], msg, d.conf_path)
    assert (rc, out, err) == (0, b"", "")
    r, rest = only_message(d)
    assert r["from"] == "app@example.com"
    assert rcpts_of(r) == sorted([
        "ann@example.com", "bob@example.com", "carol@example.com",
        "dave@example.com", "secret@example.com",
        "other-secret@example.com"])
    # The Bcc field is gone, and nothing else changed (CR LF added).
    assert b"secret" not in rest
    assert rest == (b"From: App <app@example.com>\r\n"
                    b"To: Ann <ann@example.com>, \"Doe, Bob\" "
                    b"<bob@example.com>\r\n"
                    b"Cc: team: carol@example.com, (a comment) "
                    b"dave@example.com;\r\n"
                    b"Subject: extract\r\n"
                    b"Date: Mon, 1 Jan 2024 00:00:00 +0000\r\n"
                    b"Message-ID: <x1@example.com>\r\n"
                    b"\r\n"
                    b"hello\r\n")


def test_extract_adds_argument_recipients(daemon):
    d = daemon()
    msg = b"To: a@example.com\nSubject: s\n\nbody\n"
    rc, _, err = run(["-t", "x@example.com", "A@example.com"], msg,
                     d.conf_path)
    assert rc == 0, err
    r, _ = only_message(d)
    # Arguments come first; the header's a@ is the same address as A@.
    assert rcpts_of(r) == ["A@example.com", "x@example.com"]


def test_explicit_recipients_and_added_fields(daemon):
    d = daemon()
    msg = b"Subject: plain\n\n.leading dot\nline\n"
    rc, _, err = run(["-i", "one@example.com", "two@example.com, "
                      "Three <three@example.com>"], msg, d.conf_path)
    assert rc == 0, err
    r, rest = only_message(d)
    assert rcpts_of(r) == ["one@example.com", "three@example.com",
                           "two@example.com"]
    host = socket.gethostname()
    assert r["from"] == "%s@%s" % (getpass.getuser(), host)
    head, body = header_and_body(rest)
    # Without -t, To is not read; the message had no From, Date or
    # Message-ID: all three are added after the existing fields.
    lines = head.split("\r\n")
    assert lines[0] == "Subject: plain"
    assert re.fullmatch(r"From: (\".*\" )?<?%s@%s>?" % (
        re.escape(getpass.getuser()), re.escape(host)), lines[1]), lines
    assert re.fullmatch(r"Date: \w{3}, \d{1,2} \w{3} \d{4} "
                        r"\d\d:\d\d:\d\d [+-]\d{4}", lines[2]), lines
    assert re.fullmatch(r"Message-ID: <[^<>@ ]+@%s>" % re.escape(host),
                        lines[3]), lines
    assert len(lines) == 4
    # Dot-stuffing on the wire is undone by the relay.
    assert body == b".leading dot\r\nline\r\n"
    assert r["message_id"] == lines[3][len("Message-ID: <"):-1]


def test_sender_and_full_name(daemon):
    d = daemon()
    msg = b"To: z@example.com\nSubject: f\n\nx\n"
    rc, _, err = run(["-f", "<bounce@example.com>", "-F", 'Jo "J" Smith',
                      "z@example.com"], msg, d.conf_path)
    assert rc == 0, err
    r, rest = only_message(d)
    assert r["from"] == "bounce@example.com"
    head, _ = header_and_body(rest)
    assert 'From: "Jo \\"J\\" Smith" <bounce@example.com>' in \
        head.split("\r\n")
    # The attached form, and the null sender.
    rc, _, err = run(["-f<>", "z@example.com"], b"From: a@b.example\n\nx\n",
                     d.conf_path)
    assert rc == 0, err
    rows = d.log_json()
    assert rows[0]["from"] == ""


def test_full_name_cannot_inject_a_field(daemon):
    d = daemon()
    rc, _, err = run(["-F", "Eve\r\nBcc: x@evil.example", "z@example.com"],
                     b"Subject: i\n\nx\n", d.conf_path)
    assert rc == 0, err
    _, rest = only_message(d)
    head, _ = header_and_body(rest)
    assert not any(ln.startswith("Bcc") for ln in head.split("\r\n"))


def test_dot_line_ends_input_without_i(daemon):
    d = daemon()
    msg = b"Subject: dot\n\nbefore\n.\nafter\n"
    rc, _, err = run(["a@example.com"], msg, d.conf_path)
    assert rc == 0, err
    _, rest = only_message(d)
    _, body = header_and_body(rest)
    assert body == b"before\r\n"


def test_dot_line_kept_with_i_and_oi(daemon):
    d = daemon()
    msg = b"Subject: dot\n\nbefore\n.\nafter\r\n..two\n"
    for opt in ("-i", "-oi"):
        rc, _, err = run([opt, "a@example.com"], msg, d.conf_path)
        assert rc == 0, err
    rows = d.log_json()
    assert len(rows) == 2
    for r in rows:
        _, rest = split_received(d.raw_message(r["id"]))
        _, body = header_and_body(rest)
        assert body == b"before\r\n.\r\nafter\r\n..two\r\n"


def test_ignored_sendmail_options(daemon):
    d = daemon()
    rc, _, err = run(["-bm", "-odi", "-oem", "-oee", "-v", "-B", "8BITMIME",
                      "a@example.com"], b"Subject: o\n\nx\n", d.conf_path)
    assert rc == 0, err
    assert len(d.log_json()) == 1


def test_config_from_environment(daemon):
    d = daemon()
    rc, _, err = run(["a@example.com"], b"Subject: e\n\nx\n",
                     env_extra={"REDRIVE_CONFIG": d.conf_path})
    assert rc == 0, err
    assert len(d.log_json()) == 1


def test_relay_down_is_69(tmp_path):
    conf = tmp_path / "c.conf"
    conf.write_text("[relay]\nlisten = 127.0.0.1:%d\n" % free_port())
    rc, _, err = run(["a@example.com"], b"Subject: x\n\nx\n", str(conf))
    assert rc == EX_UNAVAILABLE
    assert err.startswith("redrive-sendmail: relay 127.0.0.1:")
    assert "unavailable" in err and err.count("\n") == 1


def test_usage_errors_are_64(tmp_path):
    conf = tmp_path / "c.conf"
    conf.write_text("[relay]\nlisten = 127.0.0.1:%d\n" % free_port())
    for args in (["-Q", "a@example.com"], ["-f"], ["-bp"], ["-tx"], []):
        rc, _, err = run(args, b"x\n", str(conf))
        assert rc == EX_USAGE, (args, err)
        assert err.startswith("redrive-sendmail: "), err


def test_help_and_version():
    rc, out, err = run(["--help"], b"")
    assert rc == 0 and err == ""
    assert out.startswith(b"usage: redrive-sendmail")
    rc, out, _ = run(["--version"], b"")
    assert rc == 0 and out.startswith(b"redrive-sendmail ")


def test_no_recipients_is_65(daemon):
    d = daemon()
    rc, _, err = run(["-t"], b"Subject: none\nTo: undisclosed:;\n\nx\n",
                     d.conf_path)
    assert rc == EX_DATAERR, err
    assert "no recipient" in err
    assert d.log_json() == []


def test_too_big_is_65(daemon):
    d = daemon({"relay": {"max_message_size": "10K"}})
    rc, _, err = run(["a@example.com"], b"Subject: big\n\n" +
                     (b"x" * 80 + b"\n") * 200, d.conf_path)
    assert rc == EX_DATAERR, err
    assert "max_message_size" in err
    assert d.log_json() == []


def test_relay_4xx_is_75(daemon):
    # The relay takes one recipient per message: the second RCPT gets 452.
    d = daemon({"relay": {"max_recipients": "1"}})
    rc, _, err = run(["a@example.com", "b@example.com"],
                     b"Subject: x\n\nx\n", d.conf_path)
    assert rc == EX_TEMPFAIL, err
    assert "deferred RCPT TO:<b@example.com>: 452" in err
    assert err.count("\n") == 1
    assert d.log_json() == []


class FakeRelay:
    """A one-connection SMTP server answering `answer` to RCPT (None:
    closing the connection instead)."""

    def __init__(self, answer):
        self.answer = answer
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1)
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        c, _ = self.sock.accept()
        f = c.makefile("rwb")
        f.write(b"220 fake ESMTP\r\n")
        f.flush()
        for line in f:
            verb = line[:4].upper()
            if verb == b"EHLO":
                f.write(b"250-fake\r\n250 SIZE 1000\r\n")
            elif verb == b"RCPT" and self.answer is None:
                break
            elif verb == b"RCPT":
                f.write(self.answer)
            elif verb == b"QUIT":
                f.write(b"221 bye\r\n")
                f.flush()
                break
            else:
                f.write(b"250 ok\r\n")
            f.flush()
        f.close()
        c.close()
        self.sock.close()


def fake_conf(tmp_path, relay):
    conf = tmp_path / "fake.conf"
    conf.write_text("[relay]\nlisten = 127.0.0.1:%d\n" % relay.port)
    return str(conf)


def test_fake_relay_codes(tmp_path):
    for answer, want, text in (
            (b"451 4.3.0 try later\r\n", EX_TEMPFAIL,
             "deferred RCPT TO:<a@example.com>: 451 4.3.0 try later"),
            (b"550-5.1.1 no\r\n550 5.1.1 such user\r\n", EX_UNAVAILABLE,
             "refused RCPT TO:<a@example.com>: 550-5.1.1 no; "
             "550 5.1.1 such user"),
            (b"hello there\r\n", EX_PROTOCOL, "malformed reply"),
            (None, EX_TEMPFAIL, "closed the connection at "
             "RCPT TO:<a@example.com>")):
        relay = FakeRelay(answer)
        rc, _, err = run(["a@example.com"], b"Subject: x\n\nx\n",
                         fake_conf(tmp_path, relay))
        relay.thread.join(10)
        assert rc == want, (answer, err)
        assert text in err, err
