#!/bin/sh
# The fault soak (make soak; docs/soak.md): runs the fault tests of
# tests/integration/test_faults.py long, against the daemon in
# $REDRIVE_BUILD, and prints one summary: kill -9 rounds, messages
# acknowledged, lost (must be 0), duplicates at Mailgun and their cause.
# Exits non-zero when a test fails (a lost or damaged message, an
# unexplained duplicate, a crash or hang) or no summary came out.
#
# Env knobs:
#   REDRIVE_BUILD   build directory with redrived and redrive (required)
#   SOAK_ROUNDS     kill -9 rounds (default 100)
#   FAULT_MESSAGES  messages sent under Mailgun faults (default 3000)
#   FAULT_RATE      share of Mailgun requests given a fault (default 0.25)
#   FAULT_SEED      fixes the random choices (default: random, printed)
#   PYTHON          the Python with pytest (default /usr/bin/python3)
set -eu

: "${REDRIVE_BUILD:?set REDRIVE_BUILD to the build directory}"
SOAK_ROUNDS=${SOAK_ROUNDS:-100}
FAULT_MESSAGES=${FAULT_MESSAGES:-3000}
FAULT_RATE=${FAULT_RATE:-0.25}
PYTHON=${PYTHON:-/usr/bin/python3}
export REDRIVE_BUILD SOAK_ROUNDS FAULT_MESSAGES FAULT_RATE

here=$(cd "$(dirname "$0")/.." && pwd)
out=$(mktemp "${TMPDIR:-/tmp}/redrive-soak.XXXXXX")
trap 'rm -f "$out"' EXIT INT TERM

start=$(date +%s)
rc=0
(cd "$here/tests" && "$PYTHON" -m pytest -q -p no:cacheprovider -s \
	integration/test_faults.py -k "kill9 or mailgun_faults") \
	>"$out" 2>&1 || rc=$?
took=$(($(date +%s) - start))

grep -E '^(kill9|faults): seed|^FAULTS-SUMMARY' "$out" || true
summaries=$(grep -c '^FAULTS-SUMMARY' "$out" || true)
if [ "$rc" -ne 0 ] || [ "$summaries" -lt 2 ]; then
	tail -n 80 "$out"
	echo "soak: FAILED (pytest exit $rc, $summaries of 2 summaries)" \
	    "after ${took}s"
	exit 1
fi
awk -v took="$took" '
/^FAULTS-SUMMARY/ {
	for (i = 2; i <= NF; i++) {
		split($i, kv, "=")
		v[kv[1]] = substr($i, length(kv[1]) + 2)
	}
	acked += v["acked"]; lost += v["lost"]; dups += v["duplicates"]
	if (v["test"] == "kill9")
		k = sprintf("kill -9: %s rounds, %s acknowledged, %s lost, " \
		    "%s duplicates (cause: %s; at most %s after one kill, " \
		    "forwarder concurrency %s)", v["rounds"], v["acked"],
		    v["lost"], v["duplicates"], v["duplicates_cause"],
		    v["max_dup_per_kill"], v["concurrency"])
	else
		f = sprintf("Mailgun faults: %s acknowledged, %s requests, " \
		    "%s faults, %s lost, %s duplicates (cause: %s)",
		    v["acked"], v["requests"], v["faults"], v["lost"],
		    v["duplicates"], v["duplicates_cause"])
}
END {
	print "soak: " k
	print "soak: " f
	printf "soak: total %d acknowledged, %d lost, %d duplicates, %ss\n",
	    acked, lost, dups, took
	exit lost != 0
}' "$out"
