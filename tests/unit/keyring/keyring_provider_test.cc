#include "keys/keyring/keyring_provider.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "crypto/kdf.h"
#include "keys/keyring/keyring_wrap.h"
#include "test_util.h"

namespace kmsfs {
namespace {

using testing::fast_kdf;
using testing::pass;
using testing::TempDir;

EncryptionContext ctx_of(std::initializer_list<std::pair<std::string, std::string>> pairs) {
  EncryptionContext ctx;
  for (const auto& [k, v] : pairs) EXPECT_TRUE(ctx.set(k, v).ok());
  return ctx;
}

EncryptionContext file_ctx(int n = 0) {
  return ctx_of({{std::string(EncryptionContext::kFsIdKey), "fs-1"},
                 {std::string(EncryptionContext::kFileIdKey), "file-" + std::to_string(n)}});
}

bool same(const SecureBuffer& a, const SecureBuffer& b) { return ct_equal(a.span(), b.span()); }

// A provider over an unsealed keyring (KDF cost is irrelevant here) with "main" at
// versions 1..`versions` and "other" at version 1.
class ProviderTest : public ::testing::Test {
 protected:
  void SetUp() override { provider_ = make(dir_ / "kr", 3); }

  static std::unique_ptr<KeyringProvider> make(const std::string& path, uint32_t versions) {
    std::vector<std::string> keys = {"main", "other"};
    auto k = Keyring::create(path, nullptr, {}, keys);
    EXPECT_TRUE(k.ok()) << k.status().to_string();
    for (uint32_t v = 2; v <= versions; ++v) EXPECT_TRUE(k->rotate("main").ok());
    EXPECT_TRUE(k->save().ok());
    return std::make_unique<KeyringProvider>(std::move(k).value());
  }

  KeyRef ref(const std::string& name, uint32_t version) {
    return KeyRef{ProviderId::kKeyring, name, version};
  }

  Status disable(const std::string& name, uint32_t version) {
    return provider_->update([&](Keyring& k) {
      return k.set_state(name, version, KeyState::kDisabled);
    });
  }

  std::string path() const { return dir_ / "kr"; }

  TempDir dir_;
  std::unique_ptr<KeyringProvider> provider_;
};

TEST_F(ProviderTest, ResolvePicksTheNewestEnabledVersion) {
  EXPECT_EQ(provider_->id(), ProviderId::kKeyring);
  auto r = provider_->resolve("main");
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(*r, ref("main", 3));
  EXPECT_EQ(r->to_string(), "keyring:main@3");
  ASSERT_TRUE(disable("main", 3).ok());
  EXPECT_EQ(*provider_->resolve("main"), ref("main", 2));
  EXPECT_EQ(*provider_->resolve("main:1"), ref("main", 1));
  EXPECT_EQ(*provider_->resolve("other"), ref("other", 1));
}

TEST_F(ProviderTest, ChangesToTheKeyringFileReachARunningProviderWithinASecond) {
  // Another process (kmsfs keyring rotate / disable) changes the file.
  auto dk = provider_->generate_data_key(ref("main", 3), file_ctx());
  ASSERT_TRUE(dk.ok());
  {
    auto other = Keyring::open(path(), nullptr);
    ASSERT_TRUE(other.ok()) << other.status().to_string();
    ASSERT_TRUE(other->rotate("main").ok());
    ASSERT_TRUE(other->set_state("main", 3, KeyState::kDisabled).ok());
    ASSERT_TRUE(other->save().ok());
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));
  EXPECT_EQ(*provider_->resolve("main"), ref("main", 4)) << "new files go under the new version at once";
  EXPECT_EQ(provider_->unwrap(ref("main", 3), dk->wrapped, file_ctx()).status().code(), Code::kPermissionDenied);
}

TEST_F(ProviderTest, ResolveErrors) {
  ASSERT_TRUE(disable("main", 2).ok());
  auto disabled = provider_->resolve("main:2");
  ASSERT_FALSE(disabled.ok());
  EXPECT_EQ(disabled.status().code(), Code::kPermissionDenied);
  EXPECT_EQ(disabled.status().message(), "key main version 2 is disabled in keyring " + path());

  auto missing = provider_->resolve("nope");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), Code::kNotFound);
  EXPECT_EQ(missing.status().message(), "key 'nope' not found in keyring " + path());
  EXPECT_EQ(provider_->resolve("main:4").status().code(), Code::kNotFound);
  EXPECT_EQ(provider_->resolve("main:x").status().code(), Code::kInvalidArgument);
  EXPECT_EQ(provider_->resolve("").status().code(), Code::kInvalidArgument);

  ASSERT_TRUE(disable("other", 1).ok());
  EXPECT_EQ(provider_->resolve("other").status().code(), Code::kPermissionDenied);
}

