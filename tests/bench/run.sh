#!/bin/sh
# make bench: not a test, a measurement.  Every figure is measured in this
# one run, on loopback, against the release build in $REDRIVE_BUILD;
# timings are medians of RUNS runs with their spread (min-max).
#
#   accept.sh   the disk's fsync rate; the relay's accept rate with
#               durable commits (smtp-source, 1, 20 and 100 clients,
#               4 KiB and 100 KiB) beside a private Postfix instance
#   webhook.sh  signed webhook ingest (wrk, 50 connections, every request
#               a new token and a new event of a known message) beside
#               nginx answering a static 200 to the same requests
#   forward.sh  end to end: SMTP accept to Mailgun-accepted ('sent'),
#               the Mailgun simulator standing in for Mailgun
#   memory.sh   redrived's RSS with 100 and 10,000 idle SMTP sessions;
#               the private Postfix's smtpd memory with 100
#
# The system's Postfix and nginx are never started, stopped or changed.
# Postfix runs as a private instance (tests/bench/postfix_instance.sh:
# `postfix -c DIR start` with its config, queue and data directories in
# the bench directory, smtpd and an smtp-sink on loopback ports; needs
# root, else the comparison is skipped), and nginx as a private instance
# on its own port from a config in the bench directory; both are stopped
# at the end of their section, even on error.  Environment: RUNS (3),
# MSGS (4000 per accept run, 4 KiB), MSGS_LARGE (1000 per accept run,
# 100 KiB), CLIENTS ("1 20 100"), WEBHOOK_SECS (5), WEBHOOK_BODIES
# (200000 per run), E2E_MSGS (2000), IDLE_SESSIONS (10000), SECTIONS
# (which of the four), BENCH_DIR (build/bench: emptied first, so two
# runs at once need two).
set -eu
top=$(cd "$(dirname "$0")/../.." && pwd)
B="${REDRIVE_BUILD:-$top/build}"
RUNS=${RUNS:-3}
SECTIONS=${SECTIONS:-accept webhook forward memory}
base="${BENCH_DIR:-$top/build/bench}"
rm -rf "$base"
mkdir -p "$base"
RESULTS="$base/results"
: >"$RESULTS"
export top B RUNS RESULTS

for prog in redrived redrive; do
	[ -x "$B/$prog" ] || {
		echo "bench: $B/$prog not built" >&2
		exit 1
	}
done
command -v smtp-source >/dev/null 2>&1 || {
	echo "bench: smtp-source not found (Debian package postfix;" \
	    "scripts/install-deps.sh installs it)" >&2
	exit 1
}

# wrk and nginx are for the bench only, so scripts/install-deps.sh leaves
# them out; install them here when missing.  A policy-rc.d that refuses
# service starts keeps the package's postinst from starting the system's
# nginx (when the system already has one, it is left as it is: we run our
# own instance on our own port and stop nothing we did not start).
bench_install() {
	need=""
	command -v wrk >/dev/null 2>&1 || need="$need wrk"
	[ -x /usr/sbin/nginx ] || command -v nginx >/dev/null 2>&1 ||
	    need="$need nginx-light"
	[ -n "$need" ] || return 0
	echo "bench: installing$need with apt-get (bench only; the system" \
	    "nginx service is not started)"
	if ! command -v apt-get >/dev/null 2>&1; then
		echo "bench: no apt-get; install$need by hand" >&2
		exit 1
	fi
	sudo=""
	[ "$(id -u)" -eq 0 ] || sudo="sudo"
	policy=""
	if [ ! -e /usr/sbin/policy-rc.d ]; then
		printf '#!/bin/sh\nexit 101\n' | $sudo tee /usr/sbin/policy-rc.d >/dev/null
		$sudo chmod 755 /usr/sbin/policy-rc.d
		policy=/usr/sbin/policy-rc.d
	fi
	rc=0
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q \
	    --no-install-recommends $need >"$base/apt.log" 2>&1 || {
		DEBIAN_FRONTEND=noninteractive $sudo apt-get update -q \
		    >>"$base/apt.log" 2>&1 &&
		    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q \
		    --no-install-recommends $need >>"$base/apt.log" 2>&1
	} || rc=$?
	[ -z "$policy" ] || $sudo rm -f "$policy"
	if [ $rc -ne 0 ]; then
		cat "$base/apt.log" >&2
		echo "bench: could not install$need" >&2
		exit 1
	fi
}
case " $SECTIONS " in
*" webhook "*) bench_install ;;
esac

rev=$(git -C "$top" rev-parse --short HEAD 2>/dev/null || echo "not a git tree")
[ -z "$(git -C "$top" status --porcelain --untracked-files=no 2>/dev/null)" ] ||
    rev="$rev + local changes"
load0=$(cut -d' ' -f1-3 /proc/loadavg)
echo "bench: $(nproc) CPUs, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1), RUNS=$RUNS, commit $rev"
for s in $SECTIONS; do
	echo "== $s"
	mkdir -p "$base/$s"
	work="$base/$s" sh "$top/tests/bench/$s.sh"
done

printf '\nload average (1/5/15 min): %s before, %s after\n' \
    "$load0" "$(cut -d' ' -f1-3 /proc/loadavg)"
printf '\n%-52s %10s  %s\n' "measurement (medians of $RUNS runs)" "median" "spread"
awk -F '\t' '$1 != "NOTE" { printf "%-52s %10s  %s\n", $1, $2, $3 }' "$RESULTS"
awk -F '\t' '$1 == "NOTE" { if (!n++) print ""; print "* " $2 }' "$RESULTS"
