// Attributes through the mount: mode, owner, times (including times set on an open file
// with dirty cached data), statfs.
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include "posix_util.h"

namespace kmsfs::testing {
namespace {

bool same(const timespec& a, const timespec& b) { return a.tv_sec == b.tv_sec && a.tv_nsec == b.tv_nsec; }
std::string show(const timespec& t) { return std::to_string(t.tv_sec) + "." + std::to_string(t.tv_nsec); }
#define EXPECT_TIME(a, b) EXPECT_TRUE(same((a), (b))) << show(a) << " vs " << show(b)

timespec now_real() {
  timespec t{};
  ::clock_gettime(CLOCK_REALTIME, &t);
  return t;
}

class AttrTimes : public ::testing::TestWithParam<bool> {};
INSTANTIATE_TEST_SUITE_P(Cache, AttrTimes, ::testing::Values(true, false),
                         [](const auto& tp) { return tp.param ? "Writeback" : "NoWriteback"; });

TEST(Attrs, ChmodChownByPathAndFd) {
  PosixVault v;
  write_file(v.at("f"), "x");
  ASSERT_EQ(::chmod(v.at("f").c_str(), 0604), 0) << err_str(errno);
  EXPECT_EQ(lstat_of(v.at("f")).st_mode & 07777, 0604u);
  ASSERT_EQ(::chown(v.at("f").c_str(), 1234, 5678), 0) << err_str(errno);
  struct stat st = lstat_of(v.at("f"));
  EXPECT_EQ(st.st_uid, 1234u);
  EXPECT_EQ(st.st_gid, 5678u);
  st = lstat_of(v.backing_at("f"));  // the backing file carries the owner and mode
  EXPECT_EQ(st.st_uid, 1234u);
  EXPECT_EQ(st.st_gid, 5678u);
  EXPECT_EQ(st.st_mode & 07777, 0604u);

  Fd fd(v.at("f"), O_RDWR);
  ASSERT_EQ(::fchmod(fd.get(), 02750), 0) << err_str(errno);
  // chown clears set-id bits of an executable, for root too (Linux since 2.2.13).
  ASSERT_EQ(::fchown(fd.get(), 42, static_cast<gid_t>(-1)), 0) << err_str(errno);
  ASSERT_EQ(::fstat(fd.get(), &st), 0);
  EXPECT_EQ(st.st_uid, 42u);
  EXPECT_EQ(st.st_gid, 5678u);
  EXPECT_EQ(st.st_mode & 07777, 0750u);
  ASSERT_EQ(::fchmod(fd.get(), 02750), 0) << err_str(errno);
  fd.reset();

  ASSERT_EQ(::mkdir(v.at("d").c_str(), 0700), 0);
  ASSERT_EQ(::chmod(v.at("d").c_str(), 01777), 0) << err_str(errno);
  EXPECT_EQ(lstat_of(v.at("d")).st_mode & 07777, 01777u);
  ASSERT_EQ(::symlink("f", v.at("l").c_str()), 0);
  ASSERT_EQ(::lchown(v.at("l").c_str(), 7, 8), 0) << err_str(errno);
  st = lstat_of(v.at("l"));
  EXPECT_EQ(st.st_uid, 7u);
  EXPECT_EQ(lstat_of(v.at("f")).st_uid, 42u);  // not followed

  v.remount();
  st = lstat_of(v.at("f"));
  EXPECT_EQ(st.st_mode & 07777, 02750u);
  EXPECT_EQ(st.st_uid, 42u);
  EXPECT_EQ(st.st_gid, 5678u);
  EXPECT_EQ(read_file(v.at("f")), "x");
}

TEST(Attrs, UtimensatOmitNowAndSymlinkNofollow) {
  PosixVault v;
  write_file(v.at("f"), "data");
  const timespec a{1000000000, 123456789}, m{1500000000, 987654321};
  timespec tv[2] = {a, m};
  ASSERT_EQ(::utimensat(AT_FDCWD, v.at("f").c_str(), tv, 0), 0) << err_str(errno);
  struct stat st = lstat_of(v.at("f"));
  EXPECT_TIME(st.st_atim, a);
  EXPECT_TIME(st.st_mtim, m);

  // OMIT keeps one, NOW sets the other to the present.
  const timespec before = now_real();
  tv[0].tv_nsec = UTIME_OMIT;
  tv[1].tv_nsec = UTIME_NOW;
  ASSERT_EQ(::utimensat(AT_FDCWD, v.at("f").c_str(), tv, 0), 0) << err_str(errno);
  st = lstat_of(v.at("f"));
  EXPECT_TIME(st.st_atim, a);
  EXPECT_GE(st.st_mtim.tv_sec, before.tv_sec - 1);
  EXPECT_LE(st.st_mtim.tv_sec, now_real().tv_sec + 1);
  tv[0] = timespec{0, UTIME_NOW};
  tv[1] = timespec{0, UTIME_OMIT};
  const timespec mtime_kept = st.st_mtim;
  ASSERT_EQ(::utimensat(AT_FDCWD, v.at("f").c_str(), tv, 0), 0) << err_str(errno);
  st = lstat_of(v.at("f"));
  EXPECT_GE(st.st_atim.tv_sec, before.tv_sec - 1);
  EXPECT_TIME(st.st_mtim, mtime_kept);

  // A symlink's own times, without touching its target.
  ASSERT_EQ(::symlink("f", v.at("l").c_str()), 0);
  const struct stat target_before = lstat_of(v.at("f"));
  const timespec la{1100000000, 1}, lm{1200000000, 2};
  timespec ltv[2] = {la, lm};
  ASSERT_EQ(::utimensat(AT_FDCWD, v.at("l").c_str(), ltv, AT_SYMLINK_NOFOLLOW), 0) << err_str(errno);
  st = lstat_of(v.at("l"));
  EXPECT_TIME(st.st_atim, la);
  EXPECT_TIME(st.st_mtim, lm);
  EXPECT_TIME(lstat_of(v.at("f")).st_mtim, target_before.st_mtim);
  EXPECT_TIME(lstat_of(v.backing_at("l")).st_mtim, lm);
  // Through the link (following) changes the target.
  const timespec fm{1300000000, 3};
  timespec ftv[2] = {{0, UTIME_OMIT}, fm};
  ASSERT_EQ(::utimensat(AT_FDCWD, v.at("l").c_str(), ftv, 0), 0) << err_str(errno);
  EXPECT_TIME(lstat_of(v.at("f")).st_mtim, fm);
  EXPECT_TIME(lstat_of(v.at("l")).st_mtim, lm);

  // Directories too.
  ASSERT_EQ(::mkdir(v.at("d").c_str(), 0755), 0);
  ASSERT_EQ(::utimensat(AT_FDCWD, v.at("d").c_str(), ltv, 0), 0) << err_str(errno);
  EXPECT_TIME(lstat_of(v.at("d")).st_mtim, lm);

  v.remount();
  EXPECT_TIME(lstat_of(v.at("l")).st_mtim, lm);
  EXPECT_TIME(lstat_of(v.at("f")).st_mtim, fm);
  EXPECT_TIME(lstat_of(v.at("d")).st_mtim, lm);
}

TEST_P(AttrTimes, FutimensSurvivesCloseBufferedWritesAndRemount) {
  PosixVault v(GetParam() ? VaultOptions{} : no_writeback());
  const std::string data = pattern(200000, 31);
  const timespec a{1111111111, 111}, m{1222222222, 222000000};
  {
    Fd fd(v.at("t"), O_CREAT | O_RDWR, 0644);
    ASSERT_TRUE(fd.ok());
    write_all(fd.get(), data);  // with the writeback cache: dirty pages, not yet written
    timespec tv[2] = {a, m};
    ASSERT_EQ(::futimens(fd.get(), tv), 0) << err_str(errno);
    struct stat st {};
    ASSERT_EQ(::fstat(fd.get(), &st), 0);
    EXPECT_TIME(st.st_mtim, m);
    ASSERT_EQ(fd.close(), 0);
  }
  struct stat st = lstat_of(v.at("t"));
  EXPECT_TIME(st.st_mtim, m);
  EXPECT_TIME(st.st_atim, a);
  EXPECT_EQ(st.st_size, static_cast<off_t>(data.size()));
  EXPECT_TIME(lstat_of(v.backing_at("t")).st_mtim, m);
  v.remount();
  st = lstat_of(v.at("t"));
  EXPECT_TIME(st.st_mtim, m);
  EXPECT_SAME_BYTES(read_file(v.at("t")), data);

  // A write after the times were set does move mtime forward (POSIX).
  {
    Fd fd(v.at("t"), O_RDWR);
    timespec tv[2] = {a, m};
    ASSERT_EQ(::futimens(fd.get(), tv), 0);
    pwrite_str(fd.get(), "z", 5);
    ASSERT_EQ(fd.close(), 0);
  }
  EXPECT_GT(lstat_of(v.at("t")).st_mtim.tv_sec, m.tv_sec);
}

TEST(Attrs, StatfsIsSane) {
  PosixVault v;
  struct statvfs mnt {}, back {};
  ASSERT_EQ(::statvfs(v.mnt().c_str(), &mnt), 0) << err_str(errno);
  ASSERT_EQ(::statvfs(v.backing().c_str(), &back), 0);
  EXPECT_GT(mnt.f_bsize, 0u);
  EXPECT_GT(mnt.f_frsize, 0u);
  EXPECT_GT(mnt.f_blocks, 0u);
  EXPECT_LE(mnt.f_bfree, mnt.f_blocks);
  EXPECT_LE(mnt.f_bavail, mnt.f_bfree);
  EXPECT_LE(mnt.f_ffree, mnt.f_files);
  EXPECT_EQ(mnt.f_namemax, 255u);
  // The capacity is the backing filesystem's.
  EXPECT_EQ(static_cast<unsigned long long>(mnt.f_blocks) * mnt.f_frsize,
            static_cast<unsigned long long>(back.f_blocks) * back.f_frsize);
  // statfs on a file inside works too.
  write_file(v.at("f"), "x");
  struct statvfs f {};
  EXPECT_EQ(::statvfs(v.at("f").c_str(), &f), 0);
  EXPECT_EQ(f.f_blocks, mnt.f_blocks);
}

}  // namespace
}  // namespace kmsfs::testing
