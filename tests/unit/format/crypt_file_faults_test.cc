// A full backing filesystem under the format engine (issue 17): a backing file with a
// space budget, which allocates 4 KiB pages as writes and reservations touch them and, like
// ext4, stops a write at the first page it cannot allocate (a short write, then ENOSPC)
// and keeps what a failed fallocate got. Every test ends with a fresh open of the backing
// bytes (as after a remount) that must authenticate every block and hold the old content
// and size: a write that fails must not tear anything.
#include <gtest/gtest.h>

#include <algorithm>
#include <cerrno>
#include <set>

#include "format/crypt_file.h"
#include "format_fixture.h"

namespace kmsfs {
namespace {

using testing::pattern;
using testing::read_all;
using testing::TestFile;

constexpr uint64_t B = 4096;
constexpr uint64_t kPage = 4096;

class FullDiskBacking final : public BackingFile {
 public:
  explicit FullDiskBacking(std::shared_ptr<MemoryBackingFile> f) : f_(std::move(f)) {
    const uint64_t n = *f_->size();
    for (uint64_t p = 0; p * kPage < n; ++p) pages_.insert(p);
  }

  // Pages that may still be allocated; unlimited until set.
  uint64_t free_pages = UINT64_MAX;
  // No fallocate (EOPNOTSUPP), as on many FUSE or network backing stores.
  bool reserve_unsupported = false;
  // The write that crosses this many more bytes stops there with EIO, whatever was
  // reserved (a disk error); later writes succeed.
  uint64_t write_budget = UINT64_MAX;
  int reserves = 0;
  // Every read fails with EIO (a failing disk).
  bool fail_reads = false;

  size_t allocated() const { return pages_.size(); }

  Result<size_t> read_at(MutableByteSpan b, uint64_t off) override {
    if (fail_reads) return Status::Io(EIO, "read " + name());
    return f_->read_at(b, off);
  }

  Status write_at(ByteSpan d, uint64_t off) override {
    for (size_t done = 0; done < d.size();) {
      const uint64_t pos = off + done;
      const uint64_t page = pos / kPage;
      size_t take = static_cast<size_t>(std::min<uint64_t>(d.size() - done, (page + 1) * kPage - pos));
      if (!allocate(page)) return Status::Io(ENOSPC, "write (disk full)");
      if (write_budget == 0) {
        write_budget = UINT64_MAX;  // a transient error: the undo that follows succeeds
        return Status::Io(EIO, "write (disk failing)");
      }
      take = static_cast<size_t>(std::min<uint64_t>(take, write_budget));
      if (write_budget != UINT64_MAX) write_budget -= take;
      RETURN_IF_ERROR(f_->write_at(d.subspan(done, take), pos));
      done += take;
    }
    return Status::Ok();
  }

  Status reserve(uint64_t off, uint64_t len) override {
    ++reserves;
    if (reserve_unsupported) return Status(Code::kUnsupported, "fallocate not supported", EOPNOTSUPP);
    for (uint64_t p = off / kPage; p * kPage < off + len; ++p)
      if (!allocate(p)) return Status::Io(ENOSPC, "reserve (disk full)");  // keeps what it got
    return Status::Ok();
  }

  Status truncate(uint64_t size) override {
    // Like ext4 and XFS: whole pages past the new EOF are freed, also preallocated ones and
    // also when the size does not change.
    const uint64_t keep = (size + kPage - 1) / kPage;
    for (auto it = pages_.lower_bound(keep); it != pages_.end();) {
      it = pages_.erase(it);
      if (free_pages != UINT64_MAX) ++free_pages;
    }
    return f_->truncate(size);
  }

  Result<uint64_t> size() override { return f_->size(); }
  Status sync(bool d) override { return f_->sync(d); }
  Result<timespec> mtime() override { return f_->mtime(); }
  Status set_mtime(const timespec& t) override { return f_->set_mtime(t); }
  std::string name() const override { return f_->name(); }

