#include "crypto/kdf.h"
#include "unhex.h"

#include <gtest/gtest.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/kdf.h>
#include <openssl/params.h>

#include <random>
#include <string>
#include <vector>

namespace kmsfs {
namespace {

using testing::unhex;

std::string hex(ByteSpan b) { return to_hex(b); }

// RFC 5869 A.1: basic test case with SHA-256.
TEST(Hkdf, Rfc5869Case1) {
  const Bytes ikm(22, 0x0b);
  const Bytes salt = unhex("000102030405060708090a0b0c");
  const Bytes info = unhex("f0f1f2f3f4f5f6f7f8f9");
  uint8_t okm[42];
  ASSERT_TRUE(hkdf_sha256(ikm, salt, as_chars(info), okm).ok());
  EXPECT_EQ(hex(okm),
            "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865");
}

// RFC 5869 A.3: zero-length salt and info.
TEST(Hkdf, Rfc5869Case3) {
  const Bytes ikm(22, 0x0b);
  uint8_t okm[42];
  ASSERT_TRUE(hkdf_sha256(ikm, {}, "", okm).ok());
  EXPECT_EQ(hex(okm),
            "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8");
}

// RFC 5869 A.2: longer inputs and outputs (three blocks of output, 80-byte salt and info).
TEST(Hkdf, Rfc5869Case2) {
  Bytes ikm(80), salt(80), info(80);
  for (int i = 0; i < 80; ++i) {
    ikm[i] = static_cast<uint8_t>(i);
    salt[i] = static_cast<uint8_t>(0x60 + i);
    info[i] = static_cast<uint8_t>(0xb0 + i);
  }
  uint8_t okm[82];
  ASSERT_TRUE(hkdf_sha256(ikm, salt, as_chars(info), okm).ok());
  EXPECT_EQ(hex(okm),
            "b11e398dc80327a1c8e7f78c596a49344f012eda2d4efad8a050cc4c19afa97c59045a99cac7827271cb41c65e590e09"
            "da3275600c2f09b8367793a9aca3db71cc30c58179ec3e87c14c01d5c1f3434f1d87");
}

// OpenSSL's own HKDF and HMAC as the oracle, over random lengths (empty inputs, keys
// longer than the block, outputs that end mid-block).
TEST(Hkdf, AgreesWithOpenSslOnRandomInputs) {
  std::mt19937 rng(5869);
  auto random_bytes = [&](size_t n) {
    Bytes b(n);
    for (auto& x : b) x = static_cast<uint8_t>(rng());
    return b;
  };
  EVP_KDF* kdf = EVP_KDF_fetch(nullptr, "HKDF", nullptr);
  ASSERT_NE(kdf, nullptr);
  for (int round = 0; round < 300; ++round) {
    const Bytes ikm = random_bytes(rng() % 150), salt = random_bytes(rng() % 150), info = random_bytes(rng() % 150);
    const size_t len = 1 + rng() % 300;
    std::vector<uint8_t> ours(len), theirs(len);
    ASSERT_TRUE(hkdf_sha256(ikm, salt, as_chars(info), ours).ok());
    EVP_KDF_CTX* ctx = EVP_KDF_CTX_new(kdf);
    static uint8_t empty = 0;
    auto ptr = [](const Bytes& b) { return b.empty() ? &empty : const_cast<uint8_t*>(b.data()); };
    char digest[] = "SHA256";
    const OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, digest, 0),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, ptr(ikm), ikm.size()),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, ptr(salt), salt.size()),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, ptr(info), info.size()),
        OSSL_PARAM_construct_end(),
    };
    ASSERT_EQ(EVP_KDF_derive(ctx, theirs.data(), theirs.size(), params), 1);
    EVP_KDF_CTX_free(ctx);
    ASSERT_EQ(hex(ours), hex(theirs)) << "round " << round;

    const Digest32 mac = hmac_sha256(salt, ikm);
    uint8_t want[32];
    unsigned int n = 0;
    ASSERT_NE(HMAC(EVP_sha256(), ptr(salt), static_cast<int>(salt.size()), ptr(ikm), ikm.size(), want, &n), nullptr);
    ASSERT_EQ(hex(mac), hex(ByteSpan(want, n))) << "round " << round;
  }
  EVP_KDF_free(kdf);
}

TEST(Hkdf, OutputLengthLimits) {
  const Bytes ikm(32, 1);
  std::vector<uint8_t> max(255 * 32);
  EXPECT_TRUE(hkdf_sha256(ikm, {}, "x", max).ok());
  std::vector<uint8_t> too_long(255 * 32 + 1);
  EXPECT_EQ(hkdf_sha256(ikm, {}, "x", too_long).code(), Code::kInvalidArgument);
  EXPECT_EQ(hkdf_sha256(ikm, {}, "x", MutableByteSpan()).code(), Code::kInvalidArgument);
}

