// Which keyring a command uses. In order:
//   1. --keyring
//   2. the KMSFS_KEYRING environment variable
//   3. the keyring the vault's trust record names (written by `kmsfs init` or
//      `kmsfs trust accept` from what the operator passed)
// and otherwise an error telling the user to pass --keyring. Never a path read from the
// backing directory (kmsfs.conf's keyring field is informational): whoever writes the
// backing store would choose the keys. The keyring found must be private (owned by root or
// the caller, not group/world-writable, in directories nobody else can write: sshd's
// StrictModes) and must not lie inside the vault's backing directory.
#pragma once

#include <optional>
#include <string>

#include "base/status.h"

namespace kmsfs::cli {

constexpr const char* kKeyringEnv = "KMSFS_KEYRING";

struct KeyringSearch {
  std::optional<std::string> explicit_path;  // --keyring
  std::string record_keyring;                // step 3, if non-empty
  std::string backing_dir;                   // a keyring inside it is refused, if non-empty
};

// The keyring path to use, checked as above (a missing file is reported by the check).
Result<std::string> locate_keyring(const KeyringSearch& search);

// Refuses a keyring someone else could have written, or one inside `backing_dir`.
Status check_keyring_path(const std::string& path, const std::string& backing_dir);

// The nearest directory at or above `file`'s directory that holds a kmsfs.conf.
std::optional<std::string> find_vault_above(const std::string& file);

}  // namespace kmsfs::cli
