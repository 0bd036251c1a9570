#include "keys/pool/data_key_pool.h"

#include <spdlog/spdlog.h>

#include <algorithm>

namespace kmsfs {

DataKeyPool::DataKeyPool(Generator gen, DataKeyPoolOptions opts)
    : gen_(std::move(gen)), opts_(std::move(opts)), target_(std::min(opts_.initial_target, opts_.max_size)) {
  for (size_t i = 0; i < std::max<size_t>(1, opts_.fillers); ++i)
    threads_.emplace_back([this](std::stop_token st) { filler(st); });
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
  return ref_ && now - last_take_ < opts_.ttl && now >= backoff_until_ && items_.size() + inflight_ < target_;
}

void DataKeyPool::filler(std::stop_token st) {
  std::unique_lock lock(mu_);
  while (!st.stop_requested()) {
    auto now = Clock::now();
    drop_expired_locked(now);
    if (!want_more_locked(now)) {
      // Sleep until something changes: a take, the oldest key's expiry, the end of a backoff.
      auto wake = now + opts_.ttl;
      if (!items_.empty()) wake = std::min(wake, items_.front().born + opts_.ttl);
      if (backoff_until_ > now) wake = std::min(wake, backoff_until_);
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
      if (Clock::now() >= backoff_until_)
        spdlog::warn("key pool: pre-generating a data key under {} failed ({}); creates ask the KMS themselves "
                     "and filling resumes in {} ms",
                     ref.to_string(), r.status().message(), opts_.failure_backoff.count());
      backoff_until_ = Clock::now() + opts_.failure_backoff;
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
  }
  last_take_ = now;
  drop_expired_locked(now);
  if (items_.empty()) {
    ++stats_.misses;
    target_ = std::min(opts_.max_size, std::max(target_ * 2, opts_.initial_target));
    ++signals_;
    cv_.notify_all();
    return std::nullopt;
  }
  PooledDataKey k = std::move(items_.front().key);
  items_.pop_front();
  ++stats_.taken;
  ++signals_;
  cv_.notify_all();
  return k;
}

void DataKeyPool::flush() {
  std::lock_guard lock(mu_);
  stats_.discarded += items_.size();
  items_.clear();
  ++epoch_;
  // The "lock" button: no key comes back into memory before the next create asks.
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