 private:
  bool allocate(uint64_t page) {
    if (pages_.count(page)) return true;
    if (free_pages == 0) return false;
    if (free_pages != UINT64_MAX) --free_pages;
    pages_.insert(page);
    return true;
  }

  std::shared_ptr<MemoryBackingFile> f_;
  std::set<uint64_t> pages_;
};

// A TestFile whose CryptFile runs over a FullDiskBacking (same bytes, same keys).
struct FaultyFile {
  TestFile t;
  std::shared_ptr<FullDiskBacking> disk;
  std::unique_ptr<CryptFile> file;

  explicit FaultyFile(CryptFile::Options opts = {}) : t(CipherId::kAes256Gcm, B, opts) {
    t.file.reset();
    disk = std::make_shared<FullDiskBacking>(t.backing);
    reopen(opts);
  }
  void reopen(CryptFile::Options opts = {}) {
    file.reset();
    Bytes raw = t.backing->peek(0, header::kSize);
    auto h = parse_header(raw);
    ASSERT_TRUE(h.ok()) << h.status().message();
    auto f = CryptFile::open(disk, std::move(*h), t.keys, opts);
    ASSERT_TRUE(f.ok()) << f.status().message();
    file = std::move(*f);
  }
  // A fresh open of what is on disk must hold `want`, every block authentic.
  void expect_on_disk(const Bytes& want, CryptFile::Options opts = {}) {
    auto f = t.reopen(opts);
    ASSERT_TRUE(f.ok()) << f.status().message();
    EXPECT_EQ((*f)->size(), want.size());
    auto got = read_all(**f);
    ASSERT_TRUE(got.ok()) << got.status().message();
    EXPECT_TRUE(*got == want) << "content differs from the previous content";
    EXPECT_EQ(*t.backing->size(), Layout::of(header::kSize, B).ciphertext_size(want.size()));
  }
};

void expect_enospc(const Status& s) {
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.sys_errno(), ENOSPC) << s.message();
}

// The daemon logs a failed read's Status as it is: it must say which file (its backing
// name and id) and which blocks, and stay an I/O error (EIO to the reader).
TEST(CryptFileFaults, AFailedBackingReadNamesTheFileItsIdAndTheBlocks) {
  FaultyFile f;
  ASSERT_TRUE(f.file->write(pattern(3 * B + 5, 1), 0).ok());
  f.disk->fail_reads = true;
  const std::string file = "/vault/f: file " + to_hex(f.t.header.file_id);
  Bytes out(B);
  Result<size_t> one = f.file->read(out, B);
  ASSERT_FALSE(one.ok());
  EXPECT_EQ(one.status().code(), Code::kIo);
  EXPECT_EQ(one.status().sys_errno(), EIO);
  EXPECT_EQ(one.status().message(), file + " block 1: read: Input/output error");
  Bytes span(2 * B);
  Result<size_t> several = f.file->read(span, B / 2);
  ASSERT_FALSE(several.ok());
  EXPECT_EQ(several.status().message(), file + " blocks 0..2: read: Input/output error");
  f.disk->fail_reads = false;
  EXPECT_EQ(*read_all(*f.file), pattern(3 * B + 5, 1));
}

TEST(CryptFileFaults, AppendThatRunsOutOfSpaceLeavesTheOldContentAndGivesTheSpaceBack) {
  for (uint64_t old_size : {uint64_t{0}, 10 * B, 10 * B + 123}) {
    SCOPED_TRACE(old_size);
    FaultyFile f;
    const Bytes old = pattern(old_size, 1);
    ASSERT_TRUE(f.file->write(old, 0).ok());
    const size_t before = f.disk->allocated();
    f.disk->free_pages = 5;  // room for a part of the append only
    expect_enospc(f.file->write(pattern(64 * B, 2), old_size));
    EXPECT_EQ(f.file->size(), old_size);
    EXPECT_EQ(f.disk->allocated(), before) << "space a failed reservation got was not given back";
    EXPECT_EQ(f.disk->free_pages, 5u);
    // The open file still works: it reads the old content, and a write that fits succeeds.
    EXPECT_EQ(*read_all(*f.file), old);
    f.expect_on_disk(old);
    Bytes grown = old;
    const Bytes more = pattern(2 * B, 3);
    grown.insert(grown.end(), more.begin(), more.end());
    ASSERT_TRUE(f.file->write(more, old_size).ok());
    f.expect_on_disk(grown);
  }
}

TEST(CryptFileFaults, WritesUntilTheDiskIsFullLeaveACorrectPrefix) {
  // What cp does: sequential 128 KiB writes until one fails.
  FaultyFile f;
  f.disk->free_pages = 300;
  Bytes data = pattern(4 << 20, 4);
  uint64_t written = 0;
  Status s;
  for (; written < data.size(); written += 128 * 1024) {
    s = f.file->write(ByteSpan(data).subspan(written, 128 * 1024), written);
    if (!s.ok()) break;
  }
  expect_enospc(s);
  EXPECT_GT(written, 0u);
  EXPECT_EQ(f.file->size(), written);
  f.expect_on_disk(Bytes(data.begin(), data.begin() + static_cast<long>(written)));
}

TEST(CryptFileFaults, OverwriteInPlaceNeedsNoSpace) {
  FaultyFile f;
  Bytes data = pattern(20 * B + 7, 5);
  ASSERT_TRUE(f.file->write(data, 0).ok());
  f.disk->free_pages = 0;
  const int reserves = f.disk->reserves;
  const Bytes patch = pattern(3 * B + 100, 6);
  ASSERT_TRUE(f.file->write(patch, B / 2).ok());
  EXPECT_EQ(f.disk->reserves, reserves) << "an overwrite of written blocks must not pay for a reservation";
  std::copy(patch.begin(), patch.end(), data.begin() + B / 2);
  f.expect_on_disk(data);
}

TEST(CryptFileFaults, FillingAHoleWithoutSpaceLeavesTheHoleReadingZeros) {
  FaultyFile f;
  // A 4 MiB gap is a sparse range: those blocks are backing holes.
  const Bytes head = pattern(B, 7), tail = pattern(B, 8);
  ASSERT_TRUE(f.file->write(head, 0).ok());
  ASSERT_TRUE(f.file->write(tail, (4 << 20) + B).ok());
  Bytes want((4 << 20) + 2 * B, 0);
  std::copy(head.begin(), head.end(), want.begin());
  std::copy(tail.begin(), tail.end(), want.begin() + (4 << 20) + B);
  f.expect_on_disk(want);
  f.disk->free_pages = 3;
  // Whole blocks, and a partial block at each end.
  expect_enospc(f.file->write(pattern(16 * B, 9), 100 * B));
  expect_enospc(f.file->write(pattern(16 * B, 10), 200 * B + 5));
  EXPECT_EQ(f.file->size(), want.size());
  EXPECT_EQ(*read_all(*f.file), want);
  f.expect_on_disk(want);
}

TEST(CryptFileFaults, ALargeGapWithoutSpaceLeavesTheHeaderAsItWas) {
  FaultyFile f;
  const Bytes old = pattern(3 * B + 11, 11);
  ASSERT_TRUE(f.file->write(old, 0).ok());
  const FileHeader before = f.file->header();
  f.disk->free_pages = 1;
  expect_enospc(f.file->write(pattern(8 * B, 12), 64 << 20));
  EXPECT_EQ(f.file->size(), old.size());
  EXPECT_TRUE(f.file->sparse().empty());
  // Reserved before the slot write: no slot was written at all.
  EXPECT_EQ(f.file->header().slots[0]->seq, before.slots[0]->seq);
  EXPECT_EQ(f.file->header().slots[1]->seq, before.slots[1]->seq);
  f.expect_on_disk(old);
}

TEST(CryptFileFaults, TruncateUpAndFallocateWithoutSpaceChangeNothing) {
  FaultyFile f;
  const Bytes old = pattern(2 * B + 1, 13);
  ASSERT_TRUE(f.file->write(old, 0).ok());
  f.disk->free_pages = 2;
  expect_enospc(f.file->truncate(100 * B));  // small gap: sealed zeros
  EXPECT_EQ(f.file->size(), old.size());
  expect_enospc(f.file->allocate(0, 50 * B, /*keep_size=*/false));
  EXPECT_EQ(f.file->size(), old.size());
  EXPECT_EQ(f.disk->free_pages, 2u);
  f.expect_on_disk(old);
}

TEST(CryptFileFaults, TruncateDownIntoAHoleWithoutSpaceKeepsTheOldSize) {
  FaultyFile f;
  ASSERT_TRUE(f.file->write(pattern(B, 14), 0).ok());
  ASSERT_TRUE(f.file->truncate(8 << 20).ok());  // a sparse range up to the last block
  Bytes want(8 << 20, 0);
  const Bytes head = pattern(B, 14);
  std::copy(head.begin(), head.end(), want.begin());
  f.disk->free_pages = 0;
  // The new last block (inside the hole) must be sealed as final: that allocates.
  expect_enospc(f.file->truncate((4 << 20) + 100));
  EXPECT_EQ(f.file->size(), want.size());
  f.expect_on_disk(want);
}

// Without fallocate the write runs unreserved, fails half-way, and is undone.
TEST(CryptFileFaults, WithoutFallocateAFailedWriteIsUndone) {
  for (uint64_t old_size : {uint64_t{0}, 5 * B, 5 * B + 999}) {
    SCOPED_TRACE(old_size);
    FaultyFile f;
    f.disk->reserve_unsupported = true;
    const Bytes old = pattern(old_size, 15);
    ASSERT_TRUE(f.file->write(old, 0).ok());
    f.disk->free_pages = 4;
    expect_enospc(f.file->write(pattern(40 * B + 3, 16), old_size > 0 ? old_size - 1 : 0));
    EXPECT_EQ(f.file->size(), old_size);
    EXPECT_EQ(*read_all(*f.file), old);
    f.expect_on_disk(old);
  }
}

// A write that fails after its reservation (an I/O error) is undone too.
TEST(CryptFileFaults, AWriteFailingAfterItsReservationIsUndone) {
  FaultyFile f;
  const Bytes old = pattern(7 * B + 300, 17);
  ASSERT_TRUE(f.file->write(old, 0).ok());
  f.disk->write_budget = B + 1000;  // tears the second block it writes
  const Status s = f.file->write(pattern(20 * B, 18), 7 * B + 100);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.sys_errno(), EIO) << s.message();
  EXPECT_EQ(f.file->size(), old.size());
  EXPECT_EQ(*read_all(*f.file), old);
  f.expect_on_disk(old);
}

