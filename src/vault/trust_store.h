// The trust anchor of a vault on one host: which keys its files and its kmsfs.conf may be
// under, the highest config generation this host has accepted, and where its keyring is.
// It lives outside the backing directory (default /var/lib/kmsfs/trust for root,
// $XDG_STATE_HOME/kmsfs/trust otherwise), one JSON file per vault named by its fs id,
// written by `kmsfs init`, by `kmsfs trust accept` (a second host, a restore), and when
// an authenticated config teaches it a rotation (docs/THREAT_MODEL.md, "The trust anchor").
// Only root or the caller may have written it (check_private_path), like a keyring.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "base/status.h"
#include "format/key_ref.h"
#include "keys/key_trust.h"

namespace kmsfs {

constexpr const char* kTrustDirEnv = "KMSFS_TRUST_DIR";

struct TrustRecord {
  FsId fs_id{};
  // The highest kmsfs.conf generation accepted here: an older config (a rollback to
  // before a rotation) is refused.
  uint64_t generation = 0;
  // Keys files and the config may be under (current and retired ones).
  std::vector<TrustedKey> keys;
  // Keys the operator withdrew trust from here; no config can bring one back.
  std::vector<TrustedKey> distrusted;
  // Keyring vaults: the keyring the operator named (absolute), used when --keyring is not
  // given. Never taken from the backing directory.
  std::string keyring;
  // Where the vault was last opened from, and when this record last changed: for people.
  std::string vault_dir;
  std::string updated;

  // The keys in force: `keys` minus `distrusted`.
  KeyTrust key_trust() const;
  std::string fs_id_hex() const { return to_hex(fs_id); }
};

class TrustStore {
 public:
  explicit TrustStore(std::string dir) : dir_(std::move(dir)) {}
  // $KMSFS_TRUST_DIR, else /var/lib/kmsfs/trust for root, else
  // $XDG_STATE_HOME/kmsfs/trust (~/.local/state/kmsfs/trust).
  static std::string default_dir();

  const std::string& dir() const { return dir_; }
  std::string path_of(const FsId& id) const;
  // nullopt if this host has no record of the vault. A record that is not private (see
  // above) or does not parse is an error, never "no record".
  Result<std::optional<TrustRecord>> load(const FsId& id) const;
  // Atomically replaces the record (mode 0600; the directory is created 0700).
  Status save(TrustRecord r) const;
  Status remove(const FsId& id) const;
  Result<std::vector<TrustRecord>> list() const;

 private:
  std::string dir_;
  Status ensure_dir() const;
};

Result<TrustRecord> parse_trust_record(const std::string& text, const std::string& where);
// kInvalidArgument if the keyring path or a key id is not UTF-8 (JSON cannot carry it
// and these must read back byte for byte); the vault directory, informational, is written
// with U+FFFD for bytes that are not UTF-8.
Result<std::string> serialize_trust_record(const TrustRecord& r);

}  // namespace kmsfs
