#include "fs/filesystem.h"

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include <cerrno>
#include <chrono>
#include <cstring>

#include "base/file_io.h"
#include "base/log_fields.h"
#include "format/header.h"
#include "fs/fd_limit.h"
#include "fs/errno_map.h"

namespace kmsfs {

namespace {

constexpr off_t kOpenPrefetch = header::kSize + (128 << 10);

bool is_out_of_space(const Status& s) {
  const int e = to_errno(s);
  return e == ENOSPC || e == EDQUOT;
}

std::string proc_path(int fd) { return "/proc/self/fd/" + std::to_string(fd); }

// Every failed syscall of a request passes here: one that failed for lack of descriptors
// is counted and, at most every 10 s, logged with what to raise (fs/fd_limit.h).
Status errno_status(const char* what) {
  const int err = errno;
  FdShortage::process().note(err, what);
  return Status::Io(err, what);
}

// Whole-value reads through a (buf, size) call that reports the size needed when given
// size 0 (getxattr, listxattr); asks again if the value grew in between (ERANGE).
template <typename Call>
Result<std::string> read_sized(Call call, const char* what) {
  std::string out;
  while (true) {
    ssize_t need = call(nullptr, 0);
    if (need < 0) return errno_status(what);
    out.resize(static_cast<size_t>(need));
    ssize_t n = call(out.data(), out.size());
    if (n >= 0) {
      out.resize(static_cast<size_t>(n));
      return out;
    }
    if (errno != ERANGE) return errno_status(what);
  }
}


bool is_dot(const char* n) { return n[0] == '.' && (n[1] == 0 || (n[1] == '.' && n[2] == 0)); }

}  // namespace

Filesystem::Filesystem(Vault& vault, UniqueFd root_fd, FsOptions opts)
    : vault_(vault),
      opts_(opts),
      backing_root_(fd_path(root_fd.get())),
      table_(std::move(root_fd)),
      names_(vault.names(), opts.badname),
      layout_(Layout::of(vault.config().header_size, vault.config().block_size)),
      writeback_(opts.writeback_cache),
      as_root_(::geteuid() == 0) {
  // Inodes hold one descriptor each, an open file's included (Inode::fd), and the daemon
  // keeps fd_reserve for itself (fs/fd_limit.h). Eviction starts at three quarters of the
  // rest and goes down to half: the slack is for directory handles and for the inodes a
  // fast creator adds before the kernel's FORGETs come in. Only inodes no handle has open
  // are evicted, so clients can hold open nearly all of the rest.
  const size_t usable = opts.fd_limit > opts.fd_reserve + 64 ? opts.fd_limit - opts.fd_reserve : 64;
  fd_budget_ = usable;
  evict_high_ = usable * 3 / 4;
  evict_low_ = usable / 2;
}

Status Filesystem::admit_fd(const char* what) const {
  // The reserve is kept, not just counted: libfuse opens a descriptor for each worker
  // thread it starts, and one it cannot get ends the session at unmount. So clients meet
  // the limit here, with EMFILE, a reserve's width before the process would.
  if (table_.size() + dir_handles_.load(std::memory_order_relaxed) < fd_budget_) return Status::Ok();
  FdShortage::process().note(EMFILE, what);
  return Status(Code::kIo, std::string(what) + ": the daemon's open-file budget is spent", EMFILE);
}

void Filesystem::after_acquire() {
  if (table_.size() <= evict_high_) return;
  { std::lock_guard lock(evict_mu_); }  // a waiter between its check and its wait sees this
  evict_cv_.notify_one();
}

void Filesystem::became_evictable() {
  if (table_.size() <= evict_high_) return;
  // Past the mark with every inode open, the evictor pauses between rounds; a file just
  // closed can go now (its descriptor is what the next open may be waiting for).
  {
    std::lock_guard lock(evict_mu_);
    evict_idle_ = false;
  }
  evict_cv_.notify_one();
}

std::optional<std::vector<std::pair<uint64_t, std::string>>> Filesystem::await_eviction() {
  std::unique_lock lock(evict_mu_);
  // After a round that found nothing to evict (all open, or already asked and the
  // FORGETs not in yet), pause instead of spinning.
  if (evict_idle_) evict_cv_.wait_for(lock, std::chrono::milliseconds(100), [&] { return evict_stop_ || !evict_idle_; });
  evict_cv_.wait(lock, [&] { return evict_stop_ || table_.size() > evict_high_; });
  if (evict_stop_) return std::nullopt;
  lock.unlock();
  const size_t n = table_.size();
  auto names = table_.evictable(n > evict_low_ ? n - evict_low_ : 0);
  spdlog::debug("{} inodes hold fds (high-water mark {}): asking the kernel to forget {}", n, evict_high_,
                names.size());
  lock.lock();
  evict_idle_ = names.empty();
  return names;
}

bool Filesystem::eviction_stopped() const {
  std::lock_guard lock(evict_mu_);
  return evict_stop_;
}

void Filesystem::stop_eviction() {
  {
    std::lock_guard lock(evict_mu_);
    evict_stop_ = true;
  }
  evict_cv_.notify_all();
}

Status Filesystem::logged(Status s, const char* op, const CryptFile* file) const {
  if (s.ok()) return s;
  // Expected outcomes (ENOENT on lookup, EEXIST on create...) are not events; damage and
  // key failures are, one line each with the file and the errno.
  const Code c = s.code();
  if (c == Code::kCorrupt || c == Code::kUnsupported || c == Code::kUnavailable ||
      c == Code::kInternal || c == Code::kPermissionDenied ||
      (c == Code::kIo && s.sys_errno() == EIO)) {
    std::vector<LogField> fields = {{"ERRNO", std::to_string(to_errno(s))}};
    if (file != nullptr) fields.push_back({"KMSFS_FILE_ID", to_hex(file->id())});
    LogFields scope(std::move(fields));
    spdlog::error("{}: {} (errno {})", op, s.message(), to_errno(s));
  }
  return s;
}

Result<BackingName> Filesystem::backing_name(const Inode& dir, const char* name, bool creating) const {
  auto b = names_.to_backing(name, &dir == &table_.root());
  // A reserved name (the vault config) is not there for lookups, and not creatable.
  if (!b.ok() && !creating && b.status().code() == Code::kPermissionDenied)
    return Status(Code::kNotFound, "reserved name", ENOENT);
  return b;
}

void Filesystem::fix_attr(Inode& in, struct stat& st) {
  if (S_ISLNK(st.st_mode)) st.st_size = names_.link_size(st.st_size);
  if (!S_ISREG(st.st_mode)) return;
  std::shared_ptr<CryptFile> f;
  {
    std::lock_guard lock(in.mu);
    f = in.file;
  }
  // An open file knows its size exactly, also while a write is extending the backing file.
  st.st_size = static_cast<off_t>(f ? f->size() : layout_.plaintext_size(static_cast<uint64_t>(st.st_size)).plain_size);
}

Result<fuse_entry_param> Filesystem::entry_for(Inode& dir, const std::string& bname, std::string_view name) {
  RETURN_IF_ERROR(admit_fd("lookup"));
  UniqueFd fd(::openat(dir.fd()->get(), bname.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
  if (!fd.valid()) return errno_status("lookup");
  fuse_entry_param e{};
  if (::fstatat(fd.get(), "", &e.attr, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) != 0) return errno_status("lookup");
  Inode& in = table_.acquire(std::move(fd), e.attr, dir, name);
  after_acquire();
  fix_attr(in, e.attr);
  e.ino = table_.id_of(in);
  e.generation = generation_for(in);
  e.attr_timeout = opts_.attr_timeout;
  e.entry_timeout = opts_.entry_timeout;
  return e;
}

uint64_t Filesystem::generation_for(Inode& in) {
  // A lost write-back left the kernel's inode with a size the file does not have, and the
  // kernel keeps trusting it while it keeps the inode: the invalidations only drop the
  // dentry, and a lookup made while a RELEASE still pins the inode binds the name to it
  // again. A new generation makes the kernel replace that inode (fuse_iget: it marks the
  // old one bad), so once no handle is open (nothing left to fail on the old inode) the
  // next lookup shows our size.
  if (in.kernel_size_stale.load(std::memory_order_acquire)) {
    std::lock_guard lock(in.mu);
    if (in.open_count == 0 && in.kernel_size_stale.exchange(false)) in.generation.fetch_add(1);
  }
  return in.generation.load(std::memory_order_acquire);
}

Result<fuse_entry_param> Filesystem::lookup(uint64_t parent, const char* name) {
  Inode& dir = table_.get(parent);
  ASSIGN_OR_RETURN(BackingName b, backing_name(dir, name, false));
  return entry_for(dir, b.name, name);
}

Result<struct stat> Filesystem::getattr(uint64_t ino) {
  Inode& in = table_.get(ino);
  struct stat st {};
  if (::fstatat(in.fd()->get(), "", &st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) != 0) return errno_status("getattr");
  fix_attr(in, st);
  return st;
}

Result<struct stat> Filesystem::setattr(uint64_t ino, const struct stat& attr, int valid, FileHandle* fh) {
  Inode& in = table_.get(ino);
  const auto pin = in.fd();  // held while `fd` is used
  const int fd = pin->get();
  if (valid & FUSE_SET_ATTR_MODE) {
    if (in.type == S_IFLNK) return Status(Code::kIo, "chmod on a symlink", EOPNOTSUPP);
    if (::chmod(proc_path(fd).c_str(), attr.st_mode & 07777) != 0) return errno_status("chmod");
  }
  if (valid & (FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID)) {
    uid_t uid = (valid & FUSE_SET_ATTR_UID) ? attr.st_uid : static_cast<uid_t>(-1);
    gid_t gid = (valid & FUSE_SET_ATTR_GID) ? attr.st_gid : static_cast<gid_t>(-1);
    if (::fchownat(fd, "", uid, gid, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) != 0) return errno_status("chown");
  }
  if (valid & FUSE_SET_ATTR_SIZE) {
    if (in.type != S_IFREG) return Status(Code::kIo, "truncate", in.type == S_IFDIR ? EISDIR : EINVAL);
    // A new size: later writes are new data, gaps allowed again.
    in.write_error.store(0, std::memory_order_release);
    in.kernel_size_stale.store(false, std::memory_order_release);  // the kernel sets this size too
    in.kept_size.store(static_cast<uint64_t>(attr.st_size), std::memory_order_release);
    if (fh) fh->file->allow_gaps();
    if (fh) {
      RETURN_IF_ERROR(logged(fh->file->truncate(static_cast<uint64_t>(attr.st_size)), "truncate", fh->file.get()));
      if (attr.st_size == 0) follow_current_key(*fh->file);
    } else {
      ASSIGN_OR_RETURN(auto f, acquire_file(in, true));
      f->allow_gaps();
      Status s = f->truncate(static_cast<uint64_t>(attr.st_size));
      if (s.ok() && attr.st_size == 0) follow_current_key(*f);
      f.reset();
      release_file(in);
      RETURN_IF_ERROR(logged(s, "truncate"));
    }
  }
  if (valid & (FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME)) {
    struct timespec tv[2];
    tv[0].tv_sec = tv[1].tv_sec = 0;
    tv[0].tv_nsec = tv[1].tv_nsec = UTIME_OMIT;
    if (valid & FUSE_SET_ATTR_ATIME_NOW) tv[0].tv_nsec = UTIME_NOW;
    else if (valid & FUSE_SET_ATTR_ATIME) tv[0] = attr.st_atim;
    if (valid & FUSE_SET_ATTR_MTIME_NOW) tv[1].tv_nsec = UTIME_NOW;
    else if (valid & FUSE_SET_ATTR_MTIME) tv[1] = attr.st_mtim;
    // A symlink's own times: AT_EMPTY_PATH on its O_PATH fd (the /proc path would follow).
    int rc = in.type == S_IFLNK ? ::utimensat(fd, "", tv, AT_EMPTY_PATH)
                                : ::utimensat(AT_FDCWD, proc_path(fd).c_str(), tv, 0);
    if (rc != 0) return errno_status("utimens");
  }
  return getattr(ino);
}

bool Filesystem::kill_suidgid(uint64_t ino) {
  Inode& in = table_.get(ino);
  if (in.type != S_IFREG) return false;
  struct stat st;
  if (::fstatat(in.fd()->get(), "", &st, AT_EMPTY_PATH) != 0) return false;
  mode_t mode = st.st_mode & 07777;
  mode_t next = mode & ~mode_t{S_ISUID};
  if ((mode & (S_ISGID | S_IXGRP)) == (S_ISGID | S_IXGRP)) next &= ~mode_t{S_ISGID};
  if (next == mode) return false;
  if (::chmod(proc_path(in.fd()->get()).c_str(), next) != 0) {
    spdlog::error("clearing set-id bits of inode {}: {} (errno {})", st.st_ino, std::strerror(errno), errno);
    return false;
  }
  return true;
}

Result<std::string> Filesystem::readlink(uint64_t ino) {
  Inode& in = table_.get(ino);
  char buf[PATH_MAX + 1];
  ssize_t n = ::readlinkat(in.fd()->get(), "", buf, sizeof buf);
  if (n < 0) return errno_status("readlink");
  if (static_cast<size_t>(n) >= sizeof buf) return Status(Code::kIo, "readlink", ENAMETOOLONG);
  auto target = names_.link_to_plain(std::string_view(buf, static_cast<size_t>(n)));
  if (!target.ok()) return logged(target.status().with_context("symlink " + fd_path(in.fd()->get())), "readlink");
  return target;
}

Status Filesystem::own_new(int dirfd, const std::string& name, Caller c, mode_t mode) const {
  if (!as_root_) return Status::Ok();  // a user's daemon creates as that user already
  // The daemon's own ids are what the backing fs gave the entry already (and in a setgid
  // directory the inherited group is right): skip two syscalls on the create path.
  if (c.uid == ::geteuid() && c.gid == ::getegid() && !(mode & (S_ISUID | S_ISGID))) return Status::Ok();
  struct stat parent {};
  if (::fstat(dirfd, &parent) != 0) return errno_status("stat parent");
  // In a setgid directory the group is inherited (the backing fs already did that).
  gid_t gid = (parent.st_mode & S_ISGID) ? static_cast<gid_t>(-1) : c.gid;
  if (::fchownat(dirfd, name.c_str(), c.uid, gid, AT_SYMLINK_NOFOLLOW) != 0) return errno_status("chown new entry");
  // chown clears set-id bits on executables; put back what the caller asked for.
  if ((mode & (S_ISUID | S_ISGID)) && !S_ISLNK(mode) && !S_ISDIR(mode) &&
      ::fchmodat(dirfd, name.c_str(), mode & 07777, 0) != 0)
    return errno_status("chmod new entry");
  return Status::Ok();
}

Result<fuse_entry_param> Filesystem::mknod(uint64_t parent, const char* name, mode_t mode, dev_t rdev, Caller c) {
  if (S_ISREG(mode)) {  // a regular file must get a kmsfs header: same as create + release
    ASSIGN_OR_RETURN(Created cr, create(parent, name, mode, O_CREAT | O_EXCL | O_WRONLY, c));
    release(cr.handle);
    return cr.entry;
  }
  Inode& dir = table_.get(parent);
  ASSIGN_OR_RETURN(BackingName b, backing_name(dir, name, true));
  auto guard = names_.store().guard(b);
  RETURN_IF_ERROR(logged(names_.store().prepare(dir.fd()->get(), b), "mknod"));
  if (::mknodat(dir.fd()->get(), b.name.c_str(), mode, rdev) != 0) return errno_status("mknod");
  RETURN_IF_ERROR(own_new(dir.fd()->get(), b.name, c, mode));
  return entry_for(dir, b.name, name);
}

Result<fuse_entry_param> Filesystem::mkdir(uint64_t parent, const char* name, mode_t mode, Caller c) {
  Inode& dir = table_.get(parent);
  ASSIGN_OR_RETURN(BackingName b, backing_name(dir, name, true));
  auto guard = names_.store().guard(b);
  RETURN_IF_ERROR(logged(names_.store().prepare(dir.fd()->get(), b), "mkdir"));
  if (::mkdirat(dir.fd()->get(), b.name.c_str(), mode) != 0) return errno_status("mkdir");
  RETURN_IF_ERROR(own_new(dir.fd()->get(), b.name, c, S_IFDIR | mode));
  return entry_for(dir, b.name, name);
}

Result<fuse_entry_param> Filesystem::symlink(const char* target, uint64_t parent, const char* name, Caller c) {
  Inode& dir = table_.get(parent);
  ASSIGN_OR_RETURN(BackingName b, backing_name(dir, name, true));
  ASSIGN_OR_RETURN(std::string stored, names_.link_to_backing(target));
  auto guard = names_.store().guard(b);
  RETURN_IF_ERROR(logged(names_.store().prepare(dir.fd()->get(), b), "symlink"));
  if (::symlinkat(stored.c_str(), dir.fd()->get(), b.name.c_str()) != 0) return errno_status("symlink");
  RETURN_IF_ERROR(own_new(dir.fd()->get(), b.name, c, S_IFLNK | 0777));
  return entry_for(dir, b.name, name);
}

Result<fuse_entry_param> Filesystem::link(uint64_t ino, uint64_t newparent, const char* newname) {
  Inode& in = table_.get(ino);
  Inode& dir = table_.get(newparent);
  ASSIGN_OR_RETURN(BackingName b, backing_name(dir, newname, true));
  auto guard = names_.store().guard(b);
  RETURN_IF_ERROR(logged(names_.store().prepare(dir.fd()->get(), b), "link"));
  int rc = as_root_ ? ::linkat(in.fd()->get(), "", dir.fd()->get(), b.name.c_str(), AT_EMPTY_PATH)
                    : ::linkat(AT_FDCWD, proc_path(in.fd()->get()).c_str(), dir.fd()->get(), b.name.c_str(),
                               AT_SYMLINK_FOLLOW);
  if (rc != 0) return errno_status("link");
  return entry_for(dir, b.name, newname);
}

Status Filesystem::unlink(uint64_t parent, const char* name) {
  Inode& dir = table_.get(parent);
  ASSIGN_OR_RETURN(BackingName b, backing_name(dir, name, true));
  auto guard = names_.store().guard(b);
  if (::unlinkat(dir.fd()->get(), b.name.c_str(), 0) != 0) return errno_status("unlink");
  names_.store().forget(dir.fd()->get(), b);
  return Status::Ok();
}

Status Filesystem::rmdir(uint64_t parent, const char* name) {
  Inode& dir = table_.get(parent);
  ASSIGN_OR_RETURN(BackingName b, backing_name(dir, name, true));
  auto guard = names_.store().guard(b);
  if (::unlinkat(dir.fd()->get(), b.name.c_str(), AT_REMOVEDIR) != 0) return errno_status("rmdir");
  names_.store().forget(dir.fd()->get(), b);
  return Status::Ok();
}

Status Filesystem::rename(uint64_t parent, const char* name, uint64_t newparent, const char* newname,
                          unsigned int flags) {
  Inode& from = table_.get(parent);
  Inode& to = table_.get(newparent);
  ASSIGN_OR_RETURN(BackingName a, backing_name(from, name, true));
  ASSIGN_OR_RETURN(BackingName b, backing_name(to, newname, true));
  auto guard = names_.store().guard(a, &b);
  // With RENAME_EXCHANGE the source name ends up naming the other entry: it needs its
  // side file too (it has one already, unless something removed it).
  RETURN_IF_ERROR(logged(names_.store().prepare(to.fd()->get(), b), "rename"));
  if (flags & RENAME_EXCHANGE) RETURN_IF_ERROR(logged(names_.store().prepare(from.fd()->get(), a), "rename"));
  if (::renameat2(from.fd()->get(), a.name.c_str(), to.fd()->get(), b.name.c_str(), flags) != 0) return errno_status("rename");
  if (!(flags & RENAME_EXCHANGE)) names_.store().forget(from.fd()->get(), a);
  return Status::Ok();
}

Result<std::shared_ptr<CryptFile>> Filesystem::acquire_file(Inode& in, bool writable) {
  std::shared_ptr<const UniqueFd> fd;
  int access;
  {
    std::unique_lock lock(in.mu);
    // Concurrent first opens of this file cost one unwrap: the others wait for the first,
    // without holding in.mu, then share its CryptFile.
    in.opened_cv.wait(lock, [&] { return !in.opening; });
    if (in.file) {
      if (writable && !in.file_writable) return Status(Code::kIo, "backing file is read-only", EROFS);
      in.open_count++;
      return in.file;
    }
    in.opening = true;
    fd = in.fd();
    access = in.fd_access;
  }
  // The first open runs without in.mu: it may wait up to the KMS timeout for the unwrap,
  // and lookup, getattr and eviction take in.mu (a slow KMS must not stall `ls -l`). The
  // backing file is opened read-write whenever possible, so one CryptFile serves every
  // later handle; it is shared with the rotation worker through the vault's OpenFiles.
  struct OpeningDone {
    Inode& in;
    ~OpeningDone() {
      {
        std::lock_guard lock(in.mu);
        in.opening = false;
      }
      in.opened_cv.notify_all();
    }
  };
  OpeningDone done{in};  // whatever way this returns (the waiters wake once in.file is set)
  bool opened_here = false;
  auto f = vault_.open_files().get_or_open(in.dev, in.ino, [&]() -> Result<std::shared_ptr<CryptFile>> {
    opened_here = true;
    // The descriptor of an earlier open, kept by the inode (Inode::fd), needs no open(2);
    // a new one takes the O_PATH one's place once the file opens.
    if (access != O_RDWR) {
      UniqueFd rw_fd(::open(proc_path(fd->get()).c_str(), O_RDWR | O_CLOEXEC));
      const int err = errno;
      if (rw_fd.valid()) {
        fd = std::make_shared<const UniqueFd>(std::move(rw_fd));
        access = O_RDWR;
      } else if (writable || !(err == EROFS || err == EACCES || err == EPERM || err == ETXTBSY)) {
        errno = err;
        return errno_status("open backing file");
      } else if (access == O_PATH) {
        UniqueFd ro_fd(::open(proc_path(fd->get()).c_str(), O_RDONLY | O_CLOEXEC));
        if (!ro_fd.valid()) return errno_status("open backing file");
        fd = std::make_shared<const UniqueFd>(std::move(ro_fd));
        access = O_RDONLY;
      }
    }
    // The header read alone would start a 16 KiB readahead, and the first data read a
    // second disk request; asking for the header and the first 128 KiB of blocks together
    // makes a cold small file one request (docs/BENCHMARKS.md, md5sum cold).
    ::posix_fadvise(fd->get(), 0, kOpenPrefetch, POSIX_FADV_WILLNEED);
    auto backing = std::make_shared<PosixBackingFile>(fd, std::string(), backing_root_);
    ASSIGN_OR_RETURN(auto opened, vault_.open_file(backing));
    return std::shared_ptr<CryptFile>(std::move(opened));
  });
  if (!f.ok()) return logged(f.status(), "open");
  std::shared_ptr<CryptFile> track;
  {
    std::lock_guard lock(in.mu);
    // A create of this name may have finished meanwhile, with the same CryptFile
    // (OpenFiles hands out one per backing inode).
    if (!in.file) {
      if (opened_here && access != in.fd_access) in.set_fd(fd, access);  // the O_PATH one closes once unpinned
      in.file = std::move(*f);
      in.kept_size.store(in.file->size(), std::memory_order_release);
      // A CryptFile opened elsewhere (the rotation worker, a create) is read-write.
      in.file_writable = !opened_here || access == O_RDWR;
      track = in.file;
    }
    if (writable && !in.file_writable) return Status(Code::kIo, "backing file is read-only", EROFS);
    in.open_count++;
    if (!track) return in.file;
  }
  track_key(in, *track);
  return track;
}

void Filesystem::release_file(Inode& in) {
  std::shared_ptr<CryptFile> last;  // closed after the lock is dropped
  bool failed = false;
  {
    std::lock_guard lock(in.mu);
    if (in.open_count > 0 && --in.open_count == 0) {
      in.write_error.store(0, std::memory_order_release);  // the failed write-back is over
      failed = in.kernel_size_stale.load(std::memory_order_acquire);
      in.file->allow_gaps();  // the CryptFile may outlive this (OpenFiles, the rotation worker)
      untrack_key(in, *in.file);
      last = std::move(in.file);
    }
  }
  // Again now that no handle is left (Inode::kernel_size_stale).
  if (failed) queue_invalidation(in);
  if (last) became_evictable();
}

void Filesystem::track_key(Inode& in, const CryptFile& f) {
  if (!f.key_guard()) return;
  std::lock_guard lock(revoke_mu_);
  key_inodes_[f.key_guard()->key_id()][table_.id_of(in)] = f.key_guard();
}

void Filesystem::untrack_key(Inode& in, const CryptFile& f) {
  if (!f.key_guard()) return;
  std::lock_guard lock(revoke_mu_);
  auto it = key_inodes_.find(f.key_guard()->key_id());
  if (it == key_inodes_.end()) return;
  it->second.erase(table_.id_of(in));
  if (it->second.empty()) key_inodes_.erase(it);
}

void Filesystem::key_evicted(const std::array<uint8_t, 32>& key_id) {
  {
    std::lock_guard lock(revoke_mu_);
    auto it = key_inodes_.find(key_id);
    if (it == key_inodes_.end()) return;
    revoke_queue_.insert(revoke_queue_.end(), it->second.begin(), it->second.end());
  }
  revoke_cv_.notify_one();
}

std::optional<std::vector<Filesystem::Revocation>> Filesystem::await_revocations() {
  std::unique_lock lock(revoke_mu_);
  revoke_cv_.wait(lock, [&] { return revoke_stop_ || !revoke_queue_.empty(); });
  if (revoke_stop_) return std::nullopt;
  std::vector<Revocation> out;
  out.swap(revoke_queue_);
  return out;
}

void Filesystem::stop_revocations() {
  {
    std::lock_guard lock(revoke_mu_);
    revoke_stop_ = true;
  }
  revoke_cv_.notify_all();
}

void Filesystem::follow_current_key(CryptFile& f) {
  // Best effort: a file left under the old key is still readable and the rotation pass
  // moves it.
  Status s = vault_.follow_current_key(f);
  if (!s.ok()) spdlog::debug("lazy rotation of {}: {}", f.backing().name(), s.message());
}

Result<FileHandle*> Filesystem::open(uint64_t ino, int flags) {
  Inode& in = table_.get(ino);
  if (in.type != S_IFREG) return Status(Code::kIo, "open", in.type == S_IFDIR ? EISDIR : EINVAL);
  // O_TRUNC truncates whatever the access mode: Linux does it for O_RDONLY too (the
  // kernel checked write permission), and with atomic_o_trunc the kernel has already set
  // its size to 0, trusting this open to have truncated.
  const bool trunc = (flags & O_TRUNC) != 0;
  const bool writable = (flags & O_ACCMODE) != O_RDONLY || trunc;
  ASSIGN_OR_RETURN(auto f, acquire_file(in, writable));
  if (trunc) {
    in.write_error.store(0, std::memory_order_release);
    in.kernel_size_stale.store(false, std::memory_order_release);  // atomic_o_trunc: the kernel set 0
    in.kept_size.store(0, std::memory_order_release);
    f->allow_gaps();
    Status s = f->truncate(0);
    if (!s.ok()) {
      f.reset();
      release_file(in);
      return logged(s, "open(O_TRUNC)");
    }
    follow_current_key(*f);
  }
  auto* fh = new FileHandle{&in, std::move(f), (flags & O_APPEND) && !writeback_};
  return fh;
}

Result<Created> Filesystem::create(uint64_t parent, const char* name, mode_t mode, int flags, Caller c) {
  Inode& dir = table_.get(parent);
  ASSIGN_OR_RETURN(BackingName b, backing_name(dir, name, true));
  const std::string& bname = b.name;
  auto guard = names_.store().guard(b);
  RETURN_IF_ERROR(admit_fd("create"));
  RETURN_IF_ERROR(logged(names_.store().prepare(dir.fd()->get(), b), "create"));
  UniqueFd fd(::openat(dir.fd()->get(), bname.c_str(), O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, mode & 07777));
  if (!fd.valid()) {
    if (errno != EEXIST || (flags & O_EXCL)) return errno_status("create");
    // Lost a race with another creator: open the file that is there.
    ASSIGN_OR_RETURN(fuse_entry_param e, entry_for(dir, bname, name));
    auto fh = open(e.ino, flags);
    if (!fh.ok()) {
      table_.forget(e.ino, 1);
      return fh.status();
    }
    return Created{e, *fh};
  }
  auto fail = [&](Status s) {
    ::unlinkat(dir.fd()->get(), bname.c_str(), 0);
    return logged(s, "create");
  };
  if (Status s = own_new(dir.fd()->get(), bname, c, S_IFREG | mode); !s.ok()) return fail(s);
  // One descriptor for the new inode and its open file (Inode::fd).
  auto shared_fd = std::make_shared<const UniqueFd>(std::move(fd));
  fuse_entry_param e{};
  if (::fstat(shared_fd->get(), &e.attr) != 0) return fail(errno_status("create"));
  auto backing = std::make_shared<PosixBackingFile>(shared_fd, std::string(), backing_root_);
  // Registered as it is born, so the rotation worker never rewrites its header behind it.
  auto f = vault_.open_files().get_or_open(e.attr.st_dev, e.attr.st_ino, [&]() -> Result<std::shared_ptr<CryptFile>> {
    ASSIGN_OR_RETURN(auto made, vault_.create_file(backing));
    return std::shared_ptr<CryptFile>(std::move(made));
  });
  if (!f.ok()) return fail(f.status());
  Inode& in = table_.acquire(shared_fd, O_RDWR, e.attr, dir, name);
  after_acquire();
  std::shared_ptr<CryptFile> file = std::move(*f);
  {
    std::lock_guard lock(in.mu);
    // Known already (a lookup of the new name got there first): it holds an O_PATH.
    if (in.fd_access != O_RDWR) in.set_fd(std::move(shared_fd), O_RDWR);
    in.file = file;
    in.file_writable = true;
    in.kept_size.store(0, std::memory_order_release);
    in.open_count++;
    track_key(in, *file);
  }
  e.attr.st_size = 0;
  e.ino = table_.id_of(in);
  e.generation = in.generation.load(std::memory_order_acquire);
  e.attr_timeout = opts_.attr_timeout;
  e.entry_timeout = opts_.entry_timeout;
  return Created{e, new FileHandle{&in, std::move(file), (flags & O_APPEND) && !writeback_}};
}

Result<size_t> Filesystem::read(FileHandle* fh, MutableByteSpan out, off_t off) {
  auto n = fh->file->read(out, static_cast<uint64_t>(off));
  if (!n.ok()) return logged(n.status(), "read", fh->file.get());
  return n;
}

Result<size_t> Filesystem::write(FileHandle* fh, ByteSpan data, off_t off, bool writepage) {
  Inode& in = *fh->inode;
  CryptFile& f = *fh->file;
  uint64_t at = fh->append && !writepage ? f.size() : static_cast<uint64_t>(off);
  Status s = f.write(data, at);
  if (s.ok()) return data.size();
  // Without the writeback cache the application sees each error at its write(2) and
  // decides; with it, the error comes at fsync or close, long after the data was accepted.
  if (writeback_ && is_out_of_space(s)) {
    // The kernel writes pages back in no particular order and several at once: pages
    // after this one may have landed already (after holes where this one belonged).
    // Cut them off, down to what this session may not drop (Inode::kept_size), and refuse
    // later pages past the new end (a smaller one might fit, after a hole), so the file
    // holds a prefix of what was written. Until truncate or the last close.
    const uint64_t cut = std::max(at, in.kept_size.load(std::memory_order_acquire));
    if (Status c = f.refuse_gaps_and_shrink(cut, to_errno(s)); !c.ok())
      spdlog::warn("{}: cannot cut the file back to {} bytes after a failed write-back: {}", f.backing().name(), cut,
                   c.message());
    write_failed(in, f, s);
  } else {
    queue_invalidation(in);
  }
  return logged(s, "write", &f);
}

void Filesystem::write_failed(Inode& in, CryptFile& f, const Status& s) {
  const int e = to_errno(s);
  int none = 0;
  in.kernel_size_stale.store(true, std::memory_order_release);
  if (in.write_error.compare_exchange_strong(none, e))
    // The application learns of it at fsync or close only: say it here, once, as it happens.
    spdlog::warn("{}: a cached write could not be written back ({}); the file keeps the first {} bytes written",
                 f.backing().name(), std::strerror(e), f.size());
  queue_invalidation(in);
}

void Filesystem::queue_invalidation(Inode& in) {
  Invalidation inv;
  inv.ino = table_.id_of(in);
  if (auto entry = table_.entry_of(in)) {
    inv.parent = entry->first;
    inv.name = std::move(entry->second);
  }
  {
    std::lock_guard lock(inval_mu_);
    for (const auto& q : inval_queue_)
      if (q.ino == inv.ino) return;  // already queued (a write-back fails page run by page run)
    inval_queue_.push_back(std::move(inv));
  }
  inval_cv_.notify_one();
}

std::optional<std::vector<Filesystem::Invalidation>> Filesystem::await_invalidations() {
  std::unique_lock lock(inval_mu_);
  inval_cv_.wait(lock, [&] { return inval_stop_ || !inval_queue_.empty(); });
  if (inval_stop_) return std::nullopt;
  std::vector<Invalidation> out;
  out.swap(inval_queue_);
  return out;
}

void Filesystem::stop_invalidations() {
  {
    std::lock_guard lock(inval_mu_);
    inval_stop_ = true;
  }
  inval_cv_.notify_all();
}

Status Filesystem::fsync(FileHandle* fh, bool datasync) {
  // The size before the sync: what was written by then is durable now, and must not be cut
  // by a later lost write-back (Inode::kept_size). The kernel has written its dirty pages
  // back before sending FSYNC, and would have failed the fsync had one been lost.
  const uint64_t size = fh->file->size();
  RETURN_IF_ERROR(logged(fh->file->sync(datasync), "fsync", fh->file.get()));
  if (fh->inode->write_error.load(std::memory_order_acquire) == 0) {
    uint64_t kept = fh->inode->kept_size.load(std::memory_order_acquire);
    while (kept < size && !fh->inode->kept_size.compare_exchange_weak(kept, size)) {
    }
  }
  return Status::Ok();
}

Status Filesystem::fallocate(FileHandle* fh, int mode, off_t off, off_t len) {
  if (off < 0 || len <= 0) return Status(Code::kInvalidArgument, "fallocate", EINVAL);
  if (mode & ~FALLOC_FL_KEEP_SIZE) return Status(Code::kIo, "fallocate mode", EOPNOTSUPP);
  return logged(fh->file->allocate(static_cast<uint64_t>(off), static_cast<uint64_t>(len), mode & FALLOC_FL_KEEP_SIZE),
                "fallocate");
}

void Filesystem::release(FileHandle* fh) {
  Inode* in = fh->inode;
  fh->file.reset();
  delete fh;
  release_file(*in);
}

Result<DirHandle*> Filesystem::opendir(uint64_t ino) {
  Inode& in = table_.get(ino);
  RETURN_IF_ERROR(admit_fd("opendir"));
  int fd = ::openat(in.fd()->get(), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return errno_status("opendir");
  auto dh = std::make_unique<DirHandle>();
  dh->dp = ::fdopendir(fd);
  if (!dh->dp) {
    Status s = errno_status("opendir");
    ::close(fd);
    return s;
  }
  dir_handles_.fetch_add(1, std::memory_order_relaxed);
  return dh.release();
}

Result<size_t> Filesystem::readdir(fuse_req_t req, uint64_t ino, DirHandle* dh, char* buf, size_t size,
                                   off_t off, bool plus) {
  Inode& dir = table_.get(ino);
  const auto dir_fd = dir.fd();
  std::lock_guard lock(dh->mu);
  if (off != dh->offset) {
    ::seekdir(dh->dp, off);
    dh->entry = nullptr;
    dh->offset = off;
  }
  size_t used = 0;
  while (true) {
    if (!dh->entry) {
      errno = 0;
      dh->entry = ::readdir(dh->dp);
      if (!dh->entry) {
        if (errno != 0 && used == 0) return errno_status("readdir");
        break;
      }
    }
    const struct dirent* d = dh->entry;
    const off_t next = d->d_off;
    std::optional<std::string> plain = is_dot(d->d_name) ? std::optional<std::string>(d->d_name)
                                                          : names_.to_plain(dir_fd->get(), d->d_name, &dir == &table_.root());
    if (plain) {
      size_t entsize;
      if (plus) {
        fuse_entry_param e{};
        bool looked_up = false;
        if (is_dot(d->d_name)) {
          e.attr.st_ino = d->d_ino;
          e.attr.st_mode = static_cast<mode_t>(d->d_type) << 12;
        } else {
          auto r = entry_for(dir, d->d_name, *plain);
          if (!r.ok()) {
            // Any failure but "vanished meanwhile" (EMFILE, ENOMEM...) must not drop the
            // entry from the listing silently: stop before it, so the kernel asks again
            // from here, or gets the error if nothing was returned yet.
            if (to_errno(r.status()) != ENOENT) {
              if (used == 0) return logged(r.status(), "readdirplus");
              break;
            }
            // Vanished: skip it, as readdir would have a moment later.
            dh->entry = nullptr;
            dh->offset = next;
            continue;
          }
          e = *r;
          looked_up = true;
        }
        entsize = fuse_add_direntry_plus(req, buf + used, size - used, plain->c_str(), &e, next);
        if (entsize > size - used) {
          if (looked_up) table_.forget(e.ino, 1);
          break;
        }
      } else {
        struct stat st {};
        st.st_ino = d->d_ino;
        st.st_mode = static_cast<mode_t>(d->d_type) << 12;
        entsize = fuse_add_direntry(req, buf + used, size - used, plain->c_str(), &st, next);
        if (entsize > size - used) break;
      }
      used += entsize;
    }
    dh->entry = nullptr;
    dh->offset = next;
  }
  return used;
}

Status Filesystem::fsyncdir(DirHandle* dh, bool datasync) {
  int fd = ::dirfd(dh->dp);
  if ((datasync ? ::fdatasync(fd) : ::fsync(fd)) != 0) return errno_status("fsyncdir");
  return Status::Ok();
}

Result<struct statvfs> Filesystem::statfs() {
  struct statvfs sv {};
  if (::fstatvfs(table_.root().fd()->get(), &sv) != 0) return errno_status("statfs");
  if (names_.encrypted()) sv.f_namemax = kMaxPlainName;  // longer ones become hashed long names
  return sv;
}

namespace {
bool is_caps(const char* name) { return std::strcmp(name, "security.capability") == 0; }
}  // namespace

Status Filesystem::setxattr(uint64_t ino, const char* name, ByteSpan value, int flags) {
  Inode& in = table_.get(ino);
  if (is_caps(name)) in.known_no_caps = false;
  ASSIGN_OR_RETURN(std::string bname, names_.xattr_to_backing(name));
  Bytes sealed;
  if (bname != name) {
    ASSIGN_OR_RETURN(sealed, names_.store().cipher()->seal_xattr_value(bname, value));
    value = sealed;
  }
  if (::setxattr(proc_path(in.fd()->get()).c_str(), bname.c_str(), value.data(), value.size(), flags) != 0)
    return errno_status("setxattr");
  return Status::Ok();
}

Result<size_t> Filesystem::getxattr(uint64_t ino, const char* name, MutableByteSpan out) {
  Inode& in = table_.get(ino);
  const bool caps = is_caps(name);
  if (caps && in.known_no_caps) return Status(Code::kNotFound, "getxattr", ENODATA);
  ASSIGN_OR_RETURN(std::string bname, names_.xattr_to_backing(name));
  const auto pin = in.fd();  // held while `path` is used
  const std::string path = proc_path(pin->get());
  if (bname == name) {
    ssize_t n = ::getxattr(path.c_str(), name, out.data(), out.size());
    if (n < 0) {
      if (caps && errno == ENODATA) in.known_no_caps = true;
      return errno_status("getxattr");
    }
    return static_cast<size_t>(n);
  }
  // Encrypted value: read it whole.
  ASSIGN_OR_RETURN(std::string stored, read_sized(
                                           [&](char* buf, size_t size) {
                                             return ::getxattr(path.c_str(), bname.c_str(), buf, size);
                                           },
                                           "getxattr"));
  auto plain = names_.store().cipher()->open_xattr_value(bname, as_bytes(stored));
  if (!plain.ok()) return logged(plain.status().with_context("xattr of " + fd_path(pin->get())), "getxattr");
  if (out.empty()) return plain->size();
  if (out.size() < plain->size()) return Status(Code::kIo, "getxattr", ERANGE);
  std::copy(plain->begin(), plain->end(), out.begin());
  return plain->size();
}

Result<size_t> Filesystem::listxattr(uint64_t ino, MutableByteSpan out) {
  Inode& in = table_.get(ino);
  const auto pin = in.fd();  // held while `path` is used
  const std::string path = proc_path(pin->get());
  if (!names_.encrypted()) {
    ssize_t n = ::listxattr(path.c_str(), reinterpret_cast<char*>(out.data()), out.size());
    if (n < 0) return errno_status("listxattr");
    return static_cast<size_t>(n);
  }
  ASSIGN_OR_RETURN(std::string raw,
                   read_sized([&](char* buf, size_t size) { return ::listxattr(path.c_str(), buf, size); },
                              "listxattr"));
  std::string list;
  for (size_t i = 0; i < raw.size();) {
    size_t end = raw.find('\0', i);
    if (end == std::string::npos) end = raw.size();
    if (auto plain = names_.xattr_to_plain(std::string_view(raw).substr(i, end - i))) {
      list += *plain;
      list.push_back('\0');
    }
    i = end + 1;
  }
  if (out.empty()) return list.size();
  if (out.size() < list.size()) return Status(Code::kIo, "listxattr", ERANGE);
  std::copy(list.begin(), list.end(), out.begin());
  return list.size();
}

Status Filesystem::removexattr(uint64_t ino, const char* name) {
  Inode& in = table_.get(ino);
  if (is_caps(name)) in.known_no_caps = false;
  ASSIGN_OR_RETURN(std::string bname, names_.xattr_to_backing(name));
  if (::removexattr(proc_path(in.fd()->get()).c_str(), bname.c_str()) != 0) return errno_status("removexattr");
  return Status::Ok();
}

void Filesystem::sync_backing() { ::syncfs(table_.root().fd()->get()); }

}  // namespace kmsfs
