#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Start libvirt's daemon by hand (no systemd) for corral-bench --target libvirt:...,
# with its sockets in a private directory, and print the URI to give corral-bench.
#
#   bench/libvirtd-private.sh start DIR    -> prints libvirt:qemu:///system?socket=DIR/libvirt-sock
#   bench/libvirtd-private.sh stop DIR
#
# Needs root and Debian's libvirt-daemon and libvirt-daemon-driver-qemu (scripts/deps.sh).
# Without libvirt-daemon-system there is no /etc/libvirt/qemu.conf and no libvirt-qemu
# user: this creates both, QEMU running as root with no security driver, no control
# groups and its output in files (no virtlogd), so that QEMU's own costs are the same
# as under corrald on this machine.  An existing qemu.conf is left alone.
set -euo pipefail
cmd=${1:-}
dir=${2:-}
[ -n "$cmd" ] && [ -n "$dir" ] || { echo "usage: $0 start|stop DIR" >&2; exit 2; }
case "$cmd" in
start)
	[ "$(id -u)" -eq 0 ] || { echo "libvirtd-private: needs root" >&2; exit 1; }
	[ -x /usr/sbin/libvirtd ] || { echo "libvirtd-private: no /usr/sbin/libvirtd (scripts/deps.sh)" >&2; exit 1; }
	mkdir -p "$dir"
	dir=$(cd "$dir" && pwd)
	getent passwd libvirt-qemu >/dev/null ||
		useradd --system --no-create-home --home-dir /nonexistent \
			--shell /usr/sbin/nologin libvirt-qemu
	if [ ! -e /etc/libvirt/qemu.conf ]; then
		mkdir -p /etc/libvirt
		cat > /etc/libvirt/qemu.conf <<'CONF'
# Written by corral's bench/libvirtd-private.sh for corral-bench's comparison.
user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
security_driver = "none"
cgroup_controllers = [ ]
stdio_handler = "file"
CONF
	fi
	cat > "$dir/libvirtd.conf" <<CONF
unix_sock_dir = "$dir"
listen_tls = 0
listen_tcp = 0
auth_unix_rw = "none"
auth_unix_ro = "none"
CONF
	/usr/sbin/libvirtd --config "$dir/libvirtd.conf" --pid-file "$dir/libvirtd.pid" \
		>"$dir/libvirtd.log" 2>&1 &
	for _ in $(seq 300); do
		[ -S "$dir/libvirt-sock" ] && break
		sleep 0.1
	done
	[ -S "$dir/libvirt-sock" ] || { echo "libvirtd-private: no socket; see $dir/libvirtd.log" >&2; exit 1; }
	echo "libvirt:qemu:///system?socket=$dir/libvirt-sock"
	;;
stop)
	[ -f "$dir/libvirtd.pid" ] && kill "$(cat "$dir/libvirtd.pid")" 2>/dev/null || true
	;;
*)
	echo "usage: $0 start|stop DIR" >&2
	exit 2
	;;
esac
