#!/usr/bin/env bash
# What a KMS round trip costs a mount: untar of a ~10,000-file tree, then (after a remount
# and dropping caches) md5sum of every file, with tools/kms-local adding a fixed latency to
# every KMS request, for kmsfs on the local keyring and on AWS KMS in per-file mode (with
# the pre-generated key pool, the default, and without it) and in intermediate-key mode,
# with gocryptfs in the same run. Prints medians, ratios to kmsfs-keyring, and the KMS
# request count of each run (kms-local's own counters).
#
# Usage: bench/kms_latency.sh [--reps N] [--latency-ms MS] [--files N] [--modes "M ..."] [--out FILE]
#   modes: keyring kms-pool kms-nopool kms-intermediate gocryptfs (default: all)
#   KMSFS=/path/to/kmsfs KMS_LOCAL=/path/to/kms-local (default: build-bench/ in the repo)
#
# Needs root (drop_caches, mounts). Every mount is torn down, the server stopped, on exit.
set -euo pipefail
export LC_ALL=C
script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$script_dir/.." && pwd)
reps=3
latency=10
files=10000
out=''
modes=(keyring kms-pool kms-nopool kms-intermediate gocryptfs)
KMSFS=${KMSFS:-$repo/build-bench/src/cli/kmsfs}
KMS_LOCAL=${KMS_LOCAL:-$repo/build-bench/tools/kms-local/kms-local}
while (($#)); do
  case $1 in
    --reps) reps=$2; shift 2 ;;
    --latency-ms) latency=$2; shift 2 ;;
    --files) files=$2; shift 2 ;;
    --modes) read -r -a modes <<< "$2"; shift 2 ;;
    --out) out=$(realpath -m "$2"); shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown option: $1" >&2; exit 2 ;;
  esac
done
[[ $(id -u) == 0 ]] || { echo "error: run as root" >&2; exit 2; }
[[ -x $KMSFS && -x $KMS_LOCAL ]] || { echo "error: build kmsfs and kms-local first (ninja -C build-bench kmsfs kms-local)" >&2; exit 2; }
command -v gocryptfs >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gocryptfs >/dev/null

