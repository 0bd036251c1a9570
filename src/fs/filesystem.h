// The filesystem operations of a kmsfs mount, over a vault's backing directory. Every
// method returns a Status/Result; fuse_ops.cc turns those into replies (errno in exactly
// one place, errno_map.cc) and never calls into here with a lock held.
//
// Each inode holds an fd to its backing object (O_PATH, or an open file's own: Inode::fd),
// so operations use *at() calls and renames of parents never invalidate anything. Regular
// files share one CryptFile per inode across all handles and hard links.
#pragma once

#include <dirent.h>
#include "fs/fuse_api.h"
#include <sys/statvfs.h>

#include <atomic>
#include <array>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/status.h"
#include "base/unique_fd.h"
#include "fs/inode_table.h"
#include "fs/name_transform.h"
#include "vault/vault.h"

namespace kmsfs {

struct FsOptions {
  double attr_timeout = 1.0;
  double entry_timeout = 1.0;
  bool writeback_cache = true;
  // -o badname=PATTERN (fnmatch): undecryptable backing names to show, not hide.
  std::vector<std::string> badname;
  // The open-file limit in force (FuseMount raises it first) and the part of it kept for
  // the daemon itself (fs/fd_limit.h); the rest is for inodes, one descriptor each.
  size_t fd_limit = 1024;
  size_t fd_reserve = 80;
};

// Who asked: new files and directories are owned by the caller, not by the daemon.
struct Caller {
  uid_t uid = 0;
  gid_t gid = 0;
};

struct FileHandle {
  Inode* inode = nullptr;
  std::shared_ptr<CryptFile> file;
  bool append = false;  // O_APPEND without the writeback cache: the kernel leaves the offset to us
};

struct DirHandle {
  ~DirHandle() {
    if (dp) ::closedir(dp);
  }
  std::mutex mu;
  DIR* dp = nullptr;
  off_t offset = 0;
  struct dirent* entry = nullptr;
};

struct Created {
  fuse_entry_param entry;
  FileHandle* handle;
};

class Filesystem {
 public:
  Filesystem(Vault& vault, UniqueFd root_fd, FsOptions opts);

  const FsOptions& options() const { return opts_; }
  void set_writeback(bool on) { writeback_ = on; }

  Result<fuse_entry_param> lookup(uint64_t parent, const char* name);
  void forget(uint64_t ino, uint64_t nlookup) { table_.forget(ino, nlookup); }
  Result<struct stat> getattr(uint64_t ino);
  Result<struct stat> setattr(uint64_t ino, const struct stat& attr, int valid, FileHandle* fh);
  Result<std::string> readlink(uint64_t ino);

  Result<fuse_entry_param> mknod(uint64_t parent, const char* name, mode_t mode, dev_t rdev, Caller c);
  Result<fuse_entry_param> mkdir(uint64_t parent, const char* name, mode_t mode, Caller c);
  Result<fuse_entry_param> symlink(const char* target, uint64_t parent, const char* name, Caller c);
  Result<fuse_entry_param> link(uint64_t ino, uint64_t newparent, const char* newname);
  Status unlink(uint64_t parent, const char* name);
  Status rmdir(uint64_t parent, const char* name);
  Status rename(uint64_t parent, const char* name, uint64_t newparent, const char* newname,
                unsigned int flags);

  Result<FileHandle*> open(uint64_t ino, int flags);
  Result<Created> create(uint64_t parent, const char* name, mode_t mode, int flags, Caller c);
  Result<size_t> read(FileHandle* fh, MutableByteSpan out, off_t off);
  // `writepage`: the kernel writing back cached pages (a shared mapping), which go to
  // their offset even through a handle opened O_APPEND.
  Result<size_t> write(FileHandle* fh, ByteSpan data, off_t off, bool writepage);
  Status fsync(FileHandle* fh, bool datasync);
  Status fallocate(FileHandle* fh, int mode, off_t off, off_t len);
  void release(FileHandle* fh);

