// The crash model of powerloss_test.cc, shared with rotation_powerloss_test.cc: what a
// file may read back as after a power cut, given what the workload wrote and what its
// last successful fsync covered (see powerloss_test.cc's header comment for the rules),
// and the scaffolding both workloads share (CutAwareWorkload).
#pragma once

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

namespace kmsfs::testing {

struct Write {
  uint64_t off;
  std::string data;
};

// One file (inode) as the workload sees it, and what its last successful fsync covered.
struct FileModel {
  std::string name;  // for reports
  std::string cur;
  bool ever_synced = false;
  std::string synced;            // content at the last successful fsync/fdatasync
  std::vector<Write> since;      // writes since then (also failed or in-flight ones)
  uint64_t min_size = 0, max_size = 0;  // over the synced size and every size since
  std::set<uint64_t> written;    // blocks written since
  std::vector<std::string> ops;  // since the last fsync, for reports

  void note(const std::string& s) {
    if (ops.size() < 40) ops.push_back(s);
    else if (ops.size() == 40) ops.push_back("...");
  }
  void resize(uint64_t n) {
    cur.resize(n, '\0');
    min_size = std::min(min_size, n);
    max_size = std::max(max_size, n);
  }
  void write(uint64_t off, const std::string& d, uint64_t B) {
    note("write off=" + std::to_string(off) + " len=" + std::to_string(d.size()));
    if (off + d.size() > cur.size()) resize(off + d.size());
    cur.replace(off, d.size(), d);
    since.push_back({off, d});
    for (uint64_t b = off / B; b <= (off + d.size() - 1) / B; ++b) written.insert(b);
  }
  void truncate(uint64_t n) {
    note("truncate " + std::to_string(cur.size()) + " -> " + std::to_string(n));
    resize(n);
  }
  void synced_now() {
    ever_synced = true;
    synced = cur;
    since.clear();
    written.clear();
    ops.clear();
    min_size = max_size = cur.size();
  }

  static uint64_t nblocks(uint64_t p, uint64_t B) { return std::max<uint64_t>(1, (p + B - 1) / B); }
  // Blocks whose EIO is excused: written since the last fsync, or (if the size changed)
  // any block that was the last one at some size since (kmsfs re-seals it on a size change).
  bool may_fail(uint64_t blk, uint64_t B) const {
    if (!ever_synced || written.count(blk)) return true;
    if (min_size != max_size && blk + 1 >= nblocks(min_size, B) && blk < nblocks(max_size, B)) return true;
    return false;
  }
  bool byte_ok(uint64_t pos, char c) const {
    if (ever_synced && pos < synced.size() && synced[pos] == c) return true;
    if (c == '\0' && pos >= min_size) return true;
    for (const auto& w : since)
      if (pos >= w.off && pos < w.off + w.data.size() && w.data[pos - w.off] == c) return true;
    return false;
  }
  std::string describe() const {
    std::ostringstream o;
    o << name << ": " << (ever_synced ? "synced size " + std::to_string(synced.size()) : "never fsync'ed")
      << ", sizes since [" << min_size << ", " << max_size << "], current " << cur.size() << "; since the last fsync:";
    for (const auto& s : ops) o << " [" << s << "]";
    return o.str();
  }
};

// What a file read back as after the cut.
struct ReadBack {
  int open_errno = 0;
  uint64_t size = 0;
  std::vector<int> block_errno;       // per block, 0 if it read
  std::string data;                   // zeros where a block failed
  int eof_errno = 0;                  // a read at EOF
};

inline ReadBack read_back(const std::string& path, uint64_t B) {
  ReadBack r;
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    r.open_errno = errno;
    return r;
  }
  struct stat st {};
  ::fstat(fd, &st);
  r.size = static_cast<uint64_t>(st.st_size);
  r.data.assign(r.size, '\0');
  for (uint64_t off = 0; off < r.size; off += B) {
    size_t len = static_cast<size_t>(std::min<uint64_t>(B, r.size - off));
    ssize_t n = ::pread(fd, r.data.data() + off, len, static_cast<off_t>(off));
    if (n < 0) {
      r.block_errno.push_back(errno);
      std::fill_n(r.data.begin() + static_cast<long>(off), len, '\0');
    } else if (static_cast<size_t>(n) != len) {
      r.block_errno.push_back(-1);  // short read inside the file
    } else {
      r.block_errno.push_back(0);
    }
  }
  char c;
  if (::pread(fd, &c, 1, static_cast<off_t>(r.size)) < 0) r.eof_errno = errno;
  ::close(fd);
  return r;
}

