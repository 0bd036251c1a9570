// What an entry of the backing tree is called in the plaintext view, by the rules the
// mount applies (vault/name_store.h): a plaintext name, one of the vault's own files
// (long-name side files), a temporary a writer leaves for an instant, or a name that
// does not decrypt.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "vault/name_store.h"

namespace kmsfs::fsck {

enum class NameKind : uint8_t {
  kPlain,          // `plain` holds the plaintext name
  kVaultOwn,       // a long name's side file (or another name kmsfs keeps for itself)
  kTemporary,      // a side file being written ("kmsfs.tmp.*")
  kUndecryptable,  // `why` says so
  kUnknown,        // encrypted names without the filesystem key: nothing to say
};

struct NameInfo {
  NameKind kind = NameKind::kUnknown;
  std::string plain;
  std::string why;
};

// `store` is null when names are encrypted but the filesystem key is unavailable.
NameInfo check_name(const NameStore* store, bool encrypted, int dirfd, std::string_view name, bool in_root);

// Whether a root entry is the temporary of one of the vault's own files
// ("kmsfs.conf.tmp.PID.N", as write_file_atomic names them).
bool is_vault_temporary(std::string_view root_name);

}  // namespace kmsfs::fsck
