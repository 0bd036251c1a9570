// A DEK wrapped under a keyring key version (docs/FORMAT.md §7):
//   u8 format = 1 || nonce (24) || ct || tag (16)      (73 bytes for a 32-byte DEK)
// XChaCha20-Poly1305 under HKDF-SHA256(material, salt = "", info = "kmsfs keyring wrap v1"),
// AAD = "kmsfs-keyring-wrap-v1" || u16 len(name) || name || u32 version || ctx.canonical(),
// so a blob only opens under the key name, version and context it was made for.
#pragma once

#include <cstdint>
#include <memory>
#include <string_view>

#include "base/bytes.h"
#include "base/status.h"
#include "crypto/aead.h"
#include "crypto/secure_buffer.h"
#include "format/key_ref.h"

namespace kmsfs {

constexpr uint8_t kKeyringWrapFormat = 1;
constexpr std::string_view kKeyringWrapInfo = "kmsfs keyring wrap v1";
constexpr std::string_view kKeyringWrapAadLabel = "kmsfs-keyring-wrap-v1";

constexpr size_t keyring_wrapped_size(size_t dek_size) { return 1 + kAeadOverhead + dek_size; }

// The AEAD for one key version (the HKDF step included).
Result<std::unique_ptr<Aead>> keyring_wrap_aead(ByteSpan material);

Bytes keyring_wrap_aad(std::string_view name, uint32_t version, const EncryptionContext& ctx);

Result<Bytes> keyring_wrap(const Aead& aead, std::string_view name, uint32_t version,
                           const EncryptionContext& ctx, ByteSpan dek);
// kCorrupt for a wrong format byte, a wrong size (dek_size fixes the expected length) or a
// blob that does not authenticate; the plaintext is never returned in part.
Result<SecureBuffer> keyring_unwrap(const Aead& aead, std::string_view name, uint32_t version,
                                    const EncryptionContext& ctx, ByteSpan wrapped,
                                    size_t dek_size);

}  // namespace kmsfs
