#!/usr/bin/env python3
"""Writes the fuzz seed corpora into tests/fuzz/seeds/<target>/.

The seeds come from the project's own test inputs: the C string literals
of tests/unit (SMTP lines and arguments, DATA streams, HTTP requests,
durations and dates, config snippets) and the byte strings the
integration tests send, etc/redrive.conf, and the real Mailgun payloads
of /work/shared/mailgun/fixtures (or $MAILGUN_FIXTURES), signed for the
fixed key, timestamp and token of tests/fuzz/fuzz_webhook.c.  Each target's
control bytes (fuzz_*.c headers) are prefixed where it has them.  Run from
the repository root; the output is deterministic (names are SHA-1s of the
contents), so it can be re-run and committed.
"""

import ast
import glob
import hashlib
import hmac
import json
import os
import re
import shutil
import sys
import urllib.parse

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "tests", "fuzz", "seeds")
FIXTURES = os.environ.get("MAILGUN_FIXTURES",
                          "/work/shared/mailgun/fixtures")
MAX_SEED = 16 * 1024

# tests/fuzz/fuzz_webhook.c
KEY = "key-3ax6xnjp29jd6fds4gc373sgvjxteol0"
TS = "1700000000"
TOKEN = "c0ffee5a1e7e1c0ffee5a1e7e1c0ffee5a1e7e1c0ffee5a1e7"
BOUNDARY = "----redriveFuzzBoundary"

LITERAL = re.compile(r'"((?:[^"\\\n]|\\.)*)"')


def c_unescape(s):
    """Decodes the escapes of one C string literal's body to bytes."""
    out = bytearray()
    i = 0
    while i < len(s):
        ch = s[i]
        if ch != "\\":
            out += ch.encode()
            i += 1
            continue
        i += 1
        e = s[i]
        simple = {"n": 10, "r": 13, "t": 9, "0": 0, "\\": 92, '"': 34,
                  "'": 39, "a": 7, "b": 8, "f": 12, "v": 11, "?": 63}
        if e == "x":
            j = i + 1
            while j < len(s) and s[j] in "0123456789abcdefABCDEF":
                j += 1
            out.append(int(s[i + 1:j], 16) & 0xff)
            i = j
        elif e in "01234567":
            j = i
            while j < len(s) and j < i + 3 and s[j] in "01234567":
                j += 1
            out.append(int(s[i:j], 8) & 0xff)
            i = j
        else:
            out.append(simple.get(e, ord(e)))
            i += 1
    return bytes(out)


def c_strings(path):
    """Every string literal of a C file, adjacent ones joined."""
    text = open(path, encoding="utf-8", errors="replace").read()
    text = re.sub(r"^\s*#\s*include.*$", "", text, flags=re.M)
    found = []
    for m in re.finditer(r'"(?:[^"\\\n]|\\.)*"(?:\s*"(?:[^"\\\n]|\\.)*")*',
                         text):
        parts = LITERAL.findall(m.group(0))
        found.append(b"".join(c_unescape(p) for p in parts))
    return [s for s in found if s]


def py_bytes(path):
    """Every bytes literal (b"...") of a Python file, adjacent ones joined."""
    text = open(path, encoding="utf-8").read()
    found = []
    for m in re.finditer(r'b"(?:[^"\\\n]|\\.)*"(?:\s*b"(?:[^"\\\n]|\\.)*")*',
                         text):
        try:
            found.append(ast.literal_eval("(" + m.group(0) + ")"))
        except (SyntaxError, ValueError):
            pass
    return [s for s in found if s]


def write(target, blobs):
    """Writes the seeds of one target, replacing what was there."""
    d = os.path.join(OUT, target)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    seen = set()
    for b in blobs:
        if not b or len(b) > MAX_SEED or b in seen:
            continue
        seen.add(b)
        name = hashlib.sha1(b).hexdigest()[:16]
        with open(os.path.join(d, name), "wb") as f:
            f.write(b)
    print(f"{target}: {len(seen)} seeds")


def unit(name):
    return c_strings(os.path.join(ROOT, "tests", "unit", name))


def integration_bytes():
    out = []
    for p in sorted(glob.glob(os.path.join(ROOT, "tests", "integration",
                                           "*.py"))):
        out += py_bytes(p)
    return out


def smtp_parse_seeds():
    verbs = (b"HELO", b"EHLO", b"MAIL", b"RCPT", b"DATA", b"RSET", b"NOOP",
             b"QUIT", b"VRFY", b"EXPN", b"HELP", b"STARTTLS", b"AUTH",
             b"BDAT")
    seeds = []
    for s in unit("test_smtp_parse.c"):
        seeds.append(s if s.endswith(b"\n") else s + b"\r\n")
        if s.upper().startswith(verbs):
            continue
        # An argument alone: as the command each test gives it to.
        for v, mark in ((b"MAIL ", b"FROM:"), (b"RCPT ", b"TO:")):
            if s.upper().startswith(mark):
                seeds.append(v + s + b"\r\n")
    for s in integration_bytes():
        if s[:4].upper() in verbs:
            seeds.append(s)
    seeds.append(b"EHLO client.test\r\nMAIL FROM:<a@b.test> SIZE=100 "
                 b"BODY=8BITMIME SMTPUTF8\r\nRCPT TO:<postmaster>\r\n"
                 b"RCPT TO:<@x,@y:c@d.test>\r\nDATA\r\nQUIT\r\n")
    write("smtp_parse", seeds)


