#!/bin/sh
# memory.sh: section 4 of `make bench`.  redrived's resident memory (VmRSS
# of /proc/PID/status) with no session, with 100 and with IDLE_SESSIONS
# (10,000) idle SMTP sessions, each opened by idle_sessions.py and greeted
# with 220.  The daemon runs as it would in production: relay, tracker and
# forwarder on ([mailgun] points at a port nobody listens on; nothing is
# queued, so it is never called), [relay] max_connections = 20000.  Each
# run starts a new daemon (freed memory stays in the process, so a second
# run in the same one would measure the first's high-water mark); the RSS
# after the 10,000 sessions have closed is printed to show that.
set -eu
. "$top/tests/bench/lib.sh"
trap bench_cleanup EXIT
trap 'exit 1' INT TERM
IDLE=${IDLE_SESSIONS:-10000}
export BENCH_MAX_CONN=20000

# Both the daemon and the client hold one descriptor per session.
need=$((IDLE + 512))
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt "$need" ]; then
	ulimit -n "$need" 2>/dev/null || ulimit -n "$(ulimit -Hn)"
fi
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt "$need" ]; then
	IDLE=$(($(ulimit -n) - 512))
	echo "bench: ulimit -n is $(ulimit -n): $IDLE sessions, not 10000" >&2
fi

sport=$(bench_port)
tport=$(bench_port)
dead=$(bench_port)
bench_conf "$work/redrive.conf" "$sport" "[mailgun]
api_key = key-bench-0123456789
domain = bench.example
api_base = http://127.0.0.1:$dead
webhook_signing_key = bench-signing-key-0123456789
[tracker]
listen = 127.0.0.1:$tport"
rss() { awk '/^VmRSS:/ { print $2 }' "/proc/$daemon_pid/status"; }

# rss_with N: sets $kb to VmRSS in KiB while N idle sessions are open.
rss_with() {
	rm -f "$work/ready"
	"$PY" "$top/tests/bench/idle_sessions.py" "$sport" "$1" \
	    "$work/ready" &
	cpid=$!
	bench_track "$cpid"
	i=0
	while [ ! -s "$work/ready" ]; do
		if ! kill -0 "$cpid" 2>/dev/null; then
			echo "bench: idle_sessions.py failed" >&2
			exit 1
		fi
		i=$((i + 1))
		[ $i -lt 1200 ] || {
			echo "bench: $1 sessions did not open in 120 s" >&2
			exit 1
		}
		sleep 0.1
	done
	sleep 0.5
	kb=$(rss)
	bench_stop "$cpid"
	# Let the daemon see every session close.
	sleep 1
}

r0="" r1="" r2="" r3="" per=""
for r in $(seq "$RUNS"); do
	bench_daemon "$work/redrive.conf" "$sport"
	bench_wait_port "$tport"
	sleep 1
	r0="$r0 $(rss)"
	rss_with 100
	a=$kb
	rss_with "$IDLE"
	b=$kb
	r1="$r1 $a" r2="$r2 $b" r3="$r3 $(rss)"
	bench_stop "$daemon_pid"
	per="$per $(awk -v a="$a" -v b="$b" -v n="$IDLE" \
	    'BEGIN { printf "%.1f", (b - a) / (n - 100) }')"
done
bench_result "redrived RSS KiB, no session" "$r0"
bench_result "redrived RSS KiB, 100 idle SMTP sessions" "$r1"
bench_result "redrived RSS KiB, $IDLE idle SMTP sessions" "$r2"
bench_result "  KiB per idle session (from 100 to $IDLE)" "$per"
bench_result "  RSS KiB once the $IDLE have closed" "$r3"
