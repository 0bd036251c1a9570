// Raw-protocol shims under libfuse 3.14 (what Debian 12 ships), which cannot negotiate
// FUSE_HANDLE_KILLPRIV_V2 (libfuse 3.15+ can). Without it a FUSE superblock never gets
// SB_NOSEC, so the kernel asks the daemon for security.capability before *every*
// write(2) even with the writeback cache: one round trip per 512-byte write, which caps
// small writes at ~15 MB/s. With it the kernel asks once per inode and leaves killing
// suid/sgid on write, truncate and open(O_TRUNC) to the daemon, which the kernel then
// flags in the requests themselves (FUSE_WRITE_KILL_SUIDGID, FATTR_KILL_SUIDGID,
// FUSE_OPEN_KILL_SUIDGID).
//
// The shim sits in libfuse's custom-I/O hooks: it reads requests off /dev/fuse, honours
// those kill flags before libfuse dispatches the request (libfuse 3.14 drops them), and
// adds the flag to the INIT reply only if the kernel offered it.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>

struct iovec;

struct fuse_session;

namespace kmsfs {

class KernelShim {
 public:
  // Called with the nodeid whose suid (and, if group-executable, sgid) bit must go;
  // returns whether the mode changed (the kernel's cached mode is then invalidated: it
  // does not expect a write or an open to change the mode).
  using KillSuidGid = std::function<bool(uint64_t nodeid)>;
  explicit KernelShim(KillSuidGid kill) : kill_(std::move(kill)) {}

  // Installs the hooks on a mounted session (the same /dev/fuse fd libfuse opened).
  bool install(fuse_session* se);
  bool killpriv_v2() const { return negotiated_.load(std::memory_order_relaxed); }

  // Public for the C callbacks only.
  void on_request(const uint8_t* buf, size_t len);
  void on_reply(::iovec* iov, int count);

 private:
  void kill(uint64_t nodeid);
  KillSuidGid kill_;
  fuse_session* se_ = nullptr;
  std::atomic<uint64_t> init_unique_{0};  // the INIT request whose reply gets the flag
  std::atomic<bool> negotiated_{false};
};

}  // namespace kmsfs
