"""Helpers for the redrive integration tests: a raw SMTP client that reads
whole replies (multiline included), the Received-field splitter, and the
store checks every storing test runs (``redrive log --json`` lists exactly
the accepted messages, ``redrive show ID --raw`` is the Received field plus
the client's bytes).  Standard library only."""

import email.utils
import os
import re
import select
import socket
import time

HOST = "redrive.test"
CRLF = b"\r\n"

# docs/smtp.md, verbatim.
R_GREETING = f"220 {HOST} ESMTP redrive"
R_MAIL_OK = "250 2.1.0 Ok"
R_RCPT_OK = "250 2.1.5 Ok"
R_DATA = "354 End data with <CR><LF>.<CR><LF>"
R_OK = "250 2.0.0 Ok"
R_VRFY = ("252 2.5.0 Cannot VRFY user, but will accept message and "
          "attempt delivery")
R_HELP = ("214 2.0.0 Commands: HELO EHLO MAIL RCPT DATA RSET NOOP QUIT "
          "VRFY HELP")
R_BYE = "221 2.0.0 Bye"
R_NOT_IMPL = "502 5.5.1 Error: command not implemented"
R_UNKNOWN = "500 5.5.2 Error: command not recognized"
R_TOO_LONG = "500 5.5.2 Error: line too long"
R_NEED_HELO = "503 5.5.1 Error: send HELO/EHLO first"
R_NESTED = "503 5.5.1 Error: nested MAIL command"
R_NEED_MAIL = "503 5.5.1 Error: need MAIL command"
R_NEED_RCPT = "503 5.5.1 Error: need RCPT command"
R_MAIL_SYNTAX = "501 5.5.4 Syntax: MAIL FROM:<address>"
R_RCPT_SYNTAX = "501 5.5.4 Syntax: RCPT TO:<address>"
R_BAD_SENDER = "501 5.1.7 Bad sender address syntax"
R_BAD_RCPT = "501 5.1.3 Bad recipient address syntax"
R_EHLO_SYNTAX = "501 5.5.4 Syntax: EHLO hostname"
R_UNSUPPORTED = "555 5.5.4 Unsupported option: "
R_TOO_BIG = "552 5.3.4 Message size exceeds fixed maximum message size"
R_TOO_MANY_RCPTS = "452 4.5.3 Error: too many recipients"
R_TIMEOUT = f"421 4.4.2 {HOST} Error: timeout exceeded"
R_TOO_MANY_CONNS = f"421 4.7.0 {HOST} Error: too many connections"
R_SHUTDOWN = f"421 4.3.2 {HOST} Service shutting down"
R_BAD_DATA = "550 5.6.0"  # prefix: the text after it is free

QUEUED_RE = re.compile(r"^250 2\.0\.0 Ok: queued as ([0-9]+)$")



def scale():
    """Time scale: everything is slower under valgrind."""
    return 6.0 if os.environ.get("REDRIVE_VALGRIND") == "1" else 1.0


class SMTPClosed(Exception):
    """The server closed the connection while a reply was expected."""


