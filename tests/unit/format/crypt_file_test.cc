#include "format/crypt_file.h"

#include <gtest/gtest.h>

#include <thread>

#include "crypto/kdf.h"
#include "format/block_codec.h"
#include "format/header.h"
#include "format_fixture.h"

namespace kmsfs {
namespace {

using testing::pattern;
using testing::read_all;
using testing::TestFile;

constexpr uint64_t B = 4096;
constexpr uint64_t S = B + kAeadOverhead;
constexpr uint64_t H = header::kSize;
const Layout kLayout{H, B, 40};

Result<Bytes> read_range(CryptFile& f, uint64_t off, size_t len) {
  Bytes out(len);
  ASSIGN_OR_RETURN(size_t n, f.read(out, off));
  out.resize(n);
  return out;
}

TEST(CryptFile, EmptyFileIsOneSealedFinalBlock) {
  TestFile t;
  EXPECT_EQ(t.file->size(), 0u);
  EXPECT_EQ(*t.backing->size(), H + kAeadOverhead);
  auto f = t.reopen();
  ASSERT_TRUE(f.ok()) << f.status().message();
  EXPECT_EQ((*f)->size(), 0u);
  EXPECT_TRUE(read_all(**f).ok());
}

TEST(CryptFile, WriteReadAcrossBlocksAndReopen) {
  for (CipherId c : {CipherId::kAes256Gcm, CipherId::kXChaCha20Poly1305}) {
    TestFile t(c);
    Bytes data = pattern(3 * B + 17, 1);
    ASSERT_TRUE(t.file->write(data, 0).ok());
    EXPECT_EQ(t.file->size(), data.size());
    EXPECT_EQ(*t.backing->size(), H + 3 * S + 17 + kAeadOverhead);
    EXPECT_EQ(*read_all(*t.file), data);
    // Unaligned overwrite in the middle, spanning a block boundary.
    Bytes patch = pattern(100, 2);
    ASSERT_TRUE(t.file->write(patch, B - 50).ok());
    std::copy(patch.begin(), patch.end(), data.begin() + (B - 50));
    EXPECT_EQ(*read_all(*t.file), data);
    Bytes window(data.begin() + (B - 60), data.begin() + (B + 60));
    EXPECT_EQ(*read_range(*t.file, B - 60, 120), window);
    auto f = t.reopen();
    ASSERT_TRUE(f.ok());
    EXPECT_EQ(*read_all(**f), data);
  }
}

TEST(CryptFile, PlaintextNeverReachesTheBackingFile) {
  TestFile t;
  std::string secret = "the quarterly payroll is 1234567";
  Bytes data;
  for (int i = 0; i < 200; ++i) data.insert(data.end(), secret.begin(), secret.end());
  ASSERT_TRUE(t.file->write(data, 0).ok());
  Bytes raw = t.backing->peek(0, *t.backing->size());
  std::string hay(raw.begin(), raw.end());
  EXPECT_EQ(hay.find("payroll"), std::string::npos);
}

TEST(CryptFile, WritePastEofSmallGapReadsZerosAndIsSealed) {
  TestFile t;
  ASSERT_TRUE(t.file->write(pattern(10, 1), 0).ok());
  ASSERT_TRUE(t.file->write(pattern(10, 2), 5 * B + 3).ok());
  Bytes got = *read_all(*t.file);
  ASSERT_EQ(got.size(), 5 * B + 13);
  EXPECT_TRUE(std::all_of(got.begin() + 10, got.begin() + 5 * B + 3, [](uint8_t c) { return c == 0; }));
  EXPECT_TRUE(t.file->sparse().empty());  // small gaps are sealed zeros, not holes
  // So zeroing a gap block on disk is detected.
  t.backing->poke(H + 2 * S, Bytes(S, 0));
  auto r = read_range(*t.file, 2 * B, 10);
  EXPECT_EQ(r.status().code(), Code::kCorrupt);
}

TEST(CryptFile, LargeGapIsAnAuthenticatedHole) {
  TestFile t;
  ASSERT_TRUE(t.file->write(pattern(10, 1), 0).ok());
  ASSERT_TRUE(t.file->write(pattern(10, 2), 10 * (1 << 20)).ok());
  ASSERT_EQ(t.file->sparse().ranges().size(), 1u);
  EXPECT_EQ(t.file->sparse().ranges()[0], (BlockRange{1, 10 * 256}));
  EXPECT_LT(t.backing->chunks(), 8u);  // nothing written for the hole
  auto f = t.reopen();
  ASSERT_TRUE(f.ok());
  auto mid = read_range(**f, 5 << 20, 8192);
  ASSERT_TRUE(mid.ok()) << mid.status().message();
  EXPECT_EQ(*mid, Bytes(8192, 0));
  // A write into the hole seals that block; zeroing it later is then not a "hole" at
  // this format version (documented: it reads as zeros, an older state of the block).
  ASSERT_TRUE((*f)->write(pattern(100, 3), (5 << 20) + 10).ok());
  EXPECT_EQ(*read_range(**f, (5 << 20) + 10, 100), pattern(100, 3));
}

TEST(CryptFile, TruncateToATerabyteWritesAlmostNothing) {
  TestFile t;
  ASSERT_TRUE(t.file->write(pattern(5000, 1), 0).ok());
  const uint64_t T = 1ull << 40;
  ASSERT_TRUE(t.file->truncate(T).ok());
  EXPECT_EQ(t.file->size(), T);
  EXPECT_EQ(*t.backing->size(), kLayout.ciphertext_size(T));
  EXPECT_LT(t.backing->chunks(), 8u);
  EXPECT_EQ(*read_range(*t.file, T / 2, 4096), Bytes(4096, 0));
  EXPECT_EQ(*read_range(*t.file, T - 100, 4096), Bytes(100, 0));
  EXPECT_EQ(*read_range(*t.file, 0, 5000), pattern(5000, 1));
  auto f = t.reopen();
  ASSERT_TRUE(f.ok());
  EXPECT_EQ((*f)->size(), T);
  EXPECT_EQ(*read_range(**f, 4096 + 904, 100), Bytes(100, 0));
  // Truncating back down clips the hole away.
  ASSERT_TRUE((*f)->truncate(6000).ok());
  EXPECT_TRUE((*f)->sparse().empty());
  Bytes want = pattern(5000, 1);
  want.resize(6000, 0);
  EXPECT_EQ(*read_all(**f), want);
}

TEST(CryptFile, FilesPastFourGiB) {
  TestFile t;
  const uint64_t off = (5ull << 30) - 123;
  Bytes data = pattern(3 * B, 9);
  ASSERT_TRUE(t.file->write(data, off).ok());
  EXPECT_EQ(t.file->size(), off + data.size());
  EXPECT_EQ(*read_range(*t.file, off, data.size()), data);
  EXPECT_EQ(*read_range(*t.file, 4ull << 30, 64), Bytes(64, 0));
  auto f = t.reopen();
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(*read_range(**f, off - 10, 20), [&] {
    Bytes w(10, 0);
    w.insert(w.end(), data.begin(), data.begin() + 10);
    return w;
  }());
}

// A slot's seq is not authenticated: one set near 2^64 by whoever writes the backing
// store would make the next slot write wrap to a low seq that loses to the stale slot
// (the update silently undone at the next open). The write is refused instead; what the
// file holds stays readable.
TEST(CryptFile, ASlotSeqAtItsLimitRefusesTheWriteInsteadOfWrapping) {
  TestFile t;
  ASSERT_TRUE(t.file->write(pattern(5000, 3), 0).ok());
  Bytes slot = t.backing->peek(header::kSlotOffset[1], header::kSlotSize);
  const uint64_t seq = ~uint64_t{0} - 1;
  for (int i = 0; i < 8; ++i) slot[8 + i] = static_cast<uint8_t>(seq >> (8 * i));
  const Digest32 sum = sha256({slot.data(), header::kSlotSize - 32});
  std::copy(sum.begin(), sum.end(), slot.end() - 32);
  t.backing->poke(header::kSlotOffset[1], slot);
  auto f = t.reopen();
  ASSERT_TRUE(f.ok()) << f.status().message();
  const Status grown = (*f)->truncate(uint64_t{1} << 30);  // a hole: a new file state, a slot write
  ASSERT_FALSE(grown.ok());
  EXPECT_EQ(grown.code(), Code::kCorrupt) << grown.message();
  EXPECT_NE(grown.message().find("at its limit"), std::string::npos) << grown.message();
  auto again = t.reopen();
  ASSERT_TRUE(again.ok()) << again.status().message();
  EXPECT_EQ(*read_range(**again, 0, 5000), pattern(5000, 3));
}

TEST(CryptFile, TruncateDownAndUpKeepsContent) {
  TestFile t;
  Bytes data = pattern(10 * B + 5, 4);
  ASSERT_TRUE(t.file->write(data, 0).ok());
  for (uint64_t sz : {7 * B + 1, 7 * B, 7 * B - 1, B + 1, B, B - 1, uint64_t{1}, uint64_t{0}}) {
    ASSERT_TRUE(t.file->truncate(sz).ok());
    data.resize(sz);
    ASSERT_EQ(*read_all(*t.file), data) << sz;
    EXPECT_EQ(*t.backing->size(), kLayout.ciphertext_size(sz));
    auto f = t.reopen();
    ASSERT_TRUE(f.ok());
    ASSERT_EQ(*read_all(**f), data) << sz;
  }
  ASSERT_TRUE(t.file->truncate(3 * B + 7).ok());
  data.resize(3 * B + 7, 0);
  EXPECT_EQ(*read_all(*t.file), data);
}

// Tamper tests: every single-bit flip in a sealed block (nonce, ciphertext, tag) fails the
// read of that block with kCorrupt naming the file and block; other blocks still read.
TEST(CryptFile, EverySingleBitFlipInABlockIsDetected) {
  TestFile t(CipherId::kAes256Gcm, 1024);
  const uint64_t b = 1024, s = b + 40;
  Bytes data = pattern(3 * b, 5);
  ASSERT_TRUE(t.file->write(data, 0).ok());
  const uint64_t off = H + s;  // block 1
  const Bytes clean = t.backing->peek(off, s);
  for (size_t byte = 0; byte < s; ++byte) {
    for (int bit = 0; bit < 8; ++bit) {
      Bytes bad = clean;
      bad[byte] ^= uint8_t(1u << bit);
      t.backing->poke(off, bad);
      auto r = read_range(*t.file, b + 10, 10);
      ASSERT_EQ(r.status().code(), Code::kCorrupt) << "byte " << byte << " bit " << bit;
    }
  }
  t.backing->poke(off, clean);
  Bytes bad = clean;
  bad[100] ^= 1;
  t.backing->poke(off, bad);
  auto r = read_range(*t.file, 0, 3 * b);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("/vault/f: file " + to_hex(t.header.file_id) + " block 1"),
            std::string::npos)
      << r.status().message();
  Bytes b0(data.begin(), data.begin() + b), b2(data.begin() + 2 * b, data.end());
  EXPECT_EQ(*read_range(*t.file, 0, b), b0);
  EXPECT_EQ(*read_range(*t.file, 2 * b, b), b2);
}

TEST(CryptFile, BlocksCannotMoveBetweenPositionsOrFiles) {
  TestFile t, other;
  Bytes data = pattern(4 * B, 6);
  ASSERT_TRUE(t.file->write(data, 0).ok());
  ASSERT_TRUE(other.file->write(data, 0).ok());
  // Swap blocks 1 and 2.
  Bytes b1 = t.backing->peek(H + S, S), b2 = t.backing->peek(H + 2 * S, S);
  t.backing->poke(H + S, b2);
  t.backing->poke(H + 2 * S, b1);
  EXPECT_EQ(read_range(*t.file, B, 10).status().code(), Code::kCorrupt);
  EXPECT_EQ(read_range(*t.file, 2 * B, 10).status().code(), Code::kCorrupt);
  t.backing->poke(H + S, b1);
  t.backing->poke(H + 2 * S, b2);
  // Same position, other file (same plaintext, other file id / DEK).
  t.backing->poke(H + S, other.backing->peek(H + S, S));
  EXPECT_EQ(read_range(*t.file, B, 10).status().code(), Code::kCorrupt);
}

TEST(CryptFile, ZeroedBlockIsDetected) {
  TestFile t;
  ASSERT_TRUE(t.file->write(pattern(4 * B, 7), 0).ok());
  t.backing->poke(H + S, Bytes(S, 0));
  EXPECT_EQ(read_range(*t.file, B, B).status().code(), Code::kCorrupt);
  auto f = t.reopen();
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(read_range(**f, B, B).status().code(), Code::kCorrupt);
}

// A partial write must read-modify-write through the same checks: it may not launder a
// zeroed block into a freshly sealed one.
TEST(CryptFile, PartialWriteIntoDamagedBlockFails) {
  TestFile t;
  ASSERT_TRUE(t.file->write(pattern(4 * B, 7), 0).ok());
  t.backing->poke(H + S, Bytes(S, 0));
  EXPECT_EQ(t.file->write(pattern(10, 1), B + 5).code(), Code::kCorrupt);
  Bytes flipped = t.backing->peek(H + 2 * S, S);
  flipped[77] ^= 4;
  t.backing->poke(H + 2 * S, flipped);
  EXPECT_EQ(t.file->truncate(2 * B + 100).code(), Code::kCorrupt);
}

TEST(CryptFile, TruncationAtABlockBoundaryIsDetected) {
  TestFile t;
  ASSERT_TRUE(t.file->write(pattern(4 * B, 8), 0).ok());
  // Cut after block 1: block 1 is now last but was not sealed as final.
  ASSERT_TRUE(t.backing->truncate(H + 2 * S).ok());
  auto f = t.reopen();
  ASSERT_TRUE(f.ok());
  EXPECT_EQ((*f)->size(), 2 * B);
  Bytes all = pattern(4 * B, 8);
  Bytes first_block(all.begin(), all.begin() + B);
  EXPECT_EQ(read_range(**f, 0, B).value(), first_block);
  EXPECT_EQ(read_range(**f, B, B).status().code(), Code::kCorrupt);
  EXPECT_EQ(read_range(**f, 2 * B, 1).status().code(), Code::kCorrupt);  // EOF read checks the tail
}

TEST(CryptFile, CutBackToTheHeaderIsDetected) {
  TestFile t;
  ASSERT_TRUE(t.file->write(pattern(100, 8), 0).ok());
  ASSERT_TRUE(t.backing->truncate(H).ok());
  auto f = t.reopen();
  ASSERT_TRUE(f.ok());
  EXPECT_EQ((*f)->size(), 0u);
  EXPECT_EQ(read_range(**f, 0, 10).status().code(), Code::kCorrupt);
  // ...and so is an empty final block pasted from another file.
  TestFile other;
  t.backing->poke(H, other.backing->peek(H, 40));
  f = t.reopen();
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(read_range(**f, 0, 10).status().code(), Code::kCorrupt);
}

TEST(CryptFile, ZeroedBlockInsideAHoleReadsZerosButNotOutside) {
  TestFile t;
  ASSERT_TRUE(t.file->write(pattern(B, 1), 0).ok());
  ASSERT_TRUE(t.file->truncate(100 << 20).ok());
  ASSERT_FALSE(t.file->sparse().empty());
  EXPECT_EQ(*read_range(*t.file, 50 << 20, 100), Bytes(100, 0));
  t.backing->poke(H, Bytes(S, 0));  // block 0 is data, not a hole
  EXPECT_EQ(read_range(*t.file, 0, 100).status().code(), Code::kCorrupt);
}

// The crash window the format is designed around: the file was extended (new blocks and
// the new final block are on disk) but the old last block was not yet re-sealed as
// non-final. That block is intact and holds fsync'ed data, so it must still read.
TEST(CryptFile, StaleFinalFlagAfterCrashIsTolerated) {
  TestFile t;
  Bytes first = pattern(2 * B, 1);
  ASSERT_TRUE(t.file->write(first, 0).ok());
  const Bytes old_last = t.backing->peek(H + S, S);  // block 1, sealed final
  Bytes more = pattern(2 * B, 2);
  ASSERT_TRUE(t.file->write(more, 2 * B).ok());
  t.backing->poke(H + S, old_last);  // as if the re-seal never reached the disk
  auto f = t.reopen();
  ASSERT_TRUE(f.ok());
  Bytes want = first;
  want.insert(want.end(), more.begin(), more.end());
  EXPECT_EQ(*read_all(**f), want);
}

TEST(CryptFile, ConcurrentWritersOnDisjointBlocksAndReaders) {
  TestFile t;
  constexpr int kThreads = 6;
  constexpr uint64_t kPer = 32 * B;
  ASSERT_TRUE(t.file->truncate(kThreads * kPer).ok());
  std::vector<std::thread> threads;
  std::atomic<int> errors{0};
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&, i] {
      for (int round = 0; round < 20; ++round) {
        // Unaligned writes inside this thread's region, so neighbouring threads share
        // blocks only at region edges, which are aligned.
        Bytes d = pattern(3000, i * 100 + round);
        uint64_t off = i * kPer + (round * 1237) % (kPer - 3000);
        if (!t.file->write(d, off).ok()) errors++;
        auto r = read_range(*t.file, off, d.size());
        if (!r.ok() || *r != d) errors++;
      }
    });
  }
  threads.emplace_back([&] {
    for (int round = 0; round < 50; ++round)
      if (!read_range(*t.file, 0, kThreads * kPer).ok()) errors++;
  });
  for (auto& th : threads) th.join();
  EXPECT_EQ(errors.load(), 0);
}

