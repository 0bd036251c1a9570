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
#include <functional>
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
  int max_attempts = 3;
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

}  // namespace kmsfs::aws