def smtp_data_seeds():
    seeds = []
    for i, s in enumerate(unit("test_smtp_data.c")):
        if b"\n" in s:
            seeds.append(bytes([i % 7, 1, 2, 3]) + s)
    for s in integration_bytes():
        if b"\r\n.\r\n" in s:
            # What follows "DATA\r\n" when the test pipelines it.
            k = s.find(b"DATA\r\n")
            body = s[k + 6:] if k >= 0 else s
            seeds.append(bytes([6, 0, 0, 7]) + body)
    seeds.append(bytes([6, 9, 9, 9]) + b"Subject: x\r\n\r\n..dot\r\n.\r\n"
                 b"MAIL FROM:<a@b>\r\n")
    write("smtp_data", seeds)


def http_seeds():
    methods = (b"GET ", b"POST ", b"HEAD ", b"PUT ", b"PRI ", b"OPTIONS ",
               b"DELETE ", b"CONNECT ")
    seeds = []
    for s in unit("test_http_server.c"):
        if s.startswith(methods):
            for mode in (0, 1, 2):
                seeds.append(bytes([mode]) + s)
    seeds.append(b"\x00POST /webhooks/mailgun HTTP/1.1\r\nHost: a\r\n"
                 b"Content-Type: application/json\r\nExpect: 100-continue"
                 b"\r\nContent-Length: 2\r\n\r\n{}")
    seeds.append(b"\x01POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: "
                 b"chunked\r\n\r\n3;x=y\r\nabc\r\n0\r\nT: v\r\n\r\n"
                 b"GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n")
    write("http", seeds)


def config_seeds():
    seeds = [open(os.path.join(ROOT, "etc", "redrive.conf"), "rb").read()]
    for s in unit("test_config.c"):
        if b"[" in s and b"\n" in s:
            seeds.append(s)
    write("config", seeds)


def timeparse_seeds():
    seeds = []
    for name in ("test_timeutil.c", "test_config.c", "test_cli_util.c"):
        for s in unit(name):
            if len(s) <= 64 and b"\n" not in s and b"%" not in s:
                seeds.append(s)
    seeds += [b"5m", b"500ms", b"2h", b"7d", b"1w", b"10M", b"1G", b"yes",
              b"127.0.0.1:2525", b"[::1]:8025", b"*:2525",
              b"2026-11-28T00:31:27.123+01:00",
              b"Mon, 20 Dec 2021 20:33:21 UTC"]
    write("timeparse", seeds)


def sign(ts, token):
    return hmac.new(KEY.encode(), (ts + token).encode(),
                    hashlib.sha256).hexdigest()


def webhook_seeds():
    sig = sign(TS, TOKEN)
    seeds = []
    datas = []
    for p in sorted(glob.glob(os.path.join(FIXTURES, "*.json"))):
        doc = json.load(open(p, encoding="utf-8"))
        if not isinstance(doc, dict):
            continue
        data = doc.get("event-data", doc)
        if "event" not in data:
            continue
        datas.append(data)
    for data in datas:
        text = json.dumps(data, separators=(",", ":"))
        body = json.dumps({"signature": {"timestamp": TS, "token": TOKEN,
                                         "signature": sig},
                           "event-data": data}, separators=(",", ":"))
        seeds.append(b"\x00" + body.encode())
        seeds.append(b"\x04" + text.encode())
        seeds.append(b"\x03application/json; charset=utf-8\n" +
                     body.encode())
        # The legacy forms: flat fields, then the signature fields.
        fields = {"event": data.get("event", ""),
                  "recipient": data.get("recipient", ""),
                  "Message-Id": data.get("message", {}).get(
                      "headers", {}).get("message-id", ""),
                  "code": str(data.get("delivery-status", {}).get(
                      "code", "")),
                  "timestamp": TS, "token": TOKEN, "signature": sig}
        seeds.append(b"\x01" + urllib.parse.urlencode(fields).encode())
        parts = "".join(
            f"--{BOUNDARY}\r\nContent-Disposition: form-data; "
            f"name=\"{k}\"\r\n\r\n{v}\r\n" for k, v in fields.items())
        seeds.append(b"\x02" + (parts + f"--{BOUNDARY}--\r\n").encode())
    write("webhook", seeds)


def jdoc_seeds():
    """The Mailgun fixtures as they are, the JSON literals of the unit
    tests, and the corners of jansson's grammar."""
    seeds = []
    for p in sorted(glob.glob(os.path.join(FIXTURES, "*.json"))):
        with open(p, "rb") as f:
            seeds.append(f.read())
    for name in ("test_jdoc.c", "test_webhook.c"):
        for s in unit(name):
            if s[:1] in (b"{", b"[", b" ") and len(s) <= MAX_SEED:
                seeds.append(s)
    seeds += [b"[]", b"{}", b'{"a":[1,-0,1.5e300,1E-400,0.1,-2.5e-7]}',
              b'["\\u00e9\\ud83d\\ude00\\/\\b\\f\\n\\r\\t"]',
              b'[9223372036854775807,-9223372036854775808]',
              b'{"b":1,"a":{"c":null,"ab":true,"a":false}}',
              "[\"\u00e9\u20ac\U0001f600\"]".encode()]
    write("jdoc", seeds)


def main():
    os.chdir(ROOT)
    smtp_parse_seeds()
    smtp_data_seeds()
    http_seeds()
    config_seeds()
    timeparse_seeds()
    webhook_seeds()
    jdoc_seeds()
    return 0


if __name__ == "__main__":
    sys.exit(main())
