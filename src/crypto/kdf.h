// Key derivation and hashing: HKDF-SHA256 (RFC 5869) and HMAC-SHA256 over libsodium's
// HMAC, SHA-256 through OpenSSL 3 EVP; Argon2id for passphrases through libsodium
// crypto_pwhash.
#pragma once

#include <array>
#include <cstdint>
#include <string_view>

#include "base/bytes.h"
#include "base/status.h"
#include "crypto/secure_buffer.h"

namespace kmsfs {

using Digest32 = std::array<uint8_t, 32>;

// out.size() <= 255*32.
Status hkdf_sha256(ByteSpan ikm, ByteSpan salt, std::string_view info, MutableByteSpan out);
// Convenience: derive a 32-byte key into locked memory.
Result<SecureBuffer> hkdf_key(ByteSpan ikm, ByteSpan salt, std::string_view info, size_t size = 32);

Digest32 hmac_sha256(ByteSpan key, ByteSpan data);
Digest32 sha256(ByteSpan data);

struct Argon2Params {
  uint64_t opslimit = 0;
  uint64_t memlimit = 0;  // bytes
};
// Named libsodium profiles: "interactive", "moderate" (default), "sensitive".
Result<Argon2Params> argon2_profile(std::string_view name);
constexpr size_t kArgon2SaltSize = 16;  // crypto_pwhash_SALTBYTES
// Argon2id v1.3. kInvalidArgument on out-of-range parameters (a tampered keyring file
// must not make us allocate 1 TiB), kInternal if memory could not be had.
Status argon2id(std::span<const char> passphrase, ByteSpan salt, const Argon2Params& p,
                MutableByteSpan out);

}  // namespace kmsfs
