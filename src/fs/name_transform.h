// The seam between plaintext names (what applications see) and backing names (what is on
// disk), for the mount: the vault's NameStore (plaintext or encrypted names, long-name
// side files) plus what only a mount needs — showing names that do not decrypt under
// -o badname=PATTERN, logging each of them once, and encrypting symlink targets and
// user.* xattrs.
#pragma once

#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

#include "base/status.h"
#include "vault/name_store.h"

namespace kmsfs {

// Appended to an undecryptable backing name shown under -o badname (as gocryptfs does).
constexpr std::string_view kBadNameSuffix = " KMSFS_BAD_NAME";

class NameTransform {
 public:
  NameTransform(const NameCipher* names, std::vector<std::string> badname_patterns)
      : store_(names), badname_(std::move(badname_patterns)) {}

  const NameStore& store() const { return store_; }
  bool encrypted() const { return store_.encrypted(); }

  // The backing entry for a plaintext name; a shown bad name maps back to its raw entry.
  Result<BackingName> to_backing(std::string_view name, bool in_root) const;
  // The name to show for a backing entry, or nullopt to hide it. A name that does not
  // decrypt is hidden with one log line naming the backing directory and entry (both
  // ciphertext), or shown with kBadNameSuffix if it matches a -o badname pattern.
  std::optional<std::string> to_plain(int dirfd, std::string_view backing, bool in_root) const;

  Result<std::string> link_to_backing(std::string_view target) const;
  Result<std::string> link_to_plain(std::string_view stored) const;
  // lstat's st_size of a symlink in the plaintext view.
  off_t link_size(off_t backing_size) const;

  // user.* xattrs are encrypted (name and value); every other namespace passes through.
  static bool encrypts_xattr(std::string_view name) { return name.starts_with("user."); }
  Result<std::string> xattr_to_backing(std::string_view name) const;
  // nullopt for a backing user.* name that does not decrypt (hidden from listxattr).
  std::optional<std::string> xattr_to_plain(std::string_view backing) const;

 private:
  bool shown_as_bad(std::string_view raw) const;
  void log_bad_once(int dirfd, std::string_view backing, const Status& why) const;

  NameStore store_;
  std::vector<std::string> badname_;
  mutable std::mutex logged_mu_;
  mutable std::unordered_set<std::string> logged_;
};

}  // namespace kmsfs
