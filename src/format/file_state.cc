#include "format/file_state.h"

#include <algorithm>
#include <limits>

#include "crypto/secure_buffer.h"

namespace kmsfs {

bool SparseMap::contains(uint64_t block) const {
  auto it = std::upper_bound(ranges_.begin(), ranges_.end(), block,
                             [](uint64_t b, const BlockRange& r) { return b < r.begin; });
  if (it == ranges_.begin()) return false;
  --it;
  return block < it->end;
}

bool SparseMap::intersects(BlockRange r) const {
  for (const auto& cur : ranges_)
    if (cur.begin < r.end && r.begin < cur.end) return true;
  return false;
}

void SparseMap::add(BlockRange r) {
  if (r.begin >= r.end) return;
  std::vector<BlockRange> out;
  out.reserve(ranges_.size() + 1);
  bool placed = false;
  for (const auto& cur : ranges_) {
    if (cur.end < r.begin) {
      out.push_back(cur);
    } else if (r.end < cur.begin) {
      if (!placed) out.push_back(r), placed = true;
      out.push_back(cur);
    } else {  // overlapping or adjacent: absorb
      r.begin = std::min(r.begin, cur.begin);
      r.end = std::max(r.end, cur.end);
    }
  }
  if (!placed) out.push_back(r);
  while (out.size() > kMaxRanges) {
    // Merge the pair with the smallest gap: the fewest data blocks become zero-tolerant.
    size_t best = 0;
    uint64_t best_gap = std::numeric_limits<uint64_t>::max();
    for (size_t i = 0; i + 1 < out.size(); ++i) {
      uint64_t gap = out[i + 1].begin - out[i].end;
      if (gap < best_gap) best_gap = gap, best = i;
    }
    out[best].end = out[best + 1].end;
    out.erase(out.begin() + static_cast<long>(best) + 1);
  }
  ranges_ = std::move(out);
}

void SparseMap::clip(uint64_t end_block) {
  std::vector<BlockRange> out;
  for (auto r : ranges_) {
    if (r.begin >= end_block) break;
    r.end = std::min(r.end, end_block);
    out.push_back(r);
  }
  ranges_ = std::move(out);
}

Result<SparseMap> SparseMap::from_ranges(std::vector<BlockRange> ranges) {
  if (ranges.size() > kMaxRanges) return Status(Code::kCorrupt, "file state: too many sparse ranges");
  for (size_t i = 0; i < ranges.size(); ++i) {
    if (ranges[i].begin >= ranges[i].end)
      return Status(Code::kCorrupt, "file state: empty sparse range");
    if (i > 0 && ranges[i].begin <= ranges[i - 1].end)
      return Status(Code::kCorrupt, "file state: sparse ranges not sorted and disjoint");
  }
  SparseMap m;
  m.ranges_ = std::move(ranges);
  return m;
}

static Bytes state_mac_input(uint64_t generation, const std::vector<BlockRange>& ranges,
                             const FileId& id) {
  ByteWriter w;
  w.raw(as_bytes("kmsfs-file-state-v1"));
  w.raw(id);
  w.u64(generation);
  w.u16(static_cast<uint16_t>(ranges.size()));
  for (const auto& r : ranges) {
    w.u64(r.begin);
    w.u64(r.end);
  }
  return w.take();
}

SealedFileState seal_file_state(uint64_t generation, const SparseMap& map, const FileId& id,
                                ByteSpan state_mac_key) {
  SealedFileState s;
  s.generation = generation;
  s.ranges = map.ranges();
  s.mac = hmac_sha256(state_mac_key, state_mac_input(generation, s.ranges, id));
  return s;
}

Result<SparseMap> open_file_state(const SealedFileState& s, const FileId& id,
                                  ByteSpan state_mac_key) {
  Digest32 want = hmac_sha256(state_mac_key, state_mac_input(s.generation, s.ranges, id));
  if (!ct_equal(want, s.mac))
    return Status(Code::kCorrupt, "file state does not authenticate (header tampered with)");
  return SparseMap::from_ranges(s.ranges);
}

}  // namespace kmsfs
