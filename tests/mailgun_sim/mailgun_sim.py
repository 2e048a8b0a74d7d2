#!/usr/bin/env python3
"""Mailgun simulator for redrive's tests.

It stands in for Mailgun's HTTP API as shared/mailgun/FACTS.md describes it:
POST /v3/{domain}/messages.mime (FACTS §1), resend and retrieval of stored
messages (§2), the Events API, and signed JSON webhooks posted back to the
tracker with Mailgun's retry rules (§3.7, §3.8).  Tests steer it through a
JSON control API under /_sim/ (or through the same methods on Simulator when
it runs in-process): per-recipient delivery rules, a queue of faults for the
next send requests, a sticky 401 mode, storage expiry, and logs of every
request, accepted message and webhook.

Standard library only (Python 3.11).  Run it as
    python3 tests/mailgun_sim/mailgun_sim.py --port 0 --port-file F \\
        --domain D --api-key K --webhook-signing-key S [--webhook-url U] \\
        [--tls-cert C --tls-key K]
README.md beside this file documents the rules, faults and control API.
"""

import argparse
import base64
import binascii
import email.message
import email.parser
import email.policy
import email.utils
import hashlib
import heapq
import hmac
import http.client
import http.server
import itertools
import json
import os
import random
import re
import secrets
import signal
import ssl
import sys
import threading
import time
import traceback
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from datetime import timezone

DEFAULT_MAX_BODY = int(52.4 * 1024 * 1024)  # FACTS §1.4: 413 above 52.4 MiB
MAX_RECIPIENTS = 1000                       # FACTS §1.4
MAX_OPTIONS = 16 * 1024                     # FACTS §1.2: o:/h:/v:/t: total
EVENTS_DEFAULT_LIMIT = 100
EVENTS_MAX_LIMIT = 300                      # FACTS §1.4 "Other API limits"
RATE_LIMIT = 2000000                        # FACTS §1.4 rate-limit headers
RECIPIENT_LIMIT = 1000000

_DAYS = ('Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat', 'Sun')
_MONTHS = ('Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep',
           'Oct', 'Nov', 'Dec')

# Default delivery-status per failure reason: (code, enhanced-code, message,
# description).  Values follow the fixtures and FACTS §3.4/§3.5.
_PERMANENT = {
    'generic': (550, '5.0.0', '5.0.0 Permanent failure', ''),
    'bounce': (550, '5.1.1', '5.1.1 The email account that you tried to '
               'reach does not exist.', ''),
    'old': (602, '', '', 'Too old'),
    'espblock': (554, '5.7.1', '5.7.1 Service unavailable; Client host '
                 '[{ip}] blocked using zen.spamhaus.org', ''),
    'blacklisted': (554, '5.7.1', '5.7.1 Service unavailable; Client host '
                    '[{ip}] blocked using zen.spamhaus.org', ''),
    'suppress-bounce': (605, '', '',
                        'Not delivering to previously bounced address'),
    'suppress-unsubscribe': (606, '', '',
                             'Not delivering to unsubscribed address'),
    'suppress-complaint': (607, '', '', 'Not delivering to a user who '
                           'marked your messages as spam'),
}
_TEMPORARY = {
    'generic': (451, '4.7.652', '4.7.652 The mail server [{ip}] has '
                'exceeded the maximum number of connections.', ''),
    'greylisted': (451, '4.7.1', '4.7.1 Greylisted, try again later', ''),
    'espblock': (421, '4.7.0', '4.7.0 [{ip}] Our system has detected an '
                 'unusual rate of unsolicited mail', ''),
    'old': (602, '', '', 'Too old'),
}

RULE_KINDS = ('delivered', 'fail-permanent', 'fail-temporary',
              'delayed-bounce', 'drop-webhook', 'fail-then-deliver',
              'accept-only')
RULE_KEYS = ('reason', 'code', 'enhanced', 'message', 'description',
             'attempt', 'retry', 'then', 'webhook', 'delivery-status')


def _log(msg):
    sys.stderr.write('mailgun_sim: %s\n' % msg)
    sys.stderr.flush()


def _utc_date(t):
    """'Mon, 20 Dec 2021 20:33:21 UTC', English names whatever the locale."""
    g = time.gmtime(t)
    return '%s, %02d %s %d %02d:%02d:%02d UTC' % (
        _DAYS[g.tm_wday], g.tm_mday, _MONTHS[g.tm_mon - 1], g.tm_year,
        g.tm_hour, g.tm_min, g.tm_sec)


def _b64url(raw):
    return base64.urlsafe_b64encode(raw).rstrip(b'=').decode('ascii')


def _event_id():
    """22-character event id like 'jxVuhYlhReaK3QsggHfFRA' (FACTS §3.3)."""
    return _b64url(os.urandom(16))


def _storage_key():
    """A base64-looking storage key with '=' padding and maybe '-'/'_',
    like Mailgun's 'AgEASDSGFB8y4--TSDGxvccvmQB==' (FACTS §2.1)."""
    return 'AwABB' + base64.urlsafe_b64encode(os.urandom(35)).decode()


def _clean(s):
    """Make a header value safe for JSON: no lone surrogates."""
    return s.encode('utf-8', 'surrogateescape').decode('utf-8', 'replace')


def _bare(msgid):
    msgid = msgid.strip()
    if msgid.startswith('<') and msgid.endswith('>'):
        msgid = msgid[1:-1]
    return msgid


# ---------------------------------------------------------------- HTTP model

@dataclass
class Request:
    """One parsed HTTP request as the simulator logic sees it."""
    method: str
    target: str
    headers: email.message.Message
    body: bytes = b''
    note: dict = field(default_factory=dict)  # extras for the request log

    @property
    def path(self):
        return urllib.parse.urlsplit(self.target).path

    @property
    def query(self):
        return urllib.parse.parse_qs(urllib.parse.urlsplit(self.target).query,
                                     keep_blank_values=True)


@dataclass
class Response:
    status: int
    body: bytes = b''
    ctype: str = 'application/json'
    headers: list = field(default_factory=list)
    drop: bool = False     # close the connection without any answer
    delay: float = 0.0     # seconds to wait before answering
    reason: str = None     # status line reason phrase override


def json_response(status, obj, headers=()):
    body = json.dumps(obj, indent=2).encode() + b'\n'
    return Response(status, body, 'application/json', list(headers))


def mg_error(status, message):
    """Mailgun's error body: JSON {"message": ...} (FACTS §1.4)."""
    return json_response(status, {'message': message})


def forbidden():
    """The one non-JSON error: 401 text/plain 'Forbidden' (FACTS §1.1)."""
    return Response(401, b'Forbidden', 'text/plain; charset=utf-8',
                    [('Www-Authenticate', 'Basic realm="MG API"')])


def magnificent():
    """What Mailgun answers an invalid endpoint: a 200 that is not a send
    (FACTS §1.3)."""
    return Response(200, b'Mailgun Magnificent API', 'text/html; charset=utf-8')


# ----------------------------------------------------------- form parsing

class FormError(Exception):
    """A malformed form body; str() is Mailgun's 400 message."""


@dataclass
class Part:
    name: str
    data: bytes
    filename: str = None   # None: a plain field, not a file part
    ctype: str = None

    def text(self):
        return self.data.decode('utf-8', 'replace')


