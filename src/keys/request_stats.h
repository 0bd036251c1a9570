// What a key provider's remote calls cost: requests by operation and result (every HTTP
// attempt is a billed request), retries, and a latency histogram per attempt. Providers
// that talk to a service keep one; `kmsfs stats` and the metrics endpoint read it.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>

namespace kmsfs {

class RequestStats {
 public:
  // Upper bounds of the latency buckets, in seconds (Prometheus' `le`); one more for +Inf.
  static constexpr std::array<double, 12> kBuckets = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                                      0.1,   0.25,   0.5,   1.0,  2.5,   5.0};

  struct Snapshot {
    std::map<std::pair<std::string, std::string>, uint64_t> requests;  // (operation, result)
    std::map<std::string, uint64_t> retries;                           // by operation
    std::array<uint64_t, kBuckets.size() + 1> buckets{};               // not cumulative
    double latency_sum = 0;
    uint64_t latency_count = 0;
    // The same latencies by operation (GenerateDataKey, Decrypt, ReEncrypt, ...).
    struct Histogram {
      std::array<uint64_t, kBuckets.size() + 1> buckets{};  // not cumulative
      double sum = 0;
      uint64_t count = 0;
    };
    std::map<std::string, Histogram> latency_by_operation;
    // How the client protects a struggling service (docs/OPERATIONS.md "When the KMS
    // struggles"). Counters add up; the gauges come from the client when asked.
    uint64_t throttled = 0;         // answers that were throttling errors
    uint64_t retries_refused = 0;   // retries not made: the retry quota was spent
    uint64_t breaker_opened = 0;    // circuit breaker openings, all endpoints
    uint64_t breaker_rejected = 0;  // calls failed without being sent (breaker open)
    int64_t retry_quota = -1;       // tokens left in the retry quota; -1: no quota
    std::map<std::string, int> breaker_state;  // endpoint -> 0 closed, 1 open, 2 half-open
    uint64_t total_requests() const;
  };

  // One attempt: `result` is "ok", the service's error type, or "ConnectionError".
  void record(std::string_view operation, std::string_view result, double seconds);
  void record_retry(std::string_view operation);
  void record_throttled();
  // Fills in the live figures (breaker states, quota, breaker counters) at snapshot time.
  // Called without this object's lock held.
  void set_live_source(std::function<void(Snapshot&)> source);
  Snapshot snapshot() const;

 private:
  mutable std::mutex mu_;
  Snapshot s_;
  std::function<void(Snapshot&)> live_;
};

}  // namespace kmsfs
