// The daemon's open-file budget. Every inode the kernel knows holds one descriptor (an
// open file's included: fs/inode_table.h Inode::fd), so RLIMIT_NOFILE bounds how many
// files clients can hold open on the mount and how many inodes the kernel may cache
// before the daemon asks it to forget some (Filesystem::await_eviction). Running out is
// an operator's problem to fix, so it is said in the log, once per 10 s at most.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <mutex>

namespace kmsfs {

// Descriptors kept back for the daemon itself: stdio, /dev/fuse, the vault lock, the
// control and metrics sockets, the key provider's connections, the rotation worker's
// walk and files, directory handles of short-lived listings. libfuse's clone fds (one
// per worker thread) come on top (FuseMount adds --threads).
inline constexpr size_t kFdReserve = 64;

// Raises the soft RLIMIT_NOFILE to the hard limit, and as root (CAP_SYS_RESOURCE) the
// hard one up to the system's per-process maximum (fs.nr_open), as virtiofsd does.
struct FdLimit {
  size_t before = 0;  // the soft limit the daemon started with
  size_t limit = 0;   // the one in force now
};
FdLimit raise_fd_limit();
// The info line saying it (once the mount is up: a failed mount says one line only).
void log_fd_limit(const FdLimit& l);

// Counts opens the daemon failed for lack of descriptors (EMFILE: this process's limit;
// ENFILE: the system's file table) and logs one warning line at most every 10 s, with
// the count since the last line, the limit, and what to raise.
class FdShortage {
 public:
  using Clock = std::chrono::steady_clock;
  static constexpr auto kInterval = std::chrono::seconds(10);

  // The process's: the mount sets the limit it sized itself from.
  static FdShortage& process();

  void set_limit(size_t limit, size_t reserve);
  // Call with the errno of any failed call; only EMFILE and ENFILE count. `what` names
  // the operation ("open backing file"). True if this call logged a line.
  bool note(int err, const char* what, Clock::time_point now = Clock::now());
  uint64_t total() const;

 private:
  mutable std::mutex mu_;
  size_t limit_ = 0, reserve_ = 0;
  uint64_t total_ = 0;
  uint64_t since_line_ = 0;  // refusals not yet in a line
  bool logged_ = false;
  Clock::time_point last_line_{};
};

}  // namespace kmsfs
