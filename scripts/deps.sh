#!/usr/bin/env bash
# Install the Debian 12 packages corral needs to build, test and run.
# Safe to run again: it installs only what is missing.
set -euo pipefail

pkgs=(
	build-essential pkg-config meson ninja-build clang libclang-rt-14-dev
	liburcu-dev libck-dev libmsgpack-dev libjansson-dev libcriterion-dev libmicrohttpd-dev
	libjemalloc-dev
	qemu-system-x86 qemu-utils python3 python3-msgpack procps
	busybox-static xz-utils util-linux spin
	ovmf ipxe-qemu seabios iproute2 xorriso isolinux syslinux-common
	libsystemd-dev systemd python3-setuptools
	debhelper dh-python dpkg-dev lintian fakeroot git
	# corral-bench --target libvirt:... (bench/libvirtd-private.sh starts the daemon)
	libvirt-dev libvirt-daemon libvirt-daemon-driver-qemu
)

missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
		missing+=("$p")
done
if ((${#missing[@]})); then
	echo "deps: installing ${missing[*]}"
	sudo=""
	[ "$(id -u)" -eq 0 ] || sudo="sudo"
	$sudo apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
		"${missing[@]}"
fi

# The unprivileged user QEMU runs as when corrald runs as root (qemu_user,
# default corral-qemu); in the kvm group when there is one, for /dev/kvm.
if [ "$(id -u)" -eq 0 ] && ! getent passwd corral-qemu >/dev/null; then
	echo "deps: creating the system user corral-qemu"
	useradd --system --no-create-home --home-dir /nonexistent \
		--shell /usr/sbin/nologin --user-group corral-qemu
fi
if [ "$(id -u)" -eq 0 ] && getent group kvm >/dev/null &&
	! id -nG corral-qemu 2>/dev/null | tr ' ' '\n' | grep -qx kvm; then
	usermod -a -G kvm corral-qemu
fi
