// Sealing and opening one content block. The AAD binds the file id, the block index and
// whether the block is the file's last, so blocks cannot be moved between positions or
// files, and cutting a file at a block boundary leaves a last block that was not sealed
// as last (Tink's streaming-AEAD construction).
#pragma once

#include <array>
#include <cstdint>

#include "base/bytes.h"
#include "base/status.h"
#include "crypto/aead.h"
#include "format/key_ref.h"

namespace kmsfs {

constexpr size_t kBlockAadSize = 25;
std::array<uint8_t, kBlockAadSize> block_aad(const FileId& id, uint64_t index, bool final);

// out.size() == pt.size() + kAeadOverhead.
Status seal_block(const Aead& aead, const FileId& id, uint64_t index, bool final, ByteSpan pt,
                  MutableByteSpan out);

// Opens a block read from disk. `is_last` says whether it is the file's last block by the
// backing size. The last block must have been sealed final. A non-last block sealed final
// is accepted too: after a crash between extending a file and re-sealing its old last
// block, that block is intact and holds fsync'ed data -- also when it was partial and is
// now followed by the zeros of a full block's slot (docs/FORMAT.md §5 says what this
// leaves undetected). kCorrupt on failure; out is zeroed then.
Status open_block(const Aead& aead, const FileId& id, uint64_t index, bool is_last, ByteSpan ct,
                  MutableByteSpan out);

}  // namespace kmsfs
