#include "process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <stdexcept>
#include <thread>

extern char** environ;

namespace kmsfs::testing {

namespace {

int decode(int st) {
  if (WIFEXITED(st)) return WEXITSTATUS(st);
  if (WIFSIGNALED(st)) return 128 + WTERMSIG(st);
  return -1;
}

[[noreturn]] void exec_child(const std::vector<std::string>& argv, const ProcessOptions& o) {
  if (o.new_session) ::setsid();
  if (!o.cwd.empty() && ::chdir(o.cwd.c_str()) != 0) ::_exit(126);
  for (const auto& e : o.env) ::putenv(const_cast<char*>(e.c_str()));
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  ::execvp(args[0], args.data());
  ::_exit(127);
}

}  // namespace

ProcessResult run(const std::vector<std::string>& argv, const ProcessOptions& opts) {
  int in[2], out[2], err[2];
  if (::pipe2(in, O_CLOEXEC) || ::pipe2(out, O_CLOEXEC) || ::pipe2(err, O_CLOEXEC))
    throw std::runtime_error("pipe failed");
  pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error("fork failed");
  if (pid == 0) {
    ::dup2(in[0], 0);
    ::dup2(out[1], 1);
    ::dup2(err[1], 2);
    exec_child(argv, opts);
  }
  ::close(in[0]);
  ::close(out[1]);
  ::close(err[1]);
  ProcessResult r;
  size_t written = 0;
  if (opts.stdin_data.empty()) ::close(in[1]), in[1] = -1;
  const auto deadline = std::chrono::steady_clock::now() + opts.timeout;
  bool out_open = true, err_open = true;
  ::signal(SIGPIPE, SIG_IGN);
  while (out_open || err_open || in[1] >= 0) {
    pollfd p[3];
    int n = 0;
    int io = -1, oo = -1, eo = -1;
    if (in[1] >= 0) io = n, p[n++] = {in[1], POLLOUT, 0};
    if (out_open) oo = n, p[n++] = {out[0], POLLIN, 0};
    if (err_open) eo = n, p[n++] = {err[0], POLLIN, 0};
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      r.timed_out = true;
      ::kill(pid, SIGKILL);
      break;
    }
    if (::poll(p, static_cast<nfds_t>(n), static_cast<int>(std::min<long>(left.count(), 1000))) < 0) continue;
    char buf[65536];
    if (oo >= 0 && (p[oo].revents & (POLLIN | POLLHUP))) {
      ssize_t k = ::read(out[0], buf, sizeof buf);
      if (k > 0) r.out.append(buf, static_cast<size_t>(k)); else out_open = false;
    }
    if (eo >= 0 && (p[eo].revents & (POLLIN | POLLHUP))) {
      ssize_t k = ::read(err[0], buf, sizeof buf);
      if (k > 0) r.err.append(buf, static_cast<size_t>(k)); else err_open = false;
    }
    if (io >= 0 && (p[io].revents & (POLLOUT | POLLERR | POLLHUP))) {
      ssize_t k = ::write(in[1], opts.stdin_data.data() + written, opts.stdin_data.size() - written);
      if (k > 0) written += static_cast<size_t>(k);
      if (k <= 0 || written == opts.stdin_data.size()) ::close(in[1]), in[1] = -1;
    }
  }
  if (in[1] >= 0) ::close(in[1]);
  ::close(out[0]);
  ::close(err[0]);
  int st = 0;
  ::waitpid(pid, &st, 0);
  r.exit_code = decode(st);
  return r;
}

ProcessResult sh(const std::string& script, const ProcessOptions& opts) {
  return run({"/bin/bash", "-c", "set -o pipefail; " + script}, opts);
}

Background::Background(const std::vector<std::string>& argv, const std::string& log_path) {
  int log = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (log < 0) throw std::runtime_error("cannot open " + log_path);
  pid_ = ::fork();
  if (pid_ == 0) {
    int null = ::open("/dev/null", O_RDONLY);
    ::dup2(null, 0);
    ::dup2(log, 1);
    ::dup2(log, 2);
    exec_child(argv, {});
  }
  ::close(log);
  if (pid_ < 0) throw std::runtime_error("fork failed");
}

bool Background::running() {
  if (reaped_) return false;
  int st;
  if (::waitpid(pid_, &st, WNOHANG) == pid_) {
    reaped_ = true;
    status_ = decode(st);
    return false;
  }
  return true;
}

int Background::wait(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (running()) {
    if (std::chrono::steady_clock::now() > deadline) return -1;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return status_;
}

void Background::kill(int sig) {
  if (!reaped_) ::kill(pid_, sig);
}

Background::~Background() {
  if (running()) {
    ::kill(pid_, SIGKILL);
    wait(std::chrono::seconds(10));
  }
}

}  // namespace kmsfs::testing
