#include "rotation/rewrapper.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <cerrno>

#include "rotation/tree_walk.h"

namespace kmsfs {

Result<SlotWrap> Rewrapper::moved(const FileHeader& h, const SlotWrap& from) {
  if (from.key == opts_.target && !opts_.all) return from;
  ASSIGN_OR_RETURN(KeyProvider * p, vault_.providers().get(from.key.provider));
  auto before_call = [&] {
    // The rate limit protects a shared KMS quota; a local provider has none.
    if (opts_.before_call && p->remote()) opts_.before_call();
    ++calls_;
  };
  if (!from.intermediate) return vault_.move_wrap(h, from, opts_.target, before_call);
  // Every file under one intermediate key shares its wrap: move it once.
  auto k = std::make_pair(from.intermediate->id, from.intermediate->wrapped);
  auto it = moved_iks_.find(k);
  if (it == moved_iks_.end()) {
    ASSIGN_OR_RETURN(SlotWrap to, vault_.move_wrap(h, from, opts_.target, before_call));
    it = moved_iks_.emplace(std::move(k), std::make_pair(to.key, *to.intermediate)).first;
  }
  SlotWrap to = from;
  to.key = it->second.first;
  to.intermediate = it->second.second;
  return to;
}

Result<RewrapResult> Rewrapper::rewrap(const std::string& rel, int dirfd) {
  const std::string path = vault_.dir() + "/" + rel;  // for messages
  auto backing = open_tree_file(vault_.dir(), rel, dirfd, O_RDWR);
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
    RETURN_IF_ERROR(vault_.check_ours(h).with_context(where));
    if (all_slots_under(h, opts_.target) && !opts_.all) {
      out.outcome = RewrapOutcome::kAlready;
      return Status::Ok();
    }
    const HeaderSlot& slot = *h.slots[h.active_slot()];
    const SlotWrap from = wrap_of(slot);
    // One rotation step per file, in both key modes (intermediate mode moves a shared
    // intermediate key's wrap once; this names every file it moved).
    auto step = [&](const Status& result, const std::string& to_key) {
      AuditEvent e;
      e.op = "rotate_file";
      e.key = from.key.to_string();
      e.to_key = to_key;
      set_context(e, h.context);
      e.file_id = to_hex(h.file_id);
      if (slot.intermediate) e.ik_id = to_hex(slot.intermediate->id);
      set_result(e, result);
      if (!result.ok()) e.error = code_name(result.code());  // its message may name the backing path
      return record_audit(vault_.providers().audit(), std::move(e));
    };
    auto to = moved(h, from);
    if (!to.ok()) {
      (void)step(to.status(), opts_.target.to_string());
      return to.status().with_context(where);
    }
    Status written;
    if (open) {
      written = open->rewrap(from, *to);
      // Best effort: without it the file still works until the old key is disabled.
      if (written.ok()) (void)vault_.retarget_guard(*open);
    } else {
      written = write_wrap(**backing, h, *to);
    }
    // Written already: a required log that cannot record it cannot undo it either.
    (void)step(written, to->key.to_string());
    return written;
  });
  if (!s.ok()) return s;
  return out;
}

}  // namespace kmsfs
