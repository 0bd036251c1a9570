#!/usr/bin/env bash
# The main job on the local keyring: installs, builds, creates a passphrase-sealed keyring
# and a vault (with this host's trust record of it), mounts it, writes through the mount,
# shows that the backing directory holds only ciphertext under encrypted names and that the
# offline tools decrypt it by plaintext path, and leaves the vault mounted.
#
# Usage: bash scripts/quickstart.sh [WORKDIR]        (default /tmp/kmsfs-quickstart)
# As root, or as a user with sudo (only the package install uses it).
# Environment:
#   KMSFS_BUILD_DIR=DIR        use the kmsfs already built in DIR (CI reuses its build)
#   KMSFS_QUICKSTART_UNMOUNT=1 unmount at the end (CI); on failure it always unmounts
set -euo pipefail
cd "$(dirname "$0")/.."
work=${1:-/tmp/kmsfs-quickstart}

if [ "$(id -u)" = 0 ]; then
  bash scripts/install-deps.sh
else
  sudo bash scripts/install-deps.sh
fi
if [ -n "${KMSFS_BUILD_DIR:-}" ] && [ -x "$KMSFS_BUILD_DIR/src/cli/kmsfs" ]; then
  kmsfs=$(cd "$KMSFS_BUILD_DIR" && pwd)/src/cli/kmsfs
else
  bash scripts/build.sh build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O2 -DNDEBUG" >/dev/null
  kmsfs=$PWD/build/src/cli/kmsfs
fi

# A previous run's vault: unmount it and forget this host's trust record of it.
if findmnt -n "$work/mnt" >/dev/null 2>&1; then "$kmsfs" umount "$work/mnt"; fi
if [ -f "$work/backing/kmsfs.conf" ]; then "$kmsfs" trust forget "$work/backing" >/dev/null 2>&1 || true; fi
rm -rf "$work"
mkdir -p "$work/backing" "$work/mnt"

mounted=0
finish() {
  rc=$?
  if [ $mounted = 1 ] && { [ $rc != 0 ] || [ "${KMSFS_QUICKSTART_UNMOUNT:-0}" = 1 ]; }; then
    "$kmsfs" umount "$work/mnt" || umount -l "$work/mnt" || true
    [ $rc != 0 ] && echo "kmsfs quickstart: failed (exit $rc); the vault was unmounted" >&2
  fi
  exit $rc
}
trap finish EXIT

# A passphrase-sealed keyring; the passphrase comes from a 0600 file, never argv.
umask 077
head -c 24 /dev/urandom | base64 > "$work/passphrase"
set -x
"$kmsfs" keyring create "$work/keyring" --passphrase-file "$work/passphrase" --key main
"$kmsfs" init "$work/backing" --keyring "$work/keyring" --key main --passphrase-file "$work/passphrase" --context team=demo
"$kmsfs" trust show "$work/backing"
"$kmsfs" mount "$work/backing" "$work/mnt" --passphrase-file "$work/passphrase"
{ set +x; } 2>/dev/null
mounted=1
set -x
cp /etc/os-release "$work/mnt/os-release"
mkdir "$work/mnt/docs" && cp README.md "$work/mnt/docs/"
ls -l "$work/mnt" "$work/backing"
"$kmsfs" status
"$kmsfs" inspect "$work/backing/os-release" --passphrase-file "$work/passphrase"
"$kmsfs" cat "$work/backing/docs/README.md" --passphrase-file "$work/passphrase" | cmp - README.md
{ set +x; } 2>/dev/null
if grep -rq "PRETTY_NAME" "$work/backing"; then echo "plaintext found in the backing directory!" >&2; exit 1; fi
if ls -R "$work/backing" | grep -q "os-release"; then echo "a plaintext name in the backing directory!" >&2; exit 1; fi
echo
if [ "${KMSFS_QUICKSTART_UNMOUNT:-0}" = 1 ]; then
  echo "kmsfs quickstart: passed; the vault $work/backing was unmounted"
else
  echo "kmsfs quickstart: the vault $work/backing is mounted at $work/mnt"
  echo "  keyring $work/keyring, passphrase in $work/passphrase (0600)"
  echo "  trust record: $("$kmsfs" trust show "$work/backing" --json | sed -n 's/.*"path": "\(.*\)".*/\1/p')"
  echo "  the backing directory holds only ciphertext, names included; 'kmsfs cat' decrypted a file from it offline"
  echo "  unmount with: $kmsfs umount $work/mnt"
fi
