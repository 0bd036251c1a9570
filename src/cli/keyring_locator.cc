#include "cli/keyring_locator.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>

#include "base/path_safety.h"
#include "vault/config.h"

namespace kmsfs::cli {

namespace fs = std::filesystem;

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

Status check_keyring_path(const std::string& path, const std::string& backing_dir) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return Status(Code::kNotFound, "keyring " + path + ": no such file", ENOENT);
    return Status::Io(errno, "keyring " + path);
  }
  if (!backing_dir.empty() && path_is_within(path, backing_dir))
    return Status(Code::kPermissionDenied, "keyring " + path + " is inside the vault's backing directory " +
                                               backing_dir + ": refusing to use it (whoever writes the backing "
                                               "store would choose the keys); keep keyrings elsewhere");
  return check_private_path(path, "keyring", ::geteuid());
}

Result<std::string> locate_keyring(const KeyringSearch& search) {
  std::string path;
  if (search.explicit_path) {
    path = *search.explicit_path;
  } else if (const char* env = std::getenv(kKeyringEnv); env != nullptr && *env != '\0') {
    path = env;
  } else if (!search.record_keyring.empty()) {
    path = search.record_keyring;
  } else {
    return Status(Code::kInvalidArgument, std::string("no keyring: pass --keyring (or set ") + kKeyringEnv + ")");
  }
  RETURN_IF_ERROR(check_keyring_path(path, search.backing_dir));
  return path;
}

}  // namespace kmsfs::cli
