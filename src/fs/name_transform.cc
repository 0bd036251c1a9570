#include "fs/name_transform.h"

#include "base/file_io.h"

#include <fnmatch.h>

#include <spdlog/spdlog.h>

#include <cerrno>
#include <climits>

namespace kmsfs {

namespace {

constexpr size_t kMaxLoggedBadNames = 10000;  // bounds memory; later ones still get hidden
constexpr std::string_view kUserPrefix = "user.";

}  // namespace

bool NameTransform::shown_as_bad(std::string_view raw) const {
  const std::string s(raw);
  for (const auto& p : badname_)
    if (::fnmatch(p.c_str(), s.c_str(), 0) == 0) return true;
  return false;
}

Result<BackingName> NameTransform::to_backing(std::string_view name, bool in_root) const {
  if (!badname_.empty() && name.ends_with(kBadNameSuffix)) {
    std::string_view raw = name.substr(0, name.size() - kBadNameSuffix.size());
    if (!raw.empty() && shown_as_bad(raw)) return BackingName{std::string(raw), {}};
  }
  return store_.to_backing(name, in_root);
}

void NameTransform::log_bad_once(int dirfd, std::string_view backing, const Status& why) const {
  const std::string dir = fd_path(dirfd);
  std::string key = dir + "/" + std::string(backing);
  {
    std::lock_guard lock(logged_mu_);
    if (logged_.size() >= kMaxLoggedBadNames || !logged_.insert(key).second) return;
  }
  // Only ciphertext names appear here: the backing path and the entry that failed.
  spdlog::warn("readdir: {}: entry does not decrypt ({}); not shown (mount with -o badname=PATTERN to show it)",
               key, why.message());
}

std::optional<std::string> NameTransform::to_plain(int dirfd, std::string_view backing, bool in_root) const {
  auto r = store_.to_plain(dirfd, backing, in_root);
  if (r.ok()) return *r;
  if (shown_as_bad(backing)) {
    std::string shown = std::string(backing) + std::string(kBadNameSuffix);
    if (shown.size() <= NAME_MAX) return shown;
  }
  log_bad_once(dirfd, backing, r.status());
  return std::nullopt;
}

Result<std::string> NameTransform::link_to_backing(std::string_view target) const {
  if (!encrypted()) return std::string(target);
  if (target.size() >= PATH_MAX) return Status(Code::kInvalidArgument, "symlink target too long", ENAMETOOLONG);
  ASSIGN_OR_RETURN(std::string stored, store_.cipher()->seal_link(target));
  // The backing filesystem's limit applies to the encrypted form (docs/FORMAT.md §11.3).
  if (stored.size() >= PATH_MAX) return Status(Code::kInvalidArgument, "symlink target too long once encrypted", ENAMETOOLONG);
  return stored;
}

Result<std::string> NameTransform::link_to_plain(std::string_view stored) const {
  if (!encrypted()) return std::string(stored);
  return store_.cipher()->open_link(stored);
}

off_t NameTransform::link_size(off_t backing_size) const {
  if (!encrypted()) return backing_size;
  return static_cast<off_t>(NameCipher::link_plain_size(static_cast<size_t>(backing_size)));
}

Result<std::string> NameTransform::xattr_to_backing(std::string_view name) const {
  if (!encrypted() || !encrypts_xattr(name)) return std::string(name);
  ASSIGN_OR_RETURN(std::string enc, store_.cipher()->encrypt_xattr_name(name.substr(kUserPrefix.size())));
  return std::string(kUserPrefix) + enc;
}

std::optional<std::string> NameTransform::xattr_to_plain(std::string_view backing) const {
  if (!encrypted() || !encrypts_xattr(backing)) return std::string(backing);
  auto plain = store_.cipher()->decrypt_xattr_name(backing.substr(kUserPrefix.size()));
  if (!plain.ok()) return std::nullopt;
  return std::string(kUserPrefix) + *plain;
}

}  // namespace kmsfs
