#include "cli/output.h"

#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <mutex>

#include <fmt/format.h>

namespace kmsfs::cli {

namespace {

// SIGPIPE is ignored only once we start writing to stdout (not at startup), so an
// --extpass command, which runs before any output, does not inherit the ignored signal.
void ignore_sigpipe() {
  static std::once_flag once;
  std::call_once(once, [] { ::signal(SIGPIPE, SIG_IGN); });
}

}  // namespace

Status write_all(int fd, ByteSpan data) {
  ignore_sigpipe();
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return Status::Io(errno, fd == STDOUT_FILENO ? "writing to standard output" : "write");
    }
    if (n == 0) return Status::Io(EIO, "writing to standard output");  // never loop forever
    data = data.subspan(static_cast<size_t>(n));
  }
  return Status::Ok();
}

Status print(std::string_view text) { return write_all(STDOUT_FILENO, as_bytes(text)); }

std::string human_bytes(double b) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (b >= 1024 && u < 4) b /= 1024, ++u;
  return fmt::format("{:.1f} {}", b, units[u]);
}

bool is_broken_pipe(const Status& s) noexcept {
  return s.code() == Code::kIo && s.sys_errno() == EPIPE;
}

}  // namespace kmsfs::cli
