// KeyProvider over a local keyring. Safe for concurrent generate/unwrap/rewrap from the
// FUSE daemon's threads: they share a reader lock on the keyring; admin changes made while
// serving (update()) take the writer lock. The per-version wrap AEADs (HKDF output in locked
// memory) are cached, since a version's material never changes once created.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <utility>

#include "crypto/aead.h"
#include "keys/key_provider.h"
#include "keys/keyring/keyring.h"

namespace kmsfs {

class KeyringProvider final : public KeyProvider {
 public:
  explicit KeyringProvider(Keyring keyring);
  static Result<std::unique_ptr<KeyringProvider>> open(const std::string& path,
                                                       const SecureBuffer* passphrase);

  ProviderId id() const noexcept override { return ProviderId::kKeyring; }
  // "name" -> newest enabled version; "name:N" -> version N, which must be enabled.
  Result<KeyRef> resolve(std::string_view spec) override;
  Result<DataKey> generate_data_key(const KeyRef& key, const EncryptionContext& ctx) override;
  Result<SecureBuffer> unwrap(const KeyRef& key, ByteSpan wrapped,
                              const EncryptionContext& ctx) override;
  Result<Rewrapped> rewrap(const KeyRef& from, ByteSpan wrapped, const EncryptionContext& ctx,
                           const KeyRef& to) override;

  // Runs `fn` on the keyring with every other user excluded (e.g. rotate + save while a
  // daemon is serving). Changes are visible to the next call.
  Status update(const std::function<Status(Keyring&)>& fn);
  KeyringInfo info() const;
  // Re-reads the keyring file (new versions, disabled ones) with the KEK kept from open.
  Status refresh() override {
    return update([](Keyring& k) { return k.reload(); });
  }

 private:
  // The wrap AEAD of an existing, enabled key version. Caller holds mu_ (shared).
  Result<std::shared_ptr<const Aead>> usable(const KeyRef& ref);

  mutable std::shared_mutex mu_;
  Keyring keyring_;

  std::mutex cache_mu_;
  std::map<std::pair<std::string, uint32_t>, std::shared_ptr<const Aead>> cache_;
};

}  // namespace kmsfs
