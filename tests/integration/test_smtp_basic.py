"""The relay's normal SMTP dialogue (docs/smtp.md): what it answers to a
well-behaved client, and that what it acknowledges is stored exactly."""

import email.message
import json
import re
import select
import shutil
import subprocess
import time

from smtputil import (CRLF, HOST, R_BYE, R_DATA, R_HELP, R_MAIL_OK,
                      R_NEED_MAIL, R_NOT_IMPL, R_OK, R_RCPT_OK,
                      R_SHUTDOWN, R_UNKNOWN, R_VRFY, dot_stuff, queued_id,
                      split_received)

QUEUED_TEXT = re.compile(rb"^2\.0\.0 Ok: queued as ([0-9]+)$")


def smtplib_send(s, mail_from, rcpts, data, options=()):
    """MAIL/RCPT/DATA through smtplib; returns the queued id."""
    code, text = s.mail(mail_from, list(options))
    assert (code, text) == (250, b"2.1.0 Ok")
    for r in rcpts:
        code, text = s.rcpt(r)
        assert (code, text) == (250, b"2.1.5 Ok"), (r, code, text)
    code, text = s.data(data)
    assert code == 250, (code, text)
    m = QUEUED_TEXT.match(text)
    assert m, "DATA reply text %r is not '2.0.0 Ok: queued as N'" % text
    return int(m.group(1))


def test_one_message(daemon):
    d = daemon()
    s = d.smtp()
    data = (b"From: Alice <alice@example.com>\r\n"
            b"To: Bob <bob@example.net>\r\n"
            b"Subject: hello one\r\n"
            b"Message-ID: <one.1@client.test>\r\n"
            b"\r\n"
            b"Hello Bob.\r\n"
            b".a line that starts with a dot\r\n"
            b"..two dots\r\n"
            b"bye\r\n")
    mid = smtplib_send(s, "alice@example.com", ["bob@example.net"], data)
    assert s.quit()[0] == 221
    rows = d.assert_store([{"id": mid, "from": "alice@example.com",
                            "rcpts": ["bob@example.net"], "data": data,
                            "subject": "hello one"}])
    assert rows[0]["message_id"] == "one.1@client.test", rows[0]
    field, _ = split_received(d.raw_message(mid))
    assert b"with ESMTP;" in field, field
    # show --json names the same message; the id also resolves by
    # Message-ID, with or without angle brackets.
    rc, out, err = d.cli("show", mid, "--json")
    assert rc == 0, err
    obj = json.loads(out.decode().splitlines()[0])
    assert obj["id"] == mid and obj["from"] == "alice@example.com", obj
    for text in ("one.1@client.test", "<one.1@client.test>"):
        assert d.raw_message(text) == d.raw_message(mid)


def test_ehlo_and_helo(daemon):
    d = daemon()
    c = d.raw()
    lines = c.ehlo()
    assert lines == ["250-" + HOST, "250-PIPELINING",
                     "250-SIZE %d" % d.max_size, "250-8BITMIME",
                     "250-ENHANCEDSTATUSCODES", "250 SMTPUTF8"], lines
    text = " ".join(lines).upper()
    assert "STARTTLS" not in text and "AUTH" not in text
    c.quit()
    d.assert_store([])


def test_helo_client_can_send(daemon):
    d = daemon()
    c = d.raw()
    c.expect("HELO client.test", "250 " + HOST)
    data = b"Subject: old client\r\n\r\nx\r\n"
    mid = c.send_message("a@x.test", ["b@y.test"], data)
    c.quit()
    d.assert_store([{"id": mid, "from": "a@x.test", "rcpts": ["b@y.test"],
                     "data": data}])


