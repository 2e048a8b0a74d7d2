# lib.sh: helpers shared by the sections of `make bench` (sourced, not run).
#
# The caller sets: top (repository root), B (build directory of the
# release binaries), RUNS, work (this section's scratch directory) and
# RESULTS (the file the final table is printed from).  Every process a
# section starts is recorded with bench_track and ended by bench_cleanup,
# by its own pid, never by name.  Loopback only.

PY=${PYTHON:-python3}
bench_pids=""

# A free TCP port on 127.0.0.1 (the kernel picks it).
bench_port() {
	"$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# Waits up to 10 s until 127.0.0.1:$1 accepts a connection.
bench_wait_port() {
	"$PY" - "$1" <<'PY'
import socket, sys, time
port = int(sys.argv[1])
end = time.monotonic() + 10
while True:
    try:
        socket.create_connection(("127.0.0.1", port), 1).close()
        break
    except OSError:
        if time.monotonic() > end:
            sys.exit("bench: nothing listens on 127.0.0.1:%d" % port)
        time.sleep(0.05)
PY
}

bench_track() { bench_pids="$bench_pids $1"; }

# Stops one process we started (SIGTERM, then SIGKILL after 10 s) and
# forgets its pid.
bench_stop() {
	p=$1
	rest=""
	for q in $bench_pids; do
		[ "$q" = "$p" ] || rest="$rest $q"
	done
	bench_pids=$rest
	kill "$p" 2>/dev/null || return 0
	i=0
	while kill -0 "$p" 2>/dev/null && [ $i -lt 100 ]; do
		sleep 0.1
		i=$((i + 1))
	done
	kill -9 "$p" 2>/dev/null || true
	wait "$p" 2>/dev/null || true
}

bench_cleanup() {
	for pp in $bench_pids; do
		bench_stop "$pp"
	done
	return 0
}

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
spread() { sort -n | awk 'NR==1{lo=$1} {hi=$1} END {printf "%s-%s", lo, hi}'; }

# bench_result LABEL "V1 V2 V3" [NOTE]: prints the median and spread of
# the values and appends the row to $RESULTS for the final table.
bench_result() {
	label=$1 vals=$2 note=${3:-}
	med=$(echo $vals | tr ' ' '\n' | median)
	spr=$(echo $vals | tr ' ' '\n' | spread)
	printf '%s\t%s\t%s\t%s\n' "$label" "$med" "$spr" "$note" >>"$RESULTS"
	printf '  %-50s %10s  %s\n' "$label" "$med" "$spr"
}

# bench_note TEXT: a line printed under the final table.
bench_note() { printf 'NOTE\t%s\n' "$1" >>"$RESULTS"; }

# bench_conf FILE SMTP_PORT EXTRA: a daemon config on loopback with the
# store in $work; EXTRA is appended as is (more sections).
bench_conf() {
	cat >"$1" <<CONF
[relay]
listen = 127.0.0.1:$2
hostname = bench.local
max_connections = ${BENCH_MAX_CONN:-2000}
[store]
path = $work/redrive.db
[log]
level = warn
$3
CONF
}

# bench_daemon CONF SMTP_PORT: starts redrived, waits for its SMTP port,
# sets $daemon_pid.
bench_daemon() {
	"$B/redrived" -c "$1" 2>>"$work/redrived.log" &
	daemon_pid=$!
	bench_track "$daemon_pid"
	bench_wait_port "$2"
}

# bench_sim DOMAIN KEY: starts tests/mailgun_sim/mailgun_sim.py on a free
# port without webhooks, sets $sim_pid and $sim_port.
bench_sim() {
	rm -f "$work/sim.port"
	"$PY" "$top/tests/mailgun_sim/mailgun_sim.py" --quiet --port 0 \
	    --port-file "$work/sim.port" --domain "$1" --api-key "$2" \
	    --delivery-delay 0.01 >"$work/sim.log" 2>&1 &
	sim_pid=$!
	bench_track "$sim_pid"
	i=0
	while [ ! -s "$work/sim.port" ]; do
		i=$((i + 1))
		if [ $i -gt 200 ] || ! kill -0 "$sim_pid" 2>/dev/null; then
			echo "bench: the Mailgun simulator did not start" >&2
			cat "$work/sim.log" >&2
			return 1
		fi
		sleep 0.05
	done
	sim_port=$(cat "$work/sim.port")
}

# SQL against the bench store (read-only queries; WAL lets them run while
# the daemon writes).
bench_sql() {
	"$PY" - "$work/redrive.db" "$1" <<'PY'
import sqlite3, sys
db = sqlite3.connect("file:%s?mode=ro" % sys.argv[1], uri=True, timeout=30)
for row in db.execute(sys.argv[2]):
    print("|".join(str(v) for v in row))
PY
}
