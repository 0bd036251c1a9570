#!/bin/bash
# mount(8) itself mounting vaults through mount.kmsfs, from a temporary fstab (mount -T):
# type kmsfs (mount(8) runs /sbin/mount.kmsfs) and fuse.kmsfs / kmsfs# (mount.fuse3 runs
# `kmsfs SOURCE TARGET -o ...`), fstab-only options, kmsfs options as -o (key_ttl=), a
# mount named by /etc/kmsfs/NAME.conf, a failed mount (exit 32), a bad option (exit 1),
# -f (fake), and an unsafe config file. mount(8) looks for helpers only in /sbin, so the
# test runs in a private mount namespace with overlays adding mount.kmsfs to /sbin and kmsfs
# to /usr/local/bin there (mount(8) resets PATH); the host's directories are never touched. Usage: mount8_test.sh KMSFS_BINARY
set -uo pipefail
kmsfs=$(readlink -f "$1")

skip_or_fail() {
  if [ "${CI:-}" = true ]; then echo "FAIL: $1 (required in CI)"; exit 1; fi
  echo "SKIP: $1"; exit 77
}
if [ -z "${KMSFS_MOUNT8_IN_NS:-}" ]; then
  [ "$(id -u)" = 0 ] || skip_or_fail "needs root (mount namespaces, mount(8))"
  [ -c /dev/fuse ] || skip_or_fail "needs /dev/fuse"
  command -v mount.fuse3 >/dev/null || skip_or_fail "needs mount.fuse3 (package fuse3)"
  unshare -m true 2>/dev/null || skip_or_fail "needs mount namespaces (unshare -m)"
  KMSFS_MOUNT8_IN_NS=1 exec unshare -m --propagation private "$0" "$@"
fi

failures=0
tmp=$(mktemp -d /var/tmp/kmsfs-mount8-XXXXXX)
sbin=$(readlink -f /sbin)
localbin=$(readlink -f /usr/local/bin)
cleanup() {
  # Every kmsfs mount of this namespace is ours; unmounting ends its daemon.
  findmnt -rn -t fuse.kmsfs -o TARGET | while read -r m; do umount "$m"; done
  umount "$sbin" 2>/dev/null
  umount "$localbin" 2>/dev/null
  rm -rf --one-file-system "$tmp"
}
trap cleanup EXIT

mkdir -p "$tmp/sbin" "$tmp/bin" "$tmp/etc" "$tmp/trust"
ln -s "$kmsfs" "$tmp/sbin/mount.kmsfs"
# mount.fuse3 runs `kmsfs` from PATH, which mount(8) resets to the standard one.
ln -s "$kmsfs" "$tmp/bin/kmsfs"
mount -t overlay overlay -o "lowerdir=$tmp/sbin:$sbin" "$sbin" || skip_or_fail "no overlayfs to add mount.kmsfs to $sbin"
mount -t overlay overlay -o "lowerdir=$tmp/bin:$localbin" "$localbin" || skip_or_fail "no overlayfs over $localbin"
export PATH="$tmp/bin:$PATH" KMSFS_TRUST_DIR="$tmp/trust" KMSFS_CONFIG_DIR="$tmp/etc"
unset KMSFS_KEYRING

check() {  # check NAME EXPECTED_EXIT COMMAND...
  local name=$1 want=$2; shift 2
  "$@" >"$tmp/out" 2>&1
  local rc=$?
  if [ "$rc" = "$want" ]; then echo "ok: $name"; else
    echo "FAIL: $name: exit $rc, wanted $want: $*"; sed 's/^/    /' "$tmp/out"; failures=$((failures + 1)); fi
}
expect() {  # expect NAME CONDITION...
  if "${@:2}"; then echo "ok: $1"; else echo "FAIL: $1"; failures=$((failures + 1)); fi
}
ttl_of() { kmsfs stats "$1" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["cache"]["ttl_seconds"])'; }
roundtrip() {  # a file written through the mount reads back, and the backing has no plaintext
  echo "plaintext $2" >"$1/hello.txt" && [ "$(cat "$1/hello.txt")" = "plaintext $2" ] &&
    ! grep -rq "plaintext $2" "$3"
}

kmsfs keyring create "$tmp/keyring" --no-passphrase --key main >/dev/null || exit 1
for v in v1 v2 v3 v4 v5; do mkdir "$tmp/$v" "$tmp/m-$v"; kmsfs init "$tmp/$v" --keyring "$tmp/keyring" --key main >/dev/null || exit 1; done