TEST_F(ProviderTest, WrapUnwrapRoundTrip) {
  auto dk = provider_->generate_data_key(ref("main", 3), file_ctx());
  ASSERT_TRUE(dk.ok()) << dk.status().to_string();
  EXPECT_EQ(dk->plaintext.size(), kDataKeySize);
  EXPECT_EQ(dk->wrapped.size(), 73u);
  EXPECT_EQ(dk->wrapped[0], 1);
  EXPECT_EQ(dk->ref, ref("main", 3));
  auto dek = provider_->unwrap(dk->ref, dk->wrapped, file_ctx());
  ASSERT_TRUE(dek.ok()) << dek.status().to_string();
  EXPECT_TRUE(same(*dek, dk->plaintext));

  auto dk2 = provider_->generate_data_key(ref("main", 3), file_ctx());
  ASSERT_TRUE(dk2.ok());
  EXPECT_FALSE(same(dk2->plaintext, dk->plaintext));
  EXPECT_NE(dk2->wrapped, dk->wrapped);
}

// The wrap is exactly what docs/KEYRING.md says: recompute it from the spec.
TEST_F(ProviderTest, WrapMatchesTheSpec) {
  EncryptionContext ctx = ctx_of({{"a", "bc"}});
  auto dk = provider_->generate_data_key(ref("main", 2), ctx);
  ASSERT_TRUE(dk.ok());
  auto k = Keyring::open(path(), nullptr);
  ASSERT_TRUE(k.ok());
  auto v = k->lookup("main", 2);
  ASSERT_TRUE(v.ok());
  auto wrap_key = hkdf_key(v->material, {}, "kmsfs keyring wrap v1");
  ASSERT_TRUE(wrap_key.ok());
  auto aead = Aead::create(CipherId::kXChaCha20Poly1305, wrap_key->span());
  ASSERT_TRUE(aead.ok());
  Bytes aad(as_bytes("kmsfs-keyring-wrap-v1").begin(), as_bytes("kmsfs-keyring-wrap-v1").end());
  for (int b : std::initializer_list<int>{4, 0, 'm', 'a', 'i', 'n', 2, 0, 0, 0}) aad.push_back(uint8_t(b));
  // ctx.canonical(): u16 count, u16 key length, key, u16 value length, value
  for (int b : std::initializer_list<int>{1, 0, 1, 0, 'a', 2, 0, 'b', 'c'}) aad.push_back(uint8_t(b));
  EXPECT_EQ(aad, keyring_wrap_aad("main", 2, ctx));
  ASSERT_EQ(dk->wrapped.size(), 1 + 24 + 32 + 16u);
  SecureBuffer dek(32);
  ASSERT_TRUE((*aead)->open(ByteSpan(dk->wrapped).subspan(1), aad, dek.span()).ok());
  EXPECT_TRUE(same(dek, dk->plaintext));
}

TEST_F(ProviderTest, AWrapOnlyOpensUnderItsKeyVersionAndContext) {
  auto dk = provider_->generate_data_key(ref("main", 1), ctx_of({{"a", "bc"}}));
  ASSERT_TRUE(dk.ok());
  auto expect_corrupt = [&](const KeyRef& r, ByteSpan w, const EncryptionContext& c) {
    auto out = provider_->unwrap(r, w, c);
    ASSERT_FALSE(out.ok());
    EXPECT_EQ(out.status().code(), Code::kCorrupt) << out.status().to_string();
  };
  expect_corrupt(ref("main", 1), dk->wrapped, ctx_of({{"ab", "c"}}));
  expect_corrupt(ref("main", 1), dk->wrapped, ctx_of({}));
  expect_corrupt(ref("main", 1), dk->wrapped, ctx_of({{"a", "bc"}, {"x", ""}}));
  expect_corrupt(ref("main", 2), dk->wrapped, ctx_of({{"a", "bc"}}));
  expect_corrupt(ref("other", 1), dk->wrapped, ctx_of({{"a", "bc"}}));

  auto msg = provider_->unwrap(ref("main", 2), dk->wrapped, ctx_of({{"ab", "c"}}));
  EXPECT_EQ(msg.status().message(),
            "wrapped key does not authenticate under keyring key main@2 with this context "
            "(wrong keyring, or the header was tampered with)");

  for (size_t off = 0; off < dk->wrapped.size(); ++off) {
    for (int bit = 0; bit < 8; ++bit) {
      Bytes bad = dk->wrapped;
      bad[off] ^= uint8_t(1u << bit);
      expect_corrupt(ref("main", 1), bad, ctx_of({{"a", "bc"}}));
    }
  }
  for (size_t len = 0; len < dk->wrapped.size(); ++len)
    expect_corrupt(ref("main", 1), ByteSpan(dk->wrapped).first(len), ctx_of({{"a", "bc"}}));
  Bytes longer = dk->wrapped;
  longer.push_back(0);
  expect_corrupt(ref("main", 1), longer, ctx_of({{"a", "bc"}}));

  // Still fine with the right everything.
  EXPECT_TRUE(provider_->unwrap(ref("main", 1), dk->wrapped, ctx_of({{"a", "bc"}})).ok());
}

