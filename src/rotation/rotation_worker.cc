#include "rotation/rotation_worker.h"

#include <spdlog/spdlog.h>

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <ctime>

#include "base/unique_fd.h"
#include "crypto/random.h"
#include "keys/call_priority.h"
#include "rotation/reencryptor.h"
#include "rotation/rewrapper.h"
#include "rotation/tree_walk.h"

namespace kmsfs {

namespace {

using Clock = std::chrono::steady_clock;

constexpr uint32_t kMaxPasses = 5;
constexpr uint64_t kCheckpointFiles = 1000;
constexpr auto kCheckpointInterval = std::chrono::seconds(1);
constexpr auto kRateWindow = std::chrono::seconds(10);
// Files deferred because the KMS could not serve them (throttled, unreachable).
constexpr size_t kMaxDeferred = 64;
constexpr auto kFirstDeferBackoff = std::chrono::milliseconds(500);
constexpr auto kMaxDeferBackoff = std::chrono::milliseconds(30000);

int64_t unix_now() { return static_cast<int64_t>(std::time(nullptr)); }

bool out_of_space(const Status& s) { return s.sys_errno() == ENOSPC || s.sys_errno() == EDQUOT; }

// A deep file's backing path, and a message naming it, can be tens of KiB: the state file
// keeps kMaxRotationErrors of them and is read back only up to 1 MiB. Cut at a character
// boundary (the file is JSON); the file id still finds the file.
std::string clipped(const std::string& s) {
  constexpr size_t kMax = 4096;
  if (s.size() <= kMax) return s;
  size_t n = kMax - 3;
  while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xc0) == 0x80) --n;
  return s.substr(0, n) + "...";
}

// Makes the re-wraps done so far durable before a checkpoint names them.
void sync_backing(const std::string& dir) {
  UniqueFd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (fd.valid()) ::syncfs(fd.get());
}

}  // namespace

RotationWorker::RotationWorker(Vault& vault) : vault_(vault) {}

RotationWorker::~RotationWorker() {
  {
    // Under the lock, so a worker between its check and its wait cannot miss it.
    std::lock_guard lock(mu_);
    thread_.request_stop();
  }
  cv_.notify_all();
  join();
}

void RotationWorker::join() {
  if (thread_.joinable()) thread_.join();
}

Result<KeyRef> RotationWorker::resolve(const std::string& spec) {
  ASSIGN_OR_RETURN(KeyProvider * p, vault_.providers().get(vault_.config().provider));
  // A keyring changed on disk since the mount (a new version) must be seen.
  RETURN_IF_ERROR(p->refresh());
  auto ref = p->resolve(spec);
  if (!ref.ok()) return ref.status().with_context("rotation target '" + spec + "'");
  return ref;
}

Status RotationWorker::load_saved() {
  ASSIGN_OR_RETURN(auto saved, load_rotation_state(vault_.dir()));
  if (!saved) return Status::Ok();
  std::lock_guard lock(mu_);
  state_ = std::move(*saved);
  have_state_ = true;
  return Status::Ok();
}

Status RotationWorker::resume_saved() {
  RETURN_IF_ERROR(load_saved());
  RotationState s;
  {
    std::lock_guard lock(mu_);
    if (!have_state_ || state_.phase != RotationPhase::kRunning) return Status::Ok();
    s = state_;
  }
  ASSIGN_OR_RETURN(KeyRef target, resolve(s.params.to));
  launch(std::move(s), std::move(target));
  return Status::Ok();
}

