# postfix_instance.sh: a private Postfix instance for `make bench`
# (sourced by accept.sh and memory.sh after lib.sh, not run).
#
# pf_start DIR starts one under DIR (DIR/etc: main.cf and master.cf,
# DIR/queue, DIR/data, DIR/maillog), with smtpd on 127.0.0.1:$pf_port and
# every message relayed (relayhost) to an smtp-sink on 127.0.0.1:$pf_sink.
# No local delivery, no pickup, nothing on port 25, inet_interfaces and
# mynetworks loopback only, chroot off (so nothing is copied into the
# queue directory); Postfix keeps its default durability (cleanup fsyncs
# the queue file before smtpd answers 250) and its default in_flow_delay.
# default_process_limit is 200 so that 100 sessions each get an smtpd,
# and the per-client connection limit is off (every client is 127.0.0.1).
#
# It runs `postfix -c DIR/etc check` and `postfix -c DIR/etc start`: as
# root, a config directory named with -c needs no
# alternate_config_directories entry in /etc/postfix/main.cf, and
# /etc/postfix is only read (postfix-files, dynamicmaps.cf, the scripts
# of daemon_directory).  The system's Postfix, running or not, is left as
# it is: another queue directory means another master.lock and pid file.
# pf_stop runs `postfix -c DIR/etc stop`, then kills by pid whatever of
# the instance is still alive (the master and the children it had), and
# the smtp-sink.  Callers put pf_stop in their EXIT trap.  Needs root.

pf_dir="" pf_master="" pf_sink_pid=""

# pf_usable: true when this user can run a private Postfix.
pf_usable() {
	[ "$(id -u)" -eq 0 ] && [ -x /usr/sbin/postfix ] &&
	    command -v smtp-sink >/dev/null 2>&1
}

# pf_start DIR: sets $pf_port (smtpd), $pf_sink (smtp-sink), $pf_master.
pf_start() {
	pf_dir=$1
	rm -rf "$pf_dir"
	mkdir -p "$pf_dir/etc" "$pf_dir/queue" "$pf_dir/data"
	chown postfix "$pf_dir/data"
	pf_port=$(bench_port)
	pf_sink=$(bench_port)
	smtp-sink -u postfix "127.0.0.1:$pf_sink" 1024 \
	    >"$pf_dir/sink.log" 2>&1 &
	pf_sink_pid=$!
	bench_track "$pf_sink_pid"
	cat >"$pf_dir/etc/main.cf" <<CONF
# Private bench instance (tests/bench/postfix_instance.sh).
compatibility_level = 3.6
queue_directory = $pf_dir/queue
data_directory = $pf_dir/data
maillog_file = $pf_dir/maillog
maillog_file_prefixes = $pf_dir
syslog_name = postfix-bench
myhostname = pfbench.local
mydestination =
local_recipient_maps =
local_transport = error:local delivery is disabled
alias_maps =
alias_database =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
relayhost = [127.0.0.1]:$pf_sink
default_process_limit = 200
smtpd_client_connection_count_limit = 0
biff = no
CONF
	# Only the services a relay uses; smtpd on its own loopback port.
	cat >"$pf_dir/etc/master.cf" <<CONF
127.0.0.1:$pf_port inet n - n - - smtpd
cleanup   unix n - n - 0 cleanup
qmgr      unix n - n 300 1 qmgr
rewrite   unix - - n - - trivial-rewrite
bounce    unix - - n - 0 bounce
defer     unix - - n - 0 bounce
trace     unix - - n - 0 bounce
verify    unix - - n - 1 verify
flush     unix n - n 1000? 0 flush
proxymap  unix - - n - - proxymap
smtp      unix - - n - - smtp
relay     unix - - n - - smtp
error     unix - - n - - error
retry     unix - - n - - error
discard   unix - - n - - discard
anvil     unix - - n - 1 anvil
scache    unix - - n - 1 scache
postlog   unix-dgram n - n - 1 postlogd
CONF
	postfix -c "$pf_dir/etc" check >>"$pf_dir/postfix.out" 2>&1 &&
	    postfix -c "$pf_dir/etc" start >>"$pf_dir/postfix.out" 2>&1 || {
		echo "bench: the private Postfix did not start" >&2
		cat "$pf_dir/postfix.out" "$pf_dir/maillog" >&2 2>/dev/null
		return 1
	}
	pf_master=$(tr -d ' ' <"$pf_dir/queue/pid/master.pid")
	bench_wait_port "$pf_port"
	bench_wait_port "$pf_sink"
}

# pf_children: pids of the instance's master's children.
pf_children() {
	[ -n "$pf_master" ] || return 0
	awk -v m="$pf_master" '$4 == m { print $1 }' /proc/[0-9]*/stat \
	    2>/dev/null || true
}

# pf_smtpd_kb FIELD: the sum of FIELD (Rss or Pss, KiB, from
# smaps_rollup) over the instance's smtpd processes, and their count.
pf_smtpd_kb() {
	n=0 kb=0
	for p in $(pf_children); do
		[ "$(cat "/proc/$p/comm" 2>/dev/null)" = smtpd ] || continue
		v=$(awk -v f="$1:" '$1 == f { print $2 }' \
		    "/proc/$p/smaps_rollup" 2>/dev/null) || continue
		[ -n "$v" ] || continue
		n=$((n + 1)) kb=$((kb + v))
	done
	echo "$kb $n"
}

# pf_queued: messages still in the instance's queue.
pf_queued() {
	find "$pf_dir/queue/incoming" "$pf_dir/queue/active" \
	    "$pf_dir/queue/deferred" "$pf_dir/queue/maildrop" -type f |
	    wc -l
}

# pf_drain: waits (up to 120 s) until the queue is empty.
pf_drain() {
	i=0
	while [ "$(pf_queued)" -ne 0 ]; do
		i=$((i + 1))
		if [ $i -gt 1200 ]; then
			echo "bench: the private Postfix still holds" \
			    "$(pf_queued) messages after 120 s" >&2
			return 1
		fi
		sleep 0.1
	done
}

# pf_stop: stops the instance (idempotent).
pf_stop() {
	[ -n "$pf_dir" ] || return 0
	kids=$(pf_children)
	postfix -c "$pf_dir/etc" stop >>"$pf_dir/postfix.out" 2>&1 || true
	for p in $pf_master $kids; do
		i=0
		while kill -0 "$p" 2>/dev/null && [ $i -lt 100 ]; do
			sleep 0.1
			i=$((i + 1))
		done
		kill -9 "$p" 2>/dev/null || true
	done
	[ -z "$pf_sink_pid" ] || bench_stop "$pf_sink_pid"
	pf_dir="" pf_master="" pf_sink_pid=""
}
