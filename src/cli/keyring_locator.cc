#include "cli/keyring_locator.h"

#include <sys/stat.h>

#include <cstdlib>
#include <filesystem>

#include "vault/config.h"
#include "vault/vault.h"

namespace kmsfs::cli {

namespace fs = std::filesystem;

namespace {

Result<std::string> hint_of(const std::string& vault_dir) {
  ASSIGN_OR_RETURN(FsConfig c, Vault::peek_config(vault_dir));
  if (c.keyring_hint.empty())
    return Status(Code::kInvalidArgument, "no keyring: the vault config " + vault_dir + "/" +
                                              kConfigFileName + " names none; pass --keyring");
  // init writes an absolute path; a hand-edited relative one is relative to the vault.
  fs::path hint(c.keyring_hint);
  if (hint.is_relative()) hint = fs::path(vault_dir) / hint;
  return hint.string();
}

}  // namespace

std::optional<std::string> find_vault_above(const std::string& file) {
  std::error_code ec;
  fs::path dir = fs::absolute(fs::path(file), ec).lexically_normal().parent_path();
  if (ec) return std::nullopt;
  for (;;) {
    struct stat st;
    if (::stat((dir / kConfigFileName).c_str(), &st) == 0 && S_ISREG(st.st_mode)) return dir.string();
    if (!dir.has_relative_path()) return std::nullopt;  // reached "/"
    dir = dir.parent_path();
  }
}

Result<std::string> locate_keyring(const KeyringSearch& search) {
  if (search.explicit_path) return *search.explicit_path;
  if (const char* env = std::getenv(kKeyringEnv); env != nullptr && *env != '\0') return std::string(env);
  if (!search.vault_dir.empty()) return hint_of(search.vault_dir);
  if (!search.file_path.empty()) {
    if (auto vault = find_vault_above(search.file_path)) return hint_of(*vault);
  }
  return Status(Code::kInvalidArgument,
                std::string("no keyring: pass --keyring (or set ") + kKeyringEnv + ")");
}

}  // namespace kmsfs::cli
