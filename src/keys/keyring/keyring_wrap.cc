#include "keys/keyring/keyring_wrap.h"

#include "crypto/kdf.h"

namespace kmsfs {

Result<std::unique_ptr<Aead>> keyring_wrap_aead(ByteSpan material) {
  ASSIGN_OR_RETURN(SecureBuffer wrap_key, hkdf_key(material, {}, kKeyringWrapInfo));
  return Aead::create(CipherId::kXChaCha20Poly1305, wrap_key.span());
}

Bytes keyring_wrap_aad(std::string_view name, uint32_t version, const EncryptionContext& ctx) {
  ByteWriter w;
  w.raw(as_bytes(kKeyringWrapAadLabel));
  w.u16(static_cast<uint16_t>(name.size()));
  w.raw(as_bytes(name));
  w.u32(version);
  w.raw(ctx.canonical());
  return w.take();
}

Result<Bytes> keyring_wrap(const Aead& aead, std::string_view name, uint32_t version,
                           const EncryptionContext& ctx, ByteSpan dek) {
  Bytes out(keyring_wrapped_size(dek.size()));
  out[0] = kKeyringWrapFormat;
  RETURN_IF_ERROR(aead.seal(dek, keyring_wrap_aad(name, version, ctx),
                            MutableByteSpan(out).subspan(1)));
  return out;
}

Result<SecureBuffer> keyring_unwrap(const Aead& aead, std::string_view name, uint32_t version,
                                    const EncryptionContext& ctx, ByteSpan wrapped,
                                    size_t dek_size) {
  const std::string which = std::string(name) + "@" + std::to_string(version);
  if (wrapped.empty() || wrapped[0] != kKeyringWrapFormat)
    return Status(Code::kCorrupt, "wrapped key for keyring key " + which +
                                      ": unknown wrap format");
  if (wrapped.size() != keyring_wrapped_size(dek_size))
    return Status(Code::kCorrupt, "wrapped key for keyring key " + which + ": " +
                                      std::to_string(wrapped.size()) + " bytes, expected " +
                                      std::to_string(keyring_wrapped_size(dek_size)));
  SecureBuffer dek(dek_size);
  Status s = aead.open(wrapped.subspan(1), keyring_wrap_aad(name, version, ctx), dek.span());
  if (!s.ok()) {
    if (s.code() != Code::kCorrupt) return s;
    return Status(Code::kCorrupt, "wrapped key does not authenticate under keyring key " + which +
                                      " with this context (wrong keyring, or the header was "
                                      "tampered with)");
  }
  return dek;
}

}  // namespace kmsfs
