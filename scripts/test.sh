#!/usr/bin/env bash
# The whole test suite: install, build with warnings as errors, run every
# test; again under AddressSanitizer + UndefinedBehaviorSanitizer; and the
# concurrency stress suite under ThreadSanitizer.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/deps.sh

log=$(mktemp)
trap 'rm -f "$log"' EXIT

# meson test, its output kept for the totals at the end.
run_tests() {
	meson test "$@" 2>&1 | tee -a "$log"
	return "${PIPESTATUS[0]}"
}

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
run_tests -C build --print-errorlogs --num-processes 2

echo "== build-asan/ (ASan + UBSan) =="
setup build-asan -Db_sanitize=address,undefined -Db_lundef=false \
	-Dc_args=-fno-sanitize-recover=all
run_tests -C build-asan --print-errorlogs --num-processes 2 --timeout-multiplier 3 \
	--no-suite guest --no-suite model

echo "== build-tsan/ (ThreadSanitizer, stress suite) =="
setup build-tsan -Db_sanitize=thread -Db_lundef=false
run_tests -C build-tsan --suite stress --print-errorlogs --num-processes 1 \
	--timeout-multiplier 4

echo "== build-fuzz/ (libFuzzer, ASan + UBSan, 20 s per target) =="
# Bounded here; fuzz/README.md says how to run long campaigns.
if ./scripts/fuzz.sh 20; then
	echo "Ok:                 1" >>"$log"
else
	echo "Fail:               1" >>"$log"
	echo "fuzzing found a problem (see above)"
fi

echo "== Debian packages (dpkg-buildpackage, lintian, dpkg -x) =="
if DEB_TIMEOUT=900 ./scripts/deb.sh; then
	echo "Ok:                 1" >>"$log"
else
	echo "Fail:               1" >>"$log"
	echo "the Debian packages did not build or check (see above)"
fi

ok=$(awk '/^Ok:/ { n += $2 } END { print n + 0 }' "$log")
bad=$(awk '/^(Fail|Timeout|Unexpected Pass):/ { n += $NF } END { print n + 0 }' "$log")
echo "tests: $ok passed, $bad failed"
[ "$bad" -eq 0 ]
