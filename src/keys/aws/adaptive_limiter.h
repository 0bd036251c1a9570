// The AWS SDKs' "adaptive" retry mode (AWS_RETRY_MODE=adaptive): a client-side token
// bucket whose rate follows CUBIC congestion control. Nothing is limited until the first
// throttle; from then on each throttle cuts the allowed rate to 0.7 × the rate measured,
// and successes grow it back along the cubic curve (as botocore's retries/adaptive.py
// and bucket.py: scale 0.4, beta 0.7, measured rate smoothed 0.8 over 0.5 s buckets,
// at least 0.5 requests/s). It makes a throttled client send at what the KMS accepts
// instead of bursting and being refused. Thread-safe; acquire() may sleep, with no lock
// held while it does.
#pragma once

#include <chrono>
#include <functional>
#include <mutex>

namespace kmsfs::aws {

class AdaptiveRateLimiter {
 public:
  using Clock = std::chrono::steady_clock;
  struct Options {
    std::function<Clock::time_point()> clock;                // default: steady_clock::now
    std::function<void(std::chrono::duration<double>)> sleep;  // default: this_thread::sleep_for
  };
  AdaptiveRateLimiter() : AdaptiveRateLimiter(Options{}) {}
  explicit AdaptiveRateLimiter(Options o);

  // Before each attempt: waits for a token once throttling has been seen. Returns the
  // time it waited.
  std::chrono::duration<double> acquire();
  // After each answer: `throttled` for a throttling error, false for anything else.
  void on_response(bool throttled);

  bool enabled() const;
  double max_rate() const;       // requests/s the bucket allows (meaningful once enabled)
  double measured_rate() const;  // smoothed requests/s sent

 private:
  double seconds(Clock::time_point t) const;
  void refill_locked(double now);
  double cubic_success_locked(double now) const;

  Options opts_;
  Clock::time_point epoch_;
  mutable std::mutex mu_;
  // Token bucket.
  bool enabled_ = false;
  double fill_rate_ = 0.5;
  double capacity_ = 1;
  double tokens_ = 0;
  double last_refill_ = 0;
  // Cubic.
  double w_max_ = 0.5;
  double k_ = 0;
  double last_fail_ = 0;
  // Measured send rate.
  double measured_ = 0;
  double last_bucket_ = 0;
  double count_ = 0;
};

}  // namespace kmsfs::aws
