// The one retry table of the AWS client (docs/KMS.md "Retries"): which failures are worth
// another attempt, and how long to wait. Pure functions of the attempt number and a random
// source, so the policy is tested without sleeping.
//
// Modelled on the SDKs' "standard" retry mode: at most 3 attempts, full-jitter exponential
// backoff delay = random × min(base · 2^n, 20 s). The SDKs disagree on KMSInternalException
// and DependencyTimeoutException; we retry both (they are KMS's own transient failures and
// the call is idempotent for our use: a lost GenerateDataKey answer only costs a key).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string_view>

namespace kmsfs::aws {

enum class RetryClass {
  kNever,      // the answer will not change: access denied, not found, bad ciphertext...
  kThrottled,  // ThrottlingException, 429, RequestLimitExceeded...
  kTransient,  // 5xx, KMSInternal, DependencyTimeout, timeouts, connection errors
};

// An AWS error code without its namespace or trailing URI: "com.amazonaws.kms#NotFoundException"
// and "NotFoundException:http://internal.amazon.com/" both give "NotFoundException".
std::string_view short_error_code(std::string_view type);

// For an HTTP answer: status and (possibly empty) AWS error code. Codes that are never
// retried win over a 5xx status.
RetryClass classify_http(long status, std::string_view error_code);

struct RetryPolicy {
  int max_attempts = 3;  // AWS_MAX_ATTEMPTS; for user calls only (call_priority.h)
  std::chrono::milliseconds base{1000};
  std::chrono::milliseconds max_backoff{20000};
};

// Delay before retry number `retry` (0 for the first retry), given a uniform random
// number in [0, 1).
std::chrono::milliseconds backoff_delay(const RetryPolicy& p, int retry, double random01);

// A uniform [0, 1) source; the default reads the CSPRNG (jitter must not synchronise across
// hosts, and it is cheap next to a network round trip).
using Random01 = std::function<double()>;
double default_random01();

// The standard retry mode's retry quota (a token bucket per client): a retry costs 5
// tokens (10 after a timeout or connection error), a 200 refunds what its last retry
// cost (1 token if it needed none), and a retry the bucket cannot pay for is not made.
// Under a sustained outage the bucket empties after ~50-100 retries and each call then
// makes a single attempt, instead of every call tripling the load. Thread-safe.
class RetryQuota {
 public:
  static constexpr int kInitial = 500;
  static constexpr int kRetryCost = 5;
  static constexpr int kTimeoutCost = 10;
  static constexpr int kNoRetryIncrement = 1;

  // Takes the cost of one retry; false (and nothing taken) if the bucket cannot pay.
  bool acquire(bool timeout_or_connection);
  // A call got a 200; `spent` is what its last acquire() took (0: it needed no retry).
  void release(int spent);
  int available() const;
  uint64_t refused() const;

 private:
  mutable std::mutex mu_;
  int tokens_ = kInitial;
  uint64_t refused_ = 0;
};

}  // namespace kmsfs::aws