def test_shutdown(daemon):
    """SIGTERM: idle sessions get 421 4.3.2 and are closed; a transaction
    in DATA is finished first; the daemon exits 0."""
    d = daemon()
    idle = d.raw()
    idle.ehlo()
    busy = d.raw()
    busy.ehlo()
    busy.expect("MAIL FROM:<a@x.test>", R_MAIL_OK)
    busy.expect("RCPT TO:<b@y.test>", R_RCPT_OK)
    busy.expect("DATA", R_DATA)
    data = b"Subject: during shutdown\r\n\r\nfirst half\r\nsecond half\r\n"
    busy.send(data[:30])
    time.sleep(0.2)
    d.terminate()
    assert idle.reply_line() == R_SHUTDOWN
    idle.expect_closed()
    idle.close()
    busy.send(data[30:] + b".\r\n")
    mid = queued_id(busy.reply_line(), busy)
    # Then the session ends: 421 at once, or at the next command.
    r, _, _ = select.select([busy.sock], [], [], 1.0)
    if r:
        assert busy.reply_line() == R_SHUTDOWN, busy.dump()
    else:
        busy.send(b"NOOP\r\n")
        assert busy.reply_line() == R_SHUTDOWN, busy.dump()
    busy.expect_closed()
    busy.close()
    d.wait_exit()
    d.assert_store([{"id": mid, "from": "a@x.test", "rcpts": ["b@y.test"],
                     "data": data}])


def test_many_recipients(daemon):
    d = daemon()
    s = d.smtp()
    rcpts = ["user%02d@dest%d.example" % (i, i % 3) for i in range(50)]
    data = b"Subject: fifty\r\n\r\n" + b"to many people\r\n" * 10
    mid = smtplib_send(s, "sender@example.com", rcpts, data)
    s.quit()
    d.assert_store([{"id": mid, "from": "sender@example.com",
                     "rcpts": rcpts, "data": data}])


def test_8bitmime(daemon):
    d = daemon()
    s = d.smtp()
    assert s.has_extn("8bitmime")
    data = ("Subject: =?utf-8?q?caf=C3=A9?=\r\n"
            "Content-Type: text/plain; charset=utf-8\r\n"
            "Content-Transfer-Encoding: 8bit\r\n\r\n"
            "Grüße, café, 日本語\r\n").encode("utf-8") + \
        b"latin-1 \xe9\xe8 and \xff\xfe high bytes\r\n"
    mid = smtplib_send(s, "a@example.com", ["b@example.com"], data,
                       ["BODY=8BITMIME"])
    s.quit()
    d.assert_store([{"id": mid, "from": "a@example.com",
                     "rcpts": ["b@example.com"], "data": data}])


def test_smtputf8(daemon):
    d = daemon()
    s = d.smtp()
    assert s.has_extn("smtputf8")
    sender = "δοκιμή@παράδειγμα.δοκιμή"
    rcpt = "用户@例子.测试"
    data = ("From: %s\r\nTo: %s\r\nSubject: ünïcode\r\n\r\nbody\r\n"
            % (sender, rcpt)).encode("utf-8")
    mid = smtplib_send(s, sender, [rcpt], data, ["SMTPUTF8",
                                                 "BODY=8BITMIME"])
    s.quit()
    expected = [{"id": mid, "from": sender, "rcpts": [rcpt], "data": data}]
    d.assert_store(expected)

    # smtplib's send_message() chooses SMTPUTF8 by itself.
    msg = email.message.EmailMessage()
    msg["From"] = "Jürgen <jürgen@bücher.example>"
    msg["To"] = "josé@exämple.example"
    msg["Subject"] = "send_message"
    msg.set_content("utf8 marker çà\n")
    s = d.smtp()
    assert s.send_message(msg) == {}
    s.quit()
    rows = d.log_json()
    new = [r for r in rows if r["id"] != mid]
    assert len(new) == 1, rows
    assert new[0]["from"] == "jürgen@bücher.example", new[0]
    assert [x["address"] for x in new[0]["recipients"]] == \
        ["josé@exämple.example"]
    _, rest = split_received(d.raw_message(new[0]["id"]))
    assert "utf8 marker çà".encode() in rest
    assert "From: Jürgen <jürgen@bücher.example>".encode() in rest


