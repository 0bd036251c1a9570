// The libfuse low-level trampoline: unpack a request, call Filesystem, reply. Errors
// become errnos here and only here (to_errno). No lock is held while replying.
#include "fs/fuse_ops.h"

#include <sys/file.h>

#include <spdlog/spdlog.h>

#include <cerrno>
#include <exception>
#include <new>
#include <vector>

#include "fs/errno_map.h"
#include "fs/filesystem.h"
#include "fs/op_stats.h"
#include "keys/audit.h"

namespace kmsfs {

namespace {

Filesystem& fs_of(fuse_req_t req) { return *static_cast<Filesystem*>(fuse_req_userdata(req)); }
FileHandle* fh_of(fuse_file_info* fi) { return reinterpret_cast<FileHandle*>(static_cast<uintptr_t>(fi->fh)); }
DirHandle* dh_of(fuse_file_info* fi) { return reinterpret_cast<DirHandle*>(static_cast<uintptr_t>(fi->fh)); }

Caller caller_of(fuse_req_t req) {
  const fuse_ctx* ctx = fuse_req_ctx(req);
  return Caller{ctx->uid, ctx->gid};
}

// The errno this thread last replied, for the operation's metrics (op_stats.h): every
// operation replies on the thread that received it, before its handler returns.
thread_local int t_replied_errno = 0;

void reply_errno(fuse_req_t req, int err) {
  t_replied_errno = err;
  fuse_reply_err(req, err);
}
void reply_err(fuse_req_t req, const Status& s) { reply_errno(req, to_errno(s)); }

void reply_entry(fuse_req_t req, const Result<fuse_entry_param>& r) {
  if (!r.ok()) return reply_err(req, r.status());
  fuse_reply_entry(req, &r.value());
}

void op_init(void* userdata, fuse_conn_info* conn) {
  auto& fs = *static_cast<Filesystem*>(userdata);
  bool wb = fs.options().writeback_cache && (conn->capable & FUSE_CAP_WRITEBACK_CACHE);
  if (wb) conn->want |= FUSE_CAP_WRITEBACK_CACHE;
  fs.set_writeback(wb);
  if (conn->capable & FUSE_CAP_ATOMIC_O_TRUNC) conn->want |= FUSE_CAP_ATOMIC_O_TRUNC;
  if (conn->capable & FUSE_CAP_READDIRPLUS) conn->want |= FUSE_CAP_READDIRPLUS | FUSE_CAP_READDIRPLUS_AUTO;
  if (conn->capable & FUSE_CAP_PARALLEL_DIROPS) conn->want |= FUSE_CAP_PARALLEL_DIROPS;
  if (conn->capable & FUSE_CAP_ASYNC_READ) conn->want |= FUSE_CAP_ASYNC_READ;
  // Locks are left to the kernel (local-only semantics are exact for a local overlay).
  conn->want &= ~(FUSE_CAP_POSIX_LOCKS | FUSE_CAP_FLOCK_LOCKS);
  conn->max_write = 1u << 20;
  conn->max_readahead = 1u << 20;
  conn->time_gran = 1;
}

void op_destroy(void* userdata) { static_cast<Filesystem*>(userdata)->sync_backing(); }

void op_lookup(fuse_req_t req, fuse_ino_t parent, const char* name) {
  reply_entry(req, fs_of(req).lookup(parent, name));
}

void op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t n) {
  fs_of(req).forget(ino, n);
  fuse_reply_none(req);
}

void op_forget_multi(fuse_req_t req, size_t count, fuse_forget_data* forgets) {
  for (size_t i = 0; i < count; ++i) fs_of(req).forget(forgets[i].ino, forgets[i].nlookup);
  fuse_reply_none(req);
}

void op_getattr(fuse_req_t req, fuse_ino_t ino, fuse_file_info*) {
  auto r = fs_of(req).getattr(ino);
  if (!r.ok()) return reply_err(req, r.status());
  fuse_reply_attr(req, &r.value(), fs_of(req).options().attr_timeout);
}

void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat* attr, int valid, fuse_file_info* fi) {
  auto r = fs_of(req).setattr(ino, *attr, valid, fi ? fh_of(fi) : nullptr);
  if (!r.ok()) return reply_err(req, r.status());
  fuse_reply_attr(req, &r.value(), fs_of(req).options().attr_timeout);
}

