"""Alerts (docs/alerts.md) through the real daemon and the simulator.

A local SMTP capture server written here (STARTTLS with a throw-away
self-signed certificate, AUTH PLAIN and LOGIN checking the login) stands
for [alert] smtp; a local HTTP server for [alert] webhook_url.  A hard
bounce (a simulator rule) abandons a recipient: exactly one alert says the
local id, Message-ID, subject, recipient, the sends, why, and the
`redrive retry` command.
"""

import base64
import http.server
import json
import os
import re
import socketserver
import ssl
import subprocess
import tempfile
import threading
import time

import pytest

from conftest import free_port
from mailgun_fixtures import SCALE
from tracker_fixtures import (  # noqa: F401
    Tracker, tracker_overrides, tracker_sim, wait_until)

ALERT_TO = "oncall@ops.example"
ALERT_FROM = "redrive@relay.example"
SMTP_USER = "alerter"
SMTP_PASS = "s3cret-alert-pw"
BOUNCE_RULE = "fail-permanent:code=550,enhanced=5.1.1,reason=bounce"


# ---- a local SMTP capture server --------------------------------------------

class SmtpCapture:
    """A small RFC 5321 server: EHLO, STARTTLS (RFC 3207), AUTH PLAIN and
    LOGIN (RFC 4954) after TLS only, MAIL, RCPT, DATA; keeps each message
    with its envelope and whether it came over TLS and logged in."""

    def __init__(self, cert, key, port=0):
        self.messages = []
        self.auth_failures = 0
        self.errors = []
        self.lock = threading.Lock()
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(cert, key)
        cap = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self):
                try:
                    cap._session(self)
                except Exception as e:  # noqa: BLE001 - kept for the test
                    with cap.lock:
                        cap.errors.append(repr(e))

        class Server(socketserver.ThreadingTCPServer):
            allow_reuse_address = True
            daemon_threads = True

        self.server = Server(("127.0.0.1", port), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()

    def _session(self, h):
        st = {"tls": False, "auth": False, "from": None, "rcpts": []}
        sock = h.connection
        rf, wf = h.rfile, h.wfile

        def say(line):
            wf.write(line.encode() + b"\r\n")
            wf.flush()

        say("220 capture.test ESMTP")
        while True:
            raw = rf.readline(4096)
            if not raw:
                return
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            verb = line.split(" ", 1)[0].upper()
            arg = line[len(verb):].strip()
            if verb in ("EHLO", "HELO"):
                ext = ["250-capture.test", "250-8BITMIME"]
                if not st["tls"]:
                    ext.append("250-STARTTLS")
                else:
                    ext.append("250-AUTH PLAIN LOGIN")
                ext.append("250 SIZE 10000000")
                say("\r\n".join(ext))  # one write, as servers do
            elif verb == "STARTTLS" and not st["tls"]:
                say("220 2.0.0 go ahead")
                sock = self.ctx.wrap_socket(sock, server_side=True)
                rf = sock.makefile("rb")
                wf = sock.makefile("wb")
                st["tls"] = True
            elif verb == "AUTH" and st["tls"]:
                parts = arg.split()
                mech = parts[0].upper()
                if mech == "PLAIN":
                    if len(parts) > 1:
                        blob = parts[1]
                    else:
                        say("334 ")
                        blob = rf.readline().decode().strip()
                    fields = base64.b64decode(blob).split(b"\0")
                    user, pw = fields[1].decode(), fields[2].decode()
                elif mech == "LOGIN":
                    if len(parts) > 1:
                        user = base64.b64decode(parts[1]).decode()
                    else:
                        say("334 VXNlcm5hbWU6")
                        user = base64.b64decode(
                            rf.readline().strip()).decode()
                    say("334 UGFzc3dvcmQ6")
                    pw = base64.b64decode(rf.readline().strip()).decode()
                else:
                    say("504 5.5.4 unknown mechanism")
                    continue
                if user == SMTP_USER and pw == SMTP_PASS:
                    st["auth"] = True
                    say("235 2.7.0 ok")
                else:
                    with self.lock:
                        self.auth_failures += 1
                    say("535 5.7.8 bad login")
            elif verb == "MAIL":
                if not st["auth"]:
                    say("530 5.7.0 authentication required")
                    continue
                st["from"] = re.search(r"<([^>]*)>", arg).group(1)
                st["rcpts"] = []
                say("250 2.1.0 ok")
            elif verb == "RCPT":
                st["rcpts"].append(re.search(r"<([^>]*)>", arg).group(1))
                say("250 2.1.5 ok")
            elif verb == "DATA":
                say("354 go")
                data = b""
                while True:
                    ln = rf.readline()
                    if not ln or ln == b".\r\n":
                        break
                    if ln.startswith(b".."):
                        ln = ln[1:]
                    data += ln
                with self.lock:
                    self.messages.append({
                        "from": st["from"], "rcpts": list(st["rcpts"]),
                        "tls": st["tls"], "auth": st["auth"],
                        "data": data.decode("utf-8", "replace")})
                say("250 2.0.0 captured")
            elif verb == "RSET":
                say("250 ok")
            elif verb == "QUIT":
                say("221 bye")
                return
            else:
                say("502 5.5.2 not here")

    def got(self):
        with self.lock:
            return list(self.messages)


@pytest.fixture
def cert():
    tmp = tempfile.mkdtemp(prefix="redrive-alert-tls-")
    crt, key = os.path.join(tmp, "cert.pem"), os.path.join(tmp, "key.pem")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
         "-subj", "/CN=localhost", "-days", "1", "-keyout", key,
         "-out", crt, "-addext", "subjectAltName=DNS:localhost"],
        check=True, capture_output=True)
    yield crt, key
    for p in (crt, key):
        os.unlink(p)
    os.rmdir(tmp)