Status RotationWorker::start(const RotationRequest& r) {
  {
    std::lock_guard lock(mu_);
    if (have_state_ && state_.active())
      return Status(Code::kAlreadyExists, "a rotation to " + state_.params.to + " is " + rotation_phase_name(state_.phase) +
                                              " (pass " + std::to_string(state_.pass) + ", " +
                                              std::to_string(state_.seen) + " of " + std::to_string(state_.total) +
                                              " files); cancel it first");
  }
  join();
  // The target is named by the operator (the command line, the control socket): trusted
  // from here on. A resumed rotation reads it from kmsfs.rotation, in the backing
  // directory, so resume() and resume_saved() resolve it as any other key: trusted only if
  // the rotation that wrote it recorded it.
  auto target_or = vault_.trust_operator_key(r.to);
  if (!target_or.ok()) return target_or.status().with_context("rotation target '" + r.to + "'");
  KeyRef target = std::move(*target_or);
  // From here on, new files and the filesystem key are under the target.
  if (Status s = vault_.rotate_config(target, r.to); !s.ok()) {
    if (out_of_space(s))
      return s.with_context("rotation not started (nothing was changed; free space on the backing filesystem and "
                            "start it again)");
    return s;
  }
  RotationState s;
  uint8_t id[8];
  random_bytes(id);
  s.id = to_hex(id);
  s.params = {r.to, r.files_per_second, r.kms_calls_per_second, r.all, r.reencrypt, r.bytes_per_second};
  s.target = target.to_string();
  s.phase = RotationPhase::kRunning;
  s.started = s.updated = unix_now();
  RETURN_IF_ERROR(save_rotation_state(vault_.dir(), s));
  launch(std::move(s), std::move(target));
  return Status::Ok();
}

void RotationWorker::launch(RotationState s, KeyRef target) {
  std::lock_guard lock(mu_);
  state_ = std::move(s);
  have_state_ = true;
  running_ = true;
  files_limit_.set_rate(state_.params.files_per_second);
  kms_limit_.set_rate(state_.params.kms_calls_per_second);
  bytes_limit_.set_rate(state_.params.bytes_per_second);
  progress_.clear();
  last_checkpoint_ = Clock::now();
  since_checkpoint_ = 0;
  thread_ = std::jthread([this, target = std::move(target)](std::stop_token st) { run(st, target); });
}

Status RotationWorker::pause() {
  std::lock_guard lock(mu_);
  if (!have_state_ || state_.phase != RotationPhase::kRunning) return Status(Code::kNotFound, "no rotation is running");
  state_.phase = RotationPhase::kPaused;
  cv_.notify_all();
  return Status::Ok();
}

Status RotationWorker::resume() {
  RotationState s;
  {
    std::lock_guard lock(mu_);
    if (!have_state_ || state_.phase != RotationPhase::kPaused) return Status(Code::kNotFound, "no rotation is paused");
  }
  join();  // the paused thread has checkpointed and ended
  {
    std::lock_guard lock(mu_);
    s = state_;
  }
  ASSIGN_OR_RETURN(KeyRef target, resolve(s.params.to));
  s.phase = RotationPhase::kRunning;
  s.target = target.to_string();
  if (s.paused_for_space) s.message.clear();
  s.paused_for_space = false;
  launch(std::move(s), std::move(target));
  return Status::Ok();
}

Status RotationWorker::cancel() {
  {
    std::lock_guard lock(mu_);
    if (!have_state_ || !state_.active()) return Status(Code::kNotFound, "no rotation is running or paused");
    state_.phase = RotationPhase::kCancelled;
    state_.message = "cancelled; files already moved stay under the target, which new files keep using";
    cv_.notify_all();
  }
  join();
  checkpoint(true);
  return Status::Ok();
}

Result<RotationStatus> RotationWorker::status() const {
  std::lock_guard lock(mu_);
  if (!have_state_) return Status(Code::kNotFound, "this vault has no rotation (start one with --to KEY)");
  RotationStatus out;
  out.state = state_;
  if (progress_.size() >= 2) {
    const double secs = std::chrono::duration<double>(progress_.back().first - progress_.front().first).count();
    if (secs > 0) out.files_per_second = static_cast<double>(progress_.back().second - progress_.front().second) / secs;
  }
  if (out.files_per_second > 0 && state_.total >= state_.seen)
    out.eta_seconds = static_cast<double>(state_.total - state_.seen) / out.files_per_second;
  return out;
}

RotationStatus RotationWorker::wait() {
  std::unique_lock lock(mu_);
  cv_.wait(lock, [&] { return !running_; });
  RotationStatus out;
  out.state = state_;
  return out;
}

void RotationWorker::record_error(const std::string& rel, const Status& s) {
  std::string file_id;
  // Messages name "file <32 hex>" when the header was read.
  if (auto at = s.message().find("file "); at != std::string::npos && at + 5 + 32 <= s.message().size())
    file_id = s.message().substr(at + 5, 32);
  state_.errors.push_back({clipped(rel), file_id, clipped(s.message())});
  while (state_.errors.size() > kMaxRotationErrors) state_.errors.pop_front();
}

