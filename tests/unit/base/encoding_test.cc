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
