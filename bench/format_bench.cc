// The encrypted-file engine without FUSE or disk: CryptFile over an in-memory backing
// file. Shows what the format itself costs per operation, and what the integrity rules
// cost: an append re-seals the old last block (so a cut at a block boundary is detected),
// measured against an overwrite of the same size that re-seals nothing extra.
#include <benchmark/benchmark.h>

#include <cstdlib>

#include "crypto/random.h"
#include "format/crypt_file.h"
#include "format/file_keys.h"

namespace kmsfs {
namespace {

std::unique_ptr<CryptFile> make_file(std::shared_ptr<MemoryBackingFile>& backing) {
  backing = std::make_shared<MemoryBackingFile>();
  SecureBuffer dek(32);
  random_bytes(dek.span());
  FileHeader h;
  random_bytes(h.file_id);
  (void)h.context.set("kmsfs:file-id", to_hex(h.file_id));
  HeaderSlot s;
  s.key = KeyRef{ProviderId::kKeyring, "main", 1};
  s.wrapped_dek = Bytes(73, 1);
  h.slots[0] = s;
  auto keys = FileKeys::derive(h.cipher, dek.span(), h.file_id);
  auto f = CryptFile::create(backing, h, *keys, {});
  if (!f.ok()) std::abort();
  return std::move(f).value();
}

// Sequential writes of `range(0)` bytes, growing the file.
void BM_Append(benchmark::State& state) {
  std::shared_ptr<MemoryBackingFile> backing;
  auto f = make_file(backing);
  Bytes buf(static_cast<size_t>(state.range(0)), 7);
  uint64_t off = 0;
  for (auto _ : state) {
    if (off > (256u << 20)) {
      state.PauseTiming();
      f = make_file(backing);
      off = 0;
      state.ResumeTiming();
    }
    if (!f->write(buf, off).ok()) state.SkipWithError("write");
    off += buf.size();
  }
  state.SetBytesProcessed(int64_t(state.iterations()) * state.range(0));
}

// Overwrites inside an existing file: no size change, no extra re-seal.
void BM_Overwrite(benchmark::State& state) {
  std::shared_ptr<MemoryBackingFile> backing;
  auto f = make_file(backing);
  const uint64_t file_size = 64u << 20;
  Bytes fill(1 << 20, 1);
  for (uint64_t o = 0; o < file_size; o += fill.size()) (void)f->write(fill, o);
  Bytes buf(static_cast<size_t>(state.range(0)), 7);
  uint64_t off = 0;
  for (auto _ : state) {
    if (off + buf.size() > file_size) off = 0;
    if (!f->write(buf, off).ok()) state.SkipWithError("write");
    off += buf.size();
  }
  state.SetBytesProcessed(int64_t(state.iterations()) * state.range(0));
}

void BM_SequentialRead(benchmark::State& state) {
  std::shared_ptr<MemoryBackingFile> backing;
  auto f = make_file(backing);
  const uint64_t file_size = 64u << 20;
  Bytes fill(1 << 20, 1);
  for (uint64_t o = 0; o < file_size; o += fill.size()) (void)f->write(fill, o);
  Bytes buf(static_cast<size_t>(state.range(0)));
  uint64_t off = 0;
  for (auto _ : state) {
    if (off + buf.size() > file_size) off = 0;
    auto n = f->read(buf, off);
    if (!n.ok()) state.SkipWithError("read");
    off += buf.size();
  }
  state.SetBytesProcessed(int64_t(state.iterations()) * state.range(0));
}

void BM_RandomRead4K(benchmark::State& state) {
  std::shared_ptr<MemoryBackingFile> backing;
  auto f = make_file(backing);
  const uint64_t file_size = 64u << 20;
  Bytes fill(1 << 20, 1);
  for (uint64_t o = 0; o < file_size; o += fill.size()) (void)f->write(fill, o);
  Bytes buf(4096);
  for (auto _ : state) {
    uint64_t off = random_uniform(file_size / 4096) * 4096;
    if (!f->read(buf, off).ok()) state.SkipWithError("read");
  }
  state.SetBytesProcessed(int64_t(state.iterations()) * 4096);
}

BENCHMARK(BM_Append)->Arg(4096)->Arg(128 << 10)->Arg(1 << 20);
BENCHMARK(BM_Overwrite)->Arg(4096)->Arg(128 << 10)->Arg(1 << 20);
BENCHMARK(BM_SequentialRead)->Arg(128 << 10)->Arg(1 << 20);
BENCHMARK(BM_RandomRead4K);

}  // namespace
}  // namespace kmsfs

BENCHMARK_MAIN();
