#include "format/crypt_file.h"

#include <algorithm>
#include <array>
#include <memory>
#include <cstring>
#include <vector>

#include "format/block_codec.h"

namespace kmsfs {

namespace {

// Per-thread scratch buffers that keep their capacity between calls: the hot paths then
// neither allocate nor zero-fill up to 1 MiB per request. Each call site uses its own
// slot, so nested use (rewrite -> load_block) never aliases.
enum ScratchSlot { kReadCt, kReadPlain, kWriteCt, kWritePlain, kLoadCt, kOldPlain, kUndoCt, kSlots };
MutableByteSpan scratch(ScratchSlot slot, size_t n) {
  thread_local std::array<std::unique_ptr<uint8_t[]>, kSlots> bufs;
  thread_local std::array<size_t, kSlots> caps{};
  if (caps[slot] < n) {
    bufs[slot].reset(new uint8_t[n]);
    caps[slot] = n;
  }
  return {bufs[slot].get(), n};
}

bool all_zero(ByteSpan b) {
  // Word-at-a-time is not worth the aliasing care here: this runs only on blocks that
  // failed to authenticate-or-are-holes, and compilers vectorise the simple loop.
  for (uint8_t c : b)
    if (c) return false;
  return true;
}

}  // namespace

// Locks the stripes covering blocks [first, last] in ascending stripe order, shared or
// exclusive. Spans of kStripes blocks or more take every stripe.
class CryptFile::StripeLock {
 public:
  StripeLock(std::array<std::shared_mutex, kStripes>& s, uint64_t first, uint64_t last,
             bool exclusive)
      : s_(s), exclusive_(exclusive) {
    if (last - first + 1 >= kStripes) {
      mask_.fill(true);
    } else {
      for (uint64_t b = first; b <= last; ++b) mask_[b % kStripes] = true;
    }
    for (size_t i = 0; i < kStripes; ++i)
      if (mask_[i]) exclusive_ ? s_[i].lock() : s_[i].lock_shared();
  }
  ~StripeLock() {
    for (size_t i = kStripes; i-- > 0;)
      if (mask_[i]) exclusive_ ? s_[i].unlock() : s_[i].unlock_shared();
  }
  StripeLock(const StripeLock&) = delete;
  StripeLock& operator=(const StripeLock&) = delete;

