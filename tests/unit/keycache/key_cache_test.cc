// The key cache against an in-process provider that counts its unwraps and can be slowed
// down, made unreachable or made to refuse. Time is a test clock, except for the waits a
// caller does (deadlines), which are real and short.
#include "keys/cache/key_cache.h"

#include <gtest/gtest.h>

#include <array>
#include <atomic>
#include <barrier>
#include <thread>

namespace kmsfs {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

class FakeProvider final : public KeyProvider {
 public:
  ProviderId id() const noexcept override { return ProviderId::kAwsKms; }
  bool remote() const override { return is_remote; }
  Result<KeyRef> resolve(std::string_view spec) override { return KeyRef{ProviderId::kAwsKms, std::string(spec), 0}; }
  Result<DataKey> generate_data_key(const KeyRef&, const EncryptionContext&) override {
    return Status(Code::kUnsupported, "not in this test");
  }
  Result<SecureBuffer> unwrap(const KeyRef&, ByteSpan wrapped, const EncryptionContext&) override {
    ++calls;
    last_thread = std::this_thread::get_id();
    std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms.load()));
    switch (mode.load()) {
      case Mode::kOk: break;
      case Mode::kDown: return Status(Code::kUnavailable, "KMS unreachable");
      case Mode::kDenied: return Status(Code::kPermissionDenied, "key disabled");
    }
    SecureBuffer k(kDataKeySize);
    for (size_t i = 0; i < k.size(); ++i) k.data()[i] = static_cast<uint8_t>(wrapped.empty() ? 1 : wrapped[0] + i);
    return k;
  }
  Result<Rewrapped> rewrap(const KeyRef&, ByteSpan, const EncryptionContext&, const KeyRef&) override {
    return Status(Code::kUnsupported, "not in this test");
  }

  enum class Mode { kOk, kDown, kDenied };
  std::atomic<bool> is_remote{true};  // a KMS stand-in unless a test says otherwise
  std::atomic<std::thread::id> last_thread;
  std::atomic<int> calls{0};
  std::atomic<int> delay_ms{0};
  std::atomic<Mode> mode{Mode::kOk};
};

class KeyCacheTest : public ::testing::Test {
 protected:
  KeyCacheTest() : providers_([](ProviderId) -> Result<std::unique_ptr<KeyProvider>> {
      return Status(Code::kNotFound, "only the fake");
    }) {
    auto p = std::make_unique<FakeProvider>();
    fake_ = p.get();
    providers_.add(std::move(p));
  }

  std::unique_ptr<KeyCache> make(KeyCacheOptions o = {}) {
    o.clock = [this] { return Clock::time_point(std::chrono::milliseconds(now_ms_.load())); };
    auto c = std::make_unique<KeyCache>(providers_, o);
    c->set_eviction_listener([this](const CacheKeyId& id) {
      std::lock_guard l(mu_);
      evicted_.push_back(id);
    });
    return c;
  }

  Result<KeyCache::Lease> get(KeyCache& c, uint8_t which = 7) {
    const Bytes wrapped{which, 2, 3};
    return c.unwrap(ref_, wrapped, ctx_);
  }
  static CacheKeyId id(uint8_t which = 7) {
    const Bytes wrapped{which, 2, 3};
    return KeyCache::id_of(KeyRef{ProviderId::kAwsKms, "arn:k", 0}, wrapped, EncryptionContext());
  }
  void advance(std::chrono::milliseconds d) { now_ms_ += d.count(); }
  // Waits (real time) until `pred` holds; the cache's threads run on real time.
  template <class P>
  static bool eventually(P pred) {
    for (int i = 0; i < 300; ++i) {
      if (pred()) return true;
      std::this_thread::sleep_for(10ms);
    }
    return pred();
  }
  size_t evicted_count() {
    std::lock_guard l(mu_);
    return evicted_.size();
  }

