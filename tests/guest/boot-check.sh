#!/usr/bin/env bash
# Boot the guest built by build-guest.sh under QEMU (TCG) and check it end to
# end, in three runs:
#
#   user  ready line on the serial console, its web page through a
#         user-network port forward, a fetch from the guest to a server on
#         the host's loopback, a hotplugged virtio disk showing up as
#         /dev/vda, and an ACPI power-button shutdown that makes QEMU exit
#         on its own;
#   p2p   two guests with static addresses (corral.ip=) on a point-to-point
#         link over loopback TCP (-netdev socket,listen= / connect=): A
#         fetches a page from B, B pings A; B's second NIC stays down;
#   iso   a boot from guest.iso as a CD-ROM, reaching the ready line with
#         boot=cdrom.
#
#   tests/guest/boot-check.sh OUTDIR
#
# Environment: QEMU (default qemu-system-x86_64), BOOT_TIMEOUT (seconds to
# wait for a ready line, default 300), GUEST_KERNEL=kernel_pvh boots the
# uncompressed PVH kernel instead of vmlinuz (user and p2p runs),
# CHECKS="user p2p iso" picks runs (default all three), KEEP=1 keeps the
# scratch directory (it is always kept, and named, on failure).
set -euo pipefail

py=/usr/bin/python3
qemu=${QEMU:-qemu-system-x86_64}
boot_timeout=${BOOT_TIMEOUT:-300}
checks=" ${CHECKS:-user p2p iso} "

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
for c in $checks; do
	case "$c" in
	user | p2p | iso) ;;
	*) log "FAIL: unknown check $c in CHECKS (user, p2p, iso)" && exit 2 ;;
	esac
done
want() { case "$checks" in *" $1 "*) return 0 ;; esac; return 1; }