void op_readlink(fuse_req_t req, fuse_ino_t ino) {
  auto r = fs_of(req).readlink(ino);
  if (!r.ok()) return reply_err(req, r.status());
  fuse_reply_readlink(req, r->c_str());
}

void op_mknod(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode, dev_t rdev) {
  reply_entry(req, fs_of(req).mknod(parent, name, mode, rdev, caller_of(req)));
}

void op_mkdir(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode) {
  reply_entry(req, fs_of(req).mkdir(parent, name, mode, caller_of(req)));
}

void op_symlink(fuse_req_t req, const char* link, fuse_ino_t parent, const char* name) {
  reply_entry(req, fs_of(req).symlink(link, parent, name, caller_of(req)));
}

void op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char* newname) {
  reply_entry(req, fs_of(req).link(ino, newparent, newname));
}

void op_unlink(fuse_req_t req, fuse_ino_t parent, const char* name) {
  reply_err(req, fs_of(req).unlink(parent, name));
}

void op_rmdir(fuse_req_t req, fuse_ino_t parent, const char* name) {
  reply_err(req, fs_of(req).rmdir(parent, name));
}

void op_rename(fuse_req_t req, fuse_ino_t parent, const char* name, fuse_ino_t newparent,
               const char* newname, unsigned int flags) {
  reply_err(req, fs_of(req).rename(parent, name, newparent, newname, flags));
}

void op_open(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  auto r = fs_of(req).open(ino, fi->flags);
  if (!r.ok()) return reply_err(req, r.status());
  fi->fh = reinterpret_cast<uintptr_t>(*r);
  // This daemon is the only writer of the backing files, so cached pages stay valid
  // across opens.
  fi->keep_cache = 1;
  if (fuse_reply_open(req, fi) == -ENOENT) fs_of(req).release(*r);  // interrupted
}

void op_create(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode, fuse_file_info* fi) {
  auto r = fs_of(req).create(parent, name, mode, fi->flags, caller_of(req));
  if (!r.ok()) return reply_err(req, r.status());
  fi->fh = reinterpret_cast<uintptr_t>(r->handle);
  fi->keep_cache = 1;
  if (fuse_reply_create(req, &r->entry, fi) == -ENOENT) {
    fs_of(req).release(r->handle);
    fs_of(req).forget(r->entry.ino, 1);
  }
}

void op_read(fuse_req_t req, fuse_ino_t, size_t size, off_t off, fuse_file_info* fi) {
  thread_local std::vector<uint8_t> buf;
  if (buf.size() < size) buf.resize(size);
  auto r = fs_of(req).read(fh_of(fi), MutableByteSpan(buf.data(), size), off);
  if (!r.ok()) return reply_err(req, r.status());
  fuse_reply_buf(req, reinterpret_cast<const char*>(buf.data()), *r);
}

void op_write(fuse_req_t req, fuse_ino_t, const char* data, size_t size, off_t off, fuse_file_info* fi) {
  auto r = fs_of(req).write(fh_of(fi), ByteSpan(reinterpret_cast<const uint8_t*>(data), size), off, fi->writepage != 0);
  if (!r.ok()) return reply_err(req, r.status());
  fuse_reply_write(req, *r);
}


void op_release(fuse_req_t req, fuse_ino_t, fuse_file_info* fi) {
  fs_of(req).release(fh_of(fi));
  reply_errno(req, 0);
}

void op_fsync(fuse_req_t req, fuse_ino_t, int datasync, fuse_file_info* fi) {
  reply_err(req, fs_of(req).fsync(fh_of(fi), datasync != 0));
}

void op_fallocate(fuse_req_t req, fuse_ino_t, int mode, off_t off, off_t len, fuse_file_info* fi) {
  reply_err(req, fs_of(req).fallocate(fh_of(fi), mode, off, len));
}

