// A pool of data keys generated ahead of the creates that will use them (per-file mode
// with a remote provider): a create takes one and does not wait for the KMS. Because each
// key's encryption context names its file, keys come with pre-assigned file ids.
//
// - Keys are generated for one key reference; a take under another (the filesystem's key
//   rotated) drains the pool first, so no new file is born under a retired key.
// - Pooled keys expire after `ttl` (the key cache's): a key disabled in the KMS stops
//   minting files within the TTL, as it stops reading them.
// - Filling is demand-driven and follows the KMS's health: it starts (or resumes) only
//   after a create's own GenerateDataKey succeeded (on_create_result), the target doubles
//   only when creates drain a pool that was filling, and the fillers stop at the first
//   failed fill: a throttling or failing KMS then sees only the creates' own calls, never
//   a burst of pool fills on top (issue 17). Fills are background calls (call_priority.h):
//   one attempt each, and none while the KMS's circuit breaker is open. The fillers also
//   stop once no file was created for `ttl`, so an idle mount makes no KMS calls.
// - A refusal (the key disabled, access denied) drops every pooled key: the KMS said no.
// - flush() (flush-keys) drops every pooled key (keys in flight are discarded on arrival),
//   and filling waits for the next successful create; it does not grow the target.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "base/status.h"
#include "format/key_ref.h"
#include "keys/key_provider.h"

namespace kmsfs {

struct PooledDataKey {
  FileId file_id{};
  EncryptionContext ctx;  // the file's, naming file_id
  DataKey key;
};

struct DataKeyPoolOptions {
  size_t max_size = 512;
  size_t initial_target = 16;
  size_t fillers = 16;  // concurrent provider calls while filling (16 at 10 ms: 1,600 keys/s)
  std::chrono::milliseconds ttl{std::chrono::seconds(300)};
};

struct DataKeyPoolStats {
  uint64_t generated = 0;  // provider calls that made a pooled key
  uint64_t taken = 0;      // creates served from the pool
  uint64_t misses = 0;     // creates that found it empty
  uint64_t expired = 0;    // dropped unused at their TTL
  uint64_t discarded = 0;  // dropped by flush or a key reference change
  uint64_t failures = 0;
  size_t size = 0;
  size_t target = 0;
};

class DataKeyPool {
 public:
  // Makes one key for a new file under the given ref (picks the file id and context and
  // calls the provider). Called from the pool's threads.
  using Generator = std::function<Result<PooledDataKey>(const KeyRef&)>;

  DataKeyPool(Generator gen, DataKeyPoolOptions opts);
  ~DataKeyPool();  // stops the fillers; pooled keys are zeroed as they are freed
  DataKeyPool(const DataKeyPool&) = delete;
  DataKeyPool& operator=(const DataKeyPool&) = delete;

  // A pre-generated key under `ref`, or nullopt (the caller generates one itself and
  // reports how that went to on_create_result).
  std::optional<PooledDataKey> take(const KeyRef& ref);
  // The outcome of a create's own GenerateDataKey under `ref` after take() found nothing:
  // a success starts filling, a refusal drops the pool, other failures leave it stopped.
  void on_create_result(const KeyRef& ref, const Status& s);
  void flush();

  DataKeyPoolStats stats() const;
  const DataKeyPoolOptions& options() const { return opts_; }

 private:
  using Clock = std::chrono::steady_clock;
  struct Item {
    PooledDataKey key;
    Clock::time_point born;
  };
  void filler(std::stop_token st);
  void drop_expired_locked(Clock::time_point now);
  void drop_all_locked();
  static bool is_refusal_for_pool(const Status& s);
  bool want_more_locked(Clock::time_point now) const;

  Generator gen_;
  const DataKeyPoolOptions opts_;

  mutable std::mutex mu_;
  std::condition_variable_any cv_;
  std::deque<Item> items_;  // oldest first
  std::optional<KeyRef> ref_;
  size_t target_;
  size_t inflight_ = 0;
  uint64_t epoch_ = 0;  // bumped by flush and ref changes: keys in flight then are discarded
  uint64_t signals_ = 0;  // bumped whenever the fillers should look again
  Clock::time_point last_take_{};
  bool filling_ = false;  // since a create's own success, until a failure or flush
  DataKeyPoolStats stats_;

  std::vector<std::jthread> threads_;  // last: stopped and joined before the rest goes
};

}  // namespace kmsfs
