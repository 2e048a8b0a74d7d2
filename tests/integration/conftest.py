"""Fixtures of the redrive integration suite.

`daemon(...)` starts build/redrived on a private config, store and free
loopback port and stops it at the end of the test: SIGTERM, exit code 0,
and a log with no "level=error" line (unless the test opted out), no
sanitizer report.  REDRIVE_BUILD names the build directory (default: the
repository's build/); REDRIVE_VALGRIND=1 runs the daemon and the `redrive`
CLI of Daemon.cli under valgrind (VALGRIND_CMD): a valgrind error makes
the process exit 99, which stop() and cli() turn into a test failure.
"""

import json
import os
import re
import resource
import shutil
import signal
import smtplib
import socket
import subprocess
import tempfile
import time

import pytest

import smtputil
from smtputil import HOST, RawSMTP, check_received, split_received

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
BUILD = os.environ.get("REDRIVE_BUILD") or os.path.join(REPO, "build")
VALGRIND = os.environ.get("REDRIVE_VALGRIND") == "1"
SCALE = smtputil.scale()
# The valgrind prefix of every wrapped command: exit 99 on any error,
# definite and indirect leaks count as errors.
VALGRIND_CMD = ["valgrind", "--error-exitcode=99", "--leak-check=full",
                "--errors-for-leak-kinds=definite,indirect", "-q"]
VALGRIND_SUPP = os.path.join(REPO, "tests", "valgrind.supp")
if os.path.exists(VALGRIND_SUPP):
    VALGRIND_CMD.append("--suppressions=" + VALGRIND_SUPP)

SANITIZER_MARKS = ("AddressSanitizer", "LeakSanitizer", "runtime error:",
                   "ThreadSanitizer")


def free_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
    finally:
        s.close()


def default_config(tmp, port):
    return {
        "relay": {
            "listen": "127.0.0.1:%d" % port,
            "hostname": HOST,
            "timeout": "5m",
            "max_message_size": "25M",
            "max_recipients": "1000",
            "max_connections": "1000",
            "allow": "127.0.0.0/8 ::1",
        },
        "tracker": {"enabled": "no"},
        "store": {"path": os.path.join(tmp, "redrive.db")},
    }


def parse_size(text):
    """'10K' -> 10240, as the config documents sizes (K/M/G of 1024)."""
    m = re.fullmatch(r"([0-9]+)([KMG]?)", text)
    assert m, text
    mult = {"": 1, "K": 1024, "M": 1024 ** 2, "G": 1024 ** 3}[m.group(2)]
    return int(m.group(1)) * mult