void RotationWorker::checkpoint(bool force) {
  RotationState copy;
  {
    std::lock_guard lock(mu_);
    const auto now = Clock::now();
    if (!force && since_checkpoint_ < kCheckpointFiles && now - last_checkpoint_ < kCheckpointInterval) return;
    last_checkpoint_ = now;
    since_checkpoint_ = 0;
  }
  sync_backing(vault_.dir());
  {
    std::lock_guard lock(mu_);
    state_.updated = unix_now();
    copy = state_;
  }
  // A checkpoint that cannot be written costs a longer re-walk after a crash, nothing more.
  (void)save_rotation_state(vault_.dir(), copy);
}

template <class Op>
auto RotationWorker::retrying(const std::stop_token& st, Op op) -> std::optional<decltype(op())> {
  auto backoff = std::chrono::milliseconds(500);
  for (;;) {
    auto r = op();
    if (r.ok() || r.status().code() != Code::kUnavailable) {
      std::lock_guard lock(mu_);
      state_.message.clear();
      return r;
    }
    // Throttled or unreachable: wait and try the same file again.
    std::unique_lock lock(mu_);
    state_.message = "waiting for the key provider: " + r.status().message();
    if (cv_.wait_for(lock, backoff, [&] { return interrupted(st); })) return std::nullopt;
    backoff = std::min<std::chrono::milliseconds>(backoff * 2, std::chrono::seconds(30));
  }
}

