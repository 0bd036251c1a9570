#include "fsck/name_check.h"

#include "vault/config.h"

namespace kmsfs::fsck {

namespace {

constexpr std::string_view kSideFileTemporary = "kmsfs.tmp.";

}  // namespace

NameInfo check_name(const NameStore* store, bool encrypted, int dirfd, std::string_view name, bool in_root) {
  if (!encrypted) return {NameKind::kPlain, std::string(name), ""};
  if (name.starts_with(kSideFileTemporary)) return {NameKind::kTemporary, "", ""};
  if (!store) {
    // Side files are recognisable without the key, and nothing else in the tree is.
    if (name.starts_with(kReservedPrefix) && !NameCipher::is_long_name(name)) return {NameKind::kVaultOwn, "", ""};
    return {};
  }
  auto plain = store->to_plain(dirfd, name, in_root);
  if (!plain.ok()) return {NameKind::kUndecryptable, "", plain.status().message()};
  if (!*plain) return {NameKind::kVaultOwn, "", ""};
  return {NameKind::kPlain, std::move(**plain), ""};
}

bool is_vault_temporary(std::string_view root_name) {
  return is_vault_file_name(root_name) && root_name.find(".tmp.") != std::string_view::npos;
}

}  // namespace kmsfs::fsck
