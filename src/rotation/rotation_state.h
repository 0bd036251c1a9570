// A rotation's progress, checkpointed to BACKING/kmsfs.rotation (JSON, atomic rewrite),
// so a daemon restarted after a crash, or an offline run, continues where it stopped.
// The checkpoint only ever names a file whose new wrap is durable (the worker syncs the
// backing filesystem first); files already under the target are skipped anyway, so a
// checkpoint that lags behind costs header reads, never a missed file.
#pragma once

#include <cstdint>
#include <deque>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "base/status.h"

namespace kmsfs {

enum class RotationPhase : uint8_t { kRunning, kPaused, kCancelled, kDone, kFailed };
const char* rotation_phase_name(RotationPhase p) noexcept;

struct RotationError {
  std::string path;     // backing path, relative to the vault (ciphertext names only)
  std::string file_id;  // hex, when the header named one
  std::string message;
};

struct RotationParams {
  std::string to;            // the key spec the user gave (new files use it from the start)
  double files_per_second = 0;  // 0: unthrottled
  double kms_calls_per_second = 0;
  bool all = false;          // re-wrap files already under the target too (one pass)
  // Re-encrypt: every file gets a fresh DEK and every block is sealed again (FORMAT.md
  // §3.9), after its re-wrap to the target if it needs one.
  bool reencrypt = false;
  double bytes_per_second = 0;  // re-encryption's ciphertext rewrite rate; 0: unthrottled
};

struct RotationState {
  std::string id;          // random, names one run
  RotationParams params;
  std::string target;      // the resolved key reference (KeyRef::to_string)
  RotationPhase phase = RotationPhase::kRunning;
  int64_t started = 0;     // unix seconds
  int64_t updated = 0;
  uint32_t pass = 1;       // passes over the tree; the last finds nothing left to do
  std::string cursor;      // last file of this pass that is done (walk order)
  uint64_t total = 0;      // files in the tree at the start of this pass
  uint64_t seen = 0;       // files visited so far in this pass
  uint64_t rotated = 0;    // re-wrapped by this run (all passes)
  // Re-wrapped in this pass, before and after any restart: another pass follows if any.
  uint64_t pass_rotated = 0;
  // In this pass (the last pass's are the verdict on the tree):
  uint64_t already = 0;    // found under the target already
  uint64_t skipped = 0;    // not kmsfs files (or gone before they were reached)
  uint64_t failed = 0;     // damaged or refused by the provider: reported, left as they were
  uint64_t bytes = 0;      // backing bytes of the files re-wrapped; re-sealed, when re-encrypting
  uint64_t kms_calls = 0;  // provider calls made
  std::deque<RotationError> errors;  // the latest few
  std::string message;     // why it failed, was cancelled or paused itself
  // Paused by the run itself because the backing filesystem ran out of space (ENOSPC,
  // EDQUOT) for a re-encryption's journal or blocks: no file was damaged, and --resume
  // goes on once space is freed. An operator's pause leaves it false.
  bool paused_for_space = false;

  bool active() const { return phase == RotationPhase::kRunning || phase == RotationPhase::kPaused; }
};

constexpr size_t kMaxRotationErrors = 50;

// The one JSON shape of a rotation's state: the kmsfs.rotation file and the fields
// `kmsfs rotate --status --json` builds on.
nlohmann::json rotation_state_to_json(const RotationState& s);
Result<RotationState> parse_rotation_state(const std::string& text, const std::string& where);

// nullopt if the vault has no rotation file.
Result<std::optional<RotationState>> load_rotation_state(const std::string& vault_dir);
Status save_rotation_state(const std::string& vault_dir, const RotationState& s);

}  // namespace kmsfs
