#!/bin/sh
# Builds the libFuzzer targets of tests/fuzz (clang, -fsanitize=fuzzer,
# address,undefined), each from only the sources it needs, then runs each
# for a while with its seed corpus and dictionary, and prints one line per
# target: name, executions, exec/s, corpus size, result.  Exits non-zero
# when any target crashed, leaked, timed out or ran out of memory; the
# input that did it is kept in $FUZZ_B/artifacts/<target>/ and the log in
# $FUZZ_B/logs/<target>.log.  docs/fuzz.md says how to reproduce.
#
# Env knobs:
#   FUZZ_B        build and work directory (default build/fuzz; `make
#                 fuzz` passes <build dir>/fuzz).  Corpora grow in
#                 $FUZZ_B/corpus/<target>, seeded from tests/fuzz/seeds.
#   FUZZ_SECS     seconds per target (default 60; 10 for a CI run)
#   FUZZ_RUNS     executions per target instead of FUZZ_SECS (both set:
#                 whichever comes first)
#   FUZZ_TARGETS  the targets to build and run (default: all)
#   FUZZ_CC       the clang to use (default clang, else clang-14)
#   FUZZ_RSS_MB   -rss_limit_mb (default 2048)
#   FUZZ_TIMEOUT  -timeout, seconds per input (default 25)
#   FUZZ_BUILD_ONLY=1  build, do not run
set -eu

cd "$(dirname "$0")/.."
FUZZ_B=${FUZZ_B:-build/fuzz}
secs_given=${FUZZ_SECS:+yes}
FUZZ_SECS=${FUZZ_SECS:-60}
FUZZ_RUNS=${FUZZ_RUNS:-}
FUZZ_RSS_MB=${FUZZ_RSS_MB:-2048}
FUZZ_TIMEOUT=${FUZZ_TIMEOUT:-25}
FUZZ_TARGETS=${FUZZ_TARGETS:-smtp_parse smtp_data http webhook jdoc config timeparse}
if [ -z "${FUZZ_CC:-}" ]; then
	if command -v clang >/dev/null 2>&1; then
		FUZZ_CC=clang
	elif command -v clang-14 >/dev/null 2>&1; then
		FUZZ_CC=clang-14
	else
		echo "fuzz: clang is needed (apt-get install clang)" >&2
		exit 2
	fi
fi

# The Makefile's packages and llhttp (sources from Debian's node-llhttp
# unless pkg-config knows a libllhttp).
PKGS="libuv libcurl sqlite3 jansson inih openssl libcrypt libesmtp-1.0"
# shellcheck disable=SC2086 # a list of packages
PKG_CFLAGS=$(pkg-config --cflags $PKGS)
# shellcheck disable=SC2086
PKG_LIBS=$(pkg-config --libs $PKGS)
LLHTTP_SRCDIR=${LLHTTP_SRCDIR:-/usr/share/llhttp}
LLHTTP_INCDIR=${LLHTTP_INCDIR:-/usr/share/include/llhttp}
if pkg-config --exists libllhttp 2>/dev/null; then
	LLHTTP_CFLAGS=$(pkg-config --cflags libllhttp)
	LLHTTP_LIBS=$(pkg-config --libs libllhttp)
	LLHTTP_SRCS=
else
	LLHTTP_CFLAGS="-isystem $LLHTTP_INCDIR"
	LLHTTP_LIBS=
	LLHTTP_SRCS="$LLHTTP_SRCDIR/llhttp.c $LLHTTP_SRCDIR/api.c $LLHTTP_SRCDIR/http.c"
fi

SAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined"
OPT="-g -O1 -fno-omit-frame-pointer"
WARN="-std=c11 -Wall -Wextra -Werror"
CPPFLAGS="-D_GNU_SOURCE -Iinclude $PKG_CFLAGS $LLHTTP_CFLAGS"

# The project sources each target links (never a main).
# shellcheck disable=SC2086 # LLHTTP_SRCS is a list of files
fuzz_srcs() {
	case $1 in
	smtp_parse) echo relay/smtp_parse.c ;;
	smtp_data) echo relay/smtp_data.c ;;
	http) echo tracker/http_server.c core/fdguard.c core/config.c \
	    core/cidr.c core/log.c core/timeutil.c $LLHTTP_SRCS ;;
	webhook) echo tracker/webhook.c core/jdoc.c ;;
	jdoc) echo core/jdoc.c ;;
	config | timeparse) echo core/config.c core/cidr.c core/log.c \
	    core/timeutil.c ;;
	*) echo "fuzz: unknown target $1" >&2; return 1 ;;
	esac
}

