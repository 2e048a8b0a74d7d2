"""Tests of the Mailgun simulator itself (pytest, urllib/http.client only).

Each test starts the simulator in-process on a free port.  The simulator
must be faithful to shared/mailgun/FACTS.md, so the assertions quote the
bodies and headers written there.
"""

import base64
import hashlib
import hmac
import http.client
import http.server
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mailgun_sim as ms  # noqa: E402

DOMAIN = 'mg.example.test'
KEY = 'key-3ax6xnjp29jd6fds4gc373sgvjxteol0'
SIGNING = 'sign-0p6mqbf74lb20gzq9f4dhpn9rg3zyk26'
HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, '..', '..', '..', 'shared', 'mailgun',
                        'fixtures')
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))
MIME = (b'From: Sender <sender@mg.example.test>\r\nTo: a@x.test\r\n'
        b'Subject: hello\r\nMessage-ID: <local.1@client.test>\r\n\r\n'
        b'line one\r\n.leading dot\r\nbare LF\nbare CR\rNUL\x00 8bit \xe9\xff'
        b'\r\n--BOUNDARYish but not the boundary\r\n\r\n')


# ------------------------------------------------------------- helpers

@pytest.fixture
def sim():
    s = ms.Simulator(domain=DOMAIN, api_key=KEY, signing_key=SIGNING,
                     delivery_delay=0.01, webhook_delay=0.01,
                     webhook_retries=(0.05, 0.1, 0.1, 0.1), log=False)
    s.start()
    yield s
    s.stop()


class Receiver:
    """A webhook endpoint: records each POST, answers from a script."""

    def __init__(self):
        self.posts = []
        self.script = []            # statuses to answer, then 200
        self.lock = threading.Lock()
        outer = self

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = 'HTTP/1.1'

            def do_POST(self):
                body = self.rfile.read(int(self.headers['Content-Length']))
                with outer.lock:
                    outer.posts.append((dict(self.headers), body))
                    status = outer.script.pop(0) if outer.script else 200
                self.send_response(status)
                self.send_header('Content-Length', '0')
                self.end_headers()

            def log_message(self, *a):
                pass
        self.server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), H)
        self.url = 'http://127.0.0.1:%d/webhooks/mailgun' % (
            self.server.server_address[1])
        threading.Thread(target=self.server.serve_forever,
                         kwargs={'poll_interval': 0.05}, daemon=True).start()

    def bodies(self):
        with self.lock:
            return [json.loads(b) for _, b in self.posts]


@pytest.fixture
def receiver(sim):
    r = Receiver()
    sim.set_webhook_url(r.url)
    yield r
    r.server.shutdown()
    r.server.server_close()


def form(fields=(), files=(), boundary='----sim-test-7MA4YWxkTrZu0gW'):
    """multipart/form-data body; files are (name, filename, bytes)."""
    out = []
    for name, value in fields:
        out.append(b'--%s\r\nContent-Disposition: form-data; name="%s"\r\n'
                   b'\r\n%s\r\n' % (boundary.encode(), name.encode(),
                                    value.encode()))
    for name, filename, data in files:
        fn = b'' if filename is None else b'; filename="%s"' % (
            filename.encode())
        out.append(b'--%s\r\nContent-Disposition: form-data; name="%s"%s\r\n'
                   b'Content-Type: message/rfc822\r\n\r\n%s\r\n' % (
                       boundary.encode(), name.encode(), fn, data))
    out.append(b'--%s--\r\n' % boundary.encode())
    return b''.join(out), 'multipart/form-data; boundary=%s' % boundary


def call(url, body=None, ctype=None, auth=('api', KEY), method=None,
         headers=None, opener=OPENER):
    """One request; returns (status, headers, body bytes)."""
    req = urllib.request.Request(url, data=body, method=method)
    if ctype:
        req.add_header('Content-Type', ctype)
    if auth:
        req.add_header('Authorization', 'Basic ' + base64.b64encode(
            ('%s:%s' % auth).encode()).decode())
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    try:
        with opener.open(req, timeout=10) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        with e:
            return e.code, e.headers, e.read()


def send(sim, to=('a@x.test',), data=MIME, extra=(), **kw):
    body, ctype = form([('to', t) for t in to] + list(extra),
                       [('message', 'message.mime', data)])
    return call('%s/v3/%s/messages.mime' % (sim.base_url, DOMAIN), body,
                ctype, **kw)


def send_ok(sim, *a, **kw):
    status, _, body = send(sim, *a, **kw)
    assert status == 200, body
    return ms._bare(json.loads(body)['id'])


def control(sim, path, obj=None):
    body = None if obj is None else json.dumps(obj).encode()
    status, _, out = call(sim.base_url + path, body, 'application/json',
                          auth=None)
    return status, json.loads(out)