TEST_F(ProviderTest, ADifferentKeyringWithTheSameNamesCannotUnwrap) {
  auto dk = provider_->generate_data_key(ref("main", 1), file_ctx());
  ASSERT_TRUE(dk.ok());
  auto stranger = make(dir_ / "kr2", 3);
  auto out = stranger->unwrap(ref("main", 1), dk->wrapped, file_ctx());
  ASSERT_FALSE(out.ok());
  EXPECT_EQ(out.status().code(), Code::kCorrupt);
}

TEST_F(ProviderTest, DisabledVersionRefusesUnwrapOthersKeepWorking) {
  auto v1 = provider_->generate_data_key(ref("main", 1), file_ctx(1));
  auto v2 = provider_->generate_data_key(ref("main", 2), file_ctx(2));
  auto v3 = provider_->generate_data_key(ref("main", 3), file_ctx(3));
  ASSERT_TRUE(v1.ok() && v2.ok() && v3.ok());
  ASSERT_TRUE(disable("main", 2).ok());

  auto out = provider_->unwrap(ref("main", 2), v2->wrapped, file_ctx(2));
  ASSERT_FALSE(out.ok());
  EXPECT_EQ(out.status().code(), Code::kPermissionDenied);
  EXPECT_EQ(out.status().message(), "key main version 2 is disabled in keyring " + path());
  auto gen = provider_->generate_data_key(ref("main", 2), file_ctx());
  EXPECT_EQ(gen.status().code(), Code::kPermissionDenied);

  EXPECT_TRUE(provider_->unwrap(ref("main", 1), v1->wrapped, file_ctx(1)).ok());
  EXPECT_TRUE(provider_->unwrap(ref("main", 3), v3->wrapped, file_ctx(3)).ok());

  // Re-enabling restores access: disabling withholds the key, it does not destroy it.
  ASSERT_TRUE(provider_->update([](Keyring& k) {
    return k.set_state("main", 2, KeyState::kEnabled);
  }).ok());
  auto back = provider_->unwrap(ref("main", 2), v2->wrapped, file_ctx(2));
  ASSERT_TRUE(back.ok());
  EXPECT_TRUE(same(*back, v2->plaintext));
}

TEST_F(ProviderTest, OldVersionsStillUnwrapAfterRotateAndReopen) {
  auto dk = provider_->generate_data_key(ref("main", 1), file_ctx());
  ASSERT_TRUE(dk.ok());
  uint32_t newest = 0;
  ASSERT_TRUE(provider_->update([&](Keyring& k) {
    ASSIGN_OR_RETURN(newest, k.rotate("main"));
    return k.save();
  }).ok());
  EXPECT_EQ(newest, 4u);
  EXPECT_EQ(*provider_->resolve("main"), ref("main", 4));
  auto dek = provider_->unwrap(ref("main", 1), dk->wrapped, file_ctx());
  ASSERT_TRUE(dek.ok());
  EXPECT_TRUE(same(*dek, dk->plaintext));

  auto reopened = KeyringProvider::open(path(), nullptr);
  ASSERT_TRUE(reopened.ok()) << reopened.status().to_string();
  auto again = (*reopened)->unwrap(ref("main", 1), dk->wrapped, file_ctx());
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(same(*again, dk->plaintext));
  EXPECT_EQ(*(*reopened)->resolve("main"), ref("main", 4));
}

TEST_F(ProviderTest, RewrapMovesToANewVersion) {
  auto dk = provider_->generate_data_key(ref("main", 1), file_ctx());
  ASSERT_TRUE(dk.ok());
  auto moved = provider_->rewrap(ref("main", 1), dk->wrapped, file_ctx(), ref("main", 2));
  ASSERT_TRUE(moved.ok()) << moved.status().to_string();
  EXPECT_EQ(moved->ref, ref("main", 2));
  EXPECT_EQ(moved->wrapped.size(), 73u);
  EXPECT_NE(moved->wrapped, dk->wrapped);

  ASSERT_TRUE(disable("main", 1).ok());
  EXPECT_EQ(provider_->unwrap(ref("main", 1), dk->wrapped, file_ctx()).status().code(),
            Code::kPermissionDenied);
  auto dek = provider_->unwrap(ref("main", 2), moved->wrapped, file_ctx());
  ASSERT_TRUE(dek.ok());
  EXPECT_TRUE(same(*dek, dk->plaintext));

  // Rewrapping the same blob twice gives different bytes (fresh nonce) for the same DEK.
  auto a = provider_->rewrap(ref("main", 2), moved->wrapped, file_ctx(), ref("other", 1));
  auto b = provider_->rewrap(ref("main", 2), moved->wrapped, file_ctx(), ref("other", 1));
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_NE(a->wrapped, b->wrapped);
  EXPECT_TRUE(same(*provider_->unwrap(ref("other", 1), b->wrapped, file_ctx()), dk->plaintext));
}

