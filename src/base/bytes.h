// Byte spans and fixed-width little-endian encoding: the only way on-disk integers are
// written or read, so endianness is decided in one place.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace kmsfs {

using Bytes = std::vector<uint8_t>;
using ByteSpan = std::span<const uint8_t>;
using MutableByteSpan = std::span<uint8_t>;

inline ByteSpan as_bytes(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}
inline std::string_view as_chars(ByteSpan b) {
  return {reinterpret_cast<const char*>(b.data()), b.size()};
}

inline void put_le16(uint8_t* p, uint16_t v) { p[0] = uint8_t(v); p[1] = uint8_t(v >> 8); }
inline void put_le32(uint8_t* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = uint8_t(v >> (8 * i));
}
inline void put_le64(uint8_t* p, uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = uint8_t(v >> (8 * i));
}
inline uint16_t get_le16(const uint8_t* p) { return uint16_t(p[0] | (p[1] << 8)); }
inline uint32_t get_le32(const uint8_t* p) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}
inline uint64_t get_le64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

std::string to_hex(ByteSpan b);
// Returns false on odd length or a non-hex digit.
bool from_hex(std::string_view hex, Bytes& out);

// Appends to a growing buffer; used by encoders that then check the total against a limit.
class ByteWriter {
 public:
  void u8(uint8_t v) { buf_.push_back(v); }
  void u16(uint16_t v) { uint8_t b[2]; put_le16(b, v); raw({b, 2}); }
  void u32(uint32_t v) { uint8_t b[4]; put_le32(b, v); raw({b, 4}); }
  void u64(uint64_t v) { uint8_t b[8]; put_le64(b, v); raw({b, 8}); }
  void raw(ByteSpan b) { buf_.insert(buf_.end(), b.begin(), b.end()); }
  const Bytes& bytes() const { return buf_; }
  Bytes take() { return std::move(buf_); }
  size_t size() const { return buf_.size(); }

 private:
  Bytes buf_;
};

// Bounds-checked cursor over untrusted bytes: every read says whether it fit, so a
// malformed header can never read past its end.
class ByteReader {
 public:
  explicit ByteReader(ByteSpan b) : b_(b) {}
  bool u8(uint8_t& v) { if (left() < 1) return false; v = b_[pos_++]; return true; }
  bool u16(uint16_t& v) { if (left() < 2) return false; v = get_le16(&b_[pos_]); pos_ += 2; return true; }
  bool u32(uint32_t& v) { if (left() < 4) return false; v = get_le32(&b_[pos_]); pos_ += 4; return true; }
  bool u64(uint64_t& v) { if (left() < 8) return false; v = get_le64(&b_[pos_]); pos_ += 8; return true; }
  bool raw(size_t n, ByteSpan& out) {
    if (left() < n) return false;
    out = b_.subspan(pos_, n);
    pos_ += n;
    return true;
  }
  size_t left() const { return b_.size() - pos_; }
  size_t pos() const { return pos_; }

 private:
  ByteSpan b_;
  size_t pos_ = 0;
};

}  // namespace kmsfs
