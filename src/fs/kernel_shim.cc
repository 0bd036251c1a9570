#include "fs/kernel_shim.h"

#include <linux/fuse.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "fs/fuse_api.h"

namespace kmsfs {

namespace {

// libfuse passes the session's userdata (the Filesystem); the shim is found through a
// process-wide pointer instead, as a daemon serves exactly one mount.
std::atomic<KernelShim*> g_shim{nullptr};

ssize_t shim_read(int fd, void* buf, size_t len, void*) {
  const ssize_t n = ::read(fd, buf, len);
  if (n > 0) {
    const int saved = errno;  // libfuse inspects errno only on failure, but be exact
    if (KernelShim* s = g_shim.load(std::memory_order_acquire)) s->on_request(static_cast<uint8_t*>(buf), size_t(n));
    errno = saved;
  }
  return n;
}

ssize_t shim_writev(int fd, struct iovec* iov, int count, void*) {
  if (KernelShim* s = g_shim.load(std::memory_order_acquire)) s->on_reply(iov, count);
  return ::writev(fd, iov, count);
}

template <typename T>
bool body(const uint8_t* buf, size_t len, T& out) {
  if (len < sizeof(fuse_in_header) + sizeof(T)) return false;
  std::memcpy(&out, buf + sizeof(fuse_in_header), sizeof(T));
  return true;
}

}  // namespace

bool KernelShim::install(fuse_session* se) {
  static const fuse_custom_io io = {shim_writev, shim_read, nullptr, nullptr};
  se_ = se;
  g_shim.store(this, std::memory_order_release);
  return fuse_session_custom_io(se, &io, fuse_session_fd(se)) == 0;
}

void KernelShim::on_request(const uint8_t* buf, size_t len) {
  fuse_in_header h;
  if (len < sizeof h) return;
  std::memcpy(&h, buf, sizeof h);
  switch (h.opcode) {
    case FUSE_INIT: {
      // Only the first 32 flag bits matter here; fuse_init_in grew later fields.
      if (len < sizeof h + 4 * sizeof(uint32_t)) return;
      uint32_t flags = 0;
      std::memcpy(&flags, buf + sizeof h + offsetof(fuse_init_in, flags), sizeof flags);
      if (flags & FUSE_HANDLE_KILLPRIV_V2) init_unique_.store(h.unique, std::memory_order_release);
      return;
    }
    case FUSE_WRITE: {
      fuse_write_in w;
      if (body(buf, len, w) && (w.write_flags & FUSE_WRITE_KILL_SUIDGID)) kill(h.nodeid);
      return;
    }
    case FUSE_SETATTR: {
      fuse_setattr_in a;
      if (body(buf, len, a) && (a.valid & FATTR_KILL_SUIDGID)) kill(h.nodeid);
      return;
    }
    case FUSE_OPEN: {
      fuse_open_in o;
      if (body(buf, len, o) && (o.open_flags & FUSE_OPEN_KILL_SUIDGID)) kill(h.nodeid);
      return;
    }
    default:
      return;
  }
}

void KernelShim::kill(uint64_t nodeid) {
  // Attributes only (offset < 0): takes no inode lock, so it cannot wait on the request
  // that is being received here.
  if (kill_(nodeid)) fuse_lowlevel_notify_inval_inode(se_, nodeid, -1, 0);
}

void KernelShim::on_reply(::iovec* iov, int count) {
  const uint64_t want = init_unique_.load(std::memory_order_acquire);
  if (want == 0 || count < 2 || iov[0].iov_len < sizeof(fuse_out_header)) return;
  const auto* oh = static_cast<const fuse_out_header*>(iov[0].iov_base);
  if (oh->unique != want || oh->error != 0) return;
  if (iov[1].iov_len < offsetof(fuse_init_out, flags) + sizeof(uint32_t)) return;
  auto* init = reinterpret_cast<uint8_t*>(iov[1].iov_base) + offsetof(fuse_init_out, flags);
  uint32_t flags = 0;
  std::memcpy(&flags, init, sizeof flags);
  flags |= FUSE_HANDLE_KILLPRIV_V2;
  std::memcpy(init, &flags, sizeof flags);
  init_unique_.store(0, std::memory_order_release);
  negotiated_.store(true, std::memory_order_relaxed);
}

}  // namespace kmsfs
