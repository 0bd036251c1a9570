#include "keys/aws/base64.h"

#include <cstdint>

namespace kmsfs::aws {
namespace {

constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

// 0..63 for a character of the standard alphabet, -1 for any other byte, without a branch
// or a table lookup on the character: each range adds (value + 1) when `c` is inside it,
// tested by the sign of (low - c) & (c - high). libsodium 1.0.18's decoder reads bytes
// from 0x80 up as '/', which is why this is ours.
int sextet(unsigned char uc) {
  const int c = uc;
  int v = -1;
  v += (((0x40 - c) & (c - 0x5b)) >> 8) & (c - 64);  // 'A'..'Z' -> 0..25
  v += (((0x60 - c) & (c - 0x7b)) >> 8) & (c - 70);  // 'a'..'z' -> 26..51
  v += (((0x2f - c) & (c - 0x3a)) >> 8) & (c + 5);   // '0'..'9' -> 52..61
  v += (((0x2a - c) & (c - 0x2c)) >> 8) & 63;        // '+' -> 62
  v += (((0x2e - c) & (c - 0x30)) >> 8) & 64;        // '/' -> 63
  return v;
}

template <typename Out>
Out encode(ByteSpan in) {
  Out out;
  out.reserve((in.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 3 <= in.size(); i += 3) {
    const uint32_t v = uint32_t(in[i]) << 16 | uint32_t(in[i + 1]) << 8 | in[i + 2];
    for (int shift = 18; shift >= 0; shift -= 6) out += kAlphabet[(v >> shift) & 63];
  }
  if (const size_t left = in.size() - i; left > 0) {
    const uint32_t v = uint32_t(in[i]) << 16 | (left == 2 ? uint32_t(in[i + 1]) << 8 : 0);
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += left == 2 ? kAlphabet[(v >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

}  // namespace

std::string base64_encode(ByteSpan bytes) { return encode<std::string>(bytes); }
WipedString base64_encode_secret(ByteSpan bytes) { return encode<WipedString>(bytes); }

Result<size_t> base64_decode_into(std::string_view b64, uint8_t* out) {
  auto refused = [](const char* why) { return Status(Code::kInvalidArgument, std::string("not base64: ") + why); };
  if (b64.size() % 4 != 0) return refused("its length is not a multiple of 4 (padding missing or extra)");
  // The padding's position is not secret: it is the length of the plaintext.
  size_t pad = 0;
  if (!b64.empty() && b64.back() == '=') pad = b64[b64.size() - 2] == '=' ? 2 : 1;
  int bad = 0;  // negative once any character was outside the alphabet
  uint32_t pad_bits = 0;
  size_t n = 0;
  for (size_t i = 0; i < b64.size(); i += 4) {
    const size_t real = i + 4 == b64.size() ? 4 - pad : 4;
    uint32_t acc = 0;
    for (size_t k = 0; k < 4; ++k) {
      const int v = k < real ? sextet(static_cast<unsigned char>(b64[i + k])) : 0;
      bad |= v;
      acc = acc << 6 | uint32_t(v & 63);
    }
    out[n++] = uint8_t(acc >> 16);
    if (real > 2) out[n++] = uint8_t(acc >> 8);
    if (real > 3) out[n++] = uint8_t(acc);
    // Bits under the padding: set, they would give a second text for the same bytes.
    if (real < 4) pad_bits = acc & (real == 3 ? 0xffu : 0xffffu);
  }
  if (bad < 0) return refused("a character outside the standard alphabet (whitespace, '-', '_', '=' inside...)");
  if (pad_bits != 0) return refused("bits set under the padding (not the canonical encoding)");
  return n;
}

Result<Bytes> base64_decode(std::string_view b64) {
  Bytes out(base64_max_decoded(b64.size()));
  ASSIGN_OR_RETURN(size_t n, base64_decode_into(b64, out.data()));
  out.resize(n);
  return out;
}

}  // namespace kmsfs::aws
