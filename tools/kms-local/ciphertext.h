// kms-local's ciphertext blobs. A blob names the key and the key-material version that
// sealed it, so Decrypt needs no KeyId and old material keeps decrypting after rotation:
//
//   "KLC1" | u8 key-id length | key id (ASCII UUID) | u32le material version
//          | XAES-256-GCM( nonce 24 | ciphertext | tag 16 )
//
// AAD = everything before the AEAD part || canonical_context(encryption context). Every
// field before the AEAD part has a fixed size or a length prefix, and the context encoding
// is length-prefixed too, so no two (header, context) pairs give the same AAD: contexts
// {"ab":"c"} and {"a":"bc"} never open each other's blobs (some KMS emulators join the
// pairs and let them).
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "base/bytes.h"
#include "base/status.h"

namespace kmsfs::kms_local {

using ContextMap = std::map<std::string, std::string>;

// u32le pair count, then per pair in byte order of keys: u32le key length, key, u32le value
// length, value. The same shape as kmsfs's EncryptionContext::canonical() with wider
// length fields: KMS accepts contexts larger than a kmsfs header has room for.
Bytes canonical_context(const ContextMap& context);

struct BlobHeader {
  std::string key_id;
  uint32_t material_version = 0;  // 1 = the key's first material
};

constexpr size_t kMaterialSize = 32;

// `material` is the 32-byte key material of (key_id, material_version).
Result<Bytes> seal_blob(const BlobHeader& header, ByteSpan material, ByteSpan plaintext,
                        const ContextMap& context);
// Which key and material a blob names. kCorrupt if it is not a kms-local blob.
Result<BlobHeader> parse_blob_header(ByteSpan blob);
// kCorrupt if the blob was altered or `context` is not the one it was sealed with.
Result<Bytes> open_blob(ByteSpan blob, ByteSpan material, const ContextMap& context);

}  // namespace kmsfs::kms_local
