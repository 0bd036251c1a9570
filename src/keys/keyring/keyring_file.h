// The keyring container, byte for byte (docs/FORMAT.md §7):
//   "KMSFSKR1" | u16 version=1 | u16 flags | u32 meta_len | meta | u32 blob_len | blob
//   | (unsealed only) SHA-256 of every preceding byte
// This file knows the framing only: no JSON, no passphrases, no key semantics.
#pragma once

#include <cstdint>
#include <string_view>

#include "base/bytes.h"
#include "base/status.h"
#include "crypto/aead.h"
#include "crypto/secure_buffer.h"

namespace kmsfs {

constexpr std::string_view kKeyringMagic = "KMSFSKR1";
constexpr uint16_t kKeyringFormatVersion = 1;
constexpr uint16_t kKeyringFlagSealed = 1u << 0;
// Some version was pruned: its material is gone from the blob and the meta says
// "pruned". A kmsfs that predates pruning refuses such a keyring as an unknown feature
// instead of misreading the blob (FORMAT.md §7.1).
constexpr uint16_t kKeyringFlagPruned = 1u << 1;
constexpr size_t kKeyringMaterialSize = 32;
constexpr size_t kKeyringChecksumSize = 32;
constexpr size_t kKeyringFixedHeaderSize = 8 + 2 + 2 + 4;
// Far above any real keyring (tens of thousands of key versions); a bound so a hostile
// or damaged file cannot make us allocate without limit.
constexpr size_t kMaxKeyringFileSize = size_t{4} << 20;

// Views into a file's bytes; valid while those bytes are.
struct KeyringContainer {
  bool sealed = false;
  bool pruned = false;  // kKeyringFlagPruned
  ByteSpan aad;   // magic through the end of meta: what a sealed blob is bound to
  ByteSpan meta;
  ByteSpan blob;  // sealed: nonce || ct || tag; unsealed: the raw materials
  size_t material_count = 0;  // implied by blob_len (not yet checked against meta)
};

// Framing and, for unsealed files, the checksum. kCorrupt / kUnsupported with a message
// naming the field (no path: the caller adds it).
Result<KeyringContainer> parse_keyring_container(ByteSpan file);

// The magic-through-meta prefix (the AAD of a sealed blob).
Bytes keyring_prefix(bool sealed, bool pruned, std::string_view meta);

// Whole files. `materials` is the concatenated key material (a multiple of 32 bytes).
// A sealed file holds no secret, so it may live in ordinary memory; a plain one is
// nothing but secret, so it is built in locked memory.
Result<Bytes> build_sealed_keyring(std::string_view meta, ByteSpan materials, const Aead& aead, bool pruned = false);
SecureBuffer build_plain_keyring(std::string_view meta, ByteSpan materials, bool pruned = false);
size_t sealed_keyring_size(size_t meta_size, size_t material_count);
size_t plain_keyring_size(size_t meta_size, size_t material_count);

}  // namespace kmsfs