  KeyProviders providers_;
  FakeProvider* fake_ = nullptr;
  KeyRef ref_{ProviderId::kAwsKms, "arn:k", 0};
  EncryptionContext ctx_;
  std::atomic<int64_t> now_ms_{1'000'000};
  std::mutex mu_;
  std::vector<CacheKeyId> evicted_;
};

TEST_F(KeyCacheTest, OpensWithinTheTtlCostOneCallAndOneMoreAfterIt) {
  KeyCacheOptions o;
  o.ttl = 60s;
  auto c = make(o);
  for (int i = 0; i < 100; ++i) ASSERT_TRUE(get(*c).ok());
  EXPECT_EQ(fake_->calls, 1);
  EXPECT_EQ(c->stats().hits, 99u);
  advance(61s);
  // Expired and evicted (the listener hears of it just after the entry goes).
  ASSERT_TRUE(eventually([&] { return c->stats().keys == 0 && evicted_count() == 1; }));
  ASSERT_TRUE(get(*c).ok());
  EXPECT_EQ(fake_->calls, 2);
}

TEST_F(KeyCacheTest, ConcurrentUnwrapsOfOneKeyMakeOneCall) {
  auto c = make();
  fake_->delay_ms = 200;
  std::barrier start(50);
  std::atomic<int> ok{0};
  std::vector<std::thread> ts;
  for (int i = 0; i < 50; ++i) {
    ts.emplace_back([&] {
      start.arrive_and_wait();
      auto l = get(*c);
      if (l.ok() && l->key && l->key->size() == kDataKeySize && l->key->data()[0] == 7) ++ok;
    });
  }
  for (auto& t : ts) t.join();
  EXPECT_EQ(ok, 50);
  EXPECT_EQ(fake_->calls, 1);
  EXPECT_EQ(c->stats().coalesced + 1, c->stats().misses);
}

TEST_F(KeyCacheTest, HotKeysAreRefreshedBeforeExpiryWithoutAMiss) {
  KeyCacheOptions o;
  o.ttl = 60s;
  o.refresh_ahead = 5s;
  auto c = make(o);
  const auto t0 = Clock::time_point(std::chrono::milliseconds(now_ms_.load()));
  ASSERT_TRUE(get(*c).ok());
  ASSERT_TRUE(get(*c).ok());  // used since its fetch: hot
  advance(56s);               // inside the refresh window
  ASSERT_TRUE(eventually([&] { return fake_->calls == 2; }));
  ASSERT_TRUE(eventually([&] { return c->stats().refreshes == 1; }));
  // A key nobody used since its refresh is not refreshed again.
  advance(55s);  // t0 + 111 s: inside the new window (expiry at t0 + 116 s)
  std::this_thread::sleep_for(300ms);
  EXPECT_EQ(fake_->calls, 2);
  auto l = get(*c);  // now it is hot again: refreshed in the background
  ASSERT_TRUE(l.ok());
  EXPECT_EQ(l->valid_until, t0 + 116s);
  ASSERT_TRUE(eventually([&] { return c->stats().refreshes == 2; }));
  advance(10s);  // past the old expiry: the refreshed entry answers, no caller waited
  l = get(*c);
  ASSERT_TRUE(l.ok());
  EXPECT_EQ(l->valid_until, t0 + 111s + 60s);
  EXPECT_EQ(c->stats().misses, 1u);
}

TEST_F(KeyCacheTest, ARefreshThatIsRefusedEvictsTheKeyAtOnce) {
  KeyCacheOptions o;
  o.ttl = 60s;
  o.refresh_ahead = 5s;
  auto c = make(o);
  ASSERT_TRUE(get(*c).ok());
  ASSERT_TRUE(get(*c).ok());
  fake_->mode = FakeProvider::Mode::kDenied;
  advance(56s);
  ASSERT_TRUE(eventually([&] { return evicted_count() == 1; }));
  EXPECT_EQ(evicted_.front(), id());
  auto l = get(*c);  // still inside the old TTL, but the key is gone
  EXPECT_EQ(l.status().code(), Code::kPermissionDenied);
}

