// Commands that take BACKING[/PLAIN/PATH]: the vault directory is the longest existing
// prefix that holds a kmsfs.conf, the rest is a path in the plaintext view (which does
// not exist on disk when names are encrypted).
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "base/status.h"
#include "cli/aws_options.h"
#include "cli/passphrase_options.h"
#include "keys/key_providers.h"
#include "vault/vault.h"

namespace kmsfs::cli {

struct VaultPath {
  std::string vault_dir;
  std::string rel;  // plaintext path inside the vault, "" for the root
};
Result<VaultPath> split_vault_path(const std::string& arg);

// A vault opened for an offline command: its providers live as long as it does.
struct OpenedVault {
  std::unique_ptr<KeyProviders> providers;
  std::unique_ptr<Vault> vault;
};
Result<OpenedVault> open_vault_offline(const std::string& dir, const std::optional<std::string>& keyring,
                                       const PassphraseOptions& pass, const AwsCliOptions& aws);

}  // namespace kmsfs::cli
