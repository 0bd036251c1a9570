#include "base/path_safety.h"

#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <vector>

namespace kmsfs {

namespace {

Result<std::string> resolve(const std::string& path) {
  std::unique_ptr<char, decltype(&std::free)> real(::realpath(path.c_str(), nullptr), &std::free);
  if (!real) return Status::Io(errno, path);
  return std::string(real.get());
}

std::string octal_mode(mode_t m) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "%04o", static_cast<unsigned>(m & 07777));
  return buf;
}

}  // namespace

Status check_private_path(const std::string& path, const std::string& what, uid_t uid) {
  ASSIGN_OR_RETURN(std::string real, resolve(path));
  struct stat st;
  if (::stat(real.c_str(), &st) != 0) return Status::Io(errno, what + " " + path);
  auto owner_ok = [&](const struct stat& s) { return s.st_uid == 0 || s.st_uid == uid; };
  if (!owner_ok(st))
    return Status(Code::kPermissionDenied, what + " " + path + " is owned by uid " + std::to_string(st.st_uid) +
                                               ", not by root or uid " + std::to_string(uid) + ": refusing to use it");
  if ((st.st_mode & 022) != 0)
    return Status(Code::kPermissionDenied, what + " " + path + " is writable by group or others (mode " +
                                               octal_mode(st.st_mode) + "): refusing to use it (chmod go-w)");
  // Every directory above: whoever can write one of them can replace the file.
  std::string dir = real;
  while (dir.size() > 1) {
    const size_t slash = dir.find_last_of('/');
    dir = slash == 0 ? "/" : dir.substr(0, slash);
    if (::stat(dir.c_str(), &st) != 0) return Status::Io(errno, "directory " + dir);
    const bool sticky_root = st.st_uid == 0 && (st.st_mode & S_ISVTX) != 0;
    if (!owner_ok(st))
      return Status(Code::kPermissionDenied, what + " " + path + " is in directory " + dir + ", owned by uid " +
                                                 std::to_string(st.st_uid) + ": refusing to use it");
    if ((st.st_mode & 022) != 0 && !sticky_root)
      return Status(Code::kPermissionDenied, what + " " + path + " is in directory " + dir +
                                                 ", which group or others can write (mode " + octal_mode(st.st_mode) +
                                                 "): refusing to use it");
  }
  return Status::Ok();
}

bool path_is_within(const std::string& path, const std::string& dir) {
  auto p = resolve(path);
  auto d = resolve(dir);
  if (!p.ok() || !d.ok()) return false;
  if (*p == *d) return true;
  const std::string prefix = *d == "/" ? "/" : *d + "/";
  return p->compare(0, prefix.size(), prefix) == 0;
}

namespace {

Status escapes(const std::string& rel) {
  return Status(Code::kPermissionDenied, "path '" + rel + "' escapes its directory (absolute, '..' or a symlink)",
                EXDEV);
}

}  // namespace

// The fallback: one component at a time, each opened O_NOFOLLOW relative to the last.
Result<UniqueFd> open_beneath_by_walk(int dirfd, const std::string& rel, int flags) {
  if (rel.empty()) return Status(Code::kInvalidArgument, "empty path");
  if (rel.front() == '/') return escapes(rel);
  std::vector<std::string> parts;
  for (size_t i = 0; i <= rel.size();) {
    size_t j = rel.find('/', i);
    if (j == std::string::npos) j = rel.size();
    std::string c = rel.substr(i, j - i);
    if (c == "..") return escapes(rel);
    if (!c.empty() && c != ".") parts.push_back(std::move(c));
    i = j + 1;
  }
  if (parts.empty()) return Status(Code::kInvalidArgument, "empty path");
  UniqueFd dir;
  int at = dirfd;
  for (size_t k = 0; k + 1 < parts.size(); ++k) {
    UniqueFd next(::openat(at, parts[k].c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!next.valid()) {
      if (errno == ELOOP || errno == ENOTDIR) {
        struct stat st;
        if (::fstatat(at, parts[k].c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode)) return escapes(rel);
      }
      return Status::Io(errno, "open " + rel);
    }
    dir = std::move(next);
    at = dir.get();
  }
  UniqueFd fd(::openat(at, parts.back().c_str(), flags | O_NOFOLLOW | O_CLOEXEC));
  if (!fd.valid()) {
    if (errno == ELOOP) return escapes(rel);
    return Status::Io(errno, "open " + rel);
  }
  return fd;
}

Result<UniqueFd> open_beneath(int dirfd, const std::string& rel, int flags) {
  if (rel.empty()) return Status(Code::kInvalidArgument, "empty path");
  if (rel.front() == '/') return escapes(rel);
  // The kernel takes paths of at most PATH_MAX bytes; a backing path may be far longer.
  if (rel.size() >= PATH_MAX) return open_beneath_by_walk(dirfd, rel, flags);
  open_how how{};
  how.flags = static_cast<uint64_t>(flags | O_NOFOLLOW | O_CLOEXEC);
  how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
  // glibc 2.36 has no openat2() wrapper.
  const long r = ::syscall(SYS_openat2, dirfd, rel.c_str(), &how, sizeof how);
  if (r >= 0) return UniqueFd(static_cast<int>(r));
  const int e = errno;
  if (e == ENOSYS || e == EPERM) return open_beneath_by_walk(dirfd, rel, flags);
  if (e == EXDEV || e == ELOOP) return escapes(rel);
  return Status::Io(e, "open " + rel);
}

}  // namespace kmsfs