def parse_multipart(body, boundary):
    """Split a multipart/form-data body (RFC 7578, RFC 2046 §5.1.1) into
    Parts.  Part contents are slices of the body, so they are byte-exact:
    no newline translation, 8-bit and NUL bytes kept.  The CRLF before each
    delimiter belongs to the delimiter, not to the content."""
    delim = b'--' + boundary
    if body.startswith(delim):
        pos = 0
    else:
        pos = body.find(b'\r\n' + delim)
        if pos < 0:
            raise FormError('malformed multipart/form-data request')
        pos += 2
    parts = []
    while True:
        pos += len(delim)
        if body[pos:pos + 2] == b'--':
            return parts                      # close delimiter: done
        while body[pos:pos + 1] in (b' ', b'\t'):
            pos += 1                          # transport padding
        if body[pos:pos + 2] != b'\r\n':
            if pos >= len(body):
                raise FormError('unable to parse request: unexpected EOF')
            raise FormError('malformed multipart/form-data request')
        pos += 2
        end = _find_delimiter(body, delim, pos)
        if end < 0:
            raise FormError('unable to parse request: unexpected EOF')
        chunk = body[pos:end]
        if chunk.startswith(b'\r\n'):
            head, data = b'', chunk[2:]
        else:
            split = chunk.find(b'\r\n\r\n')
            if split < 0:
                raise FormError('malformed multipart/form-data request')
            head, data = chunk[:split], chunk[split + 4:]
        hdrs = {}
        for line in head.decode('utf-8', 'replace').split('\r\n'):
            name, colon, value = line.partition(':')
            if colon:
                hdrs[name.strip().lower()] = value.strip()
        if 'content-disposition' not in hdrs:
            raise FormError('malformed multipart/form-data request')
        disp = email.message.Message()
        disp['Content-Disposition'] = hdrs['content-disposition']
        name = disp.get_param('name', header='content-disposition')
        if not isinstance(name, str):
            raise FormError('malformed multipart/form-data request')
        filename = disp.get_filename()
        # Like Go's mime/multipart: an empty filename is not a file.
        parts.append(Part(name, data, filename or None,
                          hdrs.get('content-type')))
        pos = end + 2


def _find_delimiter(body, delim, pos):
    """Offset of the next CRLF--boundary that is a real delimiter, i.e.
    followed by '--', or by optional whitespace and CRLF; -1 if none."""
    while True:
        at = body.find(b'\r\n' + delim, pos)
        if at < 0:
            return -1
        rest = body[at + 2 + len(delim):at + 2 + len(delim) + 200]
        if rest.startswith(b'--') or rest.lstrip(b' \t').startswith(b'\r\n'):
            return at
        pos = at + 2


def media_type(req):
    """The request's media type, lower case, '' when there is none."""
    value = req.headers.get('Content-Type')
    if value is None:
        return ''
    return value.split(';', 1)[0].strip().lower()


def parse_form(req):
    """Parse a multipart/form-data or urlencoded body into Parts."""
    mtype = media_type(req)
    if mtype == 'multipart/form-data':
        msg = email.message.Message()
        msg['Content-Type'] = req.headers.get('Content-Type')
        boundary = msg.get_param('boundary')
        if not isinstance(boundary, str) or not boundary:
            raise FormError('malformed multipart/form-data request')
        return parse_multipart(req.body, boundary.encode('latin-1'))
    if mtype == 'application/x-www-form-urlencoded':
        pairs = urllib.parse.parse_qsl(req.body.decode('utf-8', 'replace'),
                                       keep_blank_values=True)
        return [Part(k, v.encode()) for k, v in pairs]
    raise FormError("Invalid request content type. Expecting "
                    "'multipart/form-data' but got '%s'" % mtype)


def parse_recipients(values):
    """Addresses from `to` fields, each repeated and/or comma-separated,
    friendly names allowed (FACTS §1.2).  Raises ValueError on a value that
    is not an address.  Duplicates are kept; the caller dedupes."""
    out = []
    for name, addr in email.utils.getaddresses(values):
        addr = addr.strip()
        if not addr and not name:
            continue                          # an empty item: "a@x, "
        local, at, domain = addr.rpartition('@')
        if not at or not local or '.' not in domain or ' ' in addr:
            raise ValueError(addr)
        out.append(addr)
    return out


# -------------------------------------------------------- rules and faults

@dataclass
class Rule:
    """A per-recipient delivery outcome, e.g. 'fail-permanent:reason=old'."""
    kind: str
    count: int = 0                            # N of fail-then-deliver:N
    opts: dict = field(default_factory=dict)
    text: str = ''


def parse_rule(text):
    """Parse 'KIND[:ARG,...]' where ARG is key=value (values may be
    %-encoded, e.g. %2C for a comma) or, for fail-then-deliver, the count."""
    kind, _, args = text.strip().partition(':')
    kind = kind.strip()
    if kind not in RULE_KINDS:
        raise ValueError('unknown rule %r' % kind)
    rule = Rule(kind, text=text)
    if kind == 'fail-then-deliver':
        rule.count = 1
    for item in (a.strip() for a in args.split(',')):
        if not item:
            continue
        if '=' in item:
            key, val = (s.strip() for s in item.split('=', 1))
            if key not in RULE_KEYS:
                raise ValueError('unknown rule option %r' % key)
            rule.opts[key] = urllib.parse.unquote(val)
        elif kind == 'fail-then-deliver' and item.isdigit():
            rule.count = int(item)
        else:
            raise ValueError('bad rule argument %r' % item)
    if rule.opts.get('then', 'delivered') not in ('delivered', 'old'):
        raise ValueError('then= must be delivered or old')
    return rule


@dataclass
class Fault:
    """One injected answer to a send request (see README.md)."""
    kind: str                   # 'status', 'slow', 'drop', 'magnificent',
    #                             'no-id', 'accept-then-500', ...
    status: int = 0
    arg: str = ''               # message, or seconds
    opts: dict = field(default_factory=dict)
    text: str = ''


def parse_fault(text):
    text = text.strip()
    head, _, rest = text.partition(':')
    if head.isdigit() and head not in ('420', '429'):
        code = int(head)
        if not 100 <= code <= 599:
            raise ValueError('bad status %r' % text)
        return Fault('status', code, rest, text=text)   # rest: the message
    if head in ('drop', 'magnificent', 'no-id', 'accept-then-500',
                'accept-then-drop') and not rest:
        return Fault(head, text=text)
    if head == 'slow':
        float(rest)
        return Fault('slow', arg=rest, text=text)
    if head in ('420', '429', '429-date', '429-seconds'):
        args = [a.strip() for a in rest.split(',')] if rest else []
        fault = Fault('429-date' if head == '429' else head,
                      420 if head == '420' else 429, '60', text=text)
        for a in args:
            if '=' in a:
                k, v = a.split('=', 1)
                if k != 'reset' or v not in ('s', 'ms'):
                    raise ValueError('bad fault option %r' % a)
                fault.opts[k] = v
            else:
                int(a)
                fault.arg = a
        return fault
    raise ValueError('unknown fault %r' % text)


