// The cache of unwrapped keys between the vault and the key providers, so a hot file costs
// no KMS call and a key revoked in the KMS stops working within a bounded time:
//
// - Entries are keyed on everything that decides an unwrap's answer (provider, key ref,
//   wrapped bytes, encryption context), hashed with SHA-256; values are SecureBuffers
//   (locked, excluded from core dumps, zeroed when the last holder lets go).
// - Every entry lives `ttl` from its fetch; LRU beyond `max_keys`; `flush()` drops all.
// - Single flight: concurrent unwraps of one uncached key make one provider call. Fetches
//   from remote providers run on the cache's own threads and callers wait at most
//   `wait_deadline`, so a slow KMS holds a FUSE worker for a bounded time and never blocks
//   callers of cached keys; local providers (the keyring) are asked in the caller's thread.
// - Hot keys (used since their last fetch) are refreshed `refresh_ahead` before they
//   expire, in the background: expiry causes no stall and no burst. A refresh the provider
//   refuses (denied, disabled, not found) evicts the key at once.
// - `stale_if_error`: when the provider is unreachable (kUnavailable, never a refusal), an
//   expired key is served up to that long past its expiry, with one warning per outage.
// - Eviction (expiry, LRU, refusal, flush) is reported to a listener outside every lock,
//   so the FUSE layer can write back and drop the kernel's cached pages of files whose key
//   went away.
//
// No lock is held across a provider call. Every lookup and flush is an audit event
// (keys/audit.h) when the providers have an audit sink.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <thread>
#include <unordered_map>
#include <vector>

#include "base/bytes.h"
#include "base/status.h"
#include "crypto/kdf.h"
#include "crypto/secure_buffer.h"
#include "format/key_ref.h"
#include "keys/key_providers.h"

namespace kmsfs {

struct KeyCacheOptions {
  std::chrono::milliseconds ttl{std::chrono::seconds(300)};
  size_t max_keys = 10000;
  std::chrono::milliseconds stale_if_error{0};
  // How long before expiry a hot key is refetched; 0 picks ttl/10, clamped to [1 s, 60 s].
  std::chrono::milliseconds refresh_ahead{0};
  // How long a caller waits for a fetch before giving up with kUnavailable (the fetch goes
  // on and lands in the cache for the next caller).
  std::chrono::milliseconds wait_deadline{std::chrono::seconds(20)};
  size_t fetch_threads = 4;
  // For tests: a steady clock to read instead of std::chrono::steady_clock.
  std::function<std::chrono::steady_clock::time_point()> clock{};
};

struct KeyCacheStats {
  uint64_t hits = 0;
  uint64_t misses = 0;        // lookups that had to wait for a fetch
  uint64_t coalesced = 0;     // of those, joined a fetch already under way
  uint64_t fetches = 0;       // provider calls made (first fetches and refreshes)
  uint64_t fetch_failures = 0;
  uint64_t refreshes = 0;     // background refreshes of hot keys
  uint64_t stale_served = 0;  // expired keys served under stale_if_error
  uint64_t evictions = 0;     // by expiry, LRU, refusal or flush
  uint64_t timeouts = 0;      // callers that gave up at wait_deadline
  size_t keys = 0;            // cached now
  // Unix seconds of the last key the provider served (first fetch or refresh), and of the
  // last background refresh; 0: none yet. For "has this mount reached its KMS lately?".
  int64_t last_fetch_unix = 0;
  int64_t last_refresh_unix = 0;
};

using CacheKeyId = Digest32;  // SHA-256 of what decides an unwrap's answer

class KeyCache {
 public:
  using Clock = std::chrono::steady_clock;

  // A key and how long it may be used without asking the cache again.
  struct Lease {
    std::shared_ptr<const SecureBuffer> key;
    CacheKeyId id{};
    Clock::time_point valid_until;
  };

  KeyCache(KeyProviders& providers, KeyCacheOptions options);
  ~KeyCache();  // stops the threads; every cached key is zeroed as it is freed
  KeyCache(const KeyCache&) = delete;
  KeyCache& operator=(const KeyCache&) = delete;

