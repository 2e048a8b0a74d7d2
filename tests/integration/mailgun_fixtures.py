"""Fixtures for the forwarding tests: the Mailgun simulator
(tests/mailgun_sim/mailgun_sim.py) as a separate process on a free loopback
port, a small client for its /_sim/ control API, and the [mailgun] config
overrides that point redrived at it.

Import the fixtures into a test module:

    from mailgun_fixtures import mailgun_sim, mailgun_config  # noqa: F401
"""

import base64
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request

import pytest

from smtputil import scale

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
SIM = os.path.join(REPO, "tests", "mailgun_sim", "mailgun_sim.py")

DOMAIN = "mg.redrive.test"
API_KEY = "key-forward-test-0123456789"
SCALE = scale()


class SimClient:
    """The simulator's control API (tests/mailgun_sim/README.md)."""

    def __init__(self, base_url, log_path):
        self.base_url = base_url
        self.log_path = log_path

    def _call(self, method, path, obj=None):
        data = None if obj is None else json.dumps(obj).encode()
        req = urllib.request.Request(self.base_url + path, data=data,
                                     method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.loads(r.read().decode())

    def messages(self):
        """Accepted sends, oldest first."""
        return self._call("GET", "/_sim/messages")

    def requests(self):
        """Every API request made, oldest first."""
        return self._call("GET", "/_sim/requests")

    def faults(self, *faults):
        return self._call("POST", "/_sim/faults", {"faults": list(faults)})

    def auth_fail(self, on):
        return self._call("POST", "/_sim/auth-fail", {"on": bool(on)})

    def reset(self):
        return self._call("POST", "/_sim/reset", {})

    def events(self):
        """Every event-data recorded, oldest first."""
        return self._call("GET", "/_sim/events")

    def webhooks(self):
        """Every webhook with its body, attempts and state."""
        return self._call("GET", "/_sim/webhooks")

    def rules(self, rules, replace=False):
        """Delivery rules by address, local-part prefix or '*'."""
        return self._call("POST", "/_sim/rules",
                          {"rules": rules, "replace": bool(replace)})

    def idle(self, timeout=10):
        """Waits until no delivery or webhook post is pending."""
        return self._call("GET", "/_sim/idle?timeout=%g" % timeout)

    def expire_storage(self, key=None):
        """Makes one stored copy (key) or all of them 404."""
        obj = {"all": True} if key is None else {"key": key}
        return self._call("POST", "/_sim/storage/expire", obj)

    def set_webhook_url(self, url):
        return self._call("POST", "/_sim/webhook-url", {"url": url})

    def replay_webhook(self, index):
        """Posts webhook `index` again, same body and signature."""
        return self._call("POST", "/_sim/webhooks/replay", {"index": index})

    def configure(self, **kw):
        return self._call("POST", "/_sim/config", kw)

    def messages_for(self, redrive_id):
        """The accepted sends that carry v:redrive-id = redrive_id."""
        return [m for m in self.messages()
                if m.get("variables", {}).get("redrive-id") ==
                str(redrive_id)]

    @staticmethod
    def body(msg):
        """The bytes of a send's `message` part."""
        return base64.b64decode(msg["message_b64"])

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return "(no simulator log)"


@pytest.fixture
def mailgun_sim():
    """Starts the simulator on a free port (--port 0 --port-file); yields a
    SimClient; stops it (SIGTERM) at the end."""
    with run_simulator() as sim:
        yield sim


@contextlib.contextmanager
def run_simulator(*extra_args):
    """The simulator as a process, with extra command-line options (e.g.
    --webhook-signing-key); yields a SimClient, stops it at the end."""
    tmp = tempfile.mkdtemp(prefix="redrive-sim-")
    port_file = os.path.join(tmp, "port")
    log_path = os.path.join(tmp, "sim.log")
    logf = open(log_path, "wb")
    try:
        proc = subprocess.Popen(
            [sys.executable, SIM, "--port", "0", "--port-file", port_file,
             "--domain", DOMAIN, "--api-key", API_KEY,
             "--delivery-delay", "0.01"] + list(extra_args),
            stdin=subprocess.DEVNULL, stdout=logf, stderr=logf)
    finally:
        logf.close()
    deadline = time.monotonic() + 10 * SCALE
    port = None
    while port is None:
        if proc.poll() is not None:
            pytest.fail("the simulator exited with %d:\n%s" % (
                proc.returncode, open(log_path).read()))
        try:
            with open(port_file) as f:
                port = int(f.read().strip())
        except (OSError, ValueError):
            if time.monotonic() > deadline:
                proc.kill()
                pytest.fail("the simulator did not start")
            time.sleep(0.02)
    sim = SimClient("http://127.0.0.1:%d" % port, log_path)
    try:
        yield sim
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        for name in ("port", "sim.log"):
            try:
                os.unlink(os.path.join(tmp, name))
            except OSError:
                pass
        try:
            os.rmdir(tmp)
        except OSError:
            pass


def mailgun_overrides(sim, **mailgun):
    """Daemon config overrides: [mailgun] pointed at the simulator with
    short retry times; keyword arguments override or add [mailgun] keys."""
    mg = {
        "api_key": API_KEY,
        "domain": DOMAIN,
        "api_base": sim.base_url,
        "retry_min": "100ms",
        "retry_max": "1s",
        "timeout": "2s",
    }
    mg.update({k: str(v) for k, v in mailgun.items()})
    return {"mailgun": mg}


@pytest.fixture
def mailgun_config(mailgun_sim):
    """A function: mailgun_config(**extra) -> overrides for daemon()."""
    def make(**extra):
        return mailgun_overrides(mailgun_sim, **extra)
    return make
