#include "cli/service_notify.h"

#include <sys/stat.h>
#include <systemd/sd-daemon.h>

#include <cstdlib>

namespace kmsfs::cli {

namespace {

// How much each extension grants, and how often one is sent: a slice ahead of the next.
constexpr auto kExtendSlice = std::chrono::seconds(30);
constexpr auto kExtendEvery = std::chrono::seconds(10);

bool notify_wanted() {
  const char* s = std::getenv("NOTIFY_SOCKET");
  return s != nullptr && *s != '\0';
}

dev_t dev_of(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 ? st.st_dev : 0;
}

std::string parent_of(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  return slash == std::string::npos || slash == 0 ? "/" : path.substr(0, slash);
}

}  // namespace

void service_notify(const std::string& state) {
  // unset_environment = 0: later messages (STOPPING=1) need the socket too.
  if (notify_wanted()) (void)sd_notify(0, state.c_str());
}

StartupProgress::StartupProgress(std::chrono::seconds cap)
    : until_(std::chrono::steady_clock::now() + cap), step_since_(std::chrono::steady_clock::now()) {
  if (notify_wanted()) thread_ = std::thread([this] { run(); });
}

StartupProgress::~StartupProgress() {
  finish();
  if (thread_.joinable()) thread_.join();
}

void StartupProgress::step(const std::string& what) {
  {
    std::lock_guard lock(mu_);
    if (done_) return;
    step_ = what;
    step_since_ = std::chrono::steady_clock::now();
  }
  service_notify("STATUS=starting: " + what);
  cv_.notify_all();
}

void StartupProgress::finish() {
  {
    std::lock_guard lock(mu_);
    done_ = true;
  }
  cv_.notify_all();
}

void StartupProgress::run() {
  std::unique_lock lock(mu_);
  while (!done_) {
    const auto now = std::chrono::steady_clock::now();
    if (now >= until_) return;  // past the cap, systemd's own timeout decides
    const auto slice = std::min<std::chrono::steady_clock::duration>(kExtendSlice, until_ - now);
    const long long usec = std::chrono::duration_cast<std::chrono::microseconds>(slice).count();
    const long long secs = std::chrono::duration_cast<std::chrono::seconds>(now - step_since_).count();
    const std::string step = step_;
    lock.unlock();
    service_notify("EXTEND_TIMEOUT_USEC=" + std::to_string(usec) +
                   (step.empty() ? "" : "\nSTATUS=starting: " + step + " (" + std::to_string(secs) + " s)"));
    lock.lock();
    cv_.wait_for(lock, kExtendEvery, [this] { return done_; });
  }
}

ReadinessWatch::ReadinessWatch(std::string mountpoint, std::string status)
    : mountpoint_(std::move(mountpoint)), status_(std::move(status)) {
  thread_ = std::thread([this] { run(); });
}

ReadinessWatch::~ReadinessWatch() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void ReadinessWatch::run() {
  const dev_t parent = dev_of(parent_of(mountpoint_));
  std::unique_lock lock(mu_);
  while (!stop_) {
    lock.unlock();
    // The stat is answered by the session's workers: a different device than the parent
    // directory's means the kernel sent INIT and the daemon answered it.
    const dev_t here = dev_of(mountpoint_);
    lock.lock();
    if (here != 0 && here != parent) {
      lock.unlock();
      service_notify("READY=1\nSTATUS=" + status_);
      return;
    }
    cv_.wait_for(lock, std::chrono::milliseconds(10), [this] { return stop_; });
  }
}

}  // namespace kmsfs::cli