def fault_response(fault, domain):
    """The answer a 'status'/rate-limit Fault stands for (FACTS §1.4)."""
    code = fault.status
    if fault.kind in ('420', '429-date', '429-seconds'):
        secs = int(fault.arg)
        until = time.time() + secs
        if fault.kind == '429-seconds':
            why = ('account-requests-per-sec limit exceeded, try again '
                   'after %d seconds' % secs)
        else:
            word = 'recipient' if code == 420 else 'request'
            why = '%s limit exceeded, try again after %s' % (
                word, _utc_date(until))
        resp = mg_error(code, 'Domain %s is not allowed to send: %s' %
                        (domain, why))
        if code == 420:
            resp.reason = 'Enhance Your Calm'
        unit = fault.opts.get('reset')
        if unit:
            val = int(until * 1000) if unit == 'ms' else int(until)
            resp.headers.append(('X-RateLimit-Reset', str(val)))
        return resp
    if code == 401:
        return forbidden()
    if code == 403:
        return mg_error(403, fault.arg or (
            'Domain %s is not allowed to send: Free accounts are for test '
            'purposes only. Please upgrade or add the address to authorized '
            'recipients in Account Settings.' % domain))
    if code in (502, 503, 504) and not fault.arg:
        # What a proxy in front of the API answers: HTML, not JSON.
        phrase = http.server.BaseHTTPRequestHandler.responses[code][0]
        page = ('<html><head><title>%d %s</title></head><body><center><h1>'
                '%d %s</h1></center></body></html>\n' % (code, phrase, code,
                                                          phrase))
        return Response(code, page.encode(), 'text/html')
    phrase = http.server.BaseHTTPRequestHandler.responses.get(
        code, ('Error',))[0]
    return mg_error(code, fault.arg or phrase)


# -------------------------------------------------------------- scheduler

class Scheduler:
    """One background thread running callables at given times, in due
    order.  Delivery outcomes and webhook posts (first tries and retries)
    all run here, so their order is deterministic."""

    def __init__(self):
        self._cond = threading.Condition()
        self._heap = []
        self._seq = itertools.count()
        self._busy = False
        self._stopped = False
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name='mailgun-sim-scheduler')

    def start(self):
        self._thread.start()

    def call_later(self, delay, fn):
        with self._cond:
            heapq.heappush(self._heap,
                           (time.monotonic() + delay, next(self._seq), fn))
            self._cond.notify_all()

    def clear(self):
        with self._cond:
            self._heap.clear()
            self._cond.notify_all()

    def stop(self):
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(5)

    def wait_idle(self, timeout):
        """Wait until nothing is due or running; False on timeout."""
        with self._cond:
            return self._cond.wait_for(
                lambda: not self._heap and not self._busy, timeout)

    def _run(self):
        while True:
            with self._cond:
                while not self._stopped:
                    now = time.monotonic()
                    if self._heap and self._heap[0][0] <= now:
                        break
                    wait = self._heap[0][0] - now if self._heap else None
                    self._cond.wait(wait)
                if self._stopped:
                    return
                fn = heapq.heappop(self._heap)[2]
                self._busy = True
            try:
                fn()
            except Exception:           # never let one job kill the thread
                _log('scheduler job failed:\n' + traceback.format_exc())
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()


# --------------------------------------------------------------- messages

@dataclass
class Stored:
    """A stored copy (FACTS §2): one per original send.  A storage resend
    reuses its original's copy, so expiry always counts from the first
    acceptance (the conservative reading of FACTS §2.3)."""
    key: str
    data: bytes
    created: float
    variables: dict
    options: dict
    headers: dict
    first_id: str
    expired: bool = False


@dataclass
class Message:
    id: str                 # bare, as events carry it
    via: str                # 'mime' or 'storage'
    recipients: list
    stored: Stored
    time: float
    fields: list            # names of all request fields, in order
    answered: int = 200     # the status the client was told
    resend_of: str = None

    def summary(self):
        """Header fields events carry in message.headers (FACTS §3.3)."""
        out = {}
        try:
            msg = email.parser.BytesHeaderParser(
                policy=email.policy.default).parsebytes(self.stored.data)
            for name in ('to', 'from', 'subject'):
                if msg.get(name) is not None:
                    out[name] = _clean(str(msg[name]))
        except Exception:           # a broken header is not our problem
            pass
        out['message-id'] = self.id
        return out


# ------------------------------------------------------------- simulator

