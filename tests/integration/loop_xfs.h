// Power-cut tests: a vault's backing directory on XFS on a loop device, cut with
// `xfs_io -x -c shutdown` (no log flush: what was not yet durable is gone, as after a
// power loss), and a `kmsfs mount --foreground` daemon over a backing directory anywhere.
// RAII: everything (kmsfs mount, XFS mount, loop device) goes away with its object, also
// when a check fails. Used by powerloss_test.cc and rotation_powerloss_test.cc.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "mounted_vault.h"

namespace kmsfs::testing {

// losetup, mkfs.xfs and mount live in /sbin, which a non-login root shell may lack.
inline void add_sbin_to_path() {
  std::string path = ::getenv("PATH") ? ::getenv("PATH") : "/usr/bin:/bin";
  if (path.find("/usr/sbin") == std::string::npos) ::setenv("PATH", (path + ":/usr/sbin:/sbin").c_str(), 1);
}

inline bool have(const std::string& prog) { return run({"/bin/sh", "-c", "command -v " + prog}).exit_code == 0; }

inline std::string must(const std::vector<std::string>& argv) {
  ProcessResult r = run(argv, {});
  if (r.exit_code != 0) {
    std::string cmd;
    for (const auto& a : argv) cmd += a + " ";
    throw std::runtime_error(cmd + "exited " + std::to_string(r.exit_code) + ": " + r.err + r.out);
  }
  return r.out;
}

class LoopXfs {
 public:
  static constexpr uint64_t kDefaultImageSize = 512ull << 20;

  // Returns a skip reason, or "" when the machine can do this.
  static std::string unavailable() {
    if (::geteuid() != 0) return "needs root";
    if (::access("/dev/loop-control", F_OK) != 0) return "no /dev/loop-control (loop devices unavailable)";
    for (const char* p : {"losetup", "mkfs.xfs", "xfs_io"})
      if (!have(p)) return std::string(p) + " not found (Debian packages mount, xfsprogs)";
    return "";
  }

  explicit LoopXfs(const TempDir& tmp, uint64_t image_size = kDefaultImageSize)
      : image_(tmp / "xfs.img"), mnt_(tmp / "xfs") {
    ::mkdir(mnt_.c_str(), 0755);
    int fd = ::open(image_.c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0600);
    if (fd < 0 || ::ftruncate(fd, static_cast<off_t>(image_size)) != 0) throw std::runtime_error("cannot create image");
    ::close(fd);
    must({"mkfs.xfs", "-q", "-f", image_});
    ProcessResult r = run({"losetup", "--find", "--show", image_});
    if (r.exit_code != 0) {
      skip_reason_ = "losetup --find --show failed: " + r.err;
      return;
    }
    dev_ = r.out.substr(0, r.out.find('\n'));
    r = run({"mount", "-t", "xfs", dev_, mnt_});
    if (r.exit_code != 0) {
      skip_reason_ = "cannot mount XFS from a loop device: " + r.err;
      return;
    }
    mounted_ = true;
  }

