#include "rotation/tree_walk.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>

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

struct Walker {
  const std::vector<std::string> after;
  const std::function<bool(const WalkEntry&)>& visit;
  const std::function<void(const std::string&, const Status&)>& unreadable;

  // `depth` components of `after` matched so far along this path (on_path: all of them).
  bool dir(int dirfd, const std::string& prefix, size_t depth, bool on_path) {
    UniqueFd fd(::openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    DIR* d = fd.valid() ? ::fdopendir(::dup(fd.get())) : nullptr;
    if (!d) {
      unreadable(prefix.empty() ? "." : prefix, Status::Io(errno, "listing"));
      return true;
    }
    std::vector<std::pair<std::string, unsigned char>> entries;
    while (dirent* e = ::readdir(d)) {
      std::string n = e->d_name;
      if (n == "." || n == "..") continue;
      if (prefix.empty() && is_vault_file_name(n)) continue;
      entries.emplace_back(std::move(n), e->d_type);
    }
    ::closedir(d);
    std::sort(entries.begin(), entries.end());
    for (auto& [name, type] : entries) {
      bool child_on_path = false;
      if (on_path && depth < after.size()) {
        if (name < after[depth]) continue;
        child_on_path = name == after[depth];
      }
      if (type == DT_UNKNOWN) {
        struct stat st;
        if (::fstatat(fd.get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
        type = S_ISDIR(st.st_mode) ? DT_DIR : S_ISREG(st.st_mode) ? DT_REG : DT_UNKNOWN;
      }
      const std::string rel = prefix.empty() ? name : prefix + "/" + name;
      if (type == DT_DIR) {
        // A directory on the cursor's path was visited by the run that set the cursor.
        if (!child_on_path && !visit(WalkEntry{rel, name, EntryType::kDirectory, fd.get()})) return false;
        UniqueFd sub(::openat(fd.get(), name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
        if (!sub.valid()) {
          unreadable(rel, Status::Io(errno, "opening directory"));
          continue;
        }
        if (!dir(sub.get(), rel, depth + 1, child_on_path)) return false;
      } else {
        if (child_on_path && depth + 1 == after.size()) continue;  // the checkpoint itself: done
        const EntryType t = type == DT_REG ? EntryType::kFile : EntryType::kOther;
        if (!visit(WalkEntry{rel, name, t, fd.get()})) return false;
      }
    }
    return true;
  }
};

}  // namespace

Status walk_entries(const std::string& root, const std::string& after,
                    const std::function<bool(const WalkEntry&)>& visit,
                    const std::function<void(const std::string& rel, const Status&)>& unreadable) {
  UniqueFd fd(::open(root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd.valid()) return Status::Io(errno, "backing directory " + root);
  Walker w{split(after), visit, unreadable};
  w.dir(fd.get(), "", 0, !after.empty());
  return Status::Ok();
}

Status walk_files(const std::string& root, const WalkOptions& opts, const std::string& after,
                  const std::function<bool(const std::string& rel)>& visit,
                  const std::function<void(const std::string& rel, const Status&)>& unreadable) {
  return walk_entries(
      root, after,
      [&](const WalkEntry& e) {
        if (e.type != EntryType::kFile) return true;
        if (opts.encrypted_names && e.name.find('.') != std::string_view::npos && !NameCipher::is_long_name(e.name))
          return true;
        return visit(e.rel);
      },
      unreadable);
}

bool walk_before(const std::string& a, const std::string& b) { return split(a) < split(b); }

}  // namespace kmsfs
