"""STARTTLS (RFC 3207) and AUTH PLAIN/LOGIN (RFC 4954) on the relay
(docs/smtp.md): a throw-away certificate made here with openssl, a users
file made with `redrive passwd`, Python's smtplib, swaks, raw sockets for
the pipelining-injection case (CVE-2011-0411), and a client in a network
namespace of the test's own for the non-loopback refusal."""

import base64
import json
import os
import shutil
import smtplib
import socket
import ssl
import subprocess
import tempfile
import textwrap
import time

import pytest

from conftest import BUILD, SCALE
from smtputil import (HOST, R_BYE, R_NEED_HELO, R_NOT_IMPL, R_OK, RawSMTP,
                      queued_id, split_received)

R_TLS_READY = "220 2.0.0 Ready to start TLS"
R_AUTH_OK = "235 2.7.0 Authentication successful"
R_AUTH_BAD = "535 5.7.8 Authentication credentials invalid"
R_AUTH_CANCEL = "501 5.0.0 Authentication cancelled"
R_AUTH_NEEDED = "530 5.7.0 Authentication required"
R_ENCRYPT = ("538 5.7.11 Encryption required for requested authentication "
             "mechanism")
R_TOO_MANY_AUTH = f"421 4.7.0 {HOST} Error: too many authentication failures"

USER = "alice"
PASSWORD = "s3cret-Pw with spaces"


def b64(data):
    return base64.b64encode(data).decode()


PLAIN_OK = b64(b"\0" + USER.encode() + b"\0" + PASSWORD.encode())
PLAIN_BAD = b64(b"\0" + USER.encode() + b"\0wrong-password")


@pytest.fixture(scope="module")
def certs():
    """A self-signed certificate for redrive.test and 127.0.0.1."""
    d = tempfile.mkdtemp(prefix="redrive-tls-")
    cert, key = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
         "-keyout", key, "-out", cert, "-days", "2", "-subj",
         "/CN=" + HOST, "-addext",
         "subjectAltName=DNS:%s,IP:127.0.0.1,IP:169.254.0.1" % HOST],
        check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    yield {"dir": d, "cert": cert, "key": key}
    shutil.rmtree(d, ignore_errors=True)


def make_users(path, users):
    """Writes a users file of `redrive passwd` lines; returns them."""
    lines = []
    for user, pw in users:
        p = subprocess.run([os.path.join(BUILD, "redrive"), "passwd", user],
                           input=pw.encode() + b"\n",
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=30)
        assert p.returncode == 0, p.stderr
        line = p.stdout.decode()
        assert line.startswith(user + ":$y$") and line.endswith("\n"), line
        assert pw not in line
        lines.append(line)
    with open(path, "w") as f:
        f.write("# test users\n\n" + "".join(lines))
    return lines


@pytest.fixture(scope="module")
def users_file(certs):
    path = os.path.join(certs["dir"], "users")
    make_users(path, [(USER, PASSWORD), ("bob", "other")])
    return path


def tls_ctx(certs):
    ctx = ssl.create_default_context(cafile=certs["cert"])
    ctx.check_hostname = True
    return ctx


def tls_daemon(daemon, certs, users=None, **relay):
    kv = {"tls_cert": certs["cert"], "tls_key": certs["key"]}
    if users is not None:
        kv["auth_users"] = users
    kv.update(relay)
    return daemon({"relay": kv})


def starttls(c, certs):
    """STARTTLS on a RawSMTP client that has said EHLO."""
    c.expect("STARTTLS", R_TLS_READY)
    assert c.buf == b""
    c.sock = tls_ctx(certs).wrap_socket(c.sock, server_hostname=HOST)
    return c


def ehlo_keywords(lines):
    return [ln[4:] for ln in lines[1:]]


def stored_show(d, mid):
    rc, out, err = d.cli("show", mid, "--json")
    assert rc == 0, err
    return json.loads(out.decode().splitlines()[0])


