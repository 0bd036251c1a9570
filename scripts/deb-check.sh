#!/usr/bin/env bash
# The .deb end to end on this machine: builds it with cpack from a built tree, installs it
# with apt-get, checks the installed kmsfs (--version, its man pages, the mount helper
# where mount(8) looks) and mounts a keyring vault through mount(8) from a temporary fstab
# (type kmsfs through the installed /sbin/mount.kmsfs, type fuse.kmsfs through mount.fuse3
# and the installed /usr/bin/kmsfs), unmounts, and purges the package. Whatever happens,
# its mounts are unmounted and the package purged (trap). CI runs it after the default
# test pass (scripts/test.sh); it runs alone too.
# Usage: scripts/deb-check.sh [BUILD_DIR]   (default: build; needs root)
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then exec sudo --preserve-env=CI bash "$0" "$@"; fi
build=$(readlink -f "${1:-build}")
start=$SECONDS
say() { echo "deb-check: $*"; }
fail() { echo "deb-check: FAIL: $*" >&2; exit 1; }

# Never replace or remove a kmsfs this script did not install.
if dpkg-query -W -f='${Status}' kmsfs 2>/dev/null | grep -q "install ok installed"; then
  fail "the kmsfs package is installed already: remove it first (this script purges what it installs)"
fi
for f in /usr/bin/kmsfs /usr/sbin/mount.kmsfs /sbin/mount.kmsfs; do
  [ ! -e "$f" ] && [ ! -L "$f" ] || fail "$f exists outside the package (a cmake --install?): remove it first"
done

say "building the .deb (cpack) from $build"
ninja -C "$build" kmsfs >/dev/null
out=$build/deb
rm -rf "$out"
(cd "$build" && cpack -G DEB -B "$out" >"$out.log" 2>&1) || { cat "$out.log"; fail "cpack"; }
debs=("$out"/kmsfs_*.deb)
dbgsyms=("$out"/kmsfs-dbgsym_*.deb)
[ -f "${debs[0]}" ] || fail "cpack made no kmsfs_*.deb: $(ls "$out")"
[ -f "${dbgsyms[0]}" ] || fail "cpack made no kmsfs-dbgsym_*.deb: $(ls "$out")"
deb=${debs[0]}
say "$(basename "$deb") $(du -k "$deb" | cut -f1) KiB, $(basename "${dbgsyms[0]}") $(du -k "${dbgsyms[0]}" | cut -f1) KiB"
depends=$(dpkg-deb -f "$deb" Depends)
say "Depends: $depends"
for p in libfuse3-3 fuse3 libssl3 libsodium23 libcurl4 libsystemd0 libc6; do
  grep -qE "(^|, )$p( |,|$)" <<<"$depends" || fail "Depends lacks $p"
done
! dpkg-deb -c "$deb" | grep -q '/usr/lib/debug/' || fail "the main .deb holds debug info"
dpkg-deb -c "${dbgsyms[0]}" | grep -q '/usr/lib/debug/.build-id/.*\.debug$' || fail "the dbgsym .deb holds no debug file"

