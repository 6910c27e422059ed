#!/usr/bin/env bash
# Boot the guest built by build-guest.sh under QEMU (TCG) and check it end to
# end: ready line on the serial console, its web page through a user-network
# port forward, a fetch from the guest to a server on the host's loopback,
# and an ACPI power-button shutdown that makes QEMU exit on its own.
#
#   tests/guest/boot-check.sh OUTDIR
#
# Environment: QEMU (default qemu-system-x86_64), BOOT_TIMEOUT (seconds to
# wait for the ready line, default 120), GUEST_KERNEL=kernel_pvh boots the
# uncompressed PVH kernel instead of vmlinuz, KEEP=1 keeps the scratch
# directory (it is always kept, and named, on failure).
set -euo pipefail

py=/usr/bin/python3
qemu=${QEMU:-qemu-system-x86_64}
boot_timeout=${BOOT_TIMEOUT:-120}

log() { printf 'boot-check: %s\n' "$*" >&2; }

[ $# -eq 1 ] || {
	echo "usage: $0 OUTDIR" >&2
	exit 2
}
json="$1/guest.json"
[ -f "$json" ] || {
	log "FAIL: $json missing (run tests/guest/build-guest.sh $1 first)"
	exit 1
}
command -v "$qemu" >/dev/null || {
	log "FAIL: $qemu not found"
	exit 1
}

field() { "$py" -c 'import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$json" "$1"; }
kernel=$(field "${GUEST_KERNEL:-kernel}")
case "$kernel" in
/*) ;;
*) log "FAIL: no ${GUEST_KERNEL:-kernel} in $json" && exit 1 ;;
esac
initrd=$(field initrd)
cmdline=$(field cmdline)
ready=$(field ready_line)

work=$(mktemp -d "${TMPDIR:-/tmp}/corral-boot-check.XXXXXX")
serial="$work/serial.log"
qpid=""
hpid=""
failed=1

cleanup() {
	if [ -n "$qpid" ] && kill -0 "$qpid" 2>/dev/null; then
		kill "$qpid" 2>/dev/null || true
		wait "$qpid" 2>/dev/null || true
	fi
	if [ -n "$hpid" ] && kill -0 "$hpid" 2>/dev/null; then
		kill "$hpid" 2>/dev/null || true
		wait "$hpid" 2>/dev/null || true
	fi
	exec 3>&-
	if ((failed)) || [ "${KEEP:-0}" = 1 ]; then
		log "logs kept in $work"
	else
		rm -rf "$work"
	fi
}
trap cleanup EXIT

fail() {
	log "FAIL: $*"
	if [ -s "$serial" ]; then
		log "last lines of the serial console:"
		tail -n 30 "$serial" | cat -v >&2
	fi
	if [ -s "$work/qemu.err" ]; then
		log "QEMU's stderr:"
		tail -n 10 "$work/qemu.err" >&2
	fi
	exit 1
}

now_ms() { echo $(($(date +%s%N) / 1000000)); }

free_port() {
	"$py" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

qemu_alive() { kill -0 "$qpid" 2>/dev/null; }

# wait_console TEXT SECONDS WHAT: poll the serial log for TEXT (fixed string).
wait_console() {
	local text=$1 deadline=$(($(now_ms) + $2 * 1000))
	until grep -qF -- "$text" "$serial" 2>/dev/null; do
		qemu_alive || fail "QEMU exited while waiting for $3"
		(($(now_ms) < deadline)) || fail "no $3 within $2 s"
		sleep 0.1
	done
}

# QMP: send commands in order, each after the previous one's reply.
qmp() {
	"$py" - "$work/qmp.sock" "$@" <<'EOF'
import json, socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(30)
s.connect(sys.argv[1])
f = s.makefile("rw")
if "QMP" not in json.loads(f.readline()):
    sys.exit("no QMP greeting")
for cmd in sys.argv[2:]:
    f.write(json.dumps({"execute": cmd}) + "\n")
    f.flush()
    while True:
        line = f.readline()
        if not line:
            sys.exit("QMP connection closed before the reply to " + cmd)
        msg = json.loads(line)
        if "error" in msg:
            sys.exit(cmd + ": " + json.dumps(msg["error"]))
        if "return" in msg:
            break
EOF
}

# -- a web server on the host's loopback, for the guest to reach -------------

token="host-side-$(od -An -N8 -tx8 /dev/urandom | tr -d ' ')"
mkdir "$work/srv"
echo "$token" >"$work/srv/token.txt"
"$py" -u -m http.server 0 --bind 127.0.0.1 --directory "$work/srv" >"$work/http.log" 2>&1 &
hpid=$!
hport=""
for _ in $(seq 100); do
	hport=$(sed -n 's/^Serving HTTP on .* port \([0-9]*\).*/\1/p' "$work/http.log")
	[ -n "$hport" ] && break
	kill -0 "$hpid" 2>/dev/null || break
	sleep 0.1
done
[ -n "$hport" ] || fail "the host HTTP server did not start: $(cat "$work/http.log")"
log "host HTTP server on 127.0.0.1:$hport"

# -- boot ---------------------------------------------------------------------

mkfifo "$work/console.in"
exec 3<>"$work/console.in" # the console's input; held open so QEMU sees no EOF

for attempt in 1 2 3; do
	fport=$(free_port)
	: >"$serial"
	rm -f "$work/qmp.sock"
	log "booting $kernel (TCG, attempt $attempt, page forwarded to 127.0.0.1:$fport)"
	t0=$(now_ms)
	"$qemu" -machine pc,accel=tcg -m 256 -smp 1 -nodefaults -no-user-config \
		-display none -serial stdio \
		-netdev "user,id=n0,hostfwd=tcp:127.0.0.1:$fport-:80" \
		-device virtio-net-pci,netdev=n0 \
		-qmp "unix:$work/qmp.sock,server=on,wait=off" \
		-kernel "$kernel" -initrd "$initrd" -append "$cmdline" \
		<&3 >"$serial" 2>"$work/qemu.err" &
	qpid=$!
	until [ -S "$work/qmp.sock" ] || ! qemu_alive; do
		sleep 0.05
	done
	qemu_alive && break
	wait "$qpid" || true
	grep -qi 'forward' "$work/qemu.err" || fail "QEMU did not start"
	log "port $fport was taken, trying another one"
done
qemu_alive || fail "QEMU did not start"

wait_console "$ready" "$boot_timeout" "ready line"
t_ready=$(now_ms)
ready_text=$(grep -F -- "$ready" "$serial" | head -n1 | tr -d '\r')
log "ready after $(((t_ready - t0) / 1000)).$(printf '%03d' $(((t_ready - t0) % 1000))) s: $ready_text"
case "$ready_text" in
*" ip=10.0.2."*) ;;
*) fail "the guest has no address on the user network: $ready_text" ;;
esac

