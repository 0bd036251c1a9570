#include "cli/providers.h"

#include "keys/aws/aws_kms_provider.h"
#include "keys/keyring/keyring_provider.h"

namespace kmsfs::cli {

Result<std::optional<SecureBuffer>> keyring_passphrase(const std::string& path,
                                                       const PassphraseSource& src) {
  ASSIGN_OR_RETURN(KeyringInfo info, Keyring::peek(path));
  if (!info.sealed && src.kind != PassphraseSource::Kind::kPrompt)
    return Status(Code::kPermissionDenied, "keyring " + path + " is not sealed, but a passphrase source was given: "
                                           "refusing to use it (an unsealed keyring may have been put in place of "
                                           "yours; drop --passphrase-file/--extpass if it is meant to be unsealed)");
  if (!info.sealed) return std::optional<SecureBuffer>();
  ASSIGN_OR_RETURN(SecureBuffer pw, read_passphrase(src, "Passphrase for keyring " + path + ": ",
                                                    /*confirm_twice=*/false));
  return std::optional<SecureBuffer>(std::move(pw));
}

Result<Keyring> open_keyring(const std::string& path, const PassphraseSource& src) {
  ASSIGN_OR_RETURN(std::optional<SecureBuffer> pw, keyring_passphrase(path, src));
  return Keyring::open(path, pw ? &*pw : nullptr);
}

Result<std::unique_ptr<KeyProvider>> make_aws_provider(const AwsCliOptions& opts) {
  ASSIGN_OR_RETURN(std::unique_ptr<aws::AwsKmsProvider> p,
                   aws::AwsKmsProvider::create({.region = opts.region,
                                                .endpoint = opts.kms_endpoint,
                                                .profile = ""}));
  return std::unique_ptr<KeyProvider>(std::move(p));
}

namespace {

Result<std::unique_ptr<KeyProvider>> make_keyring_provider(const ProviderConfig& cfg) {
  if (!cfg.keyring) return Status(Code::kInvalidArgument, "no keyring: pass --keyring");
  ASSIGN_OR_RETURN(std::string path, cfg.keyring());
  ASSIGN_OR_RETURN(std::optional<SecureBuffer> pw, keyring_passphrase(path, cfg.passphrase));
  ASSIGN_OR_RETURN(std::unique_ptr<KeyringProvider> p,
                   KeyringProvider::open(path, pw ? &*pw : nullptr));
  return std::unique_ptr<KeyProvider>(std::move(p));
}

}  // namespace

std::unique_ptr<KeyProviders> make_providers(ProviderConfig cfg, std::optional<KeyTrust> trust) {
  auto p = std::make_unique<KeyProviders>(
      [cfg = std::move(cfg)](ProviderId id) -> Result<std::unique_ptr<KeyProvider>> {
        switch (id) {
          case ProviderId::kKeyring: return make_keyring_provider(cfg);
          case ProviderId::kAwsKms: return make_aws_provider(cfg.aws);
        }
        return Status(Code::kUnsupported, "unknown key provider id " +
                                              std::to_string(static_cast<int>(id)));
      });
  if (trust) p->set_trust(std::move(*trust));
  return p;
}

}  // namespace kmsfs::cli
