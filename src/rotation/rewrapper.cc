#include "rotation/rewrapper.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <cerrno>

#include "keys/intermediate/intermediate_wrap.h"

namespace kmsfs {

Result<SlotWrap> Rewrapper::moved(const FileHeader& h, const SlotWrap& from) {
  if (from.key == opts_.target && !opts_.all) return from;
  if (from.key.provider != opts_.target.provider)
    return Status(Code::kUnsupported, "moving a file from " + from.key.to_string() + " to another provider's key " +
                                          opts_.target.to_string() + " is not supported");
  ASSIGN_OR_RETURN(KeyProvider * p, vault_.providers().get(from.key.provider));
  auto call = [&](ByteSpan wrapped, const EncryptionContext& ctx) {
    // The rate limit protects a shared KMS quota; a local provider has none.
    if (opts_.before_call && p->remote()) opts_.before_call();
    ++calls_;
    return p->rewrap(from.key, wrapped, ctx, opts_.target);
  };
  SlotWrap to = from;
  if (!from.intermediate) {
    ASSIGN_OR_RETURN(Rewrapped r, call(from.wrapped_dek, h.context));
    to.key = r.ref;
    to.wrapped_dek = std::move(r.wrapped);
    if (!from.reencrypt_wrapped.empty()) {
      // A re-encryption under way: its DEK moves with the file's.
      ASSIGN_OR_RETURN(Rewrapped r2, call(from.reencrypt_wrapped, h.context));
      if (!(r2.ref == to.key))
        return Status(Code::kInternal, "provider moved the two data keys to different keys");
      to.reencrypt_wrapped = std::move(r2.wrapped);
    }
    return to;
  }
  // The sealed DEK stays: it is sealed under the intermediate key, which does not change.
  const IntermediateKeyRecord& ik = *from.intermediate;
  auto k = std::make_pair(ik.id, ik.wrapped);
  auto it = moved_iks_.find(k);
  if (it == moved_iks_.end()) {
    ASSIGN_OR_RETURN(EncryptionContext ik_ctx, intermediate_context(h.context, ik.id));
    ASSIGN_OR_RETURN(Rewrapped r, call(ik.wrapped, ik_ctx));
    it = moved_iks_.emplace(std::move(k), std::make_pair(r.ref, IntermediateKeyRecord{ik.id, std::move(r.wrapped)})).first;
  }
  to.key = it->second.first;
  to.intermediate = it->second.second;
  return to;
}

Result<RewrapResult> Rewrapper::rewrap(const std::string& rel) {
  const std::string path = vault_.dir() + "/" + rel;
  auto backing = PosixBackingFile::open(path, O_RDWR | O_NOFOLLOW);
  if (!backing.ok()) {
    if (backing.status().sys_errno() == ENOENT) return RewrapResult{RewrapOutcome::kGone, 0};
    return backing.status();
  }
  struct stat st;
  if (::fstat((*backing)->fd(), &st) != 0) return Status::Io(errno, "stat " + path);
  if (!S_ISREG(st.st_mode)) return RewrapResult{RewrapOutcome::kNotKmsfs, 0};
  RewrapResult out{RewrapOutcome::kRotated, static_cast<uint64_t>(st.st_size)};
  Status s = vault_.open_files().with_file(st.st_dev, st.st_ino, [&](CryptFile* open) -> Status {
    FileHeader h;
    if (open) {
      h = open->header();
    } else {
      Bytes raw(header::kSize);
      ASSIGN_OR_RETURN(size_t n, (*backing)->read_at(raw, 0));
      raw.resize(n);
      if (!has_kmsfs_magic(raw) || n < header::kSize) {
        out.outcome = RewrapOutcome::kNotKmsfs;
        return Status::Ok();
      }
      auto parsed = parse_header(raw);
      if (!parsed.ok()) return parsed.status().with_context(path);
      h = std::move(*parsed);
    }
    const std::string where = path + ": file " + to_hex(h.file_id);
    RETURN_IF_ERROR(vault_.check_ours(h, where));
    if (all_slots_under(h, opts_.target) && !opts_.all) {
      out.outcome = RewrapOutcome::kAlready;
      return Status::Ok();
    }
    const SlotWrap from = wrap_of(*h.slots[h.active_slot()]);
    auto to = moved(h, from);
    if (!to.ok()) return to.status().with_context(where);
    if (open) {
      RETURN_IF_ERROR(open->rewrap(from, *to));
      // Best effort: without it the file still works until the old key is disabled.
      (void)vault_.retarget_guard(*open);
      return Status::Ok();
    }
    return write_wrap(**backing, h, *to);
  });
  if (!s.ok()) return s;
  return out;
}

}  // namespace kmsfs
