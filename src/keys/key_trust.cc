#include "keys/key_trust.h"

#include <algorithm>

namespace kmsfs {

std::string TrustedKey::to_string() const { return std::string(provider_name(provider)) + ":" + key_id; }

bool TrustedKey::matches(const KeyRef& ref) const { return ref.provider == provider && ref.key_id == key_id; }

bool KeyTrust::allows_provider(ProviderId p) const {
  return std::any_of(keys_.begin(), keys_.end(), [p](const TrustedKey& k) { return k.provider == p; });
}

bool KeyTrust::trusts(const KeyRef& ref) const {
  return std::any_of(keys_.begin(), keys_.end(), [&](const TrustedKey& k) { return k.matches(ref); });
}

Status KeyTrust::check(const KeyRef& ref) const {
  if (trusts(ref)) return Status::Ok();
  // The key id is attacker-chosen bytes: quote it printably and briefly.
  std::string shown;
  for (char c : ref.key_id.substr(0, 200)) {
    const auto u = static_cast<unsigned char>(c);
    if (u >= 0x20 && u < 0x7f) {
      shown += c;
    } else {
      static const char* kHex = "0123456789abcdef";
      shown += "\\x";
      shown += kHex[u >> 4];
      shown += kHex[u & 15];
    }
  }
  return Status(Code::kCorrupt, "names key " + std::string(provider_name(ref.provider)) + ":" + shown +
                                    ", which " + (source_.empty() ? "this command" : source_) +
                                    " does not trust (trusted: " + (keys_.empty() ? "none" : describe()) +
                                    "); no request was made for it");
}

void KeyTrust::add(const TrustedKey& k) {
  if (std::find(keys_.begin(), keys_.end(), k) == keys_.end()) keys_.push_back(k);
}

std::string KeyTrust::describe() const {
  std::string out;
  for (const auto& k : keys_) out += (out.empty() ? "" : ", ") + k.to_string();
  return out;
}

}  // namespace kmsfs
