#!/usr/bin/env bash
# Build the Debian packages (dpkg-buildpackage -us -uc -b) from a copy of
# this tree, check them with lintian (no errors), unpack each into a clean
# directory (dpkg -x) and check the files that must be there.  Bounded in
# time (DEB_TIMEOUT seconds, 900 by default).
#   scripts/deb.sh [OUT_DIR]    (the .debs are left in OUT_DIR, else removed)
set -euo pipefail
cd "$(dirname "$0")/.."

limit=${DEB_TIMEOUT:-900}
work=$(mktemp -d /tmp/corral-deb-XXXXXX)
trap 'rm -rf "$work"' EXIT

# The tracked and new files, not the build directories: dpkg-buildpackage
# writes beside the source tree, so it builds in a copy.
mkdir "$work/corral"
git ls-files -z --cached --others --exclude-standard | xargs -0 -I{} sh -c \
	'test -e "{}" && echo "{}"' | tar -cf - -T - | tar -xf - -C "$work/corral"

# The package's version is the project's.
want=$(sed -n "s/^  version : '\\(.*\\)',$/\\1/p" meson.build)
have=$(dpkg-parsechangelog -S Version)
if [ "$want" != "$have" ]; then
	echo "deb: debian/changelog says $have, meson.build $want: add a changelog entry"
	exit 1
fi

echo "deb: dpkg-buildpackage -us -uc -b (at most ${limit} s)"
if ! (cd "$work/corral" && timeout "$limit" dpkg-buildpackage -us -uc -b >"$work/build.log" 2>&1); then
	tail -60 "$work/build.log"
	echo "deb: dpkg-buildpackage failed (log above)"
	exit 1
fi
ls "$work"/*.deb

fail=0
if command -v lintian >/dev/null; then
	# Errors fail the build; warnings are shown.
	if ! timeout "$limit" lintian --fail-on error --suppress-tags bad-distribution-in-changes-file \
		"$work"/*.changes; then
		echo "deb: lintian found errors"
		fail=1
	fi
else
	echo "deb: lintian is not installed (scripts/deps.sh installs it)"
	fail=1
fi

# What each package must hold, unpacked into a clean tree.
check() { # package, paths...
	local pkg=$1 deb root
	shift
	deb=$(ls "$work/${pkg}"_*.deb)
	root="$work/root-$pkg"
	mkdir "$root"
	dpkg -x "$deb" "$root"
	for p in "$@"; do
		if [ ! -e "$root/$p" ]; then
			echo "deb: $pkg lacks /$p"
			fail=1
		fi
	done
	echo "deb: $pkg: $(cd "$root" && find . -type f -o -type l | wc -l) files"
}
check corrald usr/bin/corrald etc/corral/corrald.conf \
	lib/systemd/system/corrald.service lib/systemd/system/corrald.socket \
	lib/systemd/system/corrald-ro.socket usr/lib/systemd/user/corrald.service \
	usr/lib/systemd/user/corrald.socket usr/lib/systemd/user/corrald-ro.socket \
	usr/share/man/man8/corrald.8.gz usr/share/man/man5/corral.conf.5.gz
check corral usr/bin/corral usr/share/bash-completion/completions/corral \
	usr/share/man/man1/corral.1.gz usr/share/man/man1/corral-bench.1.gz
check python3-corral usr/lib/python3/dist-packages/corral/__init__.py \
	usr/lib/python3/dist-packages/corral/aio.py usr/lib/python3/dist-packages/corral/errors.py

# The unpacked binaries run, and the unpacked Python package imports.
"$work/root-corrald/usr/bin/corrald" --version
"$work/root-corral/usr/bin/corral" --version
PYTHONPATH="$work/root-python3-corral/usr/lib/python3/dist-packages" /usr/bin/python3 -c \
	'import corral, corral.aio; print("python3-corral:", corral.__version__, corral.__file__)'
# The maintainer script creates the QEMU user the daemon's default expects.
dpkg-deb -e "$work"/corrald_*.deb "$work/ctl"
grep -q "corral-qemu" "$work/ctl/postinst" || { echo "deb: postinst makes no corral-qemu"; fail=1; }

if [ $# -ge 1 ]; then
	mkdir -p "$1"
	cp "$work"/*.deb "$1"/
	echo "deb: packages in $1"
fi
[ "$fail" -eq 0 ] && echo "deb: ok"
exit "$fail"
