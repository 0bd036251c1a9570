#!/usr/bin/env bash
# Key rotation: how fast a vault's files move to another key, what a running rotation costs
# the applications using the mount, and what a key change costs a peer that cannot rotate.
#
#  throughput   online `kmsfs rotate MNT --to KEY` over a tree of N files (/usr/include,
#               like kms_latency.sh) until the run is done, unthrottled (--rate 0 --kms-rate 0)
#               and at the default limits (1000 files/s, 100 KMS calls/s), on the local
#               keyring, on AWS KMS in per-file and in intermediate-key mode (tools/kms-local
#               adding a fixed latency to every request), and offline (rotate --offline) on
#               the keyring. The peer's key change: no open-source peer rotates in place
#               (gocryptfs, securefs, CryFS need a new filesystem and a full copy), so the
#               same tree is copied (`cp -a`) from one gocryptfs into a fresh one (init,
#               mount, copy, sync). Files/s, MB/s, KMS requests (kms-local's own count), and
#               each time over the gocryptfs copy's (< 1: kmsfs takes less time).
#  foreground   fio 4 KiB random read/write (psync, 1 job, fixed time, caches dropped first)
#               and an untar of the tree + sync: (i) on an idle kmsfs mount, (ii) on the same
#               mount while a rotation of a separate pre-populated tree in the same vault
#               runs at the default rate (restarted whenever it finishes, so it runs for the
#               whole workload), (iii) on gocryptfs. Ratios (ii)/(i) and kmsfs/gocryptfs.
#
# --mode reencrypt measures the same with `kmsfs rotate --reencrypt` (fresh data keys, every
# block re-sealed) over the tree plus a few big files, in MB/s; --mode all does both. A kmsfs
# without --reencrypt (`kmsfs rotate --help`) skips that mode with a note.
#
# Usage: bench/rotation.sh [--reps N] [--files N] [--mode rewrap|reencrypt|all]
#                          [--parts "throughput foreground"] [--configs "C ..."]
#                          [--latency-ms MS] [--fio-seconds S] [--fio-mb N]
#                          [--big-files N] [--big-mb N] [--out FILE] [--workdir DIR] [--keep]
#   --reps N         interleaved repetitions (default 3); tables show medians
#   --files N        files in the tree (default 10000)
#   --configs        throughput configurations (default all): keyring keyring-offline kms
#                    kms-intermediate gocryptfs-copy
#   --latency-ms MS  kms-local latency per request (default 10)
#   --fio-seconds S  fio run time per measurement (default 30); --fio-mb N its file (default 256)
#   --big-files N, --big-mb N   the big files added to the tree for --mode reencrypt (default 4 x 256)
#   --out FILE       also write the markdown tables (with the machine facts) to FILE
#   --workdir DIR    parent of the work directory (default /var/tmp; not tmpfs)
#   --keep           keep the work directory afterwards
#   KMSFS=/path/to/kmsfs KMS_LOCAL=/path/to/kms-local (default: build-bench/ in the repo)
#
# Run durations: from `rotate --to` until `rotate --status` first shows the run ended, polled
# every 0.1 s (what `rotate --wait` waits for, without its 0.5 s polling step). A run makes
# at least two passes over the tree (the last finds nothing left to move), and a throttled
# run is throttled in both. Caches are dropped before every timed phase.
#
# Needs root (mounts, drop_caches). Installs gocryptfs, fio, jq, awscli, curl from Debian
# if missing. Every mount is torn down, the background rotation and kms-local stopped, on
# exit (also on Ctrl-C).
set -euo pipefail
export LC_ALL=C
script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$script_dir/.." && pwd)

