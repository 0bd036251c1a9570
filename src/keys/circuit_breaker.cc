#include "keys/circuit_breaker.h"

#include <algorithm>
#include <cmath>

#include "crypto/random.h"

namespace kmsfs {

const char* breaker_state_name(BreakerState s) {
  switch (s) {
    case BreakerState::kClosed: return "closed";
    case BreakerState::kOpen: return "open";
    case BreakerState::kHalfOpen: return "half-open";
  }
  return "?";
}

CircuitBreaker::CircuitBreaker(CircuitBreakerOptions opts) : opts_(std::move(opts)) {
  if (!opts_.random) opts_.random = [] { return double(random_u64() >> 11) * 0x1.0p-53; };
  if (opts_.failure_threshold < 1) opts_.failure_threshold = 1;
}

CircuitBreaker::Clock::time_point CircuitBreaker::now() const { return opts_.clock ? opts_.clock() : Clock::now(); }

void CircuitBreaker::open_locked(Clock::time_point t) {
  const double base = double(opts_.base_open.count()) * std::ldexp(1.0, std::clamp(opens_in_a_row_, 0, 30));
  const double period = std::min(base, double(opts_.max_open.count())) * (0.75 + 0.5 * std::clamp(opts_.random(), 0.0, 1.0));
  open_until_ = t + std::chrono::milliseconds(static_cast<int64_t>(period));
  state_ = BreakerState::kOpen;
  probe_out_ = false;
  ++opens_in_a_row_;
  ++stats_.opened;
}

CircuitBreaker::Admission CircuitBreaker::admit(bool may_probe) {
  std::lock_guard lk(mu_);
  if (state_ == BreakerState::kClosed) return Admission::kAllowed;
  if (state_ == BreakerState::kOpen && may_probe && now() >= open_until_) {
    state_ = BreakerState::kHalfOpen;
    probe_out_ = true;
    return Admission::kProbe;
  }
  if (state_ == BreakerState::kHalfOpen && may_probe && !probe_out_) {
    probe_out_ = true;
    return Admission::kProbe;
  }
  ++stats_.rejected;
  return Admission::kRejected;
}

void CircuitBreaker::on_success(bool probe) {
  std::lock_guard lk(mu_);
  consecutive_failures_ = 0;
  // A success of a call admitted while closed also proves the endpoint works, even if
  // another caller's failures opened the breaker meanwhile.
  if (probe || state_ != BreakerState::kClosed) {
    state_ = BreakerState::kClosed;
    probe_out_ = false;
    opens_in_a_row_ = 0;
  }
}

void CircuitBreaker::on_failure(bool probe) {
  std::lock_guard lk(mu_);
  const auto t = now();
  if (probe) {
    open_locked(t);
    return;
  }
  if (state_ != BreakerState::kClosed) return;  // already open: this call started before
  if (++consecutive_failures_ >= opts_.failure_threshold) {
    consecutive_failures_ = 0;
    open_locked(t);
  }
}

void CircuitBreaker::cancel_probe() {
  std::lock_guard lk(mu_);
  if (state_ == BreakerState::kHalfOpen) probe_out_ = false;
}

BreakerState CircuitBreaker::state() const {
  std::lock_guard lk(mu_);
  return state_;
}

std::chrono::milliseconds CircuitBreaker::retry_in() const {
  std::lock_guard lk(mu_);
  if (state_ != BreakerState::kOpen) return std::chrono::milliseconds(0);
  return std::max(std::chrono::milliseconds(0),
                  std::chrono::duration_cast<std::chrono::milliseconds>(open_until_ - now()));
}

CircuitBreaker::Stats CircuitBreaker::stats() const {
  std::lock_guard lk(mu_);
  return stats_;
}

}  // namespace kmsfs
