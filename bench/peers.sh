#!/usr/bin/env bash
# Peer comparison: kmsfs against a plain directory, libfuse's passthrough_ll (no crypto,
# with and without the writeback cache), gocryptfs and securefs, on the same disk.
#
# Usage: bench/peers.sh [--reps N] [--size-mb N] [--quick] [--only REGEX] [--fs REGEX]
#                       [--out FILE] [--workdir DIR] [--keep] [--skip-kmsfs]
#   KMSFS=/path/to/kmsfs   the kmsfs binary (default: build-bench/src/cli/kmsfs in the repo)
#
#   --reps N       repetitions per workload and filesystem (default 3); the table shows medians
#   --size-mb N    size of the big sequential file (default 1024)
#   --quick        smoke run: small sizes, short fio runs, a ~1.2k-file tree, 1 repetition
#   --only REGEX   workloads to run, matched against their ids (seqwrite seqread write512
#                  write4k randread1 randread4 randwrite1 randwrite4 untar lsr md5 rm create);
#                  a workload that another needs (the big file, the tree) still runs, untimed
#   --fs REGEX     filesystems to run (plain pt pt_wb gocryptfs securefs kmsfs kmsfs_pn); the
#                  default runs all but kmsfs_pn (kmsfs with --plaintext-names, which shows
#                  what name encryption costs: --fs '^(gocryptfs|kmsfs|kmsfs_pn)$')
#   --out FILE     also write the markdown table (with the machine facts) to FILE
#   --workdir DIR  parent of the work directory (default /var/tmp; must not be tmpfs)
#   --keep         keep the work directory (source files, logs, raw results) afterwards
#   --skip-kmsfs   peers only (e.g. while `kmsfs mount` does not exist yet)
#
# Needs root (drop_caches, apt-get). Installs gocryptfs securefs fio rsync libfuse3-dev
# pkg-config gcc time jq from Debian if missing, and builds passthrough_ll from the libfuse3
# examples. Every filesystem gets a fresh backing directory per repetition; repetitions are
# interleaved (rep 1 of every fs, then rep 2, ...). Every mount is torn down after its
# workloads; an EXIT/INT/TERM trap unmounts whatever is left and stops the daemons, so an
# interrupted run leaves no mount behind. Written data is verified (sha256 of the files
# read back cold, md5 of every file of the untarred tree against the same tree extracted
# to a plain directory): any mismatch marks the cell FAIL and the script exits 1.
#
# Units: MB/s = 10^6 bytes per wall-clock second (dd timings include conv=fsync);
# IOPS from fio's JSON; times in seconds (wall clock); RSS = VmHWM of the daemon, MiB.
# Ratio columns: kmsfs relative to a peer, >1 always means kmsfs is better: for MB/s and
# IOPS kmsfs/peer, for seconds and RSS peer/kmsfs.
#
# Reading the numbers: fio's cold random reads through FUSE benefit from the kernel's FUSE
# readahead (128 KiB requests warm the page cache, so the whole file is soon cached), which
# is why passthrough_ll can beat the plain directory there; fio's random writes do not
# fsync, so with a writeback cache (pt_wb, kmsfs by default) they mostly measure the page
# cache. Run it on an idle machine (load < 1.5): a busy CPU delays the FUSE daemons'
# threads and scatters the FUSE columns far more than the plain one.
set -euo pipefail
export LC_ALL=C

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$script_dir/.." && pwd)

reps=3
size_mb=1024
quick=0
only='.*'
fs_re='^(plain|pt|pt_wb|gocryptfs|securefs|kmsfs)$'
out=''
workparent=/var/tmp
keep=0
skip_kmsfs=0
KMSFS=${KMSFS:-$repo/build-bench/src/cli/kmsfs}

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; }
while (($#)); do
  case $1 in
    --reps) reps=$2; shift 2 ;;
    --size-mb) size_mb=$2; shift 2 ;;
    --quick) quick=1; shift ;;
    --only) only=$2; shift 2 ;;
    --fs) fs_re=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --workdir) workparent=$2; shift 2 ;;
    --keep) keep=1; shift ;;
    --skip-kmsfs) skip_kmsfs=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "unknown option: $1" >&2; usage >&2; exit 2 ;;
  esac
