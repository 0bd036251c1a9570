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
  Snapshot::Histogram& h = s_.latency_by_operation[std::string(operation)];
  ++h.buckets[bucket];
  h.sum += seconds;
  ++h.count;
}

void RequestStats::record_retry(std::string_view operation) {
  std::lock_guard lk(mu_);
  ++s_.retries[std::string(operation)];
}

void RequestStats::record_throttled() {
  std::lock_guard lk(mu_);
  ++s_.throttled;
}

void RequestStats::set_live_source(std::function<void(Snapshot&)> source) {
  std::lock_guard lk(mu_);
  live_ = std::move(source);
}

RequestStats::Snapshot RequestStats::snapshot() const {
  Snapshot out;
  std::function<void(Snapshot&)> live;
  {
    std::lock_guard lk(mu_);
    out = s_;
    live = live_;
  }
  if (live) live(out);
  return out;
}

}  // namespace kmsfs