TEST(Hkdf, KeyIntoSecureBufferMatchesAndDependsOnInfo) {
  const Bytes ikm(32, 9);
  const Bytes salt(16, 3);
  auto a = hkdf_key(ikm, salt, "kmsfs file key");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->size(), 32u);
  uint8_t direct[32];
  ASSERT_TRUE(hkdf_sha256(ikm, salt, "kmsfs file key", direct).ok());
  EXPECT_TRUE(ct_equal(a->span(), direct));
  auto b = hkdf_key(ikm, salt, "kmsfs name key");
  ASSERT_TRUE(b.ok());
  EXPECT_FALSE(ct_equal(a->span(), b->span()));
  EXPECT_EQ(hkdf_key(ikm, salt, "x", 9000).status().code(), Code::kInvalidArgument);
}

// RFC 4231 test case 2: key shorter than the block, ASCII data.
TEST(Hmac, Rfc4231Case2) {
  const Digest32 d = hmac_sha256(as_bytes("Jefe"), as_bytes("what do ya want for nothing?"));
  EXPECT_EQ(hex(d), "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}

TEST(Hmac, EmptyKeyAndData) {
  // HMAC-SHA256("", "") is a well-known value.
  EXPECT_EQ(hex(hmac_sha256({}, {})),
            "b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad");
}

TEST(Sha256, KnownValues) {
  EXPECT_EQ(hex(sha256({})), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(hex(sha256(as_bytes("abc"))),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

Argon2Params fast_params() { return {2, 1 << 20}; }  // tests only: 1 MiB, 2 passes

TEST(Argon2id, RoundTripIsDeterministic) {
  const std::string pw = "correct horse battery staple";
  const Bytes salt(kArgon2SaltSize, 0x42);
  uint8_t a[32], b[32];
  ASSERT_TRUE(argon2id(pw, salt, fast_params(), a).ok());
  ASSERT_TRUE(argon2id(pw, salt, fast_params(), b).ok());
  EXPECT_EQ(hex(a), hex(b));
}

TEST(Argon2id, SaltPassphraseAndParamsChangeOutput) {
  const std::string pw = "hunter2";
  const Bytes s1(kArgon2SaltSize, 1), s2(kArgon2SaltSize, 2);
  uint8_t a[32], b[32], c[32], d[32];
  ASSERT_TRUE(argon2id(pw, s1, fast_params(), a).ok());
  ASSERT_TRUE(argon2id(pw, s2, fast_params(), b).ok());
  ASSERT_TRUE(argon2id(std::string("hunter3"), s1, fast_params(), c).ok());
  ASSERT_TRUE(argon2id(pw, s1, {3, 1 << 20}, d).ok());
  EXPECT_NE(hex(a), hex(b));
  EXPECT_NE(hex(a), hex(c));
  EXPECT_NE(hex(a), hex(d));
}

// Known answer from the reference argon2 CLI
// (`echo -n 123 | argon2 ABCDEFGHIJKLMNOP -id -v 13 -k 1024 -t 5`, p = 1, 32 bytes),
// which is what crypto_pwhash computes for memlimit 1 MiB, opslimit 5.
TEST(Argon2id, KnownAnswer) {
  uint8_t out[32];
  ASSERT_TRUE(argon2id(std::string("123"), as_bytes("ABCDEFGHIJKLMNOP"), {5, 1 << 20}, out).ok());
  EXPECT_EQ(hex(out), "3c5d010180ba0cf5b6b858cba23b318e42d33088983c404598599c3b029ecac6");
}

TEST(Argon2id, RefusesOutOfRangeParameters) {
  const std::string pw = "pw";
  const Bytes salt(kArgon2SaltSize, 0);
  uint8_t out[32];
  auto code = [&](Argon2Params p) { return argon2id(pw, salt, p, out).code(); };
  EXPECT_EQ(code({0, 1 << 20}), Code::kInvalidArgument);                      // no passes
  EXPECT_EQ(code({uint64_t{1} << 33, 1 << 20}), Code::kInvalidArgument);      // > OPSLIMIT_MAX
  EXPECT_EQ(code({2, 1024}), Code::kInvalidArgument);                         // < 8 KiB
  EXPECT_EQ(code({2, (uint64_t{4} << 30) + 1}), Code::kInvalidArgument);      // > 4 GiB
  EXPECT_EQ(code({2, uint64_t{1} << 40}), Code::kInvalidArgument);            // a tampered 1 TiB
  EXPECT_EQ(argon2id(pw, Bytes(8, 0), fast_params(), out).code(), Code::kInvalidArgument);
  uint8_t tiny[8];
  EXPECT_EQ(argon2id(pw, salt, fast_params(), tiny).code(), Code::kInvalidArgument);
}

TEST(Argon2id, Profiles) {
  auto i = argon2_profile("interactive");
  auto m = argon2_profile("moderate");
  auto s = argon2_profile("sensitive");
  ASSERT_TRUE(i.ok() && m.ok() && s.ok());
  EXPECT_EQ(i->memlimit, 64u << 20);
  EXPECT_EQ(m->memlimit, 256u << 20);
  EXPECT_EQ(s->memlimit, uint64_t{1} << 30);
  EXPECT_LT(i->opslimit, m->opslimit);
  EXPECT_LT(m->opslimit, s->opslimit);
  EXPECT_EQ(argon2_profile("paranoid").status().code(), Code::kInvalidArgument);
}

}  // namespace
}  // namespace kmsfs
