#include "keys/keyring/key_spec.h"

#include <charconv>

namespace kmsfs {

bool valid_key_name(std::string_view name) noexcept {
  if (name.empty() || name.size() > kMaxKeyNameSize) return false;
  for (char c : name) {
    bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

Result<KeySpec> parse_key_spec(std::string_view spec) {
  auto bad = [&](const std::string& why) {
    return Status(Code::kInvalidArgument, "key spec '" + std::string(spec) + "': " + why);
  };
  KeySpec out;
  std::string_view name = spec;
  auto colon = spec.find(':');
  if (colon != std::string_view::npos) {
    name = spec.substr(0, colon);
    std::string_view v = spec.substr(colon + 1);
    // from_chars alone would accept a prefix ("2x") and we want digits only, no sign.
    if (v.empty() || v.find_first_not_of("0123456789") != std::string_view::npos)
      return bad("version must be a decimal number");
    uint32_t version = 0;
    auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), version);
    if (ec != std::errc() || end != v.data() + v.size()) return bad("version out of range");
    if (version == 0) return bad("versions start at 1");
    out.version = version;
  }
  if (!valid_key_name(name)) return bad("key names must match [A-Za-z0-9._-]{1,64}");
  out.name = std::string(name);
  return out;
}

}  // namespace kmsfs
