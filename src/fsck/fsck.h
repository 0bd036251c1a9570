// kmsfs fsck's engine: reads every header and block of a vault's backing tree and says
// what it found (report.h); with `repair`, corrects what can be corrected (repair.h).
// The command line, the vault lock and finishing an interrupted rotation are the
// caller's (cli/cmd_fsck.cc).
#pragma once

#include <chrono>
#include <cstddef>
#include <string>

#include "base/status.h"
#include "fsck/report.h"
#include "keys/key_providers.h"
#include "vault/vault.h"

namespace kmsfs::fsck {

struct FsckOptions {
  // Correct what can be corrected. The caller holds the vault lock.
  bool repair = false;
  // A temporary younger than this may belong to a command running now: left alone.
  std::chrono::seconds temporary_age{60};
  // Damaged blocks listed per file (all are counted).
  size_t max_blocks_listed = 64;
  // This host's trust anchor of the vault (the CLI always passes one): a config it does
  // not accept stops the check (nothing is read under keys it does not trust).
  std::optional<TrustAnchor> anchor;
  // Check only this file or directory tree (and the vault's own config and rotation
  // state), not the whole vault: a path relative to the vault root, in the plaintext
  // view (its backing path found with the vault's name key) or, with `scope_is_backing`,
  // an encrypted backing path as fsck prints it.
  std::optional<std::string> scope;
  bool scope_is_backing = false;
};

// Fails only when the vault cannot be checked at all: not a vault, its config damaged,
// its key provider not usable (no keyring, wrong passphrase, KMS unreachable). A
// filesystem key that is disabled or denied is a finding: files are then checked
// without names (which need it).
Result<FsckReport> run_fsck(const std::string& dir, KeyProviders& providers, const FsckOptions& opts);

}  // namespace kmsfs::fsck
