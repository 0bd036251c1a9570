#include "cli/file_stream.h"

#include <algorithm>
#include <vector>

namespace kmsfs::cli {

namespace {

// The block a failed read at EOF is about: one past the last when the backing size is not
// one a kmsfs file can have (truncated), else the final block.
uint64_t tail_block(CryptFile& f, uint64_t size) {
  const Layout& l = f.layout();
  uint64_t last = l.block_count(size) - 1;
  auto bsize = f.backing().size();
  if (bsize.ok() && !l.plaintext_size(*bsize).well_formed) return last + 1;
  return last;
}

// A file cut inside a block has a size no kmsfs file can have; the block that then fails
// (the one the cut made look final) says so.
Status explain_truncation(CryptFile& f, Status s) {
  auto bsize = f.backing().size();
  if (s.code() != Code::kCorrupt || !bsize.ok() || f.layout().plaintext_size(*bsize).well_formed) return s;
  if (s.message().find("truncated") != std::string::npos) return s;
  return Status(s.code(), s.message() + " (the backing file's size is not one a kmsfs file can have: truncated?)",
                s.sys_errno());
}

StreamResult stream_with_blocks(CryptFile& f, const std::function<Status(ByteSpan)>& sink) {
  StreamResult r;
  const uint64_t size = f.size();
  const uint64_t bs = f.layout().block_size;
  std::vector<uint8_t> buf(kStreamChunk);
  uint64_t off = 0;
  for (;;) {
    auto n = f.read(buf, off);
    if (n.ok()) {
      if (*n == 0) return r;  // EOF, final block authenticated
      r.status = sink({buf.data(), *n});
      if (!r.status.ok()) return r;
      r.bytes += *n;
      off += *n;
      continue;
    }
    if (off >= size) {
      r.status = n.status();
      r.bad_block = tail_block(f, size);
      return r;
    }
    // Find the bad block, passing on the good ones before it.
    const uint64_t end = std::min<uint64_t>(off + kStreamChunk, size);
    for (uint64_t b = off; b < end; b += bs) {
      const size_t len = static_cast<size_t>(std::min<uint64_t>(bs, end - b));
      auto m = f.read({buf.data(), len}, b);
      if (!m.ok()) {
        r.status = m.status();
        r.bad_block = b / bs;
        return r;
      }
      r.status = sink({buf.data(), *m});
      if (!r.status.ok()) return r;
      r.bytes += *m;
    }
    // Every block read fine on its own (the chunk's error was transient): go on.
    off = end;
  }
}

}  // namespace

StreamResult stream_plaintext(CryptFile& f, const std::function<Status(ByteSpan)>& sink) {
  StreamResult r = stream_with_blocks(f, sink);
  if (r.bad_block) r.status = explain_truncation(f, std::move(r.status));
  return r;
}

}  // namespace kmsfs::cli