  static CacheKeyId id_of(const KeyRef& ref, ByteSpan wrapped, const EncryptionContext& ctx);

  // The unwrapped key, from the cache or through the provider. Errors are the provider's
  // (kPermissionDenied, kCorrupt, kNotFound, kUnavailable), or kUnavailable when the fetch
  // outlasts wait_deadline, or `max_wait` if shorter (a caller that holds the key already
  // and only renews its right to it need not stall on a slow KMS; the fetch goes on).
  Result<Lease> unwrap(const KeyRef& ref, ByteSpan wrapped, const EncryptionContext& ctx,
                       std::chrono::milliseconds max_wait = std::chrono::milliseconds::max());

  // Marks a cached key as in use, so it is refreshed before it expires (an open file that
  // keeps reading calls this once per lease, shortly before the lease ends).
  void touch(const CacheKeyId& id);

  // Caches a key the caller already holds (a data key just generated for a new file), so
  // reopening that file costs no provider call within the TTL.
  Lease insert(const KeyRef& ref, ByteSpan wrapped, const EncryptionContext& ctx, const SecureBuffer& key);

  // Drops every cached key now (the "lock" button); reports each to the listener.
  void flush();
  // How many flushes there have been: a holder of a key that must re-prove its right after
  // a flush tells it from an ordinary expiry by this count.
  uint64_t flushes() const { return flushes_.load(std::memory_order_acquire); }

  // Called (outside the cache's locks, from the caller's or a cache thread) with the id of
  // every key that leaves the cache. Replacing it (with nullptr too) waits for calls of the
  // old one to return, so whoever it points into may go right after.
  void set_eviction_listener(std::function<void(const CacheKeyId&)> listener);

  KeyCacheStats stats() const;
  const KeyCacheOptions& options() const { return opts_; }
  // The cache's clock (leases' valid_until are on it).
  Clock::time_point now() const;
  // How long before expiry keys in use are refetched.
  std::chrono::milliseconds refresh_ahead() const;

 private:
  struct Flight;
  struct Entry;
  struct IdHash {
    size_t operator()(const CacheKeyId& id) const noexcept;
  };

  // unwrap() without its audit event; `how` (if given) learns "hit", "hit stale",
  // "hit refusal", "miss coalesced", "miss timeout", "miss stale"; left as is for a miss.
  Result<Lease> lookup(const KeyRef& ref, ByteSpan wrapped, const EncryptionContext& ctx,
                       std::chrono::milliseconds max_wait, std::string* how);
  // Starts a fetch for `e` unless one is under way; returns the flight. mu_ held.
  // `queue`: for a fetch thread now; otherwise the caller runs or queues it after unlocking.
  std::shared_ptr<Flight> start_fetch(const CacheKeyId& id, Entry& e, bool refresh, bool queue = true);
  void fetch_worker(std::stop_token st);
  void run_fetch(const CacheKeyId& id, const std::shared_ptr<Flight>& f);
  void maintenance(std::stop_token st);
  // Removes entries; collects their ids for the listener. mu_ held.
  void erase_locked(std::unordered_map<CacheKeyId, Entry, IdHash>::iterator it, std::vector<CacheKeyId>& gone);
  void evict_over_limit_locked(std::vector<CacheKeyId>& gone);
  void notify(const std::vector<CacheKeyId>& gone);

  KeyProviders& providers_;
  const KeyCacheOptions opts_;

  mutable std::mutex mu_;
  std::condition_variable_any work_cv_;  // fetch queue and maintenance wake-ups
  std::unordered_map<CacheKeyId, Entry, IdHash> entries_;
  std::list<CacheKeyId> lru_;  // front = most recently used
  std::deque<std::pair<CacheKeyId, std::shared_ptr<Flight>>> queue_;
  KeyCacheStats stats_;
  bool outage_warned_ = false;
  std::atomic<uint64_t> flushes_{0};
  std::shared_mutex listener_mu_;  // held (shared) while the listener runs
  std::function<void(const CacheKeyId&)> listener_;  // guarded by listener_mu_

  std::vector<std::jthread> threads_;  // last: stopped and joined before the rest goes
};

}  // namespace kmsfs