# ---- a local webhook receiver -------------------------------------------------

class HookCapture:
    def __init__(self):
        self.posts = []
        cap = self

        class H(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                n = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(n)
                cap.posts.append({
                    "type": self.headers.get("Content-Type"),
                    "json": json.loads(body)})
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *a):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = "http://127.0.0.1:%d/hook" % self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever,
                         daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hook():
    h = HookCapture()
    yield h
    h.close()


# ---- helpers ------------------------------------------------------------------

def start(daemon, sim, alert, retry=None, allow_errors=False):
    port = free_port()
    over = tracker_overrides(sim, port, retry or {"max_attempts": "2"})
    over["alert"] = alert
    d = daemon(over, allow_errors=allow_errors)
    t = Tracker(d, sim, port)
    t.wait_healthy()
    sim.set_webhook_url(t.hook_url)
    return t


def smtp_alert(port, ca):
    return {"to": ALERT_TO, "from": ALERT_FROM,
            "smtp": "localhost:%d" % port, "smtp_user": SMTP_USER,
            "smtp_password": SMTP_PASS, "smtp_tls": "starttls",
            "smtp_ca_file": ca}


def abandon(t, addr="bad.one@example.net"):
    """One message to a hard-bouncing address; waits until it is failed;
    returns (local id, Message-ID, subject)."""
    t.sim.rules({addr: BOUNCE_RULE})
    mid_hdr = "alert-%d@client.test" % int(time.time() * 1e6)
    subject = "Invoice %d" % (time.time_ns() % 100000)
    data = ("From: App <app@example.com>\r\nTo: %s\r\nSubject: %s\r\n"
            "Message-ID: <%s>\r\n\r\nHello.\r\n" % (
                addr, subject, mid_hdr)).encode()
    mid = t.send([addr], data)
    t.wait_rcpt(mid, addr, "failed", timeout=15)
    return mid, mid_hdr, subject


def check_text(text, mid, mid_hdr, subject, addr):
    assert re.search(r"Local id: +%d\b" % mid, text), text
    assert "<%s>" % mid_hdr in text, text
    assert subject in text, text
    assert addr in text, text
    # the send with Mailgun's answer, the bounce event, and why
    assert re.search(r"via mime +HTTP 200", text), text
    assert re.search(r"failed permanent bounce 550 5\.1\.1", text), text
    assert re.search(r"Why stopped: .*bounce", text), text
    assert "redrive retry %d --recipient %s" % (mid, addr) in text, text


