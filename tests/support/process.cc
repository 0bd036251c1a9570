#include "process.h"
#include "trust_dir.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <stdexcept>
#include <thread>


namespace kmsfs::testing {

namespace {

int decode(int st) {
  if (WIFEXITED(st)) return WEXITSTATUS(st);
  if (WIFSIGNALED(st)) return 128 + WTERMSIG(st);
  return -1;
}

[[noreturn]] void exec_child(const std::vector<std::string>& argv) {
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  ::execvp(args[0], args.data());
  ::_exit(127);
}

}  // namespace

ProcessResult run(const std::vector<std::string>& argv, const ProcessOptions& opts) {
  SpawnOptions so;
  so.stdin_data = opts.stdin_data;
  so.cwd = opts.cwd;
  so.new_session = opts.new_session;
  so.timeout = opts.timeout;
  for (const auto& e : opts.env) {
    auto eq = e.find('=');
    so.env.emplace_back(e.substr(0, eq), eq == std::string::npos ? std::string() : e.substr(eq + 1));
  }
  return run_process(argv, so);
}

ProcessResult sh(const std::string& script, const ProcessOptions& opts) {
  return run({"/bin/bash", "-c", "set -o pipefail; " + script}, opts);
}

Background::Background(const std::vector<std::string>& argv, const std::string& log_path) {
  int log = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (log < 0) throw std::runtime_error("cannot open " + log_path);
  private_trust_dir();  // the child inherits it
  pid_ = ::fork();
  if (pid_ == 0) {
    int null = ::open("/dev/null", O_RDONLY);
    ::dup2(null, 0);
    ::dup2(log, 1);
    ::dup2(log, 2);
    exec_child(argv);
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