tmp=$(mktemp -d /var/tmp/kmsfs-deb-XXXXXX)
installed=0
cleanup() {
  local rc=$?
  set +e
  findmnt -rn -t fuse.kmsfs -o TARGET | grep -F "$tmp/" | while read -r m; do
    say "unmounting $m"
    umount "$m" || umount -l "$m"
  done
  if [ $installed = 1 ]; then
    say "purging the package"
    DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq kmsfs >/dev/null || dpkg --purge kmsfs
  fi
  rm -rf --one-file-system "$tmp"
  # The daemons' log files (daemon_log.h: /var/log/kmsfs/<escaped mountpoint>.log).
  rm -f "/var/log/kmsfs/$(systemd-escape -p "$tmp")"-m[12].log
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM  # through the EXIT trap

say "installing $(basename "$deb") ($((SECONDS - start)) s so far)"
installed=1
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$deb" >"$tmp/apt.log" 2>&1 ||
  { cat "$tmp/apt.log"; fail "apt-get install"; }

/usr/bin/kmsfs --version | grep -q '^kmsfs ' || fail "kmsfs --version"
say "$(/usr/bin/kmsfs --version | head -1), $(file -b /usr/bin/kmsfs | grep -o 'stripped\|not stripped')"
file -b /usr/bin/kmsfs | grep -q ', stripped' || fail "/usr/bin/kmsfs is not stripped"
for page in kmsfs mount.kmsfs kmsfs-mount.conf; do
  man -w "$page" >/dev/null || fail "man -w $page"
done
say "man pages: $(man -w kmsfs) $(man -w mount.kmsfs) $(man -w kmsfs-mount.conf)"
[ "$(readlink -f /sbin/mount.kmsfs)" = /usr/bin/kmsfs ] || fail "/sbin/mount.kmsfs does not lead to /usr/bin/kmsfs"
[ -f /usr/share/bash-completion/completions/kmsfs ] || fail "no bash completion"
grep -q '^ExecStart=/usr/bin/kmsfs ' /usr/lib/systemd/system/kmsfs@.service || fail "kmsfs@.service does not run /usr/bin/kmsfs"

say "an fstab mount through the installed helper ($((SECONDS - start)) s so far)"
export KMSFS_TRUST_DIR=$tmp/trust KMSFS_CONFIG_DIR=$tmp/etc
unset KMSFS_KEYRING
mkdir -p "$tmp/trust" "$tmp/etc" "$tmp/v1" "$tmp/m1" "$tmp/v2" "$tmp/m2"
/usr/bin/kmsfs keyring create "$tmp/keyring" --no-passphrase --key main >/dev/null
/usr/bin/kmsfs init "$tmp/v1" --keyring "$tmp/keyring" --key main >/dev/null
/usr/bin/kmsfs init "$tmp/v2" --keyring "$tmp/keyring" --key main >/dev/null
cat >"$tmp/fstab" <<FSTAB
$tmp/v1  $tmp/m1  kmsfs       keyring=$tmp/keyring,key_ttl=60,nofail,_netdev  0 0
$tmp/v2  $tmp/m2  fuse.kmsfs  keyring=$tmp/keyring,nofail  0 0
FSTAB

# The daemon serving a mountpoint runs the installed binary.
served_by_package() {
  local exe
  for exe in /proc/[0-9]*/exe; do
    [ "$(readlink "$exe" 2>/dev/null)" = /usr/bin/kmsfs ] || continue
    tr '\0' ' ' <"${exe%/exe}/cmdline" 2>/dev/null | grep -qF -- "$1" && return 0
  done
  return 1
}
check_mount() {  # check_mount MOUNTPOINT BACKING WORD
  findmnt -n -o FSTYPE "$1" | grep -qx fuse.kmsfs || fail "$1 is not a fuse.kmsfs mount"
  echo "plaintext $3" >"$1/hello.txt"
  [ "$(cat "$1/hello.txt")" = "plaintext $3" ] || fail "$1: the file does not read back"
  ! grep -rq "plaintext $3" "$2" || fail "$2 holds plaintext"
  served_by_package "$1" || fail "$1 is not served by /usr/bin/kmsfs"
}
mount -T "$tmp/fstab" "$tmp/m1" || fail "mount -T fstab (type kmsfs) exited $?"
check_mount "$tmp/m1" "$tmp/v1" one
[ "$(/usr/bin/kmsfs stats "$tmp/m1" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["cache"]["ttl_seconds"])')" = 60.0 ] ||
  fail "key_ttl=60 from fstab did not reach the daemon"
say "type kmsfs: mounted, served by /usr/bin/kmsfs through /sbin/mount.kmsfs"
# mount.fuse3 runs `kmsfs` from mount(8)'s PATH, where /usr/local/bin comes first.
if [ -e /usr/local/bin/kmsfs ]; then
  say "SKIP type fuse.kmsfs: /usr/local/bin/kmsfs would run instead of the package's"
else
  mount -T "$tmp/fstab" "$tmp/m2" || fail "mount -T fstab (type fuse.kmsfs) exited $?"
  check_mount "$tmp/m2" "$tmp/v2" two
  say "type fuse.kmsfs: mounted through mount.fuse3"
  umount "$tmp/m2" || fail "umount $tmp/m2"
fi
umount "$tmp/m1" || fail "umount $tmp/m1"
! mountpoint -q "$tmp/m1" || fail "$tmp/m1 still mounted"

say "purging ($((SECONDS - start)) s so far)"
DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq kmsfs >"$tmp/apt.log" 2>&1 || { cat "$tmp/apt.log"; fail "apt-get purge"; }
installed=0
for f in /usr/bin/kmsfs /usr/sbin/mount.kmsfs /usr/share/man/man1/kmsfs.1.gz /usr/lib/systemd/system/kmsfs@.service; do
  [ ! -e "$f" ] || fail "$f is left after purge"
done
say "ok in $((SECONDS - start)) s"
