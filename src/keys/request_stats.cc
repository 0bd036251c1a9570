#include "keys/request_stats.h"

#include <algorithm>

namespace kmsfs {

uint64_t RequestStats::Snapshot::total_requests() const {
  uint64_t n = 0;
  for (const auto& [k, v] : requests) n += v;
  return n;
}

void RequestStats::record(std::string_view operation, std::string_view result, double seconds) {
  const size_t bucket = static_cast<size_t>(std::lower_bound(kBuckets.begin(), kBuckets.end(), seconds) - kBuckets.begin());
  std::lock_guard lk(mu_);
  ++s_.requests[{std::string(operation), std::string(result)}];
  ++s_.buckets[bucket];
  s_.latency_sum += seconds;
  ++s_.latency_count;
}

void RequestStats::record_retry(std::string_view operation) {
  std::lock_guard lk(mu_);
  ++s_.retries[std::string(operation)];
}

RequestStats::Snapshot RequestStats::snapshot() const {
  std::lock_guard lk(mu_);
  return s_;
}

}  // namespace kmsfs
