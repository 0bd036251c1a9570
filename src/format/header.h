// The per-file header (docs/FORMAT.md §3): a fixed 4096-byte region at the start of every
// backing file.
//
//   [0, 64)       prefix: magic, version, cipher, sizes, feature bits, file id
//   [64, 992)     immutable TLV records (encryption context), zero padded
//   [992, 1024)   HMAC-SHA256 over [0, 992) under a key derived from the DEK
//   [1024, 2560)  key slot 0     [2560, 4096)  key slot 1
//
// The immutable part never changes after creation, so its MAC (which commits to the DEK)
// stays valid across re-wraps that never see the DEK (KMS ReEncrypt). Each slot holds a
// sequence number, a key reference and a wrapped DEK (authenticated by the wrap itself,
// whose AAD/context binds the file id), plus the MAC'd mutable file state; a SHA-256
// checksum detects torn slot writes. Rewrites go to the inactive slot, so a crash leaves
// the old slot intact: the valid slot with the highest sequence number wins.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <vector>

#include "base/bytes.h"
#include "base/status.h"
#include "crypto/aead.h"
#include "crypto/kdf.h"
#include "format/file_state.h"
#include "format/key_ref.h"

namespace kmsfs {

namespace header {
constexpr uint8_t kMagic[8] = {'K', 'M', 'S', 'F', 'S', 0, 'F', 'H'};
constexpr uint16_t kVersion = 1;
constexpr uint32_t kSize = 4096;
constexpr size_t kPrefixSize = 64;
constexpr size_t kMacOffset = 992;
constexpr size_t kImmutableSize = 1024;
constexpr size_t kSlotSize = 1536;
constexpr size_t kSlotOffset[2] = {1024, 2560};
constexpr size_t kSlotChecksumOffset = kSlotSize - 32;
constexpr uint32_t kSlotMagic = 0x31544c53;  // "SLT1"
// Feature bits. Critical: a reader that does not know one must refuse the file.
constexpr uint32_t kKnownCriticalFeatures = 0;
constexpr uint32_t kMinBlockSize = 1024;
constexpr uint32_t kMaxBlockSize = 1u << 20;
}  // namespace header

bool valid_block_size(uint64_t b) noexcept;

// A TLV record the reader does not understand but may carry along (non-critical).
struct UnknownRecord {
  uint16_t type = 0;
  Bytes value;
  bool operator==(const UnknownRecord&) const = default;
};

// Intermediate-key mode (FORMAT.md §3.4.3): the slot's key reference wrapped this blob (a
// key shared by many files), and the slot's wrapped DEK is sealed under that key.
using IntermediateKeyId = std::array<uint8_t, 16>;
struct IntermediateKeyRecord {
  IntermediateKeyId id{};
  Bytes wrapped;  // as the provider returned it; unwrapped with the key reference
  bool operator==(const IntermediateKeyRecord&) const = default;
};

// Online re-encryption in progress (FORMAT.md §3.9): a second DEK, wrapped the way the
// slot's own DEK is (under the slot's key, or sealed under its intermediate key), and the
// watermark: blocks [0, watermark) are sealed under it, the rest under the slot's DEK.
using ReencryptRunId = std::array<uint8_t, 8>;
struct ReencryptRecord {
  uint64_t watermark = 0;
  ReencryptRunId run{};
  Bytes wrapped_dek;
  bool operator==(const ReencryptRecord&) const = default;
};

struct HeaderSlot {
  uint64_t seq = 0;
  KeyRef key;
  Bytes wrapped_dek;
  std::optional<IntermediateKeyRecord> intermediate;
  std::optional<ReencryptRecord> reencrypt;
  // The re-encryption run this DEK was born in (by re-encryption, or by a create while
  // the run went on), so a run skips files it has already given a fresh DEK.
  std::optional<ReencryptRunId> dek_run;
  std::optional<SealedFileState> state;  // absent: no sparse ranges, generation 0
  std::vector<UnknownRecord> extra;
};

struct FileHeader {
  uint16_t version = header::kVersion;
  CipherId cipher = CipherId::kAes256Gcm;
  uint32_t header_size = header::kSize;
  uint32_t block_size = 4096;
  uint32_t critical_features = 0;
  uint32_t optional_features = 0;
  FileId file_id{};
  EncryptionContext context;
  Digest32 mac{};
  std::vector<UnknownRecord> extra_immutable;

  // Valid slots as read from disk (either may be absent: empty, torn or never written).
  std::array<std::optional<HeaderSlot>, 2> slots;
  // Why a slot is absent, for inspect/fsck ("torn", "empty", a parse error).
  std::array<std::string, 2> slot_problem;
  // The raw immutable area as read, which the MAC covers.
  Bytes immutable_raw;

  // Index of the valid slot with the highest sequence number; -1 if none.
  int active_slot() const;
};

// Whether `bytes` start with the kmsfs file magic (a kmsfs file, intact or damaged).
// The sequence number the next slot write takes: one above both slots'. A slot's seq is
// not authenticated, so a storage writer can set it; one near 2^64 would make the next
// write wrap to a lower number that loses to the stale slot (a silent rollback of the
// update). No honest file gets near 2^62 (one slot write per nanosecond for 146 years):
// above it the file is refused for writing (kCorrupt) instead.
constexpr uint64_t kMaxSlotSeq = uint64_t{1} << 62;
Result<uint64_t> next_slot_seq(const FileHeader& h);

bool has_kmsfs_magic(ByteSpan bytes) noexcept;

// Parses structure only: magic, version, features, sizes, TLVs, slot checksums. The MAC
// cannot be checked without the DEK: see verify_header_mac. kCorrupt names the field.
Result<FileHeader> parse_header(ByteSpan bytes);

// The 1024-byte immutable area with its MAC computed under mac_key.
Result<Bytes> encode_immutable(const FileHeader& h, ByteSpan mac_key);
// A 1536-byte slot. kInvalidArgument if the records do not fit.
Result<Bytes> encode_slot(const HeaderSlot& slot);

// Constant-time check of the header MAC (commits the header to the DEK).
Status verify_header_mac(const FileHeader& h, ByteSpan mac_key);

}  // namespace kmsfs
