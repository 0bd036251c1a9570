// The checks of one backing file: is it a kmsfs file of this vault, does each key slot
// open it, is it under the vault's current key, does every block authenticate. Reads
// only; what --repair does with the verdict is repair.h's business.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "format/crypt_file.h"
#include "format/header.h"
#include "fsck/finding.h"
#include "fsck/slot_keys.h"
#include "vault/config.h"

namespace kmsfs::fsck {

struct CheckContext {
  const FsConfig& config;
  std::optional<KeyRef> current_key;  // what new files get; unknown if it did not resolve
  SlotKeys& keys;
  CryptFile::Options file_opts;
  size_t max_blocks_listed = 64;  // per file; the report counts the rest
};

struct FileCheck {
  bool kmsfs = false;  // starts with the kmsfs magic
  bool ours = false;   // its header parsed and names this vault
  uint64_t backing_size = 0;
  std::string file_id;
  std::optional<FileHeader> header;  // when it parsed
  int good_slot = -1;                // a slot whose key opened the file (MAC and state verified)
  uint64_t bad_blocks = 0;           // all of them; findings list the first max_blocks_listed
  std::vector<Finding> findings;     // paths are `rel`; the caller adds plaintext paths
};

// `path` is where to open the file, `rel` how findings name it.
FileCheck check_file(const CheckContext& ctx, const std::string& path, const std::string& rel);
// The same, on the file `name` in the directory `dirfd` (the tree walk's: a deep file's
// backing path is longer than any path syscall takes); `path` names it in messages.
FileCheck check_file(const CheckContext& ctx, int dirfd, std::string_view name, const std::string& path,
                     const std::string& rel);

}  // namespace kmsfs::fsck