void op_opendir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  auto r = fs_of(req).opendir(ino);
  if (!r.ok()) return reply_err(req, r.status());
  fi->fh = reinterpret_cast<uintptr_t>(*r);
  if (fuse_reply_open(req, fi) == -ENOENT) fs_of(req).releasedir(*r);
}

void do_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi, bool plus) {
  std::vector<char> buf(size);
  auto r = fs_of(req).readdir(req, ino, dh_of(fi), buf.data(), size, off, plus);
  if (!r.ok()) return reply_err(req, r.status());
  fuse_reply_buf(req, buf.data(), *r);
}

void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi) {
  do_readdir(req, ino, size, off, fi, false);
}

void op_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi) {
  do_readdir(req, ino, size, off, fi, true);
}

void op_releasedir(fuse_req_t req, fuse_ino_t, fuse_file_info* fi) {
  fs_of(req).releasedir(dh_of(fi));
  reply_errno(req, 0);
}

void op_fsyncdir(fuse_req_t req, fuse_ino_t, int datasync, fuse_file_info* fi) {
  reply_err(req, fs_of(req).fsyncdir(dh_of(fi), datasync != 0));
}

void op_statfs(fuse_req_t req, fuse_ino_t) {
  auto r = fs_of(req).statfs();
  if (!r.ok()) return reply_err(req, r.status());
  fuse_reply_statfs(req, &r.value());
}

void op_setxattr(fuse_req_t req, fuse_ino_t ino, const char* name, const char* value, size_t size, int flags) {
  reply_err(req, fs_of(req).setxattr(ino, name, ByteSpan(reinterpret_cast<const uint8_t*>(value), size), flags));
}

void op_getxattr(fuse_req_t req, fuse_ino_t ino, const char* name, size_t size) {
  thread_local std::vector<uint8_t> buf;
  if (buf.size() < size) buf.resize(size);
  auto r = fs_of(req).getxattr(ino, name, MutableByteSpan(buf.data(), size));
  if (!r.ok()) return reply_err(req, r.status());
  if (size == 0) return (void)fuse_reply_xattr(req, *r);
  fuse_reply_buf(req, reinterpret_cast<const char*>(buf.data()), *r);
}

void op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size) {
  std::vector<uint8_t> buf(size);
  auto r = fs_of(req).listxattr(ino, buf);
  if (!r.ok()) return reply_err(req, r.status());
  if (size == 0) return (void)fuse_reply_xattr(req, *r);
  fuse_reply_buf(req, reinterpret_cast<const char*>(buf.data()), *r);
}

void op_removexattr(fuse_req_t req, fuse_ino_t ino, const char* name) {
  reply_err(req, fs_of(req).removexattr(ino, name));
}

// The exception barrier: nothing thrown below an operation (bad_alloc from locked memory,
// a library's exception on bytes read from the backing store) may unwind into libfuse,
// which would end the daemon and every file with it. The request is answered EIO (or,
// for forget, nothing) and logged; the mount keeps serving.
void log_escape(const char* what) noexcept {
  try {
    spdlog::error("internal error in a FUSE operation ({}); answered EIO, the mount goes on", what);
  } catch (...) {
  }
}

// The requester of the key operations this request causes, for the audit log
// (keys/audit.h): set for the request's time on the worker thread that serves it.
std::optional<Requester> requester_of(fuse_req_t req) {
  const fuse_ctx* ctx = fuse_req_ctx(req);
  if (ctx == nullptr) return std::nullopt;
  return Requester{ctx->uid, ctx->gid, ctx->pid};
}

// Counts and times the request, with the errno it was answered (op_stats.h).
struct OpTimer {
  FuseOp op;
  std::chrono::steady_clock::time_point start = std::chrono::steady_clock::now();
  explicit OpTimer(FuseOp o) : op(o) { t_replied_errno = 0; }
  ~OpTimer() { fuse_op_stats().record(op, t_replied_errno, std::chrono::steady_clock::now() - start); }
};