bool RotationWorker::pass(std::stop_token& st, Rewrapper& rw, Reencryptor* re) {
  const WalkOptions wo{vault_.config().encrypted_names()};
  std::string after;
  {
    std::lock_guard lock(mu_);
    after = state_.cursor;
  }
  if (after.empty()) {
    uint64_t total = 0;
    (void)walk_files(vault_.dir(), wo, "", [&](const WalkEntry&) { return ++total, true; },
                     [](const std::string&, const Status&) {});
    std::lock_guard lock(mu_);
    state_.total = total;
    state_.seen = 0;
    // What a pass finds is counted per pass (the last one is the verdict on the tree);
    // re-wrapped files and bytes add up over the run.
    state_.already = state_.skipped = state_.failed = state_.pass_rotated = 0;
    state_.errors.clear();
  }
  bool stopped = false;
  auto unreadable = [&](const std::string& rel, const Status& s) {
    std::lock_guard lock(mu_);
    ++state_.failed;
    record_error(rel, s);
  };

  // Files the KMS could not serve (throttled, unreachable: the rotation's one attempt
  // failed) wait here while the walk moves on, and are tried again once their backoff
  // ends; at most kMaxDeferred, then the walk waits for the oldest. In walk order, so the
  // checkpoint never passes the first of them: a restart walks them again.
  struct Deferred {
    std::string rel;
    std::string before;  // the cursor just before it
    Clock::time_point retry_at;
    std::chrono::milliseconds backoff;
  };
  std::deque<Deferred> deferred;
  std::string walked = after;  // the last file the walk reached
  auto set_cursor = [&] {      // caller holds mu_
    state_.cursor = deferred.empty() ? walked : deferred.front().before;
  };

  enum class Step { kDone, kDeferred, kStopped };
  // `dirfd`: the directory holding `rel` while the walk is in it; -1 for a deferred file.
  auto process = [&](const std::string& rel, int dirfd) -> Step {
    Result<RewrapResult> r = [&] {
      const uint64_t calls_before = rw.calls();
      Result<RewrapResult> x = rw.rewrap(rel, dirfd);
      std::lock_guard lock(mu_);
      state_.kms_calls += rw.calls() - calls_before;
      return x;
    }();
    if (!r.ok() && r.status().code() == Code::kUnavailable) {
      std::lock_guard lock(mu_);
      state_.message = "waiting for the key provider: " + r.status().message();
      return Step::kDeferred;
    }
    // Re-encryption follows the re-wrap, so the new DEK goes under the target at once.
    std::optional<Result<ReencryptResult>> re_r;
    if (re && r.ok() && (r->outcome == RewrapOutcome::kRotated || r->outcome == RewrapOutcome::kAlready)) {
      re_r = retrying(st, [&] {
        const uint64_t calls_before = re->calls();
        Result<ReencryptResult> x = re->reencrypt(rel, dirfd);
        std::lock_guard lock(mu_);
        state_.kms_calls += re->calls() - calls_before;
        return x;
      });
      if (re_r && !re_r->ok() && out_of_space(re_r->status())) {
        // Out of space for the journal or the re-sealed blocks: the step did not commit, so
        // the file reads as before (its re-encryption, if begun, goes on from its
        // watermark). Every further file would fail the same way: pause, and let the
        // operator resume once space is freed, rather than fail the files one by one.
        std::lock_guard lock(mu_);
        state_.phase = RotationPhase::kPaused;
        state_.paused_for_space = true;
        state_.message = "paused: out of space on the backing filesystem (" + clipped(re_r->status().message()) +
                         "); no file was damaged; free space, then kmsfs rotate --resume";
        spdlog::warn("rotation: {}", state_.message);
        return Step::kStopped;
      }
      if (!re_r || (re_r->ok() && (*re_r)->outcome == ReencryptOutcome::kStopped)) {
        if (re_r) {
          std::lock_guard lock(mu_);
          state_.bytes += (**re_r).bytes;
        }
        return Step::kStopped;
      }
    }
    std::lock_guard lock(mu_);
    if (!r.ok()) {
      ++state_.failed;
      record_error(rel, r.status());
    } else if (re_r) {
      if (!re_r->ok()) {
        ++state_.failed;
        record_error(rel, re_r->status());
      } else {
        state_.bytes += (**re_r).bytes;
        switch ((**re_r).outcome) {
          case ReencryptOutcome::kDone:
            ++state_.rotated, ++state_.pass_rotated;
            break;
          case ReencryptOutcome::kAlready:
            if (r->outcome == RewrapOutcome::kRotated) ++state_.rotated, ++state_.pass_rotated;
            else ++state_.already;
            break;
          case ReencryptOutcome::kNotKmsfs:
          case ReencryptOutcome::kGone:
          case ReencryptOutcome::kStopped: ++state_.skipped; break;
        }
      }
    } else {
      switch (r->outcome) {
        case RewrapOutcome::kRotated:
          ++state_.rotated, ++state_.pass_rotated;
          state_.bytes += r->bytes;
          break;
        case RewrapOutcome::kAlready: ++state_.already; break;
        case RewrapOutcome::kNotKmsfs:
        case RewrapOutcome::kGone: ++state_.skipped; break;
      }
    }
    ++state_.seen;
    ++since_checkpoint_;
    const auto now = Clock::now();
    progress_.emplace_back(now, state_.rotated + state_.already + state_.skipped + state_.failed);
    while (progress_.size() > 2 && now - progress_.front().first > kRateWindow) progress_.pop_front();
    return Step::kDone;
  };

  // Tries the deferred files whose backoff has ended. False if stopped.
  auto retry_due = [&]() -> bool {
    for (auto it = deferred.begin(); it != deferred.end();) {
      if (Clock::now() < it->retry_at) {
        ++it;
        continue;
      }
      const Step step = process(it->rel, -1);
      if (step == Step::kStopped) return false;
      if (step == Step::kDeferred) {
        it->backoff = std::min<std::chrono::milliseconds>(it->backoff * 2, kMaxDeferBackoff);
        it->retry_at = Clock::now() + it->backoff;
        ++it;
        continue;
      }
      it = deferred.erase(it);
      std::lock_guard lock(mu_);
      if (deferred.empty()) state_.message.clear();
      set_cursor();
    }
    return true;
  };
  // Waits for the earliest deferred file's turn. False if stopped meanwhile.
  auto wait_for_deferred = [&]() -> bool {
    auto next = Clock::time_point::max();
    for (const auto& d : deferred) next = std::min(next, d.retry_at);
    std::unique_lock lock(mu_);
    return !cv_.wait_until(lock, next, [&] { return interrupted(st); });
  };

  auto visit = [&](const WalkEntry& e) {
    const std::string& rel = e.rel;
    {
      std::unique_lock lock(mu_);
      if (!files_limit_.acquire(lock, cv_, [&] { return interrupted(st); })) return !(stopped = true);
    }
    if (!retry_due()) return !(stopped = true);
    const std::string before = walked;
    const Step step = process(rel, e.dirfd);
    if (step == Step::kStopped) return !(stopped = true);
    walked = rel;
    if (step == Step::kDeferred)
      deferred.push_back({rel, before, Clock::now() + kFirstDeferBackoff, kFirstDeferBackoff});
    {
      std::lock_guard lock(mu_);
      if (step == Step::kDone && deferred.empty()) state_.message.clear();
      set_cursor();
    }
    checkpoint(false);
    // Too many held back: the KMS is refusing most calls, so the walk waits for it.
    while (deferred.size() >= kMaxDeferred) {
      if (!wait_for_deferred() || !retry_due()) return !(stopped = true);
    }
    return true;
  };
  Status s = walk_files(vault_.dir(), wo, after, visit, unreadable);
  if (!s.ok()) {
    std::lock_guard lock(mu_);
    state_.phase = RotationPhase::kFailed;
    state_.message = s.message();
    return false;
  }
  if (stopped) return false;
  // The walk is done: the pass is not until the deferred files are.
  while (!deferred.empty()) {
    if (!wait_for_deferred() || !retry_due()) return false;
    checkpoint(false);
  }
  return true;
}

