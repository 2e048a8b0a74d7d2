#!/bin/sh
# Runs redrive under valgrind (make valgrind): every unit test binary in
# $REDRIVE_BUILD/tests/, then the integration suite with REDRIVE_VALGRIND=1
# (the daemon, the `redrive` CLI of the fixtures and redrive-sendmail run
# under valgrind; timeouts scale up, see tests/integration/smtputil.py).
# Any valgrind error, definite or indirect leak fails the run (exit 99 of
# the wrapped process).  tests/valgrind.supp holds the suppressions of
# third-party noise, each with the reason.
#
# Env knobs:
#   REDRIVE_BUILD    the debug build directory (required; make valgrind
#                    sets it)
#   VALGRIND_UNIT    0 skips the unit tests (default 1)
#   VALGRIND_IT      0 skips the integration suite (default 1)
#   PYTEST_ARGS      more pytest arguments, e.g. a subset of test files
#                    (default: the whole integration/ directory)
#   PYTHON           the interpreter with pytest (default /usr/bin/python3,
#                    as in the Makefile)
set -eu

: "${REDRIVE_BUILD:?REDRIVE_BUILD must name the build directory}"
VALGRIND_UNIT=${VALGRIND_UNIT:-1}
VALGRIND_IT=${VALGRIND_IT:-1}
PYTHON=${PYTHON:-/usr/bin/python3}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SUPP="$ROOT/tests/valgrind.supp"

command -v valgrind >/dev/null 2>&1 || {
	echo "valgrind.sh: valgrind is not installed" >&2
	exit 1
}

VG="valgrind --error-exitcode=99 --leak-check=full"
VG="$VG --errors-for-leak-kinds=definite,indirect -q"
if [ -f "$SUPP" ]; then
	VG="$VG --suppressions=$SUPP"
fi

start=$(date +%s)
fail=0
if [ "$VALGRIND_UNIT" = 1 ]; then
	pass=0
	ufail=0
	for t in "$REDRIVE_BUILD"/tests/test_*; do
		[ -x "$t" ] || continue
		# $VG is split on purpose: it is a word list without spaces
		# inside words.
		# shellcheck disable=SC2086
		if $VG "$t" >"$t.vg.log" 2>&1; then
			pass=$((pass + 1))
		else
			echo "FAILED under valgrind: $t (log: $t.vg.log)" >&2
			tail -n 40 "$t.vg.log" >&2
			ufail=$((ufail + 1))
		fi
	done
	echo "valgrind unit: $pass passed, $ufail failed"
	[ "$ufail" -eq 0 ] || fail=1
fi

if [ "$VALGRIND_IT" = 1 ]; then
	# shellcheck disable=SC2086
	if ! (cd "$ROOT/tests" && REDRIVE_VALGRIND=1 \
	    REDRIVE_BUILD="$REDRIVE_BUILD" "$PYTHON" -m pytest -q \
	    -p no:cacheprovider ${PYTEST_ARGS:-integration}); then
		fail=1
	fi
fi

echo "valgrind: done in $(($(date +%s) - start)) s, $([ "$fail" -eq 0 ] &&
    echo ok || echo FAILED)"
exit "$fail"
