#include "format/backing_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "base/file_io.h"
#include "base/path_safety.h"

namespace kmsfs {

std::string PosixBackingFile::name() const {
  if (!name_.empty()) return name_;
  std::string path = fd_path(fd_->get());
  const size_t n = relative_to_.size();
  if (n > 0 && path.size() > n + 1 && path.compare(0, n, relative_to_) == 0 && path[n] == '/') path.erase(0, n + 1);
  return path;
}

Result<std::unique_ptr<PosixBackingFile>> PosixBackingFile::open(const std::string& path,
                                                                 int flags, mode_t mode) {
  flags &= ~O_APPEND;
  UniqueFd fd(::open(path.c_str(), flags | O_CLOEXEC, mode));
  if (!fd.valid()) {
    int e = errno;
    if (e == ENOENT) return Status(Code::kNotFound, path + ": no such file", e);
    return Status::Io(e, "open " + path);
  }
  return std::make_unique<PosixBackingFile>(std::move(fd), path);
}

Result<std::unique_ptr<PosixBackingFile>> PosixBackingFile::open_at(int dirfd, const std::string& rel, int flags,
                                                                    std::string name) {
  auto fd = open_beneath(dirfd, rel, flags & ~O_APPEND);
  if (!fd.ok()) {
    const int e = fd.status().sys_errno();
    if (e == ENOENT) return Status(Code::kNotFound, name + ": no such file", e);
    if (fd.status().code() == Code::kPermissionDenied) return fd.status().with_context(name);
    return Status::Io(e, "open " + name);
  }
  return std::make_unique<PosixBackingFile>(std::move(*fd), std::move(name));
}

Result<size_t> PosixBackingFile::read_at(MutableByteSpan buf, uint64_t off) {
  size_t done = 0;
  while (done < buf.size()) {
    ssize_t n = ::pread(fd_->get(), buf.data() + done, buf.size() - done,
                        static_cast<off_t>(off + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return Status::Io(errno, "read " + name());
    }
    if (n == 0) break;
    done += static_cast<size_t>(n);
  }
  return done;
}

Status PosixBackingFile::write_at(ByteSpan data, uint64_t off) {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::pwrite(fd_->get(), data.data() + done, data.size() - done,
                         static_cast<off_t>(off + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return Status::Io(errno, "write " + name());
    }
    done += static_cast<size_t>(n);
  }
  return Status::Ok();
}

Result<uint64_t> PosixBackingFile::size() {
  struct stat st;
  if (::fstat(fd_->get(), &st) != 0) return Status::Io(errno, "stat " + name());
  return static_cast<uint64_t>(st.st_size);
}

Status PosixBackingFile::truncate(uint64_t size) {
  if (::ftruncate(fd_->get(), static_cast<off_t>(size)) != 0)
    return Status::Io(errno, "truncate " + name());
  return Status::Ok();
}

Status PosixBackingFile::reserve(uint64_t off, uint64_t len) {
  if (len == 0) return Status::Ok();
  if (::fallocate(fd_->get(), FALLOC_FL_KEEP_SIZE, static_cast<off_t>(off), static_cast<off_t>(len)) != 0) {
    int e = errno;
    if (e == EOPNOTSUPP || e == ENOSYS) return Status(Code::kUnsupported, "fallocate not supported", e);
    return Status::Io(e, "reserve space in " + name());
  }
  return Status::Ok();
}

Result<timespec> PosixBackingFile::mtime() {
  struct stat st;
  if (::fstat(fd_->get(), &st) != 0) return Status::Io(errno, "stat " + name());
  return st.st_mtim;
}

Status PosixBackingFile::set_mtime(const timespec& t) {
  const timespec times[2] = {{0, UTIME_OMIT}, t};
  if (::futimens(fd_->get(), times) != 0) return Status::Io(errno, "restoring the modification time of " + name());
  return Status::Ok();
}

Status PosixBackingFile::sync(bool data_only) {
  int rc = data_only ? ::fdatasync(fd_->get()) : ::fsync(fd_->get());
  if (rc != 0) return Status::Io(errno, "fsync " + name());
  return Status::Ok();
}

Result<size_t> MemoryBackingFile::read_at(MutableByteSpan buf, uint64_t off) {
  std::lock_guard lock(mu_);
  if (off >= size_) return size_t{0};
  size_t n = static_cast<size_t>(std::min<uint64_t>(buf.size(), size_ - off));
  for (size_t done = 0; done < n;) {
    uint64_t pos = off + done;
    uint64_t idx = pos / kChunk, in = pos % kChunk;
    size_t take = static_cast<size_t>(std::min<uint64_t>(n - done, kChunk - in));
    auto it = chunks_.find(idx);
    if (it == chunks_.end())
      std::fill_n(buf.begin() + static_cast<long>(done), take, 0);
    else
      std::copy_n(it->second.begin() + static_cast<long>(in), take, buf.begin() + static_cast<long>(done));
    done += take;
  }
  return n;
}

Status MemoryBackingFile::write_at(ByteSpan data, uint64_t off) {
  std::lock_guard lock(mu_);
  for (size_t done = 0; done < data.size();) {
    uint64_t pos = off + done;
    uint64_t idx = pos / kChunk, in = pos % kChunk;
    size_t take = static_cast<size_t>(std::min<uint64_t>(data.size() - done, kChunk - in));
    Bytes& chunk = chunks_[idx];
    if (chunk.empty()) chunk.assign(kChunk, 0);
    std::copy_n(data.begin() + static_cast<long>(done), take, chunk.begin() + static_cast<long>(in));
    done += take;
  }
  size_ = std::max<uint64_t>(size_, off + data.size());
  return Status::Ok();
}

Result<uint64_t> MemoryBackingFile::size() {
  std::lock_guard lock(mu_);
  return size_;
}

Status MemoryBackingFile::truncate(uint64_t size) {
  std::lock_guard lock(mu_);
  if (size < size_) {
    // Zero the cut tail of the boundary chunk, drop whole chunks past it.
    uint64_t idx = size / kChunk, in = size % kChunk;
    auto it = chunks_.find(idx);
    if (it != chunks_.end()) std::fill(it->second.begin() + static_cast<long>(in), it->second.end(), 0);
    chunks_.erase(chunks_.upper_bound(idx), chunks_.end());
    if (in == 0) chunks_.erase(idx);
  }
  size_ = size;
  return Status::Ok();
}

Bytes MemoryBackingFile::peek(uint64_t off, size_t len) {
  Bytes out(len);
  auto n = read_at(out, off);
  out.resize(n.ok() ? *n : 0);
  return out;
}

}  // namespace kmsfs
