#include "cli/vault_path.h"

#include <sys/stat.h>

#include <filesystem>

#include "cli/keyring_locator.h"
#include "cli/providers.h"
#include "vault/config.h"

namespace kmsfs::cli {

Result<VaultPath> split_vault_path(const std::string& arg) {
  std::filesystem::path p = std::filesystem::path(arg).lexically_normal();
  std::filesystem::path prefix = p;
  while (true) {
    struct stat st;
    const std::string conf = (prefix.empty() ? std::string(".") : prefix.string()) + "/" + kConfigFileName;
    if (::stat(conf.c_str(), &st) == 0) {
      std::string rel = p.lexically_relative(prefix.empty() ? "." : prefix).string();
      if (rel == ".") rel.clear();
      return VaultPath{prefix.empty() ? "." : prefix.string(), rel};
    }
    if (!prefix.has_relative_path() || prefix == prefix.parent_path()) break;
    prefix = prefix.parent_path();
  }
  return Status(Code::kNotFound, "no kmsfs vault (a directory with " + std::string(kConfigFileName) +
                                     ") at or above '" + arg + "'", ENOENT);
}

Result<OpenedVault> open_vault_offline(const std::string& dir, const std::optional<std::string>& keyring,
                                       const PassphraseOptions& pass, const AwsCliOptions& aws) {
  OpenedVault o;
  o.providers = make_providers({[keyring, dir] { return locate_keyring({keyring, dir, ""}); }, pass.source(), aws});
  ASSIGN_OR_RETURN(o.vault, Vault::open(dir, *o.providers));
  return o;
}

}  // namespace kmsfs::cli
