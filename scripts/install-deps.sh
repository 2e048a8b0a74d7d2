#!/bin/sh
# Installs, on Debian or Ubuntu, whatever redrive needs to build, test and
# run that is not there yet. Idempotent: a second run installs nothing and
# says so. Needs root (or sudo) only when something is missing.
set -eu

PKGS="build-essential pkg-config clang clang-tidy clang-format cppcheck
libuv1-dev libcurl4-openssl-dev libssl-dev libsqlite3-dev libesmtp-dev
libjansson-dev libinih-dev node-llhttp libcmocka-dev libcrypt-dev
python3 python3-pytest swaks libnet-ssleay-perl postfix sqlite3 valgrind openssl iproute2
groff-base man-db
libclang-rt-14-dev"

missing=""
for p in $PKGS; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null |
	    grep -q 'install ok installed'; then
		# A package may not exist under this name on this release
		# (libclang-rt-14-dev is bookworm's); skip what apt cannot see.
		missing="$missing $p"
	fi
done

if [ -z "$missing" ]; then
	echo "install-deps: everything redrive needs is installed"
	exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
	echo "install-deps: missing:$missing" >&2
	echo "install-deps: no apt-get here; install them by hand" >&2
	exit 1
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
	SUDO="sudo"
fi

echo "install-deps: installing:$missing"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# Keep postfix from asking questions or starting the system instance: the
# benchmarks run a private instance of their own.
echo "postfix postfix/main_mailer_type select No configuration" |
    $SUDO debconf-set-selections 2>/dev/null || true
avail=""
for p in $missing; do
	if apt-cache show "$p" >/dev/null 2>&1; then
		avail="$avail $p"
	else
		echo "install-deps: $p is not available here; skipping" >&2
	fi
done
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $avail
echo "install-deps: done"
