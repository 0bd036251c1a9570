#!/bin/bash
# What `cmake --install` puts where, always into a scratch DESTDIR (never the host): the binary
# stripped, its debug info by build id where gdb finds it, mount.kmsfs where mount(8)
# looks, the unit with the prefix's paths, man pages, completion, docs; for prefix /usr
# (the .deb's) and /usr/local (a plain `cmake --install`). Usage: install_test.sh BUILD_DIR
set -uo pipefail
build=$(readlink -f "$1")
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failures=0
expect() {  # expect NAME CONDITION...
  if "${@:2}"; then echo "ok: $1"; else echo "FAIL: $1"; failures=$((failures + 1)); fi
}

# Prefix /usr, as cpack installs it.
root=$tmp/usr-root
DESTDIR=$root cmake --install "$build" --prefix /usr >"$tmp/log" 2>&1 || { cat "$tmp/log"; exit 1; }
expect "only /usr written" [ "$(ls -A "$root")" = usr ]
bin=$root/usr/bin/kmsfs
expect "bin/kmsfs runs" bash -c "'$bin' --version | grep -q '^kmsfs '"
expect "bin/kmsfs has no symbol table" bash -c "! readelf -S '$bin' | grep -q '\.symtab'"
expect "bin/kmsfs has no debug sections" bash -c "! readelf -S '$bin' | grep -q '\.debug_'"
expect "bin/kmsfs has a .gnu_debuglink" bash -c "readelf -S '$bin' | grep -q '\.gnu_debuglink'"
id=$(readelf -n "$bin" | awk '/Build ID:/ {print $3}')
expect "bin/kmsfs has a build id" [ -n "$id" ]
debug=$root/usr/lib/debug/.build-id/${id:0:2}/${id:2}.debug
expect "the debug file is lib/debug/.build-id/XX/REST.debug" [ -s "$debug" ]
expect "the debug file has the symbols" bash -c "readelf -S '$debug' 2>/dev/null | grep -q '\.symtab'"
# gdb finds main through the build id only when pointed at the debug directory.
gdb_main() {
  gdb -nx -batch -iex "set debug-file-directory $1" -ex "info address main" "$bin" 2>&1 | grep -q 'Symbol "main" is'
}
if command -v gdb >/dev/null; then
  expect "gdb finds the symbols by build id" gdb_main "$root/usr/lib/debug"
  no_gdb_main() { ! gdb_main "$1"; }
  expect "gdb without the debug file finds none" no_gdb_main "$tmp/none"
fi
expect "usr/sbin/mount.kmsfs -> ../bin/kmsfs" [ "$(readlink "$root/usr/sbin/mount.kmsfs")" = ../bin/kmsfs ]
expect "mount.kmsfs resolves to the binary" [ "$(readlink -f "$root/usr/sbin/mount.kmsfs")" = "$(readlink -f "$bin")" ]
unit=$root/usr/lib/systemd/system/kmsfs@.service
expect "the unit runs /usr/bin/kmsfs" grep -q '^ExecStart=/usr/bin/kmsfs mount' "$unit"
expect "the unit's docs exist" test -f "$root$(sed -n 's|^Documentation=.*file://\([^ ]*\).*|\1|p' "$unit")"
for page in man1/kmsfs.1 man8/mount.kmsfs.8 man5/kmsfs-mount.conf.5; do
  expect "man page $page.gz" bash -c "gzip -t '$root/usr/share/man/$page.gz' && MANWIDTH=80 man -l '$root/usr/share/man/$page.gz' 2>/dev/null | grep -q NAME"
done
expect "bash completion" test -f "$root/usr/share/bash-completion/completions/kmsfs"
for doc in README.md docs/OPERATIONS.md docs/CLI.md examples/mnt-plain.mount examples/mnt-plain.automount; do
  expect "doc $doc" test -f "$root/usr/share/doc/kmsfs/$doc"
done
expect "the example mount unit points at the docs" \
  grep -q '^Documentation=.*file:///usr/share/doc/kmsfs/docs/OPERATIONS.md' "$root/usr/share/doc/kmsfs/examples/mnt-plain.mount"

# Prefix /usr/local: mount(8) does not look in /usr/local/sbin, so the helper goes to /sbin.
root=$tmp/local-root
DESTDIR=$root cmake --install "$build" --prefix /usr/local >"$tmp/log" 2>&1 || { cat "$tmp/log"; exit 1; }
expect "prefix /usr/local: /sbin/mount.kmsfs -> /usr/local/bin/kmsfs" \
  [ "$(readlink "$root/sbin/mount.kmsfs")" = /usr/local/bin/kmsfs ]
expect "prefix /usr/local: the unit runs /usr/local/bin/kmsfs" \
  grep -q '^ExecStart=/usr/local/bin/kmsfs mount' "$root/usr/local/lib/systemd/system/kmsfs@.service"
expect "prefix /usr/local: only /sbin and /usr/local written" [ "$(ls -A "$root" | tr '\n' ' ')" = "sbin usr " ]

# Any other prefix (/opt/kmsfs, a staging tree): everything under it. (DESTDIR still, so
# that a build configured with its own KMSFS_MOUNT_HELPER_DIR cannot write to the host.)
root=$tmp/opt-root
DESTDIR=$root cmake --install "$build" --prefix /opt/kmsfs >"$tmp/log" 2>&1 || { cat "$tmp/log"; exit 1; }
expect "prefix DIR: DIR/sbin/mount.kmsfs -> ../bin/kmsfs" [ "$(readlink "$root/opt/kmsfs/sbin/mount.kmsfs")" = ../bin/kmsfs ]
expect "prefix DIR: only DIR written" [ "$(ls -A "$root")" = opt ]
expect "prefix DIR: mount(8) not finding it is said" grep -q 'mount(8) does not search' "$tmp/log"

echo "$failures failure(s)"
[ "$failures" = 0 ]
