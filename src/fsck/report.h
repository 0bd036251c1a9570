// The result of one fsck run: counts per key, the findings, and the verdict the exit
// status is made of. report_json() is the documented --json schema (docs/CLI.md).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "format/key_ref.h"
#include "fsck/finding.h"

namespace kmsfs::fsck {

// Files whose active slot names this key (the key of record for the count).
struct KeyTotals {
  KeyRef key;
  uint64_t files = 0;
  uint64_t bytes = 0;  // backing bytes
};

struct RotationSummary {
  std::string id, to, target, phase;
  uint32_t pass = 0;
};

enum class Outcome : uint8_t {
  kClean,        // no problem found
  kRepaired,     // problems found, every one corrected
  kUncorrected,  // some problem is left
};
std::string_view outcome_name(Outcome o) noexcept;  // "clean", "repaired", "uncorrected"

struct FsckReport {
  std::string vault;  // the directory as given
  // A check of one file or tree (FsckOptions::scope): its backing path and, when known,
  // its plaintext path. Unset: the whole vault was checked.
  struct Scope {
    std::string backing;
    std::optional<std::string> plain;
  };
  std::optional<Scope> scope;
  std::string fs_id;
  bool repair = false;
  std::optional<std::string> in_use_by;  // the lock holder while a read-only check ran
  std::optional<KeyRef> current_key;     // the key new files get (unknown if it did not resolve)
  std::string current_key_error;         // why it did not
  KeyRef filesystem_key;                 // what kmsfs.conf's filesystem key is wrapped under
  bool names_checked = true;             // false: encrypted names, filesystem key unavailable
  std::optional<RotationSummary> rotation;

  uint64_t entries = 0;      // everything the walk saw (directories too)
  uint64_t files = 0;        // regular files
  uint64_t kmsfs_files = 0;  // regular files with the kmsfs magic
  uint64_t bytes = 0;        // backing bytes of the kmsfs files
  uint64_t damaged_blocks = 0;  // all of them, also those past a file's listing limit
  std::map<std::string, KeyTotals> keys;  // by KeyRef::to_string()
  std::vector<Finding> findings;

  void add(Finding f) { findings.push_back(std::move(f)); }
  uint64_t problems() const;     // problem findings, corrected or not
  uint64_t uncorrected() const;  // problem findings still standing
  uint64_t notices() const;
  Outcome outcome() const;
};

nlohmann::json report_json(const FsckReport& r);

}  // namespace kmsfs::fsck
