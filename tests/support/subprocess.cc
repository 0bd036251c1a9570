#include "subprocess.h"
#include "trust_dir.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <stdlib.h>

#include <cerrno>
#include <cstring>
#include <map>
#include <stdexcept>

extern char** environ;

namespace kmsfs::testing {

namespace {

void close_fd(int& fd) {
  if (fd >= 0) ::close(fd);
  fd = -1;
}

std::vector<std::string> child_environment(const SpawnOptions& opts) {
  std::map<std::string, std::string> env;
  for (char** e = environ; *e != nullptr; ++e) {
    std::string kv(*e);
    auto eq = kv.find('=');
    if (eq != std::string::npos) env[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  for (const auto& [k, v] : opts.env) {
    if (v) env[k] = *v;
    else env.erase(k);
  }
  std::vector<std::string> out;
  for (const auto& [k, v] : env) out.push_back(k + "=" + v);
  return out;
}

std::vector<char*> c_strings(std::vector<std::string>& v) {
  std::vector<char*> out;
  for (auto& s : v) out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

}  // namespace

Subprocess::Subprocess(const std::vector<std::string>& argv, const SpawnOptions& opts)
    : stdin_data_(opts.stdin_data), timeout_(opts.timeout) {
  if (argv.empty()) throw std::runtime_error("Subprocess: empty argv");
  private_trust_dir();  // before the environment is copied for the child
  // Everything the child needs is built before fork: after it, only async-signal-safe calls.
  std::vector<std::string> args = argv;
  std::vector<std::string> envs = child_environment(opts);
  std::vector<char*> c_args = c_strings(args);
  std::vector<char*> c_env = c_strings(envs);
  const std::string cwd = opts.cwd;

  std::string pty_slave;
  if (opts.pty) {
    pty_ = ::posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (pty_ < 0 || ::grantpt(pty_) != 0 || ::unlockpt(pty_) != 0 || ::ptsname(pty_) == nullptr)
      throw std::runtime_error(std::string("posix_openpt: ") + std::strerror(errno));
    pty_slave = ::ptsname(pty_);
    pty_slave_ = ::open(pty_slave.c_str(), O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (pty_slave_ < 0) throw std::runtime_error("open " + pty_slave + ": " + std::strerror(errno));
  }
  int in[2], out[2], err[2];
  if (::pipe2(in, O_CLOEXEC) != 0 || ::pipe2(out, O_CLOEXEC) != 0 || ::pipe2(err, O_CLOEXEC) != 0)
    throw std::runtime_error(std::string("pipe2: ") + std::strerror(errno));
  pid_ = ::fork();
  if (pid_ < 0) throw std::runtime_error(std::string("fork: ") + std::strerror(errno));
  if (pid_ == 0) {
    if (opts.new_session || opts.pty) ::setsid();
    // A session leader without a terminal acquires the first one it opens.
    if (!pty_slave.empty() && ::open(pty_slave.c_str(), O_RDWR | O_CLOEXEC) < 0) ::_exit(126);
    ::signal(SIGPIPE, SIG_DFL);
    if (::dup2(in[0], 0) < 0 || ::dup2(out[1], 1) < 0 || ::dup2(err[1], 2) < 0) ::_exit(126);
    if (!cwd.empty() && ::chdir(cwd.c_str()) != 0) ::_exit(126);
    ::execvpe(c_args[0], c_args.data(), c_env.data());  // PATH lookup for tools (sqlite3, git)
    ::_exit(127);
  }
  ::close(in[0]);
  ::close(out[1]);
  ::close(err[1]);
  in_ = in[1];
  out_ = out[0];
  err_ = err[0];
  if (opts.close_stdout_early) close_fd(out_);
  if (stdin_data_.empty()) close_fd(in_);
  for (int fd : {in_, out_, err_})
    if (fd >= 0) ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
}

Subprocess::~Subprocess() {
  if (pid_ > 0 && !reaped_) {
    ::kill(pid_, SIGKILL);
    int st;
    while (::waitpid(pid_, &st, 0) < 0 && errno == EINTR) {
    }
  }
  close_fd(in_);
  close_fd(out_);
  close_fd(err_);
  close_fd(pty_);
  close_fd(pty_slave_);
}

bool Subprocess::pty_expect(const std::string& text, std::string* seen, std::chrono::milliseconds timeout) {
  std::string got;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (got.find(text) == std::string::npos) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    pollfd p{pty_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
    char buf[256];
    ssize_t n = ::read(pty_, buf, sizeof buf);
    if (n <= 0) break;  // EIO: the child closed the terminal
    got.append(buf, static_cast<size_t>(n));
  }
  if (seen != nullptr) *seen = got;
  return got.find(text) != std::string::npos;
}

void Subprocess::pty_type(const std::string& text) {
  size_t done = 0;
  while (done < text.size()) {
    ssize_t n = ::write(pty_, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) throw std::runtime_error(std::string("write to pty: ") + std::strerror(errno));
    done += static_cast<size_t>(n);
  }
}

ProcessResult Subprocess::wait() {
  ProcessResult r;
  ::signal(SIGPIPE, SIG_IGN);  // a child that exits early must not kill the test
  const auto deadline = std::chrono::steady_clock::now() + timeout_;
  size_t written = 0;
  char buf[65536];
  while (in_ >= 0 || out_ >= 0 || err_ >= 0) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0 && !r.timed_out) {
      r.timed_out = true;
      ::kill(pid_, SIGKILL);
      close_fd(in_);
    }
    if (r.timed_out && left < std::chrono::seconds(-5)) {  // a grandchild holds the pipes
      close_fd(out_);
      close_fd(err_);
      break;
    }
    pollfd fds[3];
    int n = 0;
    if (in_ >= 0) fds[n++] = {in_, POLLOUT, 0};
    if (out_ >= 0) fds[n++] = {out_, POLLIN, 0};
    if (err_ >= 0) fds[n++] = {err_, POLLIN, 0};
    int rc = ::poll(fds, static_cast<nfds_t>(n), r.timed_out ? 1000 : static_cast<int>(std::max<long>(left.count(), 1)));
    if (rc < 0) {
      if (errno == EINTR) continue;
      throw std::runtime_error(std::string("poll: ") + std::strerror(errno));
    }
    for (int i = 0; i < n; ++i) {
      if (fds[i].revents == 0) continue;
      int fd = fds[i].fd;
      if (fd == in_) {
        ssize_t w = ::write(in_, stdin_data_.data() + written, stdin_data_.size() - written);
        if (w > 0) written += static_cast<size_t>(w);
        if (w < 0 && errno != EAGAIN && errno != EINTR) close_fd(in_);  // EPIPE: child quit
        if (written == stdin_data_.size()) close_fd(in_);
        continue;
      }
      ssize_t got = ::read(fd, buf, sizeof buf);
      if (got > 0) {
        (fd == out_ ? r.out : r.err).append(buf, static_cast<size_t>(got));
      } else if (got == 0 || (errno != EAGAIN && errno != EINTR)) {
        close_fd(fd == out_ ? out_ : err_);
      }
    }
  }
  int st = 0;
  while (::waitpid(pid_, &st, 0) < 0) {
    if (errno != EINTR) throw std::runtime_error(std::string("waitpid: ") + std::strerror(errno));
  }
  reaped_ = true;
  if (WIFSIGNALED(st)) {
    r.signaled = true;
    r.exit_code = 128 + WTERMSIG(st);
  } else {
    r.exit_code = WEXITSTATUS(st);
  }
  return r;
}

ProcessResult run_process(const std::vector<std::string>& argv, const SpawnOptions& opts) {
  Subprocess p(argv, opts);
  return p.wait();
}

}  // namespace kmsfs::testing