# -- the guest's page, through the port forward -------------------------------

page=$("$py" - "$fport" <<'EOF' 2>&1
import sys, time, urllib.request
url = "http://127.0.0.1:%s/" % sys.argv[1]
deadline = time.monotonic() + 30
while True:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            print(r.read().decode(errors="replace"), end="")
        break
    except Exception as e:
        if time.monotonic() > deadline:
            sys.exit("GET %s: %s" % (url, e))
        time.sleep(0.2)
EOF
) || fail "fetching the guest's page: $page"
case "$page" in
*"corral-guest ok"*) log "guest page through 127.0.0.1:$fport: $page" ;;
*) fail "unexpected guest page: $page" ;;
esac

# -- from the guest to the host's loopback ------------------------------------

wait_console "corral-guest# " 60 "shell prompt"
printf 'wget -q -O - http://10.0.2.2:%s/token.txt\n' "$hport" >&3
wait_console "$token" 60 "reply from the host server in the guest's console"
log "guest fetched http://10.0.2.2:$hport/token.txt from the host"

# -- ACPI power button ---------------------------------------------------------

qmp qmp_capabilities system_powerdown || fail "QMP system_powerdown"
t_off=$(now_ms)
deadline=$((t_off + 60000))
while qemu_alive; do
	(($(now_ms) < deadline)) || fail "QEMU still running 60 s after system_powerdown"
	sleep 0.1
done
rc=0
wait "$qpid" || rc=$?
qpid=""
((rc == 0)) || fail "QEMU exited with status $rc"
t_exit=$(now_ms)
log "guest powered off $(((t_exit - t_off) / 1000)).$(printf '%03d' $(((t_exit - t_off) % 1000))) s after system_powerdown"
n=$(grep -cF -- "$ready" "$serial")
((n == 1)) || fail "$n ready lines on the console, expected exactly 1"

failed=0
log "PASS"
