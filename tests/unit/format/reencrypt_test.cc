// Online re-encryption at the format layer (FORMAT.md §3.9): a file keeps reading and
// writing correctly at every watermark, holes stay holes, a reopen mid-way needs both
// keys, and once finished the file opens under the new DEK alone.
#include <gtest/gtest.h>

#include <climits>
#include <filesystem>

#include "format_fixture.h"
#include "temp_dir.h"

namespace kmsfs::testing {
namespace {

struct Reencrypting : TestFile {
  SecureBuffer next_dek{32};
  std::shared_ptr<const FileKeys> next;
  TempDir dir{"kmsfs-reenc"};
  std::optional<ReencryptJournal> journal;
  ReencryptRunId run{1, 2, 3, 4, 5, 6, 7, 8};

  Reencrypting() {
    random_bytes(next_dek.span());
    next = *FileKeys::derive(header.cipher, next_dek.span(), header.file_id);
    journal.emplace(*ReencryptJournal::open(dir.path() + "/kmsfs.journal"));
  }
  Status begin() { return file->begin_reencrypt(Bytes(73, 0xcd), next, run); }
  // Steps until finished; returns the number of steps.
  int finish(uint64_t blocks = 3) {
    for (int n = 1;; ++n) {
      auto p = file->reencrypt_step(*journal, "f", blocks);
      EXPECT_TRUE(p.ok()) << p.status().message();
      if (!p.ok() || p->finished) return n;
    }
  }
  Result<std::unique_ptr<CryptFile>> open_with(std::shared_ptr<const FileKeys> k, std::shared_ptr<const FileKeys> n) {
    Bytes raw = backing->peek(0, header::kSize);
    ASSIGN_OR_RETURN(FileHeader h, parse_header(raw));
    return CryptFile::open(backing, std::move(h), k, {}, n);
  }
};

void expect_reads(CryptFile& f, const Bytes& model) {
  auto got = read_all(f);
  ASSERT_TRUE(got.ok()) << got.status().message();
  ASSERT_EQ(got->size(), model.size());
  EXPECT_TRUE(*got == model);
}

TEST(Reencrypt, EveryBlockMovesToTheNewKeyAndTheOldKeyNoLongerOpensTheFile) {
  Reencrypting t;
  Bytes model = pattern(100 * 1024 + 17, 1);
  ASSERT_TRUE(t.file->write(model, 0).ok());
  const Bytes before = t.backing->peek(t.file->layout().block_offset(0), 4096 + 28);
  ASSERT_TRUE(t.begin().ok());
  EXPECT_TRUE(t.file->reencrypting());
  t.finish();
  EXPECT_FALSE(t.file->reencrypting());
  expect_reads(*t.file, model);
  EXPECT_NE(t.backing->peek(t.file->layout().block_offset(0), 4096 + 28), before);
  // Remounted: the new DEK alone opens it; the old one fails the header MAC.
  auto fresh = t.open_with(t.next, nullptr);
  ASSERT_TRUE(fresh.ok()) << fresh.status().message();
  expect_reads(**fresh, model);
  EXPECT_EQ(t.open_with(t.keys, nullptr).status().code(), Code::kCorrupt);
  FileHeader h = *parse_header(t.backing->peek(0, header::kSize));
  for (const auto& s : h.slots) {
    ASSERT_TRUE(s);
    EXPECT_FALSE(s->reencrypt);
    EXPECT_EQ(s->wrapped_dek, Bytes(73, 0xcd));
    EXPECT_EQ(s->dek_run, t.run);
  }
}

TEST(Reencrypt, HolesStayHolesAndSparseStateMovesToTheNewKey) {
  Reencrypting t;
  Bytes head = pattern(10000, 2), tail = pattern(5000, 3);
  ASSERT_TRUE(t.file->write(head, 0).ok());
  const uint64_t far = 8ull << 20;  // an 8 MiB gap: an authenticated hole
  ASSERT_TRUE(t.file->write(tail, far).ok());
  ASSERT_FALSE(t.file->sparse().empty());
  ASSERT_TRUE(t.begin().ok());
  t.finish(64);
  Bytes model(far + tail.size(), 0);
  std::copy(head.begin(), head.end(), model.begin());
  std::copy(tail.begin(), tail.end(), model.begin() + far);
  expect_reads(*t.file, model);
  const uint64_t mid = t.file->layout().block_offset(1000);
  EXPECT_EQ(t.backing->peek(mid, 4124), Bytes(4124, 0)) << "a hole was written";
  auto fresh = t.open_with(t.next, nullptr);
  ASSERT_TRUE(fresh.ok()) << fresh.status().message();
  EXPECT_EQ((*fresh)->sparse(), t.file->sparse());
  expect_reads(**fresh, model);
}

TEST(Reencrypt, WritesTruncatesAndReopensAtEveryWatermarkKeepTheContent) {
  Reencrypting t;
  Bytes model = pattern(64 * 1024, 4);
  ASSERT_TRUE(t.file->write(model, 0).ok());
  ASSERT_TRUE(t.begin().ok());
  auto write = [&](const Bytes& d, uint64_t off) {
    ASSERT_TRUE(t.file->write(d, off).ok());
    if (model.size() < off + d.size()) model.resize(off + d.size(), 0);
    std::copy(d.begin(), d.end(), model.begin() + static_cast<long>(off));
  };
  for (int step = 0; step < 40; ++step) {
    auto p = t.file->reencrypt_step(*t.journal, "f", 2);
    ASSERT_TRUE(p.ok()) << p.status().message();
    if (p->finished) break;
    // Across the watermark, behind it and ahead of it; growing and shrinking.
    write(pattern(6000, 100 + step), (step * 5000) % (model.size() + 1));
    if (step == 7) {
      ASSERT_TRUE(t.file->truncate(20000).ok());
      model.resize(20000);
    }
    if (step == 9) write(pattern(30000, 7), 50000);
    expect_reads(*t.file, model);
    // A remount mid-way needs the second key too; with it, every byte is there.
    EXPECT_EQ(t.open_with(t.keys, nullptr).status().code(), Code::kInternal);
    auto again = t.open_with(t.keys, t.next);
    ASSERT_TRUE(again.ok()) << again.status().message();
    expect_reads(**again, model);
  }
  EXPECT_FALSE(t.file->reencrypting());
  expect_reads(*t.file, model);
  auto fresh = t.open_with(t.next, nullptr);
  ASSERT_TRUE(fresh.ok()) << fresh.status().message();
  expect_reads(**fresh, model);
}

TEST(Reencrypt, ATamperedBlockStillFailsAndTheStepStopsBeforeWritingIt) {
  Reencrypting t;
  Bytes model = pattern(40000, 5);
  ASSERT_TRUE(t.file->write(model, 0).ok());
  ASSERT_TRUE(t.begin().ok());
  const uint64_t off = t.file->layout().block_offset(4) + 100;
  Bytes b = t.backing->peek(off, 1);
  b[0] ^= 1;
  t.backing->poke(off, b);
  auto p = t.file->reencrypt_step(*t.journal, "f", 8);
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.status().code(), Code::kCorrupt);
  EXPECT_NE(p.status().message().find("block 4"), std::string::npos) << p.status().message();
  Bytes out(4096);
  EXPECT_EQ(t.file->read(out, 4 * 4096).status().code(), Code::kCorrupt);
  EXPECT_TRUE(t.file->read(out, 0).ok()) << "the untouched blocks before it still read";
}

TEST(Reencrypt, TheWatermarkIsNotTrustedToPickTheKey) {
  // The watermark is checksummed, not authenticated: a wrong one must not make a block
  // unreadable or readable as anything else.
  Reencrypting t;
  Bytes model = pattern(50000, 6);
  ASSERT_TRUE(t.file->write(model, 0).ok());
  ASSERT_TRUE(t.begin().ok());
  ASSERT_TRUE(t.file->reencrypt_step(*t.journal, "f", 5).ok());
  FileHeader h = *parse_header(t.backing->peek(0, header::kSize));
  const int a = h.active_slot();
  HeaderSlot s = *h.slots[a];
  s.reencrypt->watermark = 2;  // blocks 2..4 are under the new key, yet would be opened under the old
  s.seq += 10;
  t.backing->poke(header::kSlotOffset[1 - a], *encode_slot(s));
  auto f = t.open_with(t.keys, t.next);
  ASSERT_TRUE(f.ok()) << f.status().message();
  expect_reads(**f, model);
}

TEST(Journal, KeepsOnlyAWholeEntry) {
  TempDir dir("kmsfs-journal");
  auto j = ReencryptJournal::open(dir.path() + "/j");
  ASSERT_TRUE(j.ok());
  EXPECT_FALSE(j->load()->has_value());
  JournalEntry e;
  e.file_id[0] = 7;
  e.from_block = 3;
  e.to_block = 9;
  e.offset = 4096;
  e.path = "a/b";
  e.data = pattern(5000, 8);
  ASSERT_TRUE(j->save(e).ok());
  auto got = j->load();
  ASSERT_TRUE(got.ok() && got->has_value());
  EXPECT_EQ((*got)->data, e.data);
  EXPECT_EQ((*got)->path, "a/b");
  EXPECT_EQ((*got)->to_block, 9u);
  // A torn save (cut anywhere) is no entry at all.
  std::filesystem::resize_file(dir.path() + "/j", 3000);
  EXPECT_FALSE(j->load()->has_value());
  ASSERT_TRUE(j->clear().ok());
  EXPECT_FALSE(j->load()->has_value());
  // A deep file's path is too long for the hint: left out, the step still journaled
  // (recovery then finds the file by id).
  e.path.assign(5000, 'p');
  ASSERT_TRUE(j->save(e).ok());
  got = j->load();
  ASSERT_TRUE(got.ok() && got->has_value());
  EXPECT_EQ((*got)->path, "");
  EXPECT_EQ((*got)->data, e.data);
}

}  // namespace
// Found by fuzz/fuzz_journal.cc: the path field takes up to 65535 bytes and NULs, and
// load() returned whatever it held, while save() writes at most 4096 (so the entry
// recovery read was not the one a save would write), and a 4096-byte path (PATH_MAX
// counts the NUL) or one cut by a NUL reaches a path syscall as something else. The
// journal is in the backing directory: such an entry is malformed, and save() leaves such
// a path out as it does a deep one.
TEST(Journal, APathNoSyscallTakesIsMalformed) {
  JournalEntry e;
  e.file_id[0] = 7;
  e.offset = 4096;
  e.data = pattern(100, 3);
  for (const std::string& path : {std::string(PATH_MAX, 'p'), std::string(PATH_MAX + 10, 'p'), std::string("a\0b", 3)}) {
    // What a storage writer makes: the field as long as it likes, the checksum recomputed.
    e.path.clear();
    Bytes raw = encode_journal_entry(e);
    const size_t len_at = 8 + 16 + 32 + 8 * 4;  // the u16 path length
    ASSERT_EQ(raw[len_at], 0);
    raw[len_at] = static_cast<uint8_t>(path.size());
    raw[len_at + 1] = static_cast<uint8_t>(path.size() >> 8);
    raw.insert(raw.begin() + len_at + 2, path.begin(), path.end());
    raw.resize(raw.size() - 32);
    const Digest32 sum = sha256(raw);
    raw.insert(raw.end(), sum.begin(), sum.end());
    auto got = parse_journal_entry(raw, "kmsfs.journal");
    EXPECT_FALSE(got.ok()) << path.size();
    if (!got.ok()) {
      EXPECT_EQ(got.status().code(), Code::kCorrupt);
    }
    // And save() never writes one.
    e.path = path;
    auto back = parse_journal_entry(encode_journal_entry(e), "kmsfs.journal");
    ASSERT_TRUE(back.ok() && back->has_value());
    EXPECT_EQ((*back)->path, "");
  }
  e.path = std::string(PATH_MAX - 1, 'p');
  auto longest = parse_journal_entry(encode_journal_entry(e), "kmsfs.journal");
  ASSERT_TRUE(longest.ok() && longest->has_value());
  EXPECT_EQ((*longest)->path, e.path);
}

}  // namespace kmsfs::testing
