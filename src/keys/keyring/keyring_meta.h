// The keyring's metadata: the non-secret JSON part of the file (id, KDF parameters, key
// names, versions and their states). Parsing validates every field and reports the first
// bad one by its JSON path ("meta.keys[0].versions: not consecutive"), so a damaged file
// is refused with a message an operator can act on.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/bytes.h"
#include "base/status.h"
#include "crypto/kdf.h"

namespace kmsfs {

// A pruned version's material was destroyed (`kmsfs keyring prune`); its entry stays so
// its number is never given out again and files under it are refused by name.
enum class KeyState : uint8_t { kEnabled, kDisabled, kPruned };
std::string_view key_state_name(KeyState s) noexcept;  // "enabled", "disabled", "pruned"

struct KeyVersionInfo {
  uint32_t version = 0;  // 1..n, consecutive
  std::string created;   // RFC 3339 UTC
  KeyState state = KeyState::kEnabled;
};

struct KeyInfo {
  std::string name;
  std::vector<KeyVersionInfo> versions;  // never empty; versions[i].version == i + 1
};

struct KdfMeta {
  std::array<uint8_t, kArgon2SaltSize> salt{};
  Argon2Params params;
};

struct KeyringMeta {
  std::string keyring_id;       // 32 lowercase hex characters
  std::string created;          // RFC 3339 UTC
  std::optional<KdfMeta> kdf;   // present exactly when the keyring is sealed
  std::vector<KeyInfo> keys;

  // Versions whose material the blob holds (all but the pruned ones).
  size_t material_count() const;
  bool any_pruned() const;
};

constexpr std::string_view kKdfAlgArgon2id13 = "argon2id13";
constexpr size_t kKeyringIdHexSize = 32;

// Bounds for KDF parameters read from a file. They are the only thing standing between
// a damaged or hostile keyring file and an attempt to allocate or spin without limit.
constexpr uint64_t kMinArgon2Ops = 1;
constexpr uint64_t kMaxArgon2Ops = 64;
constexpr uint64_t kMinArgon2Mem = 8192;                  // libsodium's minimum
constexpr uint64_t kMaxArgon2Mem = uint64_t{4} << 30;     // 4 GiB

// Compact JSON. No field holds secret material.
std::string encode_meta(const KeyringMeta& meta);
// kCorrupt with a message naming the field; `sealed` says whether "kdf" must be present.
Result<KeyringMeta> parse_meta(ByteSpan json, bool sealed);

}  // namespace kmsfs
