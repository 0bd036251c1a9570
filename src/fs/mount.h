// Mounting and serving: a FUSE session over a Filesystem. The CLI decides about
// daemonizing; this only mounts (so mount errors surface before any fork) and serves.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "base/status.h"
#include "fs/filesystem.h"
#include "fs/kernel_shim.h"

struct fuse_session;

namespace kmsfs {

struct MountConfig {
  std::string backing;
  std::string mountpoint;
  FsOptions fs;
  std::vector<std::string> options;  // -o values: allow_other, default_permissions, ro, ...
  unsigned max_threads = 16;
  // The vault's key cache, if any: keys it drops are revoked from open files and from the
  // kernel's page cache (Filesystem::key_evicted). Must outlive the FuseMount.
  KeyCache* key_cache = nullptr;
};

class FuseMount {
 public:
  // Mounts `vault` at the mountpoint. A dead earlier mount there (daemon killed) is
  // lazily unmounted first, with a log line.
  static Result<std::unique_ptr<FuseMount>> mount(Vault& vault, const MountConfig& cfg);
  ~FuseMount();

  // Serves requests until the filesystem is unmounted or SIGINT/SIGTERM/SIGHUP arrives,
  // then unmounts. Returns an error only if the session loop failed.
  Status serve();
  const std::string& mountpoint() const { return mountpoint_; }

 private:
  FuseMount() = default;
  std::unique_ptr<Filesystem> fs_;
  std::unique_ptr<KernelShim> shim_;
  fuse_session* session_ = nullptr;
  bool mounted_ = false;
  std::string mountpoint_;
  unsigned max_threads_ = 16;
  KeyCache* key_cache_ = nullptr;
};

// Whether a path is a mountpoint whose FUSE daemon is gone (stat fails with ENOTCONN).
bool is_dead_mount(const std::string& path);
// Unmounts a kmsfs mount (the daemon then flushes and exits).
Status unmount(const std::string& mountpoint);

}  // namespace kmsfs
