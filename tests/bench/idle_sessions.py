#!/usr/bin/env python3
"""Opens N idle SMTP sessions to 127.0.0.1:PORT for the memory bench
(tests/bench/memory.sh) and holds them until it is killed.

    idle_sessions.py PORT N READY_FILE

Connects in batches of 500 (the relay's listen backlog is 1024), reads
each session's 220 greeting, then writes N to READY_FILE and sleeps.  Any
session that is refused, closed, or greeted with anything but 220 is an
error (exit 1).  The caller raises `ulimit -n` above N.
"""

import os
import selectors
import socket
import sys
import time

BATCH = 500


def open_batch(port, count, sessions):
    sel = selectors.DefaultSelector()
    pending = {}
    for _ in range(count):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        s.connect_ex(("127.0.0.1", port))
        sel.register(s, selectors.EVENT_READ)
        pending[s] = b""
    end = time.monotonic() + 30
    while pending:
        left = end - time.monotonic()
        if left <= 0:
            sys.exit("idle_sessions: %d greetings missing" % len(pending))
        for key, _ in sel.select(left):
            s = key.fileobj
            try:
                data = s.recv(512)
            except OSError as e:
                sys.exit("idle_sessions: %s" % e)
            if not data:
                sys.exit("idle_sessions: a session was closed: %r" %
                         pending[s])
            pending[s] += data
            if b"\n" in pending[s]:
                if not pending[s].startswith(b"220"):
                    sys.exit("idle_sessions: greeted with %r" % pending[s])
                sel.unregister(s)
                del pending[s]
                sessions.append(s)
    sel.close()


def main(argv):
    if len(argv) != 4:
        sys.exit(__doc__)
    port, n, ready = int(argv[1]), int(argv[2]), argv[3]
    sessions = []
    while len(sessions) < n:
        open_batch(port, min(BATCH, n - len(sessions)), sessions)
    with open(ready + ".tmp", "w") as f:
        f.write("%d\n" % len(sessions))
    os.rename(ready + ".tmp", ready)
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main(sys.argv)
