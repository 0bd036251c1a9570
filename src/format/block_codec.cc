#include "format/block_codec.h"

#include <algorithm>

namespace kmsfs {

std::array<uint8_t, kBlockAadSize> block_aad(const FileId& id, uint64_t index, bool final) {
  std::array<uint8_t, kBlockAadSize> aad{};
  std::copy(id.begin(), id.end(), aad.begin());
  put_le64(&aad[16], index);
  aad[24] = final ? 1 : 0;
  return aad;
}

Status seal_block(const Aead& aead, const FileId& id, uint64_t index, bool final, ByteSpan pt,
                  MutableByteSpan out) {
  auto aad = block_aad(id, index, final);
  return aead.seal(pt, aad, out);
}

Status open_block(const Aead& aead, const FileId& id, uint64_t index, bool is_last, ByteSpan ct,
                  MutableByteSpan out) {
  auto aad = block_aad(id, index, is_last);
  Status s = aead.open(ct, aad, out);
  if (s.ok() || is_last) return s;
  auto stale_final = block_aad(id, index, true);
  if (aead.open(ct, stale_final, out).ok()) return Status::Ok();
  // A crash between growing the file and re-sealing its old, partial last block leaves
  // that block's old sealed bytes followed by never-written zeros. Find where the old
  // block ends (its tag may itself end in zero bytes, hence the short search) and accept
  // it only as an authentic final block; the unwritten rest reads as zeros.
  size_t end = ct.size();
  while (end > 0 && ct[end - 1] == 0) --end;
  const size_t max_len = std::min(ct.size() - 1, end + kAeadTagSize);
  for (size_t len = std::max(end, kAeadOverhead); len <= max_len; ++len) {
    MutableByteSpan head = out.first(len - kAeadOverhead);
    if (aead.open(ct.first(len), stale_final, head).ok()) {
      std::fill(out.begin() + static_cast<long>(head.size()), out.end(), 0);
      return Status::Ok();
    }
  }
  std::fill(out.begin(), out.end(), 0);
  return s;
}

}  // namespace kmsfs
