// The blob format: what it names, and that the encryption context is bound unambiguously.
#include "ciphertext.h"

#include <gtest/gtest.h>

#include "crypto/random.h"

namespace kmsfs::kms_local {
namespace {

const std::string kKeyId = "0b6d5c3e-1f2a-4b5c-8d9e-0f1a2b3c4d5e";

Bytes material() {
  Bytes m(kMaterialSize);
  random_bytes(m);
  return m;
}

TEST(Ciphertext, RoundTripNamesKeyAndVersion) {
  Bytes m = material();
  ContextMap ctx = {{"kmsfs:fs-id", "00112233"}, {"purpose", "dek"}};
  auto blob = seal_blob({kKeyId, 7}, m, as_bytes("hello"), ctx);
  ASSERT_TRUE(blob.ok()) << blob.status().to_string();
  auto header = parse_blob_header(*blob);
  ASSERT_TRUE(header.ok());
  EXPECT_EQ(header->key_id, kKeyId);
  EXPECT_EQ(header->material_version, 7u);
  auto plain = open_blob(*blob, m, ctx);
  ASSERT_TRUE(plain.ok()) << plain.status().to_string();
  EXPECT_EQ(as_chars(*plain), "hello");
}

TEST(Ciphertext, ContextIsBoundUnambiguously) {
  Bytes m = material();
  const ContextMap ab_c = {{"ab", "c"}}, a_bc = {{"a", "bc"}}, empty = {},
                   one_pair = {{"a", "b"}}, two_pairs = {{"a", ""}, {"b", ""}};
  for (const ContextMap* sealed : {&ab_c, &a_bc, &empty, &one_pair, &two_pairs}) {
    auto blob = seal_blob({kKeyId, 1}, m, as_bytes("x"), *sealed);
    ASSERT_TRUE(blob.ok());
    for (const ContextMap* opened : {&ab_c, &a_bc, &empty, &one_pair, &two_pairs}) {
      auto plain = open_blob(*blob, m, *opened);
      EXPECT_EQ(plain.ok(), sealed == opened);
      if (!plain.ok()) {
        EXPECT_EQ(plain.status().code(), Code::kCorrupt);
      }
    }
  }
  EXPECT_NE(canonical_context(ab_c), canonical_context(a_bc));
}

TEST(Ciphertext, EveryByteIsAuthenticated) {
  Bytes m = material();
  auto blob = seal_blob({kKeyId, 1}, m, as_bytes("secret data"), {});
  ASSERT_TRUE(blob.ok());
  for (size_t i = 0; i < blob->size(); ++i) {
    Bytes bad = *blob;
    bad[i] ^= 0x01;
    EXPECT_FALSE(open_blob(bad, m, {}).ok()) << "byte " << i;
  }
  Bytes other = material();
  EXPECT_FALSE(open_blob(*blob, other, {}).ok());
}

TEST(Ciphertext, ForeignAndTruncatedBlobsAreCorrupt) {
  Bytes m = material();
  auto blob = seal_blob({kKeyId, 1}, m, as_bytes("x"), {});
  ASSERT_TRUE(blob.ok());
  for (size_t n : {size_t(0), size_t(3), size_t(5), size_t(44), blob->size() - 1}) {
    ByteSpan cut(blob->data(), n);
    auto opened = open_blob(cut, m, {});
    EXPECT_FALSE(opened.ok()) << n;
  }
  EXPECT_EQ(parse_blob_header(as_bytes("AQICAHh-not-a-kms-local-blob-at-all")).status().code(),
            Code::kCorrupt);
}

}  // namespace
}  // namespace kmsfs::kms_local