  Result<DirHandle*> opendir(uint64_t ino);
  // Fills `buf` with entries from `off`; returns the bytes used.
  Result<size_t> readdir(fuse_req_t req, uint64_t ino, DirHandle* dh, char* buf, size_t size,
                         off_t off, bool plus);
  void releasedir(DirHandle* dh) {
    delete dh;
    dir_handles_.fetch_sub(1, std::memory_order_relaxed);
  }
  Status fsyncdir(DirHandle* dh, bool datasync);
  Result<struct statvfs> statfs();

  Status setxattr(uint64_t ino, const char* name, ByteSpan value, int flags);
  // size 0 asks for the needed size.
  Result<size_t> getxattr(uint64_t ino, const char* name, MutableByteSpan out);
  Result<size_t> listxattr(uint64_t ino, MutableByteSpan out);
  Status removexattr(uint64_t ino, const char* name);

  // Drops the suid bit (and sgid if group-executable), as the kernel asks once it leaves
  // that to the daemon (kernel_shim.h). Best effort: a failure is logged.
  // Returns whether the mode changed.
  bool kill_suidgid(uint64_t ino);

  // Flushes the backing filesystem (at unmount).
  void sync_backing();
  size_t inode_count() const { return table_.size(); }

  // Descriptor pressure. Every inode holds an fd, and only the kernel decides when to
  // forget inodes: it keeps them as long as its dentry cache does, which is bounded by
  // memory, not by our RLIMIT_NOFILE (creating or listing 100,000 files would otherwise
  // end in EMFILE). Past a high-water mark this returns (parent, name) pairs of inodes
  // no handle has open, for the kernel to drop; FuseMount sends them as
  // FUSE_NOTIFY_INVAL_ENTRY from a thread of its own (never from a request handler: the
  // kernel takes the parent's inode lock). Blocks until there is pressure (and 100 ms
  // after a round that found nothing to evict); nullopt once stopped.
  std::optional<std::vector<std::pair<uint64_t, std::string>>> await_eviction();
  void stop_eviction();
  bool eviction_stopped() const;

  // Key revocation. The key cache reports every key it drops (TTL, LRU, a refusal by the
  // KMS, flush-keys) to key_evicted(); the open files that use it are queued. FuseMount
  // takes them from await_revocations() on a thread of its own and sends
  // FUSE_NOTIFY_INVAL_INODE for each (the kernel first writes dirty pages back through
  // us, while the key still works, then drops its cached pages, so later reads reach the
  // daemon), then expires the file's key guard: its next access asks the cache again,
  // which a revoked key fails. Each item is (nodeid, the file's key guard); the guard may
  // outlive the file (then expiring it does nothing) and the nodeid may be forgotten by
  // then (then the kernel answers ENOENT). nullopt once stopped.
  using Revocation = std::pair<uint64_t, std::weak_ptr<KeyGuard>>;
  void key_evicted(const std::array<uint8_t, 32>& key_id);
  std::optional<std::vector<Revocation>> await_revocations();
  void stop_revocations();

  // Failed writes (ENOSPC above all; queued at the failure and, with the writeback cache,
  // again at each last close until the kernel forgets the inode: Inode::kernel_size_stale). With the writeback cache the application's write(2)
  // returned long before the daemon saw the data, and the kernel keeps the pages and a size
  // it set itself: it trusts its own size over ours for as long as it keeps the inode. So
  // the inode of a failed write is queued here, and FuseMount sends, from a thread of its
  // own, FUSE_NOTIFY_INVAL_INODE (drops the cached pages and attributes: reads reach us)
  // and FUSE_NOTIFY_INVAL_ENTRY for its name (drops the dentry: once the last user closes
  // the file the kernel forgets the inode, and the next lookup takes the size from us).
  // Never from the request handler: invalidating pages waits on writeback and may send
  // writes of its own, and an entry invalidation takes the parent's inode lock, either of
  // which the request being served may be holding up. The writer sees the error at fsync
  // or close (the kernel records it on the mapping). `parent` is 0 when the name is not
  // known (then only the inode is invalidated). nullopt once stopped.
  struct Invalidation {
    uint64_t ino = 0;
    uint64_t parent = 0;
    std::string name;
  };
  std::optional<std::vector<Invalidation>> await_invalidations();
  void stop_invalidations();

