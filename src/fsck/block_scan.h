// Reads every content block of an opened file and names the ones that do not
// authenticate: a damaged block is listed and the scan goes on past it, as the mount
// serves the blocks around a bad one.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "format/crypt_file.h"

namespace kmsfs::fsck {

struct BadBlock {
  uint64_t block = 0;
  std::string why;  // the reason alone: the caller names path and file id
};

struct BlockScan {
  std::vector<BadBlock> bad;  // in block order, at most `max_listed`
  uint64_t bad_total = 0;
  // The backing size is one no kmsfs file can have: cut inside a block or before its
  // final block (FORMAT.md §5.3). The blocks before the cut are checked all the same.
  bool truncated = false;
  std::string truncated_why;
};

BlockScan scan_blocks(CryptFile& f, uint64_t backing_size, size_t max_listed);

}  // namespace kmsfs::fsck
