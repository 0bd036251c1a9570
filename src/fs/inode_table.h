// Inodes of the mount, keyed by the backing (dev, ino): every hard link of a file is one
// inode with one nodeid, and its open state (the CryptFile all handles share) lives here.
// The nodeid given to the kernel is the Inode's address (stable: inodes never move).
//
// Lock order: InodeTable::mu_ -> Inode::mu. Neither is held across a fuse_reply_* call.
#pragma once

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/types.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "base/unique_fd.h"
#include "format/crypt_file.h"

namespace kmsfs {

struct Inode {
  Inode(std::shared_ptr<const UniqueFd> f, int access, dev_t d, ino_t i, mode_t t)
      : dev(d), ino(i), type(t), fd_access(access), fd_(std::move(f)) {}

  // The descriptor every call on the backing object goes through; it pins the backing
  // inode, so its number cannot be reused while the kernel knows the node. O_PATH from
  // the lookup. A regular file's is replaced at its first open by the open backing file's
  // own descriptor (shared with its CryptFile, fd_access says how it was opened), and
  // that one stays until the kernel forgets the inode: an open file costs one
  // descriptor instead of two (an O_PATH and a read-write one), and opening it again
  // needs no open(2). Readers take no lock: the returned pin keeps the descriptor open
  // while they use its number, even if it is replaced meanwhile. Replaced under mu.
  std::shared_ptr<const UniqueFd> fd() const { return fd_.load(std::memory_order_acquire); }
  void set_fd(std::shared_ptr<const UniqueFd> f, int access) {
    fd_access = access;
    fd_.store(std::move(f), std::memory_order_release);
  }

  const dev_t dev;
  const ino_t ino;
  const mode_t type;  // S_IFMT bits

  uint64_t nlookup = 0;  // guarded by InodeTable::mu_
  // The parent directory (by backing identity: its nodeid may be gone and its address
  // reused by the time this is used) and the plaintext name of the kernel's latest
  // lookup of this inode: what to name when asking the kernel to forget it (fd
  // pressure, see evictable()). Name cleared once asked. Guarded by InodeTable::mu_.
  dev_t parent_dev = 0;
  ino_t parent_ino = 0;
  std::string name;

  // Open state of a regular file, shared by all its handles. Guarded by mu, which is
  // never held across I/O or a KMS call (lookup and getattr take it).
  std::mutex mu;
  // A first open is under way (Filesystem::acquire_file): other openers wait on
  // opened_cv, lookups and getattr do not.
  bool opening = false;
  std::condition_variable opened_cv;
  std::shared_ptr<CryptFile> file;
  bool file_writable = false;
  uint32_t open_count = 0;
  int fd_access = O_PATH;  // O_PATH, O_RDONLY or O_RDWR: what fd() was opened for

  // The kernel asks for security.capability before every write(2) (FUSE superblocks lack
  // SB_NOSEC with libfuse 3.14); once the backing file is known to have none, answer from
  // here. Only this daemon writes the backing store, and setxattr/removexattr reset it.
  std::atomic<bool> known_no_caps{false};

  // With the writeback cache: the errno of a write-back to this file that ran out of space
  // (0: none since it was opened or truncated): logged once, and the kernel's caches are
  // invalidated again at the last close (Filesystem::write). Cleared then and on truncate.
  std::atomic<int> write_error{0};
  // A write-back was lost, so the kernel's inode may still hold a size (and pages) the
  // file does not have. The kernel trusts its own size for as long as it keeps that inode,
  // and a lookup made while a handle or an in-flight RELEASE pins it binds the name to it
  // again, so every last close re-sends the invalidation until the kernel forgets the
  // inode (this Inode goes with it) or a truncate sets a size both agree on.
  std::atomic<bool> kernel_size_stale{false};
  // The generation in entry replies (fuse_entry_param). Raised once the stale inode is no
  // longer open: the kernel then replaces its inode with one that takes our size
  // (Filesystem::generation_for).
  std::atomic<uint64_t> generation{0};
  // With the writeback cache: the size below which a lost write-back drops nothing: the
  // file's size when it was opened (no handle open before), truncated, or last fsync'ed
  // with success. A write-back that runs out of space at offset x cuts the file to
  // max(x, this), so the file holds a prefix of what was written, never data after a hole
  // where lost data belonged (the kernel writes pages back in no particular order).
  std::atomic<uint64_t> kept_size{0};

 private:
  std::atomic<std::shared_ptr<const UniqueFd>> fd_;
};

class InodeTable {
 public:
  // Takes ownership of the root directory's O_PATH fd.
  explicit InodeTable(UniqueFd root_fd);

  Inode& root() { return *root_; }
  const Inode& root() const { return *root_; }
  // The inode for nodeid `id` (1 = root). The kernel never names a forgotten nodeid.
  Inode& get(uint64_t id);
  uint64_t id_of(const Inode& in) const;

  // Finds the inode of (st.st_dev, st.st_ino) or adopts `fd` (an O_PATH one, or an open
  // file's with `access` O_RDONLY or O_RDWR) as a new one, and counts one kernel lookup
  // reference, made as `name` in directory `parent`.
  Inode& acquire(std::shared_ptr<const UniqueFd> fd, int access, const struct stat& st, const Inode& parent,
                 std::string_view name);
  Inode& acquire(UniqueFd fd, const struct stat& st, const Inode& parent, std::string_view name) {
    return acquire(std::make_shared<const UniqueFd>(std::move(fd)), O_PATH, st, parent, name);
  }
  // Drops n lookup references; frees the inode at zero.
  void forget(uint64_t id, uint64_t n);
  size_t size() const;  // without the lock: every lookup checks the descriptor budget
  // Up to n (parent nodeid, name) pairs of inodes no file handle has open, for the
  // kernel to forget; each inode is offered once per lookup, and only while its parent
  // directory is still known.
  std::vector<std::pair<uint64_t, std::string>> evictable(size_t n);
  // The (parent nodeid, name) of the kernel's latest lookup of `in`, to name it in
  // FUSE_NOTIFY_INVAL_ENTRY; nullopt if that name was already offered for eviction or its
  // parent directory is no longer known.
  std::optional<std::pair<uint64_t, std::string>> entry_of(const Inode& in) const;

 private:
  struct Key {
    dev_t dev;
    ino_t ino;
    bool operator==(const Key&) const = default;
  };
  struct KeyHash {
    size_t operator()(const Key& k) const noexcept { return std::hash<uint64_t>()(k.ino * 1000003u ^ k.dev); }
  };

  uint64_t parent_id_locked(const Inode& in) const;  // 0 if unknown; caller holds mu_

  std::unique_ptr<Inode> root_;
  mutable std::mutex mu_;
  std::unordered_map<Key, std::unique_ptr<Inode>, KeyHash> inodes_;
  std::atomic<size_t> count_{0};  // inodes_.size(), written under mu_
};

}  // namespace kmsfs