def msg_error(resp):
    status, headers, body = resp
    assert headers['Content-Type'] == 'application/json'
    return status, json.loads(body)['message']


def events(sim, **params):
    url = '%s/v3/%s/events?%s' % (sim.base_url, DOMAIN,
                                  urllib.parse.urlencode(params))
    status, _, body = call(url)
    assert status == 200, body
    return json.loads(body)


def verify(key, sig):
    want = hmac.new(key.encode(), (sig['timestamp'] + sig['token']).encode(),
                    hashlib.sha256).hexdigest()
    return hmac.compare_digest(want, sig['signature'])


# ------------------------------------------------------- auth and errors

def test_bad_or_missing_auth_is_401_forbidden_text(sim):
    for auth in (None, ('api', 'wrong'), ('API', KEY), ('user', KEY)):
        status, headers, body = send(sim, auth=auth)
        assert status == 401 and body == b'Forbidden'
        assert headers['Content-Type'] == 'text/plain; charset=utf-8'
        assert headers['Www-Authenticate'] == 'Basic realm="MG API"'
        assert headers['Content-Length'] == '9'
    assert sim.messages() == []


def test_unknown_domain_is_404(sim):
    body, ctype = form([('to', 'a@x.test')], [('message', 'm', MIME)])
    resp = call(sim.base_url + '/v3/other.test/messages.mime', body, ctype)
    assert msg_error(resp) == (404, 'Domain not found: other.test')


def test_content_type_must_be_multipart(sim):
    url = '%s/v3/%s/messages.mime' % (sim.base_url, DOMAIN)
    resp = call(url, b'to=a%40x.test', 'application/x-www-form-urlencoded')
    assert msg_error(resp) == (400, "Invalid request content type. Expecting "
                               "'multipart/form-data' but got "
                               "'application/x-www-form-urlencoded'")
    resp = call(url, b'x', None, method='POST',
                headers={'Content-Type': ''})
    assert msg_error(resp)[0] == 400


@pytest.mark.parametrize('fields,files,message', [
    ([], [('message', 'm.eml', MIME)], 'to parameter is missing'),
    ([('to', 'a@x.test')], [], 'message parameter is missing'),
    ([('to', 'a@x.test'), ('message', 'From: x\r\n\r\nhi')], [],
     "'message' parameter is not a file"),
    ([('to', 'a@x.test')], [('message', '', MIME)],
     "'message' parameter is not a file"),
    ([('to', 'not an address')], [('message', 'm', MIME)],
     'to parameter is not a valid address. please check documentation'),
    ([('to', 'a@x.test'), ('v:big', 'x' * 16400)], [('message', 'm', MIME)],
     'Send options (parameters starting with o:, h:, or v:) are limited to '
     '16 kB total'),
    ([('to', 'a@x.test'), ('h:X-Caf\u00e9', 'v')], [('message', 'm', MIME)],
     'Header name must be pure ASCII: X-Caf\u00e9'),
    ([('to', 'a@x.test'), ('o:deliverytime', '2024-01-01T00:00:00Z')],
     [('message', 'm', MIME)],
     '2024-01-01T00:00:00Z is not an RFC-2822 compliant date'),
])
def test_send_400_bodies(sim, fields, files, message):
    body, ctype = form(fields, files)
    resp = call('%s/v3/%s/messages.mime' % (sim.base_url, DOMAIN), body,
                ctype)
    assert msg_error(resp) == (400, message)
    assert sim.messages() == []


def test_truncated_multipart_is_400(sim):
    body, ctype = form([('to', 'a@x.test')], [('message', 'm', MIME)])
    url = '%s/v3/%s/messages.mime' % (sim.base_url, DOMAIN)
    status, msg = msg_error(call(url, body[:-40], ctype))
    assert (status, msg) == (400, 'unable to parse request: unexpected EOF')
    status, msg = msg_error(call(url, body, 'multipart/form-data'))
    assert (status, msg) == (400, 'malformed multipart/form-data request')


def test_recipient_limit(sim):
    many = ['r%d@x.test' % i for i in range(1001)]
    assert msg_error(send(sim, to=[', '.join(many)])) == (
        400, 'Too many recipients, max is 1000')
    # repeated fields count together
    assert msg_error(send(sim, to=[', '.join(many[:600]),
                                   ', '.join(many[600:])]))[0] == 400
    send_ok(sim, to=[', '.join(many[:1000])])
    assert len(sim.messages()[0]['recipients']) == 1000


