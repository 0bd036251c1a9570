#include "format/key_ref.h"

namespace kmsfs {

std::string_view provider_name(ProviderId p) noexcept {
  switch (p) {
    case ProviderId::kKeyring: return "keyring";
    case ProviderId::kAwsKms: return "aws-kms";
  }
  return "unknown";
}

std::optional<ProviderId> provider_from_name(std::string_view name) noexcept {
  if (name == "keyring") return ProviderId::kKeyring;
  if (name == "aws-kms") return ProviderId::kAwsKms;
  return std::nullopt;
}

bool is_utf8(std::string_view s) noexcept {
  size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t n;
    unsigned char lo = 0x80, hi = 0xBF;  // bounds of the second byte
    if (c >= 0xC2 && c <= 0xDF) {
      n = 1;
    } else if (c >= 0xE0 && c <= 0xEF) {
      n = 2;
      if (c == 0xE0) lo = 0xA0;  // overlong
      if (c == 0xED) hi = 0x9F;  // surrogates
    } else if (c >= 0xF0 && c <= 0xF4) {
      n = 3;
      if (c == 0xF0) lo = 0x90;  // overlong
      if (c == 0xF4) hi = 0x8F;  // past U+10FFFF
    } else {
      return false;  // continuation byte, overlong C0/C1, or F5..FF
    }
    if (s.size() - i <= n) return false;
    for (size_t k = 1; k <= n; ++k) {
      const auto b = static_cast<unsigned char>(s[i + k]);
      if (b < (k == 1 ? lo : 0x80) || b > (k == 1 ? hi : 0xBF)) return false;
    }
    i += n + 1;
  }
  return true;
}

bool has_control_chars(std::string_view s) noexcept {
  for (size_t i = 0; i < s.size(); ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x20 || c == 0x7F) return true;
    if (c == 0xC2 && i + 1 < s.size()) {
      const auto d = static_cast<unsigned char>(s[i + 1]);
      if (d >= 0x80 && d <= 0x9F) return true;
    }
  }
  return false;
}

std::string KeyRef::to_string() const {
  std::string s(provider_name(provider));
  s += ':';
  s += key_id;
  if (provider == ProviderId::kKeyring) {
    s += '@';
    s += std::to_string(version);
  }
  return s;
}

Status EncryptionContext::set(std::string_view key, std::string_view value) {
  if (key.empty()) return Status(Code::kInvalidArgument, "encryption context: empty key");
  if (!is_utf8(key) || !is_utf8(value))
    return Status(Code::kInvalidArgument, "encryption context: a key or value is not UTF-8");
  if (key.size() > kMaxKeySize)
    return Status(Code::kInvalidArgument, "encryption context: key longer than 128 bytes");
  if (value.size() > kMaxValueSize)
    return Status(Code::kInvalidArgument,
                  "encryption context: value of '" + std::string(key) + "' longer than 256 bytes");
  if (!pairs_.count(std::string(key)) && pairs_.size() >= kMaxPairs)
    return Status(Code::kInvalidArgument, "encryption context: more than 32 pairs");
  pairs_[std::string(key)] = std::string(value);
  if (canonical().size() > kMaxEncodedSize) {
    pairs_.erase(std::string(key));
    return Status(Code::kInvalidArgument, "encryption context: larger than 900 bytes encoded");
  }
  return Status::Ok();
}

std::optional<std::string_view> EncryptionContext::get(std::string_view key) const {
  auto it = pairs_.find(std::string(key));
  if (it == pairs_.end()) return std::nullopt;
  return std::string_view(it->second);
}

Bytes EncryptionContext::canonical() const {
  // std::map<std::string> orders keys as memcmp does (char_traits<char>::lt compares as
  // unsigned char), which is the order the spec requires.
  ByteWriter w;
  w.u16(static_cast<uint16_t>(pairs_.size()));
  for (const auto& [k, v] : pairs_) {
    w.u16(static_cast<uint16_t>(k.size()));
    w.raw(as_bytes(k));
    w.u16(static_cast<uint16_t>(v.size()));
    w.raw(as_bytes(v));
  }
  return w.take();
}

Result<EncryptionContext> EncryptionContext::decode(ByteSpan canonical) {
  auto bad = [](const char* why) {
    return Status(Code::kCorrupt, std::string("encryption context: ") + why);
  };
  if (canonical.size() > kMaxEncodedSize) return bad("too large");
  ByteReader r(canonical);
  uint16_t n;
  if (!r.u16(n)) return bad("truncated");
  if (n > kMaxPairs) return bad("too many pairs");
  EncryptionContext ctx;
  std::string prev;
  for (uint16_t i = 0; i < n; ++i) {
    uint16_t kl, vl;
    ByteSpan k, v;
    if (!r.u16(kl) || !r.raw(kl, k) || !r.u16(vl) || !r.raw(vl, v)) return bad("truncated");
    std::string key(as_chars(k));
    if (!is_utf8(key) || !is_utf8(as_chars(v))) return bad("a key or value is not UTF-8");
    if (i > 0 && !(prev < key)) return bad("keys not in canonical order");
    Status s = ctx.set(key, as_chars(v));
    if (!s.ok()) return bad(s.message().c_str());
    prev = std::move(key);
  }
  if (r.left() != 0) return bad("trailing bytes");
  return ctx;
}

}  // namespace kmsfs
