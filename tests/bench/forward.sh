#!/bin/sh
# forward.sh: section 3 of `make bench`.  End to end: E2E_MSGS messages of
# 4 KiB over 20 smtp-source clients, timed from the first connection until
# every recipient is 'sent' (Mailgun accepted it and its id is on disk),
# with tests/mailgun_sim/mailgun_sim.py as Mailgun ([mailgun] concurrency
# 16, the default).  The simulator is a Python server (one thread per
# connection, the GIL between them), so this figure is bounded by it; its
# own ceiling is measured beside: wrk POSTing the same messages.mime
# request to it over 16 connections, without redrived.
set -eu
. "$top/tests/bench/lib.sh"
trap bench_cleanup EXIT
trap 'exit 1' INT TERM
NMSG=${E2E_MSGS:-2000}
DOMAIN=bench.example
APIKEY=key-bench-0123456789

bench_sim "$DOMAIN" "$APIKEY"
sport=$(bench_port)
bench_conf "$work/redrive.conf" "$sport" "[mailgun]
api_key = $APIKEY
domain = $DOMAIN
api_base = http://127.0.0.1:$sim_port
retry_min = 100ms
retry_max = 1s
[tracker]
enabled = no"
bench_daemon "$work/redrive.conf" "$sport"

# One run: msg/s from the start of smtp-source until NMSG more recipients
# are 'sent'; the accept rate of the same run (smtp-source's end) beside.
run_one() {
	"$PY" - "$sport" "$NMSG" "$work/redrive.db" <<'PY'
import sqlite3, subprocess, sys, time
port, n, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
db = sqlite3.connect("file:%s?mode=ro" % path, uri=True, timeout=30)
def sent():
    return db.execute("SELECT count(*) FROM recipients"
                      " WHERE status = 'sent'").fetchone()[0]
want = sent() + n
t = time.monotonic()
src = subprocess.Popen(["smtp-source", "-s", "20", "-l", "4096", "-m",
                        str(n), "-f", "bench@example.com",
                        "-t", "rcpt@example.net", "127.0.0.1:" + port])
accepted = None
while True:
    if accepted is None and src.poll() is not None:
        if src.returncode != 0:
            sys.exit("smtp-source failed")
        accepted = time.monotonic() - t
    if sent() >= want:
        break
    if time.monotonic() - t > 180:
        sys.exit("bench: forwarding did not finish in 180 s")
    time.sleep(0.01)
done = time.monotonic() - t
if accepted is None:
    src.wait()
    accepted = done
queued = db.execute("SELECT count(*) FROM recipients"
                    " WHERE status = 'queued'").fetchone()[0]
if queued:
    sys.exit("bench: %d recipients still queued" % queued)
print("%.0f %.0f" % (n / done, n / accepted))
PY
}

e2e="" acc=""
for r in $(seq "$RUNS"); do
	out=$(run_one)
	set -- $out
	e2e="$e2e $1" acc="$acc $2"
done
bench_result "end to end msg/s to 'sent' (sim), 20 clients" "$e2e"
bench_result "  accept msg/s of the same runs" "$acc"

# The simulator's own ceiling: one messages.mime request, as the forwarder
# sends it, repeated by wrk.
"$PY" - "$work/mime.req" "$APIKEY" "$DOMAIN" <<'PY'
import base64, sys
path, key, domain = sys.argv[1:4]
msg = (b"From: bench@example.com\r\nTo: rcpt@example.net\r\n"
       b"Subject: bench\r\n\r\n" + b"x" * 76 + b"\r\n") * 50
bnd = "----redrive-bench-boundary"
body = ("--%s\r\nContent-Disposition: form-data; name=\"to\"\r\n\r\n"
        "rcpt@example.net\r\n--%s\r\nContent-Disposition: form-data; "
        "name=\"v:redrive-id\"\r\n\r\n1\r\n--%s\r\nContent-Disposition: "
        "form-data; name=\"message\"; filename=\"message.mime\"\r\n"
        "Content-Type: message/rfc822\r\n\r\n" % (bnd, bnd, bnd)).encode()
body += msg[:4096] + ("\r\n--%s--\r\n" % bnd).encode()
auth = base64.b64encode(("api:" + key).encode()).decode()
with open(path, "w") as f:
    f.write("/v3/%s/messages.mime\n" % domain)
    f.write("Basic %s\n" % auth)
    f.write("multipart/form-data; boundary=%s\n" % bnd)
with open(path + ".body", "wb") as f:
    f.write(body)
PY
cat >"$work/mime.lua" <<'LUA'
function init(args)
	local f = assert(io.open(args[1]))
	wrk.path = f:read("*l")
	wrk.headers["Authorization"] = f:read("*l")
	wrk.headers["Content-Type"] = f:read("*l")
	f:close()
	f = assert(io.open(args[1] .. ".body", "rb"))
	wrk.body = f:read("*a")
	f:close()
	wrk.method = "POST"
end
LUA
sim_rates=""
for r in $(seq "$RUNS"); do
	wrk -t 1 -c 16 -d 3s -s "$work/mime.lua" "http://127.0.0.1:$sim_port" \
	    -- "$work/mime.req" >"$work/wrk.out" 2>&1
	cat "$work/wrk.out" >>"$work/wrk.log"
	if grep -q 'Non-2xx' "$work/wrk.out"; then
		cat "$work/wrk.out" >&2
		echo "bench: the simulator refused the messages.mime request" >&2
		exit 1
	fi
	sim_rates="$sim_rates $(awk '/Requests\/sec:/ { printf "%.0f", $2 }' "$work/wrk.out")"
done
bench_result "  the simulator alone: messages.mime req/s" "$sim_rates"
bench_note "end to end: the Mailgun simulator is a Python server (stdlib, threads under the GIL); the figure is bounded by it, compare the simulator's own ceiling beside it"
