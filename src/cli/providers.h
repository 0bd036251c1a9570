// The one place where the CLI builds key providers. A file's header names its provider,
// so providers are created lazily, on first use, by the factory made here: a command that
// never touches a keyring never asks for a passphrase.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "base/status.h"
#include "cli/aws_options.h"
#include "crypto/secure_buffer.h"
#include "keys/key_providers.h"
#include "keys/keyring/keyring.h"
#include "keys/keyring/passphrase.h"

namespace kmsfs::cli {

struct ProviderConfig {
  // Finds the keyring path; called only when the keyring provider is first needed.
  std::function<Result<std::string>()> keyring;
  PassphraseSource passphrase;
  AwsCliOptions aws;
};

// Providers restricted to `trust`: the keys of a vault's trust record, or those an
// operator named for a standalone file. Only `kmsfs init` passes nullopt: it reads nothing
// from a backing directory, every key it uses comes from its own options.
std::unique_ptr<KeyProviders> make_providers(ProviderConfig cfg, std::optional<KeyTrust> trust);

// The AWS KMS provider (libcurl, the default credential chain). Create it in the process
// that uses it: its connections and refresh thread do not survive a fork.
Result<std::unique_ptr<KeyProvider>> make_aws_provider(const AwsCliOptions& opts);

// The passphrase for the keyring at `path` if it is sealed (read from `src`, prompting on
// the terminal only then), nullopt if it is not sealed. An unsealed keyring is refused
// when `src` is a file or a command: the operator expects a sealed one, so an unsealed
// file there was put in its place.
Result<std::optional<SecureBuffer>> keyring_passphrase(const std::string& path,
                                                       const PassphraseSource& src);
// Opens the keyring at `path`, asking for a passphrase only if it is sealed.
Result<Keyring> open_keyring(const std::string& path, const PassphraseSource& src);

}  // namespace kmsfs::cli
