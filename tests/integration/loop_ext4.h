// A small ext4 on a loop device, for tests that need a backing store that fills up (a full
// disk, a quota): ENOSPC and EDQUOT tests (enospc_test.cc) and the fault soak
// (soak_test.cc). RAII: the ext4 mount and the loop device go away with the object, also
// when a check fails; the kmsfs mount on top must go first (declare it after this).
#pragma once

#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "loop_xfs.h"  // must, have, add_sbin_to_path
#include "mounted_vault.h"

namespace kmsfs::testing {

class LoopExt4 {
 public:
  struct Options {
    std::vector<std::string> mkfs_args{};  // e.g. {"-O", "quota"}
    std::string mount_options{};           // e.g. "usrquota" (mount -o)
  };

  // Returns a skip reason, or "" when the machine can do this.
  static std::string unavailable() {
    if (::geteuid() != 0) return "needs root";
    if (::access("/dev/loop-control", F_OK) != 0) return "no /dev/loop-control (loop devices unavailable)";
    for (const char* p : {"losetup", "mkfs.ext4"})
      if (!have(p)) return std::string(p) + " not found (Debian packages mount, e2fsprogs)";
    return "";
  }

  // -m 0: no blocks reserved for root (the daemon runs as root), so the free space statvfs
  // reports is all there is.
  LoopExt4(const TempDir& tmp, uint64_t size) : LoopExt4(tmp, size, Options{}) {}
  LoopExt4(const TempDir& tmp, uint64_t size, const Options& o) : image_(tmp / "ext4.img"), mnt_(tmp / "ext4") {
    ::mkdir(mnt_.c_str(), 0755);
    int fd = ::open(image_.c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0600);
    if (fd < 0 || ::ftruncate(fd, static_cast<off_t>(size)) != 0) throw std::runtime_error("cannot create image");
    ::close(fd);
    std::vector<std::string> mkfs = {"mkfs.ext4", "-q", "-F", "-m", "0"};
    mkfs.insert(mkfs.end(), o.mkfs_args.begin(), o.mkfs_args.end());
    mkfs.push_back(image_);
    ProcessResult r = run(mkfs);
    if (r.exit_code != 0) {
      skip_reason_ = "mkfs.ext4 failed: " + r.err;
      return;
    }
    r = run({"losetup", "--find", "--show", image_});
    if (r.exit_code != 0) {
      skip_reason_ = "losetup --find --show failed: " + r.err;
      return;
    }
    dev_ = r.out.substr(0, r.out.find('\n'));
    std::vector<std::string> mount = {"mount", "-t", "ext4"};
    if (!o.mount_options.empty()) mount.insert(mount.end(), {"-o", o.mount_options});
    mount.insert(mount.end(), {dev_, mnt_});
    r = run(mount);
    if (r.exit_code != 0) {
      skip_reason_ = "cannot mount ext4 from a loop device: " + r.err;
      return;
    }
    mounted_ = true;
  }
  ~LoopExt4() {
    if (mounted_ && ::umount2(mnt_.c_str(), 0) != 0) ::umount2(mnt_.c_str(), MNT_DETACH);
    if (!dev_.empty()) {
      // A lazily detached filesystem may hold the device a moment longer.
      for (int i = 0; i < 50 && run({"losetup", "-d", dev_}).exit_code != 0; ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  }
  LoopExt4(const LoopExt4&) = delete;
  LoopExt4& operator=(const LoopExt4&) = delete;

  const std::string& skip_reason() const { return skip_reason_; }
  const std::string& mnt() const { return mnt_; }
  const std::string& dev() const { return dev_; }
  std::string at(const std::string& rel) const { return mnt_ + "/" + rel; }
  uint64_t free_bytes() const {
    struct statvfs sv {};
    ::statvfs(mnt_.c_str(), &sv);
    return static_cast<uint64_t>(sv.f_bavail) * sv.f_frsize;
  }

  // Fills the filesystem to its last block with `name` (1 MiB writes, then smaller down to
  // 4 KiB), so the next allocation fails. Returns the bytes written.
  uint64_t fill(const std::string& name) const {
    const std::string chunk(1 << 20, 'f');
    uint64_t total = 0;
    int fd = ::open(at(name).c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (fd < 0) throw std::runtime_error("cannot create " + at(name));
    for (size_t n = chunk.size(); n >= 4096; n /= 16)
      for (ssize_t w; (w = ::write(fd, chunk.data(), n)) > 0;) total += static_cast<uint64_t>(w);
    ::fsync(fd);
    ::close(fd);
    return total;
  }

 private:
  std::string image_, mnt_, dev_, skip_reason_;
  bool mounted_ = false;
};

}  // namespace kmsfs::testing
