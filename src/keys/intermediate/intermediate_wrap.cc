#include "keys/intermediate/intermediate_wrap.h"

#include "crypto/aead.h"
#include "crypto/kdf.h"

namespace kmsfs {

namespace {

constexpr uint8_t kSealFormat = 1;
constexpr size_t kDekSize = 32;
constexpr std::string_view kAadLabel = "kmsfs v1 dek under intermediate key";

Result<std::unique_ptr<Aead>> wrap_cipher(ByteSpan ik, const IntermediateKeyId& id) {
  if (ik.size() != 32) return Status(Code::kInvalidArgument, "intermediate key must be 32 bytes");
  ASSIGN_OR_RETURN(SecureBuffer k, hkdf_key(ik, id, "kmsfs v1 intermediate wrap key"));
  return Aead::create(CipherId::kAes256Gcm, k.span());
}

Bytes aad_of(const EncryptionContext& file_ctx) {
  Bytes aad(kAadLabel.begin(), kAadLabel.end());
  Bytes c = file_ctx.canonical();
  aad.insert(aad.end(), c.begin(), c.end());
  return aad;
}

}  // namespace

Result<EncryptionContext> intermediate_context(const EncryptionContext& file_ctx, const IntermediateKeyId& id) {
  EncryptionContext out;
  for (const auto& [k, v] : file_ctx.pairs()) {
    if (k == EncryptionContext::kFileIdKey || k == EncryptionContext::kPurposeKey) continue;
    RETURN_IF_ERROR(out.set(k, v));
  }
  RETURN_IF_ERROR(out.set(EncryptionContext::kPurposeKey, kIntermediatePurpose));
  RETURN_IF_ERROR(out.set(kIntermediateKeyIdKey, to_hex(id)));
  return out;
}

Result<Bytes> seal_dek(ByteSpan intermediate_key, const IntermediateKeyId& id, ByteSpan dek,
                       const EncryptionContext& file_ctx) {
  if (dek.size() != kDekSize) return Status(Code::kInvalidArgument, "data key must be 32 bytes");
  ASSIGN_OR_RETURN(auto aead, wrap_cipher(intermediate_key, id));
  Bytes out(1 + kDekSize + kAeadOverhead);
  out[0] = kSealFormat;
  RETURN_IF_ERROR(aead->seal(dek, aad_of(file_ctx), MutableByteSpan(out).subspan(1)));
  return out;
}

Result<SecureBuffer> open_dek(ByteSpan intermediate_key, const IntermediateKeyId& id, ByteSpan sealed,
                              const EncryptionContext& file_ctx) {
  if (sealed.size() != 1 + kDekSize + kAeadOverhead || sealed[0] != kSealFormat)
    return Status(Code::kCorrupt, "data key sealed under an intermediate key: bad length or format");
  ASSIGN_OR_RETURN(auto aead, wrap_cipher(intermediate_key, id));
  SecureBuffer dek(kDekSize);
  Status s = aead->open(sealed.subspan(1), aad_of(file_ctx), dek.span());
  if (!s.ok())
    return Status(Code::kCorrupt, "data key does not authenticate under intermediate key " + to_hex(id));
  return dek;
}

}  // namespace kmsfs