reps=3
files=10000
mode=rewrap
parts=(throughput foreground)
configs=(keyring keyring-offline kms kms-intermediate gocryptfs-copy)
latency=10
fio_s=30
fio_mb=256
big_files=4
big_mb=256
out=''
workparent=/var/tmp
keep=0
KMSFS=${KMSFS:-$repo/build-bench/src/cli/kmsfs}
KMS_LOCAL=${KMS_LOCAL:-$repo/build-bench/tools/kms-local/kms-local}
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; }
while (($#)); do
  case $1 in
    --reps) reps=$2; shift 2 ;;
    --files) files=$2; shift 2 ;;
    --mode) mode=$2; shift 2 ;;
    --parts) read -r -a parts <<< "$2"; shift 2 ;;
    --configs) read -r -a configs <<< "$2"; shift 2 ;;
    --latency-ms) latency=$2; shift 2 ;;
    --fio-seconds) fio_s=$2; shift 2 ;;
    --fio-mb) fio_mb=$2; shift 2 ;;
    --big-files) big_files=$2; shift 2 ;;
    --big-mb) big_mb=$2; shift 2 ;;
    --out) out=$(realpath -m "$2"); shift 2 ;;
    --workdir) workparent=$2; shift 2 ;;
    --keep) keep=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "unknown option: $1" >&2; usage >&2; exit 2 ;;
  esac
done
for v in reps files latency fio_s fio_mb big_files big_mb; do
  [[ ${!v} =~ ^[0-9]+$ ]] || { echo "error: --${v//_/-} must be a non-negative integer" >&2; exit 2; }
done
((reps > 0 && files > 0)) || { echo "error: --reps and --files must be positive" >&2; exit 2; }
case $mode in rewrap) kinds=(rewrap) ;; reencrypt) kinds=(reencrypt) ;; all) kinds=(rewrap reencrypt) ;;
  *) echo "error: --mode is rewrap, reencrypt or all" >&2; exit 2 ;; esac
[[ $(id -u) == 0 ]] || { echo "error: run as root (mounts, drop_caches)" >&2; exit 2; }
[[ -x $KMSFS ]] || { echo "error: $KMSFS not found (ninja -C build-bench kmsfs kms-local, or set KMSFS=)" >&2; exit 2; }
KMSFS=$(realpath "$KMSFS")
has() { local x=$1; shift; local y; for y; do [[ $x == "$y" ]] && return 0; done; return 1; }

exec 3>&2
log() { printf '%s\n' "$*" >&3; }
die() { log "error: $*"; exit 1; }

