#!/usr/bin/env bash
# The main job: install what is missing, build, start corrald (the CLI
# starts a per-user session daemon when none is listening), define a small
# real VM (QEMU's default PC machine, 128 MiB, KVM when usable, otherwise
# TCG) and start it, then show it with `corral list`.
#
# The daemon and the VM keep running afterwards; try
#   ./build/cli/corral info demo      ./build/cli/corral events
#   ./build/cli/corral destroy demo   ./build/cli/corral undefine demo
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/deps.sh
[ -f build/build.ninja ] || meson setup build >/dev/null
ninja -C build

corral=./build/cli/corral
name=${1:-demo}

# A rerun starts from scratch: stop and forget an earlier demo VM.
if "$corral" info "$name" >/dev/null 2>&1; then
	"$corral" destroy "$name" >/dev/null 2>&1 || true
	"$corral" undefine "$name"
fi
"$corral" define "$name" --memory 128M --accel auto
"$corral" start "$name" --wait
"$corral" list