 private:
  // Records a failed write to `in` and queues its invalidation (see await_invalidations).
  void write_failed(Inode& in, CryptFile& f, const Status& s);
  void queue_invalidation(Inode& in);  // called with no lock held
  // The generation for an entry reply of `in` (Inode::generation). Takes in.mu.
  uint64_t generation_for(Inode& in);
  // Lazy rotation on truncate to zero (Vault::follow_current_key).
  void follow_current_key(CryptFile& f);
  // `name` is the plaintext name the kernel knows the entry by (for eviction).
  Result<fuse_entry_param> entry_for(Inode& dir, const std::string& backing_name, std::string_view name);
  // Refuses (EMFILE, counted as a shortage) what would hold one more descriptor once
  // inodes and directory handles hold all but the daemon's reserve (fs/fd_limit.h).
  Status admit_fd(const char* what) const;
  // Wakes await_eviction() past the high-water mark.
  void after_acquire();
  // The same after a last close, cutting short the pause after a round that found nothing.
  void became_evictable();
  Result<BackingName> backing_name(const Inode& dir, const char* name, bool creating) const;
  Status own_new(int dirfd, const std::string& name, Caller c, mode_t mode) const;
  void fix_attr(Inode& in, struct stat& st);
  // The inode's shared CryptFile, opened on first use (one DEK unwrap per open file).
  Result<std::shared_ptr<CryptFile>> acquire_file(Inode& in, bool writable);
  void release_file(Inode& in);
  // Which open inodes use which cached key (for key_evicted). Called by the first open
  // (or create) of a file, while its handle keeps the open count above zero.
  void track_key(Inode& in, const CryptFile& f);
  void untrack_key(Inode& in, const CryptFile& f);
  // Logs an error that is an event (damage, a key failure), with ERRNO and, when the
  // file is known, KMSFS_FILE_ID as journal fields; returns `s`.
  Status logged(Status s, const char* op, const CryptFile* file = nullptr) const;

  Vault& vault_;
  FsOptions opts_;
  // The backing directory's resolved path: log lines name files relative to it.
  const std::string backing_root_;
  InodeTable table_;
  NameTransform names_;
  Layout layout_;
  bool writeback_ = true;
  const bool as_root_;

  size_t fd_budget_ = 0;                   // descriptors inodes and directory handles may hold
  std::atomic<size_t> dir_handles_{0};     // open DirHandles
  size_t evict_high_ = 0, evict_low_ = 0;  // inode counts, from FsOptions::fd_limit
  mutable std::mutex evict_mu_;
  std::condition_variable evict_cv_;
  bool evict_stop_ = false;  // guarded by evict_mu_
  bool evict_idle_ = false;  // the last round found nothing (until a file closes); guarded by evict_mu_

  std::mutex revoke_mu_;  // taken after an Inode::mu, never before
  std::condition_variable revoke_cv_;
  // key id -> nodeid -> that open file's guard
  std::map<std::array<uint8_t, 32>, std::map<uint64_t, std::weak_ptr<KeyGuard>>> key_inodes_;  // revoke_mu_
  std::vector<Revocation> revoke_queue_;  // guarded by revoke_mu_
  bool revoke_stop_ = false;                                          // guarded by revoke_mu_

  std::mutex inval_mu_;  // taken with no other lock held
  std::condition_variable inval_cv_;
  std::vector<Invalidation> inval_queue_;  // guarded by inval_mu_; one entry per nodeid
  bool inval_stop_ = false;                // guarded by inval_mu_
};

}  // namespace kmsfs
