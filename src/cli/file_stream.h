// Reads a whole CryptFile in order, authenticated, for `cat` (to stdout) and
// `inspect --keyring` (to nowhere). Only authenticated bytes reach the sink: a damaged
// block stops the stream before any of its bytes, and is named.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>

#include "base/bytes.h"
#include "base/status.h"
#include "format/crypt_file.h"

namespace kmsfs::cli {

constexpr size_t kStreamChunk = size_t{1} << 20;  // a multiple of every valid block size

struct StreamResult {
  Status status;                        // the first read or sink failure
  std::optional<uint64_t> bad_block;    // the block that failed to read, if one did
  uint64_t bytes = 0;                   // plaintext bytes handed to the sink
};

// Reads in kStreamChunk pieces. When a chunk fails, re-reads it block by block so every
// good block before the bad one still reaches the sink. Ends with a read at EOF, which
// authenticates the final block (catching truncation).
StreamResult stream_plaintext(CryptFile& f, const std::function<Status(ByteSpan)>& sink);

}  // namespace kmsfs::cli