// The mount's rule after a lost write-back: cut to a prefix, then no write past the end.
TEST(CryptFileFaults, AfterALostWriteBackTheFileIsCutAndWritesPastTheEndAreRefused) {
  FaultyFile f;
  const Bytes data = pattern(10 * B, 19);
  ASSERT_TRUE(f.file->write(data, 0).ok());
  ASSERT_TRUE(f.file->refuse_gaps_and_shrink(4 * B + 10, ENOSPC).ok());
  EXPECT_EQ(f.file->size(), 4 * B + 10);
  expect_enospc(f.file->write(pattern(B, 20), 6 * B));  // would leave a hole
  EXPECT_EQ(f.file->size(), 4 * B + 10);
  // A shrink never grows, and a larger cut changes nothing.
  ASSERT_TRUE(f.file->refuse_gaps_and_shrink(8 * B, ENOSPC).ok());
  EXPECT_EQ(f.file->size(), 4 * B + 10);
  // Contiguous writes and overwrites still go through.
  Bytes want(data.begin(), data.begin() + 4 * B + 10);
  const Bytes more = pattern(B, 21);
  ASSERT_TRUE(f.file->write(more, want.size()).ok());
  want.insert(want.end(), more.begin(), more.end());
  f.expect_on_disk(want);
  f.file->allow_gaps();
  ASSERT_TRUE(f.file->write(more, 40 * B).ok());
  EXPECT_EQ(f.file->size(), 41 * B);
}

}  // namespace
}  // namespace kmsfs
