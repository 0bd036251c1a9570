#include "keys/keyring/keyring_provider.h"

#include "crypto/random.h"
#include "keys/keyring/key_spec.h"
#include "keys/keyring/keyring_wrap.h"

namespace kmsfs {

KeyringProvider::KeyringProvider(Keyring keyring)
    : keyring_(std::move(keyring)), next_check_(std::chrono::steady_clock::now() + std::chrono::seconds(1)) {
  stamp_ = stamp_now();
}

std::optional<KeyringProvider::Stamp> KeyringProvider::stamp_now() const {
  struct stat st;
  if (keyring_.path().empty() || ::stat(keyring_.path().c_str(), &st) != 0) return std::nullopt;
  return Stamp{st.st_ino, st.st_size, st.st_mtim};
}

Status KeyringProvider::refresh() {
  auto stamp = stamp_now();
  RETURN_IF_ERROR(update([](Keyring& k) { return k.reload(); }));
  std::lock_guard lock(watch_mu_);
  stamp_ = stamp;
  return Status::Ok();
}

void KeyringProvider::notice_changes() {
  const auto now = std::chrono::steady_clock::now();
  {
    std::lock_guard lock(watch_mu_);
    if (now < next_check_) return;
    next_check_ = now + std::chrono::seconds(1);
  }
  auto stamp = stamp_now();
  {
    std::lock_guard lock(watch_mu_);
    if (!stamp || stamp == stamp_) return;
  }
  (void)refresh();  // on failure the keyring in memory keeps serving, as before
}

Result<std::unique_ptr<KeyringProvider>> KeyringProvider::open(const std::string& path,
                                                               const SecureBuffer* passphrase) {
  ASSIGN_OR_RETURN(Keyring k, Keyring::open(path, passphrase));
  return std::make_unique<KeyringProvider>(std::move(k));
}

Result<KeyRef> KeyringProvider::resolve(std::string_view spec) {
  notice_changes();
  ASSIGN_OR_RETURN(KeySpec ks, parse_key_spec(spec));
  std::shared_lock lock(mu_);
  KeyRef ref{ProviderId::kKeyring, ks.name, 0};
  if (ks.version) {
    ref.version = *ks.version;
  } else {
    ASSIGN_OR_RETURN(ref.version, keyring_.newest_enabled(ks.name));
  }
  // Same checks as for use, so a spec that resolves is one that works.
  RETURN_IF_ERROR(usable(ref).status());
  return ref;
}

Result<std::shared_ptr<const Aead>> KeyringProvider::usable(const KeyRef& ref) {
  if (ref.provider != ProviderId::kKeyring)
    return Status(Code::kInvalidArgument,
                  "key " + ref.to_string() + " is not a keyring key");
  ASSIGN_OR_RETURN(KeyVersionView v, keyring_.lookup(ref.key_id, ref.version));
  if (v.state != KeyState::kEnabled)
    return Status(Code::kPermissionDenied, "key " + ref.key_id + " version " +
                                               std::to_string(ref.version) +
                                               " is disabled in keyring " + keyring_.path());
  std::lock_guard cache_lock(cache_mu_);
  auto key = std::make_pair(ref.key_id, ref.version);
  auto it = cache_.find(key);
  if (it != cache_.end()) return it->second;
  ASSIGN_OR_RETURN(std::unique_ptr<Aead> aead, keyring_wrap_aead(v.material));
  std::shared_ptr<const Aead> shared = std::move(aead);
  cache_.emplace(std::move(key), shared);
  return shared;
}

Result<DataKey> KeyringProvider::generate_data_key(const KeyRef& key,
                                                   const EncryptionContext& ctx) {
  std::shared_ptr<const Aead> aead;
  {
    std::shared_lock lock(mu_);
    ASSIGN_OR_RETURN(aead, usable(key));
  }
  DataKey dk;
  dk.plaintext = SecureBuffer(kDataKeySize);
  random_bytes(dk.plaintext.span());
  ASSIGN_OR_RETURN(dk.wrapped, keyring_wrap(*aead, key.key_id, key.version, ctx,
                                            dk.plaintext.span()));
  dk.ref = key;
  return dk;
}

Result<SecureBuffer> KeyringProvider::unwrap(const KeyRef& key, ByteSpan wrapped,
                                             const EncryptionContext& ctx) {
  notice_changes();
  std::shared_ptr<const Aead> aead;
  {
    std::shared_lock lock(mu_);
    ASSIGN_OR_RETURN(aead, usable(key));
  }
  return keyring_unwrap(*aead, key.key_id, key.version, ctx, wrapped, kDataKeySize);
}

Result<Rewrapped> KeyringProvider::rewrap(const KeyRef& from, ByteSpan wrapped,
                                          const EncryptionContext& ctx, const KeyRef& to) {
  std::shared_ptr<const Aead> from_aead, to_aead;
  {
    // One lock for both lookups, so a concurrent update() cannot slip in between.
    std::shared_lock lock(mu_);
    ASSIGN_OR_RETURN(from_aead, usable(from));
    ASSIGN_OR_RETURN(to_aead, usable(to));
  }
  ASSIGN_OR_RETURN(SecureBuffer dek, keyring_unwrap(*from_aead, from.key_id, from.version, ctx,
                                                    wrapped, kDataKeySize));
  Rewrapped out;
  ASSIGN_OR_RETURN(out.wrapped, keyring_wrap(*to_aead, to.key_id, to.version, ctx, dek.span()));
  out.ref = to;
  return out;
}

Status KeyringProvider::update(const std::function<Status(Keyring&)>& fn) {
  std::unique_lock lock(mu_);
  Status s = fn(keyring_);
  // fn may have replaced the keyring wholesale, and then (name, version) no longer
  // identifies the same material.
  std::lock_guard cache_lock(cache_mu_);
  cache_.clear();
  return s;
}

KeyringInfo KeyringProvider::info() const {
  std::shared_lock lock(mu_);
  return keyring_.info();
}

}  // namespace kmsfs