def test_request_too_large_is_413(sim):
    sim.configure(max_body=4000)
    resp = send(sim, data=b'x' * 5000)
    assert msg_error(resp) == (413, 'request size exceeds 52.4MiB limit')
    # With Expect: 100-continue the 413 comes before the body is sent.
    with socket.create_connection(('127.0.0.1', sim.port), 5) as s:
        s.sendall(b'POST /v3/%s/messages.mime HTTP/1.1\r\nHost: x\r\n'
                  b'Content-Type: multipart/form-data; boundary=b\r\n'
                  b'Content-Length: 9000\r\nExpect: 100-continue\r\n\r\n'
                  % DOMAIN.encode())
        assert s.recv(4096).startswith(b'HTTP/1.1 413 ')


# ------------------------------------------------------------- success

def test_success_id_headers_and_byte_exact_message(sim):
    status, headers, body = send(
        sim, to=['"Doe, Jane" <a@x.test>, b@y.test', 'A@x.test'],
        extra=[('v:redrive-id', '42'), ('o:tag', 't1'), ('o:tag', 't2'),
               ('h:X-Relay', 'redrive')])
    assert status == 200
    assert headers['Content-Type'] == 'application/json'
    assert int(headers['Content-Length']) == len(body)
    answer = json.loads(body)
    assert answer['message'] == 'Queued. Thank you.'
    assert re.fullmatch(r'<\d{14}\.\d+\.\d+@%s>' % re.escape(DOMAIN),
                        answer['id'])
    reset = int(headers['X-Ratelimit-Reset'])
    assert reset > 10 ** 12 and abs(reset / 1000 - time.time()) < 60
    for h in ('X-Ratelimit-Limit', 'X-Ratelimit-Remaining',
              'X-Recipient-Limit', 'X-Recipient-Remaining'):
        assert headers[h].isdigit()
    [m] = sim.messages()
    assert base64.b64decode(m['message_b64']) == MIME
    assert m['id'] == answer['id'][1:-1] and m['api_id'] == answer['id']
    assert m['recipients'] == ['a@x.test', 'b@y.test']   # duplicate dropped
    assert m['variables'] == {'redrive-id': '42'}
    assert m['options'] == {'tag': ['t1', 't2']}
    assert m['headers'] == {'X-Relay': 'redrive'}
    assert m['via'] == 'mime'
    assert m['storage_url'] == '%s/v3/domains/%s/messages/%s' % (
        sim.base_url, DOMAIN, m['storage_key'])


def test_keep_alive_and_chunked_body(sim):
    body, ctype = form([('to', 'a@x.test')], [('message', 'm', MIME)])
    auth = 'Basic ' + base64.b64encode(('api:' + KEY).encode()).decode()
    conn = http.client.HTTPConnection('127.0.0.1', sim.port, timeout=5)
    path = '/v3/%s/messages.mime' % DOMAIN
    for a in ('Basic eHh4Og==', auth, auth):
        conn.request('POST', path, body, {'Content-Type': ctype,
                                          'Authorization': a})
        r = conn.getresponse()
        r.read()
        assert r.status == (401 if a != auth else 200)
        assert r.getheader('Connection') != 'close'
    chunks = iter([body[:100], body[100:]])
    conn.request('POST', path, chunks, {'Content-Type': ctype,
                                        'Authorization': auth},
                 encode_chunked=True)
    assert conn.getresponse().status == 200
    conn.close()
    assert [base64.b64decode(m['message_b64']) for m in sim.messages()] == \
        [MIME] * 3


def test_multipart_parser_on_every_cut():
    body, ctype = form([('to', 'a@x.test'), ('v:x', 'y')],
                       [('message', 'm', MIME)])
    boundary = ctype.split('=', 1)[1].encode()
    parts = ms.parse_multipart(body, boundary)
    assert [(p.name, p.filename) for p in parts] == [
        ('to', None), ('v:x', None), ('message', 'm')]
    assert parts[2].data == MIME
    for cut in range(len(body)):
        try:
            ms.parse_multipart(body[:cut], boundary)
        except ms.FormError:
            pass


# ---------------------------------------------------------------- faults

