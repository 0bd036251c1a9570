#include "fs/op_stats.h"

#include <algorithm>

namespace kmsfs {
namespace {

constexpr std::array<std::string_view, kFuseOpCount> kNames = {
    "lookup",  "forget",  "getattr", "setattr",     "readlink",   "mknod",    "mkdir",   "symlink",
    "link",    "unlink",  "rmdir",   "rename",      "open",       "create",   "read",    "write",
    "release", "fsync",   "fallocate", "opendir",   "readdir",    "readdirplus", "releasedir", "fsyncdir",
    "statfs",  "setxattr", "getxattr", "listxattr", "removexattr"};

// The bucket bounds in nanoseconds, so that recording compares integers.
constexpr std::array<uint64_t, FuseOpStats::kBuckets.size()> bounds_ns() {
  std::array<uint64_t, FuseOpStats::kBuckets.size()> out{};
  for (size_t i = 0; i < out.size(); ++i) out[i] = static_cast<uint64_t>(FuseOpStats::kBuckets[i] * 1e9 + 0.5);
  return out;
}
constexpr auto kBoundsNs = bounds_ns();

}  // namespace

std::string_view fuse_op_name(FuseOp op) {
  const size_t i = static_cast<size_t>(op);
  return i < kNames.size() ? kNames[i] : "unknown";
}

void FuseOpStats::record(FuseOp op, int err, std::chrono::nanoseconds d) noexcept {
  const size_t i = static_cast<size_t>(op);
  if (i >= kFuseOpCount) return;
  PerOp& p = ops_[i];
  const uint64_t ns = d.count() > 0 ? static_cast<uint64_t>(d.count()) : 0;
  const size_t b = static_cast<size_t>(std::lower_bound(kBoundsNs.begin(), kBoundsNs.end(), ns) - kBoundsNs.begin());
  p.requests.fetch_add(1, std::memory_order_relaxed);
  p.nanoseconds.fetch_add(ns, std::memory_order_relaxed);
  p.buckets[b].fetch_add(1, std::memory_order_relaxed);
  if (err > 0) p.errors[static_cast<size_t>(std::min(err, kMaxErrno))].fetch_add(1, std::memory_order_relaxed);
}

std::array<FuseOpStats::Op, kFuseOpCount> FuseOpStats::snapshot() const {
  std::array<Op, kFuseOpCount> out;
  for (size_t i = 0; i < kFuseOpCount; ++i) {
    const PerOp& p = ops_[i];
    Op& o = out[i];
    o.requests = p.requests.load(std::memory_order_relaxed);
    o.seconds = static_cast<double>(p.nanoseconds.load(std::memory_order_relaxed)) / 1e9;
    for (size_t b = 0; b < o.buckets.size(); ++b) o.buckets[b] = p.buckets[b].load(std::memory_order_relaxed);
    for (size_t e = 1; e < p.errors.size(); ++e)
      if (uint64_t n = p.errors[e].load(std::memory_order_relaxed)) o.errors[static_cast<int>(e)] = n;
  }
  return out;
}

FuseOpStats& fuse_op_stats() {
  static FuseOpStats stats;
  return stats;
}

}  // namespace kmsfs
