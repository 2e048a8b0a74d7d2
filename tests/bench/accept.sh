#!/bin/sh
# accept.sh: section 1 of `make bench`.  The disk's fsync rate, then the
# relay's accept rate with durable commits (WAL, synchronous=FULL) driven
# by Postfix's smtp-source at 1, 20 and 100 clients, with 4 KiB (MSGS
# messages per run) and 100 KiB messages (MSGS_LARGE per run).  The
# forwarder and the tracker are off: this is SMTP in, commit, 250.
#
# Beside it, in the same runs (one of each in turn), a private Postfix
# instance (postfix_instance.sh: its own config and queue under
# $work/postfix, smtpd on a loopback port, relaying to an smtp-sink) gets
# the same smtp-source load; its queue is drained after each of its runs,
# so that redrived never runs beside Postfix's deliveries.  Skipped, with
# a note, when the bench does not run as root.  Knobs: MSGS (4000),
# MSGS_LARGE (1000), CLIENTS ("1 20 100").
set -eu
. "$top/tests/bench/lib.sh"
. "$top/tests/bench/postfix_instance.sh"
trap 'pf_stop; bench_cleanup' EXIT
trap 'exit 1' INT TERM
MSGS=${MSGS:-4000}
MSGS_LARGE=${MSGS_LARGE:-1000}
CLIENTS=${CLIENTS:-1 20 100}

cc -O2 -o "$work/fsync_rate" "$top/tests/bench/fsync_rate.c"
fs=""
for r in $(seq "$RUNS"); do fs="$fs $("$work/fsync_rate" "$work" 2)"; done
bench_result "disk: 4 KiB write+fdatasync /s" "$fs"

port=$(bench_port)
bench_conf "$work/redrive.conf" "$port" "[tracker]
enabled = no"
bench_daemon "$work/redrive.conf" "$port"
pf=no
if pf_usable; then
	pf_start "$work/postfix"
	pf=yes
else
	echo "  (not root, or no postfix/smtp-sink: no Postfix comparison)"
	bench_note "accept: no Postfix comparison (needs root, postfix and smtp-sink)"
fi

# One run: msg/s for $4 messages of $3 bytes over $2 sessions to port $1.
run_one() {
	"$PY" - "$@" <<'PY'
import subprocess, sys, time
port, sess, ln, msgs = sys.argv[1:5]
t = time.monotonic()
subprocess.run(["smtp-source", "-s", sess, "-l", ln, "-m", msgs,
                "-f", "bench@example.com", "-t", "sink@example.com",
                "127.0.0.1:" + port], check=True)
print("%.0f" % (int(msgs) / (time.monotonic() - t)))
PY
}

want=0 pf_want=0
for size in 4096 102400; do
	if [ $size -eq 4096 ]; then
		n=$MSGS lab="4 KiB"
	else
		n=$MSGS_LARGE lab="100 KiB"
	fi
	for sess in $CLIENTS; do
		rs="" ps="" ratio=""
		for r in $(seq "$RUNS"); do
			a=$(run_one "$port" "$sess" "$size" "$n")
			rs="$rs $a" want=$((want + n))
			line="  $sess client(s), $lab, run $r: redrived $a msg/s"
			if [ $pf = yes ]; then
				b=$(run_one "$pf_port" "$sess" "$size" "$n")
				pf_drain
				ps="$ps $b" pf_want=$((pf_want + n))
				ratio="$ratio $(awk -v a="$a" -v b="$b" \
				    'BEGIN { printf "%.2f", a / b }')"
				line="$line, Postfix $b msg/s"
			fi
			echo "$line (load $(cut -d' ' -f1 /proc/loadavg))"
		done
		bench_result "relay accept msg/s, $sess client(s), $lab" "$rs"
		if [ $pf = yes ]; then
			bench_result "  Postfix accept msg/s, $sess client(s), $lab" "$ps"
			bench_result "  redrive / Postfix" "$ratio"
		fi
	done
done
stored=$(bench_sql "SELECT count(*) FROM messages")
if [ "$stored" -ne "$want" ]; then
	echo "bench: $stored messages stored, $want sent" >&2
	exit 1
fi
echo "  ($stored messages stored by redrived, as many as sent)"
if [ $pf = yes ]; then
	# postlogd writes the log a little after the deliveries.
	i=0
	while :; do
		sent=$(grep -c ' status=sent ' "$pf_dir/maillog" || true)
		[ "$sent" -lt "$pf_want" ] && [ $i -lt 50 ] || break
		i=$((i + 1))
		sleep 0.1
	done
	other=$(grep -c -E ' status=(deferred|bounced|expired) ' \
	    "$pf_dir/maillog" || true)
	if [ "$sent" -ne "$pf_want" ] || [ "$other" -ne 0 ]; then
		echo "bench: Postfix delivered $sent of $pf_want messages" \
		    "($other deferred or bounced; see $pf_dir/maillog)" >&2
		exit 1
	fi
	echo "  ($sent messages relayed by Postfix to smtp-sink, as many as sent)"
	bench_note "accept: Postfix 3.7 private instance (smtpd, cleanup fsync, qmgr and smtp relaying to smtp-sink during its runs; default in_flow_delay, logging to a file); redrived stores only (forwarder off)"
fi
