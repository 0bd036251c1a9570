// Key names and the user's key spec ("main" or "main:3"). Names are restricted so they
// can appear unquoted in messages, KeyRef strings ("keyring:main@3") and file listings.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "base/status.h"

namespace kmsfs {

constexpr size_t kMaxKeyNameSize = 64;

// [A-Za-z0-9._-]{1,64}
bool valid_key_name(std::string_view name) noexcept;

struct KeySpec {
  std::string name;
  std::optional<uint32_t> version;  // nullopt: the newest enabled version
};

// "name" or "name:VERSION" (VERSION decimal, >= 1). kInvalidArgument otherwise.
Result<KeySpec> parse_key_spec(std::string_view spec);

}  // namespace kmsfs
