// RAII child processes for the CLI tests: fork/execve with pipes on stdin, stdout and
// stderr, pumped with poll() so neither side blocks on a full pipe, a timeout that kills
// the child, and the exit status. The child runs in its own session (setsid), so it has no
// controlling terminal: a command that would prompt on /dev/tty fails instead of hanging.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace kmsfs::testing {

struct ProcessResult {
  int exit_code = -1;  // the exit status; 128 + N if killed by signal N
  bool signaled = false;
  bool timed_out = false;
  std::string out;
  std::string err;
};

struct SpawnOptions {
  std::string stdin_data;
  // Changes to the inherited environment: a value sets, nullopt unsets.
  std::vector<std::pair<std::string, std::optional<std::string>>> env;
  std::string cwd;                 // empty: the test's working directory
  bool new_session = true;         // setsid(): no controlling terminal
  bool close_stdout_early = false;  // the parent closes the read end of stdout at once (EPIPE)
  // Give the child a pseudo-terminal as its controlling terminal (its /dev/tty); the
  // test talks to it through pty_master(). stdin/stdout/stderr stay pipes. Implies setsid.
  bool pty = false;
  std::chrono::milliseconds timeout{120000};
};

class Subprocess {
 public:
  // Throws std::runtime_error if the process cannot be started.
  Subprocess(const std::vector<std::string>& argv, const SpawnOptions& opts);
  ~Subprocess();  // kills and reaps a child that is still running
  Subprocess(const Subprocess&) = delete;
  Subprocess& operator=(const Subprocess&) = delete;

  pid_t pid() const { return pid_; }
  int pty_master() const { return pty_; }
  // Reads the terminal until `text` has appeared (false on timeout); returns what was read.
  bool pty_expect(const std::string& text, std::string* seen = nullptr,
                  std::chrono::milliseconds timeout = std::chrono::seconds(30));
  // Types `text` on the terminal.
  void pty_type(const std::string& text);
  // Feeds stdin, collects stdout/stderr until both close, then reaps the child.
  ProcessResult wait();

 private:
  pid_t pid_ = -1;
  int in_ = -1, out_ = -1, err_ = -1, pty_ = -1;
  int pty_slave_ = -1;  // held open by the parent so reading the master never sees EIO
  std::string stdin_data_;
  std::chrono::milliseconds timeout_;
  bool reaped_ = false;
};

ProcessResult run_process(const std::vector<std::string>& argv, const SpawnOptions& opts = {});

}  // namespace kmsfs::testing