field() { "$py" -c 'import json, sys; print(json.load(open(sys.argv[1])).get(sys.argv[2]) or "")' "$json" "$1"; }
kernel=$(field "${GUEST_KERNEL:-kernel}")
case "$kernel" in
/*) ;;
*) log "FAIL: no ${GUEST_KERNEL:-kernel} in $json" && exit 1 ;;
esac
initrd=$(field initrd)
cmdline=$(field cmdline)
ready=$(field ready_line)
iso=$(field iso)
if want iso && [ ! -s "$iso" ]; then
	log "FAIL: no ISO in $json (built by an older build-guest.sh? run it again)"
	exit 1
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/corral-boot-check.XXXXXX")
hpid=""
failed=1
declare -A qpid=() infd=() # per guest: QEMU's pid, the fd of its console FIFO
guests=()                  # every guest started, for cleanup and logs
t_start=$(date +%s%N)

cleanup() {
	local g fd
	for g in "${guests[@]}"; do
		if [ -n "${qpid[$g]-}" ] && kill -0 "${qpid[$g]}" 2>/dev/null; then
			kill "${qpid[$g]}" 2>/dev/null || true
			wait "${qpid[$g]}" 2>/dev/null || true
		fi
		fd=${infd[$g]-}
		[ -z "$fd" ] || exec {fd}>&-
	done
	if [ -n "$hpid" ] && kill -0 "$hpid" 2>/dev/null; then
		kill "$hpid" 2>/dev/null || true
		wait "$hpid" 2>/dev/null || true
	fi
	if ((failed)) || [ "${KEEP:-0}" = 1 ]; then
		log "logs kept in $work"
	else
		rm -rf "$work"
	fi
}
trap cleanup EXIT

fail() {
	local g
	log "FAIL: $*"
	for g in "${guests[@]}"; do
		if [ -s "$work/$g.serial" ]; then
			log "last lines of guest $g's serial console:"
			tail -n 30 "$work/$g.serial" | cat -v >&2
		fi
		if [ -s "$work/$g.err" ]; then
			log "guest $g: QEMU's stderr:"
			tail -n 10 "$work/$g.err" >&2
		fi
	done
	exit 1
}

now_ms() { echo $(($(date +%s%N) / 1000000)); }
secs() { printf '%d.%03d' $(($1 / 1000)) $(($1 % 1000)); } # ms -> s

free_port() {
	"$py" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

alive() { kill -0 "${qpid[$1]}" 2>/dev/null; }

# start_guest NAME QEMU-ARGS...: QEMU/TCG with its serial console on stdio
# (input: the FIFO $work/NAME.in, held open so that QEMU sees no EOF;
# output: $work/NAME.serial) and QMP on $work/NAME.qmp.  Sets T0[NAME].
# Returns 1 when QEMU exits before its QMP socket appears (a port taken).
declare -A T0=()
start_guest() {
	local g=$1 fd
	shift
	[ -n "${infd[$g]-}" ] || {
		mkfifo "$work/$g.in"
		exec {fd}<>"$work/$g.in"
		infd[$g]=$fd
		guests+=("$g")
	}
	: >"$work/$g.serial"
	rm -f "$work/$g.qmp"
	T0[$g]=$(now_ms)
	"$qemu" -machine pc,accel=tcg -m 256 -smp 1 -nodefaults -no-user-config \
		-display none -serial stdio \
		-qmp "unix:$work/$g.qmp,server=on,wait=off" "$@" \
		<&"${infd[$g]}" >"$work/$g.serial" 2>"$work/$g.err" &
	qpid[$g]=$!
	until [ -S "$work/$g.qmp" ] || ! alive "$g"; do
		sleep 0.05
	done
	alive "$g" && return 0
	wait "${qpid[$g]}" || true
	return 1
}

# wait_console NAME TEXT SECONDS WHAT: poll NAME's console for TEXT (fixed
# string).
wait_console() {
	local g=$1 text=$2 deadline=$(($(now_ms) + $3 * 1000))
	until grep -qF -- "$text" "$work/$g.serial" 2>/dev/null; do
		alive "$g" || fail "QEMU of guest $g exited while waiting for $4"
		(($(now_ms) < deadline)) || fail "no $4 within $3 s (guest $g)"
		sleep 0.1
	done
}

# wait_ready NAME PATTERN: the ready line, which must match the glob
# PATTERN; logs the time from starting QEMU.
wait_ready() {
	local g=$1 text t
	wait_console "$g" "$ready" "$boot_timeout" "ready line"
	t=$(now_ms)
	text=$(grep -F -- "$ready" "$work/$g.serial" | head -n1 | tr -d '\r')
	log "guest $g ready after $(secs $((t - T0[$g]))) s: $text"
	# shellcheck disable=SC2254 # a pattern on purpose
	case "$text" in
	$2) ;;
	*) fail "guest $g: ready line '$text', expected '$2'" ;;
	esac
}

# type_line NAME TEXT: a line typed on NAME's console.
type_line() { printf '%s\n' "$2" >&"${infd[$1]}"; }

# qmp NAME CMD...: QMP commands in order, each after the previous one's
# reply; a CMD is a command name or a JSON object ({"execute": ...}).
qmp() {
	"$py" - "$work/$1.qmp" "${@:2}" <<'EOF'
import json, socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(30)
s.connect(sys.argv[1])
f = s.makefile("rw")
if "QMP" not in json.loads(f.readline()):
    sys.exit("no QMP greeting")
for cmd in sys.argv[2:]:
    msg = json.loads(cmd) if cmd.startswith("{") else {"execute": cmd}
    f.write(json.dumps(msg) + "\n")
    f.flush()
    while True:
        line = f.readline()
        if not line:
            sys.exit("QMP connection closed before the reply to " + cmd)
        reply = json.loads(line)
        if "error" in reply:
            sys.exit(cmd + ": " + json.dumps(reply["error"]))
        if "return" in reply:
            break
EOF
}

# stop_guest NAME: QMP quit, then QEMU must be gone within 30 s.
stop_guest() {
	local g=$1 deadline=$(($(now_ms) + 30000))
	qmp "$g" qmp_capabilities quit >/dev/null 2>&1 || true
	while alive "$g"; do
		(($(now_ms) < deadline)) || fail "guest $g still running 30 s after QMP quit"
		sleep 0.05
	done
	wait "${qpid[$g]}" 2>/dev/null || true
	qpid[$g]=""
}

check_one_ready() {
	local n
	n=$(grep -cF -- "$ready" "$work/$1.serial")
	((n == 1)) || fail "$n ready lines on guest $1's console, expected exactly 1"
}

# -- run 1: user network, port forward, host server, hotplug, power button ----

run_user() {
	local g=u hport="" fport attempt token page t_add t_seen t_off t_exit rc
	token="host-side-$(od -An -N8 -tx8 /dev/urandom | tr -d ' ')"
	mkdir "$work/srv"
	echo "$token" >"$work/srv/token.txt"
	"$py" -u -m http.server 0 --bind 127.0.0.1 --directory "$work/srv" >"$work/http.log" 2>&1 &
	hpid=$!
	for _ in $(seq 100); do
		hport=$(sed -n 's/^Serving HTTP on .* port \([0-9]*\).*/\1/p' "$work/http.log")
		[ -n "$hport" ] && break
		kill -0 "$hpid" 2>/dev/null || break
		sleep 0.1
	done
	[ -n "$hport" ] || fail "the host HTTP server did not start: $(cat "$work/http.log")"
	log "host HTTP server on 127.0.0.1:$hport"

	for attempt in 1 2 3; do
		fport=$(free_port)
		log "user: booting $kernel (TCG, attempt $attempt, page forwarded to 127.0.0.1:$fport)"
		start_guest "$g" \
			-netdev "user,id=n0,hostfwd=tcp:127.0.0.1:$fport-:80" \
			-device virtio-net-pci,netdev=n0 \
			-kernel "$kernel" -initrd "$initrd" -append "$cmdline" && break
		grep -qi 'forward' "$work/$g.err" || fail "QEMU did not start"
		log "port $fport was taken, trying another one"
	done
	alive "$g" || fail "QEMU did not start"

	wait_ready "$g" "$ready ip=10.0.2.* boot=kernel"

	# The guest's page, through the port forward.
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

	# From the guest to the host's loopback.
	wait_console "$g" "corral-guest# " 60 "shell prompt"
	type_line "$g" "wget -q -O - http://10.0.2.2:$hport/token.txt"
	wait_console "$g" "$token" 60 "reply from the host server in the guest's console"
	log "guest fetched http://10.0.2.2:$hport/token.txt from the host"

	# A hotplugged virtio disk: the guest waits for /dev/vda (up to 30 s)
	# and then lists /dev/vd*.  The marker is split in the typed line so
	# that the echo does not match.
	# shellcheck disable=SC2016 # expanded by the guest's shell
	type_line "$g" 'n=0; while [ ! -b /dev/vda ] && [ $n -lt 300 ]; do sleep 0.1; n=$((n + 1)); done; echo "hotplug-""seen:" /dev/vd*'
	sleep 0.5
	qmp "$g" qmp_capabilities \
		'{"execute": "blockdev-add", "arguments": {"driver": "null-co", "node-name": "hp0", "size": 67108864}}' \
		'{"execute": "device_add", "arguments": {"driver": "virtio-blk-pci", "id": "hp0dev", "drive": "hp0"}}' ||
		fail "QMP blockdev-add/device_add"
	t_add=$(now_ms)
	wait_console "$g" "hotplug-seen:" 40 "hotplug marker"
	t_seen=$(now_ms)
	grep -qF "hotplug-seen: /dev/vda" "$work/$g.serial" ||
		fail "no /dev/vda after device_add virtio-blk-pci: $(grep -F hotplug-seen: "$work/$g.serial" | tr -d '\r')"
	log "hotplugged virtio-blk seen as /dev/vda $(secs $((t_seen - t_add))) s after device_add"

	# The ACPI power button.
	qmp "$g" qmp_capabilities system_powerdown || fail "QMP system_powerdown"
	t_off=$(now_ms)
	while alive "$g"; do
		(($(now_ms) < t_off + 60000)) || fail "QEMU still running 60 s after system_powerdown"
		sleep 0.1
	done
	rc=0
	wait "${qpid[$g]}" || rc=$?
	qpid[$g]=""
	((rc == 0)) || fail "QEMU exited with status $rc"
	t_exit=$(now_ms)
	log "guest powered off $(secs $((t_exit - t_off))) s after system_powerdown"
	check_one_ready "$g"
	kill "$hpid" 2>/dev/null || true
	wait "$hpid" 2>/dev/null || true
	hpid=""
}

