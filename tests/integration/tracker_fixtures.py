"""Fixtures for the tracker tests: the Mailgun simulator posting signed
webhooks to the real daemon's tracker, and a small client for both.

`tracker(retry=..., tracker=..., mailgun=...)` starts redrived with the
relay, the forwarder (pointed at the simulator), the tracker on a free
loopback port and the re-drive scheduler, with short [retry] timings;
it points the simulator's webhooks at the tracker and waits for
GET /healthz.  It returns a Tracker, whose methods send mail over SMTP,
read the store through the CLI (`log --json`, `show --json`) and post
hand-made webhooks signed with hmac/sha256 (FACTS.md 3.8).

Import the fixtures into a test module:

    from tracker_fixtures import tracker, tracker_sim  # noqa: F401
"""

import hashlib
import hmac
import http.client
import json
import re
import secrets
import smtplib
import time

import pytest

from conftest import free_port
from mailgun_fixtures import DOMAIN, SCALE, mailgun_overrides, run_simulator

SIGNING_KEY = "whsec-tracker-test-5b1e0c9d7f"
HOOK_PATH = "/webhooks/mailgun"
# [retry] backoff_base of the tests (ms), and backoff_factor.
BACKOFF_MS = 300
FACTOR = 2
# include/redrive/redrive.h REDRIVE_TICK_MS: the scheduler looks at the
# schedule at least this often (the tracker does not wake it up), so a
# re-drive happens between its due time and about this much later.
TICK = 2.0

QUEUED_TEXT = re.compile(rb"^2\.0\.0 Ok: queued as ([0-9]+)$")

MESSAGE = (b"From: App <app@example.com>\r\n"
           b"To: Someone <someone@example.net>\r\n"
           b"Subject: tracker test\r\n"
           b"Message-ID: <%s@client.test>\r\n"
           b"\r\n"
           b"Hello.\r\n")


# ---- signing ----------------------------------------------------------------

def sign(timestamp, token, key=SIGNING_KEY):
    """Mailgun's signature: lowercase hex HMAC-SHA256(key, ts || token)."""
    return hmac.new(key.encode(), (timestamp + token).encode(),
                    hashlib.sha256).hexdigest()


def new_token():
    """50 hex digits, like Mailgun's."""
    return secrets.token_hex(25)


def hook_body(event_data, timestamp=None, token=None, key=SIGNING_KEY,
              signature=None, extra=None):
    """A JSON webhook body (bytes) with a signature block made with key;
    `signature` replaces the computed one, `extra` adds top-level keys.
    event_data may be anything JSON (or the `...` Ellipsis: left out)."""
    ts = str(int(time.time())) if timestamp is None else str(timestamp)
    tok = new_token() if token is None else token
    sig = sign(ts, tok, key) if signature is None else signature
    obj = {"signature": {"timestamp": ts, "token": tok, "signature": sig}}
    if event_data is not ...:
        obj["event-data"] = event_data
    obj.update(extra or {})
    return json.dumps(obj).encode()


def event_data(event, recipient, redrive_id=None, message_id=None,
               at=None, extra=None):
    """A hand-made event-data object shaped like the simulator's (and the
    fixtures'); the keys of extra (Mailgun's names: "severity",
    "delivery-status", ...) are added as they are."""
    ev = {
        "event": event,
        "id": secrets.token_urlsafe(16),
        "timestamp": round(time.time() if at is None else at, 6),
        "log-level": "info",
        "recipient": recipient,
        "recipient-domain": recipient.rpartition("@")[2],
        "message": {"headers": {"message-id": message_id or
                                "unknown.%s@%s" % (new_token()[:12],
                                                   DOMAIN)}},
        "user-variables": ({} if redrive_id is None
                           else {"redrive-id": str(redrive_id)}),
    }
    ev.update(extra or {})
    return ev


# ---- waiting ----------------------------------------------------------------

def wait_until(pred, timeout, what):
    deadline = time.monotonic() + timeout * SCALE
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            pytest.fail("timed out after %.1fs waiting for %s" % (
                timeout * SCALE, what() if callable(what) else what))
        time.sleep(0.03)


# ---- the daemon with its tracker --------------------------------------------

