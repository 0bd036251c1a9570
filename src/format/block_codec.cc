#include "format/block_codec.h"

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
  return aead.open(ct, stale_final, out);
}

}  // namespace kmsfs
