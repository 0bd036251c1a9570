#include "fsck/block_scan.h"

#include <algorithm>

namespace kmsfs::fsck {

namespace {

constexpr uint64_t kChunkBytes = 1 << 20;

// CryptFile names path, file id and block in front of the reason; the report has those
// in fields of their own.
std::string reason(const Status& s, uint64_t block) {
  const std::string& m = s.message();
  const std::string marker = " block " + std::to_string(block) + ": ";
  const size_t at = m.find(marker);
  return at == std::string::npos ? m : m.substr(at + marker.size());
}

}  // namespace

BlockScan scan_blocks(CryptFile& f, uint64_t backing_size, size_t max_listed) {
  BlockScan out;
  const Layout& layout = f.layout();
  const uint64_t bs = layout.block_size;
  const uint64_t p = f.size();
  const uint64_t n = layout.block_count(p);
  auto note = [&](uint64_t block, const Status& s) {
    ++out.bad_total;
    if (out.bad.size() < max_listed) out.bad.push_back({block, reason(s, block)});
  };
  const uint64_t per_chunk = std::max<uint64_t>(1, kChunkBytes / bs);
  Bytes buf(static_cast<size_t>(std::min(per_chunk * bs, std::max<uint64_t>(p, 1))));
  // One read per chunk; only a chunk that fails is read again block by block, to name
  // every bad block in it and not just the first.
  for (uint64_t first = 0; p > 0 && first < n; first += per_chunk) {
    const uint64_t off = first * bs;
    const uint64_t len = std::min(per_chunk * bs, p - off);
    if (f.read(MutableByteSpan(buf.data(), static_cast<size_t>(len)), off).ok()) continue;
    for (uint64_t i = first; i < std::min(n, first + per_chunk); ++i) {
      const uint64_t block_len = std::min(bs, p - i * bs);
      Status s = f.read(MutableByteSpan(buf.data(), static_cast<size_t>(block_len)), i * bs).status();
      if (!s.ok()) note(i, s);
    }
  }
  const bool well_formed = layout.plaintext_size(backing_size).well_formed;
  // A read at EOF authenticates the final block; it is the only block an empty file has,
  // and what finds a file cut at a block boundary.
  if (p == 0 || !well_formed) {
    uint8_t byte = 0;
    Status s = f.read(MutableByteSpan(&byte, 1), p).status();
    if (!s.ok() && well_formed) note(n - 1, s);
    if (!s.ok() && !well_formed) {
      out.truncated = true;
      out.truncated_why = reason(s, n);
    }
  }
  if (!well_formed && !out.truncated) {
    out.truncated = true;
    out.truncated_why = "file ends inside a block or has no final block";
  }
  return out;
}

}  // namespace kmsfs::fsck
