// A circuit breaker for one remote endpoint (one per KMS endpoint in the AWS client).
// Retries with backoff bound the cost of one call; they do nothing about many callers
// each spending their attempts on a KMS that is down or throttling everyone. The breaker
// counts consecutive failures across all callers and, past a threshold, stops sending:
//
//   closed --(threshold consecutive failures)--> open --(period over)--> half-open
//   half-open: exactly one caller (the probe) is let through; its success closes the
//   breaker, its failure opens it again for a longer period (base·2^n up to max, jittered
//   so that many mounts do not probe in step).
//
// A failure is what says nothing about the request itself: connection errors, 5xx,
// throttling. A definite answer (the key is disabled, access is denied) is a success here:
// the KMS is working, the request is what it refused.
//
// Thread-safe; never blocks (a rejected caller is told so and when to come back). Time and
// jitter are injectable so tests do not sleep.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>

namespace kmsfs {

struct CircuitBreakerOptions {
  int failure_threshold = 5;
  std::chrono::milliseconds base_open{1000};
  std::chrono::milliseconds max_open{10000};
  // Uniform in [0, 1); the open period is scaled by 0.75 + 0.5·random (±25 %).
  std::function<double()> random;
  std::function<std::chrono::steady_clock::time_point()> clock;
};

enum class BreakerState : int { kClosed = 0, kOpen = 1, kHalfOpen = 2 };
const char* breaker_state_name(BreakerState s);

class CircuitBreaker {
 public:
  using Clock = std::chrono::steady_clock;

  enum class Admission {
    kAllowed,   // closed: go ahead
    kProbe,     // half-open and this caller is the probe: report its outcome
    kRejected,  // open (or a probe is already out): do not send
  };

  explicit CircuitBreaker(CircuitBreakerOptions opts = {});

  // May this caller send now? `may_probe`: whether it may be the half-open probe (work
  // nobody waits on passes false and is only let through while closed).
  Admission admit(bool may_probe);
  // The outcome of an admitted call. `probe` as admit() said.
  void on_success(bool probe);
  void on_failure(bool probe);
  // A probe that was let through but never sent (the caller gave up first): lets another
  // caller probe.
  void cancel_probe();

  BreakerState state() const;
  // How long until an open breaker lets a probe through (0 if not open).
  std::chrono::milliseconds retry_in() const;

  struct Stats {
    uint64_t opened = 0;    // closed/half-open -> open transitions
    uint64_t rejected = 0;  // calls refused without being sent
  };
  Stats stats() const;

 private:
  void open_locked(Clock::time_point t);
  Clock::time_point now() const;

  CircuitBreakerOptions opts_;
  mutable std::mutex mu_;
  BreakerState state_ = BreakerState::kClosed;
  int consecutive_failures_ = 0;
  int opens_in_a_row_ = 0;  // drives the backoff; reset when a probe succeeds
  bool probe_out_ = false;
  Clock::time_point open_until_{};
  Stats stats_;
};

}  // namespace kmsfs
