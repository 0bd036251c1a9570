#include "vault/paths.h"

#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <memory>

#include "base/path_safety.h"
#include "base/unique_fd.h"
#include "vault/name_store.h"

namespace kmsfs {

namespace {

Result<std::vector<std::string>> split(std::string_view p) {
  std::vector<std::string> out;
  size_t i = 0;
  while (i <= p.size()) {
    size_t j = p.find('/', i);
    if (j == p.npos) j = p.size();
    std::string_view c = p.substr(i, j - i);
    if (c == "..") return Status(Code::kInvalidArgument, "'..' is not allowed in a vault path");
    if (!c.empty() && c != ".") out.emplace_back(c);
    i = j + 1;
  }
  return out;
}

std::string join(const std::vector<std::string>& parts) {
  std::string out;
  for (const auto& p : parts) out += (out.empty() ? "" : "/") + p;
  return out;
}

struct DirCloser {
  void operator()(DIR* d) const noexcept { ::closedir(d); }
};

}  // namespace

Result<std::string> encrypt_path(const Vault& v, std::string_view plain_rel) {
  ASSIGN_OR_RETURN(std::vector<std::string> parts, split(plain_rel));
  NameStore store(v.names());
  std::vector<std::string> out;
  for (size_t i = 0; i < parts.size(); ++i) {
    auto b = store.to_backing(parts[i], i == 0);
    if (!b.ok()) return b.status().with_context("'" + parts[i] + "'");
    out.push_back(b->name);
  }
  return join(out);
}

Result<std::string> prepare_new_file(const Vault& v, std::string_view plain_rel, bool make_parents, mode_t dir_mode) {
  ASSIGN_OR_RETURN(std::vector<std::string> parts, split(plain_rel));
  if (parts.empty()) return Status(Code::kInvalidArgument, "the vault root is not a file");
  NameStore store(v.names());
  UniqueFd dir(::open(v.dir().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dir.valid()) return Status::Io(errno, v.dir());
  std::vector<std::string> out;
  for (size_t i = 0; i < parts.size(); ++i) {
    const std::string shown = join({parts.begin(), parts.begin() + long(i) + 1});
    auto b = store.to_backing(parts[i], i == 0);
    if (!b.ok()) return b.status().with_context("'" + shown + "'");
    out.push_back(b->name);
    RETURN_IF_ERROR(store.prepare(dir.get(), *b));
    if (i + 1 == parts.size()) break;
    UniqueFd next(::openat(dir.get(), b->name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!next.valid() && errno == ENOENT) {
      if (!make_parents) return Status(Code::kNotFound, "directory '" + shown + "' does not exist in the vault", ENOENT);
      if (::mkdirat(dir.get(), b->name.c_str(), dir_mode) != 0 && errno != EEXIST)
        return Status::Io(errno, "creating directory '" + shown + "'");
      next = UniqueFd(::openat(dir.get(), b->name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    }
    if (!next.valid()) return Status::Io(errno, "directory '" + shown + "'");
    dir = std::move(next);
  }
  return v.dir() + "/" + join(out);
}

Result<std::string> decrypt_path(const Vault& v, std::string_view backing_rel) {
  ASSIGN_OR_RETURN(std::vector<std::string> parts, split(backing_rel));
  NameStore store(v.names());
  UniqueFd dir(::open(v.dir().c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!dir.valid()) return Status::Io(errno, v.dir());
  std::vector<std::string> out;
  for (size_t i = 0; i < parts.size(); ++i) {
    auto plain = store.to_plain(dir.get(), parts[i], i == 0);
    if (!plain.ok()) return plain.status().with_context("'" + join({parts.begin(), parts.begin() + long(i) + 1}) + "'");
    if (!*plain) return Status(Code::kInvalidArgument, "'" + parts[i] + "' is one of the vault's own files");
    out.push_back(**plain);
    if (i + 1 < parts.size()) {
      UniqueFd next(::openat(dir.get(), parts[i].c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
      if (!next.valid()) return Status::Io(errno, "'" + join({parts.begin(), parts.begin() + long(i) + 1}) + "'");
      dir = std::move(next);
    }
  }
  return join(out);
}

Result<Listing> list_dir(const Vault& v, std::string_view plain_rel) {
  ASSIGN_OR_RETURN(std::string rel, encrypt_path(v, plain_rel));
  const std::string path = rel.empty() ? v.dir() : v.dir() + "/" + rel;  // for messages
  // Opened beneath the vault one component at a time when it is long: the backing path of
  // a deep directory is longer than any path syscall takes.
  UniqueFd root(::open(v.dir().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!root.valid()) return Status::Io(errno, v.dir());
  UniqueFd fd;
  if (rel.empty()) {
    fd = std::move(root);
  } else {
    auto sub = open_beneath(root.get(), rel, O_RDONLY | O_DIRECTORY);
    if (!sub.ok()) {
      const std::string where = "'" + std::string(plain_rel) + "' (" + path + ")";
      const int e = sub.status().sys_errno();
      return e != 0 && sub.status().code() == Code::kIo ? Status::Io(e, where) : sub.status().with_context(where);
    }
    fd = std::move(*sub);
  }
  const int dfd = fd.get();
  std::unique_ptr<DIR, DirCloser> d(::fdopendir(fd.get()));
  if (!d) return Status::Io(errno, path);
  (void)fd.release();  // owned by the DIR now
  NameStore store(v.names());
  Listing l;
  while (struct dirent* e = ::readdir(d.get())) {
    std::string_view name = e->d_name;
    if (name == "." || name == "..") continue;
    auto plain = store.to_plain(dfd, name, rel.empty());
    if (!plain.ok()) {
      l.undecryptable.emplace_back(name);
      continue;
    }
    if (!*plain) continue;
    PlainEntry pe;
    pe.name = **plain;
    pe.backing = std::string(name);
    ::fstatat(dfd, e->d_name, &pe.st, AT_SYMLINK_NOFOLLOW);
    l.entries.push_back(std::move(pe));
  }
  std::sort(l.entries.begin(), l.entries.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
  std::sort(l.undecryptable.begin(), l.undecryptable.end());
  return l;
}

}  // namespace kmsfs