 private:
  std::array<std::shared_mutex, kStripes>& s_;
  std::array<bool, kStripes> mask_{};
  bool exclusive_;
};

CryptFile::CryptFile(std::shared_ptr<BackingFile> backing, FileHeader header,
                     std::shared_ptr<const FileKeys> keys, Options opts)
    : backing_(std::move(backing)),
      keys_(std::move(keys)),
      opts_(opts),
      file_id_(header.file_id),
      layout_(Layout::of(header.header_size, header.block_size)),
      header_(std::move(header)) {}

Result<std::unique_ptr<CryptFile>> CryptFile::create(std::shared_ptr<BackingFile> backing,
                                                     FileHeader header,
                                                     std::shared_ptr<const FileKeys> keys,
                                                     Options opts) {
  if (!header.slots[0]) return Status(Code::kInvalidArgument, "create: header has no key slot");
  HeaderSlot s0 = *header.slots[0];
  s0.seq = 1;
  HeaderSlot s1 = s0;
  s1.seq = 2;  // both slots hold the wrap, so one damaged slot loses nothing
  ASSIGN_OR_RETURN(Bytes imm, encode_immutable(header, keys->header_mac_key.span()));
  ASSIGN_OR_RETURN(Bytes e0, encode_slot(s0));
  ASSIGN_OR_RETURN(Bytes e1, encode_slot(s1));
  Layout l = Layout::of(header.header_size, header.block_size);
  Bytes out(l.ciphertext_size(0), 0);
  std::copy(imm.begin(), imm.end(), out.begin());
  std::copy(e0.begin(), e0.end(), out.begin() + header::kSlotOffset[0]);
  std::copy(e1.begin(), e1.end(), out.begin() + header::kSlotOffset[1]);
  RETURN_IF_ERROR(seal_block(*keys->content, header.file_id, 0, true, {},
                             MutableByteSpan(out).subspan(l.block_offset(0))));
  RETURN_IF_ERROR(backing->write_at(out, 0));
  RETURN_IF_ERROR(backing->truncate(out.size()));
  header.immutable_raw.assign(imm.begin(), imm.begin() + header::kMacOffset);
  std::copy_n(imm.begin() + header::kMacOffset, 32, header.mac.begin());
  header.slots[0] = std::move(s0);
  header.slots[1] = std::move(s1);
  std::unique_ptr<CryptFile> f(new CryptFile(std::move(backing), std::move(header), std::move(keys), opts));
  f->size_ = 0;
  f->tail_verified_ = true;
  return f;
}

Result<std::unique_ptr<CryptFile>> CryptFile::open(std::shared_ptr<BackingFile> backing,
                                                   FileHeader header,
                                                   std::shared_ptr<const FileKeys> keys,
                                                   Options opts,
                                                   std::shared_ptr<const FileKeys> next) {
  // Named only on failure: for an fd-only backing file the name costs a readlink.
  auto name = [&] { return backing->name() + ": file " + to_hex(header.file_id); };
  const int active = header.active_slot();
  if (active < 0) return Status(Code::kCorrupt, name() + ": no valid key slot");
  const auto& reenc = header.slots[active]->reencrypt;
  if (reenc && !next) return Status(Code::kInternal, name() + ": re-encryption under way but its key was not given");
  if (!reenc) next.reset();
  // Mid re-encryption the MAC is under the old DEK until the last step rewrites it under
  // the new one (FORMAT.md §3.9): either of the file's two DEKs commits it.
  Status mac = verify_header_mac(header, keys->header_mac_key.span());
  if (!mac.ok() && next) mac = verify_header_mac(header, next->header_mac_key.span());
  if (!mac.ok()) return mac.with_context(name());
  // The active slot holds the newest file state (every state update writes a slot above
  // both); one that fails its MAC is tampering. The fallback's may be under another DEK
  // of this file (a re-encryption's last step), so it is not consulted.
  SparseMap sparse;
  uint64_t generation = 0;
  if (const auto& st = header.slots[active]->state) {
    auto m = open_file_state(*st, header.file_id, keys->state_mac_key.span());
    if (!m.ok() && next) m = open_file_state(*st, header.file_id, next->state_mac_key.span());
    if (!m.ok()) return m.status().with_context(name());
    generation = st->generation;
    sparse = std::move(*m);
  }
  const uint64_t watermark = reenc ? reenc->watermark : 0;
  ASSIGN_OR_RETURN(uint64_t bsize, backing->size());
  std::unique_ptr<CryptFile> f(new CryptFile(std::move(backing), std::move(header), std::move(keys), opts));
  f->next_keys_ = std::move(next);
  f->watermark_ = watermark;
  auto decoded = f->layout_.plaintext_size(bsize);
  f->size_ = decoded.plain_size;
  f->well_formed_ = decoded.well_formed;
  f->sparse_ = std::move(sparse);
  f->state_generation_ = generation;
  return f;
}

uint64_t CryptFile::size() const {
  std::shared_lock lock(size_mu_);
  return size_;
}

FileHeader CryptFile::header() const {
  std::lock_guard lock(header_mu_);
  return header_;
}

SparseMap CryptFile::sparse() const {
  std::shared_lock lock(size_mu_);
  return sparse_;
}

Status CryptFile::corrupt_block(uint64_t i, const Status& why) const {
  return Status(why.code() == Code::kOk ? Code::kCorrupt : why.code(),
                backing_->name() + ": file " + to_hex(file_id_) + " block " + std::to_string(i) +
                    ": " + why.message(),
                why.sys_errno());
}

Status CryptFile::read_failed(uint64_t first, uint64_t last, const Status& why) const {
  const std::string blocks = first == last ? " block " + std::to_string(first)
                                           : " blocks " + std::to_string(first) + ".." + std::to_string(last);
  const std::string what = why.sys_errno() != 0 ? std::string("read: ") + std::strerror(why.sys_errno()) : why.message();
  return Status(why.code(), backing_->name() + ": file " + to_hex(file_id_) + blocks + ": " + what, why.sys_errno());
}

Status CryptFile::load_block(uint64_t i, uint64_t p, MutableByteSpan out) {
  const uint64_t n = layout_.block_count(p);
  const size_t ct_len = out.size() + layout_.overhead;
  MutableByteSpan ct = scratch(kLoadCt, ct_len);
  auto read = backing_->read_at(ct, layout_.block_offset(i));
  if (!read.ok()) return read_failed(i, i, read.status());
  const size_t got = *read;
  if (got != ct_len) return corrupt_block(i, Status(Code::kCorrupt, "block truncated"));
  const bool last = i + 1 == n;
  if (!last && all_zero(ct) && sparse_.contains(i)) {
    std::fill(out.begin(), out.end(), 0);
    return Status::Ok();
  }
  Status s = open_sealed(i, last, ct, out);
  if (!s.ok()) return corrupt_block(i, s);
  return Status::Ok();
}

Result<size_t> CryptFile::read(MutableByteSpan out, uint64_t off) {
  RETURN_IF_ERROR(check_key());
  std::shared_lock size_lock(size_mu_);
  const uint64_t p = size_;
  if (off >= p || out.empty()) {
    if (off >= p) RETURN_IF_ERROR(verify_tail(p));
    return size_t{0};
  }
  const size_t len = static_cast<size_t>(std::min<uint64_t>(out.size(), p - off));
  const uint64_t bs = layout_.block_size;
  const uint64_t first = off / bs, last = (off + len - 1) / bs;
  const uint64_t n = layout_.block_count(p);
  StripeLock blocks(stripes_, first, last, /*exclusive=*/false);

  // One backing read for the whole span of sealed blocks.
  const uint64_t ct_begin = layout_.block_offset(first);
  const uint64_t ct_end = layout_.block_offset(last) + layout_.plain_len(p, last) + layout_.overhead;
  MutableByteSpan ct = scratch(kReadCt, ct_end - ct_begin);
  auto read = backing_->read_at(ct, ct_begin);
  if (!read.ok()) return read_failed(first, last, read.status());
  const size_t got = *read;
  for (uint64_t i = first; i <= last; ++i) {
    const uint64_t plen = layout_.plain_len(p, i);
    const uint64_t rel = layout_.block_offset(i) - ct_begin;
    const uint64_t clen = plen + layout_.overhead;
    if (rel + clen > got) return corrupt_block(i, Status(Code::kCorrupt, "block truncated"));
    ByteSpan block_ct(ct.data() + rel, clen);
    // Where this block's plaintext lands in `out`.
    const uint64_t block_start = i * bs;
    const uint64_t from = std::max<uint64_t>(off, block_start);
    const uint64_t to = std::min<uint64_t>(off + len, block_start + plen);
    MutableByteSpan dst = out.subspan(from - off, to - from);
    const bool last_block = i + 1 == n;
    if (!last_block && all_zero(block_ct) && sparse_.contains(i)) {
      std::fill(dst.begin(), dst.end(), 0);
      continue;
    }
    if (from == block_start && to == block_start + plen) {
      Status s = open_sealed(i, last_block, block_ct, dst);
      if (!s.ok()) return corrupt_block(i, s);
    } else {
      MutableByteSpan plain = scratch(kReadPlain, plen);
      Status s = open_sealed(i, last_block, block_ct, plain);
      if (!s.ok()) return corrupt_block(i, s);
      std::copy_n(plain.begin() + static_cast<long>(from - block_start), to - from, dst.begin());
    }
    // The final block opened with its "last" flag: a later read at EOF need not load it again.
    if (last_block && well_formed_) tail_verified_.store(true, std::memory_order_release);
  }
  return len;
}

Status CryptFile::verify_tail(uint64_t p) {
  if (tail_verified_.load(std::memory_order_acquire)) return Status::Ok();
  const uint64_t last = layout_.block_count(p) - 1;
  if (!well_formed_)
    return corrupt_block(last + 1, Status(Code::kCorrupt, "file ends inside a block or has no final block (truncated?)"));
  StripeLock blocks(stripes_, last, last, /*exclusive=*/false);
  std::vector<uint8_t> plain(layout_.plain_len(p, last));
  RETURN_IF_ERROR(load_block(last, p, plain));
  tail_verified_.store(true, std::memory_order_release);
  return Status::Ok();
}

Status CryptFile::rewrite(uint64_t p_old, uint64_t p_new, uint64_t first, uint64_t last,
                          uint64_t data_off, ByteSpan data) {
  const uint64_t bs = layout_.block_size;
  const uint64_t n_old = layout_.block_count(p_old);
  const uint64_t n_new = layout_.block_count(p_new);
  const uint64_t data_end = data_off + data.size();

  uint64_t total = 0;
  for (uint64_t i = first; i <= last; ++i) total += layout_.plain_len(p_new, i) + layout_.overhead;
  MutableByteSpan ct = scratch(kWriteCt, total);
  MutableByteSpan plain = scratch(kWritePlain, bs);
  size_t pos = 0;
  for (uint64_t i = first; i <= last; ++i) {
    const uint64_t block_start = i * bs;
    const uint64_t new_len = layout_.plain_len(p_new, i);
    const uint64_t old_len = i < n_old ? std::min(layout_.plain_len(p_old, i), new_len) : 0;
    MutableByteSpan pt(plain.data(), new_len);
    const bool covered = data_off <= block_start && data_end >= block_start + new_len;
    if (!covered) {
      std::fill(pt.begin(), pt.end(), 0);
      if (old_len > 0) {
        MutableByteSpan old = scratch(kOldPlain, layout_.plain_len(p_old, i));
        RETURN_IF_ERROR(load_block(i, p_old, old));
        std::copy_n(old.begin(), old_len, pt.begin());
      }
    }
    const uint64_t from = std::max(data_off, block_start);
    const uint64_t to = std::min(data_end, block_start + new_len);
    if (from < to)
      std::copy_n(data.begin() + static_cast<long>(from - data_off), to - from,
                  pt.begin() + static_cast<long>(from - block_start));
    MutableByteSpan out(ct.data() + pos, new_len + layout_.overhead);
    Status s = seal_block(*keys_for(i).content, file_id_, i, i + 1 == n_new, pt, out);
    if (!s.ok()) return corrupt_block(i, s);
    pos += out.size();
  }
  const uint64_t at = layout_.block_offset(first);
  // Only a write that may allocate backing space can run out of it: one that grows the
  // file, or one into a sparse range (those blocks may be holes in the backing file).
  // Overwrites of written blocks need no new space on a filesystem that overwrites in
  // place, and pay nothing here (FORMAT.md §5.5.1).
  const bool grows = p_new > p_old;
  if (!grows && !sparse_.intersects({first, last + 1})) return backing_->write_at(ct, at);

  // Reserve first: ENOSPC then fails the write before any block is touched.
  Status r = backing_->reserve(at, ct.size());
  const bool reserved = r.ok();
  if (!r.ok() && r.code() != Code::kUnsupported) {
    if (grows && well_formed_) (void)backing_->truncate(layout_.ciphertext_size(p_old));  // see reserve_for_write
    return r;
  }
  // The ciphertext this write replaces (blocks that existed), to put back if it fails
  // half-way: a pwrite that runs out of space stops mid-block, and that block would read
  // EIO forever. Where the space is reserved, only the old last block of a growing write
  // is kept (it may hold fsync'ed bytes, and costs one block): the hot path of random
  // writes into holes then pays one fallocate and no read. An I/O error inside a reserved
  // hole fill tears a block as any failed write may (§5.6).
  MutableByteSpan old;
  const uint64_t old_at = layout_.block_offset(reserved ? std::max(first, n_old - 1) : first);
  if (first < n_old && (!reserved || grows)) {
    const uint64_t last_kept = std::min(last, n_old - 1);
    const uint64_t old_end = layout_.block_offset(last_kept) + layout_.plain_len(p_old, last_kept) + layout_.overhead;
    old = scratch(kUndoCt, old_end - old_at);
    ASSIGN_OR_RETURN(size_t got, backing_->read_at(old, old_at));
    old = old.first(got);
  }
  Status w = backing_->write_at(ct, at);
  if (w.ok()) return w;
  // Reserved or not (no fallocate, or another error than ENOSPC), the write failed: undo
  // it. Putting back old bytes over blocks that were just written needs no new space.
  Status undo = old.empty() ? Status::Ok() : backing_->write_at(old, old_at);
  if (undo.ok() && grows && well_formed_) undo = backing_->truncate(layout_.ciphertext_size(p_old));
  if (!undo.ok()) {
    tail_verified_ = false;  // the tail may be torn now: authenticate it again at EOF
    return Status(w.code(), w.message() + "; undoing the partial write failed too: " + undo.message(), w.sys_errno());
  }
  return w;
}

Status CryptFile::reserve_for_write(uint64_t off, uint64_t len, uint64_t p_old, bool grows) {
  Status r = backing_->reserve(off, len);
  // No fallocate (FUSE, NFS before 4.2, some FUSE-based backing stores): write unreserved,
  // as before reservations existed; rewrite() still undoes a failed write.
  if (r.ok() || r.code() == Code::kUnsupported) return Status::Ok();
  // ext4 and XFS keep what a failed fallocate got; past EOF a truncate (to the same size
  // is enough) gives it back, or the next, smaller write would find the space gone.
  if (grows && well_formed_) (void)backing_->truncate(layout_.ciphertext_size(p_old));
  return r;
}

Status CryptFile::persist_sparse(const SparseMap& next) {
  std::lock_guard lock(header_mu_);
  const int active = header_.active_slot();
  if (active < 0) return Status(Code::kInternal, "no active header slot");
  const int target = 1 - active;
  HeaderSlot slot = *header_.slots[active];
  ASSIGN_OR_RETURN(slot.seq, next_slot_seq(header_));
  slot.state = seal_file_state(state_generation_ + 1, next, file_id_, keys_->state_mac_key.span());
  ASSIGN_OR_RETURN(Bytes enc, encode_slot(slot));
  RETURN_IF_ERROR(backing_->write_at(enc, header::kSlotOffset[target]));
  header_.slots[target] = std::move(slot);
  header_.slot_problem[target].clear();
  state_generation_ += 1;
  sparse_ = next;
  return Status::Ok();
}

Status CryptFile::extend(uint64_t p_old, uint64_t p_new, uint64_t data_off, ByteSpan data) {
  const uint64_t bs = layout_.block_size;
  const uint64_t last_old = layout_.block_count(p_old) - 1;
  const uint64_t last_new = layout_.block_count(p_new) - 1;
  // First block that carries new data (or the new final block of a truncate up).
  const uint64_t first_data = data.empty() ? last_new : data_off / bs;
  if (first_data <= last_old + 1) {
    // No gap: one contiguous rewrite from the old last block (re-sealed as non-final).
    return rewrite(p_old, p_new, std::min(first_data, last_old), last_new, data_off, data);
  }
  const uint64_t gap_first = last_old + 1, gap_end = first_data;
  if ((gap_end - gap_first) * bs <= opts_.sealed_gap_limit)
    return rewrite(p_old, p_new, last_old, last_new, data_off, data);
  // A large gap becomes a hole: authenticate it in the header before the data lands, so
  // no crash can leave unauthenticated zeros readable. Then the new tail, then the old
  // last block (a stale final flag there is tolerated if we crash in between).
  //
  // The new tail's space is reserved before the header changes, so ENOSPC fails the write
  // with the header as it was; a later failure puts the old ranges back (best effort: a
  // range past EOF is harmless, §5.6).
  const uint64_t tail = layout_.block_offset(first_data);
  RETURN_IF_ERROR(reserve_for_write(tail, layout_.ciphertext_size(p_new) - tail, p_old, /*grows=*/true));
  const SparseMap before = sparse_;
  SparseMap next = sparse_;
  next.add({gap_first, gap_end});
  RETURN_IF_ERROR(persist_sparse(next));
  Status s = rewrite(p_old, p_new, first_data, last_new, data_off, data);
  if (s.ok()) s = rewrite(p_old, p_new, last_old, last_old, data_off, data);
  if (!s.ok()) (void)persist_sparse(before);
  return s;
}

Status CryptFile::write(ByteSpan data, uint64_t off) {
  RETURN_IF_ERROR(check_key());
  if (data.empty()) return Status::Ok();
  const uint64_t end = off + data.size();
  if (end < off) return Status(Code::kInvalidArgument, "write past the largest file offset", EFBIG);
  {
    std::shared_lock size_lock(size_mu_);
    if (end <= size_) {
      const uint64_t bs = layout_.block_size;
      StripeLock blocks(stripes_, off / bs, (end - 1) / bs, /*exclusive=*/true);
      return rewrite(size_, size_, off / bs, (end - 1) / bs, off, data);
    }
  }
  std::unique_lock size_lock(size_mu_);
  const uint64_t p = size_;
  if (end <= p) {  // someone else extended it meanwhile; we hold everything, so just write
    const uint64_t bs = layout_.block_size;
    return rewrite(p, p, off / bs, (end - 1) / bs, off, data);
  }
  if (const int e = gap_errno_.load(std::memory_order_acquire); e != 0 && off > p)
    return Status(Code::kIo, backing_->name() + ": file " + to_hex(file_id_) + ": write at " + std::to_string(off) +
                                 " refused: it would leave a hole after the end at " + std::to_string(p) +
                                 ", where an earlier write was lost",
                  e);
  RETURN_IF_ERROR(extend(p, end, off, data));
  size_ = end;
  well_formed_ = true;
  tail_verified_ = true;
  return Status::Ok();
}

Status CryptFile::truncate(uint64_t new_size) {
  RETURN_IF_ERROR(check_key());
  std::unique_lock size_lock(size_mu_);
  return truncate_locked(new_size);
}

Status CryptFile::refuse_gaps_and_shrink(uint64_t new_size, int err) {
  std::unique_lock size_lock(size_mu_);
  gap_errno_.store(err, std::memory_order_release);
  if (new_size >= size_) return Status::Ok();
  RETURN_IF_ERROR(check_key());
  // Cutting inside a hole would seal the new last block there, which needs the space that
  // just ran out: cut below the hole instead (nothing was written into it).
  const uint64_t bs = layout_.block_size;
  Bytes ct(layout_.sealed_block_size());
  while (new_size > 0) {
    const uint64_t last = layout_.block_count(new_size) - 1;
    if (!sparse_.contains(last)) break;
    ASSIGN_OR_RETURN(size_t got, backing_->read_at(ct, layout_.block_offset(last)));
    if (got != ct.size() || !all_zero(ct)) break;
    new_size = last * bs;
  }
  return truncate_locked(new_size);
}

Status CryptFile::truncate_locked(uint64_t new_size) {
  const uint64_t p = size_;
  if (new_size == p) return Status::Ok();
  if (new_size > p) {
    RETURN_IF_ERROR(extend(p, new_size, new_size, {}));
    size_ = new_size;
    well_formed_ = true;
    tail_verified_ = true;
    return Status::Ok();
  }
  const uint64_t last_new = layout_.block_count(new_size) - 1;
  // Re-seal the new last block as final (cut to its new length) before cutting the file.
  RETURN_IF_ERROR(rewrite(p, new_size, last_new, last_new, 0, {}));
  RETURN_IF_ERROR(backing_->truncate(layout_.ciphertext_size(new_size)));
  size_ = new_size;
  well_formed_ = true;
  tail_verified_ = true;
  SparseMap next = sparse_;
  next.clip(last_new);
  if (!(next == sparse_)) RETURN_IF_ERROR(persist_sparse(next));
  return Status::Ok();
}

Status CryptFile::allocate(uint64_t off, uint64_t len, bool keep_size) {
  RETURN_IF_ERROR(check_key());
  if (len == 0) return Status(Code::kInvalidArgument, "fallocate: zero length", EINVAL);
  const uint64_t end = off + len;
  if (end < off) return Status(Code::kInvalidArgument, "fallocate: range overflows", EFBIG);
  const uint64_t bs = layout_.block_size;
  const uint64_t first = off / bs, last = (end - 1) / bs;
  const uint64_t from = layout_.block_offset(first);
  const uint64_t to = layout_.block_offset(last) + layout_.sealed_block_size();
  // Reserve before growing: a failed fallocate(2) leaves the size as it was.
  Status r = backing_->reserve(from, to - from);
  if (r.code() == Code::kUnsupported) return Status(Code::kUnsupported, "fallocate not supported by the backing filesystem", EOPNOTSUPP);
  if (!r.ok()) {
    // Give back what the failed attempt got past EOF (see reserve_for_write).
    std::shared_lock size_lock(size_mu_);
    if (well_formed_) (void)backing_->truncate(layout_.ciphertext_size(size_));
    return r;
  }
  if (!keep_size && end > size()) RETURN_IF_ERROR(truncate(end));
  return Status::Ok();
}

Status CryptFile::rewrap(const SlotWrap& from, const SlotWrap& to) {
  // Exclusive: no write or truncate moves the mtime between reading and restoring it.
  std::unique_lock size_lock(size_mu_);
  std::lock_guard lock(header_mu_);
  const int active = header_.active_slot();
  if (active < 0 || !(wrap_of(*header_.slots[active]) == from))
    return Status(Code::kUnavailable, backing_->name() + ": file " + to_hex(file_id_) + ": key wrap changed meanwhile");
  // header_ follows each slot write that landed, so a later file-state update starts from
  // what is on disk even if the second write failed.
  return write_wrap(*backing_, header_, to);
}

Status CryptFile::open_sealed(uint64_t i, bool last, ByteSpan ct, MutableByteSpan out) const {
  const FileKeys& k = keys_for(i);
  Status s = open_block(*k.content, file_id_, i, last, ct, out);
  if (s.ok() || !next_keys_) return s;
  const FileKeys& other = &k == next_keys_.get() ? *keys_ : *next_keys_;
  return open_block(*other.content, file_id_, i, last, ct, out).ok() ? Status::Ok() : s;
}

bool CryptFile::reencrypting() const {
  std::shared_lock lock(size_mu_);
  return next_keys_ != nullptr;
}

Status CryptFile::write_slot_locked(HeaderSlot slot, bool sync) {
  const int active = header_.active_slot();
  if (active < 0) return Status(Code::kInternal, "no active header slot");
  ASSIGN_OR_RETURN(slot.seq, next_slot_seq(header_));
  const int target = 1 - active;
  ASSIGN_OR_RETURN(Bytes enc, encode_slot(slot));
  RETURN_IF_ERROR(backing_->write_at(enc, header::kSlotOffset[target]));
  header_.slots[target] = std::move(slot);
  header_.slot_problem[target].clear();
  return sync ? backing_->sync(true) : Status::Ok();
}

Status CryptFile::begin_reencrypt(Bytes wrapped, std::shared_ptr<const FileKeys> next, const ReencryptRunId& run) {
  RETURN_IF_ERROR(check_key());
  std::unique_lock size_lock(size_mu_);
  std::lock_guard lock(header_mu_);
  const int active = header_.active_slot();
  if (active < 0) return Status(Code::kInternal, "no active header slot");
  if (header_.slots[active]->reencrypt) return Status::Ok();
  HeaderSlot slot = *header_.slots[active];
  slot.reencrypt = ReencryptRecord{0, run, std::move(wrapped)};
  // Durable before any block moves: a step's journal entry names this record's key.
  RETURN_IF_ERROR(write_slot_locked(std::move(slot), /*sync=*/true));
  next_keys_ = std::move(next);
  watermark_ = 0;
  return Status::Ok();
}

Result<CryptFile::ReencryptProgress> CryptFile::reencrypt_step(ReencryptJournal& journal,
                                                             const std::string& path_hint,
                                                             uint64_t max_blocks) {
  RETURN_IF_ERROR(check_key());
  if (max_blocks == 0) return Status(Code::kInvalidArgument, "re-encryption step of zero blocks");
  {
    std::shared_lock size_lock(size_mu_);
    if (!next_keys_) return Status(Code::kNotFound, backing_->name() + ": no re-encryption under way");
    const uint64_t p = size_;
    const uint64_t n = layout_.block_count(p);
    const uint64_t a = watermark_.load();
    if (a < n) {
      const uint64_t b = std::min(n, a + max_blocks);
      // Exclusive: no writer may change these blocks between their journaling and the
      // watermark's commit, or the journal would put back stale bytes over its write.
      StripeLock blocks(stripes_, a, b - 1, /*exclusive=*/true);
      const uint64_t ct_begin = layout_.block_offset(a);
      const uint64_t ct_end = layout_.block_offset(b - 1) + layout_.plain_len(p, b - 1) + layout_.overhead;
      Bytes old(ct_end - ct_begin);
      auto read = backing_->read_at(old, ct_begin);
      if (!read.ok()) return read_failed(a, b - 1, read.status());
      const size_t got = *read;
      if (got != old.size()) return corrupt_block(a + (got / layout_.sealed_block_size()), Status(Code::kCorrupt, "block truncated"));
      Bytes fresh(old.size(), 0);
      std::vector<bool> hole(b - a, false);
      MutableByteSpan plain = scratch(kWritePlain, layout_.block_size);
      for (uint64_t i = a; i < b; ++i) {
        const uint64_t rel = layout_.block_offset(i) - ct_begin;
        const uint64_t plen = layout_.plain_len(p, i);
        ByteSpan ct(old.data() + rel, plen + layout_.overhead);
        const bool last = i + 1 == n;
        if (!last && all_zero(ct) && sparse_.contains(i)) {
          hole[i - a] = true;  // stays a hole: a hole has no key
          continue;
        }
        MutableByteSpan pt = plain.first(plen);
        Status s = open_sealed(i, last, ct, pt);
        if (!s.ok()) return corrupt_block(i, s);
        s = seal_block(*next_keys_->content, file_id_, i, last, pt, MutableByteSpan(fresh).subspan(rel, ct.size()));
        if (!s.ok()) return corrupt_block(i, s);
      }
      JournalEntry entry;
      entry.file_id = file_id_;
      {
        std::lock_guard lock(header_mu_);
        entry.next_wrap = sha256(header_.slots[header_.active_slot()]->reencrypt->wrapped_dek);
      }
      entry.from_block = a;
      entry.to_block = b;
      entry.offset = ct_begin;
      entry.path = path_hint;
      entry.data = std::move(old);
      RETURN_IF_ERROR(journal.save(entry));
      // Runs of non-hole blocks, one write each.
      for (uint64_t i = a; i < b;) {
        if (hole[i - a]) {
          ++i;
          continue;
        }
        uint64_t j = i;
        while (j < b && !hole[j - a]) ++j;
        const uint64_t from = layout_.block_offset(i) - ct_begin;
        const uint64_t to = j == b ? fresh.size() : layout_.block_offset(j) - ct_begin;
        RETURN_IF_ERROR(backing_->write_at(ByteSpan(fresh).subspan(from, to - from), ct_begin + from));
        i = j;
      }
      RETURN_IF_ERROR(backing_->sync(true));
      {
        std::lock_guard lock(header_mu_);
        HeaderSlot slot = *header_.slots[header_.active_slot()];
        slot.reencrypt->watermark = b;
        RETURN_IF_ERROR(write_slot_locked(std::move(slot), /*sync=*/true));
      }
      watermark_.store(b, std::memory_order_release);
      return ReencryptProgress{b - a, fresh.size(), false};
    }
  }
  std::unique_lock size_lock(size_mu_);
  if (!next_keys_) return ReencryptProgress{0, 0, true};
  // A writer may have grown the file since: the new blocks come first.
  if (watermark_.load() < layout_.block_count(size_)) return ReencryptProgress{};
  RETURN_IF_ERROR(finish_reencrypt_locked());
  RETURN_IF_ERROR(journal.clear());
  return ReencryptProgress{0, 0, true};
}

Status CryptFile::finish_reencrypt_locked() {
  std::lock_guard lock(header_mu_);
  const int active = header_.active_slot();
  if (active < 0 || !header_.slots[active]->reencrypt) return Status(Code::kInternal, "no re-encryption record");
  RETURN_IF_ERROR(backing_->sync(true));  // every block under the new DEK is durable
  // 1. The MAC under the new DEK: one 32-byte write inside one sector. Either DEK opens
  //    the header while a re-encryption record is in a slot, so any crash point is fine.
  Digest32 mac = hmac_sha256(next_keys_->header_mac_key.span(), header_.immutable_raw);
  RETURN_IF_ERROR(backing_->write_at(mac, header::kMacOffset));
  RETURN_IF_ERROR(backing_->sync(true));
  header_.mac = mac;
  // 2. Both slots: the new DEK as the file's own, no record, the state under the new DEK.
  HeaderSlot slot = *header_.slots[active];
  slot.wrapped_dek = slot.reencrypt->wrapped_dek;
  slot.dek_run = slot.reencrypt->run;
  slot.reencrypt.reset();
  if (slot.state || !sparse_.empty())
    slot.state = seal_file_state(state_generation_ + 1, sparse_, file_id_, next_keys_->state_mac_key.span());
  // Durable one after the other, so no crash can find both slots half-written.
  RETURN_IF_ERROR(write_slot_locked(slot, /*sync=*/true));
  RETURN_IF_ERROR(write_slot_locked(slot, /*sync=*/true));
  if (slot.state) state_generation_ += 1;
  keys_ = std::move(next_keys_);
  next_keys_.reset();
  watermark_ = 0;
  return Status::Ok();
}

// No key check: making durable what was already written needs no key.
Status CryptFile::sync(bool data_only) { return backing_->sync(data_only); }

}  // namespace kmsfs
