// Which files of a vault a key still opens, from their headers alone (no key is
// unwrapped): what `kmsfs keyring prune` must see empty before a key version's material
// may be destroyed. A slot counts whether the key wraps the file's DEK directly or the
// intermediate key the DEK is sealed under (the slot's key reference names it either way).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "base/status.h"
#include "format/key_ref.h"

namespace kmsfs::fsck {

struct KeyCensus {
  uint64_t files = 0;                // files with a valid slot under the key
  std::vector<std::string> listed;   // the first of them (backing paths relative to the vault)
  // kmsfs files whose header names no key fsck can read (damaged, or written by a newer
  // kmsfs): any of them may be under the key. Quarantined ones are not counted.
  uint64_t unknown = 0;
  std::vector<std::string> unknown_listed;
};

// Walks the vault's tree and its kmsfs.quarantine/ (a quarantined file may still be
// recovered with the key) and lists up to `max_listed` of each.
Result<KeyCensus> census_key(const std::string& dir, const KeyRef& key, size_t max_listed);

}  // namespace kmsfs::fsck
