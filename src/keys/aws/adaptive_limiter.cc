#include "keys/aws/adaptive_limiter.h"

#include <algorithm>
#include <cmath>
#include <thread>

namespace kmsfs::aws {
namespace {

constexpr double kScale = 0.4;
constexpr double kBeta = 0.7;
constexpr double kSmoothing = 0.8;
constexpr double kBucketSeconds = 0.5;
constexpr double kMinFillRate = 0.5;
constexpr double kMinCapacity = 1;
constexpr double kMaxRateAdjustScale = 2.0;

double zero_point(double w_max) { return std::cbrt(w_max * (1 - kBeta) / kScale); }

}  // namespace

AdaptiveRateLimiter::AdaptiveRateLimiter(Options o) : opts_(std::move(o)) {
  if (!opts_.clock) opts_.clock = [] { return Clock::now(); };
  if (!opts_.sleep) opts_.sleep = [](std::chrono::duration<double> d) { std::this_thread::sleep_for(d); };
  epoch_ = opts_.clock();
  k_ = zero_point(w_max_);
}

double AdaptiveRateLimiter::seconds(Clock::time_point t) const { return std::chrono::duration<double>(t - epoch_).count(); }

void AdaptiveRateLimiter::refill_locked(double now) {
  tokens_ = std::min(capacity_, tokens_ + (now - last_refill_) * fill_rate_);
  last_refill_ = now;
}

double AdaptiveRateLimiter::cubic_success_locked(double now) const {
  const double dt = now - last_fail_;
  return kScale * std::pow(dt - k_, 3) + w_max_;
}

std::chrono::duration<double> AdaptiveRateLimiter::acquire() {
  double wait = 0;
  {
    std::lock_guard g(mu_);
    if (!enabled_) return std::chrono::duration<double>(0);
    refill_locked(seconds(opts_.clock()));
    // The token is taken now (the bucket may go negative) and the wait happens outside the
    // lock: callers queue in the order they came, each behind the debt of the earlier ones.
    tokens_ -= 1;
    if (tokens_ < 0) wait = -tokens_ / fill_rate_;
  }
  if (wait > 0) opts_.sleep(std::chrono::duration<double>(wait));
  return std::chrono::duration<double>(wait);
}

void AdaptiveRateLimiter::on_response(bool throttled) {
  std::lock_guard g(mu_);
  const double now = seconds(opts_.clock());
  // Measured send rate (botocore's RateClocker).
  count_ += 1;
  const double bucket = std::floor(now / kBucketSeconds) * kBucketSeconds;
  if (bucket > last_bucket_) {
    const double current = count_ / (bucket - last_bucket_);
    measured_ = current * kSmoothing + measured_ * (1 - kSmoothing);
    count_ = 0;
    last_bucket_ = bucket;
  }
  double new_rate;
  if (!throttled) {
    new_rate = cubic_success_locked(now);
  } else {
    const double rate = enabled_ ? std::min(measured_, fill_rate_) : measured_;
    w_max_ = rate;
    k_ = zero_point(w_max_);
    last_fail_ = now;
    new_rate = rate * kBeta;
    if (!enabled_) {
      enabled_ = true;
      last_refill_ = now;
      tokens_ = 0;
    }
  }
  if (!enabled_) return;
  refill_locked(now);
  fill_rate_ = std::max(std::min(new_rate, kMaxRateAdjustScale * measured_), kMinFillRate);
  capacity_ = std::max(fill_rate_, kMinCapacity);
  tokens_ = std::min(tokens_, capacity_);
}

bool AdaptiveRateLimiter::enabled() const {
  std::lock_guard g(mu_);
  return enabled_;
}

double AdaptiveRateLimiter::max_rate() const {
  std::lock_guard g(mu_);
  return fill_rate_;
}

double AdaptiveRateLimiter::measured_rate() const {
  std::lock_guard g(mu_);
  return measured_;
}

}  // namespace kmsfs::aws
