// What fsck reports: one Finding per thing it noticed, each of one kind. A kind says how
// serious it is and whether --repair can correct it; the JSON names of kinds and statuses
// are a stable interface (docs/CLI.md "fsck").
//
// A new kind of per-file check is a new FindingKind here, its row in finding.cc, a check
// in file_check.cc's table and, if it can be repaired, a case in repair.cc.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace kmsfs::fsck {

enum class FindingKind : uint8_t {
  // Damage: the vault is not as kmsfs left it.
  kOneSlot,          // one key slot torn, empty or not opening the file; the other carries it
  kDamagedHeader,    // a kmsfs file whose header cannot be saved: parse error, no valid slot, MAC
  kUnsupportedHeader,  // newer format version or unknown critical feature: upgrade kmsfs
  kDamagedBlock,     // a content block that does not authenticate
  kTruncated,        // the file ends inside a block or lacks its final block
  kWrongVault,       // a kmsfs file of another filesystem (fs id)
  kNotKmsfs,         // a regular file in the tree that is not a kmsfs file
  kUndecryptableName,  // an entry whose name does not decrypt (encrypted names)
  kStaleTemporary,   // a temporary file a crashed writer left behind
  kUnreadable,       // an entry fsck could not read (permissions, I/O error)
  // Not damage, but the file cannot be read now.
  kKeyUnavailable,   // no slot's key can be unwrapped now: disabled, denied, missing
  // Interrupted work.
  kInterruptedRotation,  // kmsfs.rotation says running, but nobody is running it
  kFailedRotation,       // the last rotation ended in failure
  // Notices: worth knowing, not a problem.
  kNotRotated,       // some slot is not under the vault's current key
  kPausedRotation,   // a rotation is paused
  kInterruptedReencryption,  // a file part-way through a re-encryption, or a journaled step not undone
};

enum class Severity : uint8_t {
  kProblem,  // counts against a clean exit status until repaired
  kNotice,   // reported, never changes the exit status
};

// What became of a finding.
enum class FindingStatus : uint8_t {
  kFound,        // reported; not repaired (read-only run, or nothing to do)
  kRepaired,     // corrected in place
  kQuarantined,  // moved under kmsfs.quarantine/
  kRemoved,      // a stale temporary, deleted
  kRepairFailed, // --repair tried and failed (repair_error says why)
};

std::string_view kind_name(FindingKind k) noexcept;    // "one_slot", ...: JSON
std::string_view kind_title(FindingKind k) noexcept;   // "one-slot header", ...: human output
Severity severity(FindingKind k) noexcept;
// Whether --repair corrects this kind (in place, by quarantine or by removal).
bool repairable(FindingKind k) noexcept;
std::string_view status_name(FindingStatus s) noexcept;  // "found", "repaired", ...

struct Finding {
  FindingKind kind = FindingKind::kNotKmsfs;
  std::string path;                 // backing path relative to the vault ("" = the vault)
  std::optional<std::string> plain; // the plaintext path, when names decrypt
  std::string file_id;              // hex; empty when no header names one
  std::optional<uint64_t> block;    // damaged block index
  std::string key;                  // key reference concerned (KeyRef::to_string)
  std::string message;              // why, one line
  FindingStatus status = FindingStatus::kFound;
  std::string quarantined_to;       // relative to the vault, with kQuarantined
  std::string repair_error;         // with kRepairFailed
};

// A finding about `path` (relative to the vault) with its reason; the other fields are
// filled in where they are known.
Finding make_finding(FindingKind kind, std::string path, std::string message, std::string key = "",
                     std::string file_id = "");

// A problem no longer counts once repaired, quarantined or removed.
bool corrected(const Finding& f) noexcept;

}  // namespace kmsfs::fsck
