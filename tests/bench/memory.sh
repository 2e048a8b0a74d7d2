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
#
# Beside it, a private Postfix instance (postfix_instance.sh, started
# anew for each run, default_process_limit 200): the sum of the resident
# memory of its smtpd processes with 100 idle sessions (one smtpd each),
# as VmRSS counts it (Rss of smaps_rollup: the shared libraries are
# counted in every process) and as Pss (shared pages divided among the
# processes that map them), and redrived's RSS at 100 over the first.
# Skipped, with a note, when the bench does not run as root.
set -eu
. "$top/tests/bench/lib.sh"
. "$top/tests/bench/postfix_instance.sh"
trap 'pf_stop; bench_cleanup' EXIT
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

# rss_with N [PORT [CMD]]: sets $kb to the output of CMD (default: the
# daemon's VmRSS in KiB) while N idle sessions to PORT (default: the
# daemon's) are open.
rss_with() {
	rm -f "$work/ready"
	"$PY" "$top/tests/bench/idle_sessions.py" "${2:-$sport}" "$1" \
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
	kb=$(${3:-rss})
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

pf_mem() { echo "$(pf_smtpd_kb Rss) $(pf_smtpd_kb Pss)"; }
if pf_usable; then
	p1="" p2="" pn="" ratio=""
	for r in $(seq "$RUNS"); do
		pf_start "$work/postfix"
		rss_with 100 "$pf_port" pf_mem
		pf_stop
		set -- $kb
		# $1 Rss sum, $2 smtpd count, $3 Pss sum.
		if [ "$2" -lt 100 ]; then
			echo "bench: $2 smtpd processes for 100 sessions" >&2
			exit 1
		fi
		p1="$p1 $1" p2="$p2 $3" pn="$pn $2"
	done
	bench_result "Postfix smtpd RSS KiB (sum), 100 idle SMTP sessions" "$p1"
	bench_result "  the same as Pss (shared pages divided)" "$p2"
	bench_result "  smtpd processes" "$pn"
	rd=$(echo $r1 | tr ' ' '\n' | median)
	for v in $p1; do
		ratio="$ratio $(awk -v a="$rd" -v b="$v" 'BEGIN { printf "%.3f", a / b }')"
	done
	bench_result "  redrived RSS / Postfix smtpd RSS, 100 sessions" "$ratio"
	ratio=""
	for v in $p2; do
		ratio="$ratio $(awk -v a="$rd" -v b="$v" 'BEGIN { printf "%.3f", a / b }')"
	done
	bench_result "  redrived RSS / Postfix smtpd Pss, 100 sessions" "$ratio"
else
	bench_note "memory: no Postfix comparison (needs root, postfix and smtp-sink)"
fi
