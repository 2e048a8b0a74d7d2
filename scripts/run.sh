#!/bin/sh
# make run: starts redrived in the foreground with a development
# configuration in ./run/, so a newcomer can send a mail with swaks and see
# it in `redrive log`.
#
# Without MAILGUN_API_KEY in the environment, the Mailgun simulator
# (tests/mailgun_sim/mailgun_sim.py) is started on a free loopback port and
# redrived forwards to it: nothing leaves this machine.  With
# MAILGUN_API_KEY and MAILGUN_DOMAIN set (MAILGUN_API_BASE for the EU
# region), redrived forwards to Mailgun for real.
#
# run/redrive.conf is written anew on every run (the store, run/redrive.db,
# is kept); the simulator stops when redrived exits.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
dir="$top/run"
conf="$dir/redrive.conf"
python=${PYTHON:-python3}
mkdir -p "$dir"

sim_pid=
sim_log="$dir/mailgun-sim.log"
port_file="$dir/mailgun-sim.port"

# Stops the simulator, if this script started it.
cleanup() {
	if [ -n "$sim_pid" ]; then
		kill "$sim_pid" 2>/dev/null || true
		wait "$sim_pid" 2>/dev/null || true
		sim_pid=
	fi
	rm -f "$port_file"
}
trap cleanup EXIT
# Ctrl-C reaches redrived too, which stops cleanly; the script must live
# on to clean up after it.
trap ':' INT TERM

if [ -n "${MAILGUN_API_KEY:-}" ]; then
	if [ -z "${MAILGUN_DOMAIN:-}" ]; then
		echo "run: MAILGUN_API_KEY is set but MAILGUN_DOMAIN is not;" \
		    "set both to use Mailgun, or neither to use the simulator" >&2
		exit 1
	fi
	mode=mailgun
	mailgun_conf="# api_key, domain (and api_base, webhook_signing_key) come
# from MAILGUN_API_KEY, MAILGUN_DOMAIN, MAILGUN_API_BASE and
# MAILGUN_WEBHOOK_SIGNING_KEY in the environment."
else
	mode=simulator
	sim_domain=sandbox.redrive.test
	sim_key=key-redrive-dev
	sim_signing=redrive-dev-signing-key
	rm -f "$port_file"
	"$python" "$top/tests/mailgun_sim/mailgun_sim.py" --port 0 \
	    --port-file "$port_file" --domain "$sim_domain" \
	    --api-key "$sim_key" --webhook-signing-key "$sim_signing" \
	    --webhook-url http://127.0.0.1:8025/webhooks/mailgun \
	    </dev/null >"$sim_log" 2>&1 &
	sim_pid=$!
	tries=0
	while [ ! -s "$port_file" ]; do
		if ! kill -0 "$sim_pid" 2>/dev/null; then
			echo "run: the Mailgun simulator did not start:" >&2
			cat "$sim_log" >&2
			sim_pid=
			exit 1
		fi
		tries=$((tries + 1))
		if [ "$tries" -gt 200 ]; then
			echo "run: the Mailgun simulator did not start in 10s" >&2
			exit 1
		fi
		sleep 0.05
	done
	sim_port=$(cat "$port_file")
	sim_url="http://127.0.0.1:$sim_port"
	mailgun_conf="# The local Mailgun simulator (no mail leaves this machine).
api_key = $sim_key
domain = $sim_domain
api_base = $sim_url
webhook_signing_key = $sim_signing"
fi

cat >"$conf" <<CONF
# Development configuration written by \`make run\` on every run: edit
# scripts/run.sh, or copy this file and run build/redrived -c COPY.
# Every key and its default: etc/redrive.conf.
[relay]
listen = 127.0.0.1:2525
hostname = localhost

[tracker]
listen = 127.0.0.1:8025

[mailgun]
$mailgun_conf

[store]
path = $dir/redrive.db
CONF

if [ "$mode" = simulator ]; then
	# The simulator is the only Mailgun here: no MAILGUN_* may override it.
	unset MAILGUN_DOMAIN MAILGUN_API_BASE MAILGUN_WEBHOOK_SIGNING_KEY
fi
"$top/build/redrived" -c "$conf" --check-config

if [ "$mode" = simulator ]; then
	cat <<MSG

Mailgun: the local SIMULATOR at $sim_url (domain $sim_domain).
  No mail leaves this machine.  What it received:
    curl -s $sim_url/_sim/messages
  Its log: $sim_log
  To use Mailgun for real: MAILGUN_API_KEY=... MAILGUN_DOMAIN=... make run
MSG
else
	cat <<MSG

Mailgun: the REAL Mailgun API, domain $MAILGUN_DOMAIN at
  ${MAILGUN_API_BASE:-https://api.mailgun.net} (MAILGUN_* from the environment).
  Mail sent to the relay is delivered for real.
MSG
fi
cat <<MSG

redrived is starting in the foreground (Ctrl-C stops it).
  SMTP relay : 127.0.0.1:2525
  config     : $conf
  store      : $dir/redrive.db
Send a mail from another terminal:
  swaks --server 127.0.0.1:2525 --from app@example.com --to you@example.com
and read the mail log:
  build/redrive --db $dir/redrive.db log

MSG
rc=0
"$top/build/redrived" -c "$conf" || rc=$?
cleanup
exit "$rc"