TEST_F(KeyCacheTest, StaleIfErrorServesExpiredKeysOnlyWhileUnreachableAndWithinItsBound) {
  KeyCacheOptions o;
  o.ttl = 60s;
  o.stale_if_error = 120s;
  auto c = make(o);
  ASSERT_TRUE(get(*c).ok());
  fake_->mode = FakeProvider::Mode::kDown;
  advance(70s);
  auto l = get(*c);
  ASSERT_TRUE(l.ok()) << l.status().to_string();
  EXPECT_EQ(c->stats().stale_served, 1u);
  // Served stale again without a new call until the retry pause ends.
  const int calls = fake_->calls;
  ASSERT_TRUE(get(*c).ok());
  EXPECT_EQ(fake_->calls, calls);
  // A refusal is never papered over.
  fake_->mode = FakeProvider::Mode::kDenied;
  advance(2s);
  EXPECT_EQ(get(*c).status().code(), Code::kPermissionDenied);
  // The refusal is remembered for a moment: no call per access of a revoked key.
  fake_->mode = FakeProvider::Mode::kOk;
  const int calls_after_refusal = fake_->calls;
  EXPECT_EQ(get(*c).status().code(), Code::kPermissionDenied);
  EXPECT_EQ(fake_->calls, calls_after_refusal);
  advance(2s);
  // Past TTL + stale_if_error an unreachable KMS fails.
  ASSERT_TRUE(get(*c).ok());
  fake_->mode = FakeProvider::Mode::kDown;
  advance(60s + 121s);
  ASSERT_TRUE(eventually([&] { return c->stats().keys == 0; }));
  EXPECT_EQ(get(*c).status().code(), Code::kUnavailable);
}

TEST_F(KeyCacheTest, WithoutStaleIfErrorAnUnreachableKmsFailsAtExpiry) {
  KeyCacheOptions o;
  o.ttl = 60s;
  auto c = make(o);
  ASSERT_TRUE(get(*c).ok());
  fake_->mode = FakeProvider::Mode::kDown;
  advance(61s);
  EXPECT_EQ(get(*c).status().code(), Code::kUnavailable);
}

TEST_F(KeyCacheTest, ASlowProviderCostsCallersTheDeadlineNotTheFetch) {
  KeyCacheOptions o;
  o.wait_deadline = 100ms;
  auto c = make(o);
  ASSERT_TRUE(get(*c, 1).ok());  // another key, cached
  fake_->delay_ms = 1000;
  auto t0 = Clock::now();
  EXPECT_EQ(get(*c, 2).status().code(), Code::kUnavailable);
  EXPECT_LT(Clock::now() - t0, 900ms);
  auto t1 = Clock::now();
  EXPECT_TRUE(get(*c, 1).ok());  // cached keys do not wait for the slow fetch
  EXPECT_LT(Clock::now() - t1, 500ms);  // waiting for the slow fetch would take 800 ms more
  EXPECT_EQ(c->stats().timeouts, 1u);
  // The fetch went on and landed: the next caller gets the key without a new call.
  ASSERT_TRUE(eventually([&] { return c->stats().keys == 2; }));
  const int calls = fake_->calls;
  EXPECT_TRUE(get(*c, 2).ok());
  EXPECT_EQ(fake_->calls, calls);
}

// A local provider (the keyring) answers in microseconds: asked in the caller's thread, with
// no hand-off; a remote one on the cache's threads.
TEST_F(KeyCacheTest, LocalProvidersAreAskedInTheCallersThreadRemoteOnesOnTheCaches) {
  auto c = make();
  ASSERT_TRUE(get(*c, 1).ok());
  EXPECT_NE(fake_->last_thread.load(), std::this_thread::get_id());
  fake_->is_remote = false;
  ASSERT_TRUE(get(*c, 2).ok());
  EXPECT_EQ(fake_->last_thread.load(), std::this_thread::get_id());
  EXPECT_EQ(fake_->calls, 2);
}