def test_fault_kinds(sim):
    sim.add_faults(['500', '502', '503', '429-date:120,reset=ms',
                    '429-seconds:2,reset=s', '420:30', '401', '403',
                    '400:Rejected: Only 10 recipients per request is '
                    'allowed on probation.', 'magnificent', 'no-id'])
    now = time.time()
    s, m = msg_error(send(sim))
    assert s == 500
    for code in (502, 503):
        status, headers, body = send(sim)
        assert status == code and headers['Content-Type'] == 'text/html'
    status, headers, body = send(sim)
    msg = json.loads(body)['message']
    assert status == 429
    mt = re.fullmatch(r'Domain %s is not allowed to send: request limit '
                      r'exceeded, try again after (.*) UTC' %
                      re.escape(DOMAIN), msg)
    when = ms._rfc2822(mt.group(1) + ' +0000')
    assert now + 110 < when < now + 130
    assert abs(int(headers['X-RateLimit-Reset']) / 1000 - when) < 2
    status, headers, body = send(sim)
    assert status == 429 and json.loads(body)['message'].endswith(
        'limit exceeded, try again after 2 seconds')
    assert abs(int(headers['X-RateLimit-Reset']) - now - 2) < 3
    s, m = msg_error(send(sim))
    assert s == 420 and 'recipient limit exceeded, try again after' in m
    status, headers, body = send(sim)
    assert (status, body) == (401, b'Forbidden')
    s, m = msg_error(send(sim))
    assert s == 403 and m.startswith('Domain %s is not allowed to send: '
                                     % DOMAIN)
    assert msg_error(send(sim)) == (400, 'Rejected: Only 10 recipients per '
                                    'request is allowed on probation.')
    status, headers, body = send(sim)
    assert (status, body) == (200, b'Mailgun Magnificent API')
    assert headers['Content-Type'].startswith('text/html')
    status, headers, body = send(sim)
    assert status == 200 and 'id' not in json.loads(body)
    assert sim.messages() == []              # none of these was accepted
    send_ok(sim)                             # the queue is used up
    assert [r['status'] for r in sim.requests()] == [
        500, 502, 503, 429, 429, 420, 401, 403, 400, 200, 200, 200]


def test_fault_slow_drop_and_accept_then_500(sim):
    sim.add_faults(['slow:0.3', 'drop', 'accept-then-500'])
    t0 = time.monotonic()
    send_ok(sim)
    assert time.monotonic() - t0 >= 0.3
    with pytest.raises((urllib.error.URLError, http.client.HTTPException,
                        ConnectionError)):
        send(sim)
    assert len(sim.messages()) == 1
    assert msg_error(send(sim))[0] == 500
    msgs = sim.messages()
    assert len(msgs) == 2 and msgs[1]['answered'] == 500
    sim.wait_idle()
    # ... and it was sent: the Events API knows it.
    got = events(sim, **{'message-id': msgs[1]['id']})['items']
    assert {e['event'] for e in got} == {'accepted', 'delivered'}
    assert sim.requests()[1]['status'] == 'dropped'


def test_sticky_auth_fail_and_bad_fault(sim):
    assert control(sim, '/_sim/faults', {'faults': ['500']})[0] == 200
    assert control(sim, '/_sim/faults', {'faults': ['teapot']})[0] == 400
    control(sim, '/_sim/auth-fail', {'on': True})
    for _ in range(3):
        assert send(sim)[0] == 401
    assert call('%s/v3/%s/events' % (sim.base_url, DOMAIN))[0] == 401
    control(sim, '/_sim/auth-fail', {'on': False})
    assert send(sim)[0] == 500               # the queued fault is still there
    send_ok(sim)


# --------------------------------------------------------------- storage

def test_storage_resend_get_and_expiry(sim):
    first = send_ok(sim, to=['a@x.test', 'b@x.test'],
                    extra=[('v:redrive-id', '9')])
    url = sim.messages()[0]['storage_url']
    status, _, body = call(url, b'to=b%40x.test',
                           'application/x-www-form-urlencoded')
    assert status == 200
    second = ms._bare(json.loads(body)['id'])
    assert second != first
    fbody, ctype = form([('to', 'c@x.test, a@x.test')])
    assert call(url, fbody, ctype)[0] == 200
    m = sim.messages()
    assert [x['via'] for x in m] == ['mime', 'storage', 'storage']
    assert m[1]['recipients'] == ['b@x.test']
    assert m[2]['recipients'] == ['c@x.test', 'a@x.test']
    assert m[1]['resend_of'] == first
    assert base64.b64decode(m[2]['message_b64']) == MIME
    assert m[2]['variables'] == {'redrive-id': '9'}
    # same checks as a send
    assert msg_error(call(url, b'x=1', 'application/x-www-form-urlencoded')
                     ) == (400, 'to parameter is missing')
    assert call(url, b'to=b%40x.test', 'application/x-www-form-urlencoded',
                auth=('api', 'bad'))[0] == 401
    sim.add_faults(['503'])
    assert call(url, b'to=b%40x.test',
                'application/x-www-form-urlencoded')[0] == 503
    status, _, body = call(url)
    assert status == 200
    assert json.loads(body)['body-mime'].startswith('From: Sender')
    # expire it through the control API
    key = m[0]['storage_key']
    assert control(sim, '/_sim/storage/expire', {'key': key}) == (
        200, {'expired': 1})
    assert msg_error(call(url, b'to=b%40x.test',
                          'application/x-www-form-urlencoded')) == (
        404, 'Message not found')
    assert msg_error(call(url)) == (404, 'Message not found')
    # ... or by TTL, counted from the first acceptance
    send_ok(sim)
    url = sim.messages()[-1]['storage_url']
    assert call(url)[0] == 200
    sim.configure(storage_ttl=0.01)
    time.sleep(0.05)
    assert msg_error(call(url)) == (404, 'Message not found')