work=$(mktemp -d /var/tmp/kmsfs-kmslat.XXXXXX)
server_pid=''
cleanup() {
  findmnt -rn -o TARGET | grep "^$work/" | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
  [[ -n $server_pid ]] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

# ---- the tree: regular files of /usr/include (and more of /usr/share if needed) ----------
mkdir -p "$work/src"
(cd / && find usr/include usr/share/perl* -type f 2>/dev/null | head -n "$files") > "$work/src/list" || true  # head closes the pipe early
tar cf "$work/src/tree.tar" -C / -T "$work/src/list"
nfiles=$(wc -l < "$work/src/list")
mb=$(du -sm "$work/src/tree.tar" | cut -f1)

# ---- kms-local with latency --------------------------------------------------------------
printf '[bench]\naws_access_key_id = AKIDBENCH\naws_secret_access_key = bench-secret-0123456789\n' > "$work/creds"
"$KMS_LOCAL" --credentials-file "$work/creds" --port 0 --port-file "$work/port" --latency-ms "$latency" --quiet \
  > "$work/kms-local.log" 2>&1 &
server_pid=$!
for _ in $(seq 100); do [[ -s $work/port ]] && break; sleep 0.05; done
port=$(cat "$work/port")
export AWS_ENDPOINT_URL_KMS=http://127.0.0.1:$port AWS_ENDPOINT_URL_STS=http://127.0.0.1:$port AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1 \
  AWS_ACCESS_KEY_ID=AKIDBENCH AWS_SECRET_ACCESS_KEY=bench-secret-0123456789 AWS_EC2_METADATA_DISABLED=true \
  AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null
admin() { curl -sf -X "$1" "http://127.0.0.1:$port/__admin/$2"; }
# The key, made with Debian's AWS CLI (an independent client).
key_arn=$(aws kms create-key --description kmsfs-bench --endpoint-url "http://127.0.0.1:$port" --output json |
  /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["KeyMetadata"]["Arn"])')
"$KMSFS" keyring create "$work/keyring" --no-passphrase --key main >/dev/null

results=$work/results.tsv
: > "$results"
drop() { sync; echo 3 > /proc/sys/vm/drop_caches; }
setup() {  # mode dir
  local m=$1 d=$2
  mkdir -p "$d/b" "$d/m"
  case $m in
    keyring) "$KMSFS" init "$d/b" --keyring "$work/keyring" --key main >/dev/null ;;
    kms-pool|kms-nopool) "$KMSFS" init "$d/b" --kms-key "$key_arn" >/dev/null ;;
    kms-intermediate) "$KMSFS" init "$d/b" --kms-key "$key_arn" --key-mode intermediate >/dev/null ;;
    gocryptfs) gocryptfs -init -extpass 'echo pw' -q "$d/b" ;;
  esac
}
mnt() {  # mode dir
  case $1 in
    keyring) "$KMSFS" mount "$2/b" "$2/m" --keyring "$work/keyring" >/dev/null ;;
    kms-pool|kms-intermediate) "$KMSFS" mount "$2/b" "$2/m" >/dev/null ;;
    kms-nopool) "$KMSFS" mount "$2/b" "$2/m" --key-pool 0 >/dev/null ;;
    gocryptfs) gocryptfs -extpass 'echo pw' -q "$2/b" "$2/m" 2>/dev/null ;;  # its syslog complaints
  esac
}
requests() { admin GET stats | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["total"])'; }
now() { date +%s.%N; }
for r in $(seq "$reps"); do
  for m in "${modes[@]}"; do
    d=$work/$m.$r
    setup "$m" "$d"
    mnt "$m" "$d"
    admin DELETE stats >/dev/null
    t0=$(now); tar xf "$work/src/tree.tar" -C "$d/m"; sync -f "$d/m"; t1=$(now)
    q_untar=$(requests)
    umount "$d/m"; drop; mnt "$m" "$d"
    admin DELETE stats >/dev/null
    t2=$(now); (cd "$d/m" && find . -type f -print0 | xargs -0 md5sum) > "$d/md5"; t3=$(now)
    q_md5=$(requests)
    umount "$d/m"
    [[ $(wc -l < "$d/md5") == "$nfiles" ]] || { echo "error: $m read back $(wc -l < "$d/md5") of $nfiles files" >&2; exit 1; }
    du_untar=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
    du_md5=$(awk -v a="$t2" -v b="$t3" 'BEGIN { printf "%.3f", b - a }')
    printf '%s\t%s\t%s\t%s\t%s\n' "$m" "$du_untar" "$q_untar" "$du_md5" "$q_md5" >> "$results"
    echo "rep $r $m: untar $du_untar s ($q_untar KMS requests), md5sum $du_md5 s ($q_md5)" >&2
    rm -rf "$d"
  done
done

table=$(/usr/bin/python3 - "$results" "$nfiles" "$mb" "$latency" "$reps" <<'EOF'
import statistics, sys
res, n, mb, lat, reps = sys.argv[1:]
rows = {}
for line in open(res):
    m, u, qu, h, qh = line.split("\t")
    rows.setdefault(m, []).append((float(u), int(qu), float(h), int(qh)))
med = {m: [statistics.median(x[i] for x in v) for i in range(4)] for m, v in rows.items()}
title = {"keyring": "kmsfs, local keyring", "kms-pool": "kmsfs, KMS per-file (key pool)",
         "kms-nopool": "kmsfs, KMS per-file, --key-pool 0", "kms-intermediate": "kmsfs, KMS intermediate key",
         "gocryptfs": "gocryptfs"}
k = med.get("keyring") or next(iter(med.values()))
out = [f"{n} files ({mb} MB tar), KMS latency {lat} ms per request (kms-local), medians of {reps}", "",
       "| mount | untar + sync (s) | vs keyring | KMS requests | md5sum cold (s) | vs keyring | KMS requests |",
       "|---|---:|---:|---:|---:|---:|---:|"]
for m in title:
    if m not in med: continue
    u, qu, h, qh = med[m]
    out.append(f"| {title[m]} | {u:.2f} | {u / k[0]:.2f}× | {qu:.0f} | {h:.2f} | {h / k[2]:.2f}× | {qh:.0f} |")
print("\n".join(out))
EOF
)
echo "$table"
[[ -n $out ]] && echo "$table" > "$out"
exit 0
