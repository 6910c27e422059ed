#!/usr/bin/env bash
# Install, build, and run the main job: for now the runtime demo, which
# defines domains, runs jobs on them (one held forever) and shows that
# queries never wait.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/deps.sh
[ -f build/build.ninja ] || meson setup build >/dev/null
ninja -C build
exec ./build/bench/corral-demo "$@"