def test_utf8_address_needs_smtputf8(daemon):
    d = daemon()
    c = d.raw()
    c.ehlo()
    r = c.cmd("MAIL FROM:<jürgen@example.com>")
    assert r.startswith("5"), r
    c.expect("MAIL FROM:<a@example.com>", R_MAIL_OK)
    r = c.cmd("RCPT TO:<josé@example.com>")
    assert r.startswith("5"), r
    c.quit()
    d.assert_store([])


def test_pipelining(daemon):
    d = daemon()
    c = d.raw()
    c.ehlo()
    c.send(b"MAIL FROM:<p@x.test>\r\nRCPT TO:<a@y.test>\r\n"
           b"RCPT TO:<b@y.test>\r\nDATA\r\n")
    assert [c.reply_line() for _ in range(4)] == \
        [R_MAIL_OK, R_RCPT_OK, R_RCPT_OK, R_DATA]
    data1 = (b"Subject: piped 1\r\n\r\n.dot\r\n..two\r\n...\r\n. \r\n"
             b"end\r\n")
    # The end of data, the next transaction and its DATA in one write.
    c.send(dot_stuff(data1) + b".\r\nMAIL FROM:<q@x.test>\r\n"
           b"RCPT TO:<c@y.test>\r\nDATA\r\n")
    id1 = queued_id(c.reply_line(), c)
    assert [c.reply_line() for _ in range(3)] == \
        [R_MAIL_OK, R_RCPT_OK, R_DATA]
    data2 = b"Subject: piped 2\r\n\r\nsecond\r\n"
    c.send(data2 + b".\r\nRSET\r\nMAIL FROM:<r@x.test>\r\n"
           b"RCPT TO:<bad address@>\r\nRCPT TO:<d@y.test>\r\nNOOP\r\n"
           b"DATA\r\n")
    id2 = queued_id(c.reply_line(), c)
    r = [c.reply_line() for _ in range(6)]
    assert r[0] == R_OK and r[1] == R_MAIL_OK, r
    assert r[2].startswith("501 5."), r
    assert r[3:] == [R_RCPT_OK, R_OK, R_DATA], r
    data3 = b"Subject: piped 3\r\n\r\nthird\r\n"
    c.send(data3 + b".\r\nQUIT\r\n")
    id3 = queued_id(c.reply_line(), c)
    assert c.reply_line() == R_BYE
    c.expect_closed()
    c.close()
    assert len({id1, id2, id3}) == 3
    d.assert_store([
        {"id": id1, "from": "p@x.test", "rcpts": ["a@y.test", "b@y.test"],
         "data": data1},
        {"id": id2, "from": "q@x.test", "rcpts": ["c@y.test"],
         "data": data2},
        {"id": id3, "from": "r@x.test", "rcpts": ["d@y.test"],
         "data": data3},
    ])


def test_rset_noop_vrfy_help_quit(daemon):
    d = daemon()
    c = d.raw()
    c.ehlo()
    c.expect("NOOP", R_OK)
    c.expect("MAIL FROM:<first@x.test>", R_MAIL_OK)
    c.expect("RCPT TO:<gone@y.test>", R_RCPT_OK)
    c.expect("NOOP", R_OK)  # NOOP changes nothing
    c.expect("RSET", R_OK)
    c.expect("RCPT TO:<a@y.test>", R_NEED_MAIL)  # RSET ended it
    c.expect("VRFY someone", R_VRFY)
    c.expect("VRFY <someone@y.test>", R_VRFY)
    c.expect("HELP", R_HELP)
    c.expect("noop", R_OK)  # verbs are case-insensitive
    c.expect("MAIL FROM:<second@x.test>", R_MAIL_OK)  # no nested MAIL
    c.expect("rcpt to:<kept@y.test>", R_RCPT_OK)
    c.expect("DATA", R_DATA)
    data = b"Subject: after rset\r\n\r\nx\r\n"
    c.send(data + b".\r\n")
    mid = queued_id(c.reply_line(), c)
    c.expect("RSET", R_OK)
    c.quit()
    d.assert_store([{"id": mid, "from": "second@x.test",
                     "rcpts": ["kept@y.test"], "data": data}])


