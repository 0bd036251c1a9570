#!/bin/bash
# The bash completion (packaging/bash-completion/kmsfs) as bash runs it: sourced after
# bash-completion, its function called the way `complete -F` calls it for a command line,
# against the kmsfs binary given. Usage: completion_test.sh KMSFS COMPLETION_FILE
set -uo pipefail
kmsfs=$(readlink -f "$1")
completion=$2
skip_or_fail() {
  if [ "${CI:-}" = true ]; then echo "FAIL: $1 (required in CI)"; exit 1; fi
  echo "SKIP: $1"; exit 77
}
lib=/usr/share/bash-completion/bash_completion
[ -r "$lib" ] || skip_or_fail "needs bash-completion (apt-get install bash-completion)"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/bin" "$tmp/etc" "$tmp/vault/subdir" "$tmp/conf"
ln -s "$kmsfs" "$tmp/bin/kmsfs"
: >"$tmp/vault/subfile"
: >"$tmp/conf/backup.conf"

# One bash for every case: the help cache is per shell, as in an interactive one.
KMSFS_CONFIG_DIR=$tmp/conf PATH="$tmp/bin:$PATH" bash --norc --noprofile -s "$lib" "$completion" "$tmp" <<'SCRIPT'
lib=$1 completion=$2 tmp=$3
source "$lib"
source "$completion"
cd "$tmp" || exit 1
failures=0
# complete LINE: what <TAB> at the end of LINE offers, one per line, sorted.
complete_line() {
  COMP_LINE=$1
  COMP_POINT=${#COMP_LINE}
  read -ra COMP_WORDS <<<"$COMP_LINE"
  [[ $COMP_LINE == *" " ]] && COMP_WORDS+=("")
  COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
  COMPREPLY=()
  _kmsfs kmsfs "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
  printf '%s\n' "${COMPREPLY[@]}" | sort -u | grep -v '^$'
}
expect() {  # expect LINE EXPECTED (newline-separated, sorted)
  local got
  got=$(complete_line "$1")
  if [[ $got == "$2" ]]; then echo "ok: '$1'"; else
    echo "FAIL: '$1' offered:"; sed 's/^/    /' <<<"$got"; echo "  wanted:"; sed 's/^/    /' <<<"$2"
    failures=$((failures + 1)); fi
}
expect_has() {  # expect_has LINE WORD...: each WORD is offered
  local got w
  got=$(complete_line "$1")
  for w in "${@:2}"; do
    if grep -qxF -- "$w" <<<"$got"; then echo "ok: '$1' offers $w"; else
      echo "FAIL: '$1' does not offer $w; offered:"; sed 's/^/    /' <<<"$got"; failures=$((failures + 1)); fi
  done
}

[[ $(complete -p kmsfs) == "complete -F _kmsfs kmsfs" ]] && echo "ok: registered for kmsfs" ||
  { echo "FAIL: not registered: $(complete -p kmsfs 2>&1)"; failures=$((failures + 1)); }
expect "kmsfs mo" "mount"
expect_has "kmsfs " keyring init mount umount rotate fsck trust help
expect "kmsfs --ver" "--version"
expect "kmsfs keyring cr" "create"
expect "kmsfs trust " "$(printf '%s\n' accept distrust forget list show)"
expect "kmsfs mount --key-t" "--key-ttl"
expect_has "kmsfs mount -" --foreground -f -o --keyring --metrics-listen --log-level --config
expect "kmsfs keyring create kr --kdf-profile " "$(printf '%s\n' interactive moderate sensitive)"
expect "kmsfs init v --cipher x" "xchacha20-poly1305"
expect "kmsfs init v --key-mode=i" "intermediate"
# Paths: a directory where one is wanted, any file elsewhere.
expect "kmsfs mount vault/s" "vault/subdir"
expect "kmsfs mount vault vault/s" "vault/subdir"
expect "kmsfs cat vault/s" "$(printf '%s\n' vault/subdir vault/subfile)"
expect "kmsfs keyring create kr --passphrase-file vault/subf" "vault/subfile"
expect "kmsfs mount --keyring vault/subf" "vault/subfile"
# Option values are skipped when counting positionals: MOUNTPOINT after --key-ttl 5 BACKING.
expect "kmsfs mount --key-ttl 5 vault vault/s" "vault/subdir"
# kmsfs mount NAME: the config names ($KMSFS_CONFIG_DIR/NAME.conf).
expect_has "kmsfs mount b" backup
expect "kmsfs help keyr" "keyring"
exit $((failures > 0))
SCRIPT
