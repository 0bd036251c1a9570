// The seam between the format engine and the OS: positional I/O on one backing file.
// PosixBackingFile is the real one; tests use MemoryBackingFile (and wrap either to inject
// faults) so the engine is exercised without a filesystem.
#pragma once

#include <sys/types.h>
#include <time.h>

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "base/bytes.h"
#include "base/status.h"
#include "base/unique_fd.h"

namespace kmsfs {

class BackingFile {
 public:
  virtual ~BackingFile() = default;
  // Reads up to buf.size() bytes; fewer only at end of file.
  virtual Result<size_t> read_at(MutableByteSpan buf, uint64_t off) = 0;
  // Writes everything or fails.
  virtual Status write_at(ByteSpan data, uint64_t off) = 0;
  virtual Result<uint64_t> size() = 0;
  virtual Status truncate(uint64_t size) = 0;
  virtual Status sync(bool data_only) = 0;
  // Reserves space for [off, off+len) without changing the size, so a later write there
  // cannot fail half-way with ENOSPC and tear a block. kUnsupported where the backing
  // filesystem cannot (callers treat that as "nothing reserved").
  virtual Status reserve(uint64_t off, uint64_t len) = 0;
  // The content modification time, so a header-only rewrite (a re-wrap) can put it back:
  // rotation must not look like a change to make, rsync or backup tools.
  virtual Result<timespec> mtime() = 0;
  virtual Status set_mtime(const timespec& t) = 0;
  // The backing path, for log lines and error messages.
  // For messages only; may cost a syscall.
  virtual std::string name() const = 0;
};

class PosixBackingFile final : public BackingFile {
 public:
  // Opens with O_CLOEXEC added. Never O_APPEND: pwrite ignores offsets under it.
  static Result<std::unique_ptr<PosixBackingFile>> open(const std::string& path, int flags,
                                                        mode_t mode = 0600);
  // Opens `rel` (one name, or a relative path of any length) beneath the directory
  // `dirfd`, following no symlink (base/path_safety.h open_beneath); never creates.
  // `name` is what messages call it. A backing path can be far longer than PATH_MAX, so
  // tree walks open files this way, relative to the directory they hold.
  static Result<std::unique_ptr<PosixBackingFile>> open_at(int dirfd, const std::string& rel, int flags,
                                                           std::string name);
  // An empty name means "ask /proc when a message needs it": the current path of the
  // open file (so also right after a rename), at no cost on the create path.
  PosixBackingFile(UniqueFd fd, std::string name)
      : fd_(std::make_shared<const UniqueFd>(std::move(fd))), name_(std::move(name)) {}
  // A descriptor owned with others: the mount's inode keeps using the open file's
  // descriptor for its own calls (fs/inode_table.h), so an open file costs one. With an
  // empty name and `relative_to` (the vault's directory, resolved), messages name the
  // file by its current path relative to it, as fsck does.
  PosixBackingFile(std::shared_ptr<const UniqueFd> fd, std::string name, std::string relative_to = "")
      : fd_(std::move(fd)), name_(std::move(name)), relative_to_(std::move(relative_to)) {}

  Result<size_t> read_at(MutableByteSpan buf, uint64_t off) override;
  Status write_at(ByteSpan data, uint64_t off) override;
  Result<uint64_t> size() override;
  Status truncate(uint64_t size) override;
  Status sync(bool data_only) override;
  Status reserve(uint64_t off, uint64_t len) override;
  Result<timespec> mtime() override;
  Status set_mtime(const timespec& t) override;
  std::string name() const override;
  int fd() const { return fd_->get(); }
  const std::shared_ptr<const UniqueFd>& shared_fd() const { return fd_; }

 private:
  std::shared_ptr<const UniqueFd> fd_;
  std::string name_;
  std::string relative_to_;
};

// Sparse in-memory file (64 KiB chunks; absent chunks read as zeros), so tests can use
// offsets past 4 GiB without allocating them.
class MemoryBackingFile final : public BackingFile {
 public:
  explicit MemoryBackingFile(std::string name = "<memory>") : name_(std::move(name)) {}
  Result<size_t> read_at(MutableByteSpan buf, uint64_t off) override;
  Status write_at(ByteSpan data, uint64_t off) override;
  Result<uint64_t> size() override;
  Status truncate(uint64_t size) override;
  Status sync(bool) override { return Status::Ok(); }
  Status reserve(uint64_t, uint64_t) override { return Status::Ok(); }
  Result<timespec> mtime() override { return mtime_; }
  Status set_mtime(const timespec& t) override {
    mtime_ = t;
    return Status::Ok();
  }
  std::string name() const override { return name_; }

  // Test helpers that bypass the engine, to tamper with the stored bytes.
  Bytes peek(uint64_t off, size_t len);
  void poke(uint64_t off, ByteSpan data) { (void)write_at(data, off); }
  size_t chunks() const { return chunks_.size(); }

 private:
  static constexpr uint64_t kChunk = 64 * 1024;
  std::mutex mu_;
  std::map<uint64_t, Bytes> chunks_;
  timespec mtime_{};
  uint64_t size_ = 0;
  std::string name_;
};

}  // namespace kmsfs
