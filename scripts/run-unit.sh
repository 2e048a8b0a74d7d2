#!/bin/sh
# Runs each cmocka test binary and ends with one summary line of the form
# "N passed, N failed", counting binaries.
pass=0
fail=0
for t in "$@"; do
	if "$t"; then
		pass=$((pass + 1))
	else
		echo "FAILED: $t" >&2
		fail=$((fail + 1))
	fi
done
echo "unit: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