def send_one(c, mail_from="a@x.test", rcpt="b@y.test", body=b"hello\r\n"):
    c.expect("MAIL FROM:<%s>" % mail_from, "250 2.1.0 Ok")
    c.expect("RCPT TO:<%s>" % rcpt, "250 2.1.5 Ok")
    c.expect("DATA", "354 End data with <CR><LF>.<CR><LF>")
    c.send(b"Subject: t\r\n\r\n" + body + b".\r\n")
    return queued_id(c.reply_line(), c)


# -- STARTTLS -----------------------------------------------------------------

def test_no_tls_no_auth_when_unset(daemon):
    d = daemon()
    c = d.raw()
    kw = ehlo_keywords(c.ehlo())
    assert "STARTTLS" not in kw and not any(k.startswith("AUTH") for k in kw)
    c.expect("STARTTLS", R_NOT_IMPL)
    c.expect("AUTH PLAIN " + PLAIN_OK, R_NOT_IMPL)
    c.quit()


def test_starttls_smtplib(daemon, certs):
    d = tls_daemon(daemon, certs)
    s = smtplib.SMTP("127.0.0.1", d.port, local_hostname="client.test",
                     timeout=10)
    code, text = s.ehlo()
    assert code == 250
    assert b"STARTTLS" in text.split(b"\n")
    # No AUTH without auth_users, even from loopback.
    assert b"AUTH" not in text
    code, text = s.starttls(context=tls_ctx(certs))
    assert (code, text) == (220, b"2.0.0 Ready to start TLS")
    assert s.sock.version() in ("TLSv1.2", "TLSv1.3")
    code, text = s.ehlo()
    assert code == 250 and b"STARTTLS" not in text, text
    # A second STARTTLS inside TLS.
    assert s.docmd("STARTTLS") == (503, b"5.5.1 Error: TLS already active")
    s.sendmail("a@x.test", ["b@y.test"],
               b"Subject: over tls\r\n\r\nbody\r\n")
    s.quit()
    rows = d.log_json()
    assert len(rows) == 1
    field, rest = split_received(d.raw_message(rows[0]["id"]))
    assert b"with ESMTPS;" in field, field
    assert rest == b"Subject: over tls\r\n\r\nbody\r\n"


