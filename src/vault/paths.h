// Path translation without a mount, for the offline tools (ls, encrypt-path,
// decrypt-path, cat PLAIN/PATH): finding one file in a backup of an encrypted vault.
#pragma once

#include <sys/stat.h>

#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "vault/vault.h"

namespace kmsfs {

// Relative paths in and out ("a/b/c"; empty = the vault root). "." and empty components
// are skipped; ".." is refused.
Result<std::string> encrypt_path(const Vault& v, std::string_view plain_rel);
// kCorrupt naming the component that does not decrypt; kNotFound if a component (needed
// for a long name's side file) is missing.
Result<std::string> decrypt_path(const Vault& v, std::string_view backing_rel);

// Where a new file at `plain_rel` goes, as the mount would put it: its backing path
// (absolute), with the long-name side files of it and of every parent written, and the
// missing parent directories created (mode `dir_mode`, less the umask) when
// `make_parents`, else kNotFound naming the first missing one. Does not create the file.
Result<std::string> prepare_new_file(const Vault& v, std::string_view plain_rel, bool make_parents,
                                     mode_t dir_mode = 0755);

struct PlainEntry {
  std::string name;     // plaintext
  std::string backing;  // the entry's backing name
  struct stat st {};    // lstat of the backing entry
};
struct Listing {
  std::vector<PlainEntry> entries;         // sorted by plaintext name
  std::vector<std::string> undecryptable;  // backing names that do not decrypt
};
Result<Listing> list_dir(const Vault& v, std::string_view plain_rel);

}  // namespace kmsfs