fstab=$tmp/fstab
cat >"$fstab" <<FSTAB
# type kmsfs: mount(8) runs /sbin/mount.kmsfs; options fstab keeps for itself are dropped
$tmp/v1  $tmp/m-v1  kmsfs  keyring=$tmp/keyring,key_ttl=60,nofail,_netdev,noauto,users,comment=x,x-systemd.requires-mounts-for=/var/tmp,nosuid,nodev  0 0
# type fuse.kmsfs: mount.fuse3 runs kmsfs SOURCE TARGET -o ...
$tmp/v2  $tmp/m-v2  fuse.kmsfs  keyring=$tmp/keyring,key_ttl=30,nofail,noatime  0 0
# type fuse with kmsfs#SOURCE, the older spelling
kmsfs#$tmp/v4  $tmp/m-v4  fuse  keyring=$tmp/keyring,key_ttl=45  0 0
# a config NAME as the source: $tmp/etc/v3.conf describes the rest
v3  $tmp/m-v3  kmsfs  defaults  0 0
# failures
$tmp/nosuch  $tmp/m-v5  kmsfs  keyring=$tmp/keyring  0 0
$tmp/v5  $tmp/m-bad  kmsfs  keyring=$tmp/keyring,key_ttl=soon  0 0
unsafe  $tmp/m-unsafe  kmsfs  defaults  0 0
FSTAB
mkdir "$tmp/m-bad" "$tmp/m-unsafe"
printf '# vault v3\nbacking = %s\nmountpoint = %s\nkeyring = %s\nkey_ttl = 75\noptions = noexec\n' \
  "$tmp/v3" "$tmp/m-v3" "$tmp/keyring" >"$tmp/etc/v3.conf"
chmod 0600 "$tmp/etc/v3.conf"
printf 'backing = %s\nmountpoint = %s\nkeyring = %s\n' "$tmp/v5" "$tmp/m-unsafe" "$tmp/keyring" >"$tmp/etc/unsafe.conf"
chmod 0666 "$tmp/etc/unsafe.conf"

# -f: everything but the mount.
check "mount -f (fake) exits 0" 0 mount -f -T "$fstab" "$tmp/m-v1"
expect "mount -f mounted nothing" bash -c "! mountpoint -q '$tmp/m-v1'"

check "type kmsfs from fstab" 0 mount -T "$fstab" "$tmp/m-v1"
expect "type kmsfs: the mount works" roundtrip "$tmp/m-v1" one "$tmp/v1"
expect "type kmsfs: mounted as fuse.kmsfs with nosuid,nodev" \
  bash -c "findmnt -n -o FSTYPE,OPTIONS '$tmp/m-v1' | grep -q '^fuse.kmsfs .*nosuid,nodev'"
expect "type kmsfs: key_ttl=60 reached the daemon" [ "$(ttl_of "$tmp/m-v1")" = 60.0 ]

check "type fuse.kmsfs from fstab" 0 mount -T "$fstab" "$tmp/m-v2"
expect "type fuse.kmsfs: the mount works" roundtrip "$tmp/m-v2" two "$tmp/v2"
expect "type fuse.kmsfs: key_ttl=30 reached the daemon" [ "$(ttl_of "$tmp/m-v2")" = 30.0 ]
expect "type fuse.kmsfs: noatime reached the kernel" \
  bash -c "findmnt -n -o OPTIONS '$tmp/m-v2' | grep -q noatime"

check "type fuse, kmsfs#SOURCE from fstab" 0 mount -T "$fstab" "$tmp/m-v4"
expect "kmsfs#: key_ttl=45 reached the daemon" [ "$(ttl_of "$tmp/m-v4")" = 45.0 ]

check "a config NAME from fstab" 0 mount -T "$fstab" "$tmp/m-v3"
expect "config NAME: the mount works" roundtrip "$tmp/m-v3" three "$tmp/v3"
expect "config NAME: the file's key_ttl" [ "$(ttl_of "$tmp/m-v3")" = 75.0 ]
expect "config NAME: the file's options (noexec)" bash -c "findmnt -n -o OPTIONS '$tmp/m-v3' | grep -q noexec"
check "umount(8) of the config NAME mount" 0 umount "$tmp/m-v3"
# The same file, without mount(8); the environment outranks the file.
check "kmsfs mount NAME" 0 env KMSFS_KEY_TTL=12 kmsfs mount v3
expect "kmsfs mount NAME: \$KMSFS_KEY_TTL over the file" [ "$(ttl_of "$tmp/m-v3")" = 12.0 ]
check "kmsfs umount" 0 kmsfs umount "$tmp/m-v3"

check "a missing backing directory: exit 32" 32 mount -T "$fstab" "$tmp/m-v5"
check "a bad option value (key_ttl=soon): exit 1" 1 mount -T "$fstab" "$tmp/m-bad"
expect "the bad option is named" grep -q key-ttl "$tmp/out"
check "a world-writable config file: exit 32" 32 mount -T "$fstab" "$tmp/m-unsafe"
expect "the unsafe file is named" grep -q "unsafe.conf is writable by group or others" "$tmp/out"
check "kmsfs mount of a world-writable config file: exit 10" 10 kmsfs mount unsafe
check "mount -t kmsfs on the command line" 0 mount -t kmsfs -o "keyring=$tmp/keyring,ro" "$tmp/v5" "$tmp/m-v5"
expect "mount -t kmsfs: ro reached the kernel" bash -c "findmnt -n -o OPTIONS '$tmp/m-v5' | grep -q '^ro'"
check "mount again on a live kmsfs mount: exit 32" 32 mount -t kmsfs -o "keyring=$tmp/keyring" "$tmp/v5" "$tmp/m-v5"

for m in v1 v2 v4 v5; do check "umount(8) $m" 0 umount "$tmp/m-$m"; done
echo "$failures failure(s)"
[ "$failures" = 0 ]