def test_storage_key_url_encoded(sim):
    send_ok(sim)
    m = sim.messages()[0]
    url = '%s/v3/domains/%s/messages/%s' % (
        sim.base_url, DOMAIN, urllib.parse.quote(m['storage_key'], safe=''))
    assert call(url)[0] == 200


# ------------------------------------------------------------ Events API

def test_events_filters_and_paging(sim):
    sim.set_rules({'bad': 'fail-permanent:reason=bounce,code=550,'
                   'enhanced=5.1.1'})
    ids = [send_ok(sim, to=['ok%d@x.test' % i, 'bad%d@x.test' % i])
           for i in range(3)]
    assert sim.wait_idle()
    everything = events(sim, ascending='yes', limit=300)['items']
    assert len(everything) == 12
    stamps = [e['timestamp'] for e in everything]
    assert stamps == sorted(stamps)
    desc = events(sim)['items']
    assert [e['id'] for e in desc] == [e['id'] for e in everything][::-1]
    mine = events(sim, **{'message-id': ids[1]})['items']
    assert len(mine) == 4 and all(
        e['message']['headers']['message-id'] == ids[1] for e in mine)
    # angle brackets: the filter does not work (FACTS 1.3)
    assert len(events(sim, **{'message-id': '<%s>' % ids[1]})['items']) == 12
    failed = events(sim, event='failed')['items']
    assert {e['recipient'] for e in failed} == {'bad0@x.test', 'bad1@x.test',
                                                'bad2@x.test'}
    assert all(e['severity'] == 'permanent' and e['reason'] == 'bounce'
               for e in failed)
    assert len(events(sim, event='failed OR delivered')['items']) == 6
    assert len(events(sim, event='NOT accepted')['items']) == 6
    assert [e['event'] for e in events(sim, recipient='OK1@x.test',
                                       ascending='yes')['items']] == [
        'accepted', 'delivered']
    # time range
    mid = everything[5]['timestamp']
    got = events(sim, begin=mid, ascending='yes')['items']
    assert [e['id'] for e in got] == [e['id'] for e in everything[5:]]
    got = events(sim, begin=everything[2]['timestamp'],
                 end=everything[4]['timestamp'])['items']
    assert [e['id'] for e in got] == [e['id'] for e in everything[2:5]]
    # paging: 5 per page, follow next until an empty page
    page = events(sim, ascending='yes', limit=5)
    seen = []
    while page['items']:
        seen += page['items']
        status, _, body = call(page['paging']['next'])
        assert status == 200
        page = json.loads(body)
    assert [e['id'] for e in seen] == [e['id'] for e in everything]
    # polling the last next URL picks up new events
    send_ok(sim, to=['late@x.test'])
    sim.wait_idle()
    page = json.loads(call(page['paging']['next'])[2])
    assert [e['recipient'] for e in page['items']] == ['late@x.test'] * 2
    # previous / first / last
    first = events(sim, ascending='yes', limit=5)
    page2 = json.loads(call(first['paging']['next'])[2])
    back = json.loads(call(page2['paging']['previous'])[2])
    assert back['items'] == first['items']
    last = json.loads(call(first['paging']['last'])[2])
    assert last['items'][-1]['recipient'] == 'late@x.test'
    assert len(last['items']) == 5
    for bad in ({'limit': 301}, {'limit': 0}, {'begin': 'yesterday'}):
        url = '%s/v3/%s/events?%s' % (sim.base_url, DOMAIN,
                                      urllib.parse.urlencode(bad))
        assert msg_error(call(url))[0] == 400
    assert call('%s/v3/%s/events/garbage' % (sim.base_url, DOMAIN))[0] == 400


def _fixture(name):
    path = os.path.join(FIXTURES, name)
    if not os.path.exists(path):
        pytest.skip('fixtures not found at %s' % FIXTURES)
    with open(path) as f:
        return json.load(f)