def test_starttls_swaks(daemon, certs):
    if shutil.which("swaks") is None:
        pytest.skip("swaks is not installed")
    d = tls_daemon(daemon, certs)
    p = subprocess.run(
        ["swaks", "--server", "127.0.0.1", "--port", str(d.port),
         "--ehlo", "client.test", "--from", "a@x.test", "--to",
         "b@y.test", "--tls", "--tls-verify", "--tls-ca-path",
         certs["cert"], "--tls-sni", HOST, "--header", "Subject: swaks",
         "--body", "hello from swaks"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
    out = p.stdout.decode("utf-8", "replace")
    assert p.returncode == 0, out
    assert "<-  220 2.0.0 Ready to start TLS" in out, out
    assert "TLS started" in out, out
    rows = d.log_json()
    assert len(rows) == 1 and rows[0]["subject"] == "swaks", rows
    field, _ = split_received(d.raw_message(rows[0]["id"]))
    assert b"with ESMTPS;" in field, field


def test_starttls_injection_discarded(daemon, certs):
    """CVE-2011-0411: a command pipelined after STARTTLS in the clear is
    never executed, neither before nor after the handshake."""
    d = tls_daemon(daemon, certs)
    c = d.raw()
    c.ehlo()
    c.send(b"STARTTLS\r\nNOOP\r\nMAIL FROM:<evil@x.test>\r\n")
    assert c.reply_line() == R_TLS_READY
    # Nothing but the 220 came in the clear.
    c.nothing_pending(wait=0.3)
    c.sock = tls_ctx(certs).wrap_socket(c.sock, server_hostname=HOST)
    # No reply for the NOOP (or the MAIL) ever arrives inside TLS.
    c.nothing_pending(wait=1.0)
    # The session was reset (RFC 3207 4.2): no HELO, no transaction.
    c.expect("MAIL FROM:<a@x.test>", R_NEED_HELO)
    c.expect("NOOP", R_OK)
    c.nothing_pending(wait=0.3)
    kw = ehlo_keywords(c.ehlo())
    assert "STARTTLS" not in kw, kw
    mid = send_one(c)
    c.quit()
    rows = d.log_json()
    assert [r["id"] for r in rows] == [mid]
    assert rows[0]["from"] == "a@x.test"


def test_starttls_state_errors(daemon, certs):
    d = tls_daemon(daemon, certs)
    c = d.raw()
    c.expect("STARTTLS", R_NEED_HELO)
    c.ehlo()
    c.expect("STARTTLS now", "501 5.5.4 Syntax: STARTTLS")
    c.expect("MAIL FROM:<a@x.test>", "250 2.1.0 Ok")
    c.expect("STARTTLS", "503 5.5.1 Error: STARTTLS not allowed during a "
             "mail transaction")
    c.expect("RSET", R_OK)
    starttls(c, certs)
    c.ehlo()
    c.expect("STARTTLS", "503 5.5.1 Error: TLS already active")
    c.quit()


def test_failed_handshake_closes_only_that_session(daemon, certs):
    d = tls_daemon(daemon, certs)
    other = d.raw()
    other.ehlo()
    c = d.raw()
    c.ehlo()
    c.expect("STARTTLS", R_TLS_READY)
    c.send(b"this is not a TLS client hello\r\n" * 4)
    c.sock.settimeout(5)
    got = b""
    try:
        while True:
            chunk = c.sock.recv(4096)
            if not chunk:
                break
            got += chunk
    except ConnectionResetError:
        pass
    # At most a TLS alert record (content type 21), never SMTP text.
    assert got == b"" or got[0] == 21, got
    c.close()
    # The other session and the daemon go on.
    other.expect("NOOP", R_OK)
    other.quit()
    c2 = d.raw()
    c2.ehlo()
    starttls(c2, certs)
    c2.ehlo()
    c2.quit()
    deadline = time.monotonic() + 5
    while "smtp tls handshake failed" not in d.log():
        assert time.monotonic() < deadline, d.log()
        time.sleep(0.05)
    assert d.log().count("smtp tls handshake failed") == 1, d.log()


def test_handshake_timeout(daemon, certs):
    d = tls_daemon(daemon, certs, timeout="1s")
    c = d.raw()
    c.ehlo()
    c.expect("STARTTLS", R_TLS_READY)
    t0 = time.monotonic()
    # No handshake: the session is closed without any cleartext reply.
    c.expect_closed(timeout=5.0)
    assert time.monotonic() - t0 >= 0.5


def run_redrived(conf_path):
    return subprocess.run([os.path.join(BUILD, "redrived"), "-c", conf_path],
                          stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, timeout=30)


def test_bad_certificate_stops_start(daemon, certs):
    bad = os.path.join(certs["dir"], "bad.pem")
    with open(bad, "w") as f:
        f.write("-----BEGIN CERTIFICATE-----\nnot base64\n"
                "-----END CERTIFICATE-----\n")
    d = daemon({"relay": {"tls_cert": bad, "tls_key": certs["key"]}},
               allow_errors=True, start=False)
    p = run_redrived(d.conf_path)
    out = p.stdout.decode("utf-8", "replace")
    assert p.returncode != 0, out
    assert "cannot load the relay's TLS certificate" in out, out
    assert bad in out, out
    # A key that does not match the certificate.
    other = os.path.join(certs["dir"], "other.key")
    subprocess.run(["openssl", "genrsa", "-out", other, "2048"], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    d2 = daemon({"relay": {"tls_cert": certs["cert"], "tls_key": other}},
                allow_errors=True, start=False)
    p = run_redrived(d2.conf_path)
    out = p.stdout.decode("utf-8", "replace")
    assert p.returncode != 0 and other in out, out
    assert "mismatch" in out or "does not match" in out, out


# -- AUTH ------------------------------------------------------------------------

def test_bad_users_file_stops_start(daemon, certs, users_file):
    cases = [
        ("alice:$y$j9T$x$y\nbroken line\n", ":2: expected user:crypt-hash"),
        ("alice:plaintext\n", ":1: bad hash"),
        (open(users_file).read() + "alice:$6$abc$def\n", "user named twice"),
        ("bad user:$6$abc$def\n", ":1: bad user name"),
    ]
    for i, (text, want) in enumerate(cases):
        path = os.path.join(certs["dir"], "users.bad%d" % i)
        with open(path, "w") as f:
            f.write(text)
        d = daemon({"relay": {"auth_users": path}}, allow_errors=True,
                   start=False)
        p = run_redrived(d.conf_path)
        out = p.stdout.decode("utf-8", "replace")
        assert p.returncode != 0, out
        assert path + want in out or (path in out and want in out), \
            (want, out)
    missing = os.path.join(certs["dir"], "no-such-users")
    d = daemon({"relay": {"auth_users": missing}}, allow_errors=True,
               start=False)
    p = run_redrived(d.conf_path)
    out = p.stdout.decode("utf-8", "replace")
    assert p.returncode != 0 and missing in out, out


def test_passwd_command():
    exe = os.path.join(BUILD, "redrive")
    p = subprocess.run([exe, "passwd", "carol"], input=b"pw\n",
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert p.returncode == 0, p.stderr
    line = p.stdout.decode()
    user, h = line.rstrip("\n").split(":", 1)
    assert user == "carol" and h.startswith("$y$"), line
    # A random salt each time.
    p2 = subprocess.run([exe, "passwd", "carol"], input=b"pw\n",
                        stdout=subprocess.PIPE)
    assert p2.stdout != p.stdout
    assert p.stdout.count(b"\n") == 1
    for bad in (["passwd"], ["passwd", "a:b"], ["passwd", "a", "b"]):
        q = subprocess.run([exe] + bad, input=b"pw\n",
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert q.returncode == 2, (bad, q)
    q = subprocess.run([exe, "passwd", "carol"], input=b"",
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert q.returncode == 1 and q.stdout == b""
    q = subprocess.run([exe, "passwd", "--help"], stdout=subprocess.PIPE)
    assert q.returncode == 0 and b"usage: redrive passwd USER" in q.stdout
    q = subprocess.run([exe, "--help"], stdout=subprocess.PIPE)
    assert b"passwd USER" in q.stdout


def test_auth_plain_and_login(daemon, certs, users_file):
    d = tls_daemon(daemon, certs, users=users_file)
    # PLAIN with an initial response, from loopback in the clear.
    c = d.raw()
    kw = ehlo_keywords(c.ehlo())
    assert "AUTH PLAIN LOGIN" in kw and "STARTTLS" in kw, kw
    c.expect("AUTH PLAIN " + PLAIN_OK, R_AUTH_OK)
    c.expect("AUTH PLAIN " + PLAIN_OK, "503 5.5.1 Error: already "
             "authenticated")
    mid = send_one(c)
    c.quit()
    # PLAIN with the empty 334 challenge, over TLS.
    c = d.raw()
    c.ehlo()
    starttls(c, certs)
    kw = ehlo_keywords(c.ehlo())
    assert "AUTH PLAIN LOGIN" in kw and "STARTTLS" not in kw, kw
    c.expect("AUTH PLAIN", "334 ")
    c.expect(PLAIN_OK, R_AUTH_OK)
    mid2 = send_one(c)
    c.quit()
    # LOGIN with its two prompts; user and password as separate lines.
    c = d.raw()
    c.ehlo()
    c.expect("AUTH LOGIN", "334 VXNlcm5hbWU6")
    c.expect(b64(USER.encode()), "334 UGFzc3dvcmQ6")
    c.expect(b64(PASSWORD.encode()), R_AUTH_OK)
    c.quit()
    # LOGIN with the user name as initial response; smtplib's login.
    c = d.raw()
    c.ehlo()
    c.expect("AUTH LOGIN " + b64(USER.encode()), "334 UGFzc3dvcmQ6")
    c.expect(b64(PASSWORD.encode()), R_AUTH_OK)
    c.quit()
    s = smtplib.SMTP("127.0.0.1", d.port, local_hostname="client.test",
                     timeout=10)
    s.starttls(context=tls_ctx(certs))
    s.ehlo()
    assert s.login("bob", "other")[0] == 235
    s.quit()
    # The stored messages carry the user; Received says ESMTPA/ESMTPSA.
    assert stored_show(d, mid)["auth_user"] == USER
    assert stored_show(d, mid2)["auth_user"] == USER
    f1, _ = split_received(d.raw_message(mid))
    f2, _ = split_received(d.raw_message(mid2))
    assert b"with ESMTPA;" in f1 and b"with ESMTPSA;" in f2, (f1, f2)
    rc, out, _ = d.cli("show", mid)
    assert rc == 0 and b"Auth user:   alice" in out, out
    log = d.log()
    assert "smtp auth ok" in log and "user=alice" in log, log
    assert PASSWORD not in log and "s3cret" not in log
    assert PLAIN_OK not in log and b64(PASSWORD.encode()) not in log


def test_auth_failures_and_cancel(daemon, certs, users_file):
    d = tls_daemon(daemon, certs, users=users_file)
    c = d.raw()
    c.expect("AUTH PLAIN " + PLAIN_OK, R_NEED_HELO)
    c.ehlo()
    c.expect("AUTH PLAIN " + PLAIN_BAD, R_AUTH_BAD)
    c.expect("AUTH PLAIN", "334 ")
    c.expect("*", R_AUTH_CANCEL)
    c.expect("AUTH LOGIN", "334 VXNlcm5hbWU6")
    c.expect(b64(b"nobody"), "334 UGFzc3dvcmQ6")
    c.expect(b64(PASSWORD.encode()), R_AUTH_BAD)  # unknown user
    c.expect("AUTH LOGIN", "334 VXNlcm5hbWU6")
    c.expect("*", R_AUTH_CANCEL)
    c.expect("AUTH PLAIN not-base64!", "501 5.5.2 Cannot decode response")
    c.expect("AUTH CRAM-MD5", "504 5.5.4 Unrecognized authentication type")
    c.expect("AUTH", "501 5.5.4 Syntax: AUTH mechanism")
    # authzid other than the user: refused.
    c.expect("AUTH PLAIN " + b64(b"bob\0alice\0" + PASSWORD.encode()),
             R_AUTH_BAD)
    # Not authenticated: the next message has no auth_user.
    mid = send_one(c)
    # AUTH inside a transaction.
    c.expect("MAIL FROM:<a@x.test>", "250 2.1.0 Ok")
    c.expect("AUTH PLAIN " + PLAIN_OK,
             "503 5.5.1 Error: AUTH not allowed during a mail transaction")
    c.expect("RSET", R_OK)
    # Fourth failure and after: answered after a growing delay.
    t0 = time.monotonic()
    c.expect("AUTH PLAIN " + PLAIN_BAD, R_AUTH_BAD)
    assert time.monotonic() - t0 >= 0.9
    # Commands pipelined behind a delayed AUTH wait for it, in order.
    t0 = time.monotonic()
    c.send("AUTH PLAIN %s\r\nNOOP\r\n" % PLAIN_OK)
    assert c.reply_line() == R_AUTH_OK
    assert c.reply_line() == R_OK
    c.quit()
    assert stored_show(d, mid)["auth_user"] is None
    log = d.log()
    assert "smtp auth failed" in log
    assert PASSWORD not in log and "wrong-password" not in log
    assert PLAIN_BAD not in log


def test_auth_too_many_failures_close(daemon, certs, users_file):
    d = tls_daemon(daemon, certs, users=users_file)
    c = d.raw(timeout=15)
    c.ehlo()
    times = []
    for i in range(9):
        t0 = time.monotonic()
        c.expect("AUTH PLAIN " + PLAIN_BAD, R_AUTH_BAD)
        times.append(time.monotonic() - t0)
    # No delay for the first three; then 1 s, 2 s, 4 s, 4 s...  (upper
    # bounds scaled: valgrind makes each hash slow).
    shown = " ".join("%.3f" % t for t in times)
    assert all(t < 0.9 * SCALE for t in times[:3]), shown
    assert 0.9 <= times[3] < 1.9 * SCALE, shown
    assert 1.9 <= times[4] < 3.9 * SCALE, shown
    assert all(3.9 <= t < 7.0 * SCALE for t in times[5:]), shown
    # Another session is served meanwhile (the loop never blocks).
    o = d.raw()
    o.ehlo()
    c.send("AUTH PLAIN %s\r\n" % PLAIN_BAD)
    o.expect("NOOP", R_OK)
    o.quit()
    assert c.reply_line() == R_AUTH_BAD
    assert c.reply_line() == R_TOO_MANY_AUTH
    c.expect_closed()


def test_require_auth(daemon, certs, users_file):
    d = tls_daemon(daemon, certs, users=users_file, require_auth="yes")
    c = d.raw()
    c.ehlo()
    c.expect("MAIL FROM:<a@x.test>", R_AUTH_NEEDED)
    c.expect("AUTH PLAIN " + PLAIN_BAD, R_AUTH_BAD)
    c.expect("MAIL FROM:<a@x.test>", R_AUTH_NEEDED)
    c.expect("AUTH PLAIN " + PLAIN_OK, R_AUTH_OK)
    mid = send_one(c)
    c.quit()
    assert stored_show(d, mid)["auth_user"] == USER
    # STARTTLS forgets the authentication (RFC 3207 4.2).
    c = d.raw()
    c.ehlo()
    c.expect("AUTH PLAIN " + PLAIN_OK, R_AUTH_OK)
    starttls(c, certs)
    c.ehlo()
    c.expect("MAIL FROM:<a@x.test>", R_AUTH_NEEDED)
    c.quit()
    assert [r["id"] for r in d.log_json()] == [mid]


def test_session_closed_during_check(daemon, certs, users_file):
    """The client leaves while its password is being checked: the answer
    is dropped, nothing breaks (ASan/valgrind watch the daemon)."""
    d = tls_daemon(daemon, certs, users=users_file)
    for _ in range(5):
        c = d.raw()
        c.ehlo()
        c.send("AUTH PLAIN %s\r\n" % PLAIN_OK)
        c.close()
    c = d.raw()
    c.ehlo()
    c.expect("AUTH PLAIN " + PLAIN_OK, R_AUTH_OK)
    c.quit()


# -- AUTH from a non-loopback client -------------------------------------------

NS_CLIENT = textwrap.dedent(r'''
    import base64, json, socket, ssl, sys
    host, port, cafile, plain = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    out = {}
    s = socket.create_connection((host, port), timeout=10)
    f = s.makefile("rb")
    def reply(f):
        lines = []
        while True:
            ln = f.readline().decode().rstrip("\r\n")
            lines.append(ln)
            if len(ln) < 4 or ln[3] == " ":
                return lines
    def cmd(sock, f, line):
        sock.sendall(line.encode() + b"\r\n")
        return reply(f)
    out["greeting"] = reply(f)
    out["ehlo"] = cmd(s, f, "EHLO ns.test")
    out["auth_plain"] = cmd(s, f, "AUTH PLAIN " + plain)
    out["auth_login"] = cmd(s, f, "AUTH LOGIN")
    out["starttls"] = cmd(s, f, "STARTTLS")
    ctx = ssl.create_default_context(cafile=cafile)
    t = ctx.wrap_socket(s, server_hostname="redrive.test")
    tf = t.makefile("rb")
    out["ehlo_tls"] = cmd(t, tf, "EHLO ns.test")
    out["auth_tls"] = cmd(t, tf, "AUTH PLAIN " + plain)
    out["quit"] = cmd(t, tf, "QUIT")
    print(json.dumps(out))
''')


def sh(*args, check=True):
    return subprocess.run(list(args), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, check=check, timeout=30)


def test_auth_refused_over_plaintext_non_loopback(daemon, certs,
                                                  users_file):
    if shutil.which("ip") is None:
        pytest.skip("no ip command")
    pid = os.getpid()
    ns = "rdtest%d" % pid
    vh, vn = "rdh%d" % (pid % 100000), "rdn%d" % (pid % 100000)
    octet = 10 + pid % 200
    host_ip, ns_ip = "169.254.%d.1" % octet, "169.254.%d.2" % octet
    p = sh("ip", "netns", "add", ns, check=False)
    if p.returncode != 0:
        pytest.skip("ip netns add failed (not root?): %s" %
                    p.stderr.decode().strip())
    try:
        sh("ip", "link", "add", vh, "type", "veth", "peer", "name", vn)
        sh("ip", "link", "set", vn, "netns", ns)
        sh("ip", "addr", "add", host_ip + "/30", "dev", vh)
        sh("ip", "link", "set", vh, "up")
        sh("ip", "netns", "exec", ns, "ip", "addr", "add", ns_ip + "/30",
           "dev", vn)
        sh("ip", "netns", "exec", ns, "ip", "link", "set", vn, "up")
        sh("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")
        d = daemon({"relay": {
            "tls_cert": certs["cert"], "tls_key": certs["key"],
            "auth_users": users_file,
            "allow": "169.254.0.0/16 127.0.0.0/8"}}, start=False)
        d.config["relay"]["listen"] = "%s:%d" % (host_ip, d.port)
        with open(d.conf_path, "w") as f:
            for sect, kv in d.config.items():
                f.write("[%s]\n" % sect)
                for k, v in kv.items():
                    f.write("%s = %s\n" % (k, v))

        def wait_ready(limit):
            deadline = time.monotonic() + limit
            while True:
                assert d.proc.poll() is None, d.log()
                try:
                    c = RawSMTP(d.port, host=host_ip, timeout=2)
                    c.quit()
                    return
                except OSError:
                    assert time.monotonic() < deadline, d.log()
                    time.sleep(0.05)

        d._wait_ready = wait_ready
        d.start()
        # The link may need a moment before the namespace can reach us.
        for _ in range(50):
            q = sh("ip", "netns", "exec", ns, "python3", "-c",
                   "import socket,sys; socket.create_connection("
                   "(sys.argv[1], int(sys.argv[2])), timeout=2).close()",
                   host_ip, str(d.port), check=False)
            if q.returncode == 0:
                break
            time.sleep(0.1)
        q = sh("ip", "netns", "exec", ns, "python3", "-c", NS_CLIENT,
               host_ip, str(d.port), certs["cert"], PLAIN_OK, check=False)
        assert q.returncode == 0, q.stderr.decode()
        out = json.loads(q.stdout.decode())
        assert out["greeting"] == ["220 %s ESMTP redrive" % HOST], out
        kw = [ln[4:] for ln in out["ehlo"][1:]]
        assert "STARTTLS" in kw, out
        assert not any(k.startswith("AUTH") for k in kw), out
        assert out["auth_plain"] == [R_ENCRYPT], out
        assert out["auth_login"] == [R_ENCRYPT], out
        assert out["starttls"] == [R_TLS_READY], out
        kw = [ln[4:] for ln in out["ehlo_tls"][1:]]
        assert "AUTH PLAIN LOGIN" in kw and "STARTTLS" not in kw, out
        assert out["auth_tls"] == [R_AUTH_OK], out
        assert out["quit"] == [R_BYE], out
        assert "client=%s" % ns_ip in d.log(), d.log()
    finally:
        sh("ip", "link", "del", vh, check=False)
        sh("ip", "netns", "del", ns, check=False)