class Daemon:
    """One redrived process on its own temp dir, config and store."""

    def __init__(self, tmp, overrides=None, allow_errors=False,
                 rlimit_nofile=None):
        self.dir = tmp
        # RLIMIT_NOFILE (soft and hard) of the daemon, or None to inherit.
        self.rlimit_nofile = rlimit_nofile
        self.port = free_port()
        self.config = default_config(tmp, self.port)
        for sect, kv in (overrides or {}).items():
            sec = self.config.setdefault(sect, {})
            for k, v in kv.items():
                if v is None:
                    sec.pop(k, None)
                else:
                    sec[k] = str(v)
        if "listen" in self.config.get("relay", {}):
            self.port = int(self.config["relay"]["listen"].rsplit(":", 1)[1])
        self.store = self.config["store"]["path"]
        self.conf_path = os.path.join(tmp, "redrive.conf")
        with open(self.conf_path, "w") as f:
            for sect, kv in self.config.items():
                f.write("[%s]\n" % sect)
                for k, v in kv.items():
                    f.write("%s = %s\n" % (k, v))
                f.write("\n")
        self.allow_errors = allow_errors
        self.proc = None
        self.runs = 0
        self.log_path = None
        self.logs = []          # every run's log file
        self.killed = False     # the current run was SIGKILLed

    @property
    def max_size(self):
        return parse_size(self.config["relay"]["max_message_size"])

    # -- process --------------------------------------------------------------
    def start(self):
        assert self.proc is None
        self.runs += 1
        self.killed = False
        self.log_path = os.path.join(self.dir, "redrived.%d.log" % self.runs)
        self.logs.append(self.log_path)
        cmd = [os.path.join(BUILD, "redrived"), "-c", self.conf_path]
        if VALGRIND:
            cmd = VALGRIND_CMD + cmd
        env = dict(os.environ)
        env.pop("REDRIVE_CONFIG", None)
        for k in ("MAILGUN_API_KEY", "MAILGUN_DOMAIN", "MAILGUN_API_BASE",
                  "MAILGUN_WEBHOOK_SIGNING_KEY"):
            env.pop(k, None)
        env.setdefault("ASAN_OPTIONS", "abort_on_error=0:detect_leaks=1")
        env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1")
        preexec = None
        if self.rlimit_nofile is not None:
            n = self.rlimit_nofile

            def preexec():
                resource.setrlimit(resource.RLIMIT_NOFILE, (n, n))
        logf = open(self.log_path, "wb")
        try:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL,
                                         stdout=logf, stderr=logf,
                                         cwd=self.dir, env=env,
                                         preexec_fn=preexec)
        finally:
            logf.close()
        self._wait_ready(10.0 * SCALE)
        return self

    def _wait_ready(self, limit):
        deadline = time.monotonic() + limit
        while True:
            if self.proc.poll() is not None:
                pytest.fail("redrived exited with %d at start; log:\n%s" % (
                    self.proc.returncode, self.log()))
            try:
                s = socket.create_connection(("127.0.0.1", self.port),
                                             timeout=1.0)
            except OSError:
                if time.monotonic() > deadline:
                    self._abort()
                    pytest.fail("redrived did not accept connections on "
                                "port %d within %.0fs; log:\n%s" % (
                                    self.port, limit, self.log()))
                time.sleep(0.02)
                continue
            # Be a polite client: read the greeting, QUIT, wait for the
            # close, so that the probe is gone before the test begins.
            try:
                s.settimeout(5.0 * SCALE)
                buf = b""
                while b"\n" not in buf:
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    buf += chunk
                if buf.startswith(b"220"):
                    s.sendall(b"QUIT\r\n")
                while s.recv(4096):
                    pass
            except OSError:
                pass
            finally:
                s.close()
            time.sleep(0.05)
            return

    def _abort(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def kill(self, sig=signal.SIGKILL):
        """SIGKILL (a crash); the exit code is not checked for this run."""
        self.proc.send_signal(sig)
        self.proc.wait(10)
        self.killed = True
        self.proc = None

    def terminate(self):
        """Sends SIGTERM and returns at once (see wait_exit)."""
        self.proc.send_signal(signal.SIGTERM)

    def wait_exit(self, check=True):
        """Waits (10 s) for the daemon to exit; returns the exit code."""
        return self.stop(check=check, signal_it=False)

    def stop(self, check=True, signal_it=True):
        """SIGTERM; waits; returns the exit code."""
        p = self.proc
        self.proc = None
        if signal_it:
            p.send_signal(signal.SIGTERM)
        try:
            rc = p.wait(10.0 * SCALE)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            if check:
                pytest.fail("redrived did not exit within %.0fs of SIGTERM;"
                            " log:\n%s" % (10.0 * SCALE, self.log()))
            return None
        if check:
            assert rc == 0, "redrived exited with %d after SIGTERM; log:\n%s" \
                % (rc, self.log())
        return rc

    def restart(self):
        if self.proc is not None:
            self.stop()
        return self.start()

    def log(self, run=None):
        path = self.log_path if run is None else self.logs[run]
        try:
            with open(path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return "(no log)"

    def all_logs(self):
        return "".join(self.log(i) for i in range(len(self.logs)))

    def check_log(self):
        text = self.all_logs()
        for mark in SANITIZER_MARKS:
            assert mark not in text, "sanitizer report in the log:\n" + text
        if VALGRIND:
            assert not re.search(r"^==\d+== ", text, re.M), \
                "valgrind report:\n" + text
        if not self.allow_errors:
            bad = [ln for ln in text.splitlines() if "level=error" in ln]
            assert not bad, "level=error in the daemon log:\n" + \
                "\n".join(bad)

    # -- clients --------------------------------------------------------------
    def raw(self, timeout=5.0, greet=True):
        """A RawSMTP client; checks the 220 greeting."""
        c = RawSMTP(self.port, timeout=timeout, greet=greet)
        if greet:
            assert c.greeting == smtputil.R_GREETING, c.greeting
        return c

    def smtp(self, timeout=10.0):
        """An smtplib client that has said EHLO."""
        s = smtplib.SMTP("127.0.0.1", self.port, local_hostname="client.test",
                         timeout=timeout * SCALE)
        code, _ = s.ehlo()
        assert code == 250
        return s

    def cli(self, *args, stdin=None, valgrind=True):
        """Runs `redrive --db STORE ARGS`; returns (rc, stdout bytes,
        stderr str).  valgrind=False: never under valgrind (for a read
        that must be prompt)."""
        cmd = [os.path.join(BUILD, "redrive"), "--db", self.store]
        cmd += [str(a) for a in args]
        valgrind = VALGRIND and valgrind
        if valgrind:
            cmd = VALGRIND_CMD + cmd
        env = dict(os.environ)
        env.pop("REDRIVE_CONFIG", None)
        p = subprocess.run(cmd, input=stdin, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=30 * SCALE,
                           env=env)
        err = p.stderr.decode("utf-8", "replace")
        for mark in SANITIZER_MARKS:
            assert mark not in err, "sanitizer report from the CLI:\n" + err
        if valgrind:
            assert p.returncode != 99 and \
                not re.search(r"^==\d+== ", err, re.M), \
                "valgrind report from %r:\n%s" % (args, err)
        return p.returncode, p.stdout, err

    def log_json(self, valgrind=True):
        """`redrive log --json`: the list of message objects."""
        rc, out, err = self.cli("log", "--json", "--limit", "100000",
                                valgrind=valgrind)
        assert rc == 0, "redrive log --json: rc %d: %s" % (rc, err)
        rows = []
        for ln in out.decode("utf-8").splitlines():
            if ln.strip():
                rows.append(json.loads(ln))
        return rows

    def raw_message(self, mid):
        rc, out, err = self.cli("show", mid, "--raw")
        assert rc == 0, "redrive show %s --raw: rc %d: %s" % (mid, rc, err)
        return out

    def assert_store(self, expected, helo="client.test"):
        """expected: a list of dicts with id, from, rcpts, data (the
        client's message after dot-unstuffing, CR LF) and optionally
        subject.  Asserts that the store holds exactly these."""
        rows = self.log_json()
        by_id = {}
        for r in rows:
            assert isinstance(r.get("id"), int), r
            assert r["id"] not in by_id, "id listed twice: %r" % r
            by_id[r["id"]] = r
        want_ids = sorted(e["id"] for e in expected)
        assert sorted(by_id) == want_ids, \
            "store holds ids %r, expected %r" % (sorted(by_id), want_ids)
        ids = [r["id"] for r in rows]
        assert ids == sorted(ids, reverse=True), \
            "log is not newest first: %r" % ids
        for e in expected:
            r = by_id[e["id"]]
            assert r["from"] == e["from"], (r, e["from"])
            got = [x["address"] for x in r["recipients"]]
            assert sorted(got) == sorted(e["rcpts"]), (got, e["rcpts"])
            for x in r["recipients"]:
                assert x["status"] == "queued", r
            assert r["status"] == "queued", r
            if "subject" in e:
                assert r.get("subject") == e["subject"], r
            raw = self.raw_message(e["id"])
            field, rest = split_received(raw)
            check_received(field, helo=e.get("helo", helo),
                           rcpts=e["rcpts"])
            assert rest == e["data"], \
                "stored bytes of %d differ:\n got %r\nwant %r" % (
                    e["id"], rest[:2000], e["data"][:2000])
            # size: the spec names the field only; accept the stored size
            # (Received included) or the client's message size.
            assert r["size"] in (len(raw), len(e["data"])), \
                "size %r is neither %d (stored) nor %d (client bytes)" % (
                    r["size"], len(raw), len(e["data"]))
        return rows


@pytest.fixture
def daemon(request):
    """Factory: daemon(overrides={section: {key: value}}, allow_errors=False,
    start=True, rlimit_nofile=None) -> Daemon.  Stopped and checked at
    teardown."""
    made = []

    def make(overrides=None, allow_errors=False, start=True,
             rlimit_nofile=None):
        tmp = tempfile.mkdtemp(prefix="redrive-it-")
        d = Daemon(tmp, overrides, allow_errors, rlimit_nofile)
        made.append(d)
        if start:
            d.start()
        return d

    yield make

    rep = getattr(request.node, "rep_call", None)
    failed = rep is not None and rep.failed
    problems = []
    for d in made:
        try:
            if d.proc is not None:
                d.stop(check=True)
            d.check_log()
        except BaseException as e:  # stop every daemon, then report
            problems.append("%s: %s" % (d.dir, e))
            failed = True
        finally:
            if d.proc is not None:
                d._abort()
    for d in made:
        if not failed and os.environ.get("REDRIVE_KEEP") != "1":
            shutil.rmtree(d.dir, ignore_errors=True)
        else:
            print("kept", d.dir)
    if problems:
        pytest.fail("\n\n".join(problems), pytrace=False)


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


@pytest.fixture(scope="session", autouse=True)
def binaries():
    for b in ("redrived", "redrive"):
        path = os.path.join(BUILD, b)
        if not os.access(path, os.X_OK):
            pytest.fail("%s is missing: build it with make" % path)
    if VALGRIND and not shutil.which("valgrind"):
        pytest.fail("REDRIVE_VALGRIND=1 but valgrind is not installed")
