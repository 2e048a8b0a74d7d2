#!/usr/bin/env python3
"""Prepares the webhook-ingest bench (tests/bench/webhook.sh).

  webhook_prep.py clone DB TOTAL
      The store DB was made by redrived, and its messages were sent to the
      Mailgun simulator (each recipient 'sent', with a Mailgun id).  Copies
      the newest of them, with its recipient, send, and body, until the
      store holds TOTAL messages, each with a Mailgun id of its own, so
      that the events of the bench spread over many messages, as they do
      for real (a few events per message, not thousands).  The daemon must
      be stopped.

  webhook_prep.py bodies DB OUT THREADS COUNT RUN KEY
      Writes COUNT signed JSON webhook bodies, one per line, round robin
      into OUT.0 .. OUT.{THREADS-1} (one file per wrk thread).  Each body
      is a `delivered` event of a known message, correlated through
      user-variables redrive-id and the Mailgun message id as Mailgun
      sends them, with a new random token, a new event id, a fresh
      signature timestamp, and the lowercase hex HMAC-SHA256 of
      timestamp||token under KEY.  RUN shifts the messages and event times
      so that the runs of one bench follow each other.
"""

import hashlib
import hmac
import json
import os
import sqlite3
import sys
import time

# Shaped like shared/mailgun/fixtures/mailgun-docs-event-delivered.json.
TEMPLATE = (
    '{"signature":{"timestamp":"%(ts)s","token":"%(tok)s",'
    '"signature":"%(sig)s"},"event-data":{"event":"delivered",'
    '"id":"%(eid)s","timestamp":%(ets).6f,"log-level":"info",'
    '"envelope":{"transport":"smtp","sender":%(sender)s,'
    '"sending-ip":"198.51.100.23","targets":%(rcpt)s},'
    '"flags":{"is-routed":false,"is-authenticated":true,'
    '"is-system-test":false,"is-test-mode":false},'
    '"delivery-status":{"tls":true,"mx-host":"mx.example.net","code":250,'
    '"description":"","session-seconds":0.43,"utf8":true,"attempt-no":1,'
    '"message":"OK","certificate-verified":true},'
    '"message":{"headers":{"to":%(rcpt)s,"message-id":%(mgid)s,'
    '"from":%(sender)s,"subject":"bench"},"attachments":[],"size":%(size)d},'
    '"storage":{"url":"https://storage-us-west1.api.mailgun.net/v3/domains/'
    'bench.example/messages/%(skey)s","key":"%(skey)s"},'
    '"recipient":%(rcpt)s,"recipient-domain":"example.net","campaigns":[],'
    '"tags":[],"user-variables":{"redrive-id":"%(id)d"}}}\n')


def row_dict(db, sql, *args):
    cur = db.execute(sql, args)
    names = [d[0] for d in cur.description]
    row = cur.fetchone()
    if row is None:
        sys.exit("webhook_prep: no row for " + sql)
    return dict(zip(names, row))


def insert(db, table, row):
    cols = list(row)
    cur = db.execute("INSERT INTO %s (%s) VALUES (%s)" % (
        table, ",".join(cols), ",".join("?" * len(cols))),
        [row[c] for c in cols])
    return cur.lastrowid


def clone(path, total):
    db = sqlite3.connect(path, timeout=30)
    db.execute("PRAGMA foreign_keys=ON")
    have = db.execute("SELECT count(*) FROM messages").fetchone()[0]
    bad = db.execute("SELECT count(*) FROM recipients WHERE status != 'sent'"
                     " OR mailgun_id IS NULL").fetchone()[0]
    if have == 0 or bad:
        sys.exit("webhook_prep: %d messages, %d recipients not sent" % (
            have, bad))
    msg = row_dict(db, "SELECT * FROM messages ORDER BY id DESC LIMIT 1")
    mid = msg.pop("id")
    body = row_dict(db, "SELECT * FROM bodies WHERE message_id = ?", mid)
    rcpt = row_dict(db, "SELECT * FROM recipients WHERE message_id = ?", mid)
    att = row_dict(db, "SELECT * FROM attempts WHERE message_id = ?"
                   " AND mailgun_id IS NOT NULL", mid)
    for r in (rcpt, att):
        r.pop("id")
    stem, _, domain = msg["mailgun_id"].partition("@")
    with db:
        for n in range(total - have):
            mgid = "%s.%d@%s" % (stem, n, domain)
            new_mid = insert(db, "messages", dict(
                msg, mailgun_id=mgid,
                message_id="bench.%d.%d@bench.local" % (os.getpid(), n)))
            insert(db, "bodies", dict(body, message_id=new_mid))
            rid = insert(db, "recipients", dict(
                rcpt, message_id=new_mid, mailgun_id=mgid))
            aid = insert(db, "attempts", dict(
                att, message_id=new_mid, mailgun_id=mgid))
            db.execute("INSERT INTO attempt_rcpts (attempt_id, recipient_id)"
                       " VALUES (?, ?)", (aid, rid))
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()


def bodies(path, out, threads, count, run, key):
    db = sqlite3.connect("file:%s?mode=ro" % path, uri=True, timeout=30)
    rows = db.execute(
        "SELECT m.id, m.mailgun_id, m.mail_from, m.size, r.address"
        " FROM messages m JOIN recipients r ON r.message_id = m.id"
        " WHERE r.mailgun_id IS NOT NULL ORDER BY m.id").fetchall()
    db.close()
    if not rows:
        sys.exit("webhook_prep: no sent message in " + path)
    rows = [(i, json.dumps(mg), json.dumps(frm), size, json.dumps(rc))
            for i, mg, frm, size, rc in rows]
    key = key.encode()
    ts = str(int(time.time()))
    tsb = ts.encode()
    # Event times: after every earlier run's, a microsecond apart.
    ets0 = time.time() - 3600 + run * count * 1e-6
    files = [open("%s.%d" % (out, t), "w") for t in range(threads)]
    rnd = os.urandom(count * 41)
    for k in range(count):
        g = run * count + k
        i, mg, frm, size, rc = rows[g % len(rows)]
        r = rnd[k * 41:(k + 1) * 41]
        tok = r[:25].hex()
        eid = r[25:].hex()
        sig = hmac.new(key, tsb + tok.encode(), hashlib.sha256).hexdigest()
        files[k % threads].write(TEMPLATE % {
            "ts": ts, "tok": tok, "sig": sig, "eid": eid,
            "ets": ets0 + k * 1e-6, "sender": frm, "rcpt": rc, "mgid": mg,
            "size": size, "skey": eid[:22], "id": i})
    for f in files:
        f.close()


def main(argv):
    if len(argv) == 4 and argv[1] == "clone":
        clone(argv[2], int(argv[3]))
    elif len(argv) == 8 and argv[1] == "bodies":
        bodies(argv[2], argv[3], int(argv[4]), int(argv[5]), int(argv[6]),
               argv[7])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
