#!/bin/sh
# clang-tidy for `make lint`, one file per run: clang-tidy 14 reports false
# "uninitialized va_list" findings in every file after the first of a run.
# usage: tidy.sh "COMPILER FLAGS" FILE...
set -u
flags=$1
shift
failed=0
for f in "$@"; do
	# shellcheck disable=SC2086
	out=$(clang-tidy --quiet --warnings-as-errors='*' "$f" -- $flags 2>&1)
	if [ $? -ne 0 ]; then
		printf '%s\n' "$out" | grep -v 'warnings generated'
		failed=1
	fi
done
[ "$failed" -eq 0 ] && echo "tidy: $# files clean"
exit "$failed"