TEST(CryptFile, ConcurrentAppendsAndOverlappingWritesStayConsistent) {
  TestFile t;
  std::vector<std::thread> threads;
  for (int i = 0; i < 4; ++i)
    threads.emplace_back([&, i] {
      for (int round = 0; round < 50; ++round) {
        Bytes d(777, static_cast<uint8_t>(i + 1));
        ASSERT_TRUE(t.file->write(d, (round * 4 + i) * 500).ok());
      }
    });
  for (auto& th : threads) th.join();
  // Every byte is one some writer wrote (never a mix inside a torn block, never garbage).
  auto all = read_all(*t.file);
  ASSERT_TRUE(all.ok()) << all.status().message();
  for (uint8_t c : *all) ASSERT_TRUE(c >= 1 && c <= 4);
  auto f = t.reopen();
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(*read_all(**f), *all);
}

}  // namespace
}  // namespace kmsfs

namespace kmsfs {
namespace {

// The same crash window for a partial old last block: the file grew, the new blocks are
// on disk, but the old last block's re-seal (now a full block) never landed, so its slot
// holds the old short sealed block followed by zeros. The fsync'ed prefix must read back;
// the never-written rest of that block reads as zeros.
TEST(CryptFile, PartialLastBlockSurvivesCrashBeforeItsReseal) {
  for (uint64_t old_len : {uint64_t{1}, uint64_t{100}, uint64_t{4000}, uint64_t{4095}}) {
    TestFile t;
    Bytes first = pattern(B + old_len, old_len);
    ASSERT_TRUE(t.file->write(first, 0).ok());
    const Bytes old_last = t.backing->peek(H + S, old_len + kAeadOverhead);  // block 1, partial
    Bytes more = pattern(3 * B, 2);
    ASSERT_TRUE(t.file->write(more, 2 * B).ok());
    Bytes crashed = old_last;
    crashed.resize(S, 0);
    t.backing->poke(H + S, crashed);
    auto f = t.reopen();
    ASSERT_TRUE(f.ok());
    Bytes want = first;
    want.resize(2 * B, 0);
    want.insert(want.end(), more.begin(), more.end());
    auto got = read_all(**f);
    ASSERT_TRUE(got.ok()) << old_len << ": " << got.status().message();
    EXPECT_EQ(*got, want) << old_len;
    // Garbage instead of zeros after the old block is not a crash leftover: EIO.
    Bytes garbage = crashed;
    garbage[S - 1] = 0x5a;
    t.backing->poke(H + S, garbage);
    f = t.reopen();
    EXPECT_EQ(read_range(**f, B, 10).status().code(), Code::kCorrupt);
  }
}

}  // namespace
}  // namespace kmsfs
