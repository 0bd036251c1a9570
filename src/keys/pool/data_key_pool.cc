#include "keys/pool/data_key_pool.h"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "base/log_fields.h"
#include "keys/call_priority.h"

namespace kmsfs {

DataKeyPool::DataKeyPool(Generator gen, DataKeyPoolOptions opts)
    : gen_(std::move(gen)), opts_(std::move(opts)), target_(std::min(opts_.initial_target, opts_.max_size)) {
  for (size_t i = 0; i < std::max<size_t>(1, opts_.fillers); ++i)
    threads_.emplace_back([this](std::stop_token st) {
      // Nobody waits on a fill: one attempt, and none while the KMS's breaker is open.
      CallPriorityScope background(CallPriority::kBackground);
      filler(st);
    });
}

DataKeyPool::~DataKeyPool() {
  for (auto& t : threads_) t.request_stop();
  cv_.notify_all();
  threads_.clear();  // joins
}

void DataKeyPool::drop_expired_locked(Clock::time_point now) {
  size_t n = 0;
  while (!items_.empty() && now - items_.front().born >= opts_.ttl) {
    items_.pop_front();
    ++n;
  }
  if (n == 0) return;
  stats_.expired += n;
  // Keys went unused for a whole TTL: the target was more than the creates needed.
  target_ = std::max(std::min(opts_.initial_target, opts_.max_size), target_ / 2);
}

bool DataKeyPool::want_more_locked(Clock::time_point now) const {
  return ref_ && filling_ && now - last_take_ < opts_.ttl && items_.size() + inflight_ < target_;
}

void DataKeyPool::filler(std::stop_token st) {
  std::unique_lock lock(mu_);
  while (!st.stop_requested()) {
    auto now = Clock::now();
    drop_expired_locked(now);
    if (!want_more_locked(now)) {
      // Sleep until something changes: a take, a create's result, the oldest key's expiry.
      auto wake = now + opts_.ttl;
      if (!items_.empty()) wake = std::min(wake, items_.front().born + opts_.ttl);
      const uint64_t seen = signals_;
      cv_.wait_until(lock, st, wake, [&] { return signals_ != seen; });
      continue;
    }
    ++inflight_;
    const KeyRef ref = *ref_;
    const uint64_t epoch = epoch_;
    lock.unlock();
    // The filler's exception barrier: a throw is one failed fill (backoff, then retry).
    Result<PooledDataKey> r = Status(Code::kInternal, "not generated");
    try {
      r = gen_(ref);
    } catch (const std::exception& e) {
      r = Status(Code::kInternal, std::string("internal error: ") + e.what());
    }
    lock.lock();
    --inflight_;
    if (!r.ok()) {
      ++stats_.failures;
      // Stop at the first failure: more fills would only add load to a KMS that is
      // refusing or struggling. The next create that gets a key itself starts us again.
      if (filling_ && epoch == epoch_) {
        LogFields fields({{"KMSFS_KEY", ref.to_string()}});
        spdlog::warn("key pool: pre-generating a data key under {} failed ({}); filling stops until a create "
                     "gets a key from the KMS itself",
                     ref.to_string(), r.status().message());
      }
      if (epoch == epoch_) filling_ = false;
      if (is_refusal_for_pool(r.status()) && epoch == epoch_) drop_all_locked();
      continue;
    }
    ++stats_.generated;
    if (epoch != epoch_) {
      ++stats_.discarded;  // flushed or retargeted meanwhile; the key is zeroed here
      continue;
    }
    items_.push_back(Item{std::move(*r), Clock::now()});
  }
}

std::optional<PooledDataKey> DataKeyPool::take(const KeyRef& ref) {
  std::lock_guard lock(mu_);
  const auto now = Clock::now();
  if (!ref_ || !(*ref_ == ref)) {
    // The filesystem's key changed: no file may be born under the old one.
    stats_.discarded += items_.size();
    items_.clear();
    ++epoch_;
    ref_ = ref;
    filling_ = false;  // nothing is known yet of the new key
  }
  last_take_ = now;
  drop_expired_locked(now);
  if (items_.empty()) {
    ++stats_.misses;
    // Demand outran a pool that was filling: aim higher. A miss after a flush or a failed
    // fill says nothing about demand (the pool was stopped), so it does not grow it.
    if (filling_) target_ = std::min(opts_.max_size, std::max(target_ * 2, opts_.initial_target));
    return std::nullopt;
  }
  PooledDataKey k = std::move(items_.front().key);
  items_.pop_front();
  ++stats_.taken;
  ++signals_;
  cv_.notify_all();
  return k;
}

void DataKeyPool::on_create_result(const KeyRef& ref, const Status& s) {
  std::lock_guard lock(mu_);
  if (!ref_ || !(*ref_ == ref)) return;  // the filesystem's key changed meanwhile
  if (s.ok()) {
    filling_ = true;
    ++signals_;
    cv_.notify_all();
    return;
  }
  filling_ = false;
  if (is_refusal_for_pool(s)) drop_all_locked();
}

void DataKeyPool::drop_all_locked() {
  stats_.discarded += items_.size();
  items_.clear();
  ++epoch_;
}

bool DataKeyPool::is_refusal_for_pool(const Status& s) {
  // The KMS said no (disabled, denied, gone): keys it made before must not mint files.
  return s.code() == Code::kPermissionDenied || s.code() == Code::kNotFound;
}

void DataKeyPool::flush() {
  std::lock_guard lock(mu_);
  drop_all_locked();
  // The "lock" button: no key comes back into memory before the next create gets one
  // from the KMS itself, and the miss that create makes does not grow the target.
  filling_ = false;
  last_take_ = Clock::time_point{};
  ++signals_;
  cv_.notify_all();
}

DataKeyPoolStats DataKeyPool::stats() const {
  std::lock_guard lock(mu_);
  DataKeyPoolStats s = stats_;
  s.size = items_.size();
  s.target = target_;
  return s;
}

}  // namespace kmsfs
