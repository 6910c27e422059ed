#!/usr/bin/env bash
# The whole test suite: install, build with warnings as errors, run every
# test; again under AddressSanitizer + UndefinedBehaviorSanitizer; and the
# concurrency stress suite under ThreadSanitizer.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/deps.sh

setup() { # dir, extra meson args...
	local dir=$1
	shift
	if [ -f "$dir/build.ninja" ]; then
		meson setup --reconfigure "$dir" --werror "$@" >/dev/null
	else
		meson setup "$dir" --werror "$@" >/dev/null
	fi
	ninja -C "$dir"
}

echo "== build/ (gcc, -Werror) =="
setup build
meson test -C build --print-errorlogs --num-processes 2

echo "== build-asan/ (ASan + UBSan) =="
setup build-asan -Db_sanitize=address,undefined -Db_lundef=false \
	-Dc_args=-fno-sanitize-recover=all
meson test -C build-asan --print-errorlogs --num-processes 2 --timeout-multiplier 3

echo "== build-tsan/ (ThreadSanitizer, stress suite) =="
setup build-tsan -Db_sanitize=thread -Db_lundef=false
meson test -C build-tsan --suite stress --print-errorlogs --num-processes 1 \
	--timeout-multiplier 4

echo "all suites passed"