void RotationWorker::run(std::stop_token st, KeyRef target) {
  // One attempt per KMS call: a file the KMS cannot serve now is deferred (pass()), which
  // spreads the retries out instead of spending them in a burst on a throttling KMS.
  CallPriorityScope priority(CallPriority::kRotation);
  Rewrapper::Options o;
  o.target = target;
  {
    std::lock_guard lock(mu_);
    o.all = state_.params.all;
  }
  o.before_call = [this, &st] {
    std::unique_lock lock(mu_);
    kms_limit_.acquire(lock, cv_, [&] { return interrupted(st); });
  };
  Rewrapper rw(vault_, o);
  std::optional<Reencryptor> re;
  RotationParams params;
  std::string run_hex;
  {
    std::lock_guard lock(mu_);
    params = state_.params;
    run_hex = state_.id;
  }
  if (params.reencrypt) {
    Reencryptor::Options ro;
    Bytes id;
    auto journal = ReencryptJournal::open(vault_.dir() + "/" + kJournalFileName);
    if (!from_hex(run_hex, id) || id.size() != ro.run.size() || !journal.ok()) {
      std::lock_guard lock(mu_);
      state_.phase = RotationPhase::kFailed;
      state_.message = journal.ok() ? "rotation id '" + run_hex + "' is not 16 hex digits" : journal.status().message();
    } else {
      std::copy(id.begin(), id.end(), ro.run.begin());
      ro.before_call = o.before_call;
      ro.before_step = [this, &st](uint64_t bytes) {
        std::unique_lock lock(mu_);
        return bytes_limit_.acquire(lock, cv_, [&] { return interrupted(st); }, static_cast<double>(bytes));
      };
      // New files have fresh DEKs: marked as born in this run, the run skips them.
      vault_.set_reencrypt_run(ro.run);
      re.emplace(vault_, std::move(*journal), std::move(ro));
    }
  }
  for (;;) {
    {
      std::lock_guard lock(mu_);
      if (state_.phase != RotationPhase::kRunning) break;
    }
    // The worker thread's exception barrier: a throw (bad_alloc from locked memory, say)
    // fails the run, which is checkpointed and resumable, instead of ending the daemon.
    bool more = false;
    std::string thrown;
    try {
      more = pass(st, rw, re ? &*re : nullptr);
    } catch (const std::exception& e) {
      thrown = e.what();
    } catch (...) {
      thrown = "unknown exception";
    }
    if (!thrown.empty()) {
      spdlog::error("rotation: internal error ({}); the run stops as failed and can be resumed", thrown);
      std::lock_guard lock(mu_);
      state_.phase = RotationPhase::kFailed;
      state_.message = "internal error: " + thrown;
      break;
    }
    if (!more) break;
    std::lock_guard lock(mu_);
    // The whole pass counts, also what it moved before a restart (a pass resumed from its
    // checkpoint may find nothing left after it, yet have missed a file renamed behind it).
    if (o.all || state_.pass_rotated == 0 || state_.pass >= kMaxPasses) {
      state_.phase = RotationPhase::kDone;
      break;
    }
    // Some files moved in this pass: another finds any created under the old key
    // while the switch to the target was under way.
    ++state_.pass;
    state_.cursor.clear();
  }
  checkpoint(true);
  std::lock_guard lock(mu_);
  if (re && state_.phase != RotationPhase::kPaused) vault_.set_reencrypt_run(std::nullopt);
  running_ = false;
  cv_.notify_all();
}

}  // namespace kmsfs
