// BACKING/kmsfs.lock: held (flock, exclusive) by a mount for its whole life and by the
// offline commands that write (rotate --offline, fsck --repair), so those never run on
// a mounted vault and two daemons never serve one backing directory. The kernel drops
// the lock when its holder dies, so a crash leaves nothing to clean up. Read-only tools
// (cat, ls, inspect, fsck) take no lock.
#pragma once

#include <optional>
#include <string>

#include "base/status.h"
#include "base/unique_fd.h"

namespace kmsfs {

class VaultLock {
 public:
  // `holder` says who holds it ("mount at /mnt/x", "rotate --offline"); a refused caller
  // is told that, with the holder's pid. kAlreadyExists if the vault is in use.
  static Result<VaultLock> acquire(const std::string& dir, const std::string& holder);
  // Who holds the lock now ("kmsfs mount at /mnt/x (pid 12)"), or nullopt if nobody
  // does. Writes nothing, so a read-only check (fsck) can say that it runs beside a mount.
  // It holds a shared lock for an instant: a mount starting in that instant is refused.
  static Result<std::optional<std::string>> holder(const std::string& dir);

 private:
  explicit VaultLock(UniqueFd fd) : fd_(std::move(fd)) {}
  UniqueFd fd_;
};

}  // namespace kmsfs