  ~LoopXfs() {
    if (mounted_ && ::umount2(mnt_.c_str(), 0) != 0) ::umount2(mnt_.c_str(), MNT_DETACH);
    if (!dev_.empty()) {
      // A lazily detached filesystem may hold the device a moment longer.
      for (int i = 0; i < 50 && run({"losetup", "-d", dev_}).exit_code != 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  }

  const std::string& skip_reason() const { return skip_reason_; }
  const std::string& mnt() const { return mnt_; }
  const std::string& dev() const { return dev_; }
  std::string at(const std::string& rel) const { return mnt_ + "/" + rel; }

  // The power cut: shut down without flushing the log. This is `xfs_io -x -c shutdown`
  // (XFS_IOC_GOINGDOWN, NOLOGFLUSH) issued directly: no fork/exec between deciding to cut
  // and the cut, so the window in which a sync's outcome is unknown stays microseconds.
  void shutdown() {
    constexpr unsigned long kGoingDown = _IOR('X', 125, uint32_t);  // XFS_IOC_GOINGDOWN
    uint32_t flags = 0x2;                                           // XFS_FSOP_GOING_FLAGS_NOLOGFLUSH
    int fd = ::open(mnt_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0 && ::ioctl(fd, kGoingDown, &flags) == 0) {
      ::close(fd);
      return;
    }
    if (fd >= 0) ::close(fd);
    must({"xfs_io", "-x", "-c", "shutdown", mnt_});
  }

  void unmount() {
    if (!mounted_) return;
    if (::umount2(mnt_.c_str(), 0) != 0) throw std::runtime_error("umount XFS: " + std::string(std::strerror(errno)));
    mounted_ = false;
  }
  void mount() {
    must({"mount", "-t", "xfs", dev_, mnt_});  // replays the log
    mounted_ = true;
  }

 private:
  std::string image_, mnt_, dev_, skip_reason_;
  bool mounted_ = false;
};

// A `kmsfs mount --foreground` daemon over a backing directory anywhere (MountedVault
// always keeps its backing directory in its own temp dir).
class Daemon {
 public:
  // `prefix` runs the daemon through a wrapper, e.g. {"setpriv", "--bounding-set", ..., "--"}.
  Daemon(std::string backing, std::string mnt, std::string keyring, std::string log, std::vector<std::string> extra,
         std::vector<std::string> prefix = {})
      : backing_(std::move(backing)),
        mnt_(std::move(mnt)),
        keyring_(std::move(keyring)),
        log_(std::move(log)),
        extra_(std::move(extra)),
        prefix_(std::move(prefix)) {
    struct stat st {};
    std::string parent = mnt_.substr(0, mnt_.find_last_of('/'));
    ::stat(parent.c_str(), &st);
    parent_dev_ = st.st_dev;
  }
  ~Daemon() { stop(); }

  bool mounted() const {
    struct stat st {};
    return ::stat(mnt_.c_str(), &st) == 0 && st.st_dev != parent_dev_;
  }

  void start() {
    std::vector<std::string> argv = prefix_;
    for (const auto& a : {kmsfs_bin(), std::string("mount"), backing_, mnt_, std::string("--foreground"),
                          std::string("--keyring"), keyring_})
      argv.push_back(a);
    argv.insert(argv.end(), extra_.begin(), extra_.end());
    bg_ = std::make_unique<Background>(argv, log_);
    for (int i = 0; i < 500; ++i) {
      if (mounted()) return;
      if (!bg_->running()) throw std::runtime_error("kmsfs mount exited during start-up: " + log());
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    throw std::runtime_error("kmsfs mount did not come up: " + log());
  }

  // Unmounts (lazily if busy), waits for the daemon, kills it if it hangs. Returns its
  // exit code (-1 if it had to be killed).
  int stop() {
    if (!bg_) return -1;
    // Not `if (mounted())`: after the cut, stat of the mountpoint fails with EIO (the
    // daemon's fstat on the dead XFS), yet it is mounted. EINVAL just means it is not.
    if (::umount2(mnt_.c_str(), 0) != 0 && errno != EINVAL) ::umount2(mnt_.c_str(), MNT_DETACH);
    int rc = bg_->wait(std::chrono::seconds(20));
    if (rc == -1) {
      bg_->kill(SIGKILL);
      bg_->wait(std::chrono::seconds(10));
    }
    struct stat st;
    if (::stat(mnt_.c_str(), &st) != 0 && errno == ENOTCONN) ::umount2(mnt_.c_str(), MNT_DETACH);
    bg_.reset();
    return rc;
  }

  pid_t pid() const { return bg_ ? bg_->pid() : -1; }

  std::string log() const {
    try {
      return read_file(log_);
    } catch (...) {
      return "";
    }
  }

 private:
  std::string backing_, mnt_, keyring_, log_;
  std::vector<std::string> extra_, prefix_;
  dev_t parent_dev_ = 0;
  std::unique_ptr<Background> bg_;
};

}  // namespace kmsfs::testing