class Simulator:
    """The simulated Mailgun account: one domain, one API key, one webhook
    signing key.  Thread-safe; every piece of state is under self._lock."""

    def __init__(self, domain='sim.example.org', api_key='key-sim',
                 signing_key='sim-signing-key', webhook_url=None,
                 host='127.0.0.1', port=0, tls_cert=None, tls_key=None,
                 storage_ttl=72 * 3600.0, max_body=DEFAULT_MAX_BODY,
                 delivery_delay=0.05, webhook_delay=0.05,
                 webhook_retries=(0.2, 0.5, 1.0, 2.0), webhook_max_tries=5,
                 webhook_timeout=5.0,
                 webhook_events=('accepted', 'delivered', 'failed'),
                 log=True):
        self.domain = domain
        self.api_key = api_key
        self.signing_key = signing_key
        self.host = host
        self.port = port
        self.tls_cert = tls_cert
        self.tls_key = tls_key
        self.storage_ttl = float(storage_ttl)
        self.max_body = int(max_body)
        self.delivery_delay = float(delivery_delay)
        self.webhook_delay = float(webhook_delay)
        self.webhook_retries = [float(x) for x in webhook_retries]
        self.webhook_max_tries = int(webhook_max_tries)
        self.webhook_timeout = float(webhook_timeout)
        self.webhook_events = set(webhook_events)
        self.log_requests = log
        self._lock = threading.RLock()
        self._sched = Scheduler()
        self._server = None
        self._thread = None
        self._webhook_url = webhook_url
        # Webhook POSTs: no proxies from the environment, no redirects
        # followed, and any certificate accepted (a test receiver).
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        self._opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({}), _NoRedirect(),
            urllib.request.HTTPSHandler(context=ctx))
        self._gen = 0
        self._clear_state()

    def _clear_state(self):
        self._gen += 1              # makes pending scheduler jobs no-ops
        self._messages = []
        self._stored = {}
        self._events = []           # (timestamp, seq, event-data), sorted
        self._event_seq = 0
        self._last_ts = 0.0
        self._requests = []
        self._webhooks = []
        self._faults = []
        self._rules = {}
        self._send_counts = {}      # address -> sends so far
        self._auth_fail = False
        self._id_counter = 0
        self._ip_counter = 0
        self._sent_requests = 0

    # ------------------------------------------------------ life cycle

    @property
    def scheme(self):
        return 'https' if self.tls_cert else 'http'

    @property
    def base_url(self):
        return '%s://%s:%d' % (self.scheme, self.host, self.port)

    def start(self):
        ctx = None
        if self.tls_cert:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(self.tls_cert, self.tls_key)
        self._server = _Server((self.host, self.port), self, ctx)
        self.port = self._server.server_address[1]
        self._sched.start()
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={'poll_interval': 0.1},
                                        daemon=True, name='mailgun-sim-http')
        self._thread.start()
        return self

    def stop(self):
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        self._sched.stop()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # ----------------------------------------------- control (Python API)

    def add_faults(self, faults):
        parsed = [parse_fault(f) for f in faults]   # all or nothing
        with self._lock:
            self._faults.extend(parsed)
            return len(self._faults)

    def set_rules(self, rules, replace=False):
        """Map exact address (has '@'), local-part prefix (no '@') or '*'
        to a rule string; a None value removes a rule."""
        parsed = {k.lower(): (parse_rule(v) if v is not None else None)
                  for k, v in rules.items()}
        with self._lock:
            if replace:
                self._rules = {}
            for k, v in parsed.items():
                if v is None:
                    self._rules.pop(k, None)
                else:
                    self._rules[k] = v
            return {k: r.text for k, r in self._rules.items()}

    def set_auth_fail(self, on):
        with self._lock:
            self._auth_fail = bool(on)
            return self._auth_fail

    def set_webhook_url(self, url):
        with self._lock:
            self._webhook_url = url or None
            return self._webhook_url

    def reset(self):
        """Forget everything but the configuration; cancel pending jobs."""
        with self._lock:
            self._clear_state()
        self._sched.clear()
        return True

    def expire_storage(self, key=None, all=False):
        with self._lock:
            hit = [s for s in self._stored.values() if all or s.key == key]
            for s in hit:
                s.expired = True
            return len(hit)

    def configure(self, **kw):
        """Change timing knobs at run time (see CONFIG_KEYS)."""
        with self._lock:
            for k, v in kw.items():
                k = k.replace('-', '_')
                if k not in CONFIG_KEYS:
                    raise ValueError('unknown config key %r' % k)
                setattr(self, k, CONFIG_KEYS[k](v))
            return self.config()

    def config(self):
        with self._lock:
            out = {k: getattr(self, k) for k in CONFIG_KEYS}
            out['webhook_events'] = sorted(self.webhook_events)
            out.update(domain=self.domain, base_url=self.base_url,
                       webhook_url=self._webhook_url)
            return out

    def wait_idle(self, timeout=10.0):
        """Wait until every scheduled delivery and webhook post is done."""
        return self._sched.wait_idle(timeout)

    def messages(self):
        with self._lock:
            return [self._message_json(m) for m in self._messages]

    def events(self):
        with self._lock:
            return [json.loads(json.dumps(e[2])) for e in self._events]

    def requests(self):
        with self._lock:
            return [dict(r) for r in self._requests]

    def webhooks(self):
        with self._lock:
            return [json.loads(json.dumps(h, default=str))
                    for h in self._webhooks]

    def replay_webhook(self, index):
        """Post webhook number `index` again, same body and signature (a
        duplicate, as Mailgun may send)."""
        with self._lock:
            old = self._webhooks[index]
            hook = dict(old, attempts=[], state='pending', replay_of=index)
            self._webhooks.append(hook)
            gen = self._gen
            self._sched.call_later(0, lambda: self._post_webhook(hook, gen))
            return len(self._webhooks) - 1

    def deliver(self, message_id, recipient, rule):
        """Generate a further outcome for a recipient of an accepted
        message now, e.g. a late delayed bounce."""
        r = parse_rule(rule)
        with self._lock:
            msg = next(m for m in self._messages
                       if m.id == _bare(message_id))
            self._deliver(msg, recipient, r, 1, self._gen)
            return True

    def _message_json(self, m):
        s = m.stored
        return {
            'id': m.id, 'api_id': '<%s>' % m.id, 'via': m.via,
            'recipients': list(m.recipients), 'time': m.time,
            'message_b64': base64.b64encode(s.data).decode(),
            'size': len(s.data), 'variables': dict(s.variables),
            'options': dict(s.options), 'headers': dict(s.headers),
            'fields': list(m.fields), 'storage_key': s.key,
            'storage_url': self._storage_url(s.key),
            'answered': m.answered, 'resend_of': m.resend_of,
        }

    # -------------------------------------------------- request handling

    def handle(self, req):
        """Answer one request; logs it.  Runs on the HTTP handler thread."""
        try:
            resp = self._route(req)
        except Exception:
            _log('internal error:\n' + traceback.format_exc())
            resp = Response(500, b'simulator error\n', 'text/plain')
        self.log_request(req, resp)
        return resp

    def log_request(self, req, resp):
        status = 'dropped' if resp.drop else resp.status
        entry = {'time': time.time(), 'method': req.method,
                 'path': req.path, 'status': status}
        entry.update(req.note)
        if not req.path.startswith('/_sim/'):
            with self._lock:
                self._requests.append(entry)
        if self.log_requests:
            extra = ' '.join('%s=%s' % (k, (len(v) if isinstance(v, list)
                                            else v))
                             for k, v in req.note.items())
            _log('%s %s %s %s' % (req.method, req.path, status, extra))

    def _route(self, req):
        path, method = req.path, req.method
        if path.startswith('/_sim/'):
            return self._control(req, path)
        m = re.fullmatch(r'/v3/([^/]+)/messages\.mime', path)
        if m:
            if method != 'POST':
                return mg_error(405, 'Method Not Allowed')
            return self._send_guarded(req, lambda: self._send_mime(
                req, urllib.parse.unquote(m.group(1))))
        m = re.fullmatch(r'/v3/domains/([^/]+)/messages/([^/]+)', path)
        if m:
            domain = urllib.parse.unquote(m.group(1))
            key = urllib.parse.unquote(m.group(2))
            if method == 'POST':
                return self._send_guarded(req, lambda: self._resend(
                    req, domain, key))
            if method == 'GET':
                return self._stored_get(req, domain, key)
            return mg_error(405, 'Method Not Allowed')
        m = re.fullmatch(r'/v3/([^/]+)/events(?:/([^/]+))?', path)
        if m and method == 'GET':
            return self._events_api(req, urllib.parse.unquote(m.group(1)),
                                    m.group(2))
        return magnificent()

    def _authorized(self, req):
        """HTTP Basic, user 'api', password = the API key (FACTS §1.1)."""
        with self._lock:
            if self._auth_fail:
                return False
        scheme, _, cred = (req.headers.get('Authorization') or '').partition(
            ' ')
        if scheme.lower() != 'basic':
            return False
        try:
            raw = base64.b64decode(cred.strip(), validate=True)
        except (binascii.Error, ValueError):
            return False
        user, _, password = raw.partition(b':')
        return user == b'api' and hmac.compare_digest(
            password, self.api_key.encode())

    def _send_guarded(self, req, send):
        """Apply the sticky 401 and the fault queue to a send request, then
        run `send` (messages.mime or a storage resend)."""
        with self._lock:
            if self._auth_fail:
                return forbidden()
            fault = self._faults.pop(0) if self._faults else None
        if fault is None:
            return send()
        req.note['fault'] = fault.text
        if fault.kind == 'slow':
            resp = send()
            resp.delay = float(fault.arg)
            return resp
        if fault.kind == 'drop':
            return Response(0, drop=True)
        if fault.kind == 'magnificent':
            return magnificent()
        if fault.kind == 'no-id':
            return json_response(200, {'message': 'Queued. Thank you.'})
        if fault.kind in ('accept-then-500', 'accept-then-drop'):
            resp = send()           # accepted for real, then a bad answer
            if resp.status != 200:
                return resp
            with self._lock:
                for m in self._messages:
                    if m.id == req.note.get('id'):
                        m.answered = 500 if fault.kind.endswith('500') else 0
            if fault.kind == 'accept-then-drop':
                return Response(0, drop=True)
            return mg_error(500, 'Internal Server Error')
        with self._lock:
            domain = self.domain
        return fault_response(fault, domain)

    def _send_mime(self, req, domain):
        """POST /v3/{domain}/messages.mime (FACTS §1.2-§1.4)."""
        if not self._authorized(req):
            return forbidden()
        if domain != self.domain:
            return mg_error(404, 'Domain not found: %s' % domain)
        if media_type(req) != 'multipart/form-data':
            return mg_error(400, "Invalid request content type. Expecting "
                            "'multipart/form-data' but got '%s'" %
                            media_type(req))
        try:
            parts = parse_form(req)
        except FormError as e:
            return mg_error(400, str(e))
        to = [p for p in parts if p.name == 'to']
        body = [p for p in parts if p.name == 'message']
        if not to:
            return mg_error(400, 'to parameter is missing')
        if not body:
            return mg_error(400, 'message parameter is missing')
        if body[0].filename is None:
            return mg_error(400, "'message' parameter is not a file")
        rcpts, err = self._check_recipients(req, to)
        if err:
            return err
        size = sum(len(p.name.encode()) + len(p.data) for p in parts
                   if p.name[:2] in ('o:', 'h:', 'v:', 't:'))
        if size > MAX_OPTIONS:
            return mg_error(400, 'Send options (parameters starting with o:, '
                            'h:, or v:) are limited to 16 kB total')
        options, headers, variables = {}, {}, {}
        for p in parts:
            if p.name.startswith('o:'):
                options.setdefault(p.name[2:], []).append(p.text())
            elif p.name.startswith('h:'):
                if not p.name[2:].isascii():
                    return mg_error(400, 'Header name must be pure ASCII: %s'
                                    % p.name[2:])
                headers[p.name[2:]] = p.text()
            elif p.name.startswith('v:'):
                variables[p.name[2:]] = p.text()
        for when in options.get('deliverytime', []):
            if _rfc2822(when) is None:
                return mg_error(400, '%s is not an RFC-2822 compliant date'
                                % when)
        with self._lock:
            stored = Stored(_storage_key(), body[0].data, time.time(),
                            variables, options, headers, '')
            self._stored[stored.key] = stored
            msg = self._accept(stored, rcpts, 'mime', [p.name for p in parts])
        req.note['id'] = msg.id
        return self._queued(msg)

    def _check_recipients(self, req, to_parts):
        try:
            rcpts = parse_recipients([p.text() for p in to_parts])
        except ValueError:
            return None, mg_error(400, 'to parameter is not a valid address. '
                                  'please check documentation')
        req.note['recipients'] = rcpts
        if not rcpts:
            return None, mg_error(400, 'to parameter is missing')
        if len(rcpts) > MAX_RECIPIENTS:
            return None, mg_error(400, 'Too many recipients, max is 1000')
        seen, unique = set(), []
        for r in rcpts:             # "Duplicate addresses are ... ignored"
            if r.lower() not in seen:
                seen.add(r.lower())
                unique.append(r)
        return unique, None

    def _queued(self, msg):
        """200 with the angle-bracketed id and rate-limit headers (FACTS
        §1.3, §1.4: the Reset values are epoch milliseconds)."""
        with self._lock:
            self._sent_requests += 1
            used = self._sent_requests
        reset = int((time.time() + 10) * 1000)
        hdrs = [('X-Ratelimit-Limit', str(RATE_LIMIT)),
                ('X-Ratelimit-Remaining', str(max(RATE_LIMIT - used, 0))),
                ('X-Ratelimit-Reset', str(reset)),
                ('X-Recipient-Limit', str(RECIPIENT_LIMIT)),
                ('X-Recipient-Remaining', str(max(RECIPIENT_LIMIT - used, 0))),
                ('X-Recipient-Reset', str(reset + 1))]
        return json_response(200, {'id': '<%s>' % msg.id,
                                   'message': 'Queued. Thank you.'}, hdrs)

    def _lookup_stored(self, domain, key):
        if domain != self.domain:
            return None, mg_error(404, 'Domain not found: %s' % domain)
        with self._lock:
            s = self._stored.get(key)
            if s is None or s.expired or \
                    time.time() - s.created > self.storage_ttl:
                return None, mg_error(404, 'Message not found')
        return s, None

    def _resend(self, req, domain, key):
        """POST {storage.url} with to=... (FACTS §2.2): a new send of the
        stored copy, with a new id and the same checks as a send."""
        if not self._authorized(req):
            return forbidden()
        stored, err = self._lookup_stored(domain, key)
        if err:
            return err
        try:
            parts = parse_form(req)
        except FormError as e:
            return mg_error(400, str(e))
        to = [p for p in parts if p.name == 'to']
        if not to:
            return mg_error(400, 'to parameter is missing')
        rcpts, err = self._check_recipients(req, to)
        if err:
            return err
        with self._lock:
            msg = self._accept(stored, rcpts, 'storage',
                               [p.name for p in parts])
        req.note['id'] = msg.id
        return self._queued(msg)

    def _stored_get(self, req, domain, key):
        """GET {storage.url}: the stored message as JSON with body-mime."""
        if not self._authorized(req):
            return forbidden()
        s, err = self._lookup_stored(domain, key)
        if err:
            return err
        with self._lock:
            first = next(m for m in self._messages if m.id == s.first_id)
        hdrs = first.summary()
        return json_response(200, {
            'recipients': ', '.join(first.recipients),
            'sender': self._sender(s), 'from': hdrs.get('from', ''),
            'subject': hdrs.get('subject', ''), 'Message-Id': s.first_id,
            'X-Mailgun-Variables': json.dumps(s.variables),
            'body-mime': _clean(s.data.decode('utf-8', 'surrogateescape')),
        })

    # -------------------------------------------- acceptance and delivery

    def _accept(self, stored, rcpts, via, fields):
        """Record an accepted send, emit its `accepted` events and schedule
        each recipient's outcome.  Caller holds the lock."""
        self._id_counter += 1
        now = time.time()
        mid = '%s.%d.%05d@%s' % (time.strftime('%Y%m%d%H%M%S',
                                               time.gmtime(now)),
                                 self._id_counter, random.randrange(100000),
                                 self.domain)
        msg = Message(mid, via, rcpts, stored, now, fields,
                      resend_of=stored.first_id or None)
        if not stored.first_id:
            stored.first_id = mid
        self._messages.append(msg)
        gen = self._gen
        for rcpt in rcpts:
            ev = self._event(msg, rcpt, 'accepted')
            ev['method'] = 'HTTP'
            ev['message']['recipients'] = list(rcpts)
            self._emit(ev)
            count = self._send_counts.get(rcpt.lower(), 0) + 1
            self._send_counts[rcpt.lower()] = count
            rule = self._rule_for(rcpt)
            self._sched.call_later(self.delivery_delay, lambda r=rcpt, ru=rule, c=count:
                                   self._deliver_job(msg, r, ru, c, gen))
        return msg

    def _rule_for(self, rcpt):
        """Exact address, then the longest local-part prefix, then '*'."""
        addr = rcpt.lower()
        if addr in self._rules:
            return self._rules[addr]
        local = addr.rpartition('@')[0]
        best = None
        for k in self._rules:
            if '@' not in k and k != '*' and local.startswith(k):
                if best is None or len(k) > len(best):
                    best = k
        if best is not None:
            return self._rules[best]
        return self._rules.get('*', Rule('delivered', text='delivered'))

    def _deliver_job(self, msg, rcpt, rule, attempt, gen):
        with self._lock:
            self._deliver(msg, rcpt, rule, attempt, gen)

    def _deliver(self, msg, rcpt, rule, attempt, gen):
        """Emit the outcome events `rule` says for one recipient.  `attempt`
        counts the sends to that address so far.  Caller holds the lock."""
        if gen != self._gen:
            return
        kind, opts = rule.kind, rule.opts
        hook = kind != 'drop-webhook' and opts.get('webhook') != 'no'
        if kind == 'fail-then-deliver':
            if attempt > rule.count:
                kind = 'delivered'
            else:
                kind = 'fail-permanent'
                opts = {'reason': 'espblock', **opts}
        if kind in ('delivered', 'drop-webhook'):
            self._emit(self._delivered(msg, rcpt), hook)
        elif kind == 'fail-permanent':
            self._emit(self._failed(msg, rcpt, 'permanent', opts), hook)
        elif kind == 'fail-temporary':
            self._emit(self._failed(msg, rcpt, 'temporary', opts), hook)
            then = opts.get('then')
            if then:
                nxt = Rule('delivered') if then == 'delivered' else Rule(
                    'fail-permanent', opts={'reason': 'old', 'attempt': '8'})
                if not hook:
                    nxt.opts['webhook'] = 'no'
                self._sched.call_later(self.delivery_delay, lambda: (
                    self._deliver_job(msg, rcpt, nxt, attempt, gen)))
        elif kind == 'delayed-bounce':
            self._emit(self._delivered(msg, rcpt), hook)
            later = Rule('fail-permanent', opts=dict(opts, delayed='yes'))
            self._sched.call_later(self.delivery_delay, lambda: (
                self._deliver_job(msg, rcpt, later, attempt, gen)))
        # accept-only: nothing after `accepted`.

    def _sender(self, stored):
        hdrs = email.parser.BytesHeaderParser(
            policy=email.policy.compat32).parsebytes(stored.data)
        addr = email.utils.parseaddr(_clean(str(hdrs.get('From', ''))))[1]
        return addr or 'postmaster@%s' % self.domain

    def _storage_url(self, key):
        return '%s/v3/domains/%s/messages/%s' % (self.base_url, self.domain,
                                                 key)

    def _event(self, msg, rcpt, name, level='info'):
        """The fields every event of a message carries, shaped like the
        fixtures (FACTS §3.3)."""
        s = msg.stored
        return {
            'event': name, 'id': _event_id(), 'timestamp': 0.0,
            'log-level': level,
            'envelope': {'sender': self._sender(s), 'transport': 'smtp',
                         'targets': rcpt},
            'flags': {'is-routed': False, 'is-authenticated': True,
                      'is-system-test': False, 'is-test-mode': False},
            'message': {'headers': msg.summary(), 'attachments': [],
                        'size': len(s.data)},
            'recipient': rcpt,
            'recipient-domain': rcpt.rpartition('@')[2].lower(),
            'storage': {'url': self._storage_url(s.key), 'key': s.key},
            'campaigns': [], 'tags': list(s.options.get('tag', [])),
            'user-variables': dict(s.variables),
        }

    def _sending_ip(self):
        """A new IP of the shared pool for each attempt."""
        self._ip_counter += 1
        return '198.51.100.%d' % (self._ip_counter % 250 + 1)

    def _delivered(self, msg, rcpt):
        ev = self._event(msg, rcpt, 'delivered')
        ev['envelope']['sending-ip'] = self._sending_ip()
        ev['delivery-status'] = {
            'tls': True, 'mx-host': 'mx.' + ev['recipient-domain'],
            'code': 250, 'description': '',
            'session-seconds': round(random.uniform(0.1, 0.9), 6),
            'utf8': True, 'attempt-no': 1, 'message': 'OK',
            'certificate-verified': True}
        return ev

    def _failed(self, msg, rcpt, severity, opts):
        """A `failed` event; opts override the reason's defaults."""
        reason = opts.get('reason', 'generic')
        ev = self._event(msg, rcpt, 'failed',
                         'error' if severity == 'permanent' else 'warn')
        ip = self._sending_ip()
        table = _PERMANENT if severity == 'permanent' else _TEMPORARY
        code, enh, text, desc = table.get(reason, table['generic'])
        if opts.get('delayed'):
            code, enh, reason = 550, '5.1.1', opts.get('reason', 'generic')
            text = ('smtp; 550-5.1.1 The email account that you tried to '
                    'reach does not exist.')
            desc = ("I'm sorry to have to inform you that your message could "
                    "not be delivered to one or more recipients.")
        code = opts.get('code', code)
        if isinstance(code, str) and code.isdigit():
            code = int(code)
        ds = {'attempt-no': int(opts.get('attempt', 1)), 'code': code,
              'message': opts.get('message', text.format(ip=ip)),
              'enhanced-code': opts.get('enhanced', enh),
              'description': opts.get('description', desc),
              'session-seconds': 0.0}
        if opts.get('delayed'):
            ds['bounce-code'] = ds['enhanced-code']
            del ds['attempt-no'], ds['session-seconds']
            ev['flags'] = {'is-delayed-bounce': True}
            ev['envelope'] = {}
        elif not reason.startswith('suppress-'):
            ds.update({'tls': True, 'mx-host': 'mx.' + ev['recipient-domain'],
                       'utf8': True, 'certificate-verified': True,
                       'session-seconds': round(random.uniform(0.1, 0.9), 6)})
            ev['envelope']['sending-ip'] = ip
        if severity == 'temporary':
            ds['retry-seconds'] = int(opts.get('retry', 600))
        ev['severity'] = severity
        ev['reason'] = reason
        ev['delivery-status'] = ds
        if opts.get('delivery-status') == 'null':
            ev['delivery-status'] = None     # FACTS §3.3: it can be null
        return ev

    def _emit(self, ev, webhook=True):
        """Record an event for the Events API and, when a webhook URL is
        set and the event type is subscribed, queue its webhook.  Caller
        holds the lock."""
        now = max(time.time(), self._last_ts + 1e-6)
        self._last_ts = now
        ev['timestamp'] = round(now, 6)
        self._event_seq += 1
        self._events.append((ev['timestamp'], self._event_seq, ev))
        if not webhook or ev['event'] not in self.webhook_events or \
                not self._webhook_url:
            return
        # FACTS §3.8: HMAC-SHA256 hex of timestamp+token under the signing
        # key; §3.7: the same block is reused on every retry.
        ts = str(int(time.time()))
        token = secrets.token_hex(25)
        sig = hmac.new(self.signing_key.encode(), (ts + token).encode(),
                       hashlib.sha256).hexdigest()
        payload = {'signature': {'timestamp': ts, 'token': token,
                                 'signature': sig},
                   'event-data': ev}
        hook = {'event-id': ev['id'], 'event': ev['event'],
                'recipient': ev.get('recipient'),
                'message-id': ev['message']['headers']['message-id'],
                'body': json.dumps(payload), 'attempts': [],
                'state': 'pending'}
        self._webhooks.append(hook)
        gen = self._gen
        self._sched.call_later(self.webhook_delay,
                               lambda: self._post_webhook(hook, gen))

    def _post_webhook(self, hook, gen):
        """One POST of a webhook; schedules the retry Mailgun would make.
        200 is done, 406 stops retries, anything else (or a network error)
        is retried after webhook_retries[n] up to webhook_max_tries
        (FACTS §3.7).  Runs on the scheduler thread, without the lock."""
        with self._lock:
            if gen != self._gen:
                return
            url = self._webhook_url
        if not url:
            with self._lock:
                hook['state'] = 'no-url'
            return
        status, error = None, None
        req = urllib.request.Request(url, data=hook['body'].encode(),
                                     method='POST', headers={
                                         'Content-Type': 'application/json',
                                         'User-Agent': 'mailgun/treq-16.12.0'})
        try:
            with self._opener.open(req, timeout=self.webhook_timeout) as r:
                r.read()
                status = r.status
        except urllib.error.HTTPError as e:
            status = e.code
            e.close()
        except (OSError, ValueError, http.client.HTTPException) as e:
            error = str(e) or type(e).__name__
        with self._lock:
            if gen != self._gen:
                return
            hook['attempts'].append({'time': time.time(), 'url': url,
                                     'status': status, 'error': error})
            tries = len(hook['attempts'])
            if status == 200:
                hook['state'] = 'delivered'
            elif status == 406:
                hook['state'] = 'rejected'
            elif tries >= self.webhook_max_tries:
                hook['state'] = 'gave-up'
            else:
                delays = self.webhook_retries or [1.0]
                wait = delays[min(tries - 1, len(delays) - 1)]
                self._sched.call_later(wait, lambda: self._post_webhook(
                    hook, gen))
        if self.log_requests:
            _log('webhook %s %s -> %s' % (hook['event'], hook['recipient'],
                                          status or error))

    # ------------------------------------------------------- Events API

    def _events_api(self, req, domain, token):
        """GET /v3/{domain}/events[/{page}] with Mailgun's filters and
        paging: every page has next/previous/first/last URLs holding an
        opaque token; polling `next` returns empty items at the end."""
        if not self._authorized(req):
            return forbidden()
        if domain != self.domain:
            return mg_error(404, 'Domain not found: %s' % domain)
        if token:
            try:
                q = json.loads(base64.urlsafe_b64decode(
                    token + '=' * (-len(token) % 4)))
                if set(q) != {'asc', 'lo', 'hi', 'limit', 'filters', 'anchor',
                              'dir'}:
                    raise ValueError('bad token')
                q['anchor'] = tuple(q['anchor']) if q['anchor'] else None
            except (ValueError, KeyError, TypeError, binascii.Error):
                return mg_error(400, 'Invalid page token')
        else:
            q, err = self._events_query(req.query)
            if err:
                return err
        with self._lock:
            rows = [(ts, seq, ev) for ts, seq, ev in self._events
                    if _event_matches(ev, ts, q)]
        if not q['asc']:
            rows.reverse()

        def after(row):
            key = (row[0], row[1])
            return key > q['anchor'] if q['asc'] else key < q['anchor']
        if q['dir'] == 'next':
            page = [r for r in rows if q['anchor'] is None or after(r)]
            page = page[:q['limit']]
        else:
            page = [r for r in rows if q['anchor'] is None or not (
                after(r) or (r[0], r[1]) == q['anchor'])]
            page = page[-q['limit']:]
        last = [page[-1][0], page[-1][1]] if page else q['anchor']
        first = [page[0][0], page[0][1]] if page else q['anchor']

        def url(direction, anchor):
            t = dict(q, dir=direction, anchor=anchor)
            return '%s/v3/%s/events/%s' % (
                self.base_url, self.domain,
                _b64url(json.dumps(t, separators=(',', ':')).encode()))
        return json_response(200, {
            'items': [json.loads(json.dumps(r[2])) for r in page],
            'paging': {'next': url('next', last),
                       'previous': url('prev', first),
                       'first': url('next', None),
                       'last': url('prev', None)}})

    def _events_query(self, query):
        p = {k: v[-1] for k, v in query.items()}
        try:
            limit = int(p.get('limit', EVENTS_DEFAULT_LIMIT))
        except ValueError:
            limit = -1
        if not 1 <= limit <= EVENTS_MAX_LIMIT:
            return None, mg_error(400, "'limit' parameter should be in range "
                                  "[1, %d]" % EVENTS_MAX_LIMIT)
        times = {}
        for k in ('begin', 'end'):
            if k in p:
                times[k] = _parse_time(p[k])
                if times[k] is None:
                    return None, mg_error(400, 'Invalid time value for %s: '
                                          '%s' % (k, p[k]))
        begin, end = times.get('begin'), times.get('end')
        if 'ascending' in p:
            if p['ascending'] not in ('yes', 'no', 'true', 'false'):
                return None, mg_error(400, "'ascending' must be yes or no")
            asc = p['ascending'] in ('yes', 'true')
        else:
            asc = begin is not None and end is not None and begin <= end
        lo, hi = (begin, end) if asc else (end, begin)
        if lo is not None and hi is not None and lo > hi:
            return None, mg_error(400, 'begin and end contradict ascending')
        filters = {k: p[k] for k in ('event', 'recipient', 'message-id',
                                     'severity') if k in p}
        return {'asc': asc, 'lo': lo, 'hi': hi, 'limit': limit,
                'filters': filters, 'anchor': None, 'dir': 'next'}, None

    # ------------------------------------------------------- control API

    def _control(self, req, path):
        """The /_sim/ JSON control API (no auth); see README.md."""
        method = req.method
        gets = {'/_sim/messages': self.messages, '/_sim/events': self.events,
                '/_sim/requests': self.requests,
                '/_sim/webhooks': self.webhooks, '/_sim/config': self.config}
        if method == 'GET' and path in gets:
            return json_response(200, gets[path]())
        if method == 'GET' and path == '/_sim/idle':
            timeout = float(req.query.get('timeout', ['10'])[-1])
            return json_response(200, {'idle': self.wait_idle(timeout)})
        posts = {
            '/_sim/faults': lambda a: {
                'queued': self.add_faults(a.get('faults', []))},
            '/_sim/rules': lambda a: {'rules': self.set_rules(
                a.get('rules', {}), a.get('replace', False))},
            '/_sim/auth-fail': lambda a: {
                'auth_fail': self.set_auth_fail(a.get('on', True))},
            '/_sim/reset': lambda a: {'reset': self.reset()},
            '/_sim/storage/expire': lambda a: {'expired': self.expire_storage(
                a.get('key'), a.get('all', False))},
            '/_sim/webhook-url': lambda a: {
                'url': self.set_webhook_url(a.get('url'))},
            '/_sim/config': lambda a: self.configure(**a),
            '/_sim/webhooks/replay': lambda a: {
                'index': self.replay_webhook(int(a['index']))},
            '/_sim/deliver': lambda a: {'ok': self.deliver(
                a['id'], a['recipient'], a['rule'])},
        }
        if method != 'POST' or path not in posts:
            return json_response(404, {'error': 'no such control endpoint'})
        try:
            arg = json.loads(req.body or b'{}')
            if not isinstance(arg, dict):
                raise ValueError('body must be a JSON object')
            out = posts[path](arg)
        except (ValueError, KeyError, TypeError, IndexError,
                StopIteration) as e:
            return json_response(400, {'error': '%s: %s' % (
                type(e).__name__, e)})
        return json_response(200, out)