TEST_F(ProviderTest, RewrapErrors) {
  auto dk = provider_->generate_data_key(ref("main", 1), file_ctx());
  ASSERT_TRUE(dk.ok());
  // Wrong context: the unwrap half fails and nothing is produced.
  EXPECT_EQ(provider_->rewrap(ref("main", 1), dk->wrapped, file_ctx(9), ref("main", 2))
                .status().code(),
            Code::kCorrupt);
  EXPECT_EQ(provider_->rewrap(ref("main", 1), dk->wrapped, file_ctx(), ref("main", 9))
                .status().code(),
            Code::kNotFound);
  KeyRef kms{ProviderId::kAwsKms, "arn:aws:kms:eu-west-1:1:key/x", 0};
  EXPECT_EQ(provider_->rewrap(ref("main", 1), dk->wrapped, file_ctx(), kms).status().code(),
            Code::kInvalidArgument);
  EXPECT_EQ(provider_->unwrap(kms, dk->wrapped, file_ctx()).status().code(),
            Code::kInvalidArgument);
  ASSERT_TRUE(disable("main", 3).ok());
  EXPECT_EQ(provider_->rewrap(ref("main", 1), dk->wrapped, file_ctx(), ref("main", 3))
                .status().code(),
            Code::kPermissionDenied);
}

TEST_F(ProviderTest, UnknownKeysAreNotFound) {
  EXPECT_EQ(provider_->generate_data_key(ref("nope", 1), file_ctx()).status().code(),
            Code::kNotFound);
  EXPECT_EQ(provider_->generate_data_key(ref("main", 0), file_ctx()).status().code(),
            Code::kNotFound);
  Bytes junk(73, 1);
  EXPECT_EQ(provider_->unwrap(ref("main", 7), junk, file_ctx()).status().code(), Code::kNotFound);
}

TEST_F(ProviderTest, SealedKeyringProviderWorks) {
  auto pw = pass("pw");
  std::vector<std::string> keys = {"main"};
  ASSERT_TRUE(Keyring::create(dir_ / "sealed", &pw, fast_kdf(), keys).ok());
  auto p = KeyringProvider::open(dir_ / "sealed", &pw);
  ASSERT_TRUE(p.ok()) << p.status().to_string();
  auto r = (*p)->resolve("main");
  ASSERT_TRUE(r.ok());
  auto dk = (*p)->generate_data_key(*r, file_ctx());
  ASSERT_TRUE(dk.ok());
  EXPECT_TRUE((*p)->unwrap(*r, dk->wrapped, file_ctx()).ok());
  EXPECT_TRUE((*p)->info().sealed);
  auto wrong = pass("nope");
  EXPECT_EQ(KeyringProvider::open(dir_ / "sealed", &wrong).status().code(),
            Code::kPermissionDenied);
}

TEST_F(ProviderTest, ConcurrentGenerateAndUnwrap) {
  constexpr int kThreads = 8;
  constexpr int kIterations = 200;
  std::atomic<int> failures{0};
  std::atomic<bool> stop{false};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kIterations; ++i) {
        KeyRef r = ref(i % 2 ? "main" : "other", i % 2 ? uint32_t(1 + i % 3) : 1u);
        EncryptionContext ctx = file_ctx(t * kIterations + i);
        auto dk = provider_->generate_data_key(r, ctx);
        if (!dk.ok()) { ++failures; continue; }
        auto dek = provider_->unwrap(r, dk->wrapped, ctx);
        if (!dek.ok() || !same(*dek, dk->plaintext)) ++failures;
      }
    });
  }
  // An admin changing the keyring meanwhile (the writer side of the lock).
  std::thread admin([&] {
    while (!stop) {
      Status s = provider_->update([](Keyring& k) { return k.rotate("other").status(); });
      if (!s.ok()) ++failures;
      (void)provider_->resolve("other");
      (void)provider_->info();
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
  });
  for (auto& th : threads) th.join();
  stop = true;
  admin.join();
  EXPECT_EQ(failures.load(), 0);
}

}  // namespace
}  // namespace kmsfs