done
[[ $reps =~ ^[1-9][0-9]*$ && $size_mb =~ ^[1-9][0-9]*$ ]] || { echo "--reps/--size-mb must be positive integers" >&2; exit 2; }
[[ $(id -u) == 0 ]] || { echo "error: run as root (drop_caches, apt-get, FUSE mounts)" >&2; exit 2; }
[[ -n $out ]] && out=$(realpath -m "$out")

# ---- parameters ------------------------------------------------------------------------
small_mb=64          # bs=512 and bs=4K writes
fio_mb=256           # fio file
fio_runtime=15
create_n=10000       # empty files
tree_target=9500     # files in the untar tarball (~10k)
if ((quick)); then
  reps=1; size_mb=64; small_mb=8; fio_mb=32; fio_runtime=3; create_n=1000; tree_target=0
fi
cmd_timeout=1800     # per measured command; a hung daemon must not hang the run forever

all_fs=(plain pt pt_wb gocryptfs securefs kmsfs kmsfs_pn)
declare -A fs_title=([plain]="plain dir" [pt]="passthrough_ll" [pt_wb]="passthrough_ll (writeback)"
                     [gocryptfs]=gocryptfs [securefs]=securefs [kmsfs]=kmsfs
                     [kmsfs_pn]="kmsfs (plaintext names)")
fses=()
for f in "${all_fs[@]}"; do
  [[ $f == kmsfs* && $skip_kmsfs == 1 ]] && continue
  [[ $f =~ $fs_re ]] && fses+=("$f")
