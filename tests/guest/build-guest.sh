#!/usr/bin/env bash
# Build the tiny Linux guest corral's tests boot: a Debian 12 kernel and a
# busybox initramfs that brings up the network, serves a page, powers off on
# the ACPI power button and offers a shell on the serial console.
#
#   tests/guest/build-guest.sh OUTDIR
#
# Writes OUTDIR/vmlinuz, OUTDIR/vmlinux (when the kernel can boot through
# PVH), OUTDIR/initrd.img, OUTDIR/guest.iso (the same kernel and initramfs on
# an El Torito BIOS-bootable ISO, ISOLINUX) and OUTDIR/guest.json.  A second run with the same
# script and the same kernel package version does nothing (OUTDIR/.stamp);
# the kernel package is kept in OUTDIR/.cache so that a changed script does
# not download it again.  Nothing is installed into the host's /boot: the
# kernel package is fetched with `apt-get download` and unpacked with
# `dpkg -x` into a scratch directory under OUTDIR.
#
# Environment: CORRAL_GUEST_KERNEL_META (default linux-image-amd64), the
# metapackage whose linux-image dependency is the kernel to use.
# See tests/guest/README.md.
set -euo pipefail

log() { printf 'build-guest: %s\n' "$*" >&2; }
die() {
	printf 'build-guest: error: %s\n' "$*" >&2
	exit 1
}

