#include "fs/name_transform.h"

#include <cerrno>
#include <climits>

#include "vault/config.h"

namespace kmsfs {

Result<std::string> PlaintextNames::to_backing(const Inode&, std::string_view name) const {
  if (name.size() > NAME_MAX) return Status(Code::kInvalidArgument, "name too long", ENAMETOOLONG);
  return std::string(name);
}

std::optional<std::string> PlaintextNames::to_plain(const Inode& dir, std::string_view backing) const {
  if (reserved(dir, backing)) return std::nullopt;
  return std::string(backing);
}

bool PlaintextNames::reserved(const Inode& dir, std::string_view name) const {
  return &dir == &root_ && name == kConfigFileName;
}

}  // namespace kmsfs