done
((${#fses[@]})) || { echo "error: --fs '$fs_re' selects no filesystem" >&2; exit 2; }
has_fs() { local f; for f in "${fses[@]}"; do [[ $f == "$1" ]] && return 0; done; return 1; }
want() { [[ $1 =~ $only ]]; }
want_any() { local id; for id; do want "$id" && return 0; done; return 1; }

exec 3>&2   # the original stderr: log() and the traps write here even while a command's
            # stderr is redirected around a function call (e.g. `timed fio ... 2>&1`)
log() { printf '%s\n' "$*" >&3; }
die() { log "error: $*"; exit 1; }

# ---- 1. dependencies -------------------------------------------------------------------
need_pkgs=()
for p in gocryptfs securefs fio rsync libfuse3-dev pkg-config gcc time jq fuse3; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || need_pkgs+=("$p")
done
if ((${#need_pkgs[@]})); then
  log "installing: ${need_pkgs[*]}"
  if ! DEBIAN_FRONTEND=noninteractive apt-get install -y "${need_pkgs[@]}" >/dev/null; then
    apt-get update >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y "${need_pkgs[@]}" >/dev/null
  fi
fi
py=$(command -v /usr/bin/python3 || command -v python3) || die "python3 not found"

if has_fs kmsfs || has_fs kmsfs_pn; then
  [[ -x $KMSFS ]] || die "kmsfs binary $KMSFS not found (build it, set KMSFS=..., or pass --skip-kmsfs)"
  KMSFS=$(realpath "$KMSFS")
  "$KMSFS" mount --help >/dev/null 2>&1 || die "$KMSFS has no 'mount' subcommand yet (rebuild, or pass --skip-kmsfs)"
fi

# ---- work directory and cleanup --------------------------------------------------------
mkdir -p "$workparent"
work_fstype=$(df --output=fstype "$workparent" | tail -1 | tr -d ' ')
[[ $work_fstype == tmpfs ]] && die "$workparent is tmpfs; pass --workdir on a disk"
work=$(mktemp -d "$(realpath "$workparent")/kmsfs-peers.XXXXXX")
mkdir -p "$work/logs" "$work/bin" "$work/src" "$work/fs"
results=$work/results.tsv
: > "$results"
declare -A daemon_pid=()   # mountpoint -> daemon pid
failures=()
cleaned=0

mounts_under_work() { findmnt -rn -o TARGET | grep -F "$work/" || true; }
pids_under_work() {   # processes whose command line names the work dir (daemons, dd, fio...), not us
  local p
  for p in $(pgrep -f -- "$work" || true); do
    [[ $p == "$$" || $p == "$BASHPID" ]] && continue
    echo "$p"
  done
}
pid_alive() { [[ -e /proc/$1 ]] && ! grep -q '^State:.*Z' "/proc/$1/status" 2>/dev/null; }

wait_pid_gone() {  # pid seconds
  local i
  for ((i = 0; i < $2 * 10; i++)); do pid_alive "$1" || return 0; sleep 0.1; done
  return 1
}

unmount_one() {  # mountpoint: fusermount3 -u, retried while busy, lazy as last resort
  local m=$1 i
  for i in 1 2 3 4 5 6 7 8 9 10; do
    mountpoint -q "$m" 2>/dev/null || findmnt -rn "$m" >/dev/null || return 0
    fusermount3 -u "$m" 2>>"$work/logs/umount.log" && return 0
    sleep 0.5
  done
  log "warning: $m stays busy; lazy unmount"
  fusermount3 -uz "$m" 2>>"$work/logs/umount.log" || umount -l "$m" 2>>"$work/logs/umount.log" || true
}

cleanup() {
  local rc=${1:-0}
  ((cleaned)) && return 0
  cleaned=1
  ((rc == 0)) || log "exiting with status $rc; unmounting and stopping daemons"
  trap '' INT TERM
  local m p
  # Workers first (a dd or fio still inside a mount keeps it busy); daemons are stopped by
  # their unmount below, so leave the recorded ones alone here.
  local -A is_daemon=()
  for p in "${daemon_pid[@]}"; do is_daemon[$p]=1; done
  for p in $(pids_under_work); do
    [[ -n ${is_daemon[$p]:-} ]] || kill -TERM "$p" 2>/dev/null || true
  done
  for m in $(mounts_under_work | sort -r); do unmount_one "$m"; done
  # Every daemon (recorded or not, e.g. one whose mount was interrupted) must exit.
  for p in "${daemon_pid[@]}" $(pids_under_work); do
    wait_pid_gone "$p" 10 && continue
    log "warning: pid $p still running after unmount; SIGTERM"
    kill -TERM "$p" 2>/dev/null || true
    wait_pid_gone "$p" 5 || kill -KILL "$p" 2>/dev/null || true
  done
  if [[ -n $(mounts_under_work) ]]; then
    log "warning: mounts remain under $work; not deleting it:"; mounts_under_work >&2
  elif ((keep)); then
    log "work directory kept: $work"
  elif ((${#failures[@]})); then
    rm -rf "$work/fs" "$work/src"
    log "failures: logs and raw results kept in $work"
  else
    rm -rf "$work"
  fi
}
trap 'cleanup $?' EXIT
trap 'log "interrupted"; cleanup 130; exit 130' INT
trap 'log "terminated"; cleanup 143; exit 143' TERM

# ---- helpers ---------------------------------------------------------------------------
drop_caches() { sync; echo 3 > /proc/sys/vm/drop_caches; }

ELAPSED=0
timed() {  # cmd...: runs it (with a timeout), sets ELAPSED (s); returns its status
  local t0=$EPOCHREALTIME rc=0
  if declare -F "$1" >/dev/null; then   # a helper function below: run it in bash -c
    timeout --foreground -k 30 "$cmd_timeout" bash -c '"$@"' _ "$@" || rc=$?
  else
    timeout --foreground -k 30 "$cmd_timeout" "$@" || rc=$?
  fi
  local t1=$EPOCHREALTIME
  ELAPSED=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.6f", b - a }')
  return "$rc"
}

cur_fs='' cur_rep=0
record() {  # workload value
  printf '%s\t%s\t%s\t%s\n' "$cur_fs" "$1" "$cur_rep" "$2" >> "$results"
}
fail() {  # workload message
  failures+=("$cur_fs rep $cur_rep $1: $2")
  log "  FAIL $1: $2"
  record "$1" FAIL
}
mbps() { awk -v b="$1" -v t="$2" 'BEGIN { printf "%.1f", b / t / 1e6 }'; }
sha() { sha256sum "$1" | cut -d' ' -f1; }

# ---- 2. tools and inputs ---------------------------------------------------------------
ex=/usr/share/doc/libfuse3-dev/examples
cp "$ex/passthrough_ll.c" "$ex/passthrough_helpers.h" "$work/bin/"
(cd "$work/bin" && gcc -O2 -Wall passthrough_ll.c $(pkg-config fuse3 --cflags --libs) -o passthrough_ll) \
  > "$work/logs/gcc.log" 2>&1 || { cat "$work/logs/gcc.log" >&2; die "building passthrough_ll failed"; }
ptll=$work/bin/passthrough_ll

log "generating inputs in $work/src"
head -c $((size_mb << 20)) /dev/urandom > "$work/src/big.bin"
head -c $((small_mb << 20)) /dev/urandom > "$work/src/small.bin"
big_sha=$(sha "$work/src/big.bin")
small_sha=$(sha "$work/src/small.bin")

tree_dirs=(usr/include)
if ((quick)); then
  tree_dirs=(usr/include/linux usr/include/x86_64-linux-gnu)
else
  n=$(find /usr/include -type f | wc -l)
  for d in usr/share/perl usr/share/perl5 usr/lib/python3; do
    ((n >= tree_target)) && break
    [[ -d /$d ]] || continue
    tree_dirs+=("$d"); n=$((n + $(find "/$d" -type f | wc -l)))
  done
fi
tar cf "$work/src/tree.tar" -C / "${tree_dirs[@]}"
mkdir "$work/src/ref"
tar xf "$work/src/tree.tar" -C "$work/src/ref"
tree_files=$(find "$work/src/ref" -type f | wc -l)
tree_mb=$(du -sm "$work/src/tree.tar" | cut -f1)
(cd "$work/src/ref" && find . -type f -print0 | xargs -0 md5sum) | sort -k2 > "$work/src/ref.md5"
rm -rf "$work/src/ref"

# ---- 3. filesystems --------------------------------------------------------------------
keyring=$work/src/kmsfs.keyring
if has_fs kmsfs || has_fs kmsfs_pn; then
  "$KMSFS" keyring create "$keyring" --no-passphrase --key main > "$work/logs/kmsfs-keyring.log" 2>&1 \
    || { cat "$work/logs/kmsfs-keyring.log" >&2; die "kmsfs keyring create failed"; }
fi

declare -A mount_cmd=(
  [plain]="(no FUSE; the backing directory itself)"
  [pt]="passthrough_ll -o source=BACKING MNT"
  [pt_wb]="passthrough_ll -o source=BACKING,writeback MNT"
  [gocryptfs]="gocryptfs -init -extpass 'echo pw' -q BACKING; gocryptfs -extpass 'echo pw' -q BACKING MNT"
  [securefs]="securefs create --pass pw BACKING; securefs mount --pass pw --background BACKING MNT"
  [kmsfs]="kmsfs init BACKING --keyring K --key main; kmsfs mount BACKING MNT --keyring K"
  [kmsfs_pn]="kmsfs init BACKING --keyring K --key main --plaintext-names; kmsfs mount BACKING MNT --keyring K"
)

find_daemon() {  # mountpoint -> pid of the process serving it (cmdline names it, holds /dev/fuse)
  local p
  for p in $(pgrep -f -- "$1" || true); do
    [[ $p == "$$" ]] && continue
    if ls -l "/proc/$p/fd" 2>/dev/null | grep -q ' -> /dev/fuse$'; then echo "$p"; return 0; fi
  done
  return 1
}

wait_mounted() {  # mountpoint
  local i
  for ((i = 0; i < 100; i++)); do
    [[ $(findmnt -rn -o FSTYPE "$1" 2>/dev/null) == fuse* ]] && stat "$1" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  return 1
}

# setup_fs FS REP: fresh backing dir + mount; sets MNT. Returns 1 on failure.
setup_fs() {
  local fs=$1 d=$work/fs/$1.r$2
  local b=$d/backing m=$d/mnt lg=$work/logs/$1.r$2.log
  mkdir -p "$b" "$m"
  MNT=$m
  case $fs in
    plain) MNT=$b; return 0 ;;
    pt) "$ptll" -o "source=$b" "$m" >>"$lg" 2>&1 3>&- || return 1 ;;
    pt_wb) "$ptll" -o "source=$b,writeback" "$m" >>"$lg" 2>&1 3>&- || return 1 ;;
    gocryptfs)
      gocryptfs -init -extpass 'echo pw' -q "$b" >>"$lg" 2>&1 3>&- || return 1
      gocryptfs -extpass 'echo pw' -q "$b" "$m" >>"$lg" 2>&1 3>&- || return 1 ;;
    securefs)
      securefs create --pass pw "$b" >>"$lg" 2>&1 3>&- || return 1
      securefs mount --pass pw --background "$b" "$m" >>"$lg" 2>&1 3>&- || return 1 ;;
    kmsfs|kmsfs_pn)
      local names=()
      [[ $fs == kmsfs_pn ]] && names=(--plaintext-names)
      "$KMSFS" init "$b" --keyring "$keyring" --key main "${names[@]}" >>"$lg" 2>&1 3>&- || return 1
      "$KMSFS" mount "$b" "$m" --keyring "$keyring" >>"$lg" 2>&1 3>&- || return 1 ;;
  esac
  wait_mounted "$m" || return 1
  local p
  p=$(find_daemon "$m") || { log "  warning: no daemon pid found for $m"; return 0; }
  daemon_pid[$m]=$p
}

teardown_fs() {  # FS REP: record peak RSS, unmount, wait for the daemon, delete the backing
  local fs=$1 d=$work/fs/$1.r$2 m=$work/fs/$1.r$2/mnt
  if [[ $fs != plain ]]; then
    local p=${daemon_pid[$m]:-}
    if [[ -n $p ]] && pid_alive "$p"; then
      local hwm
      hwm=$(awk '/^VmHWM:/ { printf "%.1f", $2 / 1024 }' "/proc/$p/status" 2>/dev/null || true)
      [[ -n $hwm ]] && record rss "$hwm"
    fi
    unmount_one "$m"
    if [[ -n $p ]]; then
      wait_pid_gone "$p" 30 || { log "  warning: daemon $p did not exit after unmount; SIGTERM"; kill -TERM "$p" 2>/dev/null || true; wait_pid_gone "$p" 5 || kill -KILL "$p" 2>/dev/null || true; }
      unset "daemon_pid[$m]"
    fi
    if [[ -n $(findmnt -rn "$m" 2>/dev/null) ]]; then die "$m is still mounted"; fi
  fi
  rm -rf "$d"
}

# ---- workloads -------------------------------------------------------------------------
verify_cold() {  # workload file expected_sha
  drop_caches
  local got
  got=$(sha "$2" 2>/dev/null) || got=unreadable
  [[ $got == "$3" ]] || fail "$1" "content mismatch on $2 (sha256 $got, want $3)"
}

dd_write() {  # src dst bs count
  dd if="$1" of="$2" bs="$3" count="$4" conv=fsync status=none
}

w_seq() {
  local M=$1 bytes=$((size_mb << 20)) ok=1
  drop_caches; cat "$work/src/big.bin" > /dev/null   # source from page cache
  if timed dd_write "$work/src/big.bin" "$M/big" 1M "$size_mb"; then
    want seqwrite && record seqwrite "$(mbps $bytes "$ELAPSED")"
  else fail seqwrite "dd exited $?"; ok=0; fi
  if ((ok)) && want seqread; then
    drop_caches
    if timed dd if="$M/big" of=/dev/null bs=1M status=none; then
      record seqread "$(mbps $bytes "$ELAPSED")"
      local got; got=$(sha "$M/big") || got=unreadable
      [[ $got == "$big_sha" ]] || fail seqread "read-back sha256 $got != source $big_sha"
    else fail seqread "dd exited $?"; fi
  elif ((ok)); then
    verify_cold seqwrite "$M/big" "$big_sha"
  fi
  rm -f "$M/big"
}

w_small() {  # bs label
  local M=$1 bs=$2 id=$3 bytes=$((small_mb << 20))
  local count=$((bytes / bs))
  drop_caches; cat "$work/src/small.bin" > /dev/null
  if timed dd_write "$work/src/small.bin" "$M/small" "$bs" "$count"; then
    record "$id" "$(mbps $bytes "$ELAPSED")"
    verify_cold "$id" "$M/small" "$small_sha"
  else fail "$id" "dd exited $?"; fi
  rm -f "$M/small"
}

w_fio() {
  local M=$1 rw njobs id json
  # pre-create the file with random content (from the big source, repeated if smaller)
  local made=0
  while ((made < fio_mb)); do
    local chunk=$((fio_mb - made < size_mb ? fio_mb - made : size_mb))
    dd if="$work/src/big.bin" of="$M/fiofile" bs=1M count=$chunk seek=$made conv=notrunc status=none || { fail fio "pre-creating fiofile failed"; return 0; }
    made=$((made + chunk))
  done
  sync "$M/fiofile" 2>/dev/null || sync
  for rw in randread randwrite; do
    for njobs in 1 4; do
      id=$rw$njobs
      want "$id" || continue
      json=$work/logs/fio.$cur_fs.r$cur_rep.$id.json
      drop_caches
      if timed fio --name="$id" --filename="$M/fiofile" --size="${fio_mb}M" --bs=4k --rw="$rw" \
          --ioengine=psync --runtime="$fio_runtime" --time_based --numjobs="$njobs" \
          --group_reporting --output-format=json --output="$json" > "$work/logs/fio.stdout" 2>&1; then
        local key=read; [[ $rw == randwrite ]] && key=write
        local iops; iops=$(jq -r ".jobs[0].$key.iops | floor" "$json" 2>/dev/null || true)
        if [[ $iops =~ ^[0-9]+$ ]] && ((iops > 0)); then record "$id" "$iops"
        else fail "$id" "no IOPS in fio output ($json)"; fi
      else fail "$id" "fio exited $? (see $json)"; fi
    done
  done
  rm -f "$M/fiofile"
}

untar_sync() { tar xf "$work/src/tree.tar" -C "$1" && sync; }
md5_tree() { (cd "$1" && find . -type f -print0 | xargs -0 md5sum) > "$2"; }
create_files() {
  "$py" - "$1" "$2" <<'EOF'
import os, sys
d, n = sys.argv[1], int(sys.argv[2])
os.mkdir(d)
for i in range(n):
    os.close(os.open(f"{d}/f{i:05d}", os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o644))
EOF
}
export -f dd_write untar_sync md5_tree create_files
export work py

w_tree() {
  local M=$1 T=$1/tree
  mkdir "$T" || { fail untar "mkdir failed"; return 0; }
  drop_caches
  if timed untar_sync "$T"; then want untar && record untar "$ELAPSED"
  else fail untar "tar exited $?"; return 0; fi
  if want lsr; then
    drop_caches
    if timed ls -lR "$T" > /dev/null; then record lsr "$ELAPSED"; else fail lsr "ls exited $?"; fi
  fi
  if want md5; then
    local list=$work/logs/md5.$cur_fs.r$cur_rep
    drop_caches
    if timed md5_tree "$T" "$list"; then
      record md5 "$ELAPSED"
      sort -k2 "$list" -o "$list"
      if ! cmp -s "$list" "$work/src/ref.md5"; then
        fail md5 "md5 list differs from the plain reference ($(diff "$list" "$work/src/ref.md5" | grep -c '^[<>]') lines; $list)"
      else rm -f "$list"; fi
    else fail md5 "md5sum pipeline exited $?"; fi
  fi
  if want rm; then
    if timed rm -rf "$T"; then record rm "$ELAPSED"; else fail rm "rm exited $?"; fi
  fi
  rm -rf "$T"
}

w_create() {
  local M=$1
  drop_caches
  if timed create_files "$M/empty" "$create_n"; then
    record create "$ELAPSED"
    local n; n=$(find "$M/empty" -type f | wc -l)
    ((n == create_n)) || fail create "found $n files, want $create_n"
  else fail create "create exited $?"; fi
  rm -rf "$M/empty"
}

run_workloads() {  # mountpoint
  local M=$1
  if want_any seqwrite seqread; then w_seq "$M"; fi
  if want write512; then w_small "$M" 512 write512; fi
  if want write4k; then w_small "$M" 4096 write4k; fi
  if want_any randread1 randread4 randwrite1 randwrite4; then w_fio "$M"; fi
  if want_any untar lsr md5 rm; then w_tree "$M"; fi
  if want create; then w_create "$M"; fi
}

# ---- machine facts ---------------------------------------------------------------------
facts=$work/facts.md
{
  echo "# kmsfs peer comparison"
  echo
  echo "- date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
  echo "- cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'); nproc $(nproc)"
  echo "- ram: $(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)"
  echo "- kernel: $(uname -srm)"
  echo "- work dir: $work on $work_fstype (\`df -T\`: $(df -T "$work" | tail -1 | tr -s ' '))"
  echo "- load at start: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "- gocryptfs: $(gocryptfs -version 2>/dev/null | head -1)"
  echo "- securefs: $(dpkg-query -W -f='${Version}' securefs) (links libfuse2 $(dpkg-query -W -f='${Version}' libfuse2 2>/dev/null || echo '?'))"
  echo "- libfuse3: $(pkg-config --modversion fuse3) (passthrough_ll built from its examples, gcc -O2)"
  echo "- fio: $(fio --version)"
  if has_fs kmsfs || has_fs kmsfs_pn; then echo "- kmsfs: $("$KMSFS" --version 2>/dev/null | head -1 || echo '?') ($KMSFS)"; fi
  echo "- parameters: reps $reps$( ((quick)) && echo ' (--quick)'), big file $size_mb MiB, small writes $small_mb MiB," \
       "fio file $fio_mb MiB / ${fio_runtime}s per run, tree $tree_files files ($tree_mb MB tar of ${tree_dirs[*]}), create $create_n files"
  echo "- mounts:"
  for f in "${fses[@]}"; do echo "  - ${fs_title[$f]}: \`${mount_cmd[$f]}\`"; done
} > "$facts"
cat "$facts"; echo
load=$(cut -d' ' -f1 /proc/loadavg)
awk -v l="$load" 'BEGIN { exit !(l > 1.5) }' && log "warning: load average $load > 1.5; results will be noisy"
log

# ---- run -------------------------------------------------------------------------------
for ((rep = 1; rep <= reps; rep++)); do
  for fs in "${fses[@]}"; do
    cur_fs=$fs cur_rep=$rep
    log "== rep $rep/$reps: ${fs_title[$fs]}"
    if ! setup_fs "$fs" "$rep"; then
      fail mount "setup/mount failed; see $work/logs/$fs.r$rep.log"
      tail -5 "$work/logs/$fs.r$rep.log" >&2 || true
      teardown_fs "$fs" "$rep"
      continue
    fi
    t0=$SECONDS
    run_workloads "$MNT"
    teardown_fs "$fs" "$rep"
    awk -F'\t' -v f="$fs" -v r="$rep" '$1 == f && $3 == r { printf "  %s=%s", $2, $4 } END { print "" }' "$results" >&2
    log "  ($((SECONDS - t0)) s)"
  done
done

# ---- 4. table --------------------------------------------------------------------------
table=$work/table.md
"$py" - "$results" "$table" "${fses[@]}" <<'EOF'
import statistics, sys
res, table, fses = sys.argv[1], sys.argv[2], sys.argv[3:]
title = {"plain": "plain dir", "pt": "passthrough_ll", "pt_wb": "passthrough_ll (wb)",
         "gocryptfs": "gocryptfs", "securefs": "securefs", "kmsfs": "kmsfs",
         "kmsfs_pn": "kmsfs (plaintext names)"}
# id, label, unit kind: "rate" (higher is better) or "cost" (lower is better)
rows = [("seqwrite", "seq write 1M blocks + fsync (MB/s)", "rate"),
        ("seqread", "seq read cold 1M blocks (MB/s)", "rate"),
        ("write512", "write bs=512 + fsync (MB/s)", "rate"),
        ("write4k", "write bs=4K + fsync (MB/s)", "rate"),
        ("randread1", "fio randread 4K QD1 1 job (IOPS)", "rate"),
        ("randread4", "fio randread 4K QD1 4 jobs (IOPS)", "rate"),
        ("randwrite1", "fio randwrite 4K QD1 1 job (IOPS)", "rate"),
        ("randwrite4", "fio randwrite 4K QD1 4 jobs (IOPS)", "rate"),
        ("untar", "untar + sync (s)", "cost"),
        ("lsr", "ls -lR cold (s)", "cost"),
        ("md5", "md5sum every file cold (s)", "cost"),
        ("rm", "rm -rf tree (s)", "cost"),
        ("create", "create empty files (s)", "cost"),
        ("rss", "daemon peak RSS (MiB)", "cost")]
vals, failed = {}, set()
for line in open(res):
    fs, wl, rep, v = line.rstrip("\n").split("\t")
    if v == "FAIL":
        failed.add((fs, wl))
    else:
        vals.setdefault((fs, wl), []).append(float(v))
def med(fs, wl):
    v = vals.get((fs, wl))
    return statistics.median(v) if v else None
def fmt(x, wl):
    if x is None: return "–"
    if wl.startswith("rand"): return f"{x:.0f}"
    if wl in ("untar", "lsr", "md5", "rm", "create"): return f"{x:.2f}"
    return f"{x:.1f}"
peers = [p for p in ("gocryptfs", "pt_wb", "kmsfs_pn") if p in fses] if "kmsfs" in fses else []
hdr = ["workload"] + [title[f] for f in fses] + [f"kmsfs vs {title[p]}" for p in peers]
out = ["| " + " | ".join(hdr) + " |", "|" + "|".join(["---"] + ["---:"] * (len(hdr) - 1)) + "|"]
for wl, label, kind in rows:
    if not any((f, wl) in vals or (f, wl) in failed for f in fses): continue
    cells = [label]
    for f in fses:
        c = fmt(med(f, wl), wl)
        if (f, wl) in failed: c = "**FAIL** " + (c if c != "–" else "")
        cells.append(c.strip())
    for p in peers:
        k, q = med("kmsfs", wl), med(p, wl)
        if k is None or q is None or k == 0 or q == 0: cells.append("–"); continue
        cells.append(f"{(k / q if kind == 'rate' else q / k):.2f}×")
    out.append("| " + " | ".join(cells) + " |")
mountfail = [f for f in fses if (f, "mount") in failed]
note = ("Medians over the repetitions. Ratio columns: >1 means kmsfs is better "
        "(MB/s and IOPS: kmsfs/peer; seconds and RSS: peer/kmsfs).")
if mountfail: note += " Mount FAILED for: " + ", ".join(mountfail) + "."
text = "\n".join(out) + "\n\n" + note + "\n"
open(table, "w").write(text)
print(text, end="")
EOF
if [[ -n $out ]]; then
  { cat "$facts"; echo; cat "$table"
    if ((${#failures[@]})); then echo; echo "FAILURES:"; printf -- '- %s\n' "${failures[@]}"; fi
  } > "$out"
  log "wrote $out"
fi
if ((${#failures[@]})); then
  log "FAILED:"; printf '  %s\n' "${failures[@]}" >&2
  exit 1
fi
