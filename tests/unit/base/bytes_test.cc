#include "base/bytes.h"

#include <gtest/gtest.h>

namespace kmsfs {
namespace {

TEST(Bytes, LittleEndianRoundTrip) {
  uint8_t b[8];
  put_le64(b, 0x0102030405060708ull);
  EXPECT_EQ(b[0], 0x08);
  EXPECT_EQ(b[7], 0x01);
  EXPECT_EQ(get_le64(b), 0x0102030405060708ull);
  put_le32(b, 0xdeadbeef);
  EXPECT_EQ(get_le32(b), 0xdeadbeefu);
  put_le16(b, 0xbeef);
  EXPECT_EQ(get_le16(b), 0xbeef);
}

TEST(Bytes, ReaderRefusesToReadPastEnd) {
  Bytes data = {1, 2, 3};
  ByteReader r(data);
  uint16_t v16;
  uint32_t v32;
  EXPECT_TRUE(r.u16(v16));
  EXPECT_EQ(v16, 0x0201);
  EXPECT_FALSE(r.u32(v32));
  ByteSpan s;
  EXPECT_FALSE(r.raw(2, s));
  EXPECT_TRUE(r.raw(1, s));
  EXPECT_EQ(r.left(), 0u);
}

TEST(Bytes, Hex) {
  Bytes b = {0x00, 0xab, 0xff};
  EXPECT_EQ(to_hex(b), "00abff");
  Bytes back;
  EXPECT_TRUE(from_hex("00ABff", back));
  EXPECT_EQ(back, b);
  EXPECT_FALSE(from_hex("abc", back));
  EXPECT_FALSE(from_hex("zz", back));
}

}  // namespace
}  // namespace kmsfs