CONFIG_KEYS = {
    'storage_ttl': float, 'max_body': int, 'delivery_delay': float,
    'webhook_delay': float, 'webhook_max_tries': int,
    'webhook_timeout': float,
    'webhook_retries': lambda v: [float(x) for x in v],
    'webhook_events': lambda v: set(v),
}


def _parse_time(value):
    """Epoch seconds or an RFC 2822 date, as the Events API takes them."""
    try:
        return float(value)
    except ValueError:
        pass
    return _rfc2822(value)


def _rfc2822(value):
    """Epoch seconds of an RFC 2822 date, None if it is not one; a zone
    of -0000 means UTC."""
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.timestamp()


def _event_matches(ev, ts, q):
    """Time range plus the filters.  A filter value may be 'a OR b' or
    'NOT a'.  A message-id filter in angle brackets is ignored, mirroring
    Mailgun returning other messages' events then (FACTS §1.3)."""
    if q['lo'] is not None and ts < q['lo']:
        return False
    if q['hi'] is not None and ts > q['hi']:
        return False
    for key, expr in q['filters'].items():
        if key == 'message-id':
            if expr.strip().startswith('<'):
                continue
            have = ev['message']['headers'].get('message-id')
        else:
            have = ev.get(key)
        have = (have or '').lower()
        expr = expr.strip().lower()
        if expr.startswith('not '):
            if have == expr[4:].strip():
                return False
        elif have not in [v.strip() for v in expr.split(' or ')]:
            return False
    return True