class Tracker:
    """One redrived (conftest.Daemon) with its tracker, and the simulator."""

    def __init__(self, d, sim, port):
        self.d = d
        self.sim = sim
        self.port = port
        self.hook_url = "http://127.0.0.1:%d%s" % (port, HOOK_PATH)

    # -- HTTP to the tracker --------------------------------------------------
    def request(self, method, path, body=None, headers=None, timeout=10):
        """One request on its own connection: (status, headers, body)."""
        c = http.client.HTTPConnection("127.0.0.1", self.port,
                                       timeout=timeout * SCALE)
        try:
            h = {"Connection": "close"}
            h.update(headers or {})
            c.request(method, path, body=body, headers=h)
            r = c.getresponse()
            return r.status, dict(r.getheaders()), r.read()
        finally:
            c.close()

    def post_hook(self, body, content_type="application/json"):
        """POSTs a webhook body; returns (status, answer body)."""
        status, _, text = self.request(
            "POST", HOOK_PATH, body,
            {"Content-Type": content_type,
             "User-Agent": "mailgun/treq-16.12.0"})
        return status, text

    def wait_healthy(self, timeout=10):
        def ok():
            try:
                return self.request("GET", "/healthz", timeout=2)[0] == 200
            except OSError:
                return False
        wait_until(ok, timeout, "GET /healthz on the tracker; log:\n" +
                   self.d.log())

    # -- SMTP -----------------------------------------------------------------
    def send(self, rcpts, data=None, sender="app@example.com"):
        """One message through smtplib; returns its local id."""
        if data is None:
            data = MESSAGE % new_token()[:16].encode()
        s = self.d.smtp()
        try:
            code, _ = s.mail(sender)
            assert code == 250
            for r in rcpts:
                code, text = s.rcpt(r)
                assert code == 250, (r, code, text)
            code, text = s.data(data)
            assert code == 250, (code, text)
            m = QUEUED_TEXT.match(text)
            assert m, text
            return int(m.group(1))
        finally:
            try:
                s.quit()
            except smtplib.SMTPException:
                pass

    # -- the store, through the CLI -------------------------------------------
    def row(self, mid):
        """The message's `redrive log --json` object."""
        rows = {m["id"]: m for m in self.d.log_json()}
        assert mid in rows, "message %d not in redrive log --json" % mid
        return rows[mid]

    def rcpt(self, mid, address):
        """The recipient's object in `redrive log --json`."""
        for r in self.row(mid)["recipients"]:
            if r["address"].lower() == address.lower():
                return r
        pytest.fail("no recipient %s in message %d" % (address, mid))

    def show(self, mid):
        """`redrive show ID --json`."""
        rc, out, err = self.d.cli("show", mid, "--json")
        assert rc == 0, "redrive show %s --json: rc %d: %s" % (mid, rc, err)
        lines = [ln for ln in out.decode("utf-8").splitlines() if ln.strip()]
        assert len(lines) == 1, out
        return json.loads(lines[0])

    def events_of(self, mid, address=None, event=None):
        """`show --json` events of the message, optionally of one recipient
        and one event name."""
        out = []
        for e in self.show(mid)["events"]:
            if address is not None and (e["recipient"] or "").lower() != \
                    address.lower():
                continue
            if event is not None and e["event"] != event:
                continue
            out.append(e)
        return out

    def wait_rcpt(self, mid, address, status, timeout=10):
        """Waits until the recipient has the status; returns its object."""
        seen = []

        def check():
            r = self.rcpt(mid, address)
            seen[:] = [r]
            return r if r["status"] == status else None

        return wait_until(check, timeout, lambda: (
            "%s of message %d to be %s (last: %r); daemon log:\n%s\n"
            "simulator log:\n%s" % (address, mid, status, seen,
                                    self.d.all_logs(),
                                    self.sim.log()[-4000:])))

    def log_lines(self, pattern):
        return [ln for ln in self.d.all_logs().splitlines()
                if re.search(pattern, ln)]

    # -- the simulator --------------------------------------------------------
    def sends(self, mid):
        """The accepted sends (mime and storage) that carry the message."""
        return self.sim.messages_for(mid)

    def sim_events(self, mgid, address=None, event=None):
        """The simulator's events of one Mailgun id (a send or resend)."""
        out = []
        for e in self.sim.events():
            if e["message"]["headers"]["message-id"] != mgid:
                continue
            if address is not None and e["recipient"].lower() != \
                    address.lower():
                continue
            if event is not None and e["event"] != event:
                continue
            out.append(e)
        return out

    def hooks_of(self, mgid):
        """The simulator's webhooks about one Mailgun id."""
        return [h for h in self.sim.webhooks() if h["message-id"] == mgid]


def tracker_overrides(sim, port, retry=None, tracker=None, mailgun=None,
                      store=None):
    mg = dict(mailgun or {})
    if SCALE > 1:
        # Under valgrind a request answered late on purpose ("slow:1")
        # must not also hit the 2 s [mailgun] timeout, or the send Mailgun
        # accepted is retried and its webhooks never match a record.
        mg.setdefault("timeout", "%ds" % int(2 * SCALE))
    over = mailgun_overrides(sim, webhook_signing_key=SIGNING_KEY, **mg)
    over["tracker"] = {
        "enabled": "yes",
        "listen": "127.0.0.1:%d" % port,
        "path": HOOK_PATH,
        "timestamp_window": "1h",
    }
    over["tracker"].update(tracker or {})
    over["retry"] = {
        "backoff_base": "%dms" % BACKOFF_MS,
        "backoff_factor": str(FACTOR),
        "max_attempts": "5",
    }
    over["retry"].update(retry or {})
    if store is not None:
        over["store"] = dict(store)
    return over


@pytest.fixture
def tracker_sim():
    """The simulator signing webhooks with SIGNING_KEY; its webhook URL is
    set once the daemon is up.  Webhook tries are many and short, so that
    a daemon restart loses none of them."""
    with run_simulator("--webhook-signing-key", SIGNING_KEY,
                       "--delivery-delay", "0.15",
                       "--webhook-delay", "0.02",
                       "--webhook-retries", "0.2,0.3,0.5",
                       "--webhook-max-tries", "40") as sim:
        yield sim


@pytest.fixture
def tracker(daemon, tracker_sim):
    """Factory: tracker(retry={..}, tracker={..}, mailgun={..},
    store={..}, allow_errors=False) -> Tracker, with the daemon running."""
    def make(retry=None, tracker=None, mailgun=None, store=None,
             allow_errors=False):
        port = free_port()
        d = daemon(tracker_overrides(tracker_sim, port, retry, tracker,
                                     mailgun, store),
                   allow_errors=allow_errors)
        t = Tracker(d, tracker_sim, port)
        t.wait_healthy()
        tracker_sim.set_webhook_url(t.hook_url)
        return t
    return make