# ---- the tests ----------------------------------------------------------------

def test_alert_mail_starttls_auth(daemon, tracker_sim, cert):
    crt, key = cert
    srv = SmtpCapture(crt, key)
    try:
        t = start(daemon, tracker_sim, smtp_alert(srv.port, crt))
        addr = "bad.one@example.net"
        mid, mid_hdr, subject = abandon(t, addr)
        got = wait_until(srv.got, 15, lambda: "an alert mail; log:\n" +
                         t.d.all_logs())
        time.sleep(2.5 * SCALE)  # no second one comes
        got = srv.got()
        assert len(got) == 1, got
        m = got[0]
        assert m["tls"] and m["auth"]
        assert m["from"] == ALERT_FROM and m["rcpts"] == [ALERT_TO]
        head, _, body = m["data"].partition("\r\n\r\n")
        assert re.search(r"^Subject: redrive: delivery to %s failed "
                         r"\(message %d\)" % (re.escape(addr), mid),
                         head, re.M), head
        assert re.search(r"^To: %s" % re.escape(ALERT_TO), head, re.M)
        check_text(body, mid, mid_hdr, subject, addr)
        assert srv.auth_failures == 0
        assert SMTP_PASS not in t.d.all_logs()
    finally:
        srv.close()


def test_alert_through_mailgun_without_smtp(daemon, tracker_sim):
    t = start(daemon, tracker_sim, {"to": ALERT_TO, "from": ALERT_FROM})
    addr = "bad.two@example.net"
    mid, mid_hdr, subject = abandon(t, addr)

    def alerts():
        return [m for m in tracker_sim.messages()
                if ALERT_TO in m["recipients"]]
    wait_until(alerts, 15, lambda: "the alert at the simulator; log:\n" +
               t.d.all_logs())
    time.sleep(2 * SCALE)
    got = alerts()
    assert len(got) == 1, got
    text = tracker_sim.body(got[0]).decode()
    assert "\r\nSubject: redrive: delivery to %s" % addr in text
    check_text(text, mid, mid_hdr, subject, addr)


def test_alert_webhook(daemon, tracker_sim, hook):
    t = start(daemon, tracker_sim, {"webhook_url": hook.url})
    addr = "bad.three@example.net"
    mid, mid_hdr, subject = abandon(t, addr)
    wait_until(lambda: hook.posts, 15, "the webhook POST")
    time.sleep(2 * SCALE)
    assert len(hook.posts) == 1, hook.posts
    p = hook.posts[0]
    assert p["type"] == "application/json"
    assert list(p["json"]) == ["text"]
    check_text(p["json"]["text"], mid, mid_hdr, subject, addr)


def test_failure_rate_once_per_window(daemon, tracker_sim, hook):
    t = start(daemon, tracker_sim,
              {"webhook_url": hook.url, "failure_rate": "0.5",
               "failure_window": "1h", "failure_min": "3"})
    text = "to parameter is not a valid address"

    def rate_alerts():
        return [p for p in hook.posts
                if "sends failed recently" in p["json"]["text"]]
    for i in range(4):
        tracker_sim.faults("400:" + text)
        mid = t.send(["r%d@example.net" % i])
        t.wait_rcpt(mid, "r%d@example.net" % i, "failed")
    wait_until(rate_alerts, 10, "the failure-rate alert")
    for i in range(4, 7):
        tracker_sim.faults("400:" + text)
        mid = t.send(["r%d@example.net" % i])
        t.wait_rcpt(mid, "r%d@example.net" % i, "failed")
    # one alert per recipient, and one failure-rate alert in the window
    wait_until(lambda: len(hook.posts) >= 8, 10, "the recipients' alerts")
    time.sleep(3 * SCALE)
    assert len(rate_alerts()) == 1, rate_alerts()
    assert len(hook.posts) == 8, [p["json"]["text"][:60] for p in hook.posts]
    assert re.search(r"Failed recipients: +[34]\b",
                     rate_alerts()[0]["json"]["text"])


