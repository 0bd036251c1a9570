// Known-answer tests: the ciphers must interoperate with every other implementation of
// the same spec, or existing vaults stop opening.
#include <gtest/gtest.h>
#include <openssl/evp.h>

#include <memory>
#include <string>
#include <vector>

#include "crypto/aead.h"
#include "unhex.h"

namespace kmsfs {
namespace {

using testing::unhex;

std::unique_ptr<Aead> make(CipherId id, ByteSpan key) {
  auto a = Aead::create(id, key);
  EXPECT_TRUE(a.ok()) << a.status().to_string();
  return std::move(a).value();
}

struct Kat {
  CipherId id;
  Bytes key;
  Bytes nonce;
  Bytes pt;
  Bytes aad;
  std::string ct_tag_hex;  // ciphertext || tag, as the spec prints them (no nonce)
};

void check_kat(const Kat& k) {
  auto a = make(k.id, k.key);
  Bytes sealed(k.pt.size() + kAeadOverhead);
  ASSERT_TRUE(a->seal_with_nonce(k.nonce, k.pt, k.aad, sealed).ok());
  EXPECT_EQ(to_hex(ByteSpan(sealed).first(kAeadNonceSize)), to_hex(k.nonce));
  EXPECT_EQ(to_hex(ByteSpan(sealed).subspan(kAeadNonceSize)), k.ct_tag_hex);
  Bytes back(k.pt.size());
  ASSERT_TRUE(a->open(sealed, k.aad, back).ok());
  EXPECT_EQ(back, k.pt);
}

Bytes bytes_of(std::string_view s) { return Bytes(s.begin(), s.end()); }

// c2sp.org/XAES-256-GCM, "Test vectors".
TEST(XaesKat, C2spVectorNoAad) {
  check_kat({CipherId::kAes256Gcm, Bytes(32, 0x01), bytes_of("ABCDEFGHIJKLMNOPQRSTUVWX"),
             bytes_of("XAES-256-GCM"), {},
             "ce546ef63c9cc60765923609" "b33a9a1974e96e52daf2fcf7075e2271"});
}

TEST(XaesKat, C2spVectorWithAad) {
  check_kat({CipherId::kAes256Gcm, Bytes(32, 0x03), bytes_of("ABCDEFGHIJKLMNOPQRSTUVWX"),
             bytes_of("XAES-256-GCM"), bytes_of("c2sp.org/XAES-256-GCM"),
             "986ec1832593df5443a17943" "7fd083bf3fdb41abd740a21f71eb769d"});
}

// draft-irtf-cfrg-xchacha-03, A.3.1.
TEST(XChaChaKat, DraftA31) {
  check_kat({CipherId::kXChaCha20Poly1305,
             unhex("808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f"),
             unhex("404142434445464748494a4b4c4d4e4f5051525354555657"),
             bytes_of("Ladies and Gentlemen of the class of '99: If I could offer you only one "
                      "tip for the future, sunscreen would be it."),
             unhex("50515253c0c1c2c3c4c5c6c7"),
             "bd6d179d3e83d43b9576579493c0e939572a1700252bfaccbed2902c21396cbb"
             "731c7f1b0b4aa6440bf3a82f4eda7e39ae64c6708c54c216cb96b72e1213b452"
             "2f8c9ba40db5d945b11b69b982c1bb9e3f3fac2bc369488f76b2383565d3fff9"
             "21f9664c97637da9768812f615c68b13b52e"
             "c0875924c1c7987947deafd8780acf49"});
}

struct MdCtxFree {
  void operator()(EVP_MD_CTX* p) const { EVP_MD_CTX_free(p); }
};
using MdCtx = std::unique_ptr<EVP_MD_CTX, MdCtxFree>;

// SHAKE-128 of the empty string read as one long stream. OpenSSL 3.0 has no incremental
// squeeze, but an XOF's output is a prefix-stable stream, so one long read is equivalent.
class ShakeStream {
 public:
  explicit ShakeStream(size_t total) : buf_(total) {
    MdCtx ctx(EVP_MD_CTX_new());
    EXPECT_EQ(EVP_DigestInit_ex2(ctx.get(), EVP_shake128(), nullptr), 1);
    EXPECT_EQ(EVP_DigestFinalXOF(ctx.get(), buf_.data(), buf_.size()), 1);
  }
  ByteSpan read(size_t n) {
    if (pos_ + n > buf_.size()) {
      ADD_FAILURE() << "SHAKE stream exhausted";
      return {};
    }
    ByteSpan s(buf_.data() + pos_, n);
    pos_ += n;
    return s;
  }