def test_unknown_and_unimplemented(daemon):
    d = daemon()
    c = d.raw()
    c.ehlo()
    c.expect("FOO bar", R_UNKNOWN)
    c.expect("MAILX FROM:<a@b.test>", R_UNKNOWN)
    c.expect("EXPN staff", R_NOT_IMPL)
    c.expect("STARTTLS", R_NOT_IMPL)
    c.expect("AUTH PLAIN AGFsaWNlAHNlY3JldA==", R_NOT_IMPL)
    c.expect("AUTH LOGIN", R_NOT_IMPL)
    c.expect("BDAT 0 LAST", R_NOT_IMPL)
    c.expect("starttls", R_NOT_IMPL)
    # The session goes on normally afterwards.
    data = b"Subject: still here\r\n\r\nok\r\n"
    mid = c.send_message("a@b.test", ["c@d.test"], data)
    c.quit()
    d.assert_store([{"id": mid, "from": "a@b.test", "rcpts": ["c@d.test"],
                     "data": data}])


def test_null_sender_and_postmaster(daemon):
    d = daemon()
    c = d.raw()
    c.ehlo()
    data = b"Subject: bounce\r\n\r\nnull sender\r\n"
    c.expect("MAIL FROM:<>", R_MAIL_OK)
    c.expect("RCPT TO:<postmaster>", R_RCPT_OK)
    c.expect("DATA", R_DATA)
    c.send(data + b".\r\n")
    mid = queued_id(c.reply_line(), c)
    c.quit()
    d.assert_store([{"id": mid, "from": "", "rcpts": ["postmaster"],
                     "data": data}])


def test_source_route_stripped(daemon):
    d = daemon()
    c = d.raw()
    c.ehlo()
    data = b"Subject: routed\r\n\r\nx\r\n"
    c.expect("MAIL FROM:<@a.example,@b.example:user@host.example>",
             R_MAIL_OK)
    c.expect("RCPT TO:<@relay.example:rcpt@dest.example>", R_RCPT_OK)
    c.expect("DATA", R_DATA)
    c.send(data + b".\r\n")
    mid = queued_id(c.reply_line(), c)
    c.quit()
    d.assert_store([{"id": mid, "from": "user@host.example",
                     "rcpts": ["rcpt@dest.example"], "data": data}])


def test_swaks(daemon):
    swaks = shutil.which("swaks") or "/usr/bin/swaks"
    d = daemon()
    marker = "swaks body marker 7f3a9c"
    p = subprocess.run(
        [swaks, "--server", "127.0.0.1", "--port", str(d.port),
         "--helo", "client.test", "--to", "a@b.example", "--from",
         "c@d.example", "--header", "Subject: via swaks", "--body", marker,
         "--timeout", "20"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
    out = p.stdout.decode("utf-8", "replace")
    assert p.returncode == 0, out
    m = re.search(r"<[-~]  250 2\.0\.0 Ok: queued as ([0-9]+)\r?$", out, re.M)
    assert m, out
    mid = int(m.group(1))
    rows = d.log_json()
    assert [r["id"] for r in rows] == [mid], rows
    assert rows[0]["from"] == "c@d.example"
    assert [x["address"] for x in rows[0]["recipients"]] == ["a@b.example"]
    assert rows[0]["subject"] == "via swaks", rows[0]
    field, rest = split_received(d.raw_message(mid))
    assert b"from client.test " in field, field
    assert marker.encode() in rest
    assert rest.endswith(CRLF)
    assert b"\n" not in rest.replace(CRLF, b""), "bare LF stored"