def test_failure_rate_again_after_window(daemon, tracker_sim, hook):
    t = start(daemon, tracker_sim,
              {"webhook_url": hook.url, "failure_rate": "0.5",
               "failure_window": "4s", "failure_min": "2"})

    def rate_alerts():
        return [p for p in hook.posts
                if "sends failed recently" in p["json"]["text"]]

    def fail(i):
        tracker_sim.faults("400:no")
        mid = t.send(["w%d@example.net" % i])
        t.wait_rcpt(mid, "w%d@example.net" % i, "failed")
    fail(0)
    fail(1)
    wait_until(rate_alerts, 10, "the first failure-rate alert")
    time.sleep(4.5 * SCALE)  # the window has passed
    fail(2)
    fail(3)
    wait_until(lambda: len(rate_alerts()) == 2, 10,
               "a second failure-rate alert in a new window")


def test_auth_pause_alert(daemon, tracker_sim, hook):
    tracker_sim.auth_fail(True)
    t = start(daemon, tracker_sim, {"webhook_url": hook.url},
              allow_errors=True)
    t.send(["p@example.net"])
    wait_until(lambda: hook.posts, 10, "the pause alert")
    time.sleep(2.5 * SCALE)  # probes do not raise more
    assert len(hook.posts) == 1, hook.posts
    assert "HTTP 401" in hook.posts[0]["json"]["text"]
    assert "forwarding paused" in hook.posts[0]["json"]["text"]
    tracker_sim.auth_fail(False)


def test_alert_server_down_then_up(daemon, tracker_sim, cert):
    crt, key = cert
    port = free_port()
    t = start(daemon, tracker_sim, smtp_alert(port, crt))
    addr = "bad.four@example.net"
    mid, mid_hdr, subject = abandon(t, addr)
    wait_until(lambda: t.log_lines(r'level=warn msg="alert not sent'), 15,
               "the failed try; log:\n" + t.d.all_logs())
    assert re.search(r"error=", t.log_lines("alert not sent")[0])
    srv = SmtpCapture(crt, key, port)
    try:
        # The next try comes 30 s after the first.
        got = wait_until(srv.got, 45, lambda: "the alert once the server "
                         "is up; server errors %r; log:\n%s" % (
                             srv.errors, t.d.all_logs()))
        assert len(got) == 1
        check_text(got[0]["data"], mid, mid_hdr, subject, addr)
    finally:
        srv.close()


def test_alert_server_down_then_restart(daemon, tracker_sim, cert):
    crt, key = cert
    port = free_port()
    t = start(daemon, tracker_sim, smtp_alert(port, crt))
    addr = "bad.five@example.net"
    mid, mid_hdr, subject = abandon(t, addr)
    wait_until(lambda: t.log_lines(r'level=warn msg="alert not sent'), 15,
               "the failed try")
    t.d.stop()
    srv = SmtpCapture(crt, key, port)
    try:
        t.d.start()
        got = wait_until(srv.got, 15, lambda: "the alert after a restart;"
                         " log:\n" + t.d.all_logs())
        time.sleep(1.5 * SCALE)
        assert len(srv.got()) == 1
        check_text(got[0]["data"], mid, mid_hdr, subject, addr)
    finally:
        srv.close()


def test_bad_certificate_is_refused(daemon, tracker_sim, cert):
    """Without the CA, the server's certificate is not trusted: nothing is
    sent, the alert stays pending and the failure is logged."""
    crt, key = cert
    srv = SmtpCapture(crt, key)
    try:
        alert = smtp_alert(srv.port, crt)
        del alert["smtp_ca_file"]
        t = start(daemon, tracker_sim, alert)
        abandon(t, "bad.six@example.net")
        wait_until(lambda: t.log_lines(r'msg="alert not sent'), 15,
                   "the refused try")
        assert srv.got() == []
    finally:
        srv.close()

