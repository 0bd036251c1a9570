// The encrypted-file engine: pread/pwrite/truncate semantics on plaintext offsets over a
// backing file holding header + sealed blocks. Used by the FUSE layer, the offline tools
// and rotation alike, so there is one implementation of the format's write rules.
//
// Concurrency: reads and non-extending writes of different blocks run in parallel (a
// shared size lock plus striped per-block locks, taken in ascending stripe order);
// anything that changes the size takes the size lock exclusively. Lock order:
// size_mu_ -> block stripes -> header_mu_. No lock is held across anything but backing
// I/O on this file.
#pragma once

#include <array>
#include <atomic>
#include <memory>
#include <mutex>
#include <shared_mutex>

#include "base/bytes.h"
#include "base/status.h"
#include "format/backing_file.h"
#include "format/file_keys.h"
#include "format/file_state.h"
#include "format/header.h"
#include "format/key_guard.h"
#include "format/layout.h"
#include "format/reencrypt_journal.h"
#include "format/slot_rewrap.h"

namespace kmsfs {

class CryptFile {
 public:
  struct Options {
    // A gap opened by a write past EOF or a truncate up is sealed as zero blocks when it is
    // at most this many bytes (cheap, and keeps the file fully authenticated); larger gaps
    // become authenticated sparse ranges in the header.
    uint64_t sealed_gap_limit = 1 << 20;
  };

  // Writes a new file: header (both slots from header.slots[0]) and the empty final block.
  static Result<std::unique_ptr<CryptFile>> create(std::shared_ptr<BackingFile> backing,
                                                   FileHeader header,
                                                   std::shared_ptr<const FileKeys> keys,
                                                   Options opts);
  // Opens an existing file whose header was parsed and whose DEK was unwrapped by the
  // caller: verifies the header MAC and the file state before any content is returned.
  // A file in the middle of a re-encryption (the active slot has a re-encryption record)
  // needs the keys of that record's DEK as `next`.
  static Result<std::unique_ptr<CryptFile>> open(std::shared_ptr<BackingFile> backing,
                                                 FileHeader header,
                                                 std::shared_ptr<const FileKeys> keys,
                                                 Options opts,
                                                 std::shared_ptr<const FileKeys> next = nullptr);

  // Reads up to out.size() bytes at off; short only at end of file. A damaged block fails
  // the whole read with kCorrupt naming the backing file, file id and block.
  Result<size_t> read(MutableByteSpan out, uint64_t off);
  Status write(ByteSpan data, uint64_t off);
  Status truncate(uint64_t new_size);
  // The mount's rule after a write-back ran out of space (fs/filesystem.cc): from now on a
  // write that starts past the end fails with errno `err` and writes nothing (it would
  // leave a hole where lost data belonged), and the file is cut to new_size if longer
  // (lower where new_size falls in a hole: below the hole's first block).
  // Atomic against writes and other size changes: concurrent callers end at the smallest
  // size, and no write that leaves a gap lands after the cut. Until allow_gaps().
  Status refuse_gaps_and_shrink(uint64_t new_size, int err);
  void allow_gaps() { gap_errno_.store(0, std::memory_order_release); }
  // fallocate(2) modes 0 and FALLOC_FL_KEEP_SIZE: reserves backing space for the
  // plaintext range (growing the file first unless keep_size), so later writes there
  // cannot fail with ENOSPC.
  Status allocate(uint64_t off, uint64_t len, bool keep_size);
  Status sync(bool data_only);
  // Rotation's re-wrap (FORMAT.md §3.7): if the active slot still holds `from`, writes
  // `to` into both slots (write_wrap); kUnavailable if the wrap changed meanwhile.
  // Writers wait meanwhile, so none moves the mtime write_wrap puts back.
  Status rewrap(const SlotWrap& from, const SlotWrap& to);

  // Online re-encryption (FORMAT.md §3.9). begin_reencrypt records a fresh DEK (`wrapped`
  // as the slot's re-encryption record stores it, `next` its keys) with watermark 0; Ok
  // and nothing else if one is already under way. Each reencrypt_step re-seals up to
  // `max_blocks` blocks from the watermark on under the new DEK (old ciphertext journaled
  // first) and commits the new watermark; once the watermark has passed the last block it
  // makes the new DEK the file's only one. Readers and writers keep going meanwhile: each
  // block is sealed under the key its side of the watermark says.
  Status begin_reencrypt(Bytes wrapped, std::shared_ptr<const FileKeys> next, const ReencryptRunId& run);
  struct ReencryptProgress {
    uint64_t blocks = 0;    // re-sealed by this step
    uint64_t bytes = 0;     // ciphertext bytes rewritten
    bool finished = false;  // the file is under the new DEK alone
  };
  Result<ReencryptProgress> reencrypt_step(ReencryptJournal& journal, const std::string& path_hint,
                                           uint64_t max_blocks);
  bool reencrypting() const;