if [ $# -ne 1 ] || [ -z "$1" ]; then
	echo "usage: $0 OUTDIR" >&2
	exit 2
fi

script=$(readlink -f "${BASH_SOURCE[0]}")
mkdir -p "$1"
out=$(cd "$1" && pwd -P)
case "$out" in
*[\"\\]* | *$'\n'*) die "OUTDIR must not contain quotes, backslashes or newlines: $out" ;;
esac

meta=${CORRAL_GUEST_KERNEL_META:-linux-image-amd64}
# Modules the guest needs; their dependencies are added from modules.dep.
want_modules=(virtio_pci virtio_net virtio_blk button evdev)
cmdline="console=ttyS0 quiet"
iso_cmdline="$cmdline corral.boot=cdrom" # what ISOLINUX passes
ready="corral-guest: ready"

# One build per OUTDIR at a time (parallel test runs share it).
exec 9>"$out/.lock"
flock 9
rm -rf "$out"/.work.* # left by an interrupted run

as_root() {
	if [ "$(id -u)" -eq 0 ]; then
		"$@"
	elif command -v sudo >/dev/null; then
		sudo "$@"
	else
		die "need root to run: $*"
	fi
}

apt_updated=0
apt_update() {
	((apt_updated)) && return 0
	log "apt-get update (package lists)"
	as_root apt-get update -qq >/dev/null || die "apt-get update failed"
	apt_updated=1
}

# Install Debian packages that are missing (apt-get update first only when
# the package is not known yet).  One dpkg-query for all: it is most of the
# time of an up-to-date run.
ensure_pkgs() {
	local p missing=()
	declare -A ok=()
	while read -r p; do
		ok[$p]=1
	done < <(dpkg-query -W -f='${Package} ${Status}\n' "$@" 2>/dev/null |
		awk '/ install ok installed$/ { print $1 }')
	for p in "$@"; do
		[ -n "${ok[$p]-}" ] || missing+=("$p")
	done
	((${#missing[@]})) || return 0
	for p in "${missing[@]}"; do
		apt-cache show "$p" >/dev/null 2>&1 || apt_update
	done
	log "installing ${missing[*]} (apt-get)"
	as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
		--no-install-recommends "${missing[@]}" >/dev/null ||
		die "apt-get install ${missing[*]} failed"
}

# -- 1. what to build ---------------------------------------------------------

ensure_pkgs busybox-static gzip xorriso isolinux syslinux-common
busybox=/bin/busybox
[ -x "$busybox" ] || die "$busybox missing although busybox-static is installed"
# The tools' versions are part of the stamp: a new busybox, boot loader or
# xorriso makes a new build.
tools_version=$(dpkg-query -W -f='${Package}=${Version} ' busybox-static isolinux syslinux-common xorriso)
busybox_version=${tools_version#*busybox-static=}
busybox_version=${busybox_version%% *}
# The ISO's boot loader.
isolinux_bin=/usr/lib/ISOLINUX/isolinux.bin
isohybrid_mbr=/usr/lib/ISOLINUX/isohdpfx.bin
ldlinux=/usr/lib/syslinux/modules/bios/ldlinux.c32
for f in "$isolinux_bin" "$isohybrid_mbr" "$ldlinux"; do
	[ -s "$f" ] || die "$f missing although isolinux and syslinux-common are installed"
done

write_json() {
	local tmp="$out/guest.json.tmp" mods pvh_json
	mods=$(sed 's/.*/"&"/' "$out/.modules" | paste -sd, -)
	pvh_json=null
	[ "$(cat "$out/.pvh")" != yes ] || pvh_json="\"$out/vmlinux\""
	cat >"$tmp" <<EOF
{
  "kernel": "$out/vmlinuz",
  "kernel_pvh": $pvh_json,
  "initrd": "$out/initrd.img",
  "cmdline": "$cmdline",
  "iso": "$out/guest.iso",
  "iso_cmdline": "$iso_cmdline",
  "ready_line": "$ready",
  "kernel_package": "$kpkg",
  "kernel_version": "$kver",
  "kernel_release": "$(cat "$out/.krelease")",
  "modules": [$mods]
}
EOF
	if cmp -s "$tmp" "$out/guest.json"; then
		rm -f "$tmp"
	else
		mv "$tmp" "$out/guest.json"
	fi
}

# .stamp holds two keys: line 1 covers the script, the tools (busybox,
# isolinux, syslinux-common, xorriso) and the kernel package version; line 2
# the script, the tools and the metapackage.  When
# line 2 matches and apt's package lists and configuration are older than
# the stamp, the kernel apt would pick cannot have changed: no apt-cache.
built() {
	[ -s "$out/vmlinuz" ] && [ -s "$out/initrd.img" ] && [ -s "$out/guest.iso" ] &&
		[ -s "$out/.modules" ] &&
		[ -s "$out/.krelease" ] && [ -s "$out/.kernel" ] && [ -f "$out/.pvh" ] &&
		{ [ "$(cat "$out/.pvh")" != yes ] || [ -s "$out/vmlinux" ]; }
}
hash_of() { { sha256sum <"$script" && echo "$*"; } | sha256sum | cut -d' ' -f1; }
quick_key=$(hash_of "meta=$meta $tools_version")
if [ -f "$out/.stamp" ] && [ "$(sed -n 2p "$out/.stamp")" = "$quick_key" ] && built &&
	[ -z "$(find /var/lib/apt/lists /etc/apt -newer "$out/.stamp" -print -quit 2>/dev/null)" ]; then
	read -r kpkg kver <"$out/.kernel"
	write_json
	log "up to date: $out ($kpkg $kver; apt's lists unchanged since the last build)"
	exit 0
fi

# The metapackage's candidate depends on the concrete image package, normally
# with an exact version: "Depends: linux-image-6.1.0-57-amd64 (= 6.1.192-3)".
resolve_kernel() {
	apt-cache show --no-all-versions "$meta" 2>/dev/null | sed -n 's/^Depends: //p' |
		tr ',' '\n' | sed -n 's/^ *\(linux-image-[^ |]*\)\( *(= *\([^)]*\))\)\{0,1\}.*/\1 \3/p' |
		head -n 1
}
dep=$(resolve_kernel || true)
if [ -z "$dep" ]; then
	apt_update
	dep=$(resolve_kernel || true)
fi
[ -n "$dep" ] || die "cannot resolve the kernel package $meta depends on (apt-cache show $meta)"
read -r kpkg kver <<<"$dep"
if [ -z "${kver-}" ]; then # unversioned dependency: take the candidate
	kver=$(apt-cache policy "$kpkg" | awk '$1 == "Candidate:" { print $2 }')
fi
case "$kver" in
"" | "(none)") die "no installable version of $kpkg" ;;
esac
log "kernel package: $kpkg $kver (from $meta)"

key=$(hash_of "kernel=$kpkg=$kver $tools_version")

if [ -f "$out/.stamp" ] && [ "$(sed -n 1p "$out/.stamp")" = "$key" ] && built; then
	printf '%s\n%s\n' "$key" "$quick_key" >"$out/.stamp"
	write_json
	log "up to date: $out (stamp $key)"
	exit 0
fi
rm -f "$out/.stamp"

# -- 2. the kernel package ----------------------------------------------------

work=$(mktemp -d "$out/.work.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$out/.cache"
deb="$out/.cache/kernel.deb"
if [ -f "$deb" ] &&
	[ "$(dpkg-deb -f "$deb" Package Version 2>/dev/null | tr '\n' ' ')" = "Package: $kpkg Version: $kver " ]; then
	log "kernel package cached: $deb"
else
	log "downloading $kpkg=$kver (apt-get download)"
	mkdir -p "$work/dl"
	# apt drops to the _apt user for downloads when it may write there.
	chmod 0755 "$work"
	chown _apt "$work/dl" 2>/dev/null || true
	(cd "$work/dl" && apt-get download -q "$kpkg=$kver") >"$work/apt.log" 2>&1 || {
		cat "$work/apt.log" >&2
		die "apt-get download $kpkg=$kver failed"
	}
	mv "$work"/dl/"$kpkg"_*.deb "$deb.tmp"
	mv "$deb.tmp" "$deb"
fi

log "unpacking $(basename "$deb") (dpkg -x)"
dpkg -x "$deb" "$work/k"
vmlinuz=$(find "$work/k/boot" -maxdepth 1 -name 'vmlinuz-*' | head -n1)
[ -n "$vmlinuz" ] || die "no boot/vmlinuz-* in $kpkg"
krel=${vmlinuz##*/vmlinuz-}
base="$work/k"
[ -d "$base/lib/modules/$krel" ] || base="$work/k/usr"
moddir="$base/lib/modules/$krel"
[ -d "$moddir" ] || die "no lib/modules/$krel in $kpkg"
log "kernel release $krel"

# -- 3. modules and their dependencies ----------------------------------------

# The package ships no modules.dep (depmod runs at install time): compute it
# for the unpacked tree.
if [ ! -s "$moddir/modules.dep" ]; then
	log "computing modules.dep (busybox depmod)"
	"$busybox" depmod -b "$base" "$krel" || die "depmod failed"
fi
[ -s "$moddir/modules.dep" ] || die "no modules.dep for $krel"

modname() { # sets REPLY to the module name of a path in modules.dep
	local b=${1##*/}
	b=${b%%.ko*}
	REPLY=${b//-/_}
}
declare -A mod_path mod_deps builtin seen
while IFS= read -r line; do
	modname "${line%%:*}"
	mod_path[$REPLY]=${line%%:*}
	mod_deps[$REPLY]=${line#*:}
done <"$moddir/modules.dep"
if [ -f "$moddir/modules.builtin" ]; then
	while IFS= read -r line; do
		modname "$line"
		builtin[$REPLY]=1
	done <"$moddir/modules.builtin"
fi

order=()
visit() { # depth first: a module comes after everything it needs
	local n=$1 d
	[ -z "${seen[$n]-}" ] || return 0
	seen[$n]=1
	if [ -z "${mod_path[$n]-}" ]; then
		[ -n "${builtin[$n]-}" ] || die "module $n is neither in modules.dep nor in modules.builtin"
		log "module $n: built into the kernel"
		return 0
	fi
	for d in ${mod_deps[$n]}; do
		modname "$d"
		visit "$REPLY"
	done
	order+=("$n")
}
for m in "${want_modules[@]}"; do
	visit "$m"
done
log "modules, in load order: ${order[*]}"

# -- 4. the initramfs tree ----------------------------------------------------

root="$work/root"
mkdir -p "$root"/{bin,dev,etc/acpi/PWRF,etc/udhcpc,lib/modules,mnt,proc,root,run,sys,tmp,usr,var/log,www}
ln -s bin "$root/sbin"
ln -s ../bin "$root/usr/bin"
ln -s ../bin "$root/usr/sbin"
ln -s ../run "$root/var/run"

log "adding busybox $busybox_version and its applets"
cp "$busybox" "$root/bin/busybox"
# Links to the host's path of busybox (/bin or /usr/bin), which the guest
# has too: /usr/bin is a link to /bin there.
"$busybox" --install -s "$root/bin"
case "$(readlink "$root/bin/sh")" in
/bin/busybox | /usr/bin/busybox) ;;
*) die "busybox --install made unexpected links: $(readlink "$root/bin/sh")" ;;
esac
# The applets /init and the tests rely on (ping and wget between guests, ls
# for hotplugged disks, stty for the console protocol).
for a in sh mount insmod ip udhcpc httpd acpid setsid cttyhack poweroff \
	wget ping ls stty cat grep sleep dmesg hostname; do
	[ -e "$root/bin/$a" ] || die "busybox $busybox_version has no $a applet"
done

for n in "${order[@]}"; do
	src="$moddir/${mod_path[$n]}"
	dst="$root/lib/modules/$n.ko"
	case "$src" in
	*.ko) cp "$src" "$dst" ;;
	*.ko.xz)
		command -v xz >/dev/null || ensure_pkgs xz-utils
		xz -dc "$src" >"$dst"
		;;
	*.ko.zst)
		command -v zstd >/dev/null || ensure_pkgs zstd
		zstd -dcq "$src" >"$dst"
		;;
	*.ko.gz) gzip -dc "$src" >"$dst" ;;
	*) die "unknown module format: $src" ;;
	esac
done
printf '%s\n' "${order[@]}" >"$root/etc/modules"

log "writing /init and the guest's configuration"
cat >"$root/init" <<'EOF'
#!/bin/sh
# PID 1 of corral's test guest (generated by tests/guest/build-guest.sh).
export PATH=/bin HOME=/root
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
exec </dev/console >/dev/console 2>&1
mkdir -p /dev/pts /dev/shm
mount -t devpts -o gid=5,mode=620,ptmxmode=666 devpts /dev/pts
mount -t tmpfs -o mode=0755 tmpfs /run
mount -t tmpfs -o mode=1777 tmpfs /tmp

cmdline=" $(cat /proc/cmdline) "
has() { case "$cmdline" in *" $1 "*) return 0 ;; esac; return 1; }
# arg NAME: the value of NAME=VALUE on the command line (the last one) in
# REPLY; false when there is none or it is empty.
arg() {
	REPLY=
	set -f
	for w in $cmdline; do
		case "$w" in "$1="*) REPLY=${w#*=} ;; esac
	done
	set +f
	[ -n "$REPLY" ]
}
# How the guest was started: corral.boot=cdrom comes from the ISO's boot
# loader; a -kernel boot has no corral.boot.
boot=kernel
! arg corral.boot || boot=$REPLY
# Keep the console for the test protocol: kernel messages go to dmesg only.
if has corral.debug=1; then
	set -x
else
	dmesg -n 1
fi

hostname corral-guest
while read -r m; do
	insmod "/lib/modules/$m.ko" || echo "corral-guest: insmod $m failed"
done </etc/modules
ip link set lo up

# Block devices, hotplugged ones too, appear as /dev/vdX by devtmpfs.

# Network: eth0 if there is one (wait a little when a network controller is
# on the PCI bus but its interface is not registered yet), by DHCP or, with
# corral.ip=ADDR/PREFIX (and corral.gw=ADDR), statically.  Further NICs
# (eth1, ...) are left down.
addr=none
i=0
while [ ! -e /sys/class/net/eth0 ] && [ $i -lt 50 ] &&
	grep -qs '^0x0200' /sys/bus/pci/devices/*/class; do
	sleep 0.1
	i=$((i + 1))
done
if [ -e /sys/class/net/eth0 ] && arg corral.ip; then
	static=$REPLY
	case "$static" in */*) ;; *) static=$static/24 ;; esac
	ip link set eth0 up
	if ip addr add "$static" dev eth0; then
		addr=${static%/*}
		echo "$addr" >/run/corral-ip
		if arg corral.gw && ! ip route add default via "$REPLY" dev eth0; then
			echo "corral-guest: corral.gw=$REPLY: cannot add the default route"
		fi
	else
		echo "corral-guest: corral.ip=$static: cannot configure eth0"
	fi
elif [ -e /sys/class/net/eth0 ]; then
	ip link set eth0 up
	if udhcpc -i eth0 -s /etc/udhcpc/default.script -q -n -t 10 -T 1 \
		>/run/udhcpc.log 2>&1 && [ -s /run/corral-ip ]; then
		addr=$(cat /run/corral-ip)
	else
		echo "corral-guest: DHCP on eth0 failed"
	fi
fi
httpd -p 80 -h /www

# ACPI power button (QMP system_powerdown) -> /etc/acpi/PWRF/00000080.
acpid -c /etc/acpi -l /run/acpid.log -p /run/acpid.pid

echo "corral-guest: ready ip=$addr boot=$boot"

if has corral.count=1; then
	(
		n=1
		while :; do
			echo "count $n"
			n=$((n + 1))
			sleep 1
		done
	) &
fi

# An interactive shell on the console with job control, respawned when it
# exits.
while :; do
	setsid cttyhack sh -l
	echo "corral-guest: shell exited, starting a new one"
	sleep 0.2
done
EOF

cat >"$root/etc/udhcpc/default.script" <<'EOF'
#!/bin/sh
# udhcpc event script: configure the interface, route and resolver with ip.
# udhcpc passes interface, ip, mask, broadcast, router, dns, domain.
# shellcheck disable=SC2154
case "$1" in
deconfig)
	ip -4 addr flush dev "$interface"
	ip link set "$interface" up
	rm -f /run/corral-ip
	;;
bound | renew)
	ip -4 addr flush dev "$interface"
	ip addr add "$ip/${mask:-24}" ${broadcast:+broadcast "$broadcast"} dev "$interface"
	while ip route del default dev "$interface" 2>/dev/null; do :; done
	for r in $router; do
		ip route add default via "$r" dev "$interface"
		break
	done
	: >/etc/resolv.conf
	[ -z "$domain" ] || echo "search $domain" >>/etc/resolv.conf
	for d in $dns; do
		echo "nameserver $d" >>/etc/resolv.conf
	done
	echo "$ip" >/run/corral-ip
	;;
esac
exit 0
EOF

cat >"$root/etc/acpi/PWRF/00000080" <<'EOF'
#!/bin/sh
echo "corral-guest: power button, powering off" >/dev/console
sync
poweroff -f
EOF

cat >"$root/etc/profile" <<'EOF'
export PATH=/bin HOME=/root
PS1='corral-guest# '
cd /root || :
EOF
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$root/etc/passwd"
printf 'root:x:0:\ntty:x:5:\n' >"$root/etc/group"
printf 'corral-guest\n' >"$root/etc/hostname"
printf 'corral-guest ok\n' >"$root/www/index.html"

chmod 0755 "$root/init" "$root/etc/udhcpc/default.script" "$root/etc/acpi/PWRF/00000080"
chmod 0700 "$root/root"
chmod 1777 "$root/tmp"

# -- 5. the artefacts ---------------------------------------------------------

# Under TCG most of a boot goes into the bzImage decompressing itself (XZ).
# When the kernel has a PVH entry point, QEMU boots the uncompressed ELF
# image directly (-kernel vmlinux): about three times faster to the ready line.
extract_vmlinux() { # bzImage ELF-output: find the compressed payload
	local img=$1 dst=$2 i magic tool off
	local magics=($'\xfd7zXZ' $'\x28\xb5\x2f\xfd' $'\x1f\x8b\x08')
	local tools=("xz -dcq --single-stream" "zstd -dcq" "gzip -dcq")
	for i in 0 1 2; do
		magic=${magics[i]}
		tool=${tools[i]}
		command -v "${tool%% *}" >/dev/null || continue
		for off in $(LC_ALL=C grep -abo -F -- "$magic" "$img" 2>/dev/null | cut -d: -f1 | head -n 5); do
			tail -c +$((off + 1)) "$img" | $tool >"$dst" 2>/dev/null || true
			if [ "$(head -c 4 "$dst" | od -An -tx1 | tr -d ' ')" = 7f454c46 ]; then
				return 0
			fi
		done
	done
	rm -f "$dst"
	return 1
}
pvh=""
if grep -qx 'CONFIG_PVH=y' "$work/k/boot/config-$krel" 2>/dev/null; then
	log "extracting the uncompressed kernel for a PVH boot (vmlinux)"
	if extract_vmlinux "$vmlinuz" "$work/vmlinux"; then
		pvh="$out/vmlinux"
	else
		log "warning: could not extract vmlinux from $(basename "$vmlinuz"); no PVH kernel"
	fi
fi

log "packing initrd.img (newc cpio, gzip)"
find "$root" -exec touch -h -d @0 {} +
(cd "$root" && find . -mindepth 1 -printf '%P\n' | LC_ALL=C sort |
	"$busybox" cpio -o -H newc -R 0:0 2>/dev/null) | gzip -9 -n >"$work/initrd.img"
[ -s "$work/initrd.img" ] || die "empty initramfs"
cp "$vmlinuz" "$work/vmlinuz"

# The ISO: ISOLINUX as the El Torito no-emulation boot image (BIOS), booting
# the same kernel and initramfs at once with corral.boot=cdrom added.  The
# isohybrid MBR lets the same image boot as a disk too.  Fixed timestamps
# (SOURCE_DATE_EPOCH) make it the same bytes for the same inputs.
log "writing guest.iso (ISOLINUX, xorriso)"
iso="$work/iso"
mkdir -p "$iso/isolinux" "$iso/boot"
cp "$isolinux_bin" "$ldlinux" "$iso/isolinux/"
cp "$work/vmlinuz" "$iso/boot/vmlinuz"
cp "$work/initrd.img" "$iso/boot/initrd.img"
# SERIAL first: the loader's few lines go to the serial console too.  No
# prompt, no timeout, Shift/Alt ignored: it boots the default label at once.
cat >"$iso/isolinux/isolinux.cfg" <<CFG
SERIAL 0 115200
DEFAULT corral
PROMPT 0
TIMEOUT 0
NOESCAPE 1
LABEL corral
  KERNEL /boot/vmlinuz
  INITRD /boot/initrd.img
  APPEND $iso_cmdline
CFG
find "$iso" -exec touch -h -d @0 {} +
SOURCE_DATE_EPOCH=0 xorriso -as mkisofs -quiet -o "$work/guest.iso" \
	-V CORRAL_GUEST -J -r \
	-isohybrid-mbr "$isohybrid_mbr" \
	-b isolinux/isolinux.bin -c isolinux/boot.cat \
	-no-emul-boot -boot-load-size 4 -boot-info-table \
	"$iso" >"$work/xorriso.log" 2>&1 || {
	cat "$work/xorriso.log" >&2
	die "xorriso failed"
}
[ -s "$work/guest.iso" ] || die "empty guest.iso"

mv "$work/vmlinuz" "$out/vmlinuz"
mv "$work/initrd.img" "$out/initrd.img"
mv "$work/guest.iso" "$out/guest.iso"
if [ -n "$pvh" ]; then
	mv "$work/vmlinux" "$pvh"
else
	rm -f "$out/vmlinux"
fi
echo "${pvh:+yes}" >"$out/.pvh"
printf '%s\n' "${order[@]}" >"$out/.modules"
echo "$krel" >"$out/.krelease"
echo "$kpkg $kver" >"$out/.kernel"
write_json
printf '%s\n%s\n' "$key" "$quick_key" >"$out/.stamp"
log "done: $out/vmlinuz ($(stat -c %s "$out/vmlinuz") bytes)," \
	"$out/initrd.img ($(stat -c %s "$out/initrd.img") bytes)${pvh:+, $pvh ($(stat -c %s "$pvh") bytes)}," \
	"$out/guest.iso ($(stat -c %s "$out/guest.iso") bytes), $out/guest.json"