def test_event_shapes_match_fixtures(sim):
    sim.set_rules({'bad@x.test': 'fail-permanent:reason=bounce',
                   'sup': 'fail-permanent:reason=suppress-bounce,code=605',
                   'tmp': 'fail-temporary'})
    mid = send_ok(sim, to=['good@x.test', 'bad@x.test', 'sup1@x.test',
                           'tmp@x.test'], extra=[('v:redrive-id', '5')])
    sim.wait_idle()
    by = {(e['event'], e['recipient']): e for e in sim.events()}
    pairs = [(('delivered', 'good@x.test'), 'symfony-delivered.json'),
             (('failed', 'bad@x.test'), 'symfony-failed-permanent-bounce.json'),
             (('failed', 'sup1@x.test'),
              'symfony-failed-permanent-suppress-bounce.json'),
             (('failed', 'tmp@x.test'), 'symfony-failed-temporary-generic.json'),
             (('accepted', 'good@x.test'), 'symfony-accepted.json')]
    for key, name in pairs:
        ours, theirs = by[key], _fixture(name)['event-data']
        assert set(theirs) - set(ours) - {'api-key-id'} == set(), name
        if 'delivery-status' in theirs:
            missing = set(theirs['delivery-status']) - set(
                ours['delivery-status'])
            assert missing == set(), (name, missing)
        for k in ('message', 'envelope', 'storage'):
            assert isinstance(ours[k], dict)
        assert isinstance(ours['timestamp'], float)
        assert ours['message']['headers']['message-id'] == mid
        assert ours['user-variables'] == {'redrive-id': '5'}
    sup = by[('failed', 'sup1@x.test')]['delivery-status']
    assert (sup['code'], sup['description']) == (
        605, 'Not delivering to previously bounced address')
    tmp = by[('failed', 'tmp@x.test')]
    assert tmp['severity'] == 'temporary' and tmp['log-level'] == 'warn'
    assert tmp['delivery-status']['retry-seconds'] == 600


def test_rules(sim, receiver):
    sim.set_rules({'flaky@x.test': 'fail-then-deliver:2',
                   'db': 'delayed-bounce',
                   'quiet': 'drop-webhook',
                   'tmp': 'fail-temporary:then=delivered',
                   'old': 'fail-temporary:reason=old,code=602',
                   'q': 'accept-only'})
    assert control(sim, '/_sim/rules', {'rules': {'x': 'explode'}})[0] == 400
    send_ok(sim, to=['flaky@x.test', 'db@x.test', 'quiet@x.test',
                     'tmp@x.test', 'old1@x.test', 'q@x.test'])
    sim.wait_idle()
    url = sim.messages()[0]['storage_url']
    for _ in range(2):
        assert call(url, b'to=flaky%40x.test',
                    'application/x-www-form-urlencoded')[0] == 200
        sim.wait_idle()
    seq = {}
    for e in sim.events():
        seq.setdefault(e['recipient'], []).append(
            (e['event'], e.get('severity'), e.get('reason')))
    A, D = ('accepted', None, None), ('delivered', None, None)
    F = ('failed', 'permanent', 'espblock')
    assert seq['flaky@x.test'] == [A, F, A, F, A, D]
    assert seq['db@x.test'] == [A, D, ('failed', 'permanent', 'generic')]
    assert seq['quiet@x.test'] == [A, D]
    assert seq['tmp@x.test'] == [A, ('failed', 'temporary', 'generic'), D]
    assert seq['old1@x.test'] == [A, ('failed', 'temporary', 'old')]
    assert seq['q@x.test'] == [A]
    bounce = [e for e in sim.events() if e['recipient'] == 'db@x.test'][-1]
    assert bounce['flags']['is-delayed-bounce'] is True
    assert bounce['delivery-status']['enhanced-code'] == '5.1.1'
    espblock = [e for e in sim.events() if e['event'] == 'failed' and
                e['recipient'] == 'flaky@x.test']
    ips = {e['envelope']['sending-ip'] for e in espblock}
    assert len(ips) == 2                      # a new IP for each attempt
    hooks = {(b['event-data']['event'], b['event-data']['recipient'])
             for b in receiver.bodies()}
    assert ('accepted', 'quiet@x.test') in hooks
    assert ('delivered', 'quiet@x.test') not in hooks
    assert ('delivered', 'db@x.test') in hooks


# -------------------------------------------------------------- webhooks

def test_webhooks_are_signed(sim, receiver):
    mid = send_ok(sim, extra=[('v:redrive-id', '17')])
    assert sim.wait_idle()
    posts = receiver.bodies()
    assert [p['event-data']['event'] for p in posts] == ['accepted',
                                                         'delivered']
    for headers, raw in receiver.posts:
        assert headers['Content-Type'] == 'application/json'
    for p in posts:
        sig = p['signature']
        assert isinstance(sig['timestamp'], str) and sig['timestamp'].isdigit()
        assert abs(int(sig['timestamp']) - time.time()) < 30
        assert re.fullmatch(r'[0-9a-f]{50}', sig['token'])
        assert re.fullmatch(r'[0-9a-f]{64}', sig['signature'])
        assert verify(SIGNING, sig) and not verify(KEY, sig)
        ev = p['event-data']
        assert ev['message']['headers']['message-id'] == mid
        assert ev['user-variables'] == {'redrive-id': '17'}
        assert ev['storage']['url'] == sim.messages()[0]['storage_url']
    assert posts[0]['signature']['token'] != posts[1]['signature']['token']
    assert all(h['state'] == 'delivered' for h in sim.webhooks())