# -- run 2: two guests, static addresses, a point-to-point link ---------------

# A listens on a loopback TCP port, B connects to it: each frame crosses as
# a length-prefixed record over that connection, nothing leaves the host's
# loopback.  Distinct MAC addresses (the default one would be the same on
# both).  B has a second NIC, on a hub with nothing else: it must stay down.
run_p2p() {
	local port attempt t0 t1 token ip_a=10.9.0.1 ip_b=10.9.0.2
	local mac_a=52:54:00:c0:09:01 mac_b=52:54:00:c0:09:02 mac_b1=52:54:00:c0:09:12
	t0=$(now_ms)
	for attempt in 1 2 3; do
		port=$(free_port)
		log "p2p: booting guest A (corral.ip=$ip_a/24), listening on 127.0.0.1:$port (attempt $attempt)"
		start_guest a \
			-netdev "socket,id=p0,listen=127.0.0.1:$port" \
			-device "virtio-net-pci,netdev=p0,mac=$mac_a" \
			-kernel "$kernel" -initrd "$initrd" -append "$cmdline corral.ip=$ip_a/24" && break
		log "QEMU of guest A did not start (port $port taken?): $(tail -n1 "$work/a.err")"
	done
	alive a || fail "QEMU of guest A did not start"
	# A's QMP answers once its netdevs exist: its port is listening then.
	qmp a qmp_capabilities || fail "QMP of guest A"
	log "p2p: booting guest B (corral.ip=$ip_b/24 corral.gw=$ip_a), connecting to 127.0.0.1:$port; a second NIC on an empty hub"
	start_guest b \
		-netdev "socket,id=p0,connect=127.0.0.1:$port" \
		-device "virtio-net-pci,netdev=p0,mac=$mac_b" \
		-netdev hubport,id=spare,hubid=1 \
		-device "virtio-net-pci,netdev=spare,mac=$mac_b1" \
		-kernel "$kernel" -initrd "$initrd" -append "$cmdline corral.ip=$ip_b/24 corral.gw=$ip_a" ||
		fail "QEMU of guest B did not start"

	wait_ready a "$ready ip=$ip_a boot=kernel"
	wait_ready b "$ready ip=$ip_b boot=kernel"

	# B: a page with a random token; eth0 is the first NIC, eth1 is down;
	# the default route.
	token="peer-$(od -An -N8 -tx8 /dev/urandom | tr -d ' ')"
	wait_console b "corral-guest# " 60 "shell prompt"
	type_line b "echo $token >/www/peer.txt; echo \"nic\"\"s: \$(cat /sys/class/net/eth0/address) \$(cat /sys/class/net/eth1/operstate) \$(ip route show default)\""
	wait_console b "nics: " 30 "B's NIC report"
	local nics
	nics=$(grep -F "nics: " "$work/b.serial" | head -n1 | tr -d '\r')
	case "$nics" in
	*"nics: $mac_b down default via $ip_a dev eth0"*) log "guest B: $nics" ;;
	*) fail "guest B: expected eth0 = $mac_b, eth1 down, default via $ip_a; got: $nics" ;;
	esac

	# A fetches B's page.
	t1=$(now_ms)
	wait_console a "corral-guest# " 60 "shell prompt"
	type_line a "wget -q -O - http://$ip_b/peer.txt"
	wait_console a "$token" 60 "B's page on A's console"
	log "guest A fetched http://$ip_b/peer.txt from guest B in $(secs $(($(now_ms) - t1))) s"

	# B pings A.
	t1=$(now_ms)
	type_line b "ping -c 2 -W 5 $ip_a"
	wait_console b "2 packets received" 30 "ping replies from A"
	log "guest B pinged guest A (2 packets received) in $(secs $(($(now_ms) - t1))) s"

	check_one_ready a
	check_one_ready b
	stop_guest b
	stop_guest a
	log "p2p: two guests checked in $(secs $(($(now_ms) - t0))) s"
}

# -- run 3: the ISO as a CD-ROM ------------------------------------------------

run_iso() {
	log "iso: booting $iso as a CD-ROM (-cdrom, -boot d; TCG; user network, restrict=on)"
	start_guest c \
		-netdev user,id=n0,restrict=on \
		-device virtio-net-pci,netdev=n0 \
		-cdrom "$iso" -boot d || fail "QEMU did not start"
	wait_ready c "$ready ip=10.0.2.* boot=cdrom"
	grep -qF ISOLINUX "$work/c.serial" || fail "no ISOLINUX banner on the console"
	check_one_ready c
	stop_guest c
}

want user && run_user
want p2p && run_p2p
want iso && run_iso

failed=0
log "PASS ($(echo "$checks" | xargs) in $(secs $((($(date +%s%N) - t_start) / 1000000))) s)"
