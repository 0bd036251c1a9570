#include "base/encoding.h"

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

}  // namespace kmsfs