def test_signature_vectors_match_verify():
    for v in _fixture('signature-test-vectors.json'):
        assert verify(v['key'], v) is v['valid']


def test_webhook_retry_then_success_same_signature(sim, receiver):
    sim.configure(webhook_events=['delivered'])
    receiver.script = [500, 403, 200]
    send_ok(sim)
    assert sim.wait_idle()
    assert len(receiver.posts) == 3
    assert len({b for _, b in receiver.posts}) == 1   # identical bodies
    [hook] = sim.webhooks()
    assert [a['status'] for a in hook['attempts']] == [500, 403, 200]
    assert hook['state'] == 'delivered'
    gaps = [b['time'] - a['time'] for a, b in zip(hook['attempts'],
                                                  hook['attempts'][1:])]
    assert gaps[0] >= 0.04 and gaps[1] >= 0.09


def test_webhook_406_stops_and_gives_up_after_max(sim, receiver):
    sim.configure(webhook_events=['delivered'])
    receiver.script = [406]
    send_ok(sim)
    sim.wait_idle()
    assert len(receiver.posts) == 1 and sim.webhooks()[0]['state'] == \
        'rejected'
    receiver.script = [503] * 10
    send_ok(sim)
    sim.wait_idle()
    hook = sim.webhooks()[1]
    assert hook['state'] == 'gave-up' and len(hook['attempts']) == 5
    assert len(receiver.posts) == 6


def test_webhook_unreachable_is_retried(sim):
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]            # closed again: refused
    sim.configure(webhook_events=['delivered'], webhook_max_tries=2)
    control(sim, '/_sim/webhook-url', {'url': 'http://127.0.0.1:%d/' % port})
    send_ok(sim)
    sim.wait_idle()
    [hook] = sim.webhooks()
    assert hook['state'] == 'gave-up'
    assert [a['status'] for a in hook['attempts']] == [None, None]
    assert all(a['error'] for a in hook['attempts'])


def test_replay_and_late_outcome(sim, receiver):
    sim.configure(webhook_events=['delivered', 'failed'])
    mid = send_ok(sim)
    sim.wait_idle()
    assert control(sim, '/_sim/webhooks/replay', {'index': 0}) == (
        200, {'index': 1})
    assert control(sim, '/_sim/deliver', {
        'id': '<%s>' % mid, 'recipient': 'a@x.test',
        'rule': 'fail-permanent:reason=old'})[0] == 200
    sim.wait_idle()
    raws = [b for _, b in receiver.posts]
    assert raws[0] == raws[1]
    assert json.loads(raws[2])['event-data']['reason'] == 'old'


# ----------------------------------------------------------- control API

def test_control_api_over_http(sim):
    assert control(sim, '/_sim/rules', {'rules': {'b': 'fail-permanent'}}) \
        == (200, {'rules': {'b': 'fail-permanent'}})
    assert control(sim, '/_sim/faults', {'faults': ['500']}) == (
        200, {'queued': 1})
    assert send(sim)[0] == 500
    send_ok(sim, to=['b1@x.test'])
    status, out = control(sim, '/_sim/idle?timeout=5')
    assert out == {'idle': True}
    status, reqs = control(sim, '/_sim/requests')
    assert [(r['status'], r.get('fault'), r.get('recipients')) for r in reqs] \
        == [(500, '500', None), (200, None, ['b1@x.test'])]
    status, msgs = control(sim, '/_sim/messages')
    assert base64.b64decode(msgs[0]['message_b64']) == MIME
    status, evs = control(sim, '/_sim/events')
    assert [e['event'] for e in evs] == ['accepted', 'failed']
    assert control(sim, '/_sim/config')[1]['domain'] == DOMAIN
    assert control(sim, '/_sim/reset', {}) == (200, {'reset': True})
    assert control(sim, '/_sim/messages')[1] == []
    assert control(sim, '/_sim/nothing', {})[0] == 404
    assert call(sim.base_url + '/_sim/faults', b'[', 'application/json',
                auth=None)[0] == 400


def test_unknown_path_is_magnificent(sim):
    status, _, body = call(sim.base_url + '/v3/a/b/messages.mime', b'x',
                           'text/plain')
    assert (status, body) == (200, b'Mailgun Magnificent API')


# ------------------------------------------------------- CLI and TLS