# ------------------------------------------------------------ HTTP server

class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Webhook posts do not follow redirects: a 3xx counts as a failure."""

    def redirect_request(self, *args, **kw):
        return None


class _BodyError(Exception):
    def __init__(self, status, text):
        super().__init__(text)
        self.status = status


class _Handler(http.server.BaseHTTPRequestHandler):
    """HTTP/1.1 with keep-alive: every answer carries Content-Length."""
    protocol_version = 'HTTP/1.1'
    timeout = 60

    def version_string(self):
        return 'mailgun-sim'

    def setup(self):
        super().setup()
        if isinstance(self.connection, ssl.SSLSocket):
            self.connection.do_handshake()  # here, not in accept()

    def handle_expect_100(self):
        # Refuse an over-long body before the client sends it.
        if self._content_length() > self.server.sim.max_body:
            self.close_connection = True
            resp = mg_error(413, 'request size exceeds 52.4MiB limit')
            self.server.sim.log_request(
                Request(self.command, self.path, self.headers), resp)
            self._write(resp)
            return False
        return super().handle_expect_100()

    def _content_length(self):
        value = self.headers.get('Content-Length', '0').strip()
        return int(value) if value.isdigit() else 0

    def _read_body(self, limit):
        """Read the body, by Content-Length or chunked (RFC 9112 §7.1)."""
        te = self.headers.get('Transfer-Encoding', '').strip().lower()
        if te == 'chunked':
            chunks, total = [], 0
            while True:
                line = self.rfile.readline(1024)
                try:
                    size = int(line.split(b';')[0].strip(), 16)
                except ValueError:
                    raise _BodyError(400, 'bad chunk size') from None
                if size == 0:
                    while self.rfile.readline(8192).strip():
                        pass        # trailers
                    break
                total += size
                if total > limit:
                    raise _BodyError(413, 'too large')
                chunks.append(self.rfile.read(size))
                self.rfile.readline(8)
            body = b''.join(chunks)
        elif te:
            raise _BodyError(501, 'unsupported transfer-encoding')
        else:
            value = self.headers.get('Content-Length', '0').strip()
            if not value.isdigit():
                raise _BodyError(400, 'bad content-length')
            n = int(value)
            if n > limit:
                while n > 0:        # drain so the 413 reaches the client
                    got = self.rfile.read(min(n, 1 << 20))
                    if not got:
                        break
                    n -= len(got)
                raise _BodyError(413, 'too large')
            body = self.rfile.read(n)
            if len(body) != n:
                raise ConnectionError('short body')
        return body

    def _serve(self):
        sim = self.server.sim
        req = Request(self.command, self.path, self.headers)
        try:
            req.body = self._read_body(sim.max_body)
        except _BodyError as e:
            if e.status == 413:
                resp = mg_error(413, 'request size exceeds 52.4MiB limit')
            else:
                resp = mg_error(e.status, str(e))
                self.close_connection = True
            sim.log_request(req, resp)
            self._write(resp)
            return
        except OSError:
            self.close_connection = True
            return
        resp = sim.handle(req)
        if resp.delay:
            time.sleep(resp.delay)
        if resp.drop:
            self.close_connection = True    # no answer at all
            return
        self._write(resp)

    def _write(self, resp):
        self.send_response(resp.status, resp.reason)
        for name, value in resp.headers:
            self.send_header(name, value)
        self.send_header('Content-Type', resp.ctype)
        self.send_header('Content-Length', str(len(resp.body)))
        if self.close_connection:
            self.send_header('Connection', 'close')
        self.end_headers()
        self.wfile.write(resp.body)
        self.wfile.flush()

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _serve

    def log_request(self, code='-', size='-'):
        pass                        # Simulator.log_request logs instead

    def log_message(self, fmt, *args):
        if self.server.sim.log_requests:
            _log('%s %s' % (self.address_string(), fmt % args))


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128        # listen backlog: the default 5 resets
    #                                 a client opening 16 connections at once

    def __init__(self, addr, sim, ssl_ctx):
        super().__init__(addr, _Handler)
        self.sim = sim
        if ssl_ctx is not None:
            # The handshake happens in the handler thread (_Handler.setup),
            # so one stuck client cannot block accept().
            self.socket = ssl_ctx.wrap_socket(
                self.socket, server_side=True, do_handshake_on_connect=False)

    def handle_error(self, request, client_address):
        if self.sim.log_requests:
            _log('connection from %s: %s' % (client_address[0],
                                              sys.exc_info()[1]))


# ------------------------------------------------------------ entry point

def _duration(text):
    """'30s', '2m', '72h', '3d' or plain seconds."""
    units = {'s': 1, 'm': 60, 'h': 3600, 'd': 86400}
    if text and text[-1] in units:
        return float(text[:-1]) * units[text[-1]]
    return float(text)


def main(argv=None):
    ap = argparse.ArgumentParser(description='Mailgun simulator for tests')
    ap.add_argument('--host', default='127.0.0.1')
    ap.add_argument('--port', type=int, default=0)
    ap.add_argument('--port-file')
    ap.add_argument('--domain', default='sim.example.org')
    ap.add_argument('--api-key', default='key-sim')
    ap.add_argument('--webhook-signing-key', default='sim-signing-key')
    ap.add_argument('--webhook-url')
    ap.add_argument('--tls-cert')
    ap.add_argument('--tls-key')
    ap.add_argument('--storage-ttl', type=_duration, default=72 * 3600.0)
    ap.add_argument('--max-body', type=int, default=DEFAULT_MAX_BODY)
    ap.add_argument('--delivery-delay', type=float, default=0.05)
    ap.add_argument('--webhook-delay', type=float, default=0.05)
    ap.add_argument('--webhook-retries', default='0.2,0.5,1,2',
                    help='comma-separated retry intervals in seconds')
    ap.add_argument('--webhook-max-tries', type=int, default=5)
    ap.add_argument('--webhook-events', default='accepted,delivered,failed')
    ap.add_argument('--quiet', action='store_true')
    a = ap.parse_args(argv)
    if bool(a.tls_cert) != bool(a.tls_key):
        ap.error('--tls-cert and --tls-key go together')
    sim = Simulator(
        domain=a.domain, api_key=a.api_key,
        signing_key=a.webhook_signing_key, webhook_url=a.webhook_url,
        host=a.host, port=a.port, tls_cert=a.tls_cert, tls_key=a.tls_key,
        storage_ttl=a.storage_ttl, max_body=a.max_body,
        delivery_delay=a.delivery_delay, webhook_delay=a.webhook_delay,
        webhook_retries=[float(x) for x in a.webhook_retries.split(',') if x],
        webhook_max_tries=a.webhook_max_tries,
        webhook_events=[e for e in a.webhook_events.split(',') if e],
        log=not a.quiet)
    sim.start()
    if a.port_file:                 # atomically, so pollers never see half
        tmp = a.port_file + '.tmp'
        with open(tmp, 'w') as f:
            f.write('%d\n' % sim.port)
        os.replace(tmp, a.port_file)
    print('listening %s' % sim.base_url, flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    sim.stop()
    return 0


if __name__ == '__main__':
    sys.exit(main())
