#include "format/slot_rewrap.h"

namespace kmsfs {

SlotWrap wrap_of(const HeaderSlot& slot) {
  return SlotWrap{slot.key, slot.wrapped_dek, slot.intermediate,
                  slot.reencrypt ? slot.reencrypt->wrapped_dek : Bytes{}};
}

bool all_slots_under(const FileHeader& h, const KeyRef& key) {
  bool any = false;
  for (const auto& s : h.slots) {
    if (!s) continue;
    if (!(s->key == key)) return false;
    any = true;
  }
  return any;
}

Status write_wrap(BackingFile& f, FileHeader& h, const SlotWrap& next) {
  const int active = h.active_slot();
  if (active < 0) return Status(Code::kCorrupt, f.name() + ": no valid key slot to re-wrap");
  // The active slot's state (sparse ranges) is the newest; both slots get it, so the
  // fallback never holds an older state than the file had before.
  ASSIGN_OR_RETURN(timespec mtime, f.mtime());
  HeaderSlot base = *h.slots[active];
  base.key = next.key;
  base.wrapped_dek = next.wrapped_dek;
  base.intermediate = next.intermediate;
  if (base.reencrypt.has_value() != !next.reencrypt_wrapped.empty())
    return Status(Code::kInternal, f.name() + ": re-wrap does not match the file's re-encryption state");
  if (base.reencrypt) base.reencrypt->wrapped_dek = next.reencrypt_wrapped;
  for (int target : {1 - active, active}) {
    HeaderSlot s = base;
    ASSIGN_OR_RETURN(s.seq, next_slot_seq(h));
    ASSIGN_OR_RETURN(Bytes enc, encode_slot(s));
    RETURN_IF_ERROR(f.write_at(enc, header::kSlotOffset[target]));
    h.slots[target] = std::move(s);
    h.slot_problem[target].clear();
    // Durable before the other slot is touched: two slot writes in flight together could
    // both tear in one power cut and leave no valid slot.
    if (target != active) RETURN_IF_ERROR(f.sync(true));
  }
  return f.set_mtime(mtime);
}

}  // namespace kmsfs
