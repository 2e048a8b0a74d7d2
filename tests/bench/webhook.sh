#!/bin/sh
# webhook.sh: section 2 of `make bench`.  Signed Mailgun webhooks per
# second into redrived's tracker, with wrk on loopback (50 connections,
# WEBHOOK_SECS per run), beside a private nginx answering a static 200 to
# the same requests with the same wrk settings; runs interleaved.
#
# The store: messages go through the relay to the Mailgun simulator so
# that they are 'sent' with Mailgun ids, exactly as the daemon records
# them; webhook_prep.py then copies one of them until the store holds
# WEBHOOK_MESSAGES messages (the events spread over many messages, as in
# life).  Each request is a `delivered` event of one of them with a new
# token and a new event id, so each one commits an event row, a token row
# and the recipient's state.  Answers are counted from the store: rows
# added to `events` are "recorded"; answered requests beyond them (bodies
# reused once a run outlasts WEBHOOK_BODIES) are "duplicate".
set -eu
. "$top/tests/bench/lib.sh"
trap bench_cleanup EXIT
trap 'exit 1' INT TERM
SECS=${WEBHOOK_SECS:-5}
NBODIES=${WEBHOOK_BODIES:-200000}
NMSG=${WEBHOOK_MESSAGES:-50000}
CONNS=50
THREADS=2
DOMAIN=bench.example
APIKEY=key-bench-0123456789
SIGNKEY=bench-signing-key-0123456789
NGINX=$(command -v nginx 2>/dev/null || echo /usr/sbin/nginx)

bench_sim "$DOMAIN" "$APIKEY"
sport=$(bench_port)
tport=$(bench_port)
bench_conf "$work/redrive.conf" "$sport" "[mailgun]
api_key = $APIKEY
domain = $DOMAIN
api_base = http://127.0.0.1:$sim_port
webhook_signing_key = $SIGNKEY
retry_min = 100ms
retry_max = 1s
[tracker]
listen = 127.0.0.1:$tport
path = /webhooks/mailgun"
bench_daemon "$work/redrive.conf" "$sport"
smtp-source -s 10 -l 4096 -m 200 -f bench@example.com \
    -t rcpt@example.net "127.0.0.1:$sport"
i=0
while [ "$(bench_sql "SELECT count(*) FROM recipients WHERE status = 'sent'")" -lt 200 ]; do
	i=$((i + 1))
	if [ $i -gt 600 ]; then
		echo "bench: the messages did not reach the simulator" >&2
		exit 1
	fi
	sleep 0.1
done
bench_stop "$daemon_pid"
bench_stop "$sim_pid"
"$PY" "$top/tests/bench/webhook_prep.py" clone "$work/redrive.db" "$NMSG"
# The simulator is gone: nothing is queued, so the forwarder has no reason
# to call it.
bench_daemon "$work/redrive.conf" "$sport"
bench_wait_port "$tport"

nport=$(bench_port)
mkdir -p "$work/nginx"
cat >"$work/nginx/nginx.conf" <<CONF
daemon off;
worker_processes auto;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log warn;
events { worker_connections 1024; }
http {
	access_log off;
	keepalive_requests 1000000;
	client_body_temp_path $work/nginx/body;
	server {
		listen 127.0.0.1:$nport;
		location / { return 200; }
	}
}
CONF
"$NGINX" -p "$work/nginx/" -c "$work/nginx/nginx.conf" \
    -e "$work/nginx/error.log" &
nginx_pid=$!
bench_track "$nginx_pid"
bench_wait_port "$nport"

# wrk_run URL BODIES: prints "requests rps non2xx errors".
wrk_run() {
	wrk -t "$THREADS" -c "$CONNS" -d "${SECS}s" \
	    -s "$top/tests/bench/webhook.lua" "$1" -- "$2" /webhooks/mailgun \
	    >"$work/wrk.out" 2>&1 || {
		cat "$work/wrk.out" >&2
		exit 1
	}
	cat "$work/wrk.out" >>"$work/wrk.log"
	awk '/ requests in / { n = $1 }
	    /Requests\/sec:/ { rps = $2 }
	    /Non-2xx or 3xx/ { bad = $NF }
	    /Socket errors:/ { gsub(",", ""); err = $4 + $6 + $8 + $10 }
	    END { printf "%d %.0f %d %d\n", n, rps, bad, err }' "$work/wrk.out"
}

rd="" ng="" ratio="" recorded=0 dup=0 bad=0
for r in $(seq "$RUNS"); do
	"$PY" "$top/tests/bench/webhook_prep.py" bodies "$work/redrive.db" \
	    "$work/bodies" "$THREADS" "$NBODIES" "$r" "$SIGNKEY"
	ev0=$(bench_sql "SELECT count(*) FROM events")
	out=$(wrk_run "http://127.0.0.1:$tport" "$work/bodies")
	set -- $out
	n=$1 rps=$2 nb=$(($3 + $4))
	sleep 0.5 # answers wrk stopped waiting for still commit
	ev1=$(bench_sql "SELECT count(*) FROM events")
	rec=$((ev1 - ev0))
	d=$((n - nb - rec))
	[ $d -ge 0 ] || d=0
	recorded=$((recorded + rec)) dup=$((dup + d)) bad=$((bad + nb))
	out=$(wrk_run "http://127.0.0.1:$nport" "$work/bodies")
	set -- $out
	rd="$rd $rps" ng="$ng $2"
	ratio="$ratio $(awk -v a="$rps" -v b="$2" 'BEGIN { printf "%.3f", a / b }')"
	echo "  run $r: redrived $rps req/s ($rec recorded, $d duplicate," \
	    "$nb errors), nginx $2 req/s"
	rm -f "$work"/bodies.*
done
bench_result "webhook ingest req/s (wrk, $CONNS conns, signed)" "$rd"
bench_result "nginx static 200 to the same POSTs, req/s" "$ng"
bench_result "webhook ingest / nginx" "$ratio"
bench_note "webhooks: $recorded answers recorded (new event and token rows), $dup duplicate, $bad errors or non-2xx over $RUNS runs; $NMSG messages in the store; nginx: $(nproc) worker(s), access_log off"
if [ "$bad" -ne 0 ]; then
	echo "bench: $bad webhook requests failed (see $work/redrived.log)" >&2
	exit 1
fi
