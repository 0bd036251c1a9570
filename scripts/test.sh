#!/usr/bin/env bash
# Installs dependencies, builds, and runs every test CI runs:
#   1. the whole suite on the default configuration (warnings as errors), then the .deb
#      built from that build, installed on this machine, an fstab mount through it, and
#      purged (scripts/deb-check.sh),
#   2. a slice of the option matrix (cipher x block size x name mode x key mode) over the CLI, mount smoke
#      and POSIX tests, and the mount suites again on the AWS KMS provider (tools/kms-local),
#   3. unit, CLI and mount smoke tests under ASan+UBSan,
#   4. every libFuzzer target (fuzz/) for 20 s (scripts/fuzz.sh).
# scripts/test.sh --full-matrix runs the full option matrix in step 2.
set -euo pipefail
cd "$(dirname "$0")/.."
# The mount, loop-device and namespace tests need root: a user with sudo gets it here.
if [ "$(id -u)" != 0 ]; then exec sudo --preserve-env=CI,KMSFS_TEST_INIT_ARGS bash "$0" "$@"; fi
full=0
[ "${1:-}" = "--full-matrix" ] && full=1

bash scripts/install-deps.sh
jobs=$(nproc)

# Each stage's wall time, printed as it ends and again as a table at the end (CI reports
# time per stage).
stage_name="" stage_t=$SECONDS stage_times=""
stage() {
  if [ -n "$stage_name" ]; then
    echo "== took $((SECONDS - stage_t)) s: $stage_name"
    stage_times+="$((SECONDS - stage_t)) s  $stage_name"$'\n'
  fi
  stage_name=$1 stage_t=$SECONDS
  [ -n "$1" ] && echo "== $1"
  return 0
}

stage "docs: every relative link in README.md and docs/ resolves"
python3 scripts/check-links.py

# A test killed by ctest's timeout (SIGKILL) runs no destructors: detach whatever mount it
# left behind, whatever way this script ends.
cleanup_mounts() {
  findmnt -rn -t fuse.kmsfs -o TARGET | grep -E '/kmsfs-(it|peers)-' | while read -r m; do
    echo "test.sh: detaching a mount a killed test left behind: $m" >&2
    umount -l "$m" || true
  done
}
trap 'rc=$?; cleanup_mounts || true; exit $rc' EXIT

stage "build (default configuration, -Werror)"
# -O2 without debug info: the fastest build that is still the optimisation level users run
# (GCC 12 at -O3 also raises false -Wrestrict positives inside std::string).
bash scripts/build.sh build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O2 -DNDEBUG"
stage "all tests, default configuration"
ctest --test-dir build --output-on-failure -j"$jobs" --timeout 600
stage ".deb: build, install, mount through it from fstab, purge"
bash scripts/deb-check.sh build

if [ $full = 1 ]; then
  matrix=("--cipher aes-256-gcm --block-size 1024" "--cipher aes-256-gcm --block-size 65536"
          "--cipher xchacha20-poly1305 --block-size 1024" "--cipher xchacha20-poly1305 --block-size 4096"
          "--cipher xchacha20-poly1305 --block-size 65536"
          "--plaintext-names" "--name-encoding base32" "--longname-max 72"
          "--cipher xchacha20-poly1305 --name-encoding base32 --longname-max 100 --block-size 16384"
          "--key-mode intermediate --intermediate-max-files 7")
  labels='cli|smoke|posix|heavy'
else
  matrix=("--cipher xchacha20-poly1305 --block-size 16384 --name-encoding base32 --longname-max 80"
          "--plaintext-names --key-mode intermediate --intermediate-max-files 7")
  labels='cli|smoke|posix'
fi
for m in "${matrix[@]}"; do
  stage "option matrix: $m"
  KMSFS_TEST_INIT_ARGS="$m" ctest --test-dir build --output-on-failure -j"$jobs" -L "$labels" --timeout 600
done

# The mount suites on the AWS KMS provider, against tools/kms-local over TLS.
stage "mount suites on AWS KMS (tools/kms-local, TLS)"
KMSFS_TEST_KMS=tls ctest --test-dir build --output-on-failure -j"$jobs" -L "${labels/cli|/}" --timeout 600

stage "ASan+UBSan: unit, CLI and mount smoke tests"
cmake -S . -B build-asan -G Ninja -DKMSFS_WERROR=ON -DKMSFS_SANITIZE=ON -DKMSFS_BUILD_BENCH=OFF \
  -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_FLAGS_DEBUG="-O1 -g1" >/dev/null
# Only what these labels run: the other integration binaries are not built here.
ninja -C build-asan -j"$jobs" kmsfs unit_tests cli_test mount_smoke_test kms_local_unit_test
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ctest --test-dir build-asan --output-on-failure -j"$jobs" -L 'unit|cli|smoke' --timeout 900

# Coverage-guided fuzzing of every parser of backing-directory, KMS and operator input
# (fuzz/, clang + ASan+UBSan): every target, 20 s each (issue 16's floor), as many at once
# as there are cores; longer: scripts/fuzz.sh --seconds 300.
stage "fuzz (20 s per target)"
bash scripts/fuzz.sh --seconds 20
stage ""
echo "== test.sh stages:"
printf '%s' "$stage_times"
