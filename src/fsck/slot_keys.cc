#include "fsck/slot_keys.h"

#include "vault/vault.h"

namespace kmsfs::fsck {

Result<SecureBuffer> SlotKeys::dek(const FileHeader& h, const HeaderSlot& slot) {
  return slot_dek(h, slot, [this](const KeyRef& ref, ByteSpan wrapped, const EncryptionContext& ctx) {
    return unwrap(ref, wrapped, ctx);
  });
}

Result<SecureBuffer> SlotKeys::dek_like(const FileHeader& h, const HeaderSlot& slot, ByteSpan wrapped) {
  return dek_wrapped_like(h, slot, wrapped, [this](const KeyRef& ref, ByteSpan w, const EncryptionContext& ctx) {
    return unwrap(ref, w, ctx);
  });
}

Result<std::shared_ptr<const SecureBuffer>> SlotKeys::unwrap(const KeyRef& ref, ByteSpan wrapped,
                                                               const EncryptionContext& ctx) {
  if (auto broken = broken_providers_.find(ref.provider); broken != broken_providers_.end()) return broken->second;
  auto provider = providers_.get(ref.provider);
  if (!provider.ok()) {
    broken_providers_.emplace(ref.provider, provider.status());
    return provider.status();
  }
  const bool shared = !ctx.get(EncryptionContext::kFileIdKey);
  auto call = [&]() -> Unwrapped {
    auto k = (*provider)->unwrap(ref, wrapped, ctx);
    if (!k.ok()) return {k.status(), nullptr};
    return {Status::Ok(), std::make_shared<const SecureBuffer>(std::move(*k))};
  };
  if (!shared) {
    Unwrapped u = call();
    if (!u.status.ok()) return u.status;
    return u.key;
  }
  auto key = std::make_tuple(ref.to_string(), Bytes(wrapped.begin(), wrapped.end()), ctx.canonical());
  auto it = shared_.find(key);
  if (it == shared_.end()) it = shared_.emplace(std::move(key), call()).first;
  if (!it->second.status.ok()) return it->second.status;
  return it->second.key;
}

}  // namespace kmsfs::fsck
