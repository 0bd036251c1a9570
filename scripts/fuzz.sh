#!/usr/bin/env bash
# Builds the libFuzzer targets (fuzz/: clang, ASan+UBSan, coverage-guided) in build-fuzz and
# runs each for a while, starting from seeds each target writes itself plus the corpus
# earlier runs grew (build-fuzz/corpus, never committed). Exits non-zero on any crash,
# sanitizer report, leak, timeout or oracle failure; the input is saved in
# build-fuzz/crashes/ and replays with `build-fuzz/fuzz/fuzz_NAME FILE`.
#   scripts/fuzz.sh [--seconds N] [--only NAME]... [--jobs N]
# Default: every target, 15 s each, as many at once as there are cores. A longer run:
# scripts/fuzz.sh --seconds 300 (docs/THREAT_MODEL.md, "Fuzzing").
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=15
jobs=$(nproc)
only=()
while [ $# -gt 0 ]; do
  case $1 in
    --seconds) seconds=$2; shift 2 ;;
    --only) only+=("$2"); shift 2 ;;
    --jobs) jobs=$2; shift 2 ;;
    *) echo "usage: scripts/fuzz.sh [--seconds N] [--only NAME]... [--jobs N]" >&2; exit 2 ;;
  esac
done
dir=${KMSFS_FUZZ_DIR:-build-fuzz}

targets=()
for f in fuzz/fuzz_*.cc; do
  t=$(basename "$f" .cc); t=${t#fuzz_}
  if [ ${#only[@]} -eq 0 ] || printf '%s\n' "${only[@]}" | grep -qx "$t"; then targets+=("$t"); fi
done
if [ ${#targets[@]} -eq 0 ]; then echo "fuzz.sh: no target named ${only[*]}" >&2; exit 2; fi

# ccache keyed on paths relative to the checkout, so another clone (CI's) hits the cache.
launcher=()
if command -v ccache >/dev/null; then
  export CCACHE_BASEDIR=${CCACHE_BASEDIR:-$PWD}
  launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
fi
CC=clang-14 CXX=clang++-14 cmake -S . -B "$dir" -G Ninja -DKMSFS_FUZZ=ON -DKMSFS_BUILD_BENCH=OFF \
  -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_FLAGS_DEBUG="-O1 -g1" "${launcher[@]}" >/dev/null
ninja -C "$dir" -j"$(nproc)" "${targets[@]/#/fuzz_}"

export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:allocator_may_return_null=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
mkdir -p "$dir/logs" "$dir/crashes"
run() {
  local t=$1 bin="$dir/fuzz/fuzz_$1"
  rm -rf "$dir/seeds/$t"
  mkdir -p "$dir/seeds/$t" "$dir/corpus/$t"
  KMSFS_FUZZ_SEEDS="$dir/seeds/$t" "$bin" 2>"$dir/logs/$t.seeds.log" || { cat "$dir/logs/$t.seeds.log" >&2; return 1; }
  "$bin" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=16384 -print_final_stats=1 \
    -artifact_prefix="$dir/crashes/$t-" "$dir/corpus/$t" "$dir/seeds/$t" >"$dir/logs/$t.log" 2>&1
}
summary() {
  local t=$1 log="$dir/logs/$1.log" execs cov
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1 || true)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | cut -d' ' -f2 || true)
  printf '%-15s %-6s execs %-9s cov %s\n' "$t" "$2" "${execs:-?}" "${cov:-?}"
}

echo "fuzzing ${#targets[@]} targets for ${seconds} s each, ${jobs} at a time"
failed=()
for t in "${targets[@]}"; do
  while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do wait -n || true; done
  rm -f "$dir/logs/$t.rc"
  (rc=0; run "$t" || rc=$?; echo $rc >"$dir/logs/$t.rc") &
done
wait
for t in "${targets[@]}"; do
  if [ "$(cat "$dir/logs/$t.rc" 2>/dev/null)" = 0 ]; then
    summary "$t" ok
  else
    summary "$t" FAILED
    failed+=("$t")
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  for t in "${failed[@]}"; do
    echo "---- fuzz_$t ($dir/logs/$t.log) ----" >&2
    grep -E -A40 'ERROR: |oracle failed|runtime error|deadly signal|Test unit written' "$dir/logs/$t.log" | head -60 >&2 || tail -40 "$dir/logs/$t.log" >&2
  done
  echo "fuzz.sh: ${#failed[@]} of ${#targets[@]} targets failed: ${failed[*]}" >&2
  exit 1
fi
echo "fuzz.sh: ${#targets[@]} targets ran ${seconds} s each without a crash"
