// The on-disk vocabulary shared by the format and the key providers: which provider and
// key wrapped a DEK, and the encryption context bound into every wrap.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "base/bytes.h"
#include "base/status.h"

namespace kmsfs {

enum class ProviderId : uint8_t {
  kKeyring = 1,  // local keyring file (src/keys/keyring)
  kAwsKms = 2,   // AWS KMS or a KMS-compatible endpoint (src/keys/aws)
};
std::string_view provider_name(ProviderId p) noexcept;  // "keyring", "aws-kms"
std::optional<ProviderId> provider_from_name(std::string_view name) noexcept;

// Which key wrapped a DEK. For the keyring: key_id = key name, version >= 1.
// For AWS KMS: key_id = the key ARN that KMS returned (never an alias, so retargeting
// an alias never orphans files), version = 0 (KMS picks the material from the blob).
struct KeyRef {
  ProviderId provider = ProviderId::kKeyring;
  std::string key_id;
  uint32_t version = 0;

  bool operator==(const KeyRef&) const = default;
  std::string to_string() const;  // "keyring:main@3", "aws-kms:arn:aws:kms:..."
};

constexpr size_t kMaxKeyIdSize = 512;

// Well-formed UTF-8 (RFC 3629: no overlong forms, no surrogates, nothing past U+10FFFF).
// Key ids and encryption contexts are sent to KMS as JSON strings, which must be UTF-8.
bool is_utf8(std::string_view s) noexcept;
// Any C0 control (U+0000-U+001F), DEL, or C1 control (U+0080-U+009F) in UTF-8 text: a key
// id is printed in logs and error messages, where these could forge or hide lines.
bool has_control_chars(std::string_view utf8) noexcept;

// String pairs bound into every wrap (keyring AAD, KMS EncryptionContext). Always holds
// the filesystem id and the file id; never a path (paths change on rename and KMS logs
// the context in clear).
class EncryptionContext {
 public:
  static constexpr std::string_view kFsIdKey = "kmsfs:fs-id";
  static constexpr std::string_view kFileIdKey = "kmsfs:file-id";
  static constexpr std::string_view kPurposeKey = "kmsfs:purpose";
  static constexpr size_t kMaxPairs = 32;
  static constexpr size_t kMaxKeySize = 128;
  static constexpr size_t kMaxValueSize = 256;
  static constexpr size_t kMaxEncodedSize = 900;  // fits the header's immutable area

  // Refuses empty keys, keys or values that are not UTF-8, over-long keys/values and too
  // many pairs.
  Status set(std::string_view key, std::string_view value);
  std::optional<std::string_view> get(std::string_view key) const;
  const std::map<std::string, std::string>& pairs() const { return pairs_; }
  size_t size() const { return pairs_.size(); }

  // Canonical, unambiguous encoding: u16 count, then per pair in byte order of keys:
  // u16 key length, key, u16 value length, value. {"ab":"c"} and {"a":"bc"} differ.
  Bytes canonical() const;
  static Result<EncryptionContext> decode(ByteSpan canonical);

  bool operator==(const EncryptionContext&) const = default;

 private:
  std::map<std::string, std::string> pairs_;
};

using FileId = std::array<uint8_t, 16>;
using FsId = std::array<uint8_t, 16>;

}  // namespace kmsfs
