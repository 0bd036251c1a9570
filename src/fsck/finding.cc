#include "fsck/finding.h"

namespace kmsfs::fsck {

namespace {

struct KindInfo {
  std::string_view name, title;
  Severity severity;
  bool repairable;
};

KindInfo info(FindingKind k) noexcept {
  switch (k) {
    case FindingKind::kOneSlot: return {"one_slot", "one-slot header", Severity::kProblem, true};
    case FindingKind::kDamagedHeader: return {"damaged_header", "damaged header", Severity::kProblem, true};
    case FindingKind::kUnsupportedHeader:
      return {"unsupported_header", "unsupported header", Severity::kProblem, false};
    case FindingKind::kDamagedBlock: return {"damaged_block", "damaged block", Severity::kProblem, false};
    case FindingKind::kTruncated: return {"truncated", "truncated file", Severity::kProblem, false};
    case FindingKind::kWrongVault: return {"wrong_vault", "file of another vault", Severity::kProblem, false};
    case FindingKind::kNotKmsfs: return {"not_kmsfs", "not a kmsfs file", Severity::kProblem, false};
    case FindingKind::kUndecryptableName:
      return {"undecryptable_name", "undecryptable name", Severity::kProblem, false};
    case FindingKind::kStaleTemporary: return {"stale_temporary", "stale temporary", Severity::kProblem, true};
    case FindingKind::kUnreadable: return {"unreadable", "unreadable entry", Severity::kProblem, false};
    case FindingKind::kKeyUnavailable: return {"key_unavailable", "key unavailable", Severity::kProblem, false};
    case FindingKind::kInterruptedRotation:
      return {"interrupted_rotation", "interrupted rotation", Severity::kProblem, true};
    case FindingKind::kFailedRotation: return {"failed_rotation", "failed rotation", Severity::kProblem, false};
    case FindingKind::kNotRotated: return {"not_rotated", "not under the current key", Severity::kNotice, false};
    case FindingKind::kPausedRotation: return {"paused_rotation", "paused rotation", Severity::kNotice, false};
    case FindingKind::kInterruptedReencryption:
      return {"interrupted_reencryption", "interrupted re-encryption", Severity::kProblem, true};
  }
  return {"unknown", "unknown", Severity::kProblem, false};
}

}  // namespace

std::string_view kind_name(FindingKind k) noexcept { return info(k).name; }
std::string_view kind_title(FindingKind k) noexcept { return info(k).title; }
Severity severity(FindingKind k) noexcept { return info(k).severity; }
bool repairable(FindingKind k) noexcept { return info(k).repairable; }

std::string_view status_name(FindingStatus s) noexcept {
  switch (s) {
    case FindingStatus::kFound: return "found";
    case FindingStatus::kRepaired: return "repaired";
    case FindingStatus::kQuarantined: return "quarantined";
    case FindingStatus::kRemoved: return "removed";
    case FindingStatus::kRepairFailed: return "repair_failed";
  }
  return "unknown";
}

Finding make_finding(FindingKind kind, std::string path, std::string message, std::string key, std::string file_id) {
  Finding f;
  f.kind = kind;
  f.path = std::move(path);
  f.message = std::move(message);
  f.key = std::move(key);
  f.file_id = std::move(file_id);
  return f;
}

bool corrected(const Finding& f) noexcept {
  return f.status == FindingStatus::kRepaired || f.status == FindingStatus::kQuarantined ||
         f.status == FindingStatus::kRemoved;
}

}  // namespace kmsfs::fsck
