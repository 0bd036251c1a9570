// One AEAD interface over the two content ciphers kmsfs supports. Both take a 256-bit key
// and a 192-bit random nonce, so random nonces never need a seal counter:
//  - kAes256Gcm is XAES-256-GCM (C2SP): a per-nonce AES-256-GCM subkey derived from the
//    key and the first 12 nonce bytes by AES-CMAC-style derivation, GCM nonce = last 12.
//    AES-NI/VAES speed through OpenSSL EVP, no 2^32-seals-per-key limit.
//  - kXChaCha20Poly1305 is libsodium's IETF XChaCha20-Poly1305.
// Sealed layout: nonce (24) || ciphertext (len(pt)) || tag (16).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string_view>

#include "base/bytes.h"
#include "base/status.h"

namespace kmsfs {

enum class CipherId : uint8_t {
  kAes256Gcm = 1,
  kXChaCha20Poly1305 = 2,
};

constexpr size_t kAeadKeySize = 32;
constexpr size_t kAeadNonceSize = 24;
constexpr size_t kAeadTagSize = 16;
constexpr size_t kAeadOverhead = kAeadNonceSize + kAeadTagSize;

std::string_view cipher_name(CipherId id) noexcept;            // "aes-256-gcm", ...
std::optional<CipherId> cipher_from_name(std::string_view name) noexcept;
bool cipher_known(uint8_t raw) noexcept;

class Aead {
 public:
  // Copies the key into locked memory. kInvalidArgument on a wrong key size or cipher.
  static Result<std::unique_ptr<Aead>> create(CipherId id, ByteSpan key);
  virtual ~Aead() = default;

  virtual CipherId id() const noexcept = 0;

  // Seals with a fresh random nonce. out.size() must be pt.size() + kAeadOverhead.
  // pt and out must not overlap. Thread-safe: may be called concurrently.
  Status seal(ByteSpan pt, ByteSpan aad, MutableByteSpan out) const;
  // Same with a caller-chosen nonce: what each cipher implements. Outside seal() only
  // known-answer tests may call it (a repeated nonce under one key breaks both ciphers).
  virtual Status seal_with_nonce(ByteSpan nonce, ByteSpan pt, ByteSpan aad,
                                 MutableByteSpan out) const = 0;
  // in = nonce || ct || tag; out.size() must be in.size() - kAeadOverhead.
  // kCorrupt if authentication fails; out is then zeroed (never partially decrypted bytes).
  virtual Status open(ByteSpan in, ByteSpan aad, MutableByteSpan out) const = 0;
};

}  // namespace kmsfs
