#!/bin/sh
# accept.sh: section 1 of `make bench`.  The disk's fsync rate, then the
# relay's accept rate with durable commits (WAL, synchronous=FULL) driven
# by Postfix's smtp-source at 1 and 20 clients, 4 KiB messages.  The
# forwarder and the tracker are off: this is SMTP in, commit, 250.
set -eu
. "$top/tests/bench/lib.sh"
trap bench_cleanup EXIT
trap 'exit 1' INT TERM
MSGS=${MSGS:-4000}

cc -O2 -o "$work/fsync_rate" "$top/tests/bench/fsync_rate.c"
fs=""
for r in $(seq "$RUNS"); do fs="$fs $("$work/fsync_rate" "$work" 2)"; done
bench_result "disk: 4 KiB write+fdatasync /s" "$fs"

port=$(bench_port)
bench_conf "$work/redrive.conf" "$port" "[tracker]
enabled = no"
bench_daemon "$work/redrive.conf" "$port"

# One run: msg/s for MSGS messages of $2 bytes over $1 sessions.
run_one() {
	"$PY" - "$1" "$2" "$port" "$MSGS" <<'PY'
import subprocess, sys, time
sess, ln, port, msgs = sys.argv[1:5]
t = time.monotonic()
subprocess.run(["smtp-source", "-s", sess, "-l", ln, "-m", msgs,
                "-f", "bench@example.com", "-t", "sink@example.com",
                "127.0.0.1:" + port], check=True)
print("%.0f" % (int(msgs) / (time.monotonic() - t)))
PY
}

for sess in 1 20; do
	rs=""
	for r in $(seq "$RUNS"); do rs="$rs $(run_one $sess 4096)"; done
	bench_result "relay accept msg/s, $sess client(s), 4 KiB" "$rs"
done
stored=$(bench_sql "SELECT count(*) FROM messages")
want=$((RUNS * 2 * MSGS))
if [ "$stored" -ne "$want" ]; then
	echo "bench: $stored messages stored, $want sent" >&2
	exit 1
fi
echo "  ($stored messages stored, as many as sent)"
