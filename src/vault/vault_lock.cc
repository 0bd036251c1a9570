#include "vault/vault_lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <string_view>

#include "vault/config.h"

namespace kmsfs {

Result<VaultLock> VaultLock::acquire(const std::string& dir, const std::string& holder) {
  const std::string path = dir + "/" + kLockFileName;
  UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600));
  // Nobody writes a read-only backing store, so there is nothing to exclude.
  if (!fd.valid() && errno == EROFS) return VaultLock(UniqueFd());
  if (!fd.valid()) return Status::Io(errno, "vault lock " + path);
  if (::flock(fd.get(), LOCK_EX | LOCK_NB) != 0) {
    if (errno != EWOULDBLOCK) return Status::Io(errno, "vault lock " + path);
    char buf[512];
    ssize_t n = ::pread(fd.get(), buf, sizeof buf - 1, 0);
    std::string who = n > 0 ? std::string(buf, static_cast<size_t>(n)) : "another kmsfs process";
    while (!who.empty() && (who.back() == '\n' || who.back() == '\0')) who.pop_back();
    return Status(Code::kAlreadyExists, "vault " + dir + " is in use by " + who + " (" + kLockFileName + ")", EBUSY);
  }
  // Who holds it, for the message above; the lock, not this text, is what counts.
  const std::string text = holder + " (pid " + std::to_string(::getpid()) + ")\n";
  if (::ftruncate(fd.get(), 0) != 0 || ::pwrite(fd.get(), text.data(), text.size(), 0) < 0)
    return Status::Io(errno, "vault lock " + path);
  return VaultLock(std::move(fd));
}

}  // namespace kmsfs
