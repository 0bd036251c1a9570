#include "format/layout.h"

namespace kmsfs {

uint64_t Layout::plain_len(uint64_t p, uint64_t i) const {
  uint64_t n = block_count(p);
  if (i + 1 < n) return block_size;
  if (i + 1 > n) return 0;
  return p - i * block_size;
}

uint64_t Layout::ciphertext_size(uint64_t p) const {
  uint64_t n = block_count(p);
  return block_offset(n - 1) + plain_len(p, n - 1) + overhead;
}

Layout::Decoded Layout::plaintext_size(uint64_t backing_size) const {
  if (backing_size < header_size + overhead) return {0, false};
  uint64_t body = backing_size - header_size;
  uint64_t full = body / sealed_block_size();
  uint64_t rest = body % sealed_block_size();
  if (rest == 0) return {full * block_size, true};  // full >= 1 here
  if (rest > overhead) return {full * block_size + (rest - overhead), true};
  if (rest == overhead && full == 0) return {0, true};  // the empty final block
  // A tail shorter than a sealed block's overhead: nothing decryptable there.
  return {full * block_size, false};
}

}  // namespace kmsfs
