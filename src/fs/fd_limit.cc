#include "fs/fd_limit.h"

#include <sys/resource.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cerrno>
#include <fstream>

namespace kmsfs {

FdLimit raise_fd_limit() {
  const auto count = [](rlim_t v) { return v == RLIM_INFINITY ? size_t{1} << 20 : static_cast<size_t>(v); };
  rlimit cur{};
  if (::getrlimit(RLIMIT_NOFILE, &cur) != 0) return FdLimit{1024, 1024};
  rlim_t want = cur.rlim_max;
  if (::geteuid() == 0) {
    std::ifstream in("/proc/sys/fs/nr_open");
    unsigned long long nr_open = 0;
    if (in >> nr_open && want != RLIM_INFINITY && nr_open > want) want = static_cast<rlim_t>(nr_open);
  }
  rlimit next = cur;
  if (cur.rlim_cur != want || cur.rlim_max < want) {
    next = rlimit{want, std::max(want, cur.rlim_max)};
    if (::setrlimit(RLIMIT_NOFILE, &next) != 0) {
      next = rlimit{cur.rlim_max, cur.rlim_max};  // not allowed to raise the hard limit
      if (::setrlimit(RLIMIT_NOFILE, &next) != 0) next = cur;
    }
  }
  return FdLimit{count(cur.rlim_cur), count(next.rlim_cur)};
}

void log_fd_limit(const FdLimit& l) {
  if (l.limit != l.before)
    spdlog::info("open files: limit {} (raised from {})", l.limit, l.before);
  else
    spdlog::info("open files: limit {}", l.limit);
}

FdShortage& FdShortage::process() {
  static FdShortage s;
  return s;
}

void FdShortage::set_limit(size_t limit, size_t reserve) {
  std::lock_guard lock(mu_);
  limit_ = limit;
  reserve_ = reserve;
}

uint64_t FdShortage::total() const {
  std::lock_guard lock(mu_);
  return total_;
}

bool FdShortage::note(int err, const char* what, Clock::time_point now) {
  if (err != EMFILE && err != ENFILE) return false;
  std::lock_guard lock(mu_);
  ++total_;
  ++since_line_;
  if (logged_ && now - last_line_ < kInterval) return false;
  const uint64_t n = since_line_;
  since_line_ = 0;
  const bool first = !logged_;
  logged_ = true;
  last_line_ = now;
  if (err == ENFILE) {
    spdlog::warn("out of file descriptors: {} open(s) refused with ENFILE {} (last: {}): the system's file table is "
                 "full; raise fs.file-max (sysctl) or close files elsewhere",
                 n, first ? "since the mount started" : "since the last such line", what);
  } else {
    spdlog::warn("out of file descriptors: {} open(s) refused with EMFILE {} (last: {}): this daemon may have {} files "
                 "open (RLIMIT_NOFILE; {} kept for itself, the rest hold the files clients have open and the inodes "
                 "the kernel caches); raise LimitNOFILE= in its systemd unit (kmsfs@.service), or the hard limit "
                 "(ulimit -Hn) of the shell that runs kmsfs mount",
                 n, first ? "since the mount started" : "since the last such line", what, limit_, reserve_);
  }
  return true;
}

}  // namespace kmsfs
