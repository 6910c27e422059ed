#!/usr/bin/env bash
# The main job: install what is missing, build, build the tiny test guest
# (tests/guest: a Debian kernel and a busybox initramfs, from Debian's
# packages), then through corral: define it with user-mode networking and a
# port forward to its web server, start it, wait for its ready line on the
# serial console, fetch its page through the forward, and show
# `corral list` and how to attach to its console.
#
# KVM when it is usable and the guest boots under it within a deadline;
# otherwise (no /dev/kvm, or a KVM guest that hangs, as on some hosts) TCG,
# and the script says which and why.
#
# The daemon (a per-user session corrald the CLI starts) and the VM keep
# running afterwards.  Usage: scripts/run.sh [NAME] (default demo).
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/deps.sh
[ -f build/build.ninja ] || meson setup build >/dev/null
ninja -C build >/dev/null
tests/guest/build-guest.sh build/guest >/dev/null

corral=./build/cli/corral
name=${1:-demo}
guest=build/guest/guest.json
ready="corral-guest: ready"
kvm_deadline=45         # a guest that boots in ~5 s under TCG: 45 s means a hang
tcg_deadline=240

field() { python3 -c 'import json,sys; v=json.load(open(sys.argv[1]))[sys.argv[2]]; print(v or "")' "$guest" "$1"; }
kernel=$(field kernel_pvh)
[ -n "$kernel" ] || kernel=$(field kernel)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

# A rerun starts from scratch: stop and forget an earlier VM of that name.
if "$corral" info "$name" >/dev/null 2>&1; then
	"$corral" destroy "$name" >/dev/null 2>&1 || true
	"$corral" undefine "$name" >/dev/null
fi

define() { # accel
	"$corral" define "$name" --memory 256M --accel "$1" --kernel "$kernel" \
		--initrd "$(field initrd)" --cmdline "$(field cmdline)" \
		--nic "user,hostfwd=tcp:127.0.0.1:$port-:80" >/dev/null
}

# Wait for the ready line in the console's history: 0 when seen within $1 s.
wait_ready() {
	local end=$((SECONDS + $1))
	while ((SECONDS < end)); do
		"$corral" console "$name" --history 2>/dev/null | grep -aq "$ready" && return 0
		sleep 1
	done
	return 1
}

accel=tcg
if [ -r /dev/kvm ] && [ -w /dev/kvm ]; then
	accel=kvm
fi
define "$accel"
if [ "$accel" = kvm ] && ! "$corral" start "$name" >/dev/null 2>&1; then
	echo "run: KVM cannot run a guest here; using TCG"
	accel=tcg
	define tcg
fi
[ "$accel" = kvm ] || "$corral" start "$name" >/dev/null
echo "run: $name is booting under ${accel^^}"
if [ "$accel" = kvm ] && ! wait_ready "$kvm_deadline"; then
	echo "run: no ready line from the guest under KVM in ${kvm_deadline} s: KVM guests hang" \
	     "on this host; starting it again under TCG"
	"$corral" destroy "$name" >/dev/null
	accel=tcg
	define tcg
	"$corral" start "$name" >/dev/null
	wait_ready "$tcg_deadline" || { echo "run: the guest did not boot under TCG either" >&2; exit 1; }
elif [ "$accel" = tcg ] && ! wait_ready "$tcg_deadline"; then
	echo "run: the guest did not boot within ${tcg_deadline} s" >&2
	exit 1
fi
echo "run: the guest is up:"
"$corral" console "$name" --history | grep -a "$ready" | tr -d '\r' | sed 's/^/run:   /'

page=$(python3 -c 'import sys, urllib.request
print(urllib.request.urlopen("http://127.0.0.1:%s/" % sys.argv[1], timeout=30).read().decode().strip())' "$port")
echo "run: http://127.0.0.1:$port/ (forwarded to the guest's port 80) says: $page"
"$corral" list
cat <<EOF

Attach to its serial console (Ctrl-] detaches):   $corral console $name
Its definition as JSON:                           $corral dumpconfig $name
Stop it (ACPI power button, waits until off):     $corral shutdown $name
EOF
