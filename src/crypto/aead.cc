#include "crypto/aead.h"

#include <cstdint>

#include "crypto/aead_impl.h"
#include "crypto/random.h"

namespace kmsfs {
namespace {

bool overlap(const uint8_t* a, size_t an, const uint8_t* b, size_t bn) noexcept {
  if (an == 0 || bn == 0) return false;
  const auto a0 = reinterpret_cast<uintptr_t>(a), b0 = reinterpret_cast<uintptr_t>(b);
  return a0 < b0 + bn && b0 < a0 + an;
}

}  // namespace

std::string_view cipher_name(CipherId id) noexcept {
  switch (id) {
    case CipherId::kAes256Gcm: return "aes-256-gcm";
    case CipherId::kXChaCha20Poly1305: return "xchacha20-poly1305";
  }
  return "unknown";
}

std::optional<CipherId> cipher_from_name(std::string_view name) noexcept {
  if (name == "aes-256-gcm") return CipherId::kAes256Gcm;
  if (name == "xchacha20-poly1305") return CipherId::kXChaCha20Poly1305;
  return std::nullopt;
}

bool cipher_known(uint8_t raw) noexcept {
  return raw == static_cast<uint8_t>(CipherId::kAes256Gcm) ||
         raw == static_cast<uint8_t>(CipherId::kXChaCha20Poly1305);
}

Status Aead::seal(ByteSpan pt, ByteSpan aad, MutableByteSpan out) const {
  uint8_t nonce[kAeadNonceSize];
  random_nonce(nonce);
  return seal_with_nonce(nonce, pt, aad, out);
}

Result<std::unique_ptr<Aead>> Aead::create(CipherId id, ByteSpan key) {
  if (key.size() != kAeadKeySize)
    return Status(Code::kInvalidArgument, "AEAD key must be 32 bytes, got " + std::to_string(key.size()));
  switch (id) {
    case CipherId::kAes256Gcm: return detail::make_xaes_256_gcm(key);
    case CipherId::kXChaCha20Poly1305: return detail::make_xchacha20_poly1305(key);
  }
  return Status(Code::kInvalidArgument,
                "unknown cipher id " + std::to_string(static_cast<unsigned>(id)));
}

namespace detail {

Status check_seal_args(ByteSpan nonce, ByteSpan pt, MutableByteSpan out, size_t max_pt) {
  if (nonce.size() != kAeadNonceSize)
    return Status(Code::kInvalidArgument, "AEAD nonce must be 24 bytes");
  if (pt.size() > max_pt) return Status(Code::kInvalidArgument, "AEAD plaintext too long");
  if (out.size() < kAeadOverhead || out.size() - kAeadOverhead != pt.size())
    return Status(Code::kInvalidArgument, "AEAD seal: output must be plaintext size + 40");
  if (overlap(pt.data(), pt.size(), out.data(), out.size()))
    return Status(Code::kInvalidArgument, "AEAD seal: plaintext and output overlap");
  return Status::Ok();
}

Status check_open_args(ByteSpan in, MutableByteSpan out) {
  if (in.size() < kAeadOverhead) return Status(Code::kCorrupt, "sealed message too short");
  if (out.size() != in.size() - kAeadOverhead)
    return Status(Code::kInvalidArgument, "AEAD open: output must be sealed size - 40");
  if (overlap(in.data(), in.size(), out.data(), out.size()))
    return Status(Code::kInvalidArgument, "AEAD open: input and output overlap");
  return Status::Ok();
}

}  // namespace detail
}  // namespace kmsfs
