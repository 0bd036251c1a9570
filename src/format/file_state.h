// The mutable, authenticated part of a file's header: which block ranges may legitimately
// be holes (all-zero on disk, read as zeros). Outside these ranges an all-zero block is
// tampering and reads EIO: that is how kmsfs refuses the "zero a block" attack that
// gocryptfs, securefs and EncFS accept, while `truncate -s 1T` still writes no terabyte.
#pragma once

#include <cstdint>
#include <vector>

#include "base/bytes.h"
#include "base/status.h"
#include "crypto/kdf.h"
#include "format/key_ref.h"

namespace kmsfs {

struct BlockRange {
  uint64_t begin = 0;  // first block
  uint64_t end = 0;    // one past the last block
  bool operator==(const BlockRange&) const = default;
};

// Sorted, disjoint, non-adjacent ranges; at most kMaxRanges, merging the closest pair
// when a new range would exceed it (tolerating zeros between two holes, never losing one).
class SparseMap {
 public:
  static constexpr size_t kMaxRanges = 16;

  const std::vector<BlockRange>& ranges() const { return ranges_; }
  bool contains(uint64_t block) const;
  // Whether any block of [r.begin, r.end) lies in a range.
  bool intersects(BlockRange r) const;
  void add(BlockRange r);
  // Drops everything at or past `end_block` (truncate).
  void clip(uint64_t end_block);
  void clear() { ranges_.clear(); }
  bool empty() const { return ranges_.empty(); }
  // Restores from decoded data; kCorrupt if not sorted/disjoint or too many.
  static Result<SparseMap> from_ranges(std::vector<BlockRange> ranges);
  bool operator==(const SparseMap&) const = default;

 private:
  std::vector<BlockRange> ranges_;
};

// As stored in a header slot: generation counter, ranges, and an HMAC under a key derived
// from the DEK. A re-wrap (which has no DEK) copies it verbatim.
struct SealedFileState {
  uint64_t generation = 0;
  std::vector<BlockRange> ranges;
  Digest32 mac{};
  bool operator==(const SealedFileState&) const = default;
};

SealedFileState seal_file_state(uint64_t generation, const SparseMap& map, const FileId& id,
                                ByteSpan state_mac_key);
// Verifies the MAC and the range invariants.
Result<SparseMap> open_file_state(const SealedFileState& s, const FileId& id,
                                  ByteSpan state_mac_key);

}  // namespace kmsfs
