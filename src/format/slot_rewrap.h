// Moving a file's key wrap to another key without touching its content or its DEK
// (FORMAT.md §3.7): the new wrap goes over the inactive slot first, then over the other,
// so at every instant some valid slot holds a wrap that opens the file. File state and
// unknown records travel unchanged; only the key reference, the wrapped DEK and the
// intermediate-key record change.
#pragma once

#include <optional>

#include "base/bytes.h"
#include "base/status.h"
#include "format/backing_file.h"
#include "format/header.h"

namespace kmsfs {

// What a slot says about the key that opens the file.
struct SlotWrap {
  KeyRef key;
  Bytes wrapped_dek;
  std::optional<IntermediateKeyRecord> intermediate;
  // A re-encryption's second DEK, wrapped like the first (empty when none is under way):
  // a re-wrap must move it too, or it would stay under the old key.
  Bytes reencrypt_wrapped;
  bool operator==(const SlotWrap&) const = default;
};

SlotWrap wrap_of(const HeaderSlot& slot);

// True if every valid slot is wrapped under `key` (a file counts as rotated only then).
bool all_slots_under(const FileHeader& h, const KeyRef& key);

// Writes `next` into both slots of `h` (and of the file), inactive slot first, keeping
// each slot's file state and unknown records from the active one. `h` follows each
// slot write that landed. The file's mtime is put back afterwards: a re-wrap must not
// look like a content change to make, rsync or backup tools. kCorrupt for a header
// with no valid slot.
Status write_wrap(BackingFile& f, FileHeader& h, const SlotWrap& next);

}  // namespace kmsfs