TEST_F(KeyCacheTest, LeastRecentlyUsedKeysGoBeyondTheLimit) {
  KeyCacheOptions o;
  o.max_keys = 3;
  auto c = make(o);
  for (uint8_t k = 1; k <= 3; ++k) ASSERT_TRUE(get(*c, k).ok());
  ASSERT_TRUE(get(*c, 1).ok());  // 1 is now the most recent; 2 the least
  ASSERT_TRUE(get(*c, 4).ok());
  EXPECT_EQ(c->stats().keys, 3u);
  ASSERT_EQ(evicted_count(), 1u);
  EXPECT_EQ(evicted_.front(), id(2));
  const int calls = fake_->calls;
  ASSERT_TRUE(get(*c, 1).ok());
  EXPECT_EQ(fake_->calls, calls);
}

TEST_F(KeyCacheTest, FlushDropsEveryKeyAndTheMemoryIsZeroed) {
  auto c = make();
  const uint8_t* where = nullptr;
  {
    auto l = get(*c);
    ASSERT_TRUE(l.ok());
    where = l->key->data();
    EXPECT_FALSE(secure_slab_slot_is_zero(where, kDataKeySize));
  }
  c->flush();
  EXPECT_EQ(evicted_count(), 1u);
  EXPECT_EQ(c->stats().keys, 0u);
  EXPECT_TRUE(secure_slab_slot_is_zero(where, kDataKeySize));
  ASSERT_TRUE(get(*c).ok());
  EXPECT_EQ(fake_->calls, 2);
}

// Flushes racing fetches: every caller gets its own key's bytes, never another key, a freed
// buffer (ASan) or an error, and nothing outlives the cache and its leases.
TEST_F(KeyCacheTest, FlushesRacingFetchesNeverHandOutAWrongOrFreedKey) {
  auto c = make();
  std::atomic<bool> stop{false};
  std::thread flusher([&] {
    while (!stop) c->flush();
  });
  std::vector<std::thread> users;
  std::array<const uint8_t*, 3> last{};
  for (uint8_t k = 1; k <= 3; ++k) {
    users.emplace_back([&, k] {
      for (int i = 0; i < 400; ++i) {
        auto l = get(*c, k);
        ASSERT_TRUE(l.ok()) << l.status().message();
        ASSERT_EQ(l->key->size(), kDataKeySize);
        for (size_t b = 0; b < kDataKeySize; ++b) ASSERT_EQ(l->key->data()[b], static_cast<uint8_t>(k + b));
        last[k - 1] = l->key->data();
      }
    });
  }
  for (auto& t : users) t.join();
  stop = true;
  flusher.join();
  c->flush();
  for (const uint8_t* p : last) EXPECT_TRUE(secure_slab_slot_is_zero(p, kDataKeySize));
}

TEST_F(KeyCacheTest, DistinctWrapsContextsAndRefsAreDistinctEntries) {
  EncryptionContext other;
  ASSERT_TRUE(other.set("kmsfs:file-id", "x").ok());
  const Bytes w{1, 2, 3};
  EXPECT_NE(KeyCache::id_of(ref_, w, ctx_), KeyCache::id_of(ref_, w, other));
  EXPECT_NE(KeyCache::id_of(ref_, w, ctx_), KeyCache::id_of(KeyRef{ProviderId::kAwsKms, "arn:j", 0}, w, ctx_));
  EXPECT_NE(KeyCache::id_of(ref_, w, ctx_), KeyCache::id_of(ref_, Bytes{1, 2, 4}, ctx_));
  EXPECT_EQ(KeyCache::id_of(ref_, w, ctx_), KeyCache::id_of(ref_, Bytes{1, 2, 3}, ctx_));
}

}  // namespace
}  // namespace kmsfs
