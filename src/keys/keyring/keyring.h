// A keyring file in memory: named keys, each a list of 256-bit versions that are enabled
// or disabled. Material lives only in SecureBuffers. A sealed keyring keeps the
// passphrase-derived KEK for its lifetime so save() re-seals without asking again
// (same salt, fresh nonce). Not thread-safe: KeyringProvider adds the locking.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/bytes.h"
#include "base/status.h"
#include "crypto/kdf.h"
#include "crypto/secure_buffer.h"
#include "keys/keyring/keyring_meta.h"

namespace kmsfs {

struct KeyringInfo {
  std::string path;
  std::string id;
  std::string created;
  bool sealed = false;
  std::optional<Argon2Params> kdf;  // sealed only
  std::vector<KeyInfo> keys;
};

// One version of one key. `material` points into the Keyring and is valid until the
// Keyring is mutated, moved or destroyed.
struct KeyVersionView {
  uint32_t version = 0;
  KeyState state = KeyState::kEnabled;
  ByteSpan material;
};

// kInvalidArgument unless the parameters are within what a keyring file may carry.
Status check_keyring_kdf_params(const Argon2Params& params);

class Keyring {
 public:
  // Creates and writes a new keyring at `path` (mode 0600), refusing to replace an existing
  // file. passphrase == nullptr makes an unsealed keyring (hosts with disk encryption);
  // `kdf` is then ignored. `initial_keys` get version 1 each, in one write.
  static Result<Keyring> create(const std::string& path, const SecureBuffer* passphrase,
                                const Argon2Params& kdf,
                                std::span<const std::string> initial_keys = {});
  // A sealed keyring needs the passphrase (kInvalidArgument without one; kPermissionDenied
  // if it is wrong or the file was modified). An unsealed one ignores it.
  static Result<Keyring> open(const std::string& path, const SecureBuffer* passphrase);
  // Re-reads the file (a running mount picking up `kmsfs keyring rotate`), unsealing it
  // with the KEK kept from open. kPermissionDenied if the passphrase or the keyring itself
  // was changed since; the keyring in memory is unchanged then.
  Status reload();
  // The metadata only, without a passphrase, for listings. For a sealed keyring this is
  // NOT authenticated (the AEAD tag can only be checked with the KEK).
  static Result<KeyringInfo> peek(const std::string& path);

  Keyring(Keyring&&) noexcept = default;
  Keyring& operator=(Keyring&&) noexcept = default;

  // In-memory changes; save() writes them.
  Status add_key(std::string_view name);               // version 1; kAlreadyExists
  Result<uint32_t> rotate(std::string_view name);      // adds version n+1, enabled
  // Enables or disables a version; kNotFound for a pruned one.
  Status set_state(std::string_view name, uint32_t version, KeyState state);
  // Destroys a disabled version's material for good (kAlreadyExists if it is enabled).
  // Its entry stays, marked pruned: the number is never reused and files still under it
  // are refused by name. Whether any file still needs it is the caller's question
  // (fsck/key_census.h).
  Status prune(std::string_view name, uint32_t version);
  // Re-seals under a new passphrase with a fresh salt, or unseals (nullptr).
  Status set_passphrase(const SecureBuffer* passphrase, const Argon2Params& kdf);
  // Atomic rewrite (temp + fsync + rename), mode 0600, fresh nonce.
  Status save();

  KeyringInfo info() const;
  const std::vector<KeyInfo>& list() const { return meta_.keys; }
  // kNotFound for an unknown name or version, or a pruned one. Returns disabled versions
  // too: the caller decides what a disabled version may still be used for.
  Result<KeyVersionView> lookup(std::string_view name, uint32_t version) const;
  // kNotFound for an unknown name; kPermissionDenied if every version is disabled.
  Result<uint32_t> newest_enabled(std::string_view name) const;

  bool sealed() const { return meta_.kdf.has_value(); }
  const std::string& path() const { return path_; }
  const std::string& id() const { return meta_.keyring_id; }

 private:
  Keyring() = default;
  // open() with a passphrase, or reload() with the KEK of `previous`.
  static Result<Keyring> load(const std::string& path, const SecureBuffer* passphrase, const Keyring* previous);
  Status write(bool exclusive) const;
  Status corrupt(const std::string& why) const;
  Status pruned(const std::string& name, uint32_t version) const;
  KeyInfo* find(std::string_view name);
  const KeyInfo* find(std::string_view name) const;
  size_t index_of(const KeyInfo* key) const { return static_cast<size_t>(key - meta_.keys.data()); }

  std::string path_;
  KeyringMeta meta_;
  // materials_[i][j] is meta_.keys[i].versions[j]; each exactly 32 bytes, empty if pruned.
  std::vector<std::vector<SecureBuffer>> materials_;
  SecureBuffer kek_;  // sealed only
};

}  // namespace kmsfs
