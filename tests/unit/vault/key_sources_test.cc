// Where new files' keys come from when provider calls are amortized: intermediate-key mode
// (one provider-generated key wraps many files' locally generated DEKs) and the pool of
// pre-generated data keys in per-file mode. The provider is the real keyring behind a
// wrapper that counts calls and can pose as remote or be slowed down.
#include <fcntl.h>

#include <gtest/gtest.h>

#include <atomic>
#include <optional>
#include <set>
#include <thread>

#include "base/file_io.h"
#include "crypto/random.h"
#include "format/header.h"
#include "keys/intermediate/intermediate_keys.h"
#include "keys/intermediate/intermediate_wrap.h"
#include "keys/pool/data_key_pool.h"
#include "counted_vault.h"
#include "vault_fixture.h"

namespace kmsfs {
namespace {

using testing::CountedVault;
using testing::CountingProvider;

using namespace std::chrono_literals;

// What the vault's pool does: a fresh file id, its context, one generate.
DataKeyPool::Generator pool_generator(const Vault& v, KeyProvider& p) {
  return [&v, &p](const KeyRef& ref) -> Result<PooledDataKey> {
    PooledDataKey k;
    random_bytes(k.file_id);
    ASSIGN_OR_RETURN(k.ctx, v.config().file_context(k.file_id));
    ASSIGN_OR_RETURN(k.key, p.generate_data_key(ref, k.ctx));
    return k;
  };
}

Bytes content_of(int i) { return Bytes(100 + i, static_cast<uint8_t>(i)); }

TEST(IntermediateWrap, SealsToTheFileContextAndTheKey) {
  SecureBuffer ik(32), dek(32);
  random_bytes(ik.span());
  random_bytes(dek.span());
  IntermediateKeyId id{};
  id[0] = 9;
  EncryptionContext a, b;
  ASSERT_TRUE(a.set(EncryptionContext::kFileIdKey, "aa").ok());
  ASSERT_TRUE(a.set(EncryptionContext::kFsIdKey, "ff").ok());
  ASSERT_TRUE(b.set(EncryptionContext::kFileIdKey, "bb").ok());
  ASSERT_TRUE(b.set(EncryptionContext::kFsIdKey, "ff").ok());
  auto sealed = seal_dek(ik.span(), id, dek.span(), a);
  ASSERT_TRUE(sealed.ok()) << sealed.status().message();
  auto back = open_dek(ik.span(), id, *sealed, a);
  ASSERT_TRUE(back.ok());
  EXPECT_TRUE(std::equal(back->span().begin(), back->span().end(), dek.span().begin()));
  // Another file's context, another key id, another key, a flipped bit: all refused.
  EXPECT_EQ(open_dek(ik.span(), id, *sealed, b).status().code(), Code::kCorrupt);
  IntermediateKeyId other = id;
  other[1] = 1;
  EXPECT_EQ(open_dek(ik.span(), other, *sealed, a).status().code(), Code::kCorrupt);
  SecureBuffer ik2 = ik.clone();
  ik2.data()[0] ^= 1;
  EXPECT_EQ(open_dek(ik2.span(), id, *sealed, a).status().code(), Code::kCorrupt);
  for (size_t i = 0; i < sealed->size(); ++i) {
    Bytes t = *sealed;
    t[i] ^= 0x10;
    EXPECT_FALSE(open_dek(ik.span(), id, t, a).ok()) << i;
  }
  // Both files' intermediate contexts are one: the file id is dropped, purpose and id added.
  auto ca = intermediate_context(a, id), cb = intermediate_context(b, id);
  ASSERT_TRUE(ca.ok() && cb.ok());
  EXPECT_EQ(*ca, *cb);
  EXPECT_FALSE(ca->get(EncryptionContext::kFileIdKey));
  EXPECT_EQ(ca->get(EncryptionContext::kPurposeKey).value(), "intermediate-key");
  EXPECT_EQ(ca->get(kIntermediateKeyIdKey).value(), to_hex(id));
  EXPECT_EQ(ca->get(EncryptionContext::kFsIdKey).value(), "ff");
}

// 100 files with at most 30 per intermediate key: 4 provider calls to create them, and
// after a "remount" (a fresh vault and cache) 4 unwraps to read them all.
TEST(IntermediateMode, FilesShareKeysThatRollAndReadBackAfterReopen) {
  CountedVault cv;
  auto v = cv.init(KeyMode::kIntermediate, 30);
  ASSERT_EQ(v->config().key_mode, KeyMode::kIntermediate);
  const int init_generates = cv.counter->generates;  // the filesystem key
  for (int i = 0; i < 100; ++i) {
    auto f = v->create_file(cv.path(i), 0600);
    ASSERT_TRUE(f.ok()) << f.status().message();
    ASSERT_TRUE((*f)->write(content_of(i), 0).ok());
  }
  EXPECT_EQ(cv.counter->generates - init_generates, 4);
  EXPECT_EQ(v->intermediate_keys()->stats().files, 100u);

  auto v2 = Vault::open_unanchored(cv.backing, cv.providers);
  ASSERT_TRUE(v2.ok()) << v2.status().message();
  KeyCache cache(cv.providers, KeyCacheOptions{});
  (*v2)->use_key_cache(&cache);
  const int before = cv.counter->unwraps;
  std::set<std::string> ik_ids;
  for (int i = 0; i < 100; ++i) {
    auto f = (*v2)->open_file(cv.path(i), false);
    ASSERT_TRUE(f.ok()) << f.status().message();
    Bytes out(content_of(i).size());
    ASSERT_EQ(*(*f)->read(out, 0), out.size());
    EXPECT_EQ(out, content_of(i));
    const FileHeader& h = (*f)->header();
    ASSERT_TRUE(h.slots[0]->intermediate);
    ik_ids.insert(to_hex(h.slots[0]->intermediate->id));
    EXPECT_EQ(h.slots[0]->key, (KeyRef{ProviderId::kKeyring, "main", 1}));
  }
  EXPECT_EQ(ik_ids.size(), 4u);
  EXPECT_EQ(cv.counter->unwraps - before, 4);

  // Offline (no cache, no vault config): a single file opens with the provider alone.
  auto backing = PosixBackingFile::open(cv.path(42), O_RDONLY);
  ASSERT_TRUE(backing.ok());
  auto alone = open_crypt_file(std::shared_ptr<BackingFile>(std::move(*backing)), cv.providers);
  ASSERT_TRUE(alone.ok()) << alone.status().message();
  Bytes out(content_of(42).size());
  ASSERT_EQ(*(*alone)->read(out, 0), out.size());
  EXPECT_EQ(out, content_of(42));
}

// A file's slot holds its own intermediate key: grafting another file's (valid) slot onto
// it does not open the file.
TEST(IntermediateMode, ASlotFromAnotherFileDoesNotOpen) {
  CountedVault cv;
  auto v = cv.init(KeyMode::kIntermediate, 1);  // every file its own intermediate key
  for (int i = 0; i < 2; ++i) {
    auto f = v->create_file(cv.path(i), 0600);
    ASSERT_TRUE(f.ok());
    ASSERT_TRUE((*f)->write(content_of(i), 0).ok());
  }
  auto read_raw = [](const std::string& p) { return read_file(p, 1 << 20).value(); };
  Bytes a = read_raw(cv.path(0)), b = read_raw(cv.path(1));
  for (int s = 0; s < 2; ++s)
    std::copy_n(b.begin() + header::kSlotOffset[s], header::kSlotSize, a.begin() + header::kSlotOffset[s]);
  ASSERT_TRUE(write_file_atomic(cv.path(0), a, 0600, false).ok());
  auto f = v->open_file(cv.path(0), false);
  EXPECT_EQ(f.status().code(), Code::kCorrupt) << f.status().message();
}

TEST(IntermediateMode, RollsOnAgeFlushAndKeyChangeAndSharesOneGeneration) {
  CountedVault cv;
  auto v = cv.init(KeyMode::kIntermediate);
  std::atomic<int64_t> now_ms{0};
  IntermediateKeyOptions o;
  o.max_files = 1000;
  o.max_age = 10s;
  o.clock = [&] { return std::chrono::steady_clock::time_point(std::chrono::milliseconds(now_ms.load())); };
  IntermediateKeys iks(o, nullptr);
  CountingProvider& p = *cv.counter;
  const KeyRef ref{ProviderId::kKeyring, "main", 1};
  auto ctx = v->config().file_context(FileId{});
  ASSERT_TRUE(ctx.ok());
  const int g0 = p.generates;
  auto k1 = iks.for_new_file(p, ref, *ctx);
  auto k2 = iks.for_new_file(p, ref, *ctx);
  ASSERT_TRUE(k1.ok() && k2.ok());
  EXPECT_EQ(*k1, *k2);
  EXPECT_EQ(p.generates - g0, 1);
  now_ms = 10'000;  // max_age reached
  auto k3 = iks.for_new_file(p, ref, *ctx);
  ASSERT_TRUE(k3.ok());
  EXPECT_NE(*k3, *k1);
  iks.flush();
  auto k4 = iks.for_new_file(p, ref, *ctx);
  ASSERT_TRUE(k4.ok());
  EXPECT_NE(*k4, *k3);
  ASSERT_TRUE(cv.keyring->update([](Keyring& k) { return k.rotate("main").status(); }).ok());
  const KeyRef ref2{ProviderId::kKeyring, "main", 2};
  auto k5 = iks.for_new_file(p, ref2, *ctx);
  ASSERT_TRUE(k5.ok());
  EXPECT_EQ((*k5)->ref, ref2);
  EXPECT_EQ(p.generates - g0, 4);

  // 16 creates at once with nothing current: one provider call between them.
  iks.flush();
  p.delay_ms = 100;
  std::vector<std::thread> ts;
  std::atomic<int> ok{0};
  for (int i = 0; i < 16; ++i)
    ts.emplace_back([&] {
      if (iks.for_new_file(p, ref2, *ctx).ok()) ++ok;
    });
  for (auto& t : ts) t.join();
  EXPECT_EQ(ok, 16);
  EXPECT_EQ(p.generates - g0, 5);
  // A failed generation fails the create (and the waiters), and nothing is kept.
  iks.flush();
  p.fail = true;
  EXPECT_EQ(iks.for_new_file(p, ref2, *ctx).status().code(), Code::kUnavailable);
  p.fail = false;
  EXPECT_TRUE(iks.for_new_file(p, ref2, *ctx).ok());
}

// With the key cache: a key the keyring disabled stops minting files once the cache has
// dropped it (flush, TTL), and files created before reopen from the cache.
TEST(IntermediateMode, ADisabledKeyStopsCreatesOnceTheCacheDropsIt) {
  CountedVault cv;
  auto v = cv.init(KeyMode::kIntermediate);
  cv.counter->pinned = KeyRef{ProviderId::kKeyring, "main", 1};
  KeyCache cache(cv.providers, KeyCacheOptions{});
  v->use_key_cache(&cache);
  ASSERT_TRUE(v->start_key_sources(KeySourceOptions{}).ok());
  auto f = v->create_file(cv.path(0), 0600);
  ASSERT_TRUE(f.ok()) << f.status().message();
  const int unwraps = cv.counter->unwraps;
  auto g = v->open_file(cv.path(0), false);
  ASSERT_TRUE(g.ok());
  EXPECT_EQ(cv.counter->unwraps, unwraps);  // the intermediate key was cached at birth
  ASSERT_TRUE(cv.keyring->update([](Keyring& k) { return k.set_state("main", 1, KeyState::kDisabled); }).ok());
  EXPECT_TRUE(v->create_file(cv.path(1), 0600).ok());  // still within its TTL
  cache.flush();
  auto h = v->create_file(cv.path(2), 0600);
  EXPECT_EQ(h.status().code(), Code::kPermissionDenied) << h.status().message();
  EXPECT_FALSE(std::filesystem::exists(cv.path(2)));
}

TEST(KeyPool, FillsAheadServesDistinctFilesAndDrainsOnFlushAndKeyChange) {
  CountedVault cv;
  auto v = cv.init(KeyMode::kPerFile);
  CountingProvider& p = *cv.counter;
  DataKeyPoolOptions o;
  o.initial_target = 8;
  o.max_size = 32;
  o.fillers = 4;
  DataKeyPool pool(
      pool_generator(*v, p),
      o);
  const KeyRef ref{ProviderId::kKeyring, "main", 1};
  std::this_thread::sleep_for(50ms);
  EXPECT_EQ(pool.stats().generated, 0u);  // no demand yet: an idle mount asks for nothing
  EXPECT_FALSE(pool.take(ref));           // the first create finds it empty...
  auto wait_for = [&](auto pred) {
    for (int i = 0; i < 500 && !pred(); ++i) std::this_thread::sleep_for(10ms);
    return pred();
  };
  std::this_thread::sleep_for(50ms);
  EXPECT_EQ(pool.stats().generated, 0u);  // ...and filling waits for its own call's outcome
  EXPECT_EQ(pool.stats().target, 8u);     // a miss of a pool that was not filling: no growth
  pool.on_create_result(ref, Status::Ok());
  ASSERT_TRUE(wait_for([&] { return pool.stats().size == 8; }));
  // Drained while filling (takes outrun the fillers): demand outran it, the target doubles.
  for (int i = 0; i < 100000 && pool.take(ref); ++i) {
  }
  EXPECT_EQ(pool.stats().target, 16u);
  ASSERT_TRUE(wait_for([&] { return pool.stats().size == 16; }));
  std::set<FileId> ids;
  for (int i = 0; i < 16; ++i) {
    auto k = pool.take(ref);
    ASSERT_TRUE(k) << i;
    EXPECT_EQ(k->ctx.get(EncryptionContext::kFileIdKey).value(), to_hex(k->file_id));
    EXPECT_EQ(k->key.ref, ref);
    ids.insert(k->file_id);
  }
  EXPECT_EQ(ids.size(), 16u);
  ASSERT_TRUE(wait_for([&] { return pool.stats().size == 16; }));
  pool.flush();
  EXPECT_EQ(pool.stats().size, 0u);
  EXPECT_EQ(pool.stats().discarded, 16u);
  std::this_thread::sleep_for(100ms);
  EXPECT_EQ(pool.stats().size, 0u);  // nothing comes back before a create asks
  const size_t target = pool.stats().target;
  EXPECT_FALSE(pool.take(ref));
  EXPECT_EQ(pool.stats().target, target) << "flush-keys must not grow the target";
  pool.on_create_result(ref, Status::Ok());
  // Full again, so the filler is idle and the count below cannot move under the test.
  ASSERT_TRUE(wait_for([&] {
    const auto s = pool.stats();
    return s.size > 0 && s.size == s.target;
  }));
  // The filesystem's key moved on: keys under the old one are never handed out.
  const KeyRef ref2{ProviderId::kKeyring, "main", 2};
  ASSERT_TRUE(cv.keyring->update([](Keyring& k) { return k.rotate("main").status(); }).ok());
  const auto before = pool.stats();
  EXPECT_FALSE(pool.take(ref2));
  EXPECT_EQ(pool.stats().discarded, before.discarded + before.size);
  pool.on_create_result(ref2, Status::Ok());
  ASSERT_TRUE(wait_for([&] { return pool.stats().size > 0; }));
  auto k = pool.take(ref2);
  ASSERT_TRUE(k);
  EXPECT_EQ(k->key.ref, ref2);
}

TEST(KeyPool, KeysExpireAndAnIdlePoolStopsAsking) {
  CountedVault cv;
  auto v = cv.init(KeyMode::kPerFile);
  CountingProvider& p = *cv.counter;
  DataKeyPoolOptions o;
  o.initial_target = 4;
  o.ttl = 300ms;
  DataKeyPool pool(
      pool_generator(*v, p),
      o);
  const KeyRef ref{ProviderId::kKeyring, "main", 1};
  EXPECT_FALSE(pool.take(ref));
  pool.on_create_result(ref, Status::Ok());
  std::this_thread::sleep_for(1200ms);  // four TTLs with no create
  const auto s = pool.stats();
  EXPECT_EQ(s.size, 0u);
  EXPECT_GT(s.generated, 0u);
  EXPECT_EQ(s.expired, s.generated);  // every key made went unused (how many depends on the machine's speed)
  const uint64_t generated = s.generated;
  std::this_thread::sleep_for(400ms);
  EXPECT_EQ(pool.stats().generated, generated);  // idle: no more provider calls

  // A provider that fails the fills: the fillers stop at the first failure (each of the
  // 16 had at most one call out), not spin, and a create's failure does not restart them.
  p.fail = true;
  EXPECT_FALSE(pool.take(ref));
  pool.on_create_result(ref, Status::Ok());  // the create got its key just before
  std::this_thread::sleep_for(200ms);
  const uint64_t failures = pool.stats().failures;
  EXPECT_GE(failures, 1u);
  EXPECT_LE(failures, o.fillers);
  EXPECT_FALSE(pool.take(ref));
  pool.on_create_result(ref, Status(Code::kUnavailable, "throttled"));
  std::this_thread::sleep_for(300ms);
  EXPECT_EQ(pool.stats().failures, failures);
}

// A refusal (the key disabled or access denied) drops what the pool holds: those keys
// must not mint files the KMS would now refuse to make.
TEST(KeyPool, ARefusalDropsThePooledKeys) {
  CountedVault cv;
  auto v = cv.init(KeyMode::kPerFile);
  DataKeyPoolOptions o;
  o.initial_target = 8;
  o.fillers = 2;
  DataKeyPool pool(pool_generator(*v, *cv.counter), o);
  const KeyRef ref{ProviderId::kKeyring, "main", 1};
  EXPECT_FALSE(pool.take(ref));
  pool.on_create_result(ref, Status::Ok());
  for (int i = 0; i < 500 && pool.stats().size < 8; ++i) std::this_thread::sleep_for(10ms);
  ASSERT_EQ(pool.stats().size, 8u);
  pool.on_create_result(ref, Status(Code::kPermissionDenied, "KMS GenerateDataKey: key disabled"));
  EXPECT_EQ(pool.stats().size, 0u);
  EXPECT_EQ(pool.stats().discarded, 8u);
  std::this_thread::sleep_for(100ms);
  EXPECT_EQ(pool.stats().size, 0u);
  EXPECT_EQ(pool.stats().generated, 8u);
}

// Per-file mode on a remote provider: creates take pooled keys (file id and context come
// with them) and the files reopen; flush_key_sources empties the pool.
TEST(KeyPool, VaultCreatesUsePooledKeys) {
  CountedVault cv;
  cv.counter->is_remote = true;
  auto v = cv.init(KeyMode::kPerFile);
  KeyCache cache(cv.providers, KeyCacheOptions{});
  v->use_key_cache(&cache);
  KeySourceOptions ko;
  ko.pool.initial_target = 16;
  ASSERT_TRUE(v->start_key_sources(ko).ok());
  ASSERT_NE(v->key_pool(), nullptr);
  ASSERT_TRUE(v->create_file(cv.path(0), 0600).ok());  // a miss: asks itself, starts the fill
  for (int i = 0; i < 500 && v->key_pool()->stats().size < 16; ++i) std::this_thread::sleep_for(10ms);
  ASSERT_EQ(v->key_pool()->stats().size, 16u);
  const int generates = cv.counter->generates;
  for (int i = 1; i <= 10; ++i) {
    auto f = v->create_file(cv.path(i), 0600);
    ASSERT_TRUE(f.ok()) << f.status().message();
    ASSERT_TRUE((*f)->write(content_of(i), 0).ok());
  }
  EXPECT_EQ(v->key_pool()->stats().taken, 10u);
  // Creates took pooled keys; the fillers may have topped the pool up meanwhile.
  EXPECT_LE(cv.counter->generates - generates, 10);
  auto v2 = Vault::open_unanchored(cv.backing, cv.providers);
  ASSERT_TRUE(v2.ok());
  for (int i = 1; i <= 10; ++i) {
    auto f = (*v2)->open_file(cv.path(i), false);
    ASSERT_TRUE(f.ok()) << f.status().message();
    Bytes out(content_of(i).size());
    ASSERT_EQ(*(*f)->read(out, 0), out.size());
    EXPECT_EQ(out, content_of(i));
  }
  v->flush_key_sources();
  EXPECT_EQ(v->key_pool()->stats().size, 0u);
}

}  // namespace
}  // namespace kmsfs
