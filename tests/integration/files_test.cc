// Regular-file I/O through the mount: create/open flags, appends, overlapping and
// unaligned writes, gaps, truncation, fallocate, >4 GiB offsets, O_DIRECT, and that data
// reaches the backing files on sync. Write-path tests run with and without the kernel
// writeback cache (they take entirely different kernel paths).
#include <fcntl.h>
#include <linux/falloc.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <memory>
#include <random>

#include "posix_util.h"

namespace kmsfs::testing {
namespace {

constexpr off_t kKiB = 1024, kMiB = 1024 * kKiB, kGiB = 1024 * kMiB;

VaultOptions mode_opts(bool writeback) { return writeback ? VaultOptions{} : no_writeback(); }

class FileIo : public ::testing::TestWithParam<bool> {};
INSTANTIATE_TEST_SUITE_P(Cache, FileIo, ::testing::Values(true, false),
                         [](const auto& tp) { return tp.param ? "Writeback" : "NoWriteback"; });

TEST(Files, CreateWriteReadEmptyAndEof) {
  PosixVault v;
  Fd fd(v.at("a"), O_CREAT | O_EXCL | O_RDWR, 0640);
  ASSERT_TRUE(fd.ok()) << err_str(errno);
  struct stat st {};
  ASSERT_EQ(::fstat(fd.get(), &st), 0);
  EXPECT_EQ(st.st_size, 0);
  EXPECT_EQ(st.st_mode & 07777, 0640u);
  char c;
  EXPECT_EQ(::pread(fd.get(), &c, 1, 0), 0);  // empty file: EOF, not an error
  pwrite_str(fd.get(), "hello world", 0);
  EXPECT_EQ(pread_str(fd.get(), 100, 0), "hello world");
  EXPECT_EQ(pread_str(fd.get(), 100, 6), "world");
  EXPECT_EQ(::pread(fd.get(), &c, 1, 11), 0);
  EXPECT_EQ(::pread(fd.get(), &c, 1, 1 << 20), 0);
  ASSERT_EQ(fd.close(), 0);
  EXPECT_EQ(file_size(v.at("a")), 11);

  // An empty file survives a remount as an empty file.
  Fd(v.at("empty"), O_CREAT | O_WRONLY, 0644);
  v.remount();
  EXPECT_EQ(read_file(v.at("a")), "hello world");
  EXPECT_EQ(read_file(v.at("empty")), "");
  EXPECT_EQ(file_size(v.at("empty")), 0);
}

TEST(Files, OExclOnExistingFailsEexist) {
  PosixVault v;
  write_file(v.at("x"), "keep");
  EXPECT_EQ(::open(v.at("x").c_str(), O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0644), -1);
  EXPECT_EQ(errno, EEXIST);
  // O_CREAT without O_EXCL opens the existing file, and leaves it alone.
  Fd fd(v.at("x"), O_CREAT | O_RDWR, 0600);
  ASSERT_TRUE(fd.ok());
  EXPECT_EQ(pread_str(fd.get(), 10, 0), "keep");
  EXPECT_EQ(read_file(v.at("x")), "keep");
}

TEST_P(FileIo, OTruncEmptiesTheFile) {
  PosixVault v(mode_opts(GetParam()));
  const std::string old = pattern(50000, 1);
  write_file(v.at("t"), old);
  {
    Fd fd(v.at("t"), O_RDWR | O_TRUNC);
    ASSERT_TRUE(fd.ok());
    struct stat st {};
    ASSERT_EQ(::fstat(fd.get(), &st), 0);
    EXPECT_EQ(st.st_size, 0);
    EXPECT_EQ(pread_str(fd.get(), 10, 0), "");
    write_all(fd.get(), "new");
    // Past the new data there is nothing of the old content.
    EXPECT_EQ(pread_str(fd.get(), 100000, 0), "new");
  }
  EXPECT_EQ(read_file(v.at("t")), "new");
  // Linux truncates on O_RDONLY|O_TRUNC too (open(2): unspecified; ext4 does it).
  write_file(v.at("ro"), old);
  {
    Fd fd(v.at("ro"), O_RDONLY | O_TRUNC);
    ASSERT_TRUE(fd.ok()) << err_str(errno);
    EXPECT_EQ(pread_str(fd.get(), 10, 0), "");
  }
  EXPECT_EQ(file_size(v.at("ro")), 0);
  v.remount();
  EXPECT_EQ(read_file(v.at("t")), "new");
  EXPECT_EQ(file_size(v.at("ro")), 0);
  EXPECT_EQ(read_file(v.at("ro")), "");
}

void check_appends(MountedVault& v) {
  Fd a(v.at("log"), O_CREAT | O_WRONLY | O_APPEND, 0644);
  ASSERT_TRUE(a.ok());
  Fd plain(v.at("log"), O_RDWR);
  ASSERT_TRUE(plain.ok());
  std::string expect;
  for (int i = 0; i < 50; ++i) {
    std::string rec = "record " + std::to_string(i) + std::string(static_cast<size_t>(i * 37 % 5000), 'x') + "\n";
    write_all(a.get(), rec);
    expect += rec;
    if (i % 10 == 9) {
      // Another fd extends the file; O_APPEND must still land at the (new) end.
      std::string more = pattern(3000 + static_cast<size_t>(i), static_cast<uint64_t>(i));
      pwrite_str(plain.get(), more, static_cast<off_t>(expect.size()));
      expect += more;
    }
  }
  // pwrite on an O_APPEND fd appends too on Linux (documented BUG in pwrite(2)).
  ASSERT_EQ(::pwrite(a.get(), "tail", 4, 0), 4);
  expect += "tail";
  EXPECT_SAME_BYTES(pread_str(plain.get(), expect.size() + 10, 0), expect);
  ASSERT_EQ(a.close(), 0);
  ASSERT_EQ(plain.close(), 0);
  EXPECT_EQ(file_size(v.at("log")), static_cast<off_t>(expect.size()));
  v.remount();
  EXPECT_SAME_BYTES(read_file(v.at("log")), expect);
}

TEST_P(FileIo, OAppendWritesAtTheEnd) {
  PosixVault v(mode_opts(GetParam()));
  check_appends(v);
}

TEST_P(FileIo, OverlappingUnalignedWritesMatchAModel) {
  PosixVault v(mode_opts(GetParam()));
  std::mt19937_64 rng(42);
  std::string model;
  Fd fd(v.at("m"), O_CREAT | O_RDWR, 0644);
  ASSERT_TRUE(fd.ok());
  for (int i = 0; i < 300; ++i) {
    const size_t len = 1 + rng() % (i % 7 == 0 ? 20000 : 700);
    const size_t off = rng() % (model.size() + 3000);  // sometimes past EOF: small gaps
    const std::string data = pattern(len, static_cast<uint64_t>(i) + 100);
    pwrite_str(fd.get(), data, static_cast<off_t>(off));
    if (model.size() < off + len) model.resize(off + len, '\0');
    model.replace(off, len, data);
    if (i % 50 == 49) {
      EXPECT_SAME_BYTES(pread_str(fd.get(), model.size() + 100, 0), model);
      // A read starting and ending mid-block.
      const size_t roff = rng() % model.size();
      EXPECT_SAME_BYTES(pread_str(fd.get(), 5000, static_cast<off_t>(roff)), model.substr(roff, 5000));
    }
  }
  ASSERT_EQ(fd.close(), 0);
  EXPECT_SAME_BYTES(read_file(v.at("m")), model);
  v.remount();
  EXPECT_SAME_BYTES(read_file(v.at("m")), model);
  drop_caches();
  EXPECT_SAME_BYTES(read_file(v.at("m")), model);
}

TEST_P(FileIo, WritePastEofSmallGapReadsZeros) {
  PosixVault v(mode_opts(GetParam()));
  Fd fd(v.at("g"), O_CREAT | O_RDWR, 0644);
  ASSERT_TRUE(fd.ok());
  pwrite_str(fd.get(), std::string(100, 'A'), 0);
  pwrite_str(fd.get(), "END", 10000);
  std::string expect = std::string(100, 'A') + std::string(9900, '\0') + "END";
  EXPECT_SAME_BYTES(pread_str(fd.get(), 20000, 0), expect);
  ASSERT_EQ(fd.close(), 0);
  v.remount();
  EXPECT_EQ(file_size(v.at("g")), 10003);
  EXPECT_SAME_BYTES(read_file(v.at("g")), expect);
}

TEST_P(FileIo, WritePastEof64MiBGapIsSparseAndReadsZeros) {
  PosixVault v(mode_opts(GetParam()));
  const off_t tail_at = 64 * kMiB + 5;
  {
    Fd fd(v.at("big"), O_CREAT | O_RDWR, 0644);
    ASSERT_TRUE(fd.ok());
    pwrite_str(fd.get(), "head", 0);
    pwrite_str(fd.get(), "tail", tail_at);
    ASSERT_EQ(fd.close(), 0);
  }
  auto check = [&] {
    EXPECT_EQ(file_size(v.at("big")), tail_at + 4);
    Fd fd(v.at("big"), O_RDONLY);
    ASSERT_TRUE(fd.ok());
    EXPECT_EQ(pread_str(fd.get(), 4, 0), "head");
    EXPECT_EQ(pread_str(fd.get(), 10, tail_at), "tail");
    // The whole gap, in 4 MiB reads.
    for (off_t off = 4; off < tail_at; off += 4 * kMiB) {
      const size_t n = static_cast<size_t>(std::min<off_t>(4 * kMiB, tail_at - off));
      std::string got = pread_str(fd.get(), n, off);
      ASSERT_EQ(got.size(), n) << off;
      ASSERT_TRUE(all_zero(got)) << "non-zero byte in the gap near " << off + static_cast<off_t>(first_diff(got, std::string(n, '\0')));
    }
  };
  check();
  ASSERT_EQ(v.unmount(), 0);
  // The gap is a hole in the backing file, not 64 MiB of sealed zeros.
  struct stat st {};
  ASSERT_EQ(::stat(v.backing_at("big").c_str(), &st), 0);
  EXPECT_LT(st.st_blocks * 512, 2 * kMiB) << "backing file of a 64 MiB gap should be sparse";
  v.mount();
  check();
}

TEST_P(FileIo, TruncateDownAndUp) {
  PosixVault v(mode_opts(GetParam()));
  const std::string data = pattern(3 * 4096 + 1000, 3);
  write_file(v.at("f"), data);
  Fd fd(v.at("f"), O_RDWR);
  ASSERT_TRUE(fd.ok());
  // Down into the middle of a block, then up again: the cut bytes must come back as zeros.
  ASSERT_EQ(::ftruncate(fd.get(), 5000), 0) << err_str(errno);
  struct stat st {};
  ASSERT_EQ(::fstat(fd.get(), &st), 0);
  EXPECT_EQ(st.st_size, 5000);
  EXPECT_SAME_BYTES(pread_str(fd.get(), 100000, 0), data.substr(0, 5000));
  ASSERT_EQ(::ftruncate(fd.get(), 20000), 0) << err_str(errno);
  std::string expect = data.substr(0, 5000) + std::string(15000, '\0');
  EXPECT_SAME_BYTES(pread_str(fd.get(), 100000, 0), expect);
  // A large truncate up (becomes a sparse range) and back down.
  ASSERT_EQ(::ftruncate(fd.get(), 10 * kMiB), 0) << err_str(errno);
  EXPECT_EQ(pread_str(fd.get(), 3, 10 * kMiB - 3), std::string(3, '\0'));
  ASSERT_EQ(::ftruncate(fd.get(), 20000), 0) << err_str(errno);
  EXPECT_SAME_BYTES(pread_str(fd.get(), 100000, 0), expect);
  ASSERT_EQ(fd.close(), 0);

  // By path, with no handle open: down, then up.
  ASSERT_EQ(::truncate(v.at("f").c_str(), 4096), 0) << err_str(errno);
  EXPECT_EQ(file_size(v.at("f")), 4096);
  EXPECT_SAME_BYTES(read_file(v.at("f")), data.substr(0, 4096));
  ASSERT_EQ(::truncate(v.at("f").c_str(), 9000), 0) << err_str(errno);
  expect = data.substr(0, 4096) + std::string(9000 - 4096, '\0');
  EXPECT_SAME_BYTES(read_file(v.at("f")), expect);
  ASSERT_EQ(::truncate(v.at("f").c_str(), 0), 0) << err_str(errno);
  EXPECT_EQ(read_file(v.at("f")), "");
  ASSERT_EQ(::truncate(v.at("f").c_str(), 9000), 0) << err_str(errno);
  v.remount();
  EXPECT_EQ(file_size(v.at("f")), 9000);
  EXPECT_SAME_BYTES(read_file(v.at("f")), std::string(9000, '\0'));
}

TEST(Files, FallocateModesAndPunchHole) {
  PosixVault v;
  const std::string data = pattern(1000, 4);
  write_file(v.at("fa"), data);
  Fd fd(v.at("fa"), O_RDWR);
  ASSERT_TRUE(fd.ok());

  // Mode 0 past EOF: the file grows, new bytes read as zeros, old ones are untouched.
  ASSERT_EQ(::fallocate(fd.get(), 0, 500, 19500), 0) << err_str(errno);
  struct stat st {};
  ASSERT_EQ(::fstat(fd.get(), &st), 0);
  EXPECT_EQ(st.st_size, 20000);
  std::string expect = data + std::string(19000, '\0');
  EXPECT_SAME_BYTES(pread_str(fd.get(), 30000, 0), expect);
  // Mode 0 inside the file changes nothing visible.
  ASSERT_EQ(::fallocate(fd.get(), 0, 0, 4096), 0) << err_str(errno);
  EXPECT_SAME_BYTES(pread_str(fd.get(), 30000, 0), expect);

  // KEEP_SIZE past EOF: size and content unchanged (now and after a remount).
  ASSERT_EQ(::fallocate(fd.get(), FALLOC_FL_KEEP_SIZE, 20000, 1 * kMiB), 0) << err_str(errno);
  ASSERT_EQ(::fstat(fd.get(), &st), 0);
  EXPECT_EQ(st.st_size, 20000);
  EXPECT_SAME_BYTES(pread_str(fd.get(), 30000, 0), expect);

  // Holes cannot be punched into sealed blocks: refused, content intact.
  EXPECT_EQ(::fallocate(fd.get(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, 4096), -1);
  EXPECT_EQ(errno, EOPNOTSUPP);
  EXPECT_EQ(::fallocate(fd.get(), FALLOC_FL_ZERO_RANGE, 0, 4096), -1);
  EXPECT_EQ(errno, EOPNOTSUPP);
  EXPECT_SAME_BYTES(pread_str(fd.get(), 30000, 0), expect);

  // Writing into a KEEP_SIZE-reserved range past EOF works as a normal extension.
  pwrite_str(fd.get(), "after", 30000);
  expect += std::string(10000, '\0') + "after";
  ASSERT_EQ(fd.close(), 0);
  EXPECT_SAME_BYTES(read_file(v.at("fa")), expect);

  Fd keep(v.at("keep"), O_CREAT | O_RDWR, 0644);
  pwrite_str(keep.get(), "abc", 0);
  ASSERT_EQ(::fallocate(keep.get(), FALLOC_FL_KEEP_SIZE, 0, 2 * kMiB), 0) << err_str(errno);
  ASSERT_EQ(keep.close(), 0);
  v.remount();
  EXPECT_EQ(file_size(v.at("keep")), 3);
  EXPECT_EQ(read_file(v.at("keep")), "abc");
  EXPECT_SAME_BYTES(read_file(v.at("fa")), expect);
}

TEST(Files, OverFourGiBSparse) {
  PosixVault v;
  const off_t at = 5 * kGiB;
  {
    Fd fd(v.at("huge"), O_CREAT | O_RDWR, 0644);
    ASSERT_TRUE(fd.ok());
    pwrite_str(fd.get(), "beyond-4GiB", at);
    struct stat st {};
    ASSERT_EQ(::fstat(fd.get(), &st), 0);
    EXPECT_EQ(st.st_size, at + 11);
    EXPECT_EQ(pread_str(fd.get(), 100, at), "beyond-4GiB");
    EXPECT_EQ(pread_str(fd.get(), 8, 4 * kGiB), std::string(8, '\0'));
    // Rewrite across the 4 GiB boundary (32-bit offset truncation would land elsewhere).
    pwrite_str(fd.get(), "XY", 4 * kGiB - 1);
    EXPECT_EQ(pread_str(fd.get(), 4, 4 * kGiB - 2), std::string("\0XY\0", 4));
    ASSERT_EQ(fd.close(), 0);
  }
  v.remount();
  EXPECT_EQ(file_size(v.at("huge")), at + 11);
  Fd fd(v.at("huge"), O_RDONLY);
  EXPECT_EQ(pread_str(fd.get(), 100, at), "beyond-4GiB");
  EXPECT_EQ(pread_str(fd.get(), 4, 4 * kGiB - 2), std::string("\0XY\0", 4));
  EXPECT_EQ(pread_str(fd.get(), 4, 0), std::string(4, '\0'));
  struct stat st {};
  ASSERT_EQ(::stat(v.backing_at("huge").c_str(), &st), 0);
  EXPECT_GT(st.st_size, at);
  EXPECT_LT(st.st_blocks * 512, 4 * kMiB) << "the backing file should be sparse";
}

TEST_P(FileIo, ODirectAlignedReadWrite) {
  PosixVault v(mode_opts(GetParam()));
  void* raw = nullptr;
  ASSERT_EQ(::posix_memalign(&raw, 4096, 256 * 1024), 0);
  std::unique_ptr<char, decltype(&::free)> buf(static_cast<char*>(raw), &::free);
  const std::string a = pattern(64 * 1024, 5), b = pattern(128 * 1024, 6);

  Fd fd(v.at("direct"), O_CREAT | O_RDWR | O_DIRECT, 0644);
  ASSERT_TRUE(fd.ok()) << "O_DIRECT open refused: " << err_str(errno);
  std::memcpy(buf.get(), a.data(), a.size());
  ASSERT_EQ(::pwrite(fd.get(), buf.get(), a.size(), 0), static_cast<ssize_t>(a.size())) << err_str(errno);
  std::memcpy(buf.get(), b.data(), b.size());
  ASSERT_EQ(::pwrite(fd.get(), buf.get(), b.size(), 8192), static_cast<ssize_t>(b.size())) << err_str(errno);
  std::string expect = a.substr(0, 8192) + b;

  std::memset(buf.get(), 0, 256 * 1024);
  ASSERT_EQ(::pread(fd.get(), buf.get(), 256 * 1024, 0), static_cast<ssize_t>(expect.size())) << err_str(errno);
  EXPECT_SAME_BYTES(std::string(buf.get(), expect.size()), expect);
  ASSERT_EQ(::pread(fd.get(), buf.get(), 4096, 3 * 4096), 4096);
  EXPECT_SAME_BYTES(std::string(buf.get(), 4096), expect.substr(3 * 4096, 4096));

  // A buffered fd sees the same bytes, and O_DIRECT sees what the buffered fd wrote.
  Fd cached(v.at("direct"), O_RDWR);
  EXPECT_SAME_BYTES(pread_str(cached.get(), 1 << 20, 0), expect);
  pwrite_str(cached.get(), std::string(4096, 'c'), 4096);
  ASSERT_EQ(::fsync(cached.get()), 0);
  expect.replace(4096, 4096, std::string(4096, 'c'));
  ASSERT_EQ(::pread(fd.get(), buf.get(), 3 * 4096, 0), 3 * 4096);
  EXPECT_SAME_BYTES(std::string(buf.get(), 3 * 4096), expect.substr(0, 3 * 4096));
  ASSERT_EQ(cached.close(), 0);
  ASSERT_EQ(fd.close(), 0);
  v.remount();
  EXPECT_SAME_BYTES(read_file(v.at("direct")), expect);
}

TEST(Files, FsyncFdatasyncSyncfsSucceed) {
  PosixVault v;
  Fd fd(v.at("s"), O_CREAT | O_RDWR, 0644);
  ASSERT_TRUE(fd.ok());
  pwrite_str(fd.get(), pattern(10000, 8), 0);
  EXPECT_EQ(::fsync(fd.get()), 0) << err_str(errno);
  pwrite_str(fd.get(), "more", 10000);
  EXPECT_EQ(::fdatasync(fd.get()), 0) << err_str(errno);
  EXPECT_EQ(::syncfs(fd.get()), 0) << err_str(errno);
  Fd dir(v.mnt(), O_RDONLY | O_DIRECTORY);
  EXPECT_EQ(::fsync(dir.get()), 0) << err_str(errno);
  // sync_file_range is a page-cache operation; it must not fail either.
  EXPECT_EQ(::sync_file_range(fd.get(), 0, 0, SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER), 0) << err_str(errno);
}

TEST(Files, AfterSyncTheBackingFileHoldsTheData) {
  PosixVault v;
  const std::string data = pattern(300000, 9);
  Fd fd(v.at("synced"), O_CREAT | O_RDWR, 0644);
  ASSERT_TRUE(fd.ok());
  write_all(fd.get(), data);
  ::sync();
  // Still open and still mounted: the offline reader sees everything.
  auto cat = kmsfs({"cat", "--backing-path", v.backing_at("synced"), "--keyring", v.keyring()});
  EXPECT_EQ(cat.exit_code, 0) << cat.err;
  EXPECT_SAME_BYTES(cat.out, data);
  pwrite_str(fd.get(), "patched", 1234);
  std::string expect = data;
  expect.replace(1234, 7, "patched");
  ::sync();
  cat = kmsfs({"cat", "--backing-path", v.backing_at("synced"), "--keyring", v.keyring()});
  EXPECT_SAME_BYTES(cat.out, expect);
}

}  // namespace
}  // namespace kmsfs::testing
