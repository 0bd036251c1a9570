#!/usr/bin/env bash
# Configures and builds kmsfs. Usage: scripts/build.sh [BUILD_DIR] [extra cmake args...]
# Warnings are errors here, as in CI.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-build}
shift || true
cmake -S . -B "$dir" -G Ninja -DKMSFS_WERROR=ON "$@" >/dev/null
ninja -C "$dir" -j"$(nproc)"
