// Plaintext <-> ciphertext offset math. Pure arithmetic on the three constants of a file
// (header size, block size, per-block overhead), so stat needs no header read.
//
// Every file has at least one block: an empty file is one sealed, empty, final block.
// That makes "cut back to just the header" detectable like any other truncation.
#pragma once

#include <cstdint>

#include "crypto/aead.h"

namespace kmsfs {

struct Layout {
  uint64_t header_size = 4096;
  uint64_t block_size = 4096;
  uint64_t overhead = kAeadOverhead;  // nonce + tag per block

  // The layout of files with these sizes (from a header or the vault config).
  static Layout of(uint64_t header_size, uint64_t block_size) {
    return Layout{header_size, block_size, kAeadOverhead};
  }

  uint64_t sealed_block_size() const { return block_size + overhead; }
  // Number of blocks a file of plaintext size p has (>= 1).
  uint64_t block_count(uint64_t p) const { return p == 0 ? 1 : (p + block_size - 1) / block_size; }
  // Plaintext length of block i in a file of size p (0 for the empty final block).
  uint64_t plain_len(uint64_t p, uint64_t i) const;
  uint64_t block_offset(uint64_t i) const { return header_size + i * sealed_block_size(); }
  uint64_t ciphertext_size(uint64_t p) const;

  struct Decoded {
    uint64_t plain_size = 0;
    // False when the backing size is not one a kmsfs file can have (torn or truncated
    // inside a block, or no final block): reads of the tail then fail with EIO.
    bool well_formed = false;
  };
  Decoded plaintext_size(uint64_t backing_size) const;
};

}  // namespace kmsfs
