"""Faults under load (issue 7): promise 1 of DESIGN.md ("no acknowledged
message is ever lost") and the at-least-once promise toward Mailgun of
docs/forwarding.md, proved with the real daemon, concurrent SMTP clients
and the Mailgun simulator.

1. kill -9 at random moments while clients send and the forwarder posts;
   restart, repeat SOAK_ROUNDS times (default 3; `make soak`: 100).
2. Random Mailgun faults (5xx, 420/429 with "try again after", timeouts,
   dropped connections, accept-then-500/-drop, a 200 without an id) at
   FAULT_RATE of the requests during FAULT_MESSAGES messages.
3. A full disk: the store on a small tmpfs, filled up.
4. The store locked by another process while the forwarder must record
   Mailgun's acceptance (the SMTP side of a locked store is
   test_store_fault.py).

Every test ends with the same check: each message that got a 250 is in the
store byte for byte and ends `sent`, each copy Mailgun got is the stored
message, and every copy beyond the first is explained (the duplicate rules
are above each test).  Each test prints a `FAULTS-SUMMARY` line that
scripts/soak.sh collects.  docs/soak.md describes all of it."""

from collections import Counter
import os
import random
import re
import smtplib
import sqlite3
import threading
import time

import pytest

from mailgun_fixtures import SCALE, mailgun_config, mailgun_sim  # noqa: F401
from smtputil import split_received
from tmpfs import fill, small_tmpfs

QUEUED_TEXT = re.compile(rb"^2\.0\.0 Ok: queued as ([0-9]+)$")
RCPT_RE = re.compile(r"^r([0-9]+)\.([a-z0-9]+)@dest\.example$")

SOAK_ROUNDS = int(os.environ.get("SOAK_ROUNDS", "3"))
FAULT_MESSAGES = int(os.environ.get("FAULT_MESSAGES", "120"))
FAULT_RATE = float(os.environ.get("FAULT_RATE", "0.25"))
SEED = os.environ.get("FAULT_SEED")


def make_rng(name):
    rng = random.Random()
    seed = int(SEED) if SEED else random.randrange(1 << 30)
    rng.seed(seed)
    print("%s: seed %d (FAULT_SEED=%d reproduces it)" % (name, seed, seed))
    return rng


# ---- load ------------------------------------------------------------------