template <FuseOp K, auto Op>
struct Guarded;
template <FuseOp K, typename... Args, void (*Op)(fuse_req_t, Args...)>
struct Guarded<K, Op> {
  static void reply(fuse_req_t req, Args... args) noexcept {
    OpTimer timer(K);
    RequesterScope requester(requester_of(req));
    try {
      Op(req, args...);
      return;
    } catch (const std::bad_alloc&) {
      log_escape("out of memory");
    } catch (const std::exception& e) {
      log_escape(e.what());
    } catch (...) {
      log_escape("unknown exception");
    }
    reply_errno(req, EIO);
  }
  static void no_reply(fuse_req_t req, Args... args) noexcept {
    OpTimer timer(K);
    RequesterScope requester(requester_of(req));
    try {
      Op(req, args...);
      return;
    } catch (const std::bad_alloc&) {
      log_escape("out of memory");
    } catch (const std::exception& e) {
      log_escape(e.what());
    } catch (...) {
      log_escape("unknown exception");
    }
    fuse_reply_none(req);
  }
};

}  // namespace

fuse_lowlevel_ops make_fuse_ops() {
  fuse_lowlevel_ops ops{};
  ops.init = op_init;
  ops.destroy = op_destroy;
  ops.lookup = Guarded<FuseOp::kLookup, op_lookup>::reply;
  ops.forget = Guarded<FuseOp::kForget, op_forget>::no_reply;
  ops.forget_multi = Guarded<FuseOp::kForget, op_forget_multi>::no_reply;
  ops.getattr = Guarded<FuseOp::kGetattr, op_getattr>::reply;
  ops.setattr = Guarded<FuseOp::kSetattr, op_setattr>::reply;
  ops.readlink = Guarded<FuseOp::kReadlink, op_readlink>::reply;
  ops.mknod = Guarded<FuseOp::kMknod, op_mknod>::reply;
  ops.mkdir = Guarded<FuseOp::kMkdir, op_mkdir>::reply;
  ops.symlink = Guarded<FuseOp::kSymlink, op_symlink>::reply;
  ops.link = Guarded<FuseOp::kLink, op_link>::reply;
  ops.unlink = Guarded<FuseOp::kUnlink, op_unlink>::reply;
  ops.rmdir = Guarded<FuseOp::kRmdir, op_rmdir>::reply;
  ops.rename = Guarded<FuseOp::kRename, op_rename>::reply;
  ops.open = Guarded<FuseOp::kOpen, op_open>::reply;
  ops.create = Guarded<FuseOp::kCreate, op_create>::reply;
  ops.read = Guarded<FuseOp::kRead, op_read>::reply;
  ops.write = Guarded<FuseOp::kWrite, op_write>::reply;
  // No flush: with it unimplemented (ENOSYS once) the kernel stops sending FLUSH on every
  // close(2), a round trip that would do nothing here. Dirty pages are still written back
  // before close returns (fuse_flush does that itself), and locks are the kernel's.
  ops.release = Guarded<FuseOp::kRelease, op_release>::reply;
  ops.fsync = Guarded<FuseOp::kFsync, op_fsync>::reply;
  ops.fallocate = Guarded<FuseOp::kFallocate, op_fallocate>::reply;
  ops.opendir = Guarded<FuseOp::kOpendir, op_opendir>::reply;
  ops.readdir = Guarded<FuseOp::kReaddir, op_readdir>::reply;
  ops.readdirplus = Guarded<FuseOp::kReaddirplus, op_readdirplus>::reply;
  ops.releasedir = Guarded<FuseOp::kReleasedir, op_releasedir>::reply;
  ops.fsyncdir = Guarded<FuseOp::kFsyncdir, op_fsyncdir>::reply;
  ops.statfs = Guarded<FuseOp::kStatfs, op_statfs>::reply;
  ops.setxattr = Guarded<FuseOp::kSetxattr, op_setxattr>::reply;
  ops.getxattr = Guarded<FuseOp::kGetxattr, op_getxattr>::reply;
  ops.listxattr = Guarded<FuseOp::kListxattr, op_listxattr>::reply;
  ops.removexattr = Guarded<FuseOp::kRemovexattr, op_removexattr>::reply;
  return ops;
}

}  // namespace kmsfs
