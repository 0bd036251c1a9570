#include "vault/vault_lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <string_view>

#include "vault/config.h"

namespace kmsfs {

namespace {

// The holder's text, written by acquire() below.
std::string holder_text(int fd) {
  char buf[512];
  ssize_t n = ::pread(fd, buf, sizeof buf - 1, 0);
  std::string who = n > 0 ? std::string(buf, static_cast<size_t>(n)) : "another kmsfs process";
  while (!who.empty() && (who.back() == '\n' || who.back() == '\0')) who.pop_back();
  return who;
}

}  // namespace

Result<VaultLock> VaultLock::acquire(const std::string& dir, const std::string& holder) {
  const std::string path = dir + "/" + kLockFileName;
  UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600));
  // Nobody writes a read-only backing store, so there is nothing to exclude.
  if (!fd.valid() && errno == EROFS) return VaultLock(UniqueFd());
  if (!fd.valid()) return Status::Io(errno, "vault lock " + path);
  if (::flock(fd.get(), LOCK_EX | LOCK_NB) != 0) {
    if (errno != EWOULDBLOCK) return Status::Io(errno, "vault lock " + path);
    return Status(Code::kAlreadyExists,
                  "vault " + dir + " is in use by " + holder_text(fd.get()) + " (" + kLockFileName + ")", EBUSY);
  }
  // Who holds it, for the message above; the lock, not this text, is what counts.
  const std::string text = holder + " (pid " + std::to_string(::getpid()) + ")\n";
  if (::ftruncate(fd.get(), 0) != 0 || ::pwrite(fd.get(), text.data(), text.size(), 0) < 0)
    return Status::Io(errno, "vault lock " + path);
  return VaultLock(std::move(fd));
}

Result<std::optional<std::string>> VaultLock::holder(const std::string& dir) {
  const std::string path = dir + "/" + kLockFileName;
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  if (!fd.valid() && errno == ENOENT) return std::optional<std::string>();
  if (!fd.valid()) return Status::Io(errno, "vault lock " + path);
  // A shared lock is refused exactly while someone holds the exclusive one; it is
  // dropped again with the descriptor.
  if (::flock(fd.get(), LOCK_SH | LOCK_NB) == 0) return std::optional<std::string>();
  if (errno != EWOULDBLOCK) return Status::Io(errno, "vault lock " + path);
  return std::optional<std::string>(holder_text(fd.get()));
}

}  // namespace kmsfs
