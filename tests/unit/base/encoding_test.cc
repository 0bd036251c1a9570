#include "base/encoding.h"

#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

namespace kmsfs {
namespace {

// RFC 4648 §10 vectors, unpadded; base64url differs from base64 only in '-' and '_'.
TEST(Encoding, Rfc4648Base64Vectors) {
  const std::pair<const char*, const char*> v[] = {
      {"", ""}, {"f", "Zg"}, {"fo", "Zm8"}, {"foo", "Zm9v"}, {"foob", "Zm9vYg"},
      {"fooba", "Zm9vYmE"}, {"foobar", "Zm9vYmFy"}};
  for (auto [plain, enc] : v) {
    EXPECT_EQ(base64url_encode(as_bytes(plain)), enc);
    auto d = base64url_decode(enc);
    ASSERT_TRUE(d);
    EXPECT_EQ(as_chars(*d), plain);
    EXPECT_EQ(base64url_encoded_size(strlen(plain)), strlen(enc));
  }
  const uint8_t hi[] = {0xfb, 0xff};
  EXPECT_EQ(base64url_encode(hi), "-_8");
}

TEST(Encoding, Rfc4648Base32VectorsLowercase) {
  const std::pair<const char*, const char*> v[] = {
      {"", ""}, {"f", "my"}, {"fo", "mzxq"}, {"foo", "mzxw6"}, {"foob", "mzxw6yq"},
      {"fooba", "mzxw6ytb"}, {"foobar", "mzxw6ytboi"}};
  for (auto [plain, enc] : v) {
    EXPECT_EQ(base32_encode(as_bytes(plain)), enc);
    auto d = base32_decode(enc);
    ASSERT_TRUE(d);
    EXPECT_EQ(as_chars(*d), plain);
    EXPECT_EQ(base32_encoded_size(strlen(plain)), strlen(enc));
  }
}

TEST(Encoding, RejectsWhatNoEncoderProduces) {
  EXPECT_FALSE(base64url_decode("Zg="));     // padding
  EXPECT_FALSE(base64url_decode("Zm9v/"));   // standard-alphabet '/'
  EXPECT_FALSE(base64url_decode("Z"));       // impossible length
  EXPECT_FALSE(base64url_decode("Zh"));      // non-zero trailing bits ("Zg" is canonical)
  EXPECT_FALSE(base32_decode("MY"));         // uppercase
  EXPECT_FALSE(base32_decode("mz"));         // non-zero trailing bits
  EXPECT_FALSE(base32_decode("m"));
  EXPECT_FALSE(base32_decode("my1"));        // '1' is not in the alphabet
}

RC_GTEST_PROP(Encoding, RoundTripsAndIsCanonical, (const std::vector<uint8_t>& b)) {
  const std::string e64 = base64url_encode(b);
  RC_ASSERT(e64.find_first_of("/+=") == std::string::npos);
  RC_ASSERT(base64url_decode(e64) == std::optional<Bytes>(b));
  const std::string e32 = base32_encode(b);
  RC_ASSERT(base32_decode(e32) == std::optional<Bytes>(b));
  RC_ASSERT(e64.size() == base64url_encoded_size(b.size()));
  RC_ASSERT(e32.size() == base32_encoded_size(b.size()));
}

}  // namespace
}  // namespace kmsfs

namespace kmsfs {
namespace {

TEST(Printable, ControlCharactersBackslashesAndBrokenUtf8AreEscapedTheRestKept) {
  EXPECT_EQ(printable("plain name.txt"), "plain name.txt");
  EXPECT_EQ(printable("two\nlines"), "two\\nlines");
  EXPECT_EQ(printable("a\rb\tc"), "a\\rb\\tc");
  EXPECT_EQ(printable("\x1b[31mred"), "\\x1b[31mred");
  EXPECT_EQ(printable(std::string("nul\0x", 5)), "nul\\x00x");
  EXPECT_EQ(printable("del\x7f"), "del\\x7f");
  EXPECT_EQ(printable("back\\slash"), "back\\\\slash");  // so "\\n" and a newline differ
  EXPECT_EQ(printable("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x94\x91"), "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x94\x91");
  EXPECT_EQ(printable("csi\xc2\x9b" "2J"), "csi\\xc2\\x9b2J");  // U+009B, a C1 control
  EXPECT_EQ(printable("bad\xff\xc3"), "bad\\xff\\xc3");      // not UTF-8, and cut short
  EXPECT_EQ(printable("\xe0\x80\xaf"), "\\xe0\\x80\\xaf");   // overlong
  EXPECT_EQ(printable("\xed\xa0\x80"), "\\xed\\xa0\\x80");   // a surrogate
  // Nothing it prints is a control character.
  for (int c = 0; c < 256; ++c)
    for (char out : printable(std::string(1, static_cast<char>(c))))
      EXPECT_TRUE(static_cast<unsigned char>(out) >= 0x20 && static_cast<unsigned char>(out) != 0x7f) << c;
}

}  // namespace
}  // namespace kmsfs
