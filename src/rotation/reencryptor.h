// Re-encrypts one file in place under a fresh DEK (FORMAT.md §3.9), on the same
// CryptFile the mount uses for it (OpenFiles), so readers and writers keep going: each
// step locks only the blocks it re-seals, journals their old ciphertext, and commits a
// new watermark. A step that is interrupted (pause, cancel, shutdown, crash) leaves a
// file that reads and writes normally; the next run continues it from its watermark.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "base/status.h"
#include "format/reencrypt_journal.h"
#include "vault/vault.h"

namespace kmsfs {

enum class ReencryptOutcome : uint8_t {
  kDone,      // the file is under a DEK of this run alone now
  kAlready,   // its DEK was born in this run (re-encrypted or created meanwhile)
  kStopped,   // interrupted between steps; continued by the next run
  kNotKmsfs,  // not a kmsfs file: left alone
  kGone,      // removed before it was reached
};

struct ReencryptResult {
  ReencryptOutcome outcome = ReencryptOutcome::kAlready;
  uint64_t bytes = 0;  // ciphertext re-sealed
};

class Reencryptor {
 public:
  struct Options {
    ReencryptRunId run{};
    uint64_t step_blocks = 256;  // blocks per step: 1 MiB at the default block size
    // Called before each step with the ciphertext bytes it may rewrite (the byte rate);
    // false stops the file there (kStopped).
    std::function<bool(uint64_t)> before_step;
    // Called before a provider call (the KMS rate limit); may block.
    std::function<void()> before_call;
  };

  Reencryptor(Vault& vault, ReencryptJournal journal, Options opts)
      : vault_(vault), journal_(std::move(journal)), opts_(std::move(opts)) {}

  // `rel` is relative to the vault directory; `dirfd`, if given, is the directory holding
  // it (as for Rewrapper::rewrap). Errors name the backing path and file id.
  Result<ReencryptResult> reencrypt(const std::string& rel, int dirfd = -1);

  uint64_t calls() const { return calls_; }

 private:
  Vault& vault_;
  ReencryptJournal journal_;
  const Options opts_;
  uint64_t calls_ = 0;
};

}  // namespace kmsfs
