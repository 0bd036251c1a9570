// The audit log file (docs/OPERATIONS.md "The audit log"): every key operation of the
// mount as one JSON line, written off the backing directory by a thread of its own, so a
// FUSE operation never waits on the log's disk (unless --audit-required asks it to, for
// at most `required_wait`).
//
// - Opened O_WRONLY|O_APPEND|O_CREAT|O_CLOEXEC|O_NOFOLLOW, mode 0600 (an existing file is
//   set to 0600): the log names files and keys, which is no one else's business.
// - Rotated by size: before a line would take the file past `max_size`, NAME becomes
//   NAME.1, NAME.1 becomes NAME.2, ..., NAME.`keep` is dropped, and a new NAME is opened.
// - fsync policy: each batch of lines the writer takes from its queue is written with
//   write(2) and then fdatasync'd (and a file is fdatasync'd before it is rotated), so a
//   line a required log confirmed is on disk; a crash loses at most the queued lines.
// - A failed write is counted (stats), logged at most once per 10 s, and its lines are
//   dropped; a queue past `max_queued_bytes` (a disk that stopped) drops new lines the same
//   way. Without --audit-required key operations go on; with it, an operation whose line
//   was not written within `required_wait` fails (EIO): no key is used unrecorded.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>

#include "base/status.h"
#include "base/unique_fd.h"
#include "keys/audit.h"

namespace kmsfs {

struct AuditLogOptions {
  std::string path;
  uint64_t max_size = 64ull << 20;  // bytes per file before it is rotated
  unsigned keep = 5;                // rotated files kept: NAME.1 .. NAME.keep
  bool required = false;            // fail key operations whose line cannot be written
  std::chrono::milliseconds required_wait{std::chrono::seconds(5)};
  size_t max_queued_bytes = 16u << 20;
};

struct AuditLogStats {
  uint64_t records = 0;         // lines written
  uint64_t bytes = 0;           // bytes written
  uint64_t write_failures = 0;  // lines lost to a failed write, open or rotation
  uint64_t dropped = 0;         // lines dropped because the queue was full
  uint64_t rotations = 0;
  int64_t last_failure_unix = 0;
};

class AuditLog final : public AuditSink {
 public:
  // Opens (creates) the file now, so a path that cannot be written is refused at start.
  static Result<std::unique_ptr<AuditLog>> open(AuditLogOptions opts);
  ~AuditLog() override;  // writes what is queued, fdatasyncs, closes
  AuditLog(const AuditLog&) = delete;
  AuditLog& operator=(const AuditLog&) = delete;

  Status record(AuditEvent e) override;

  // Waits until every line recorded so far has been written (or lost).
  void wait_written();
  AuditLogStats stats() const;
  const AuditLogOptions& options() const { return opts_; }

  // One event as its JSON line (no trailing newline), stamped `now`.
  static std::string format(const AuditEvent& e, std::chrono::system_clock::time_point now);

 private:
  explicit AuditLog(AuditLogOptions opts, UniqueFd fd, uint64_t size);
  void writer(std::stop_token st);
  // Writes `lines` (each with its newline) to the file, rotating as needed. Returns how
  // many were lost. Writer thread only.
  uint64_t write_batch(const std::deque<std::pair<uint64_t, std::string>>& lines, uint64_t& first_failed,
                       uint64_t& last_failed);
  Status rotate();
  Status reopen();
  void note_failure(const Status& s, uint64_t lines);

  const AuditLogOptions opts_;
  UniqueFd fd_;          // writer thread only (and the constructor/destructor)
  uint64_t size_ = 0;    // of the current file; writer thread only
  bool torn_ = false;    // the last write stopped mid-line: start the next with a newline

  mutable std::mutex mu_;
  std::condition_variable_any cv_;       // the writer's wake-up
  std::condition_variable done_cv_;      // required callers wait for their line
  std::deque<std::pair<uint64_t, std::string>> queue_;  // (seq, line)
  size_t queued_bytes_ = 0;
  uint64_t next_seq_ = 1;
  uint64_t done_seq_ = 0;                // every line up to this one was tried
  std::deque<std::pair<uint64_t, uint64_t>> failed_;  // recent seq ranges that were lost
  AuditLogStats stats_;
  std::chrono::steady_clock::time_point last_warned_{};
  uint64_t unwarned_failures_ = 0;

  std::jthread thread_;  // last: stopped and joined before the rest goes
};

}  // namespace kmsfs
