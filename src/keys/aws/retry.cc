#include "keys/aws/retry.h"

#include <algorithm>
#include <array>
#include <cmath>

#include "crypto/random.h"

namespace kmsfs::aws {
namespace {

// Throttling, as botocore's standard mode lists it (plus KMS's own ThrottlingException).
constexpr std::array<std::string_view, 14> kThrottling = {
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottledException",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
    "TransactionInProgressException",
    "RequestLimitExceeded",
    "BandwidthLimitExceeded",
    "LimitExceededException",
    "RequestThrottled",
    "SlowDown",
    "PriorRequestNotComplete",
    "EC2ThrottledException",
};

// Transient server-side failures that may come with a 4xx status.
constexpr std::array<std::string_view, 6> kTransient = {
    "RequestTimeout",          "RequestTimeoutException", "InternalError",
    "KMSInternalException",    "DependencyTimeoutException", "KeyUnavailableException",
};

// Never retried, even when (wrongly) paired with a 5xx status: retrying cannot change them
// and only adds load and latency to a denial the user must see.
constexpr std::array<std::string_view, 14> kNever = {
    "AccessDeniedException",      "NotFoundException",         "InvalidCiphertextException",
    "DisabledException",          "KMSInvalidStateException",  "IncorrectKeyException",
    "InvalidKeyUsageException",   "ValidationException",       "UnrecognizedClientException",
    "InvalidSignatureException",  "IncompleteSignature",       "ExpiredTokenException",
    "InvalidGrantTokenException", "MissingAuthenticationToken",
};

template <size_t N>
bool in(const std::array<std::string_view, N>& table, std::string_view code) {
  return std::find(table.begin(), table.end(), code) != table.end();
}

}  // namespace

std::string_view short_error_code(std::string_view type) {
  if (size_t hash = type.rfind('#'); hash != std::string_view::npos) type.remove_prefix(hash + 1);
  if (size_t colon = type.find(':'); colon != std::string_view::npos) type = type.substr(0, colon);
  return type;
}

RetryClass classify_http(long status, std::string_view error_code) {
  std::string_view code = short_error_code(error_code);
  if (in(kNever, code)) return RetryClass::kNever;
  if (status == 429 || in(kThrottling, code)) return RetryClass::kThrottled;
  if (status >= 500 || in(kTransient, code)) return RetryClass::kTransient;
  return RetryClass::kNever;
}

std::chrono::milliseconds backoff_delay(const RetryPolicy& p, int retry, double random01) {
  random01 = std::clamp(random01, 0.0, 1.0);
  // base · 2^retry without overflow: the cap is reached long before the shift would wrap.
  double ceiling = std::min(double(p.base.count()) * std::ldexp(1.0, std::clamp(retry, 0, 62)),
                            double(p.max_backoff.count()));
  return std::chrono::milliseconds(static_cast<int64_t>(random01 * ceiling));
}

bool RetryQuota::acquire(bool timeout_or_connection) {
  const int cost = timeout_or_connection ? kTimeoutCost : kRetryCost;
  std::lock_guard g(mu_);
  if (tokens_ < cost) {
    ++refused_;
    return false;
  }
  tokens_ -= cost;
  return true;
}

void RetryQuota::release(int spent) {
  std::lock_guard g(mu_);
  tokens_ = std::min(kInitial, tokens_ + (spent > 0 ? spent : kNoRetryIncrement));
}

int RetryQuota::available() const {
  std::lock_guard g(mu_);
  return tokens_;
}

uint64_t RetryQuota::refused() const {
  std::lock_guard g(mu_);
  return refused_;
}

double default_random01() {
  return double(random_u64() >> 11) * 0x1.0p-53;  // 53 random bits -> [0, 1)
}

}  // namespace kmsfs::aws
