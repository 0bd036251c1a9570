#!/usr/bin/env bash
# Installs dependencies, builds, and runs every test CI runs:
#   1. the whole suite on the default configuration (warnings as errors),
#   2. a slice of the option matrix (cipher x block size) over the CLI tests,
#   3. unit and CLI tests under ASan+UBSan.
# scripts/test.sh --full-matrix runs the full option matrix in step 2.
set -euo pipefail
cd "$(dirname "$0")/.."
full=0
[ "${1:-}" = "--full-matrix" ] && full=1

bash scripts/install-deps.sh
jobs=$(nproc)

echo "== build (default configuration, -Werror)"
bash scripts/build.sh build
echo "== all tests, default configuration"
ctest --test-dir build --output-on-failure -j"$jobs" --timeout 600

if [ $full = 1 ]; then
  matrix=("--cipher aes-256-gcm --block-size 1024" "--cipher aes-256-gcm --block-size 65536"
          "--cipher xchacha20-poly1305 --block-size 1024" "--cipher xchacha20-poly1305 --block-size 4096"
          "--cipher xchacha20-poly1305 --block-size 65536")
else
  matrix=("--cipher xchacha20-poly1305 --block-size 16384")
fi
for m in "${matrix[@]}"; do
  echo "== option matrix: $m"
  KMSFS_TEST_INIT_ARGS="$m" ctest --test-dir build --output-on-failure -j"$jobs" -L cli --timeout 600
done

echo "== ASan+UBSan: unit and CLI tests"
bash scripts/build.sh build-asan -DKMSFS_SANITIZE=ON -DKMSFS_BUILD_BENCH=OFF -DCMAKE_BUILD_TYPE=Debug
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ctest --test-dir build-asan --output-on-failure -j"$jobs" -L 'unit|cli' --timeout 900
