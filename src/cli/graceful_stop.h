// What SIGTERM (systemctl stop), SIGINT and SIGHUP do to a serving mount: tell systemd
// (STOPPING=1), then unmount the way `kmsfs umount` does, while the session still serves,
// so the kernel writes back every cached write through the daemon before the mount goes.
// libfuse's own handlers ended the session first and then detached the mount, which
// dropped whatever the writeback cache still held for files left open.
//
// If files are open (EBUSY) the mount is detached instead: it leaves the namespace at
// once, and the daemon serves the open files until they are closed, then exits. A second
// signal ends the daemon at once (what the kernel still cached for open files is lost).
#pragma once

#include <csignal>
#include <string>
#include <thread>

namespace kmsfs::cli {

class GracefulStop {
 public:
  // Installs the handlers; must come before FuseMount::serve(), whose libfuse handlers
  // then leave these signals alone (libfuse only replaces the default disposition).
  explicit GracefulStop(std::string mountpoint);
  ~GracefulStop();  // restores the previous dispositions
  GracefulStop(const GracefulStop&) = delete;
  GracefulStop& operator=(const GracefulStop&) = delete;

  bool ok() const { return pipe_[1] >= 0; }

 private:
  void run();

  std::string mountpoint_;
  int pipe_[2] = {-1, -1};
  struct sigaction old_[3] {};
  std::thread thread_;
};

}  // namespace kmsfs::cli
