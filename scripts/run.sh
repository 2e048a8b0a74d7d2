#!/bin/sh
# make run: starts redrived in the foreground with a development
# configuration in ./run/ (made on the first run, kept afterwards), so a
# newcomer can send a mail with swaks and see it in `redrive log`.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
dir="$top/run"
conf="$dir/redrive.conf"
mkdir -p "$dir"

if [ ! -f "$conf" ]; then
	cat >"$conf" <<CONF
# Development configuration written by \`make run\`; edit freely.
# Every key and its default: etc/redrive.conf.
[relay]
listen = 127.0.0.1:2525
hostname = localhost

[tracker]
listen = 127.0.0.1:8025

[store]
path = $dir/redrive.db
CONF
	echo "run: wrote $conf"
fi

"$top/build/redrived" -c "$conf" --check-config

cat <<MSG

redrived is starting in the foreground (Ctrl-C stops it).
  SMTP relay : 127.0.0.1:2525
  store      : $dir/redrive.db
Send a mail from another terminal:
  swaks --server 127.0.0.1:2525 --from app@example.com --to you@example.com
and read the mail log:
  build/redrive --db $dir/redrive.db log

MSG
exec "$top/build/redrived" -c "$conf"
