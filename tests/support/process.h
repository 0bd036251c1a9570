// Runs a real program: argv (never a shell), optional stdin, captured stdout/stderr, a
// timeout after which the child is killed. Used to drive the kmsfs binary and real tools.
// A simpler front to run_process (subprocess.h), plus Background for daemons.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <string>
#include <vector>

#include "subprocess.h"  // ProcessResult, and the runner behind run()

namespace kmsfs::testing {

struct ProcessOptions {
  std::string stdin_data;
  std::chrono::milliseconds timeout{std::chrono::seconds(120)};
  bool new_session = false;  // setsid(): no controlling terminal
  std::string cwd;
  std::vector<std::string> env;  // extra NAME=VALUE entries
};

ProcessResult run(const std::vector<std::string>& argv, const ProcessOptions& opts = {});
// Convenience for shell pipelines in tests that need them (sqlite3 scripts, tar | tar).
ProcessResult sh(const std::string& script, const ProcessOptions& opts = {});

// A long-running child (a foreground daemon) with stdout+stderr going to a log file.
class Background {
 public:
  Background(const std::vector<std::string>& argv, const std::string& log_path);
  ~Background();  // SIGKILLs the child if still running
  Background(const Background&) = delete;
  Background& operator=(const Background&) = delete;
  pid_t pid() const { return pid_; }
  bool running();
  // Waits for exit; returns the exit code (128+signal), or -1 on timeout.
  int wait(std::chrono::milliseconds timeout);
  void kill(int sig);

 private:
  pid_t pid_ = -1;
  int status_ = -1;
  bool reaped_ = false;
};

}  // namespace kmsfs::testing
