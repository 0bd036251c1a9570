// The filesystem config (docs/FORMAT.md §2): `kmsfs.conf` in the backing root, JSON for
// operators to read, authenticated by an HMAC under a key derived from the filesystem
// key, which is itself wrapped through the key provider.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/bytes.h"
#include "base/status.h"
#include "crypto/aead.h"
#include "crypto/kdf.h"
#include "format/key_ref.h"
#include "format/names.h"
#include "keys/key_trust.h"

namespace kmsfs {

constexpr const char* kConfigFileName = "kmsfs.conf";
// Taken (flock) by a mount and by offline commands that write (vault_lock.h).
constexpr const char* kLockFileName = "kmsfs.lock";
// A rotation's progress (rotation/rotation_state.h).
constexpr const char* kRotationFileName = "kmsfs.rotation";
// The hotzone journal of online re-encryption (format/reencrypt_journal.h).
constexpr const char* kJournalFileName = "kmsfs.journal";
// Where `kmsfs fsck --repair` moves files it cannot save (fsck/repair.h): out of the
// tree, but never deleted.
constexpr const char* kQuarantineDirName = "kmsfs.quarantine";
// Names in the backing root that belong to the vault, not to its files: hidden from the
// mount and not creatable through it (with encrypted names every "kmsfs." name is).
bool is_vault_file_name(std::string_view name) noexcept;
constexpr uint32_t kConfigVersion = 1;
// Features this version understands. A config listing any other in "features" is refused:
// a newer kmsfs wrote something this one would misread.
const std::vector<std::string>& known_config_features();
// The feature an intermediate-key vault lists: a kmsfs without it would wrap new files'
// DEKs straight under the provider key and could not open the existing ones.
constexpr const char* kFeatureIntermediateKeys = "intermediate-keys";

// How new files get their DEK (docs/KMS.md "Key modes").
enum class KeyMode : uint8_t {
  kPerFile,       // one provider GenerateDataKey per file (every file visible to KMS audit)
  kIntermediate,  // DEKs generated locally, wrapped under a provider-wrapped intermediate key
};
std::string_view key_mode_name(KeyMode m) noexcept;  // "per-file", "intermediate"
std::optional<KeyMode> key_mode_from_name(std::string_view name) noexcept;

struct FsConfig {
  uint32_t version = kConfigVersion;
  FsId fs_id{};
  std::string created;
  std::vector<std::string> features;
  CipherId cipher = CipherId::kAes256Gcm;
  uint32_t block_size = 4096;
  uint32_t header_size = 4096;
  // "plaintext", or "aes-siv" (docs/FORMAT.md §11) with the encoding and long-name limit.
  std::string name_mode = "aes-siv";
  NameEncoding name_encoding = NameEncoding::kBase64Url;
  uint32_t longname_max = kDefaultLongnameMax;
  bool encrypted_names() const { return name_mode != "plaintext"; }
  // What new files are wrapped under: the provider and the user's key spec (keyring key
  // name, later a KMS alias), resolved to an exact KeyRef at each create.
  ProviderId provider = ProviderId::kKeyring;
  std::string key_spec;
  std::string keyring_hint;  // where the keyring was at init; --keyring overrides
  EncryptionContext user_context;
  KeyMode key_mode = KeyMode::kPerFile;
  // Intermediate-key mode: an intermediate key wraps at most this many new files, for at
  // most this long (the mount may lower both; the key cache TTL also caps the age).
  uint64_t intermediate_max_files = 10000;
  uint32_t intermediate_max_age_s = 300;
  // The filesystem key, wrapped.
  KeyRef fs_key_ref;
  Bytes fs_key_wrapped;
  // Trust (docs/THREAT_MODEL.md, "The trust anchor"). 0 in configs written before
  // generations existed; init writes 1 and every rewrite adds 1, so a host that has seen
  // generation N refuses an older config (a rollback to before a rotation).
  uint64_t generation = 0;
  // Every key the vault's files and this config may be under (current and retired):
  // what other hosts learn from an authenticated newer config. Empty = {fs_key's key}.
  std::vector<TrustedKey> trust_keys;
  // The filesystem key wrapped under retired keys too, so a host that trusts only an
  // older key can still authenticate a config a rotation rewrote under a new one.
  struct Endorsement {
    KeyRef ref;
    Bytes wrapped;
  };
  std::vector<Endorsement> endorsements;
  Digest32 mac{};

  // trust_keys, or for a config from before them the filesystem key's key alone.
  std::vector<TrustedKey> declared_keys() const;

  // The context the filesystem key is wrapped with. Fails if the user pairs leave no room
  // for the reserved ones (init refuses such a config up front).
  Result<EncryptionContext> fs_key_context() const;
  // The context of a new file with the given id (user pairs + fs id + file id).
  Result<EncryptionContext> file_context(const FileId& file_id) const;
  std::string fs_id_hex() const { return to_hex(fs_id); }
};

// Serialises with the MAC computed under mac_key (pretty-printed JSON).
Result<Bytes> serialize_config(const FsConfig& c, ByteSpan mac_key);
// Parses and validates structure, version and features. Does not check the MAC: that needs
// the filesystem key (verify_config). `where` names the file in errors.
Result<FsConfig> parse_config(ByteSpan json, const std::string& where);
Status verify_config(ByteSpan json, const FsConfig& parsed, ByteSpan mac_key, const std::string& where);

}  // namespace kmsfs