def make_message(tag, i, rng, big=0):
    """Message i of a run: its one recipient r<i>.<tag>@dest.example names
    it in the store and at the simulator; lines with a leading dot test the
    (un)stuffing; `big` adds that many bytes of body."""
    marker = b"fault-%s-%06d" % (tag.encode(), i)
    lines = [b"From: App <app@example.com>",
             b"To: r%d.%s@dest.example" % (i, tag.encode()),
             b"Subject: " + marker,
             b"Message-ID: <" + marker + b"@client.test>", b""]
    for j in range(rng.randint(1, 40)):
        lines.append(b"%s line %d %s" % (marker, j, b"x" * rng.randint(0, 90)))
    if big:
        chunk = b"y" * 76
        lines.extend([chunk] * (big // 78))
    lines.append(b"." + marker + b" dotted line")
    lines.append(b"end " + marker)
    return b"\r\n".join(lines) + b"\r\n"


def rcpt_of(tag, i):
    return "r%d.%s@dest.example" % (i, tag)


class Load:
    """`nclients` threads, each with its own SMTP connection, send messages
    0..limit-1 (each once) until stop() or the limit.  A connection that
    breaks (the daemon was killed) is opened again until the daemon is
    back.  acked: i -> local id (250); refused: i -> reply (4xx/5xx);
    lost_reply: indexes whose transaction broke off without a reply."""

    def __init__(self, port, tag, limit, nclients, rng, big=0,
                 pause=0.0):
        self.port = port
        self.tag = tag
        self.limit = limit
        self.big = big
        self.pause = pause
        self.data = {}
        self.acked = {}
        self.refused = {}
        self.lost_reply = set()
        self.errors = []
        self.next = 0
        self.cond = threading.Condition()
        self.stopped = threading.Event()
        seeds = [rng.randrange(1 << 30) for _ in range(nclients)]
        self.threads = [threading.Thread(target=self._run, args=(s,),
                                         daemon=True) for s in seeds]

    def start(self):
        for t in self.threads:
            t.start()
        return self

    def stop(self, timeout=30):
        self.stopped.set()
        for t in self.threads:
            t.join(timeout * SCALE)
            assert not t.is_alive(), "an SMTP client hangs"

    def done(self):
        return not any(t.is_alive() for t in self.threads)

    def wait_acks(self, n, timeout):
        """Waits until n messages in all were acknowledged."""
        with self.cond:
            ok = self.cond.wait_for(lambda: len(self.acked) >= n or
                                    self.done(), timeout * SCALE)
        return ok and len(self.acked) >= n

    def _take(self, rng):
        with self.cond:
            if self.next >= self.limit or self.stopped.is_set():
                return None
            i = self.next
            self.next += 1
        data = make_message(self.tag, i, rng, self.big)
        with self.cond:
            self.data[i] = data
        return i

    def _run(self, seed):
        rng = random.Random(seed)
        s = None
        i = None
        while not self.stopped.is_set():
            try:
                if s is None:
                    s = smtplib.SMTP("127.0.0.1", self.port,
                                     local_hostname="client.test",
                                     timeout=15 * SCALE)
                    code, _ = s.ehlo()
                    if code != 250:
                        raise smtplib.SMTPResponseException(code, b"EHLO")
                i = self._take(rng)
                if i is None:
                    break
                code, text = s.mail("app@example.com")
                if code != 250:
                    raise smtplib.SMTPResponseException(code, text)
                code, text = s.rcpt(rcpt_of(self.tag, i))
                if code != 250:
                    raise smtplib.SMTPResponseException(code, text)
                code, text = s.data(self.data[i])
                with self.cond:
                    if code == 250:
                        m = QUEUED_TEXT.match(text)
                        if not m:
                            self.errors.append("bad 250 text %r" % text)
                        else:
                            self.acked[i] = int(m.group(1))
                    else:
                        self.refused[i] = "%d %s" % (
                            code, text.decode("utf-8", "replace"))
                    self.cond.notify_all()
                i = None
                if code != 250:
                    s.rset()
                if self.pause:
                    time.sleep(rng.uniform(0, self.pause))
            except (smtplib.SMTPException, OSError) as e:
                with self.cond:
                    if i is not None:
                        self.lost_reply.add(i)
                        # Not sent again: it may be stored (killed between
                        # commit and 250); the checks allow exactly that.
                    i = None
                    self.cond.notify_all()
                if s is not None:
                    try:
                        s.close()
                    except OSError:
                        pass
                s = None
                if not isinstance(e, (OSError, smtplib.SMTPServerDisconnected,
                                      smtplib.SMTPResponseException)):
                    with self.cond:
                        self.errors.append(repr(e))
                self.stopped.wait(0.02)
        if s is not None:
            try:
                s.quit()
            except (smtplib.SMTPException, OSError):
                pass


# ---- the store and the simulator -------------------------------------------

def read_store(path):
    """The store's rows this test checks, read with SQLite directly (one
    read transaction; the CLI per message would take minutes in the soak):
    {id: {"body", "mailgun_id", "rcpts": [(address, status)], "attempts":
    [(http_status, mailgun_id)]}}."""
    con = sqlite3.connect(path, timeout=30)
    try:
        con.execute("BEGIN")
        out = {}
        for mid, mg in con.execute("SELECT id, mailgun_id FROM messages"):
            out[mid] = {"mailgun_id": mg, "rcpts": [], "attempts": [],
                        "body": None}
        for mid, data in con.execute("SELECT message_id, data FROM bodies"):
            out[mid]["body"] = bytes(data)
        for mid, addr, st in con.execute(
                "SELECT message_id, address, status FROM recipients "
                "ORDER BY id"):
            out[mid]["rcpts"].append((addr, st))
        for mid, status, mg in con.execute(
                "SELECT message_id, http_status, mailgun_id FROM attempts "
                "ORDER BY id"):
            out[mid]["attempts"].append((status, mg))
        con.execute("COMMIT")
        return out
    finally:
        con.close()


def integrity(path):
    con = sqlite3.connect(path, timeout=30)
    try:
        return [r[0] for r in con.execute("PRAGMA integrity_check")]
    finally:
        con.close()


def wait_all_sent(d, timeout, what):
    """Polls `redrive log --json` until every stored message is `sent`;
    returns the rows by id.  Fails when `timeout` seconds pass without
    one more message sent (a soak's backlog drains for minutes), or
    after 15 minutes in all."""
    deadline = time.monotonic() + timeout * SCALE
    cap = time.monotonic() + 900 * SCALE
    best = None
    while True:
        rows = {r["id"]: r for r in d.log_json()}
        left = [i for i, r in rows.items() if r["status"] != "sent"]
        if not left:
            return rows
        if best is None or len(left) < best:
            best = len(left)
            deadline = min(cap, time.monotonic() + timeout * SCALE)
        if time.monotonic() > deadline:
            pytest.fail("%s: %d messages not sent, none for %.0fs, e.g. %r; "
                        "log tail:\n%s" % (what, len(left), timeout * SCALE,
                                           rows[left[0]],
                                           d.log()[-3000:]))
        time.sleep(0.2)


def check_store(d, sim, load, rows, late_ok=None):
    """The common end check.  Every acknowledged message is stored under
    its id, byte-exact behind one Received field, and ends `sent` (the
    message and its recipient); a stored message that was not acknowledged
    is one a client sent whose reply was cut off by a kill, complete too.
    Each copy the simulator accepted is the stored message, carrying the
    recipient and the local id.  The store's Mailgun id is that of the
    last copy, answered 200: no send follows the recorded one, except a
    copy for which late_ok(copy) is true (a request a killed daemon had
    sent, accepted after its successor's copy).  Returns (store, copies
    by local id)."""
    store = read_store(d.store)
    acked_ids = list(load.acked.values())
    assert len(set(acked_ids)) == len(acked_ids), "an id acknowledged twice"
    lost = [(i, mid) for i, mid in load.acked.items() if mid not in store]
    assert not lost, "LOST: acknowledged (index, id) not in the store: %r" \
        % lost[:20]
    seen = {}
    for mid, m in store.items():
        assert len(m["rcpts"]) == 1, (mid, m["rcpts"])
        addr, status = m["rcpts"][0]
        mm = RCPT_RE.match(addr)
        assert mm and mm.group(2) == load.tag, (mid, addr)
        i = int(mm.group(1))
        assert i not in seen, "message %d stored twice: ids %d and %d" % (
            i, seen[i], mid)
        seen[i] = mid
        if i in load.acked:
            assert load.acked[i] == mid, (i, load.acked[i], mid)
        else:
            assert i in load.lost_reply, \
                "message %d stored as %d but the client got %r" % (
                    i, mid, load.refused.get(i, "no transaction"))
        _, rest = split_received(m["body"])
        assert rest == load.data[i], "stored bytes of %d (index %d) differ" \
            % (mid, i)
        assert status == "sent", (mid, m["rcpts"])
        assert rows[mid]["status"] == "sent", rows[mid]
        assert rows[mid]["mailgun_id"] == m["mailgun_id"], rows[mid]
    copies = {}
    for c in sim.messages():
        mid = int(c["variables"]["redrive-id"])
        assert mid in store, "Mailgun got id %d, not in the store" % mid
        assert sim.body(c) == store[mid]["body"], \
            "Mailgun's copy of %d differs from the store" % mid
        assert c["recipients"] == [store[mid]["rcpts"][0][0]], c
        copies.setdefault(mid, []).append(c)
    for mid in store:
        got = copies.get(mid, [])
        assert got, "stored message %d never reached Mailgun" % mid
        got.sort(key=lambda c: c["time"])
        # The store's Mailgun id is that of a copy Mailgun answered 200
        # to, and no send follows it but the late_ok ones.
        ids = [c["id"] for c in got]
        assert store[mid]["mailgun_id"] in ids, (
            mid, store[mid]["mailgun_id"], ids)
        rec = ids.index(store[mid]["mailgun_id"])
        after = got[rec + 1:]
        assert all(late_ok is not None and late_ok(c) for c in after), (
            mid, store[mid]["mailgun_id"], ids)
        assert got[rec]["answered"] == 200, got[rec]
    return store, copies


def summary(name, **kv):
    print("FAULTS-SUMMARY test=%s %s" % (name, " ".join(
        "%s=%s" % (k, v) for k, v in kv.items())))


# ---- 1. kill -9 under load ---------------------------------------------------

KILL_CLIENTS = 6
KILL_CONCURRENCY = 8
# A request sent before the kill can still be accepted by the simulator a
# little after it (it reads and handles the whole request first).
KILL_SLACK = 1.0


def test_kill9_rounds_under_load(daemon, mailgun_sim, mailgun_config):
    """SOAK_ROUNDS times: the daemon runs for a random while (0.05-0.6 s
    after a first 250 of its run) under six clients and a forwarder with
    eight requests in flight, then gets SIGKILL and is started again on
    the same store.  After the last round the clients stop and the queue
    drains.

    Duplicate rule.  With no Mailgun faults every request is accepted with
    a 200, so a copy at Mailgun is either *recorded* (its Mailgun id is in
    the message's `attempts` rows) or the daemon died between Mailgun's
    acceptance and the commit of that record.  So: each message has
    exactly one recorded copy; every other copy is unrecorded and was
    accepted by Mailgun during a run that ended in SIGKILL (from that
    run's start to its kill, plus KILL_SLACK for a request still being
    handled); the last run, ended by SIGTERM after the drain, leaves none.
    The recorded copy is the last one, but for a copy a killed run had in
    flight: the simulator may handle it after the next run has sent the
    message again and recorded that copy (seen once in a 100-round soak:
    the new run had started, sent and recorded the message within 50 ms
    of the old run's last log line, and the simulator accepted the killed
    run's request after that), so a copy after the recorded one must
    have been accepted within KILL_SLACK after a kill.  That is the at-least-once case 1 of docs/forwarding.md and
    nothing else.  The count per kill is printed next to the forwarder's
    concurrency: the requests in flight (at most `concurrency`) plus the
    answers whose record was not yet committed."""
    rng = make_rng("kill9")
    rounds = SOAK_ROUNDS
    d = daemon(mailgun_config(concurrency=KILL_CONCURRENCY,
                              retry_min="50ms", retry_max="500ms"),
               start=False)
    limit = 300 + 300 * rounds
    runs = []           # (start time, kill time or None)
    t0 = time.monotonic()
    s0 = time.time()
    d.start()
    load = Load(d.port, "k", limit, KILL_CLIENTS, rng, pause=0.01).start()
    try:
        for r in range(rounds):
            if load.next < limit:
                base = len(load.acked)
                assert load.wait_acks(base + 1, 30), \
                    "round %d: no 250 within 30s; errors %r; log:\n%s" % (
                        r, load.errors, d.log()[-3000:])
            time.sleep(rng.uniform(0.05, 0.6))
            k = time.time()
            d.kill()
            runs.append((s0, k))
            s0 = time.time()
            d.start()
        load.stop()
        runs.append((s0, None))
        assert not load.errors, load.errors
        rows = wait_all_sent(d, 60, "after the last kill")
    finally:
        load.stopped.set()
    store, copies = check_store(
        d, mailgun_sim, load, rows,
        late_ok=lambda c: any(k is not None and k < c["time"] <= k +
                              KILL_SLACK for _, k in runs))

    dups = 0
    per_kill = [0] * (len(runs) - 1)
    unexplained = []
    for mid, got in copies.items():
        recorded = {a[1] for a in store[mid]["attempts"] if a[1]}
        assert [a[0] for a in store[mid]["attempts"]] == [200] * len(
            store[mid]["attempts"]), (mid, store[mid]["attempts"])
        assert recorded == {store[mid]["mailgun_id"]}, \
            (mid, recorded, [c["id"] for c in got])
        for c in got:
            if c["id"] in recorded:
                continue
            dups += 1
            where = [n for n, (s, k) in enumerate(runs)
                     if k is not None and s <= c["time"] <= k + KILL_SLACK]
            if not where:
                unexplained.append((mid, c["id"], c["time"]))
            else:
                per_kill[where[-1]] += 1
    took = time.monotonic() - t0
    kills = len(runs) - 1
    summary("kill9", rounds=kills, acked=len(load.acked),
            stored_unacked=len(store) - len(load.acked),
            cut_off=len(load.lost_reply), lost=0, copies=sum(
                len(c) for c in copies.values()), duplicates=dups,
            duplicates_cause="killed-between-accept-and-commit",
            max_dup_per_kill=max(per_kill) if per_kill else 0,
            concurrency=KILL_CONCURRENCY, seconds="%.1f" % took)
    assert not unexplained, \
        "duplicates outside any killed run (mid, mailgun id, time): %r; " \
        "runs %r" % (unexplained, runs)
    assert kills == rounds


# ---- 2. Mailgun faults under load -------------------------------------------

TIMEOUT_S = 1.0
# Faults and their weights.  slow:1.5 outlasts [mailgun] timeout = 1s: the
# simulator accepts the message and answers too late.
FAULTS = [("500", 3), ("502", 1), ("503", 2), ("504", 1), ("no-id", 1),
          ("429-seconds:1", 1), ("420:1,reset=s", 1), ("drop", 2),
          ("accept-then-500", 2), ("accept-then-drop", 1), ("slow:1.5", 1)]
# Faults after which Mailgun holds a copy though the daemon did not hear 200.
ACCEPTING = {"accept-then-500", "accept-then-drop", "slow:1.5"}


def test_mailgun_faults_under_load(daemon, mailgun_sim, mailgun_config):
    """FAULT_MESSAGES messages from four clients while about FAULT_RATE of
    the forwarder's requests get a random fault.  Every message is
    acknowledged and ends `sent`.

    Duplicate rule (case 2 of docs/forwarding.md).  For each message, the
    simulator's requests and the store's `attempts` rows match one to one
    (same count, the same answers); the copy the store names is the last,
    answered 200; every earlier copy came from a request whose fault
    accepts the message and then answers otherwise (accept-then-500,
    accept-then-drop, slow past the timeout), and each such request left a
    copy.  So duplicates == requests with an accepting fault, exactly."""
    rng = make_rng("faults")
    d = daemon(mailgun_config(concurrency=8, timeout="1s",
                              retry_min="50ms", retry_max="500ms"))
    weighted = [f for f, w in FAULTS for _ in range(w)]
    t0 = time.monotonic()
    load = Load(d.port, "f", FAULT_MESSAGES, 4, rng, pause=0.01).start()
    injected = []
    stop = threading.Event()

    def inject():
        # Keeps the simulator's fault queue topped up so that about
        # FAULT_RATE of the requests meet a fault (one more may wait).
        while not stop.is_set():
            n = len(mailgun_sim.requests())
            add = [rng.choice(weighted)
                   for _ in range(int(n * FAULT_RATE) + 1 - len(injected))]
            if add:
                mailgun_sim.faults(*add)
                injected.extend(add)
            stop.wait(0.02)

    th = threading.Thread(target=inject, daemon=True)
    th.start()
    try:
        deadline = time.monotonic() + 120 * SCALE
        while not load.done() and time.monotonic() < deadline:
            time.sleep(0.1)
        load.stop()
        assert not load.errors, load.errors
        assert not load.refused and not load.lost_reply, (load.refused,
                                                          load.lost_reply)
        assert len(load.acked) == FAULT_MESSAGES
        # Faults go on until the queue is empty.
        rows = wait_all_sent(d, 60 + FAULT_MESSAGES * 0.05, "faults")
    finally:
        stop.set()
        th.join(10)
    rows = wait_all_sent(d, 30, "faults, after the last fault")
    store, copies = check_store(d, mailgun_sim, load, rows)

    # Requests with a fault that answers before reading the form carry no
    # recipients at the simulator, so requests and `attempts` rows are
    # matched by their answers, all together: each request is one row.
    by_id = {}
    used = {}
    want = []
    accepting = 0
    for q in mailgun_sim.requests():
        if not q["path"].endswith("/messages.mime"):
            continue
        f = q.get("fault") or ""
        if f:
            used[f] = used.get(f, 0) + 1
        if f in ACCEPTING:
            accepting += 1
        if q.get("id"):
            by_id[q["id"]] = q
        if q["status"] == "dropped" or f.startswith("slow:"):
            want.append("none")     # no answer within the timeout
        elif f == "no-id":
            want.append("200 no id")
        else:
            want.append(str(q["status"]))
    got_rows = []
    for mid, m in store.items():
        for status, mg in m["attempts"]:
            got_rows.append("none" if status is None else
                            "200 no id" if status == 200 and mg is None
                            else str(status))
    # libcurl sends a request again, once and silently, when a reused
    # connection closes without a byte of answer: a dropped request can
    # thus be followed by another one the store knows nothing about (its
    # answer is recorded instead).  Only "no answer" rows may be missing.
    want_c, got_c = Counter(want), Counter(got_rows)
    assert not got_c - want_c, ("sends the simulator never saw",
                                got_c - want_c)
    hidden = want_c - got_c
    dropped = sum(1 for q in mailgun_sim.requests()
                  if q["status"] == "dropped")
    assert set(hidden) <= {"none"} and hidden["none"] <= dropped, \
        ("requests at Mailgun missing from the store", hidden, dropped)
    dups = 0
    for mid, m in store.items():
        got = copies[mid]
        for c in got[:-1]:
            dups += 1
            q = by_id.get(c["id"])
            assert q is not None and q.get("fault") in ACCEPTING, \
                "unexplained duplicate of %d: copy %r from request %r" % (
                    mid, c["id"], q)
        last = by_id.get(got[-1]["id"])
        assert last is not None and not last.get("fault"), (mid, last)
        ided = [mg for st, mg in m["attempts"] if mg]
        assert ided == [got[-1]["id"]], (mid, m["attempts"])
        assert m["attempts"][-1] == (200, got[-1]["id"]), m["attempts"]
    nreq = len(want)
    assert dups == accepting
    summary("mailgun-faults", acked=len(load.acked), lost=0,
            requests=nreq, unrecorded_resends=hidden["none"],
            faults=sum(used.values()),
            fault_mix="|".join("%s=%d" % kv for kv in sorted(used.items())),
            duplicates=dups,
            duplicates_cause="accept-then-500/accept-then-drop/slow-timeout",
            seconds="%.1f" % (time.monotonic() - t0))
    assert sum(used.values()) > 0, "no fault was injected"


# ---- 3. a full disk -------------------------------------------------------------

def send_one(d, tag, i, rng, data_size):
    """One message through its own connection: (code, text, data)."""
    data = make_message(tag, i, rng, data_size)
    s = smtplib.SMTP("127.0.0.1", d.port, local_hostname="client.test",
                     timeout=20 * SCALE)
    try:
        s.ehlo()
        code, _ = s.mail("app@example.com")
        assert code == 250
        code, _ = s.rcpt(rcpt_of(tag, i))
        assert code == 250
        code, text = s.data(data)
        s.quit()
    finally:
        s.close()
    return code, text, data


def test_disk_full(daemon, mailgun_sim, mailgun_config):
    """The store on an 8 MiB tmpfs; a filler file takes the rest.  Then:
    no 250 for a message that is not stored, 451 for the ones that cannot
    be (the client keeps them); the daemon keeps running and logs "store
    commit failed" (and "cannot record" when a Mailgun answer cannot be
    written), nothing else at level=error; the store passes
    integrity_check.  With the filler gone the next message gets 250, all
    acknowledged messages are intact and end `sent`, and no message
    reached Mailgun twice (a record that failed is retried, not the
    send)."""
    with small_tmpfs("8m") as mnt:
        disk_full_run(daemon, mailgun_sim, mailgun_config, mnt)


def disk_full_run(daemon, mailgun_sim, mailgun_config, mnt):
    """test_disk_full on the mounted tmpfs mnt."""
    rng = make_rng("diskfull")
    over = mailgun_config(retry_min="50ms", retry_max="500ms")
    over["store"] = {"path": os.path.join(mnt, "redrive.db")}
    d = daemon(over, allow_errors=True, start=False)
    filler = os.path.join(mnt, "filler")
    load = Load(0, "d", 0, 0, rng)      # bookkeeping only; no threads
    t0 = time.monotonic()
    try:
        d.start()
        i = 0
        for _ in range(5):
            code, text, data = send_one(d, "d", i, rng, 2000)
            assert code == 250, (code, text)
            load.data[i] = data
            load.acked[i] = int(QUEUED_TEXT.match(text).group(1))
            i += 1
        wait_all_sent(d, 20, "before the disk filled")
        filled = fill(filler)
        print("filler: %d bytes" % filled)

        # Send until the store refuses (WAL pages already on the disk can
        # still take a few commits), then a few more while it is full.
        first_refusal = None
        for n in range(200):
            code, text, data = send_one(d, "d", i, rng, 32 * 1024)
            load.data[i] = data
            if code == 250:
                load.acked[i] = int(QUEUED_TEXT.match(text).group(1))
            else:
                assert text.startswith(b"4.3.0 ") and code == 451, \
                    (code, text)
                load.refused[i] = "%d %s" % (code, text.decode())
                if first_refusal is None:
                    first_refusal = n
                elif n >= first_refusal + 3:
                    i += 1
                    break
            i += 1
        assert first_refusal is not None, \
            "200 messages of 32K stored on a full 8 MiB disk?"
        assert d.proc.poll() is None, "the daemon died on a full disk:\n" \
            + d.log()[-3000:]
        log = d.log()
        full_lines = [ln for ln in log.splitlines()
                      if 'msg="store commit failed"' in ln]
        assert full_lines, "no 'store commit failed' line:\n" + log[-3000:]
        assert any("full" in ln or "errno=28" in ln for ln in full_lines), \
            "the log does not say the disk is full:\n" + "\n".join(
                full_lines[:5])
        assert integrity(d.store) == ["ok"]
        # A refused message is not in the store (checked below for all).
        os.unlink(filler)

        code, text, data = send_one(d, "d", i, rng, 2000)
        assert code == 250, "after freeing the disk: %d %r" % (code, text)
        load.data[i] = data
        load.acked[i] = int(QUEUED_TEXT.match(text).group(1))
        rows = wait_all_sent(d, 30, "after freeing the disk")
        store, copies = check_store(d, mailgun_sim, load, rows)
        for mid, got in copies.items():
            assert len(got) == 1, "message %d reached Mailgun %d times" % (
                mid, len(got))
        for j in load.refused:
            assert j not in {int(RCPT_RE.match(m["rcpts"][0][0]).group(1))
                             for m in store.values()}
        assert integrity(d.store) == ["ok"]
        bad = [ln for ln in d.all_logs().splitlines()
               if "level=error" in ln and
               'msg="store commit failed"' not in ln and
               'msg="forwarder cannot record a Mailgun answer' not in ln]
        assert not bad, "unexpected errors:\n" + "\n".join(bad)
        d.stop()
        summary("disk-full", acked=len(load.acked),
                refused_451=len(load.refused), lost=0, duplicates=0,
                seconds="%.1f" % (time.monotonic() - t0))
    finally:
        if d.proc is not None:
            d.kill()


# ---- 4. the store locked while a Mailgun answer must be recorded -------------

def test_store_locked_while_recording(daemon, mailgun_sim, mailgun_config):
    """Mailgun accepts a message (slowly) while another process holds the
    store's write lock: the record of the 200 fails after the busy
    timeout and is logged; the message is not sent again meanwhile; once
    the lock is gone the record commits and the message is `sent` with
    exactly one copy at Mailgun and one send in the store.  SMTP meanwhile
    answers 451 (test_store_fault.py covers that side)."""
    rng = make_rng("locked")
    d = daemon(mailgun_config(timeout="10s", retry_min="100ms",
                              retry_max="1s"), allow_errors=True)
    # Mailgun takes the message at once and answers 2 s later; the lock is
    # taken only once the message is there, so that under a loaded machine
    # it cannot land before the forwarder has sent (that would test the
    # queue read, not the record of the answer).
    mailgun_sim.faults("slow:2")
    load = Load(0, "l", 0, 0, rng)
    code, text, data = send_one(d, "l", 0, rng, 0)
    assert code == 250, (code, text)
    load.data[0] = data
    load.acked[0] = mid = int(QUEUED_TEXT.match(text).group(1))
    deadline = time.monotonic() + 10 * SCALE
    while not mailgun_sim.messages_for(mid):
        assert time.monotonic() < deadline, "the message never reached Mailgun"
        time.sleep(0.02)
    lock = sqlite3.connect(d.store, isolation_level=None, timeout=10)
    lock.execute("BEGIN EXCLUSIVE")
    try:
        deadline = time.monotonic() + 20 * SCALE
        while "cannot record a Mailgun answer" not in d.log():
            assert time.monotonic() < deadline, d.log()
            time.sleep(0.1)
        assert d.proc.poll() is None
        time.sleep(1.5)  # past retry_max: a resend would show now
        assert len(mailgun_sim.messages_for(mid)) == 1
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    rows = wait_all_sent(d, 20, "after the unlock")
    store, copies = check_store(d, mailgun_sim, load, rows)
    assert len(copies[mid]) == 1
    assert len(mailgun_sim.requests()) == 1
    assert [a[0] for a in store[mid]["attempts"]] == [200]
    bad = [ln for ln in d.all_logs().splitlines()
           if "level=error" in ln and
           'msg="forwarder cannot record a Mailgun answer' not in ln and
           'msg="forwarder cannot read the queue' not in ln and
           # the re-drive timer's look at the schedule is a store request
           # too: it fails while the lock is held and is re-armed
           'msg="re-drive: cannot read the schedule"' not in ln and
           'msg="store commit failed"' not in ln]
    assert not bad, "\n".join(bad)


# ---- 5. regression: a due message while every request slot is busy ----------

def test_due_while_all_slots_busy(daemon, mailgun_sim, mailgun_config):
    """Regression (found by test 2): with every request slot busy and a
    deferred recipient coming due, the forwarder armed its timer for a
    moment already past, at 0 ms, from the timer's own callback; libuv
    1.44 then runs that timer forever in one loop pass and the daemon
    stops serving (SMTP hangs, SIGTERM is ignored).  Here: one slot; A
    gets a 503 (due again 0.5 s later) while B's request is answered
    only after 2 s.  During that wait the relay must keep answering."""
    d = daemon(mailgun_config(concurrency=1, timeout="5s",
                              retry_min="500ms", retry_max="1s"))
    mailgun_sim.faults("503", "slow:2")
    rng = make_rng("slots")
    load = Load(0, "s", 0, 0, rng)
    for i in range(2):
        code, text, data = send_one(d, "s", i, rng, 0)
        assert code == 250, (code, text)
        load.data[i] = data
        load.acked[i] = int(QUEUED_TEXT.match(text).group(1))
    time.sleep(1.0)  # A is due, B's answer is still a second away
    t = time.monotonic()
    code, text, data = send_one(d, "s", 2, rng, 0)
    assert code == 250, (code, text)
    assert time.monotonic() - t < 1.0 * SCALE, "the relay stalled"
    load.data[2] = data
    load.acked[2] = int(QUEUED_TEXT.match(text).group(1))
    rows = wait_all_sent(d, 15, "after the slow answer")
    store, copies = check_store(d, mailgun_sim, load, rows)
    assert all(len(c) == 1 for c in copies.values()), copies
