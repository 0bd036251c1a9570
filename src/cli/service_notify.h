// The mount daemon's side of systemd's Type=notify (sd_notify(3)): progress while it
// starts, READY=1 once the mount answers, STOPPING=1 when it stops. Every call is a no-op
// when NOTIFY_SOCKET is unset (not started by systemd), so the daemon calls them always.
#pragma once

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>

namespace kmsfs::cli {

// Sends `state` ("STATUS=...", "READY=1", ...) if the service manager asked for it.
void service_notify(const std::string& state);

// Start-up steps that may wait on a KMS (an unwrap, retried with backoff, can outlast
// systemd's default 90 s start timeout): STATUS names the step, and while one runs the
// start timeout is extended (EXTEND_TIMEOUT_USEC) in slices, so a slow KMS does not get
// the mount killed. Only up to `cap` after construction: a KMS that never answers still
// fails the start, later.
class StartupProgress {
 public:
  explicit StartupProgress(std::chrono::seconds cap = std::chrono::minutes(10));
  ~StartupProgress();
  StartupProgress(const StartupProgress&) = delete;
  StartupProgress& operator=(const StartupProgress&) = delete;

  // "opening the keyring", "unwrapping the vault's keys (KMS)", ...
  void step(const std::string& what);
  // No more extensions (the mount is up, or start-up failed).
  void finish();

 private:
  void run();

  const std::chrono::steady_clock::time_point until_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::string step_;
  std::chrono::steady_clock::time_point step_since_;
  bool done_ = false;
  std::thread thread_;
};

// Sends READY=1 and STATUS=`status` from a thread of its own as soon as `mountpoint`
// answers a stat as a filesystem other than its parent's (the FUSE session serves), so
// systemd starts units ordered after this one only once the mount works. Stopped and
// joined by the destructor.
class ReadinessWatch {
 public:
  ReadinessWatch(std::string mountpoint, std::string status);
  ~ReadinessWatch();
  ReadinessWatch(const ReadinessWatch&) = delete;
  ReadinessWatch& operator=(const ReadinessWatch&) = delete;

 private:
  void run();

  const std::string mountpoint_;
  const std::string status_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace kmsfs::cli
