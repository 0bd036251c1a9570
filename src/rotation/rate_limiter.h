// A token bucket that paces the rotation worker (files per second, KMS calls per second)
// so foreground work keeps its share of the disk and of the KMS quota. Waits are cut
// short by `interrupted` (pause, cancel, shutdown).
#pragma once

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>

namespace kmsfs {

class RateLimiter {
 public:
  using Clock = std::chrono::steady_clock;

  // rate <= 0: unlimited. The bucket holds at most a tenth of a second of tokens (and at
  // least one), so a paused or idle worker cannot burst afterwards.
  explicit RateLimiter(double rate = 0) { set_rate(rate); }

  void set_rate(double rate) {
    rate_ = rate;
    burst_ = std::max(1.0, rate / 10);
    tokens_ = std::min(tokens_, burst_);
    last_ = Clock::now();
  }
  double rate() const { return rate_; }

  // Takes `n` tokens, waiting on `cv` (with `lock` held by the caller) until there are
  // enough: n, or a full bucket for an n larger than the bucket (the debt then delays the
  // next caller). Returns false if `interrupted` became true while waiting.
  bool acquire(std::unique_lock<std::mutex>& lock, std::condition_variable& cv, const std::function<bool()>& interrupted,
               double n = 1) {
    if (rate_ <= 0) return !interrupted();
    const double need = std::min(n, burst_);
    for (;;) {
      const auto now = Clock::now();
      tokens_ = std::min(burst_, tokens_ + std::chrono::duration<double>(now - last_).count() * rate_);
      last_ = now;
      if (interrupted()) return false;
      if (tokens_ >= need) {
        tokens_ -= n;
        return true;
      }
      const auto wait = std::chrono::duration<double>((need - tokens_) / rate_);
      cv.wait_for(lock, std::chrono::duration_cast<Clock::duration>(wait), interrupted);
    }
  }

 private:
  double rate_ = 0;
  double burst_ = 1;
  double tokens_ = 1;
  Clock::time_point last_ = Clock::now();
};

}  // namespace kmsfs
