#include "base/encoding.h"

#include <algorithm>
#include <array>

namespace kmsfs {

namespace {

constexpr char kB64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
constexpr char kB32[] = "abcdefghijklmnopqrstuvwxyz234567";

template <size_t Bits>
constexpr std::array<int8_t, 256> reverse(const char* alphabet) {
  std::array<int8_t, 256> r{};
  for (auto& v : r) v = -1;
  for (size_t i = 0; i < (size_t{1} << Bits); ++i) r[static_cast<uint8_t>(alphabet[i])] = static_cast<int8_t>(i);
  return r;
}
constexpr auto kB64Rev = reverse<6>(kB64);
constexpr auto kB32Rev = reverse<5>(kB32);

// Generic MSB-first bit packing for 2^Bits-symbol alphabets.
template <size_t Bits>
std::string encode(ByteSpan b, const char* alphabet) {
  std::string out;
  out.reserve((b.size() * 8 + Bits - 1) / Bits);
  uint32_t acc = 0;
  size_t nbits = 0;
  for (uint8_t byte : b) {
    acc = (acc << 8) | byte;
    nbits += 8;
    while (nbits >= Bits) {
      nbits -= Bits;
      out.push_back(alphabet[(acc >> nbits) & ((1u << Bits) - 1)]);
    }
  }
  if (nbits > 0) out.push_back(alphabet[(acc << (Bits - nbits)) & ((1u << Bits) - 1)]);
  return out;
}

template <size_t Bits>
std::optional<Bytes> decode(std::string_view s, const std::array<int8_t, 256>& rev) {
  Bytes out;
  out.reserve(s.size() * Bits / 8);
  uint32_t acc = 0;
  size_t nbits = 0;
  for (char c : s) {
    const int8_t v = rev[static_cast<uint8_t>(c)];
    if (v < 0) return std::nullopt;
    acc = (acc << Bits) | static_cast<uint32_t>(v);
    nbits += Bits;
    if (nbits >= 8) {
      nbits -= 8;
      out.push_back(static_cast<uint8_t>(acc >> nbits));
    }
  }
  // Leftover bits must be padding zeros, and fewer than a whole byte's worth of symbols
  // (otherwise no encoder could have produced this length).
  if (nbits >= Bits || (acc & ((1u << nbits) - 1)) != 0) return std::nullopt;
  return out;
}

}  // namespace

std::string base64url_encode(ByteSpan b) { return encode<6>(b, kB64); }
std::optional<Bytes> base64url_decode(std::string_view s) { return decode<6>(s, kB64Rev); }
size_t base64url_encoded_size(size_t n) { return (n * 8 + 5) / 6; }

std::string base32_encode(ByteSpan b) { return encode<5>(b, kB32); }
std::optional<Bytes> base32_decode(std::string_view s) { return decode<5>(s, kB32Rev); }
size_t base32_encoded_size(size_t n) { return (n * 8 + 4) / 5; }

namespace {

void hex_escape(std::string& out, unsigned char c) {
  static constexpr char kHex[] = "0123456789abcdef";
  out += "\\x";
  out += kHex[c >> 4];
  out += kHex[c & 15];
}

// The length of the well-formed UTF-8 sequence at s[i] (RFC 3629: no overlong forms, no
// surrogates, nothing past U+10FFFF), 0 if there is none.
size_t utf8_length(std::string_view s, size_t i) {
  const auto b = [&](size_t k) { return static_cast<unsigned char>(s[i + k]); };
  const unsigned char c = b(0);
  size_t n = 0;
  unsigned char lo = 0x80, hi = 0xbf;  // the second byte's range
  if (c >= 0xc2 && c <= 0xdf) n = 2;
  else if (c >= 0xe0 && c <= 0xef) n = 3, lo = c == 0xe0 ? 0xa0 : 0x80, hi = c == 0xed ? 0x9f : 0xbf;
  else if (c >= 0xf0 && c <= 0xf4) n = 4, lo = c == 0xf0 ? 0x90 : 0x80, hi = c == 0xf4 ? 0x8f : 0xbf;
  else return 0;
  if (i + n > s.size() || b(1) < lo || b(1) > hi) return 0;
  for (size_t k = 2; k < n; ++k)
    if (b(k) < 0x80 || b(k) > 0xbf) return 0;
  return n;
}

}  // namespace

std::string printable(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c < 0x7f) {
      if (c == '\\') out += '\\';
      out += static_cast<char>(c);
      ++i;
      continue;
    }
    if (c == '\n' || c == '\r' || c == '\t') {
      out += c == '\n' ? "\\n" : c == '\r' ? "\\r" : "\\t";
      ++i;
      continue;
    }
    const size_t n = c >= 0x80 ? utf8_length(s, i) : 0;
    // A C1 control (U+0080..U+009F: c2 80..c2 9f) is a terminal command too.
    if (n == 0 || (n == 2 && c == 0xc2 && static_cast<unsigned char>(s[i + 1]) < 0xa0)) {
      for (size_t k = 0; k < std::max<size_t>(n, 1); ++k) hex_escape(out, static_cast<unsigned char>(s[i + k]));
      i += std::max<size_t>(n, 1);
      continue;
    }
    out.append(s.substr(i, n));
    i += n;
  }
  return out;
}

}  // namespace kmsfs