  // Every later read, write, truncate and allocate first asks `guard` (set once,
  // right after create/open, before the file is shared).
  void set_key_guard(std::shared_ptr<KeyGuard> guard) { guard_ = std::move(guard); }
  const std::shared_ptr<KeyGuard>& key_guard() const { return guard_; }

  uint64_t size() const;
  const FileId& id() const { return file_id_; }
  const Layout& layout() const { return layout_; }
  BackingFile& backing() { return *backing_; }
  // A copy of the current header (for inspect and rotation).
  FileHeader header() const;
  SparseMap sparse() const;

 private:
  CryptFile(std::shared_ptr<BackingFile> backing, FileHeader header,
            std::shared_ptr<const FileKeys> keys, Options opts);

  class StripeLock;
  static constexpr size_t kStripes = 64;

  // Decrypts block i of a file of plaintext size p into out (size plain_len(p, i)).
  Status load_block(uint64_t i, uint64_t p, MutableByteSpan out);
  // Re-seals blocks [first, last] for a file growing/shrinking from p_old to p_new: each
  // block's content is the old content (zeros past p_old) with `data` laid over it at
  // data_off. One backing write. A write that may allocate backing space (it grows the
  // file or lands in a sparse range) reserves that space first and, if the write still
  // fails, puts back the old ciphertext of the blocks it covered and the old end of the
  // file (FORMAT.md §5.5.1): a failure leaves the file as it was, never a torn block.
  Status rewrite(uint64_t p_old, uint64_t p_new, uint64_t first, uint64_t last,
                 uint64_t data_off, ByteSpan data);
  // Reserves backing space for [off, off+len) (ciphertext offsets) before an allocating
  // write. Ok where the backing filesystem cannot reserve (the write then runs unreserved
  // and is undone if it fails). On failure, if `grows`, cuts the backing file back to the
  // ciphertext size of p_old: a failed fallocate may keep the blocks it got past EOF, and
  // only a truncate gives them back.
  Status reserve_for_write(uint64_t off, uint64_t len, uint64_t p_old, bool grows);
  // Grows the file from p_old to p_new, writing `data` at data_off (may be empty).
  Status extend(uint64_t p_old, uint64_t p_new, uint64_t data_off, ByteSpan data);
  Status persist_sparse(const SparseMap& next);
  Status truncate_locked(uint64_t new_size);  // caller holds size_mu_ exclusively
  // Authenticates the last block once, so a file cut back to its header (or to an empty
  // final block taken from elsewhere) fails at EOF instead of reading as empty.
  Status verify_tail(uint64_t p);
  Status corrupt_block(uint64_t i, const Status& why) const;
  // A backing read of blocks [first, last] that failed (an I/O error of the disk, say),
  // named like a damaged block: the file, its id and the blocks, code and errno kept.
  Status read_failed(uint64_t first, uint64_t last, const Status& why) const;
  // The keys block i is sealed under: during a re-encryption, the new DEK's below the
  // watermark. Callers hold the size lock (keys change only under it exclusively).
  const FileKeys& keys_for(uint64_t i) const {
    return next_keys_ && i < watermark_.load(std::memory_order_acquire) ? *next_keys_ : *keys_;
  }
  // open_block under keys_for(i), then under the file's other key: the watermark is not
  // authenticated (FORMAT.md §3.9), and a block under either DEK of this file is authentic.
  Status open_sealed(uint64_t i, bool last, ByteSpan ct, MutableByteSpan out) const;
  // Writes `slot` over the inactive slot (seq above both) and makes it durable if `sync`.
  Status write_slot_locked(HeaderSlot slot, bool sync);  // caller holds header_mu_
  Status finish_reencrypt_locked();                        // caller holds size_mu_ exclusively
  Status check_key() const { return guard_ ? guard_->check() : Status::Ok(); }

  std::shared_ptr<BackingFile> backing_;
  std::shared_ptr<const FileKeys> keys_;       // changed only under size_mu_ exclusive
  std::shared_ptr<const FileKeys> next_keys_;  // during a re-encryption; same rule
  // Blocks below it are under next_keys_. Moves only under size_mu_ shared + the exclusive
  // stripes of the blocks it passes, so readers of other blocks may load it any time.
  std::atomic<uint64_t> watermark_{0};
  std::shared_ptr<KeyGuard> guard_;
  const Options opts_;
  const FileId file_id_;
  const Layout layout_;

  mutable std::shared_mutex size_mu_;
  uint64_t size_ = 0;  // guarded by size_mu_
  bool well_formed_ = true;          // guarded by size_mu_
  std::atomic<bool> tail_verified_{false};
  std::atomic<int> gap_errno_{0};  // set under size_mu_ exclusive; see refuse_gaps_and_shrink
  std::array<std::shared_mutex, kStripes> stripes_;

  mutable std::mutex header_mu_;
  FileHeader header_;   // guarded by header_mu_
  SparseMap sparse_;    // written under size_mu_ exclusive + header_mu_; read under either
  uint64_t state_generation_ = 0;
};

}  // namespace kmsfs
