// An open file's right to its key, backed by the key cache: valid until the cache entry's
// expiry, then renewed through the cache (a hit while the key is hot and was refreshed in
// the background; a provider call otherwise, which a revoked key fails).
//
// Only a refusal ends the right. The file holds its key, so a renewal that gets no answer
// (the KMS down, throttling or failing past the client's retries: kUnavailable) extends the
// right briefly and the file keeps working; the next renewal asks again, and a refusal
// then cuts the file off. The exception is `kmsfs flush-keys` (the lock button): after a
// flush, the file works again only once the KMS has answered.
#pragma once

#include <atomic>
#include <chrono>
#include <mutex>

#include "format/key_guard.h"
#include "keys/cache/key_cache.h"

namespace kmsfs {

class CachedKeyGuard final : public KeyGuard {
 public:
  CachedKeyGuard(KeyCache& cache, KeyRef ref, Bytes wrapped, EncryptionContext ctx, const KeyCache::Lease& lease);

  Status check() override;
  void expire() override {
    refresh_from_ns_.store(0, std::memory_order_release);
    valid_until_ns_.store(0, std::memory_order_release);
  }
  // The cache id of the key as the file was opened (what the mount tracks it under).
  const std::array<uint8_t, 32>& key_id() const override { return id_; }
  // After a re-wrap: renewals go through the new wrap, so an open file keeps working
  // once the old key is disabled. `lease` is of the new wrap.
  void retarget(KeyRef ref, Bytes wrapped, EncryptionContext ctx, const KeyCache::Lease& lease);

 private:
  static int64_t ns(KeyCache::Clock::time_point t) {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
  }

  // A renewal after the lease ran out when the KMS does not answer: Ok (the right extended
  // briefly) unless the cache was flushed since the last answer, else `why`.
  Status on_no_answer(const KeyRef& ref, Status why);

  KeyCache& cache_;
  std::mutex mu_;  // the wrap renewals go through; the fast path never takes it
  KeyRef ref_;
  Bytes wrapped_;
  EncryptionContext ctx_;
  const CacheKeyId id_;
  // cache_.flushes() when the right was last granted by an answer (or the lease given).
  std::atomic<uint64_t> flushes_seen_;
  // From refresh_from on, the next check tells the cache the key is in use (once), so the
  // cache refreshes it in the background and the renewal at valid_until is a hit.
  std::atomic<int64_t> refresh_from_ns_;
  std::atomic<int64_t> valid_until_ns_;
};

}  // namespace kmsfs
