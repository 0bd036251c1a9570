// Shared helpers of the POSIX-operation mount tests (files, dirs, links, attrs, xattrs,
// locks, mmap, concurrency, damage, lifecycle): real syscalls on a real mount, no mocks.
//
// Every binary that includes this also gets a gtest Environment that fails the run if a
// mount this process made under /var/tmp/kmsfs-it-* is still in /proc/self/mounts at the
// end. Only this process's mounts count (tests of other binaries may run in parallel
// under ctest -j and have theirs up legitimately); use PosixVault instead of
// MountedVault, and track_mountpoint() for mounts made with the CLI directly.
#pragma once

#include <fcntl.h>
#include <grp.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <functional>
#include <mutex>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "mounted_vault.h"

namespace kmsfs::testing {

// --- no mount left behind --------------------------------------------------------------

inline std::mutex& tracked_mu() {
  static std::mutex mu;
  return mu;
}
inline std::set<std::string>& tracked_mountpoints() {
  static std::set<std::string> s;
  return s;
}
inline void track_mountpoint(const std::string& mp) {
  std::lock_guard lock(tracked_mu());
  tracked_mountpoints().insert(mp);
}

// Mountpoints (octal escapes of /proc/self/mounts decoded) of every fuse.kmsfs mount.
inline std::vector<std::string> kmsfs_mounts() {
  std::ifstream in("/proc/self/mounts");
  std::vector<std::string> out;
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream ls(line);
    std::string src, mp, type;
    ls >> src >> mp >> type;
    if (type != "fuse.kmsfs") continue;
    std::string dec;
    for (size_t i = 0; i < mp.size(); ++i) {
      if (mp[i] == '\\' && i + 3 < mp.size()) {
        dec += static_cast<char>(std::stoi(mp.substr(i + 1, 3), nullptr, 8));
        i += 3;
      } else {
        dec += mp[i];
      }
    }
    out.push_back(dec);
  }
  return out;
}

// The whole /proc/self/mounts line of the mount at `mp` ("" if none).
inline std::string mount_line(const std::string& mp) {
  std::ifstream in("/proc/self/mounts");
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream ls(line);
    std::string src, m;
    ls >> src >> m;
    if (m == mp) return line;
  }
  return "";
}

class NoKmsfsMountLeft : public ::testing::Environment {
 public:
  void TearDown() override {
    std::lock_guard lock(tracked_mu());
    for (const auto& mp : kmsfs_mounts()) {
      if (mp.rfind("/var/tmp/kmsfs-it-", 0) != 0) continue;
      EXPECT_EQ(tracked_mountpoints().count(mp), 0u) << "a test left a kmsfs mount behind at " << mp;
    }
  }
};
inline ::testing::Environment* const kNoKmsfsMountLeft =
    ::testing::AddGlobalTestEnvironment(new NoKmsfsMountLeft);

// A MountedVault whose mountpoint the environment above checks at the end.
class PosixVault : public MountedVault {
 public:
  explicit PosixVault(VaultOptions opts = {}) : MountedVault(std::move(opts)) { track_mountpoint(mnt()); }
  // A remount that also checks the unmount was clean: the daemon exited 0 by itself
  // (not killed after a timeout because something kept the mount busy).
  void remount() {
    EXPECT_EQ(unmount(), 0) << "daemon exit status at unmount; log:\n" << log();
    mount();
  }
};

inline VaultOptions no_writeback() {
  VaultOptions o;
  o.mount_args = {"--no-writeback"};
  return o;
}

// --- fds and I/O -------------------------------------------------------------------------

class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(const std::string& path, int flags, mode_t mode = 0644) : fd_(::open(path.c_str(), flags | O_CLOEXEC, mode)) {}
  ~Fd() { reset(); }
  Fd(Fd&& o) noexcept : fd_(o.fd_) { o.fd_ = -1; }
  Fd& operator=(Fd&& o) noexcept {
    if (this != &o) reset(), fd_ = o.fd_, o.fd_ = -1;
    return *this;
  }
  int get() const { return fd_; }
  bool ok() const { return fd_ >= 0; }
  int release() {
    int f = fd_;
    fd_ = -1;
    return f;
  }
  void reset() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }
  // close(2) with its result (a deferred write error shows up here).
  int close() {
    int rc = ::close(fd_);
    fd_ = -1;
    return rc;
  }

 private:
  int fd_ = -1;
};

inline std::string err_str(int e) { return std::string(std::strerror(e)) + " (" + std::to_string(e) + ")"; }

// pread until `n` bytes or EOF; throws on error (with errno in the message).
inline std::string pread_str(int fd, size_t n, off_t off) {
  std::string out(n, '\0');
  size_t done = 0;
  while (done < n) {
    ssize_t k = ::pread(fd, out.data() + done, n - done, off + static_cast<off_t>(done));
    if (k < 0) {
      if (errno == EINTR) continue;
      throw std::runtime_error("pread at " + std::to_string(off + static_cast<off_t>(done)) + ": " + err_str(errno));
    }
    if (k == 0) break;
    done += static_cast<size_t>(k);
  }
  out.resize(done);
  return out;
}

