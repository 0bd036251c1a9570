#!/usr/bin/env bash
# The main job on the local keyring: installs, builds, creates a passphrase-sealed keyring
# and a vault, mounts it, writes through the mount, shows that the backing directory holds
# only ciphertext and that the offline tools decrypt it, and leaves the vault mounted.
# Usage: scripts/quickstart.sh [WORKDIR]   (default /tmp/kmsfs-quickstart)
set -euo pipefail
cd "$(dirname "$0")/.."
work=${1:-/tmp/kmsfs-quickstart}

bash scripts/install-deps.sh
bash scripts/build.sh build >/dev/null
kmsfs=$PWD/build/src/cli/kmsfs

if findmnt -n "$work/mnt" >/dev/null 2>&1; then "$kmsfs" umount "$work/mnt"; sleep 0.5; fi
rm -rf "$work"
mkdir -p "$work/backing" "$work/mnt"
# A passphrase-sealed keyring; the passphrase comes from a 0600 file, never argv.
umask 077
head -c 24 /dev/urandom | base64 > "$work/passphrase"
set -x
"$kmsfs" keyring create "$work/keyring" --passphrase-file "$work/passphrase" --key main
"$kmsfs" init "$work/backing" --keyring "$work/keyring" --key main --passphrase-file "$work/passphrase" --context team=demo
"$kmsfs" mount "$work/backing" "$work/mnt" --passphrase-file "$work/passphrase"
cp /etc/os-release "$work/mnt/os-release"
mkdir "$work/mnt/docs" && cp README.md "$work/mnt/docs/"
ls -l "$work/mnt" "$work/backing"
"$kmsfs" inspect "$work/backing/os-release"
"$kmsfs" cat "$work/backing/os-release" --passphrase-file "$work/passphrase" | cmp - /etc/os-release
{ set +x; } 2>/dev/null
if grep -rq "PRETTY_NAME" "$work/backing"; then echo "plaintext found in the backing directory!" >&2; exit 1; fi
echo
echo "kmsfs quickstart: the vault $work/backing is mounted at $work/mnt"
echo "  keyring $work/keyring, passphrase in $work/passphrase (0600)"
echo "  the backing directory holds only ciphertext; 'kmsfs cat' decrypted a file from it offline"
echo "  unmount with: $kmsfs umount $work/mnt"