 private:
  Bytes buf_;
  size_t pos_ = 0;
};

// c2sp.org/XAES-256-GCM, "Accumulated randomized tests": keys, nonces, plaintexts and
// AADs drawn from one SHAKE-128 stream, all ciphertexts fed into a second SHAKE-128.
TEST(XaesKat, C2spAccumulated10k) {
  ShakeStream s(8 << 20);  // 10,000 iterations draw ~3.2 MB
  EXPECT_EQ(to_hex(s.read(16)), "7f9c2ba4e88f827d616045507605853e");  // SHAKE128("") sanity
  s = ShakeStream(8 << 20);

  MdCtx d(EVP_MD_CTX_new());
  ASSERT_EQ(EVP_DigestInit_ex2(d.get(), EVP_shake128(), nullptr), 1);
  for (int i = 0; i < 10000; ++i) {
    const ByteSpan key = s.read(32);
    const ByteSpan nonce = s.read(24);
    const ByteSpan pt = s.read(s.read(1)[0]);
    const ByteSpan aad = s.read(s.read(1)[0]);
    auto a = make(CipherId::kAes256Gcm, key);
    Bytes sealed(pt.size() + kAeadOverhead);
    ASSERT_TRUE(a->seal_with_nonce(nonce, pt, aad, sealed).ok());
    Bytes back(pt.size());
    ASSERT_TRUE(a->open(sealed, aad, back).ok());
    ASSERT_TRUE(std::equal(back.begin(), back.end(), pt.begin(), pt.end()));
    // The spec hashes ciphertext || tag (Go's Seal output), not our nonce prefix.
    const ByteSpan ct = ByteSpan(sealed).subspan(kAeadNonceSize);
    ASSERT_EQ(EVP_DigestUpdate(d.get(), ct.data(), ct.size()), 1);
  }
  uint8_t digest[32];
  ASSERT_EQ(EVP_DigestFinalXOF(d.get(), digest, sizeof digest), 1);
  EXPECT_EQ(to_hex(digest), "e6b9edf2df6cec60c8cbd864e2211b597fb69a529160cd040d56c0c210081939");
}

TEST(AeadNames, RoundTrip) {
  for (CipherId id : {CipherId::kAes256Gcm, CipherId::kXChaCha20Poly1305}) {
    auto back = cipher_from_name(cipher_name(id));
    ASSERT_TRUE(back.has_value());
    EXPECT_EQ(*back, id);
    EXPECT_TRUE(cipher_known(static_cast<uint8_t>(id)));
  }
  EXPECT_EQ(cipher_name(CipherId::kAes256Gcm), "aes-256-gcm");
  EXPECT_EQ(cipher_name(CipherId::kXChaCha20Poly1305), "xchacha20-poly1305");
  EXPECT_FALSE(cipher_from_name("AES-256-GCM").has_value());
  EXPECT_FALSE(cipher_from_name("").has_value());
  EXPECT_FALSE(cipher_known(0));
  EXPECT_FALSE(cipher_known(3));
}

TEST(AeadCreate, RejectsBadKeysAndCiphers) {
  EXPECT_EQ(Aead::create(CipherId::kAes256Gcm, Bytes(16, 0)).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(Aead::create(CipherId::kXChaCha20Poly1305, Bytes(33, 0)).status().code(),
            Code::kInvalidArgument);
  EXPECT_EQ(Aead::create(static_cast<CipherId>(9), Bytes(32, 0)).status().code(),
            Code::kInvalidArgument);
  auto a = Aead::create(CipherId::kAes256Gcm, Bytes(32, 0));
  ASSERT_TRUE(a.ok());
  EXPECT_EQ((*a)->id(), CipherId::kAes256Gcm);
}

class AeadArgs : public ::testing::TestWithParam<CipherId> {};

TEST_P(AeadArgs, ValidatesSizes) {
  auto a = make(GetParam(), Bytes(32, 7));
  const Bytes pt(10, 1);
  Bytes out(pt.size() + kAeadOverhead);
  EXPECT_EQ(a->seal(pt, {}, MutableByteSpan(out).first(out.size() - 1)).code(), Code::kInvalidArgument);
  Bytes big(out.size() + 1);
  EXPECT_EQ(a->seal(pt, {}, big).code(), Code::kInvalidArgument);
  EXPECT_EQ(a->seal(pt, {}, MutableByteSpan()).code(), Code::kInvalidArgument);
  EXPECT_EQ(a->seal_with_nonce(Bytes(12, 0), pt, {}, out).code(), Code::kInvalidArgument);
  EXPECT_EQ(a->seal_with_nonce(Bytes(25, 0), pt, {}, out).code(), Code::kInvalidArgument);

  ASSERT_TRUE(a->seal(pt, {}, out).ok());
  Bytes back(pt.size());
  EXPECT_EQ(a->open(out, {}, MutableByteSpan(back).first(9)).code(), Code::kInvalidArgument);
  Bytes back_big(pt.size() + 1);
  EXPECT_EQ(a->open(out, {}, back_big).code(), Code::kInvalidArgument);
  // Shorter than nonce + tag cannot be a sealed message: treat as damaged data.
  EXPECT_EQ(a->open(ByteSpan(out).first(kAeadOverhead - 1), {}, MutableByteSpan()).code(),
            Code::kCorrupt);
  EXPECT_TRUE(a->open(out, {}, back).ok());
  EXPECT_EQ(back, pt);
}

TEST_P(AeadArgs, RejectsOverlappingBuffers) {
  auto a = make(GetParam(), Bytes(32, 7));
  Bytes buf(100 + kAeadOverhead);
  EXPECT_EQ(a->seal(ByteSpan(buf).subspan(kAeadNonceSize, 100), {}, buf).code(),
            Code::kInvalidArgument);
  Bytes pt(100, 3), sealed(100 + kAeadOverhead);
  ASSERT_TRUE(a->seal(pt, {}, sealed).ok());
  EXPECT_EQ(a->open(sealed, {}, MutableByteSpan(sealed).subspan(kAeadNonceSize, 100)).code(),
            Code::kInvalidArgument);
}

TEST_P(AeadArgs, EmptyPlaintextAndAad) {
  auto a = make(GetParam(), Bytes(32, 5));
  Bytes out(kAeadOverhead);
  ASSERT_TRUE(a->seal({}, {}, out).ok());
  EXPECT_TRUE(a->open(out, {}, MutableByteSpan()).ok());
  out[kAeadNonceSize] ^= 1;  // the tag still authenticates the empty message
  EXPECT_EQ(a->open(out, {}, MutableByteSpan()).code(), Code::kCorrupt);
}

TEST_P(AeadArgs, WrongKeyFails) {
  auto a = make(GetParam(), Bytes(32, 5));
  auto b = make(GetParam(), Bytes(32, 6));
  const Bytes pt(33, 9);
  Bytes sealed(pt.size() + kAeadOverhead), back(pt.size(), 0xff);
  ASSERT_TRUE(a->seal(pt, as_bytes("aad"), sealed).ok());
  const Status st = b->open(sealed, as_bytes("aad"), back);
  EXPECT_EQ(st.code(), Code::kCorrupt);
  EXPECT_EQ(st.message(), "authentication failed");
  EXPECT_EQ(back, Bytes(pt.size(), 0));
}

INSTANTIATE_TEST_SUITE_P(BothCiphers, AeadArgs,
                         ::testing::Values(CipherId::kAes256Gcm, CipherId::kXChaCha20Poly1305),
                         [](const auto& p) {
                           return p.param == CipherId::kAes256Gcm ? "Xaes" : "XChaCha";
                         });

}  // namespace
}  // namespace kmsfs