class RawSMTP:
    """A byte-exact SMTP client.  Every reply line must end in CR LF."""

    def __init__(self, port, host="127.0.0.1", timeout=5.0, greet=True):
        self.timeout = timeout * scale()
        self.sock = socket.create_connection((host, port),
                                             timeout=self.timeout)
        self.buf = b""
        self.transcript = []  # ("C"|"S", bytes) for failure messages
        self.greeting = None
        if greet:
            self.greeting = self.reply_line()

    # -- I/O ---------------------------------------------------------------
    def send(self, data):
        if isinstance(data, str):
            data = data.encode("utf-8")
        self.transcript.append(("C", data))
        self.sock.sendall(data)

    def _fill(self, deadline):
        left = deadline - time.monotonic()
        if left <= 0:
            raise socket.timeout("no reply within %.1fs; transcript:\n%s"
                                 % (self.timeout, self.dump()))
        self.sock.settimeout(left)
        try:
            chunk = self.sock.recv(65536)
        except socket.timeout:
            raise socket.timeout("no reply within %.1fs; transcript:\n%s"
                                 % (self.timeout, self.dump())) from None
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            raise SMTPClosed("connection closed; transcript:\n" + self.dump())
        self.buf += chunk

    def line(self, timeout=None):
        """One reply line, without its CR LF, as bytes."""
        deadline = time.monotonic() + (timeout * scale() if timeout
                                       else self.timeout)
        while b"\n" not in self.buf:
            self._fill(deadline)
        raw, self.buf = self.buf.split(b"\n", 1)
        self.transcript.append(("S", raw + b"\n"))
        assert raw.endswith(b"\r"), \
            "reply line not ended by CR LF: %r" % (raw + b"\n")
        return raw[:-1]

    def reply(self, timeout=None):
        """A whole reply: a list of its lines (str), multiline included."""
        lines = []
        while True:
            raw = self.line(timeout).decode("utf-8")
            assert re.match(r"^[2-5][0-9][0-9]([ -]|$)", raw), \
                "malformed reply line %r" % raw
            lines.append(raw)
            if lines and raw[:3] != lines[0][:3]:
                raise AssertionError("reply codes differ within one "
                                     "reply: %r" % lines)
            if len(raw) == 3 or raw[3] == " ":
                return lines

    def reply_line(self, timeout=None):
        """A reply that must be a single line; returns it (str)."""
        r = self.reply(timeout)
        assert len(r) == 1, "expected a one-line reply, got %r" % r
        return r[0]

    def cmd(self, line):
        """Sends one command line (CR LF added), returns its one-line reply."""
        if isinstance(line, str):
            line = line.encode("utf-8")
        self.send(line + CRLF)
        return self.reply_line()

    def ehlo(self, name="client.test"):
        self.send(b"EHLO " + name.encode() + CRLF)
        return self.reply()

    def expect(self, line, want):
        got = self.cmd(line)
        assert got == want, "%r: want %r, got %r\ntranscript:\n%s" % (
            line, want, got, self.dump())
        return got

    def expect_closed(self, timeout=3.0):
        """Asserts that the server closes the connection (EOF or RST) with
        no further reply within timeout seconds."""
        deadline = time.monotonic() + timeout * scale()
        while True:
            left = deadline - time.monotonic()
            assert left > 0, "connection not closed within %.1fs\n%s" % (
                timeout, self.dump())
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                continue
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                assert self.buf == b"", \
                    "unexpected bytes before close: %r" % self.buf
                return
            self.buf += chunk
            raise AssertionError("unexpected data instead of close: %r\n%s"
                                 % (self.buf, self.dump()))

    def nothing_pending(self, wait=0.2):
        """Asserts that no further reply is waiting."""
        r, _, _ = select.select([self.sock], [], [], wait)
        if r:
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                chunk = b""
            self.buf += chunk
        assert self.buf == b"", "unexpected extra reply: %r\n%s" % (
            self.buf, self.dump())

    def quit(self):
        self.expect("QUIT", R_BYE)
        self.expect_closed()
        self.close()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def dump(self):
        out = []
        for who, data in self.transcript[-40:]:
            shown = data if len(data) <= 300 else \
                data[:150] + b"...(%d bytes)..." % len(data) + data[-100:]
            out.append("%s: %r" % (who, shown))
        return "\n".join(out)

    # -- a transaction -------------------------------------------------------
    def send_message(self, mail_from, rcpts, data, params=""):
        """MAIL, RCPT..., DATA, the data (already dot-stuffed, CR LF, without
        the final '.'), '.'.  Returns the queued id (int)."""
        self.expect("MAIL FROM:<%s>%s" % (mail_from, params), R_MAIL_OK)
        for r in rcpts:
            self.expect("RCPT TO:<%s>" % r, R_RCPT_OK)
        self.expect("DATA", R_DATA)
        self.send(data + b".\r\n")
        return queued_id(self.reply_line(), self)


def queued_id(line, client=None):
    m = QUEUED_RE.match(line)
    assert m, "want '250 2.0.0 Ok: queued as N', got %r%s" % (
        line, ("\n" + client.dump()) if client else "")
    return int(m.group(1))


def dot_stuff(data):
    """RFC 5321 4.5.2: a leading '.' on a line is doubled."""
    out = []
    for ln in data.split(b"\r\n"):
        out.append(b"." + ln if ln.startswith(b".") else ln)
    return b"\r\n".join(out)


RECEIVED_RE = re.compile(
    rb"^Received: from (?P<helo>\S+) \((?P<addr>[^()\r\n]*)\)\r\n"
    rb"\tby (?P<by>\S+) \(redrive\) with (?P<proto>[A-Za-z0-9]+)"
    rb"(?P<extra>[^;\r\n]*); (?P<date>[^\r\n]+)\r\n\Z")


def split_received(raw):
    """Splits the first header field (which must be redrive's Received:) off
    raw; returns (field bytes incl. its final CR LF, rest)."""
    assert raw.startswith(b"Received: "), \
        "stored message does not start with Received: %r" % raw[:200]
    pos = 0
    while True:
        nl = raw.find(b"\r\n", pos)
        assert nl >= 0, "unterminated Received field: %r" % raw[:300]
        pos = nl + 2
        if pos >= len(raw) or raw[pos:pos + 1] not in (b" ", b"\t"):
            return raw[:pos], raw[pos:]


def check_received(field, helo=None, rcpts=(), proto=None):
    """Asserts the form of redrive's Received field (docs/smtp.md)."""
    m = RECEIVED_RE.match(field)
    assert m, "Received field not in the documented form: %r" % field
    assert m.group("by") == HOST.encode(), field
    assert b"by redrive.test" in field
    assert b"127.0.0.1" in m.group("addr"), field
    if helo is not None:
        assert m.group("helo") == helo.encode(), field
    if proto is not None:
        assert m.group("proto") == proto.encode(), field
    when = email.utils.parsedate_to_datetime(m.group("date").decode())
    assert when.tzinfo is not None, field
    skew = abs(time.time() - when.timestamp())
    assert skew < 600, "Received date off by %ds: %r" % (skew, field)
    low = field.lower()
    assert b" for " not in low and b"for <" not in low, \
        "Received field names a recipient: %r" % field
    for r in rcpts:
        enc = r.encode("utf-8").lower()
        assert enc not in low, "Received names recipient %r: %r" % (r, field)