// Problems of `rb` as a version of `f`; empty if it is one. `lost` counts failing blocks
// that held fsync'ed bytes (allowed when kmsfs re-sealed them after the fsync: the
// documented torn re-seal window of FORMAT.md 5.6), for the report.
inline std::vector<std::string> judge(const FileModel& f, const ReadBack& rb, uint64_t B,
                               std::vector<std::string>* lost = nullptr) {
  std::vector<std::string> bad;
  if (rb.open_errno) {
    if (f.ever_synced) bad.push_back("open failed: " + std::string(std::strerror(rb.open_errno)));
    return bad;
  }
  if (f.ever_synced && (rb.size < f.min_size || rb.size > f.max_size))
    bad.push_back("size " + std::to_string(rb.size) + " outside [" + std::to_string(f.min_size) + ", " +
                  std::to_string(f.max_size) + "]");
  if (!f.ever_synced && rb.size > f.max_size) bad.push_back("size " + std::to_string(rb.size) + " > largest ever");
  for (uint64_t b = 0; b < rb.block_errno.size(); ++b) {
    if (rb.block_errno[b] != 0) {
      if (!f.may_fail(b, B))
        bad.push_back("block " + std::to_string(b) + " (bytes " + std::to_string(b * B) + "..) reads " +
                      (rb.block_errno[b] > 0 ? std::strerror(rb.block_errno[b]) : "short") +
                      " but was fsync'ed and not written since");
      else if (lost && f.ever_synced && b * B < f.min_size)
        lost->push_back(f.name + " block " + std::to_string(b) + ": fsync'ed bytes " + std::to_string(b * B) + ".." +
                        std::to_string(std::min((b + 1) * B, f.min_size)) +
                        (f.min_size != f.max_size ? " (size changed since the fsync)" : " (overwritten in part)"));
      continue;
    }
    const uint64_t end = std::min<uint64_t>((b + 1) * B, rb.size);
    for (uint64_t pos = b * B; pos < end; ++pos) {
      if (!f.byte_ok(pos, rb.data[pos])) {
        std::ostringstream o;
        o << "byte " << pos << " (block " << b << ") reads 0x" << std::hex << (static_cast<unsigned>(rb.data[pos]) & 0xff)
          << std::dec << ": neither the fsync'ed byte"
          << (f.ever_synced && pos < f.synced.size()
                  ? " (0x" + [&] { std::ostringstream h; h << std::hex << (static_cast<unsigned>(f.synced[pos]) & 0xff); return h.str(); }() + ")"
                  : "")
          << " nor one written since nor a zero past the smallest size";
        bad.push_back(o.str());
        break;  // one per block is enough
      }
    }
  }
  if (rb.eof_errno && f.ever_synced && f.min_size == f.max_size && !f.may_fail(FileModel::nblocks(rb.size, B) - 1, B))
    bad.push_back("read at EOF fails: " + std::string(std::strerror(rb.eof_errno)));
  return bad;
}

// What a workload thread racing a power cut needs in either test: paths under the mount,
// the seeded RNG (a run is reproduced from its seed, so the order of draws matters),
// whether the cut has begun (for check/trusted), and the first failure seen before it.
class CutAwareWorkload {
 public:
  std::string failure() const {
    std::lock_guard l(mu_);
    return failure_;
  }
  int op_count() const { return op_; }
  int late_syncs() const { return late_syncs_; }

 protected:
  CutAwareWorkload(std::string root, uint64_t B, uint64_t seed) : root_(std::move(root)), B_(B), rng_(seed) {}

  // Called by run() before the first step: `cut_started` is set when the cut begins;
  // `syncing` is non-zero while a big fsync is in flight (the cut aims for those).
  void watch(std::atomic<bool>& cut_started, std::atomic<int>& syncing) {
    cut_started_ = &cut_started;
    syncing_ = &syncing;
  }

  std::string p(const std::string& rel) const { return root_ + "/" + rel; }
  uint64_t uni(uint64_t lo, uint64_t hi) { return std::uniform_int_distribution<uint64_t>(lo, hi)(rng_); }
  std::string rand_bytes(size_t n) {
    std::string d(n, '\0');
    for (size_t i = 0; i < n; i += 8) {
      uint64_t x = rng_();
      std::memcpy(&d[i], &x, std::min<size_t>(8, n - i));
    }
    return d;
  }

  // A failed call before the cut is a kmsfs failure (in the rotation test too: the
  // rotation must not disturb applications); after it, expected.
  bool check(long rc, const std::string& what) {
    if (rc >= 0) return true;
    const int e = errno;
    if (!cut_started_ || !cut_started_->load()) {
      std::lock_guard l(mu_);
      if (failure_.empty()) failure_ = "op " + std::to_string(op_) + ": " + what + " failed before the cut: " + std::strerror(e);
    }
    return false;
  }

  // A sync counts only if it returned before the cut began: once the XFS is shut down,
  // fsync of a directory can return 0 without having forced anything (xfs_dir_fsync does
  // not check for shutdown, and shutdown unpins the log items it would have waited for).
  bool trusted(long rc, const std::string& what) {
    if (!check(rc, what)) return false;
    if (cut_started_ && cut_started_->load()) {
      ++late_syncs_;
      return false;
    }
    return true;
  }

  bool fsync_dir(const std::string& rel) {
    int fd = ::open(p(rel).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (!check(fd, "open dir " + rel)) return false;
    const bool ok = trusted(::fsync(fd), "fsync dir " + rel);
    ::close(fd);
    return ok;
  }

  std::string root_;
  uint64_t B_;
  std::mt19937_64 rng_;
  std::atomic<bool>* cut_started_ = nullptr;
  std::atomic<int> no_sync_counter_{0};
  std::atomic<int>* syncing_ = &no_sync_counter_;
  mutable std::mutex mu_;
  std::string failure_;
  std::atomic<int> op_{0};  // operations so far; failure messages name the op
  int late_syncs_ = 0;      // syncs that returned 0 after the cut began (not counted as durable)
};

}  // namespace kmsfs::testing
