// Commands that take BACKING[/PLAIN/PATH]: the vault directory is the longest existing
// prefix that holds a kmsfs.conf, the rest is a path in the plaintext view (which does
// not exist on disk when names are encrypted). And the one place offline commands get
// their keys: the vault's trust anchor, or for a file outside any vault the key the
// operator named.
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

// The trust store of this process: $KMSFS_TRUST_DIR, else the default (trust_store.h).
TrustStore trust_store();

// A vault opened for an offline command, against this host's trust anchor: its providers
// live as long as it does and serve only the keys the anchor trusts.
struct OpenedVault {
  std::unique_ptr<KeyProviders> providers;
  std::unique_ptr<Vault> vault;
};
Result<OpenedVault> open_vault_offline(const std::string& dir, const std::optional<std::string>& keyring,
                                       const PassphraseOptions& pass, const AwsCliOptions& aws);

// FILE as a command names it. Inside a vault (a kmsfs.conf at or above it) it is a path in
// the plaintext view, BACKING/PLAIN/PATH, whose encrypted backing path is found with the
// vault's name key (so the vault is opened offline, against the trust anchor). With
// `backing_path` (--backing-path) it is an encrypted backing path, taken as given: what
// fsck and `ls -l` print, and how one file is restored from a backup whose config is
// damaged. Outside any vault it is a backing file (a copy), taken as given.
struct ResolvedFile {
  std::string path;
  // Opened to resolve a plaintext path: its providers serve the file too (one credential
  // lookup, one keyring unlock per command).
  std::optional<OpenedVault> vault;
};
Result<ResolvedFile> resolve_backing_file(const std::string& file, bool backing_path,
                                          const std::optional<std::string>& keyring, const PassphraseOptions& pass,
                                          const AwsCliOptions& aws);

// --backing-path, the same words on every command that takes a file.
void add_backing_path_flag(CLI::App& cmd, bool& backing_path);

// A key named on the command line for a file outside any vault (`--key NAME` with a
// keyring, or `--kms-key ARN|alias/NAME`): the only way such a file's key is trusted.
struct NamedKey {
  std::string key;
  std::string kms_key;
  bool given() const { return !key.empty() || !kms_key.empty(); }
};
// Adds --key and --kms-key to `cmd`.
void add_named_key_options(CLI::App& cmd, NamedKey& k);

// Providers for one backing file: with a named key, that key alone; otherwise the trust
// record of the vault the file lies in (found walking up from it). A file in no vault,
// with no key named, is refused with a message saying how to name one.
Result<std::unique_ptr<KeyProviders>> providers_for_file(const std::string& file,
                                                         const std::optional<std::string>& keyring,
                                                         const PassphraseOptions& pass, const AwsCliOptions& aws,
                                                         const NamedKey& named);

}  // namespace kmsfs::cli
