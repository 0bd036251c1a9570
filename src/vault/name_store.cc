#include "vault/name_store.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <functional>

#include "base/unique_fd.h"
#include "crypto/random.h"
#include "vault/config.h"

namespace kmsfs {

namespace {

constexpr size_t kMaxSideFile = 1024;  // a full encrypted name is < 400 bytes

// Reads a small file relative to dirfd; nullopt if it is missing or unreadable.
std::optional<std::string> read_small(int dirfd, const std::string& name) {
  UniqueFd fd(::openat(dirfd, name.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd.valid()) return std::nullopt;
  std::string buf(kMaxSideFile + 1, '\0');
  ssize_t n = ::pread(fd.get(), buf.data(), buf.size(), 0);
  if (n < 0 || static_cast<size_t>(n) > kMaxSideFile) return std::nullopt;
  buf.resize(static_cast<size_t>(n));
  return buf;
}

}  // namespace

Result<BackingName> NameStore::to_backing(std::string_view plain, bool in_root) const {
  if (!names_) {
    if (plain.size() > kMaxPlainName) return Status(Code::kInvalidArgument, "name too long", ENAMETOOLONG);
    if (in_root && is_vault_file_name(plain)) return Status(Code::kPermissionDenied, "reserved name", EPERM);
    return BackingName{std::string(plain), {}};
  }
  return names_->encrypt_name(plain);
}

Result<std::optional<std::string>> NameStore::to_plain(int dirfd, std::string_view backing, bool in_root) const {
  if (!names_) {
    if (in_root && is_vault_file_name(backing)) return std::optional<std::string>();
    return std::optional<std::string>(std::string(backing));
  }
  if (NameCipher::is_long_name(backing)) {
    const std::string name(backing);
    auto full = read_small(dirfd, name + std::string(kSideFileSuffix));
    if (!full) return Status(Code::kCorrupt, "long name without its side file");
    if (!names_->long_name_matches(backing, *full)) return Status(Code::kCorrupt, "long name side file does not match");
    ASSIGN_OR_RETURN(std::string plain, names_->decrypt_name(*full));
    return std::optional<std::string>(std::move(plain));
  }
  // Encrypted names never contain '.', so this prefix is the vault's own.
  if (backing.starts_with(kReservedPrefix)) return std::optional<std::string>();
  ASSIGN_OR_RETURN(std::string plain, names_->decrypt_name(backing));
  return std::optional<std::string>(std::move(plain));
}

Status NameStore::prepare(int dirfd, const BackingName& b) const {
  if (!b.is_long()) return Status::Ok();
  const std::string side = b.side_file();
  if (auto existing = read_small(dirfd, side); existing && *existing == b.full) return Status::Ok();
  uint8_t rnd[8];
  random_bytes(rnd);
  const std::string tmp = "kmsfs.tmp." + to_hex(rnd);
  UniqueFd fd(::openat(dirfd, tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
  if (!fd.valid()) return Status::Io(errno, "creating long-name side file");
  auto fail = [&](int e) {
    ::unlinkat(dirfd, tmp.c_str(), 0);
    return Status::Io(e, "writing long-name side file");
  };
  if (::write(fd.get(), b.full.data(), b.full.size()) != static_cast<ssize_t>(b.full.size())) return fail(errno ? errno : EIO);
  if (::fsync(fd.get()) != 0) return fail(errno);
  if (::renameat(dirfd, tmp.c_str(), dirfd, side.c_str()) != 0) return fail(errno);
  // The side file must be durable before the entry that needs it can be.
  UniqueFd dir(::openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dir.valid() || ::fsync(dir.get()) != 0) return Status::Io(errno, "syncing directory after long-name side file");
  return Status::Ok();
}

void NameStore::forget(int dirfd, const BackingName& b) const {
  if (!b.is_long()) return;
  // Still named (a rename onto another link of the same file leaves the source): keep.
  struct stat st;
  if (::fstatat(dirfd, b.name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) return;
  ::unlinkat(dirfd, b.side_file().c_str(), 0);
}

NameStore::Guard NameStore::guard(const BackingName& a, const BackingName* b) const {
  constexpr size_t kNone = SIZE_MAX;
  auto stripe = [&](const BackingName* n) {
    return n && n->is_long() ? std::hash<std::string>()(n->name) % stripes_.size() : kNone;
  };
  size_t i = stripe(&a), j = stripe(b);
  if (i == j) j = kNone;
  if (i == kNone) std::swap(i, j);
  if (j != kNone && j < i) std::swap(i, j);
  Guard g;
  if (i != kNone) g.first = std::unique_lock<std::mutex>(stripes_[i]);
  if (j != kNone) g.second = std::unique_lock<std::mutex>(stripes_[j]);
  return g;
}

}  // namespace kmsfs
