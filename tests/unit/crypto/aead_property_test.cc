// Properties every AEAD must have, for both ciphers: round trip at any size, any single
// bit of tampering detected (and nothing decrypted handed out), fresh nonces, and
// thread safety of one shared object.
#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include <atomic>
#include <memory>
#include <random>
#include <thread>
#include <vector>

#include "crypto/aead.h"
#include "crypto/random.h"

namespace kmsfs {
namespace {

constexpr CipherId kBoth[] = {CipherId::kAes256Gcm, CipherId::kXChaCha20Poly1305};

std::unique_ptr<Aead> fresh(CipherId id) {
  uint8_t key[kAeadKeySize];
  random_bytes(key);
  auto a = Aead::create(id, key);
  RC_ASSERT(a.ok());
  return std::move(a).value();
}

// Large buffers come from a seeded PRNG: drawing 70,000 individually shrinkable bytes
// from rapidcheck would dominate the run time without finding anything more.
Bytes bytes_from_seed(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  Bytes b(n);
  for (auto& v : b) v = static_cast<uint8_t>(rng());
  return b;
}

CipherId gen_cipher() { return *rc::gen::elementOf(std::vector<CipherId>(std::begin(kBoth), std::end(kBoth))); }

RC_GTEST_PROP(AeadProperty, RoundTripAnySize, ()) {
  const CipherId id = gen_cipher();
  // inRange shrinks its range with rapidcheck's size parameter; resize to the nominal
  // size so the whole 0..70000 range is drawn, plus the block-boundary sizes explicitly.
  const auto size = *rc::gen::oneOf(
      rc::gen::resize(rc::kNominalSize, rc::gen::inRange<size_t>(0, 70001)),
      rc::gen::elementOf(std::vector<size_t>{0, 1, 15, 16, 17, 4095, 4096, 4097, 65535, 65536,
                                             65537, 70000}));
  const Bytes pt = bytes_from_seed(size, *rc::gen::arbitrary<uint64_t>());
  const auto aad = *rc::gen::container<std::vector<uint8_t>>(*rc::gen::inRange<size_t>(0, 300),
                                                              rc::gen::arbitrary<uint8_t>());
  auto a = fresh(id);
  Bytes sealed(pt.size() + kAeadOverhead);
  RC_ASSERT(a->seal(pt, aad, sealed).ok());
  Bytes back(pt.size());
  RC_ASSERT(a->open(sealed, aad, back).ok());
  RC_ASSERT(back == pt);
}

RC_GTEST_PROP(AeadProperty, AnySingleBitFlipIsDetected, ()) {
  const CipherId id = gen_cipher();
  const Bytes pt = bytes_from_seed(*rc::gen::inRange<size_t>(0, 5000), *rc::gen::arbitrary<uint64_t>());
  Bytes aad = *rc::gen::container<std::vector<uint8_t>>(*rc::gen::inRange<size_t>(0, 64),
                                                        rc::gen::arbitrary<uint8_t>());
  auto a = fresh(id);
  Bytes sealed(pt.size() + kAeadOverhead);
  RC_ASSERT(a->seal(pt, aad, sealed).ok());

  const size_t total_bits = (sealed.size() + aad.size()) * 8;
  const size_t bit = *rc::gen::inRange<size_t>(0, total_bits);
  uint8_t& byte = bit / 8 < sealed.size() ? sealed[bit / 8] : aad[bit / 8 - sealed.size()];
  byte ^= uint8_t(1u << (bit % 8));
  Bytes back(pt.size(), 0xa5);
  RC_ASSERT(a->open(sealed, aad, back).code() == Code::kCorrupt);
  RC_ASSERT(back == Bytes(pt.size(), 0));
}

class AeadEach : public ::testing::TestWithParam<CipherId> {};

// Exhaustive over every bit of nonce, ciphertext, tag and AAD of a small message.
TEST_P(AeadEach, EverySingleBitFlipFailsAndZeroesOutput) {
  uint8_t key[kAeadKeySize];
  random_bytes(key);
  auto a = std::move(Aead::create(GetParam(), key)).value();
  const Bytes pt = {'k', 'm', 's', 'f', 's', '!', 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
  Bytes aad = {'h', 'd', 'r', 1, 2};
  Bytes sealed(pt.size() + kAeadOverhead);
  ASSERT_TRUE(a->seal(pt, aad, sealed).ok());
  size_t checked = 0;
  for (Bytes* target : {&sealed, &aad}) {
    for (size_t i = 0; i < target->size() * 8; ++i) {
      (*target)[i / 8] ^= uint8_t(1u << (i % 8));
      Bytes back(pt.size(), 0xa5);
      const Status st = a->open(sealed, aad, back);
      ASSERT_EQ(st.code(), Code::kCorrupt) << "bit " << i;
      ASSERT_EQ(back, Bytes(pt.size(), 0)) << "bit " << i;
      (*target)[i / 8] ^= uint8_t(1u << (i % 8));
      ++checked;
    }
  }
  EXPECT_EQ(checked, (sealed.size() + aad.size()) * 8);
  Bytes back(pt.size());
  ASSERT_TRUE(a->open(sealed, aad, back).ok());  // restored message still opens
  EXPECT_EQ(back, pt);
}

TEST_P(AeadEach, TruncationAndAadSwapFail) {
  uint8_t key[kAeadKeySize];
  random_bytes(key);
  auto a = std::move(Aead::create(GetParam(), key)).value();
  const Bytes pt(64, 0x11);
  Bytes sealed(pt.size() + kAeadOverhead);
  ASSERT_TRUE(a->seal(pt, as_bytes("block 1"), sealed).ok());
  Bytes back(pt.size());
  EXPECT_EQ(a->open(sealed, as_bytes("block 2"), back).code(), Code::kCorrupt);
  EXPECT_EQ(a->open(sealed, {}, back).code(), Code::kCorrupt);
  Bytes shorter(pt.size() - 1);
  EXPECT_EQ(a->open(ByteSpan(sealed).first(sealed.size() - 1), as_bytes("block 1"), shorter).code(),
            Code::kCorrupt);
}

TEST_P(AeadEach, SealsOfSamePlaintextDiffer) {
  uint8_t key[kAeadKeySize];
  random_bytes(key);
  auto a = std::move(Aead::create(GetParam(), key)).value();
  const Bytes pt(100, 0x42);
  Bytes s1(pt.size() + kAeadOverhead), s2(pt.size() + kAeadOverhead);
  ASSERT_TRUE(a->seal(pt, {}, s1).ok());
  ASSERT_TRUE(a->seal(pt, {}, s2).ok());
  EXPECT_NE(Bytes(s1.begin(), s1.begin() + kAeadNonceSize), Bytes(s2.begin(), s2.begin() + kAeadNonceSize));
  EXPECT_NE(Bytes(s1.begin() + kAeadNonceSize, s1.end()), Bytes(s2.begin() + kAeadNonceSize, s2.end()));
}

void seal_open_from_threads(CipherId id, int threads, int iters) {
  uint8_t key[kAeadKeySize];
  random_bytes(key);
  std::shared_ptr<const Aead> a(std::move(Aead::create(id, key)).value());
  std::atomic<int> failures{0};
  std::vector<Bytes> last(threads);
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      std::mt19937_64 rng(static_cast<uint64_t>(t));
      for (int i = 0; i < iters; ++i) {
        const size_t n = rng() % 9000;
        Bytes pt(n);
        for (auto& v : pt) v = static_cast<uint8_t>(rng());
        const uint8_t aad[2] = {uint8_t(t), uint8_t(i)};
        Bytes sealed(n + kAeadOverhead), back(n);
        if (!a->seal(pt, aad, sealed).ok() || !a->open(sealed, aad, back).ok() || back != pt)
          failures.fetch_add(1);
        if (i == iters - 1) last[t] = sealed;
      }
    });
  }
  for (auto& th : pool) th.join();
  EXPECT_EQ(failures.load(), 0);
  // Messages sealed on one thread open on another.
  for (int t = 0; t < threads; ++t) {
    const uint8_t aad[2] = {uint8_t(t), uint8_t(iters - 1)};
    Bytes back(last[t].size() - kAeadOverhead);
    EXPECT_TRUE(a->open(last[t], aad, back).ok()) << t;
  }
}

TEST_P(AeadEach, EightThreadsSealAndOpenOnOneObject) { seal_open_from_threads(GetParam(), 8, 400); }

// More callers than the XAES context pool has slots: the surplus contexts are created
// and freed on the fly, which must be just as correct.
TEST_P(AeadEach, MoreThreadsThanPooledContexts) { seal_open_from_threads(GetParam(), 20, 100); }

INSTANTIATE_TEST_SUITE_P(BothCiphers, AeadEach, ::testing::ValuesIn(kBoth),
                         [](const auto& p) {
                           return p.param == CipherId::kAes256Gcm ? "Xaes" : "XChaCha";
                         });

}  // namespace
}  // namespace kmsfs
