#!/bin/sh
# make bench: not a test, a measurement.  Accept rate of the relay with
# durable commits (WAL, synchronous=FULL), driven by Postfix's smtp-source,
# printed beside this disk's fsync rate.  Medians of RUNS runs with their
# spread.  Postfix itself is not started.
set -eu
top=$(cd "$(dirname "$0")/../.." && pwd)
B="${REDRIVE_BUILD:-$top/build}"
RUNS=${RUNS:-3}
MSGS=${MSGS:-4000}
work="$top/build/bench"
rm -rf "$work"
mkdir -p "$work"

cc -O2 -o "$work/fsync_rate" "$top/tests/bench/fsync_rate.c"

command -v smtp-source >/dev/null 2>&1 || {
	echo "bench: smtp-source not found (Debian package postfix)" >&2
	exit 1
}

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$work/redrive.conf" <<CONF
[relay]
listen = 127.0.0.1:$port
hostname = bench.local
max_connections = 2000
[tracker]
enabled = no
[store]
path = $work/redrive.db
[log]
level = warn
CONF

pid=
cleanup() {
	[ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
	return 0
}
trap cleanup EXIT INT TERM

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
spread() { sort -n | awk 'NR==1{lo=$1} {hi=$1} END {printf "%s-%s", lo, hi}'; }

"$B/redrived" -c "$work/redrive.conf" 2>"$work/redrived.log" &
pid=$!
for i in $(seq 50); do
	python3 -c "import socket; socket.create_connection(('127.0.0.1',$port),1)" 2>/dev/null && break
	sleep 0.1
done

# One run: elapsed seconds for MSGS messages of LEN bytes over SESS sessions.
run_one() {
	sess=$1 len=$2
	python3 - "$sess" "$len" "$port" "$MSGS" <<'PY'
import subprocess, sys, time
sess, ln, port, msgs = sys.argv[1:5]
t = time.monotonic()
subprocess.run(["smtp-source", "-s", sess, "-l", ln, "-m", msgs,
                "-f", "bench@example.com", "-t", "sink@example.com",
                "127.0.0.1:" + port], check=True)
print("%.0f" % (int(msgs) / (time.monotonic() - t)))
PY
}

fs=""
for r in $(seq "$RUNS"); do fs="$fs $("$work/fsync_rate" "$work" 2)"; done
fsync_med=$(echo $fs | tr ' ' '\n' | median)
fsync_spr=$(echo $fs | tr ' ' '\n' | spread)

printf '\n%-44s %8s  %s\n' "measurement" "median" "spread (runs=$RUNS)"
printf '%-44s %8s  %s\n' "disk: 4 KiB write+fdatasync /s" "$fsync_med" "$fsync_spr"
for sess in 1 20; do
	rs=""
	for r in $(seq "$RUNS"); do rs="$rs $(run_one $sess 4096)"; done
	printf '%-44s %8s  %s\n' "relay accept msg/s, $sess client(s), 4 KiB" \
	    "$(echo $rs | tr ' ' '\n' | median)" "$(echo $rs | tr ' ' '\n' | spread)"
done
stored=$("$B/redrive" --db "$work/redrive.db" log --limit 1 --json | python3 -c 'import json,sys; print(json.loads(sys.stdin.readline())["id"])')
echo "messages stored in the bench store: $stored"
