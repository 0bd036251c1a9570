#include "cli/graceful_stop.h"

#include <fcntl.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include <atomic>
#include <cerrno>
#include <cstring>

#include "base/log_fields.h"
#include "cli/service_notify.h"
#include "fs/mount.h"

namespace kmsfs::cli {

namespace {

constexpr int kSignals[3] = {SIGTERM, SIGINT, SIGHUP};
constexpr char kQuit = 0;  // from the destructor, not a signal

std::atomic<int> g_write_fd{-1};

void on_signal(int sig) {
  const int saved = errno;
  const int fd = g_write_fd.load();
  const char c = static_cast<char>(sig);
  if (fd >= 0) (void)!::write(fd, &c, 1);
  errno = saved;
}

// The lazy unmount that leaves open files working (fusermount3 -uz without root).
bool detach(const std::string& mountpoint) {
  if (::umount2(mountpoint.c_str(), MNT_DETACH) == 0) return true;
  if (errno != EPERM) return false;
  pid_t pid = ::fork();
  if (pid == 0) {
    ::execlp("fusermount3", "fusermount3", "-u", "-z", "--", mountpoint.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  int wst = 0;
  return pid > 0 && ::waitpid(pid, &wst, 0) == pid && WIFEXITED(wst) && WEXITSTATUS(wst) == 0;
}

}  // namespace

GracefulStop::GracefulStop(std::string mountpoint) : mountpoint_(std::move(mountpoint)) {
  if (::pipe2(pipe_, O_CLOEXEC) != 0) {
    pipe_[0] = pipe_[1] = -1;
    return;  // libfuse's handlers then stop the session as before
  }
  g_write_fd.store(pipe_[1]);
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  for (int i = 0; i < 3; ++i) ::sigaction(kSignals[i], &sa, &old_[i]);
  thread_ = std::thread([this] { run(); });
}

GracefulStop::~GracefulStop() {
  if (pipe_[1] < 0) return;
  for (int i = 0; i < 3; ++i) ::sigaction(kSignals[i], &old_[i], nullptr);
  g_write_fd.store(-1);
  const char c = kQuit;
  (void)!::write(pipe_[1], &c, 1);
  thread_.join();
  ::close(pipe_[0]);
  ::close(pipe_[1]);
}

void GracefulStop::run() {
  bool stopping = false;
  for (;;) {
    char c;
    const ssize_t n = ::read(pipe_[0], &c, 1);
    if (n < 0 && errno == EINTR) continue;
    if (n != 1 || c == kQuit) return;
    const int sig = static_cast<unsigned char>(c);
    if (stopping) {
      spdlog::warn("{} again: stopping now; what the kernel still caches for files open on {} is lost",
                   strsignal(sig), mountpoint_);
      ::signal(sig, SIG_DFL);
      ::raise(sig);
      return;
    }
    stopping = true;
    service_notify("STOPPING=1\nSTATUS=stopping: unmounting " + mountpoint_ + " (writing back cached data)");
    spdlog::info("{}: unmounting {}", strsignal(sig), mountpoint_);
    Status s = unmount(mountpoint_);
    if (s.ok()) continue;  // the session ends once the kernel lets go; serve() returns
    LogFields fields({{"ERRNO", std::to_string(s.sys_errno())}});
    if (s.sys_errno() == EBUSY && detach(mountpoint_)) {
      spdlog::warn("{} is busy (files open): detached it; the daemon exits once the last open file is closed "
                   "(a second signal stops it at once)",
                   mountpoint_);
      service_notify("STATUS=stopping: detached " + mountpoint_ + ", waiting for its open files to close");
    } else {
      spdlog::error("cannot unmount {}: {}", mountpoint_, s.message());
    }
  }
}

}  // namespace kmsfs::cli
