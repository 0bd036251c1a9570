#include "rotation/tree_walk.h"

#include <fcntl.h>

#include "base/unique_fd.h"
#include "format/names.h"
#include "vault/config.h"

namespace kmsfs {

namespace {

std::vector<std::string> split(const std::string& rel) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start < rel.size()) {
    size_t slash = rel.find('/', start);
    if (slash == std::string::npos) slash = rel.size();
    if (slash > start) out.push_back(rel.substr(start, slash - start));
    start = slash + 1;
  }
  return out;
}

}  // namespace

Status walk_entries(const std::string& root, const std::string& after,
                    const std::function<bool(const WalkEntry&)>& visit,
                    const std::function<void(const std::string& rel, const Status&)>& unreadable) {
  DirWalkOptions o;
  o.skip_in_root = [](std::string_view name) { return is_vault_file_name(name); };
  o.after = after;
  return walk_dir_tree(root, o, visit, unreadable);
}

Status walk_files(const std::string& root, const WalkOptions& opts, const std::string& after,
                  const std::function<bool(const WalkEntry&)>& visit,
                  const std::function<void(const std::string& rel, const Status&)>& unreadable) {
  return walk_entries(
      root, after,
      [&](const WalkEntry& e) {
        if (e.type != EntryType::kFile) return true;
        if (opts.encrypted_names && e.name.find('.') != std::string_view::npos && !NameCipher::is_long_name(e.name))
          return true;
        return visit(e);
      },
      unreadable);
}

bool walk_before(const std::string& a, const std::string& b) { return split(a) < split(b); }

Result<std::unique_ptr<PosixBackingFile>> open_tree_file(const std::string& root, const std::string& rel, int dirfd,
                                                         int flags) {
  const std::string shown = root + "/" + rel;
  if (dirfd >= 0) {
    const size_t slash = rel.rfind('/');
    return PosixBackingFile::open_at(dirfd, slash == std::string::npos ? rel : rel.substr(slash + 1), flags, shown);
  }
  UniqueFd top(::open(root.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!top.valid()) return Status::Io(errno, "backing directory " + root);
  return PosixBackingFile::open_at(top.get(), rel, flags, shown);
}

}  // namespace kmsfs