# Compiles one source into $FUZZ_B/obj when it (or a header) changed.
fuzz_obj() {
	src=$1
	obj=$FUZZ_B/obj/$(echo "$src" | sed 's|^/||; s|/|_|g; s|\.c$|.o|')
	if [ -f "$obj" ] && [ -z "$(find "$src" include -newer "$obj" \
	    -name '*.[ch]' 2>/dev/null | head -n 1)" ]; then
		echo "$obj"
		return 0
	fi
	case $src in
	/*) flags="$LLHTTP_CFLAGS -w" ;; # llhttp: its own flags
	*) flags="$CPPFLAGS $WARN" ;;
	esac
	# shellcheck disable=SC2086
	$FUZZ_CC $flags $OPT $SAN -fsanitize=fuzzer-no-link -c -o "$obj" \
	    "$src" >&2
	echo "$obj"
}

mkdir -p "$FUZZ_B/obj" "$FUZZ_B/bin" "$FUZZ_B/logs"
for t in $FUZZ_TARGETS; do
	objs=
	for s in $(fuzz_srcs "$t"); do
		objs="$objs $(fuzz_obj "$s")"
	done
	# shellcheck disable=SC2086
	$FUZZ_CC $CPPFLAGS $WARN $OPT $SAN -fsanitize=fuzzer \
	    -o "$FUZZ_B/bin/fuzz_$t" "tests/fuzz/fuzz_$t.c" $objs \
	    $PKG_LIBS $LLHTTP_LIBS -lpthread -lm
done
echo "fuzz: built $FUZZ_TARGETS in $FUZZ_B/bin ($FUZZ_CC)"
[ "${FUZZ_BUILD_ONLY:-0}" = 1 ] && exit 0

if [ -n "$FUZZ_RUNS" ]; then
	limit="-runs=$FUZZ_RUNS"
	if [ -n "$secs_given" ]; then
		limit="$limit -max_total_time=$FUZZ_SECS"
	fi
else
	limit="-max_total_time=$FUZZ_SECS"
fi
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:symbolize=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
failed=0
printf '%-11s %12s %9s %7s  %s\n' target execs exec/s corpus result
for t in $FUZZ_TARGETS; do
	corpus=$FUZZ_B/corpus/$t
	art=$FUZZ_B/artifacts/$t
	log=$FUZZ_B/logs/$t.log
	mkdir -p "$corpus" "$art"
	if [ -d "tests/fuzz/seeds/$t" ]; then
		cp -n tests/fuzz/seeds/"$t"/* "$corpus"/ 2>/dev/null || true
	fi
	dict=
	if [ -f "tests/fuzz/dict/$t.dict" ]; then
		dict="-dict=tests/fuzz/dict/$t.dict"
	fi
	rc=0
	# shellcheck disable=SC2086
	"$FUZZ_B/bin/fuzz_$t" $limit $dict -rss_limit_mb="$FUZZ_RSS_MB" \
	    -timeout="$FUZZ_TIMEOUT" -detect_leaks=1 -print_final_stats=1 \
	    -artifact_prefix="$art/" "$corpus" >"$log" 2>&1 || rc=$?
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" |
	    tail -n 1)
	speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" |
	    tail -n 1)
	size=$(find "$corpus" -type f | wc -l)
	if [ "$rc" -eq 0 ]; then
		result=ok
	else
		failed=1
		if grep -q 'ERROR: LeakSanitizer' "$log"; then
			result=leak
		elif grep -q 'ERROR: libFuzzer: timeout' "$log"; then
			result=timeout
		elif grep -q 'out-of-memory' "$log"; then
			result=oom
		else
			result=crash
		fi
		found=$(find "$art" -type f | head -n 1)
		result="$result (rc $rc; input ${found:-none}; log $log)"
	fi
	printf '%-11s %12s %9s %7s  %s\n' "$t" "${execs:-?}" "${speed:-?}" \
	    "$size" "$result"
done
if [ "$failed" -ne 0 ]; then
	echo "fuzz: FAILED; reproduce with $FUZZ_B/bin/fuzz_<target> <input>" >&2
	exit 1
fi
