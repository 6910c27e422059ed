#!/usr/bin/env bash
# Fuzz every libFuzzer target in fuzz/ for a while and fail on any finding.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
#
# SECONDS_PER_TARGET defaults to 60; TARGET is a name like "qmp" (all of
# fuzz/fuzz-*.c by default).  Installs what the build needs (clang,
# libclang-rt-14-dev, meson, the libraries) when missing, configures build-fuzz/
# with clang, AddressSanitizer and UndefinedBehaviorSanitizer, builds only
# the fuzz targets, replays the seed corpora, then runs each target with a
# corpus of its own under build-fuzz/corpus/ plus the read-only seed corpus
# fuzz/corpus-NAME.  Exits non-zero, naming the target and the file that
# reproduces it, on any crash, leak, timeout, out-of-memory or sanitizer
# report.  See fuzz/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."

secs=${1:-60}
if ! [[ $secs =~ ^[0-9]+$ ]] || ((secs < 1)); then
	echo "usage: $0 [SECONDS_PER_TARGET] [TARGET...]" >&2
	exit 2
fi
shift $(($# > 0 ? 1 : 0))

build="build-fuzz"

# The longest input each target is given.  Anything not listed gets 4096.
declare -A max_len=([rpc]=4096 [qmp]=4096 [config]=8192 [def]=8192)

# ---- packages ----------------------------------------------------------------

pkgs=(
	clang libclang-rt-14-dev meson ninja-build pkg-config
	liburcu-dev libck-dev libmsgpack-dev libjansson-dev
)
missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
		missing+=("$p")
done
if ((${#missing[@]})); then
	echo "fuzz: installing ${missing[*]}"
	sudo=""
	[ "$(id -u)" -eq 0 ] || sudo="sudo"
	$sudo apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
		"${missing[@]}"
fi

# ---- build ---------------------------------------------------------------------

opts=(-Dtests=false "-Db_sanitize=address,undefined" -Db_lundef=false
	-Dc_args=-fno-sanitize-recover=all)
if [ -f "$build/build.ninja" ]; then
	if grep -A1 '^rule c_COMPILER' "$build/build.ninja" | grep -qE '^ command = (ccache )?clang '; then
		CC=clang meson setup --reconfigure "$build" "${opts[@]}" >/dev/null
	else
		# Set up with another compiler: meson cannot switch, start over.
		CC=clang meson setup --wipe "$build" "${opts[@]}" >/dev/null
	fi
else
	CC=clang meson setup "$build" "${opts[@]}" >/dev/null
fi

if (($#)); then
	targets=("$@")
else
	targets=()
	for f in fuzz/fuzz-*.c; do
		t=${f#fuzz/fuzz-}
		targets+=("${t%.c}")
	done
fi
known=$(ninja -C "$build" -t targets all)
bins=()
for t in "${targets[@]}"; do
	if ! grep -q "^fuzz/fuzz-$t:" <<<"$known"; then
		echo "fuzz: no target fuzz/fuzz-$t in $build/ (is libFuzzer missing? see" \
			"$build/meson-logs/meson-log.txt)" >&2
		exit 1
	fi
	bins+=("fuzz/fuzz-$t")
done
echo "== building ${bins[*]} in $build/"
if ! ninja -C "$build" "${bins[@]}"; then
	echo "fuzz: building the targets failed" >&2
	exit 1
fi

echo "== replaying the seed corpora (meson test --suite fuzz)"
tests=()
for t in "${targets[@]}"; do tests+=("fuzz-$t-corpus"); done
# Only the targets built: with a TARGET list, the others may not exist.
if ! meson test -C "$build" --suite fuzz --no-rebuild --print-errorlogs \
	"${tests[@]}"; then
	echo "fuzz: a seed corpus no longer passes (see above)" >&2
	exit 1
fi

# ---- fuzz ------------------------------------------------------------------------

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:symbolize=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

# The last "name: value" of a libFuzzer log, or "?".
last_stat() { # log, pattern (sed -E, one group)
	local v
	v=$(sed -nE "s/$2/\\1/p" "$1" | tail -n 1)
	echo "${v:-?}"
}

summary=()
failed=()
for t in "${targets[@]}"; do
	corpus=$build/corpus/$t
	art=$build/artifacts/$t
	log=$build/logs/fuzz-$t.log
	seeds=fuzz/corpus-$t
	len=${max_len[$t]:-4096}
	dict=()
	[ -f "fuzz/$t.dict" ] && dict=(-dict="fuzz/$t.dict")
	mkdir -p "$corpus" "$art" "$(dirname "$log")"

	echo "== fuzz-$t: ${secs}s, max_len $len, corpus $corpus/ + $seeds/ (log: $log)"
	rc=0
	# The outer timeout only guards against libFuzzer itself hanging.
	timeout -k 10 $((secs + 300)) "$build/fuzz/fuzz-$t" \
		-max_total_time="$secs" -max_len="$len" -timeout=10 -rss_limit_mb=2048 \
		-print_final_stats=1 -artifact_prefix="$art/" "${dict[@]}" \
		"$corpus" "$seeds" >"$log" 2>&1 || rc=$?

	execs=$(last_stat "$log" '^stat::number_of_executed_units: *([0-9]+).*')
	rate=$(last_stat "$log" '^stat::average_exec_per_sec: *([0-9]+).*')
	cov=$(last_stat "$log" '.* cov: ([0-9]+) .*')
	ft=$(last_stat "$log" '.* ft: ([0-9]+) .*')
	files=$(find "$corpus" -type f | wc -l)
	bytes=$(du -sb "$corpus" | cut -f1)
	line=$(printf '%-8s %6ss %12s execs %8s exec/s  cov: %-5s ft: %-6s corpus: %s files, %s bytes' \
		"$t" "$secs" "$execs" "$rate" "$cov" "$ft" "$files" "$bytes")

	# Any report counts, whatever the exit status says.
	why=$(grep -m1 -E 'ERROR: (libFuzzer|AddressSanitizer|LeakSanitizer|UndefinedBehaviorSanitizer)|runtime error:|^BUG at |^SUMMARY: ' "$log" || true)
	if ((rc != 0)) || [ -n "$why" ]; then
		crash=$(sed -nE 's/.*Test unit written to (.*)$/\1/p' "$log" | tail -n 1)
		((rc == 124 || rc == 137)) && why=${why:-"libFuzzer did not stop in time (killed)"}
		echo "FAIL fuzz-$t (exit $rc): ${why:-exit status $rc}"
		echo "  input: ${crash:-none written}"
		[ -n "$crash" ] && echo "  replay: ./$build/fuzz/fuzz-$t $crash"
		echo "  --- last lines of $log:"
		tail -n 40 "$log" | sed 's/^/  | /'
		failed+=("fuzz-$t: ${why:-exit $rc}; input ${crash:-none}")
		summary+=("$line  FAIL")
	else
		echo "$line  ok"
		summary+=("$line  ok")
	fi
done

echo "== fuzz summary"
printf '%s\n' "${summary[@]}"
if ((${#failed[@]})); then
	echo "fuzz: ${#failed[@]} target(s) failed:"
	printf '  %s\n' "${failed[@]}"
	exit 1
fi
echo "fuzz: ${#targets[@]} target(s) ran ${secs}s each without a finding"
