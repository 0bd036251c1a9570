// KeyProvider over a local keyring. Safe for concurrent generate/unwrap/rewrap from the
// FUSE daemon's threads: they share a reader lock on the keyring; admin changes made while
// serving (update()) take the writer lock. The per-version wrap AEADs (HKDF output in locked
// memory) are cached, since a version's material never changes once created.
#pragma once

#include <sys/stat.h>

#include <chrono>
#include <functional>
#include <optional>
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
  Status refresh() override;

 private:
  // At most once a second, re-reads the keyring file if it changed on disk: a running
  // mount then creates new files under a version added by `kmsfs keyring rotate` (lazy
  // rotation) and stops using one `kmsfs keyring disable`d, without a remount. A file
  // that no longer opens with the kept KEK (passphrase changed) is ignored until remount.
  void notice_changes();
  struct Stamp {
    ino_t ino = 0;
    off_t size = -1;
    timespec mtime{};
    bool operator==(const Stamp& o) const {
      return ino == o.ino && size == o.size && mtime.tv_sec == o.mtime.tv_sec && mtime.tv_nsec == o.mtime.tv_nsec;
    }
  };
  std::optional<Stamp> stamp_now() const;

  // The wrap AEAD of an existing, enabled key version. Caller holds mu_ (shared).
  Result<std::shared_ptr<const Aead>> usable(const KeyRef& ref);

  mutable std::shared_mutex mu_;
  Keyring keyring_;

  std::mutex watch_mu_;
  std::chrono::steady_clock::time_point next_check_;  // guarded by watch_mu_
  std::optional<Stamp> stamp_;                        // guarded by watch_mu_

  std::mutex cache_mu_;
  std::map<std::pair<std::string, uint32_t>, std::shared_ptr<const Aead>> cache_;
};

}  // namespace kmsfs