def test_command_line(tmp_path):
    port_file = tmp_path / 'port'
    proc = subprocess.Popen(
        [sys.executable, os.path.join(HERE, 'mailgun_sim.py'), '--port', '0',
         '--port-file', str(port_file), '--domain', DOMAIN, '--api-key', KEY,
         '--webhook-signing-key', SIGNING, '--storage-ttl', '1h'],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        port = int(port_file.read_text())
        assert line.strip() == 'listening http://127.0.0.1:%d' % port
        base = 'http://127.0.0.1:%d' % port
        body, ctype = form([('to', 'a@x.test')], [('message', 'm', MIME)])
        assert call('%s/v3/%s/messages.mime' % (base, DOMAIN), body,
                    ctype)[0] == 200
        status, _, out = call(base + '/_sim/config', auth=None)
        assert json.loads(out)['storage_ttl'] == 3600
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0
    assert 'POST /v3/%s/messages.mime 200' % DOMAIN in err


@pytest.mark.skipif(shutil.which('openssl') is None, reason='no openssl')
def test_tls_with_ca_verification(tmp_path):
    cert, key = tmp_path / 'cert.pem', tmp_path / 'key.pem'
    subprocess.run(['openssl', 'req', '-x509', '-newkey', 'rsa:2048',
                    '-nodes', '-keyout', str(key), '-out', str(cert),
                    '-days', '1', '-subj', '/CN=127.0.0.1',
                    '-addext', 'subjectAltName=IP:127.0.0.1'],
                   check=True, capture_output=True)
    import ssl
    with ms.Simulator(domain=DOMAIN, api_key=KEY, tls_cert=str(cert),
                      tls_key=str(key), log=False) as s:
        opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(
                context=ssl.create_default_context(cafile=str(cert))))
        body, ctype = form([('to', 'a@x.test')], [('message', 'm', MIME)])
        url = '%s/v3/%s/messages.mime' % (s.base_url, DOMAIN)
        assert url.startswith('https://')
        assert call(url, body, ctype, opener=opener)[0] == 200
        assert s.messages()[0]['storage_url'].startswith('https://')
        with pytest.raises(urllib.error.URLError):
            call(url, body, ctype)           # default CAs: not trusted
        # a plain-HTTP client does not hang the server
        with socket.create_connection(('127.0.0.1', s.port), 5) as raw:
            raw.sendall(b'GET / HTTP/1.1\r\n\r\n')
            raw.recv(100)
        assert call(url, body, ctype, opener=opener)[0] == 200


def test_rule_options_and_precedence(sim, receiver):
    sim.configure(webhook_events=['delivered', 'failed'])
    sim.set_rules({'*': 'fail-permanent:reason=old',
                   'n': 'fail-permanent:delivery-status=null,webhook=no',
                   'no': 'fail-temporary:then=old,retry=900,message=a%2Cb',
                   'nope@x.test': 'delivered'})
    send_ok(sim, to=['n1@x.test', 'no1@x.test', 'nope@x.test', 'z@x.test'])
    sim.wait_idle()
    out = [(e['recipient'], e['event'], e.get('severity'), e.get('reason'))
           for e in sim.events() if e['event'] != 'accepted']
    assert sorted(out) == sorted([
        ('n1@x.test', 'failed', 'permanent', 'generic'),
        ('no1@x.test', 'failed', 'temporary', 'generic'),
        ('no1@x.test', 'failed', 'permanent', 'old'),
        ('nope@x.test', 'delivered', None, None),
        ('z@x.test', 'failed', 'permanent', 'old')])
    by = {(e['recipient'], e.get('severity')): e for e in sim.events()}
    assert by[('n1@x.test', 'permanent')]['delivery-status'] is None
    tmp = by[('no1@x.test', 'temporary')]['delivery-status']
    assert (tmp['retry-seconds'], tmp['message']) == (900, 'a,b')
    old = by[('no1@x.test', 'permanent')]['delivery-status']
    assert (old['code'], old['description'], old['attempt-no']) == (
        602, 'Too old', 8)
    hooked = {b['event-data']['recipient'] for b in receiver.bodies()}
    assert 'n1@x.test' not in hooked and 'z@x.test' in hooked


def test_accept_then_drop_and_plain_429(sim):
    sim.add_faults(['accept-then-drop', '429'])
    with pytest.raises((urllib.error.URLError, http.client.HTTPException,
                        ConnectionError)):
        send(sim)
    assert sim.messages()[0]['answered'] == 0
    s, m = msg_error(send(sim))
    assert s == 429 and 'request limit exceeded, try again after' in m


def test_concurrent_sends(sim):
    results = []

    def worker(i):
        results.append(send_ok(sim, to=['c%d@x.test' % i]))
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(results)) == 20
    assert sim.wait_idle()
    assert len([e for e in sim.events() if e['event'] == 'delivered']) == 20
