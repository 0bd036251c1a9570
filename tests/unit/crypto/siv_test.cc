#include "crypto/siv.h"
#include "unhex.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace kmsfs {
namespace {

using testing::unhex;

// RFC 5297 A.1: deterministic authenticated encryption (AES-128-SIV, 256-bit key).
TEST(Siv, Rfc5297DeterministicVector) {
  const Bytes key = unhex("fffefdfcfbfaf9f8f7f6f5f4f3f2f1f0f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff");
  const Bytes ad = unhex("101112131415161718191a1b1c1d1e1f2021222324252627");
  const Bytes pt = unhex("112233445566778899aabbccddee");
  auto siv = Siv::create(key);
  ASSERT_TRUE(siv.ok());
  const std::vector<ByteSpan> ads{ad};
  auto ct = siv->seal(ads, pt);
  ASSERT_TRUE(ct.ok());
  EXPECT_EQ(to_hex(*ct), "85632d07c6e8f37f950acd320a2ecc9340c02b9690c4dc04daef7f6afe5c");
  auto back = siv->open(ads, *ct);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(*back, pt);
}

// RFC 5297 A.2: several associated-data components (the nonce is the last one).
TEST(Siv, Rfc5297MultipleAssociatedData) {
  const Bytes key = unhex("7f7e7d7c7b7a79787776757473727170404142434445464748494a4b4c4d4e4f");
  const Bytes ad1 = unhex("00112233445566778899aabbccddeeffdeaddadadeaddadaffeeddccbbaa99887766554433221100");
  const Bytes ad2 = unhex("102030405060708090a0");
  const Bytes nonce = unhex("09f911029d74e35bd84156c5635688c0");
  const Bytes pt = unhex("7468697320697320736f6d6520706c61696e7465787420746f20656e6372797074207573696e67205349562d414553");
  auto siv = Siv::create(key);
  ASSERT_TRUE(siv.ok());
  const std::vector<ByteSpan> ads{ad1, ad2, nonce};
  auto ct = siv->seal(ads, pt);
  ASSERT_TRUE(ct.ok());
  EXPECT_EQ(to_hex(*ct),
            "7bdb6e3b432667eb06f4d14bff2fbd0fcb900f2fddbe404326601965c889bf17"
            "dba77ceb094fa663b7a3f748ba8af829ea64ad544a272e9c485b62a3fd5c0d");
}

// AES-256-SIV (the key size kmsfs uses), answer computed independently with pyca/cryptography:
//   AESSIV(bytes(range(64))).encrypt(b"2026-payroll.xlsx" + b"\x0f" * 15, [b"kmsfs v1 name"])
TEST(Siv, Aes256SivMatchesIndependentImplementation) {
  Bytes key(64);
  for (size_t i = 0; i < key.size(); ++i) key[i] = uint8_t(i);
  std::string pt = "2026-payroll.xlsx" + std::string(15, '\x0f');
  auto siv = Siv::create(key);
  ASSERT_TRUE(siv.ok());
  const std::vector<ByteSpan> ads{as_bytes("kmsfs v1 name")};
  auto ct = siv->seal(ads, as_bytes(pt));
  ASSERT_TRUE(ct.ok());
  EXPECT_EQ(to_hex(*ct),
            "cba097fe03e31919fb453e24ae6a1be9fc67663cac45507a201765b1693f4993"
            "76932dc4994c73a7590717058461a417");
}

TEST(Siv, TamperingAnyByteOrTheAssociatedDataFails) {
  const Bytes key(64, 7);
  auto siv = Siv::create(key);
  ASSERT_TRUE(siv.ok());
  const std::vector<ByteSpan> ads{as_bytes("ctx")};
  auto ct = siv->seal(ads, as_bytes("hello world"));
  ASSERT_TRUE(ct.ok());
  for (size_t i = 0; i < ct->size(); ++i) {
    Bytes bad = *ct;
    bad[i] ^= 0x01;
    auto r = siv->open(ads, bad);
    ASSERT_FALSE(r.ok()) << "byte " << i;
    EXPECT_EQ(r.status().code(), Code::kCorrupt);
  }
  const std::vector<ByteSpan> other{as_bytes("ctX")};
  EXPECT_EQ(siv->open(other, *ct).status().code(), Code::kCorrupt);
  EXPECT_EQ(siv->open(ads, ByteSpan(ct->data(), 15)).status().code(), Code::kCorrupt);
}

TEST(Siv, DeterministicAndKeyDependent) {
  auto a = Siv::create(Bytes(64, 1));
  auto b = Siv::create(Bytes(64, 2));
  ASSERT_TRUE(a.ok() && b.ok());
  const std::vector<ByteSpan> ads{as_bytes("n")};
  EXPECT_EQ(*a->seal(ads, as_bytes("x")), *a->seal(ads, as_bytes("x")));
  EXPECT_NE(*a->seal(ads, as_bytes("x")), *b->seal(ads, as_bytes("x")));
  EXPECT_NE(*a->seal(ads, as_bytes("x")), *a->seal(ads, as_bytes("y")));
}

TEST(Siv, RefusesOtherKeySizes) {
  EXPECT_EQ(Siv::create(Bytes(48)).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(Siv::create(Bytes(16)).status().code(), Code::kInvalidArgument);
}

}  // namespace
}  // namespace kmsfs
