// Which keyring a command uses when --keyring is absent. In order:
//   1. --keyring
//   2. the KMSFS_KEYRING environment variable
//   3. for commands given a vault directory: its kmsfs.conf's keyring_hint
//   4. for commands given a single backing file (cat, inspect): the keyring_hint of the
//      nearest kmsfs.conf found walking up from the file's directory
// and otherwise an error telling the user to pass --keyring.
#pragma once

#include <optional>
#include <string>

#include "base/status.h"

namespace kmsfs::cli {

constexpr const char* kKeyringEnv = "KMSFS_KEYRING";

struct KeyringSearch {
  std::optional<std::string> explicit_path;  // --keyring
  std::string vault_dir;                     // step 3, if non-empty
  std::string file_path;                     // step 4, if non-empty
};

// The keyring path to use (not checked for existence: opening it reports that).
Result<std::string> locate_keyring(const KeyringSearch& search);

// The nearest directory at or above `file`'s directory that holds a kmsfs.conf.
std::optional<std::string> find_vault_above(const std::string& file);

}  // namespace kmsfs::cli
