// The background rotation of a vault: walks the backing tree and re-wraps every file
// under the target key while the vault stays mounted (or, offline, while nobody has it
// mounted), throttled, pausable, and checkpointed to kmsfs.rotation so a restarted
// daemon continues where it stopped. One run at a time per vault.
//
// A run: make the target the key of new files and re-wrap the filesystem key (so from
// here on nothing new is born under the old key), then pass over the tree re-wrapping
// each file not yet under the target, then pass again until a pass finds nothing left
// (files created by a create that had resolved the old key just before the switch). A
// damaged file is reported and skipped; an unreachable or throttling KMS never fails the
// run: each KMS call gets one attempt (keys/call_priority.h), and a file the KMS could not
// serve is deferred (up to 64 held, the checkpoint never passing the first) and tried
// again after a backoff while the walk moves on; the pass ends once they are all done.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>

#include "base/status.h"
#include "rotation/rate_limiter.h"
#include "rotation/rotation_state.h"
#include "vault/vault.h"

namespace kmsfs {

struct RotationRequest {
  std::string to;                   // key spec: keyring NAME or NAME:VERSION, KMS alias/id/ARN
  double files_per_second = 1000;   // 0: unthrottled
  double kms_calls_per_second = 100;  // 0: unthrottled
  bool all = false;                 // re-wrap files already under the target too
  bool reencrypt = false;           // also a fresh DEK and every block sealed again
  double bytes_per_second = 64 << 20;  // re-encryption's rewrite rate; 0: unthrottled
};

// What `rotate --status` shows: the checkpointed state plus live figures.
struct RotationStatus {
  RotationState state;
  double files_per_second = 0;  // over the last few seconds
  double eta_seconds = -1;      // of the current pass; -1 when unknown
};

class RotationWorker {
 public:
  explicit RotationWorker(Vault& vault);
  // Stops the thread at the next file; a running run stays "running" on disk and is
  // continued by the next resume_saved().
  ~RotationWorker();
  RotationWorker(const RotationWorker&) = delete;
  RotationWorker& operator=(const RotationWorker&) = delete;

  // Loads the run kmsfs.rotation describes (for status, resume, cancel), starting nothing.
  Status load_saved();
  // load_saved(), then continues the run if it was running (a paused one stays paused).
  Status resume_saved();
  // kAlreadyExists while a run is running or paused (cancel it first).
  Status start(const RotationRequest& r);
  Status pause();
  Status resume();
  Status cancel();
  // kNotFound if this vault has never been rotated.
  Result<RotationStatus> status() const;
  // Blocks until the current run ends (done, cancelled, failed) or is paused.
  RotationStatus wait();

 private:
  // Resolves the run's key spec to the key files go under now.
  Result<KeyRef> resolve(const std::string& spec);
  void launch(RotationState s, KeyRef target);  // caller holds no lock; no thread running
  void join();                                  // caller holds no lock
  void run(std::stop_token st, KeyRef target);
  // One pass from state_.cursor; false if stopped (pause, cancel, shutdown).
  bool pass(std::stop_token& st, class Rewrapper& rw, class Reencryptor* re);
  // Runs `op` until it succeeds or fails for good: an unavailable provider (throttled,
  // unreachable) is waited out with backoff. nullopt if stopped while waiting.
  template <class Op>
  auto retrying(const std::stop_token& st, Op op) -> std::optional<decltype(op())>;
  void checkpoint(bool force);  // caller holds no lock
  void record_error(const std::string& rel, const Status& s);  // caller holds mu_
  bool interrupted(const std::stop_token& st) const {
    return st.stop_requested() || state_.phase != RotationPhase::kRunning;
  }

  Vault& vault_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool have_state_ = false;
  bool running_ = false;  // the thread is in run(); guarded by mu_
  RotationState state_;  // guarded by mu_
  RateLimiter files_limit_, kms_limit_, bytes_limit_;
  std::chrono::steady_clock::time_point last_checkpoint_{};
  uint64_t since_checkpoint_ = 0;
  std::deque<std::pair<std::chrono::steady_clock::time_point, uint64_t>> progress_;  // (time, files done)
  std::jthread thread_;
};

}  // namespace kmsfs
