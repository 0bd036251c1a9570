// Per-operation FUSE counters and latency histograms for the metrics endpoint
// (kmsfs_fuse_requests_total, kmsfs_fuse_request_errors_total,
// kmsfs_fuse_request_duration_seconds). Recording is on every request's path, so it takes
// no lock and allocates nothing: fixed buckets and relaxed atomics; a scrape reads them
// without stopping anyone (a snapshot may be a request or two out of step between its
// counters, which Prometheus tolerates).
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <string_view>

namespace kmsfs {

enum class FuseOp : uint8_t {
  kLookup, kForget, kGetattr, kSetattr, kReadlink, kMknod, kMkdir, kSymlink, kLink, kUnlink,
  kRmdir, kRename, kOpen, kCreate, kRead, kWrite, kRelease, kFsync, kFallocate, kOpendir,
  kReaddir, kReaddirplus, kReleasedir, kFsyncdir, kStatfs, kSetxattr, kGetxattr, kListxattr,
  kRemovexattr,
  kCount
};
constexpr size_t kFuseOpCount = static_cast<size_t>(FuseOp::kCount);

// "lookup", "read", ... (the libfuse operation's name; forget_multi counts as forget).
std::string_view fuse_op_name(FuseOp op);

class FuseOpStats {
 public:
  // Upper bounds in seconds (`le`), one more for +Inf: from a cached getattr (~10 µs) to a
  // create that waits for the KMS (seconds).
  static constexpr std::array<double, 16> kBuckets = {0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005,
                                                      0.001,   0.0025,   0.005,   0.01,   0.025,   0.05,
                                                      0.1,     0.25,     1.0,     5.0};
  // Errnos above this are counted together under it.
  static constexpr int kMaxErrno = 133;

  // One request, answered `err` (0, or the errno replied) after `d`. Lock-free.
  void record(FuseOp op, int err, std::chrono::nanoseconds d) noexcept;

  struct Op {
    uint64_t requests = 0;
    std::array<uint64_t, kBuckets.size() + 1> buckets{};  // not cumulative
    double seconds = 0;                                    // sum of durations
    std::map<int, uint64_t> errors;                        // errno -> requests
  };
  std::array<Op, kFuseOpCount> snapshot() const;

 private:
  struct PerOp {
    std::atomic<uint64_t> requests{0};
    std::atomic<uint64_t> nanoseconds{0};
    std::array<std::atomic<uint64_t>, kBuckets.size() + 1> buckets{};
    std::array<std::atomic<uint64_t>, kMaxErrno + 1> errors{};
  };
  std::array<PerOp, kFuseOpCount> ops_{};
};

// The process's (one mount per daemon).
FuseOpStats& fuse_op_stats();

}  // namespace kmsfs