need=()
for p in gocryptfs fio jq curl; do command -v "$p" >/dev/null || need+=("$p"); done
has kms "${configs[@]}" || has kms-intermediate "${configs[@]}" && { [[ -x /usr/bin/aws ]] || need+=(awscli); }
if ((${#need[@]})); then
  log "installing: ${need[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null ||
    { apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null; }
fi
py=/usr/bin/python3

notes=()
if has reencrypt "${kinds[@]}" && ! "$KMSFS" rotate --help 2>&1 | grep -q reencrypt; then
  notes+=("--mode reencrypt skipped: this kmsfs ($KMSFS) has no \`rotate --reencrypt\`.")
  log "note: ${notes[-1]}"
  kinds=("${kinds[@]/reencrypt/}")
  read -r -a kinds <<< "${kinds[*]}"
fi
((${#kinds[@]})) || { printf '%s\n' "${notes[@]}"; [[ -n $out ]] && printf '%s\n' "${notes[@]}" > "$out"; exit 0; }

# ---- work directory and cleanup ---------------------------------------------------------
[[ $(df --output=fstype "$workparent" | tail -1 | tr -d ' ') == tmpfs ]] && die "$workparent is tmpfs; pass --workdir on a disk"
work=$(mktemp -d "$(realpath "$workparent")/kmsfs-rotation.XXXXXX")
mkdir -p "$work/src" "$work/logs"
server_pid=''
driver_pid=''
cleaned=0
cleanup() {
  ((cleaned)) && return 0
  cleaned=1
  trap '' INT TERM
  if [[ -n $driver_pid ]]; then kill "$driver_pid" 2>/dev/null || true; wait "$driver_pid" 2>/dev/null || true; fi
  rm -f "$work/driver.on"
  local m
  for m in $(findmnt -rn -o TARGET | grep -F "$work/" | sort -r); do
    umount "$m" 2>/dev/null || { sleep 1; umount "$m" 2>/dev/null; } || umount -l "$m" 2>/dev/null || true
  done
  if [[ -n $server_pid ]]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  if [[ -n $(findmnt -rn -o TARGET | grep -F "$work/") ]]; then log "warning: mounts remain under $work; not deleting it"
  elif ((keep)); then log "work directory kept: $work"
  else rm -rf "$work"; fi
}
trap 'cleanup' EXIT
trap 'log "interrupted"; exit 130' INT
trap 'log "terminated"; exit 143' TERM

# ---- inputs -----------------------------------------------------------------------------
(cd / && find usr/include usr/share/perl* -type f 2>/dev/null | head -n "$files") > "$work/src/list" || true  # head closes the pipe early
tar cf "$work/src/tree.tar" -C / -T "$work/src/list"
nfiles=$(wc -l < "$work/src/list")
tree_mb=$(du -sm "$work/src/tree.tar" | cut -f1)
if has reencrypt "${kinds[@]}"; then
  mkdir -p "$work/src/big"
  for i in $(seq "$big_files"); do head -c $((big_mb << 20)) /dev/urandom > "$work/src/big/big$i.bin"; done
fi
"$KMSFS" keyring create "$work/keyring" --no-passphrase --key main >/dev/null

uses_kms=0
for c in "${configs[@]}"; do [[ $c == kms* ]] && uses_kms=1; done
has throughput "${parts[@]}" || uses_kms=0
if ((uses_kms)); then
  [[ -x $KMS_LOCAL ]] || die "$KMS_LOCAL not found (build kms-local, or set KMS_LOCAL=)"
  printf '[bench]\naws_access_key_id = AKIDBENCH\naws_secret_access_key = bench-secret-0123456789\n' > "$work/creds"
  "$KMS_LOCAL" --credentials-file "$work/creds" --port 0 --port-file "$work/port" --latency-ms "$latency" --quiet \
    > "$work/logs/kms-local.log" 2>&1 &
  server_pid=$!
  for _ in $(seq 100); do [[ -s $work/port ]] && break; sleep 0.05; done
  [[ -s $work/port ]] || die "kms-local did not start: $(cat "$work/logs/kms-local.log")"
  port=$(cat "$work/port")
  export AWS_ENDPOINT_URL_KMS=http://127.0.0.1:$port AWS_ENDPOINT_URL_STS=http://127.0.0.1:$port AWS_REGION=us-east-1 \
    AWS_DEFAULT_REGION=us-east-1 AWS_ACCESS_KEY_ID=AKIDBENCH AWS_SECRET_ACCESS_KEY=bench-secret-0123456789 \
    AWS_EC2_METADATA_DISABLED=true AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null
  aws=/usr/bin/aws; [[ -x $aws ]] || aws=aws
  for k in a b; do  # made with Debian's AWS CLI (an independent client)
    id=$("$aws" kms create-key --description "kmsfs-bench-$k" --endpoint-url "http://127.0.0.1:$port" --output json |
      jq -r .KeyMetadata.KeyId)
    "$aws" kms create-alias --alias-name "alias/bench-$k" --target-key-id "$id" --endpoint-url "http://127.0.0.1:$port"
  done
fi
kms_requests() { if [[ -n $server_pid ]]; then curl -sf "http://127.0.0.1:$port/__admin/stats" | jq .total; else echo 0; fi; }
kms_quiet() { local a=-1 b; b=$(kms_requests); until [[ $a == "$b" ]]; do a=$b; sleep 1; b=$(kms_requests); done; }
kms_reset() { [[ -z $server_pid ]] || curl -sf -X DELETE "http://127.0.0.1:$port/__admin/stats" >/dev/null; }

results=$work/results.tsv
: > "$results"
record() { printf '%s\n' "$(IFS=$'\t'; echo "$*")" >> "$results"; }  # table row rep metric value
drop() { sync; echo 3 > /proc/sys/vm/drop_caches; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.3f", b - a }'; }

# ---- mounts -----------------------------------------------------------------------------
kmsfs_setup() {  # dir keyring|kms init-args...: a vault at dir/b mounted at dir/m
  local d=$1 provider=$2; shift 2
  mkdir -p "$d/b" "$d/m"
  "$KMSFS" init "$d/b" "$@" >> "$work/logs/init.log"
  echo "$provider" > "$d/provider"
  kmsfs_mount "$d"
}
kmsfs_mount() {  # dir
  local args=()
  [[ $(cat "$1/provider") == keyring ]] && args=(--keyring "$work/keyring")
  "$KMSFS" mount "$1/b" "$1/m" "${args[@]}" >> "$work/logs/mount.log" 2>&1
}
# Unmounts (retrying while busy) and, for kmsfs, waits until the daemon has released
# kmsfs.lock: umount returns before the daemon exits, and a mount or an offline rotation of
# the vault in that moment is refused as "in use" (exit 8).
umount_wait() {  # mnt (its vault, if any, is ../b)
  local i lock=$1/../b/kmsfs.lock
  for ((i = 0; i < 50; i++)); do umount "$1" 2>/dev/null && break; sleep 0.2; done
  ((i < 50)) || umount -l "$1"
  [[ -e $lock ]] || return 0
  for ((i = 0; i < 300; i++)); do flock -n "$lock" true && return 0; sleep 0.1; done
  log "warning: the daemon of $1 still holds $lock"
}
gocryptfs_setup() {  # dir
  mkdir -p "$1/b" "$1/m"
  gocryptfs -init -extpass 'echo pw' -q "$1/b" >> "$work/logs/gocryptfs.log" 2>&1
  gocryptfs -extpass 'echo pw' -q "$1/b" "$1/m" >> "$work/logs/gocryptfs.log" 2>&1
}
fill() {  # mnt kind: the tree (and for reencrypt the big files), durable
  tar xf "$work/src/tree.tar" -C "$1"
  if [[ $2 == reencrypt ]]; then cp "$work"/src/big/*.bin "$1/"; fi
  sync
}

# ---- one rotation run -------------------------------------------------------------------
phase_of() { "$KMSFS" rotate "$1" --status --json 2>/dev/null | jq -r '.phase // "none"'; }
ROT_JSON='' ELAPSED=0
rotate_online() {  # mnt to args...: starts a run, waits for its end; sets ELAPSED and ROT_JSON
  local m=$1 to=$2; shift 2
  local t0; t0=$(now)
  "$KMSFS" rotate "$m" --to "$to" "$@" --json > /dev/null
  while [[ $(phase_of "$m") == running ]]; do sleep 0.1; done
  ELAPSED=$(since "$t0")
  ROT_JSON=$("$KMSFS" rotate "$m" --status --json)
}
rotate_offline() {  # backing to args...
  local b=$1 to=$2; shift 2
  local t0; t0=$(now)
  "$KMSFS" rotate --offline "$b" --to "$to" --keyring "$work/keyring" "$@" --json > "$work/logs/offline.json"
  ELAPSED=$(since "$t0")
  ROT_JSON=$(cat "$work/logs/offline.json")
}
note_run() {  # row rep [requests]
  local phase failed rotated bytes
  phase=$(jq -r .phase <<< "$ROT_JSON"); failed=$(jq -r .failed <<< "$ROT_JSON")
  rotated=$(jq -r .rotated <<< "$ROT_JSON"); bytes=$(jq -r .bytes <<< "$ROT_JSON")
  [[ $phase == "done" && $failed == 0 ]] || die "$1: run ended $phase with $failed failed: $ROT_JSON"
  record "$1" "$2" time "$ELAPSED"; record "$1" "$2" files "$rotated"; record "$1" "$2" bytes "$bytes"
  record "$1" "$2" requests "${3:-0}"
  log "rep $2 $1: $rotated files in $ELAPSED s (${3:-0} KMS requests)"
}
plain_bytes() { du -sb --apparent-size "$1" | cut -f1; }

# ---- part: throughput -------------------------------------------------------------------
throughput() {  # kind rep
  local kind=$1 r=$2 c d extra=() bytes
  [[ $kind == reencrypt ]] && extra=(--reencrypt)
  for c in "${configs[@]}"; do
    d=$work/t.$kind.$c.$r
    case $c in
      keyring)
        kmsfs_setup "$d" keyring --keyring "$work/keyring" --key main; fill "$d/m" "$kind"
        bytes=$(plain_bytes "$d/m")
        for rate in unthrottled default; do
          local lim=(); [[ $rate == unthrottled ]] && lim=(--rate 0 --kms-rate 0)
          [[ $rate == unthrottled && $kind == reencrypt ]] && lim+=(--rate-mb 0)
          "$KMSFS" keyring rotate "$work/keyring" main > /dev/null; drop
          rotate_online "$d/m" main "${extra[@]}" "${lim[@]}"; note_run "$kind|$c|$rate" "$r"
          record "$kind|$c|$rate" "$r" plain "$bytes"
        done
        umount_wait "$d/m" ;;
      keyring-offline)
        kmsfs_setup "$d" keyring --keyring "$work/keyring" --key main; fill "$d/m" "$kind"
        bytes=$(plain_bytes "$d/m"); umount_wait "$d/m"
        for rate in unthrottled default; do
          local lim=(); [[ $rate == unthrottled ]] && lim=(--rate 0)
          [[ $rate == unthrottled && $kind == reencrypt ]] && lim+=(--rate-mb 0)
          "$KMSFS" keyring rotate "$work/keyring" main > /dev/null; drop
          rotate_offline "$d/b" main "${extra[@]}" "${lim[@]}"; note_run "$kind|$c|$rate" "$r"
          record "$kind|$c|$rate" "$r" plain "$bytes"
        done ;;
      kms|kms-intermediate)
        local mode_args=(); [[ $c == kms-intermediate ]] && mode_args=(--key-mode intermediate)
        kmsfs_setup "$d" kms --kms-key alias/bench-a "${mode_args[@]}"; fill "$d/m" "$kind"
        bytes=$(plain_bytes "$d/m")
        # A fresh mount, and no KMS request in flight (the key pool refilling) when counting starts.
        umount_wait "$d/m"; kmsfs_mount "$d"; kms_quiet
        local to=alias/bench-b
        for rate in unthrottled default; do
          local lim=(); [[ $rate == unthrottled ]] && lim=(--rate 0 --kms-rate 0)
          [[ $rate == unthrottled && $kind == reencrypt ]] && lim+=(--rate-mb 0)
          drop; kms_reset
          rotate_online "$d/m" "$to" "${extra[@]}" "${lim[@]}"; note_run "$kind|$c|$rate" "$r" "$(kms_requests)"
          record "$kind|$c|$rate" "$r" plain "$bytes"
          to=alias/bench-a
        done
        umount_wait "$d/m" ;;
      gocryptfs-copy)
        gocryptfs_setup "$d/src"; fill "$d/src/m" "$kind"
        bytes=$(plain_bytes "$d/src/m"); drop
        local t0; t0=$(now)
        gocryptfs_setup "$d/dst"; cp -a "$d/src/m/." "$d/dst/m/"; sync -f "$d/dst/m"
        ELAPSED=$(since "$t0")
        local n; n=$(find "$d/dst/m" -type f | wc -l)
        record "$kind|$c|-" "$r" time "$ELAPSED"; record "$kind|$c|-" "$r" files "$n"
        record "$kind|$c|-" "$r" plain "$bytes"; record "$kind|$c|-" "$r" requests 0
        log "rep $r $kind $c: $n files copied in $ELAPSED s"
        umount_wait "$d/dst/m"; umount_wait "$d/src/m" ;;
      *) die "unknown config $c" ;;
    esac
    rm -rf "$d"
  done
}

# ---- part: foreground -------------------------------------------------------------------
fio_run() {  # mnt tag rep fs: records read and write IOPS
  local json=$work/logs/fio.$2.$3.json
  fio --name=fg --filename="$1/fio.dat" --size="${fio_mb}M" --create_only=1 > "$work/logs/fio.layout" 2>&1 ||
    die "fio could not lay out $1/fio.dat"
  drop
  fio --name=fg --filename="$1/fio.dat" --size="${fio_mb}M" --bs=4k --rw=randrw --ioengine=psync --numjobs=1 \
    --runtime="$fio_s" --time_based --output-format=json --output="$json" > "$work/logs/fio.stdout" 2>&1 ||
    die "fio on $1 failed (see $json)"
  record "fg|$4|fio-read" "$3" value "$(jq '.jobs[0].read.iops | floor' "$json")"
  record "fg|$4|fio-write" "$3" value "$(jq '.jobs[0].write.iops | floor' "$json")"
  rm -f "$1/fio.dat"
}
untar_run() {  # mnt tag rep fs
  mkdir "$1/untar.$2"
  drop
  local t0; t0=$(now)
  tar xf "$work/src/tree.tar" -C "$1/untar.$2"; sync
  record "fg|$4|untar" "$3" value "$(since "$t0")"
  [[ $(find "$1/untar.$2" -type f | wc -l) == "$nfiles" ]] || die "untar into $1 lost files"
  rm -rf "$1/untar.$2"
}
# Keeps a rotation of the vault running at the default rate until driver.on goes: a new key
# version and a new run whenever the last one is done. Counts the files it moved.
rotation_driver() {  # mnt extra-args...
  local m=$1; shift
  while [[ -e $work/driver.on ]]; do
    "$KMSFS" keyring rotate "$work/keyring" main > /dev/null
    "$KMSFS" rotate "$m" --to main "$@" --json > /dev/null || break
    echo run >> "$work/driver.runs"
    while [[ -e $work/driver.on && $(phase_of "$m") == running ]]; do sleep 0.2; done
  done
  [[ $(phase_of "$m") == running ]] && "$KMSFS" rotate "$m" --cancel > /dev/null 2>&1
  "$KMSFS" rotate "$m" --status --json 2>/dev/null | jq .rotated >> "$work/driver.moved" || true
}
foreground() {  # kind rep
  local kind=$1 r=$2
  local d=$work/fg.$kind.$r extra=()
  [[ $kind == reencrypt ]] && extra=(--reencrypt)
  gocryptfs_setup "$d/g"
  fio_run "$d/g/m" g "$r" "$kind|gocryptfs"; untar_run "$d/g/m" g "$r" "$kind|gocryptfs"
  umount_wait "$d/g/m"
  kmsfs_setup "$d/k" keyring --keyring "$work/keyring" --key main
  mkdir "$d/k/m/rot"; fill "$d/k/m/rot" "$kind"
  local order=(idle busy); ((r % 2 == 0)) && order=(busy idle)
  for state in "${order[@]}"; do
    if [[ $state == busy ]]; then
      : > "$work/driver.on"; : > "$work/driver.runs"; : > "$work/driver.moved"
      rotation_driver "$d/k/m" "${extra[@]}" > "$work/logs/driver.log" 2>&1 &
      driver_pid=$!
      for _ in $(seq 100); do [[ $(phase_of "$d/k/m") == running ]] && break; sleep 0.1; done
    fi
    fio_run "$d/k/m" "$state" "$r" "$kind|kmsfs-$state"; untar_run "$d/k/m" "$state" "$r" "$kind|kmsfs-$state"
    if [[ $state == busy ]]; then
      rm -f "$work/driver.on"; wait "$driver_pid" || true; driver_pid=''
      log "rep $r $kind: the background rotation ran $(wc -l < "$work/driver.runs") run(s) during the workload"
    fi
  done
  umount_wait "$d/k/m"
  rm -rf "$d"
}

for r in $(seq "$reps"); do
  for kind in "${kinds[@]}"; do
    has throughput "${parts[@]}" && throughput "$kind" "$r"
    has foreground "${parts[@]}" && foreground "$kind" "$r"
  done
done

# ---- tables -----------------------------------------------------------------------------
facts="- date: $(date -u '+%Y-%m-%d %H:%M:%S UTC'); $(nproc) CPUs; load at the end: $(cut -d' ' -f1-3 /proc/loadavg)
- kmsfs: $("$KMSFS" --version 2>/dev/null | head -1) ($KMSFS); $(gocryptfs -version 2>/dev/null | head -1 | cut -d';' -f1); $(fio --version)
- tree: $nfiles files ($tree_mb MB tar of /usr/include, Perl's modules)$(if has reencrypt "${kinds[@]}"; then echo "; reencrypt adds $big_files x $big_mb MiB"; fi)
- reps $reps (medians); KMS latency ${latency} ms per request (kms-local); fio ${fio_s} s on a ${fio_mb} MiB file"
table=$("$py" - "$results" <<'EOF'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    row, rep, metric, value = line.rstrip("\n").split("\t")
    rows.setdefault(row, {}).setdefault(metric, []).append(float(value))
med = {r: {m: statistics.median(v) for m, v in ms.items()} for r, ms in rows.items()}
title = {"keyring": "kmsfs, local keyring, online", "keyring-offline": "kmsfs, local keyring, offline",
         "kms": "kmsfs, AWS KMS per-file, online", "kms-intermediate": "kmsfs, AWS KMS intermediate key, online",
         "gocryptfs-copy": "gocryptfs: `cp -a` into a fresh gocryptfs"}
out = []
for kind in ("rewrap", "reencrypt"):
    tr = [r for r in med if r.startswith(kind + "|")]
    if not tr:
        continue
    peer = med.get(kind + "|gocryptfs-copy|-", {}).get("time")
    out += ["", f"**{'Re-wrap' if kind == 'rewrap' else 'Re-encryption'}: a whole-vault rotation**", "",
            "| | limits | files | time (s) | files/s | MB/s (plaintext) | KMS requests | time / gocryptfs copy |",
            "|---|---|---:|---:|---:|---:|---:|---:|"]
    for c in title:
        for rate in ("unthrottled", "default", "-"):
            m = med.get(f"{kind}|{c}|{rate}")
            if not m:
                continue
            t = m["time"]
            ratio = f"{t / peer:.2f}" if peer else "–"
            out.append(f"| {title[c]} | {rate if rate != '-' else '–'} | {m['files']:.0f} | {t:.2f} | {m['files'] / t:.0f} | "
                       f"{m['plain'] / t / 1e6:.1f} | {m['requests']:.0f} | {ratio} |")
    rows_fg = {}
    for r, m in med.items():
        parts = r.split("|")
        if parts[0] == "fg" and parts[1] == kind:
            rows_fg.setdefault(parts[3], {})[parts[2]] = m["value"]
    if rows_fg:
        out += ["", f"**Foreground work while a {'re-wrap' if kind == 'rewrap' else 're-encryption'} runs at the default rate**", "",
                "| workload | kmsfs idle | kmsfs + rotation | gocryptfs | busy / idle | kmsfs idle / gocryptfs | kmsfs busy / gocryptfs |",
                "|---|---:|---:|---:|---:|---:|---:|"]
        names = {"fio-read": "fio randrw 4k: read IOPS", "fio-write": "fio randrw 4k: write IOPS", "untar": "untar + sync (s)"}
        for w, label in names.items():
            v = rows_fg.get(w)
            if not v:
                continue
            i, b, g = v.get("kmsfs-idle"), v.get("kmsfs-busy"), v.get("gocryptfs")
            f = lambda x: "–" if x is None else (f"{x:.2f}" if w == "untar" else f"{x:.0f}")
            q = lambda a, c: "–" if a is None or not c else f"{a / c:.2f}"
            out.append(f"| {label} | {f(i)} | {f(b)} | {f(g)} | {q(b, i)} | {q(i, g)} | {q(b, g)} |")
        out += ["", "IOPS: higher is better (a ratio < 1 is a slowdown); untar seconds: lower is better (> 1 is a slowdown)."]
print("\n".join(out).lstrip("\n"))
EOF
)
report=$(printf '%s\n' "$facts" "${notes[@]/#/- }" "" "$table")
echo "$report"
[[ -n $out ]] && echo "$report" > "$out"
exit 0