inline void pwrite_str(int fd, const std::string& data, off_t off) {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t k = ::pwrite(fd, data.data() + done, data.size() - done, off + static_cast<off_t>(done));
    if (k < 0) {
      if (errno == EINTR) continue;
      throw std::runtime_error("pwrite at " + std::to_string(off) + ": " + err_str(errno));
    }
    done += static_cast<size_t>(k);
  }
}

inline void write_all(int fd, const std::string& data) {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t k = ::write(fd, data.data() + done, data.size() - done);
    if (k < 0) {
      if (errno == EINTR) continue;
      throw std::runtime_error(std::string("write: ") + err_str(errno));
    }
    done += static_cast<size_t>(k);
  }
}

inline off_t file_size(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) throw std::runtime_error("stat " + path + ": " + err_str(errno));
  return st.st_size;
}

inline struct stat lstat_of(const std::string& path) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) throw std::runtime_error("lstat " + path + ": " + err_str(errno));
  return st;
}

inline bool all_zero(const std::string& s) {
  for (char c : s)
    if (c) return false;
  return true;
}

// Index of the first difference (npos if equal), for readable failure messages.
inline size_t first_diff(const std::string& a, const std::string& b) {
  size_t n = std::min(a.size(), b.size());
  for (size_t i = 0; i < n; ++i)
    if (a[i] != b[i]) return i;
  return a.size() == b.size() ? std::string::npos : n;
}

#define EXPECT_SAME_BYTES(a, b)                                                                  \
  do {                                                                                           \
    const std::string& a_ = (a);                                                                 \
    const std::string& b_ = (b);                                                                 \
    EXPECT_TRUE(a_ == b_) << "sizes " << a_.size() << " vs " << b_.size() << ", first difference at " \
                          << ::kmsfs::testing::first_diff(a_, b_);                              \
  } while (0)

// Drops the page cache (and with it the kernel's cached pages of the mount), so the next
// read goes to the daemon.
inline void drop_caches() {
  ::sync();
  int fd = ::open("/proc/sys/vm/drop_caches", O_WRONLY | O_CLOEXEC);
  if (fd < 0) throw std::runtime_error("open drop_caches: " + err_str(errno));
  ssize_t n = ::write(fd, "3\n", 2);
  int e = errno;
  ::close(fd);
  if (n != 2) throw std::runtime_error("write drop_caches: " + err_str(e));
}

// Runs `fn` in a forked child (as another user if uid/gid are given) and returns its
// result; the child reports an int through its exit status (0..255). The child must not
// touch gtest: it only computes a code.
inline int in_child(const std::function<int()>& fn, int uid = -1, int gid = -1) {
  pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error("fork: " + err_str(errno));
  if (pid == 0) {
    if (gid >= 0 && (::setgroups(0, nullptr) != 0 || ::setgid(static_cast<gid_t>(gid)) != 0)) ::_exit(250);
    if (uid >= 0 && ::setuid(static_cast<uid_t>(uid)) != 0) ::_exit(251);
    ::_exit(fn() & 0xff);
  }
  int st = 0;
  while (::waitpid(pid, &st, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(st)) return 300 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
  return WEXITSTATUS(st);
}

// Layout of a backing file, from `kmsfs inspect` (so a matrix run with another block
// size still damages the intended block).
struct BackingLayout {
  uint64_t header_size = 0;
  uint64_t block_size = 0;
  uint64_t overhead = 40;  // nonce + tag of both ciphers (format/block_codec.h)
  std::string file_id;
  uint64_t block_offset(uint64_t i) const { return header_size + i * (block_size + overhead); }
  uint64_t sealed() const { return block_size + overhead; }
};

inline BackingLayout inspect_layout(const std::string& backing_file) {
  ProcessResult r = kmsfs({"inspect", "--backing-path", backing_file});
  BackingLayout l;
  std::istringstream in(r.out);
  std::string line;
  auto value = [&](const std::string& key) -> std::string {
    return line.rfind(key, 0) == 0 ? line.substr(key.size()) : std::string();
  };
  while (std::getline(in, line)) {
    if (auto v = value("block size: "); !v.empty()) l.block_size = std::stoull(v);
    if (auto v = value("header size: "); !v.empty()) l.header_size = std::stoull(v);
    if (auto v = value("file id: "); !v.empty()) l.file_id = v;
  }
  if (l.block_size == 0 || l.header_size == 0 || l.file_id.size() != 32)
    throw std::runtime_error("cannot parse kmsfs inspect output: " + r.out + r.err);
  return l;
}

}  // namespace kmsfs::testing
