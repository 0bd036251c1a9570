// Re-wraps one file under the rotation's target key (FORMAT.md §3.7): the DEK never
// leaves the provider (KMS ReEncrypt; the keyring unwraps and wraps in memory), only the
// header's slots change, and content and mtime stay as they were. Intermediate-mode
// files re-wrap their intermediate key; every file sharing it reuses one provider call.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <utility>

#include "base/status.h"
#include "format/key_ref.h"
#include "format/slot_rewrap.h"
#include "vault/vault.h"

namespace kmsfs {

enum class RewrapOutcome : uint8_t {
  kRotated,   // its slots now hold only wraps under the target
  kAlready,   // it was under the target
  kNotKmsfs,  // not a kmsfs file (no kmsfs magic): left alone
  kGone,      // removed before it was reached
};

struct RewrapResult {
  RewrapOutcome outcome = RewrapOutcome::kAlready;
  uint64_t bytes = 0;
};

class Rewrapper {
 public:
  struct Options {
    KeyRef target;
    // Re-wrap files already under the target too (a KMS key whose material was rotated:
    // ReEncrypt to the same key moves the wrap to the newest material).
    bool all = false;
    // Called before every provider call (the KMS rate limit); may block.
    std::function<void()> before_call;
  };

  Rewrapper(Vault& vault, Options opts) : vault_(vault), opts_(std::move(opts)) {}

  // `rel` is relative to the vault directory; `dirfd`, if given, is the directory holding
  // it (the tree walk's), else it is found from the vault root (rotation/tree_walk.h
  // open_tree_file). Errors name the backing path and file id: kCorrupt for a damaged
  // header, kUnavailable (retry later) for an unreachable provider, what the provider
  // said otherwise.
  Result<RewrapResult> rewrap(const std::string& rel, int dirfd = -1);

  uint64_t calls() const { return calls_; }

 private:
  Result<SlotWrap> moved(const FileHeader& h, const SlotWrap& from);

  Vault& vault_;
  const Options opts_;
  uint64_t calls_ = 0;
  // Intermediate keys moved so far: (IK id, old wrap) -> the target's ref and record.
  std::map<std::pair<IntermediateKeyId, Bytes>, std::pair<KeyRef, IntermediateKeyRecord>> moved_iks_;
};

}  // namespace kmsfs
