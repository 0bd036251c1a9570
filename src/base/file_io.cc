#include "base/file_io.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdio>
#include <random>

#include "base/unique_fd.h"

namespace kmsfs {

std::string fd_path(int fd) {
  char buf[PATH_MAX];
  const std::string proc = "/proc/self/fd/" + std::to_string(fd);
  ssize_t n = ::readlink(proc.c_str(), buf, sizeof buf - 1);
  if (n < 0) {
    // The kernel gives no path longer than PATH_MAX (a deep backing file): the inode
    // number at least finds it (find -inum).
    struct stat st;
    if (errno == ENAMETOOLONG && ::fstat(fd, &st) == 0)
      return "<a path longer than PATH_MAX, inode " + std::to_string(st.st_ino) + ">";
    return "<fd " + std::to_string(fd) + ">";
  }
  return std::string(buf, static_cast<size_t>(n));
}

Result<Bytes> read_file(const std::string& path, size_t max_size) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) {
    if (errno == ENOENT) return Status(Code::kNotFound, path + ": no such file", ENOENT);
    return Status::Io(errno, "open " + path);
  }
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return Status::Io(errno, "stat " + path);
  if (!S_ISREG(st.st_mode)) return Status(Code::kInvalidArgument, path + ": not a regular file");
  if (static_cast<uint64_t>(st.st_size) > max_size)
    return Status(Code::kInvalidArgument, path + ": file too large (" +
                                              std::to_string(st.st_size) + " bytes)");
  Bytes out(static_cast<size_t>(st.st_size));
  size_t done = 0;
  while (done < out.size()) {
    ssize_t n = ::pread(fd.get(), out.data() + done, out.size() - done, static_cast<off_t>(done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return Status::Io(errno, "read " + path);
    }
    if (n == 0) break;
    done += static_cast<size_t>(n);
  }
  out.resize(done);
  return out;
}

static std::string dir_of(const std::string& path) {
  auto slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

Status write_file_atomic(const std::string& path, ByteSpan data, mode_t mode, bool exclusive) {
  std::random_device rd;
  std::string tmp = path + ".tmp." + std::to_string(::getpid()) + "." + std::to_string(rd());
  UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode));
  if (!fd.valid()) return Status::Io(errno, "create " + tmp);
  auto fail = [&](Status s) {
    ::unlink(tmp.c_str());
    return s;
  };
  if (::fchmod(fd.get(), mode) != 0) return fail(Status::Io(errno, "chmod " + tmp));
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::write(fd.get(), data.data() + done, data.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail(Status::Io(errno, "write " + tmp));
    }
    done += static_cast<size_t>(n);
  }
  if (::fsync(fd.get()) != 0) return fail(Status::Io(errno, "fsync " + tmp));
  fd.reset();
  if (exclusive) {
    if (::link(tmp.c_str(), path.c_str()) != 0) {
      int e = errno;
      if (e == EEXIST) return fail(Status(Code::kAlreadyExists, path + " already exists", e));
      return fail(Status::Io(e, "link " + path));
    }
    ::unlink(tmp.c_str());
  } else if (::rename(tmp.c_str(), path.c_str()) != 0) {
    return fail(Status::Io(errno, "rename to " + path));
  }
  UniqueFd dfd(::open(dir_of(path).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (dfd.valid()) ::fsync(dfd.get());
  return Status::Ok();
}

}  // namespace kmsfs
