// A full disk under a kmsfs mount (issue 17): the vault's backing directory lives on a
// 32 MiB ext4 on a loop device, and a file bigger than the free space is copied in, with
// the kernel writeback cache (the default: write(2) succeeds, the daemon sees the data at
// write-back) and without it. The copy must fail (at write, fsync or close), and then:
//
//  * the file's size as stat shows it, once closed, agrees with what reads return;
//  * after unmount `kmsfs fsck` is clean (no torn block, no inconsistent header);
//  * after a remount every file reads without EIO: the copied file is a prefix of what
//    was written (size and bytes), the files that were there before are unchanged;
//  * on a disk filled to the last block, a sparse file overwritten in place (its holes
//    need space) fails the same way and every 4 KiB block holds either its old or its new
//    content; a dense file overwritten in place needs no space and succeeds;
//  * random writes into holes, appends, writes through a shared mapping (msync) and
//    truncate-extends on a nearly full disk: the first failure comes at write, fsync,
//    msync or close, with ENOSPC (EDQUOT); every byte a successful fsync (msync)
//    acknowledged reads back after a remount, the bytes of the failed call are block by
//    block old or new, and stat's size agrees with what reads return;
//  * `kmsfs rotate --reencrypt` out of space: it does not start, or pauses itself, without
//    damaging any file, and `--resume` finishes it once space is freed.
//
// Needs root, loop devices and e2fsprogs. Without them it skips with the reason, except
// under CI (CI=true), where that is a failure. The kmsfs mount, the ext4 mount and the loop
// device are torn down by destructors, also when a check fails.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/quota.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "loop_ext4.h"
#include "loop_xfs.h"  // Daemon, must, have, add_sbin_to_path
#include "mounted_vault.h"

namespace kmsfs::testing {
namespace {

using namespace std::chrono_literals;

// Where a sequence of write(2)s, fsync and close first failed, and with what.
struct Outcome {
  std::string step = "none";  // "open", "write", "fsync", "close" or "none"
  int err = 0;
  uint64_t written = 0;  // bytes write(2) accepted
};

// Writes `data` at offset 0 in 1 MiB write(2)s (as cp and dd do), then fsync, then close.
Outcome write_fsync_close(const std::string& path, const std::string& data, int flags) {
  Outcome o;
  int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC | flags, 0644);
  if (fd < 0) return {"open", errno, 0};
  while (o.written < data.size()) {
    const size_t n = std::min<size_t>(1 << 20, data.size() - o.written);
    ssize_t w = ::pwrite(fd, data.data() + o.written, n, static_cast<off_t>(o.written));
    if (w < 0) {
      o = {"write", errno, o.written};
      ::close(fd);  // the error is already known; close may report it again
      return o;
    }
    o.written += static_cast<uint64_t>(w);
  }
  if (::fsync(fd) != 0) {
    o.step = "fsync", o.err = errno;
    ::close(fd);
    return o;
  }
  if (::close(fd) != 0) o.step = "close", o.err = errno;
  return o;
}

struct ReadResult {
  int err = 0;  // errno of the first failed read, 0 if none
  std::string data;
};

ReadResult read_all(const std::string& path) {
  ReadResult r;
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return {errno, ""};
  std::string buf(1 << 16, '\0');
  for (;;) {
    ssize_t n = ::read(fd, buf.data(), buf.size());
    if (n < 0) {
      r.err = errno;
      break;
    }
    if (n == 0) break;
    r.data.append(buf.data(), static_cast<size_t>(n));
  }
  ::close(fd);
  return r;
}

uint64_t stat_size(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 ? static_cast<uint64_t>(st.st_size) : UINT64_MAX;
}

// Bytes that differ between a and b over their common length: index of the first, or npos.
size_t first_difference(const std::string& a, const std::string& b) {
  const size_t n = std::min(a.size(), b.size());
  for (size_t i = 0; i < n; ++i)
    if (a[i] != b[i]) return i;
  return std::string::npos;
}

enum class Cache { kWriteback, kNoWriteback };
// What runs out: the filesystem's free blocks, or a block quota on it.
enum class Limit { kDisk, kQuota };
struct Param {
  Cache cache;
  Limit limit;
};

// The quota case: ext4 made with `-O quota`, mounted with usrquota, and a hard block limit
// for root (uid 0), whom the daemon's backing writes are charged to (it creates backing
// files as root for a root caller). Root ignores quota hard limits only through
// CAP_SYS_RESOURCE (the kernel's ignore_hardlimit()), so the daemon runs without it,
// from setpriv with the capability dropped from its bounding set; the test itself keeps
// it, which lets it fill the quota exactly (its own writes are not refused).
constexpr uint64_t kQuotaBytes = 24ull << 20;

// Where a file's bytes stand after a failed write: every 4 KiB block of `got` holds the
// block of `before` or of `after` (both read as zeros past their end), and its size lies
// between theirs. Returns what breaks that, or "".
std::string blocks_old_or_new(const std::string& got, const std::string& before, const std::string& after) {
  const size_t lo = std::min(before.size(), after.size()), hi = std::max(before.size(), after.size());
  if (got.size() < lo || got.size() > hi)
    return "size " + std::to_string(got.size()) + " outside [" + std::to_string(lo) + ", " + std::to_string(hi) + "]";
  auto padded = [&](const std::string& x) {
    std::string p = x.substr(0, got.size());
    p.resize(got.size(), '\0');
    return p;
  };
  const std::string b = padded(before), a = padded(after);
  for (size_t off = 0; off < got.size(); off += 4096) {
    const size_t n = std::min<size_t>(4096, got.size() - off);
    if (got.compare(off, n, b, off, n) != 0 && got.compare(off, n, a, off, n) != 0)
      return "the block at " + std::to_string(off) + " holds neither its old nor its new content";
  }
  return "";
}

class FullDisk : public ::testing::TestWithParam<Param> {
 protected:
  void SetUp() override {
    add_sbin_to_path();
    std::string why = LoopExt4::unavailable();
    if (why.empty() && quota()) {
      for (const char* p : {"setquota", "setpriv"})
        if (!have(p)) why = std::string(p) + " not found (Debian packages quota, util-linux)";
    }
    if (why.empty()) {
      LoopExt4::Options o;
      if (quota()) o = {{"-O", "quota"}, "usrquota"};
      ext4_ = std::make_unique<LoopExt4>(tmp_, quota() ? 64ull << 20 : 32ull << 20, o);
      why = ext4_->skip_reason();
    }
    if (why.empty() && quota()) {
      ProcessResult q = run({"setquota", "-u", "root", "0", std::to_string(kQuotaBytes >> 10), "0", "0", ext4_->mnt()});
      if (q.exit_code != 0) why = "setquota failed: " + q.err + q.out;
    }
    if (!why.empty()) {
      const char* ci = std::getenv("CI");
      if (ci != nullptr && std::string(ci) == "true") FAIL() << "CI=true but the full-disk test cannot run: " << why;
      std::cerr << "\n*** SKIPPING the full-disk tests (issue 17 goes untested here): " << why << " ***\n\n";
      GTEST_SKIP() << why;
    }
    keyring_ = tmp_ / "keyring";
    kmsfs({"keyring", "create", keyring_, "--no-passphrase", "--key", "main"});
    mnt_ = tmp_ / "mnt";
    ::mkdir(mnt_.c_str(), 0755);
    vault_ = ext4_->at("vault");
    ASSERT_EQ(::mkdir(vault_.c_str(), 0755), 0);
    std::vector<std::string> init = {"init", vault_};
    for (const auto& a : key_init_args(keyring_)) init.push_back(a);
    for (const auto& a : matrix_init_args()) init.push_back(a);
    ASSERT_EQ(kmsfs(init).exit_code, 0);
    start();
  }

  void TearDown() override {
    daemon_.reset();  // kmsfs first (it holds files on the ext4), then ext4 and the loop device
    ext4_.reset();
  }

  bool quota() const { return GetParam().limit == Limit::kQuota; }
  bool writeback() const { return GetParam().cache == Cache::kWriteback; }
  const char* mode() const {
    if (quota()) return writeback() ? "quota, writeback" : "quota, no-writeback";
    return writeback() ? "writeback" : "no-writeback";
  }

  void start() {
    std::vector<std::string> extra, prefix;
    if (!writeback()) extra.push_back("--no-writeback");
    if (quota()) prefix = {"setpriv", "--inh-caps=-sys_resource", "--bounding-set=-sys_resource", "--"};
    daemon_ = std::make_unique<Daemon>(vault_, mnt_, keyring_, tmp_ / ("daemon" + std::to_string(starts_++) + ".log"),
                                       extra, prefix);
    daemon_->start();
  }

  // Bytes the daemon may still allocate: the free space, or what is left of the quota.
  uint64_t space_left() const {
    if (!quota()) return ext4_->free_bytes();
    if_dqblk q{};
    if (::quotactl(QCMD(Q_GETQUOTA, USRQUOTA), ext4_->dev().c_str(), 0, reinterpret_cast<caddr_t>(&q)) != 0)
      throw std::runtime_error(std::string("quotactl Q_GETQUOTA: ") + std::strerror(errno));
    const uint64_t limit = q.dqb_bhardlimit * 1024;
    return std::min<uint64_t>(ext4_->free_bytes(), q.dqb_curspace < limit ? limit - q.dqb_curspace : 0);
  }
  // Leaves at most `keep` bytes for the daemon (0: to the last block), with a file beside
  // the vault: fallocate all but a margin (fallocating every free block can fail, as the
  // extent tree needs blocks too), then writes until what is left is at most `keep`.
  void leave(uint64_t keep, const std::string& name = "filler") {
    constexpr uint64_t kMargin = 2 << 20;
    const uint64_t left = space_left();
    int fd = ::open(ext4_->at(name).c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    ASSERT_GE(fd, 0);
    if (left > keep + kMargin) {
      struct stat st {};
      ASSERT_EQ(::fstat(fd, &st), 0);
      ASSERT_EQ(::posix_fallocate(fd, st.st_size, static_cast<off_t>((left - keep - kMargin) & ~uint64_t{4095})), 0);
    }
    const std::string chunk(64 << 10, 'f');
    for (int i = 0; i < 4096 && space_left() > keep; ++i) {
      // 64 KiB at a time while far from `keep`, then a block at a time; the last writes
      // may fail (the disk is full), which is the point.
      const size_t n = space_left() > keep + chunk.size() ? chunk.size() : 4096;
      if (::write(fd, chunk.data(), n) <= 0) break;
      if (i % 16 == 15) ::fdatasync(fd);  // delayed allocation: let statvfs see the blocks
    }
    ::fsync(fd);
    ::close(fd);
    std::cout << mode() << ": " << space_left() << " bytes left for the daemon\n";
  }
  void free_filler(const std::string& name = "filler") { ::unlink(ext4_->at(name).c_str()); }

  // Unmounts, checks the vault offline, mounts again.
  void fsck_and_remount() {
    ASSERT_EQ(daemon_->stop(), 0) << daemon_->log();
    logs_ += daemon_->log();
    daemon_.reset();
    ProcessResult f = kmsfs({"fsck", vault_, "--keyring", keyring_}, false);
    EXPECT_EQ(f.exit_code, 0) << "kmsfs fsck after the full disk:\n" << f.out << f.err << "\n--- daemon log:\n" << logs_;
    start();
  }
  std::string at(const std::string& rel) const { return mnt_ + "/" + rel; }

  // Fills the disk: a copy of more than the free space into `name`, which must fail.
  // Returns what was written.
  std::string fill(const std::string& name, uint64_t seed) {
    const std::string data = pattern(space_left() + (8 << 20), seed);
    Outcome o = write_fsync_close(at(name), data, O_CREAT | O_TRUNC);
    std::cout << mode() << ": copy of " << data.size()
              << " bytes failed at " << o.step << " (" << std::strerror(o.err) << ") after " << o.written
              << " bytes accepted by write(2)\n";
    EXPECT_NE(o.step, "none") << "a copy bigger than the free space succeeded";
    EXPECT_NE(o.step, "open");
    EXPECT_TRUE(o.err == ENOSPC || o.err == EDQUOT) << o.step << ": " << std::strerror(o.err);
    if (!writeback()) {
      EXPECT_EQ(o.step, "write") << "without the cache write(2) itself must fail";
    }
    return data;
  }

  // `name` holds a prefix of `data`, and its size as stat shows it matches what reads give.
  void expect_prefix(const std::string& name, const std::string& data) {
    // With the writeback cache the kernel learns the true size asynchronously: right after
    // the close it may still show the size it set itself, with zeros past the daemon's end
    // (the daemon's invalidation thread, Filesystem::generation_for). It must converge.
    const auto t0 = std::chrono::steady_clock::now();
    uint64_t size = stat_size(at(name));
    ReadResult r = read_all(at(name));
    auto good = [&] {
      return r.err == 0 && size == r.data.size() && r.data.size() < data.size() &&
             first_difference(r.data, data) == std::string::npos;
    };
    for (int i = 0; i < 50 && !good(); ++i) {
      std::this_thread::sleep_for(100ms);
      size = stat_size(at(name));
      r = read_all(at(name));
    }
    std::cout << name << ": consistent after "
              << std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count()
              << " ms\n";
    ASSERT_EQ(r.err, 0) << name << ": read fails: " << std::strerror(r.err);
    EXPECT_EQ(size, r.data.size()) << name << ": stat and read disagree on the size\n--- daemon log:\n" << daemon_->log();
    EXPECT_LT(r.data.size(), data.size()) << name << ": more than could fit\n--- daemon log:\n" << daemon_->log();
    EXPECT_EQ(first_difference(r.data, data), std::string::npos) << name << ": not a prefix of what was written";
    std::cout << name << ": a prefix of " << r.data.size() << " of the " << data.size() << " bytes written\n";
  }

  TempDir tmp_{"kmsfs-enospc"};
  std::unique_ptr<LoopExt4> ext4_;
  std::unique_ptr<Daemon> daemon_;
  std::string keyring_, mnt_, vault_, logs_;
  int starts_ = 0;
};

TEST_P(FullDisk, ACopyBiggerThanTheFreeSpaceFailsAndLeavesAConsistentPrefix) {
  const std::string before = pattern(300000, 1);
  write_file(at("before"), before);
  const std::string data = fill("big", 2);
  // Before the remount too: once closed, the file is what the disk holds.
  expect_prefix("big", data);
  EXPECT_EQ(read_all(at("before")).data, before);
  fsck_and_remount();
  expect_prefix("big", data);
  ReadResult b = read_all(at("before"));
  EXPECT_EQ(b.err, 0);
  EXPECT_EQ(b.data, before);
  // Space freed, the mount works on: the copy now fits.
  ASSERT_EQ(::unlink(at("big").c_str()), 0);
  const std::string small = pattern(4 << 20, 3);
  Outcome o = write_fsync_close(at("again"), small, O_CREAT | O_TRUNC);
  EXPECT_EQ(o.step, "none") << std::strerror(o.err);
  EXPECT_EQ(read_all(at("again")).data, small);
}

TEST_P(FullDisk, OverwritesInPlaceOnAFullDiskKeepTheOldContentOrSucceed) {
  // A sparse file (its 6 MiB gap is a hole in the backing file, authenticated in the
  // header) and a dense one, both there before the disk fills.
  const std::string head = pattern(8192, 4);
  write_file(at("sparse"), head);
  ASSERT_EQ(::truncate(at("sparse").c_str(), 6 << 20), 0);
  const std::string sparse_old = head + std::string((6 << 20) - head.size(), '\0');
  const std::string dense_old = pattern(2 << 20, 5);
  write_file(at("dense"), dense_old);
  // The disk made full under the vault, beside it: with the writeback cache a failed copy
  // is cut back to a prefix and may leave space free again.
  leave(0);

  // Filling the holes needs space the disk no longer has.
  const std::string sparse_new = pattern(6 << 20, 7);
  Outcome o = write_fsync_close(at("sparse"), sparse_new, 0);
  EXPECT_NE(o.step, "none") << "6 MiB of holes filled on a full disk?";
  // Overwriting written blocks needs none: it must succeed.
  const std::string dense_new = pattern(2 << 20, 8);
  Outcome d = write_fsync_close(at("dense"), dense_new, 0);
  EXPECT_EQ(d.step, "none") << "in-place overwrite failed at " << d.step << ": " << std::strerror(d.err);

  fsck_and_remount();
  ReadResult s = read_all(at("sparse"));
  ASSERT_EQ(s.err, 0) << "sparse: " << std::strerror(s.err);
  ASSERT_EQ(s.data.size(), sparse_old.size());
  size_t kept = 0, replaced = 0;
  for (size_t off = 0; off < s.data.size(); off += 4096) {
    const std::string got = s.data.substr(off, 4096);
    if (got == sparse_old.substr(off, 4096)) ++kept;
    else if (got == sparse_new.substr(off, 4096)) ++replaced;
    else ADD_FAILURE() << "sparse: block at " << off << " holds neither its old nor its new content";
  }
  std::cout << "sparse file after the failed overwrite: " << kept << " blocks old, " << replaced << " new\n";
  ReadResult dr = read_all(at("dense"));
  EXPECT_EQ(dr.err, 0);
  EXPECT_TRUE(dr.data == dense_new) << "dense: the in-place overwrite did not land";
}

// Checks, until it holds or 5 s have passed (with the writeback cache the kernel learns of
// a failed write-back's outcome asynchronously), that `name` reads without error, that
// stat's size agrees with the bytes read, and that `check` accepts them.
template <typename Check>
void expect_converges(const std::string& path, Check check) {
  std::string why;
  for (int i = 0; i < 50; ++i) {
    if (i > 0) std::this_thread::sleep_for(100ms);
    const uint64_t size = stat_size(path);
    ReadResult r = read_all(path);
    if (r.err != 0) why = std::string("read fails: ") + std::strerror(r.err);
    else if (size != r.data.size())
      why = "stat says " + std::to_string(size) + " bytes, reads return " + std::to_string(r.data.size());
    else why = check(r.data);
    if (why.empty()) return;
  }
  ADD_FAILURE() << path << ": " << why;
}

// Random writes (each followed by fsync) into the holes of a sparse file until the space
// runs out: the failure is ENOSPC (EDQUOT), at write(2) without the cache, and the file
// holds every fsynced byte and, for the failed write, each block old or new.
TEST_P(FullDisk, RandomWritesFailCleanlyAndKeepEveryFsyncedByte) {
  constexpr size_t kSize = 16 << 20;
  std::string model = pattern(8192, 11);
  write_file(at("random"), model);
  ASSERT_EQ(::truncate(at("random").c_str(), kSize), 0);
  model.resize(kSize, '\0');
  leave(1 << 20);
  std::mt19937_64 rng(12);
  std::string failed_at, next;
  int fd = ::open(at("random").c_str(), O_RDWR | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  int writes = 0, err = 0, short_writes = 0;
  for (; writes < 2000 && failed_at.empty(); ++writes) {
    const size_t len = 1 + rng() % (64 << 10), off = rng() % (kSize - len);
    const std::string data = pattern(len, 100 + writes);
    next = model;
    next.replace(off, len, data);
    // write(2) may be short (the kernel sends a write in several requests, and reports
    // the bytes of those that succeeded; errno is then untouched): the rest is written
    // again, and that fails with the error.
    for (size_t done = 0; done < len && failed_at.empty();) {
      const ssize_t w = ::pwrite(fd, data.data() + done, len - done, static_cast<off_t>(off + done));
      if (w < 0) failed_at = "write", err = errno;
      else if ((done += static_cast<size_t>(w)) < len) ++short_writes;
    }
    if (failed_at.empty() && ::fsync(fd) != 0) failed_at = "fsync", err = errno;
    if (failed_at.empty()) model.swap(next);  // acknowledged by fsync
  }
  if (::close(fd) != 0 && failed_at.empty()) failed_at = "close", err = errno;
  std::cout << mode() << ": random writes: write " << writes << " failed at " << failed_at << " ("
            << std::strerror(err) << "), after " << short_writes << " short write(2)s\n";
  ASSERT_FALSE(failed_at.empty()) << "2000 random writes into holes fitted in 1 MiB?";
  EXPECT_TRUE(err == ENOSPC || err == EDQUOT) << failed_at << ": " << std::strerror(err) << "\n--- daemon log:\n"
                                              << daemon_->log();
  if (!writeback()) {
    EXPECT_EQ(failed_at, "write") << "without the cache write(2) itself must fail";
  }
  auto check = [&](const std::string& got) { return blocks_old_or_new(got, model, next); };
  expect_converges(at("random"), check);
  fsck_and_remount();
  expect_converges(at("random"), check);
}

// ftruncate growing files on a full disk: the extension is a hole (it needs no space), so
// it succeeds or fails with ENOSPC leaving the old size; writing a block into it then needs
// space: it fails with ENOSPC (EDQUOT) and each block is old or new.
TEST_P(FullDisk, TruncateExtendOnAFullDiskSucceedsOrKeepsTheOldSize) {
  // Tails that end inside a block, on a block boundary, and an empty file.
  const std::vector<std::pair<std::string, std::string>> files = {
      {"t1", pattern(10000, 41)}, {"t2", pattern(8192, 42)}, {"t3", ""}};
  for (const auto& [name, content] : files) write_file(at(name), content);
  ::sync();
  leave(0);
  std::vector<std::string> model;
  int out_of_space = 0;  // at ftruncate (sealing the new last block needs space) or at the write
  for (const auto& [name, content] : files) {
    const uint64_t to = content.size() + (50ull << 20);  // far beyond the free space: holes
    int fd = ::open(at(name).c_str(), O_RDWR | O_CLOEXEC);
    ASSERT_GE(fd, 0);
    int rc = ::ftruncate(fd, static_cast<off_t>(to));
    int err = rc == 0 ? 0 : errno;
    if (rc == 0 && ::fsync(fd) != 0) rc = -1, err = errno;
    EXPECT_EQ(::close(fd), 0);
    std::cout << mode() << ": " << name << ": ftruncate to " << to << " on a full disk: "
              << (rc == 0 ? "ok" : std::strerror(err)) << "\n";
    if (rc == 0) {
      std::string grown = content;
      grown.resize(to, '\0');
      model.push_back(grown);
    } else {
      EXPECT_TRUE(err == ENOSPC || err == EDQUOT) << name << ": " << std::strerror(err);
      model.push_back(content);
      ++out_of_space;
    }
  }
  // Writing into the new holes needs space the disk does not have.
  const std::string block = pattern(4096, 43);
  std::vector<std::string> after = model;
  for (size_t i = 0; i < files.size(); ++i) {
    if (model[i].size() < (1 << 20)) continue;
    const size_t off = model[i].size() - (1 << 20);
    after[i].replace(off, block.size(), block);
    Outcome o;
    int fd = ::open(at(files[i].first).c_str(), O_WRONLY | O_CLOEXEC);
    ASSERT_GE(fd, 0);
    if (::pwrite(fd, block.data(), block.size(), static_cast<off_t>(off)) != 4096) o.step = "write", o.err = errno;
    else if (::fsync(fd) != 0) o.step = "fsync", o.err = errno;
    if (::close(fd) != 0 && o.err == 0) o.step = "close", o.err = errno;
    std::cout << mode() << ": " << files[i].first << ": a block written into the extension: " << o.step << " "
              << std::strerror(o.err) << "\n";
    if (o.step == "none") {
      model[i] = after[i];
    } else {
      ++out_of_space;
      EXPECT_TRUE(o.err == ENOSPC || o.err == EDQUOT) << files[i].first << ": " << o.step << ": " << std::strerror(o.err);
      if (!writeback()) {
        EXPECT_EQ(o.step, "write") << "without the cache write(2) itself must fail";
      }
    }
  }
  EXPECT_EQ(out_of_space, 3) << "each file needs a block at ftruncate or at the write: the disk was not full";
  auto check_all = [&] {
    for (size_t i = 0; i < files.size(); ++i)
      expect_converges(at(files[i].first),
                       [&](const std::string& got) { return blocks_old_or_new(got, model[i], after[i]); });
  };
  check_all();
  fsck_and_remount();
  check_all();
}

// Re-encryption (rotate --reencrypt) when space runs out: on a disk full to the last block
// it does not start (the config cannot be rewritten) and says so; with room to start but
// not for its journal it pauses itself (exit 7, "paused_for_space"), damaging nothing; once
// space is freed, --resume finishes it, and every file reads back as it was.
TEST_P(FullDisk, ReencryptionOutOfSpaceDamagesNothingAndFinishesOnceSpaceIsFreed) {
  if (std::getenv("KMSFS_TEST_KMS") != nullptr) GTEST_SKIP() << "re-encrypts under a keyring key version";
  std::vector<std::string> content;
  for (int i = 0; i < 6; ++i) {
    content.push_back(pattern((1 << 20) + 1000 * i, 51 + i));
    write_file(at("r" + std::to_string(i)), content.back());
  }
  ::sync();
  ASSERT_EQ(kmsfs({"keyring", "rotate", keyring_, "main"}).exit_code, 0);
  auto expect_unchanged = [&](const char* when) {
    for (int i = 0; i < 6; ++i) {
      ReadResult got = read_all(at("r" + std::to_string(i)));
      EXPECT_EQ(got.err, 0) << when << ": r" << i << ": " << std::strerror(got.err);
      EXPECT_TRUE(got.data == content[i]) << when << ": r" << i << " changed";
    }
  };
  const std::vector<std::string> rotate_cmd = {"rotate", mnt_, "--to", "main", "--reencrypt", "--rate-mb", "0", "--wait"};

  // On a disk full to the last block the run either cannot start (kmsfs.conf cannot be
  // rewritten: nothing changed) or starts and pauses itself at its first journal write.
  leave(0);
  ProcessResult r = kmsfs(rotate_cmd, false);
  std::cout << mode() << ": re-encryption on a full disk: exit " << r.exit_code << ": " << r.out << r.err;
  EXPECT_EQ(r.exit_code, 7) << r.out << r.err;
  if (r.err.find("rotation not started") != std::string::npos) {
    expect_unchanged("after a start on a full disk");
    free_filler();
    leave(512 << 10);  // room for the config and the rotation's state, not for a 1 MiB journal entry
    r = kmsfs(rotate_cmd, false);
    std::cout << mode() << ": re-encryption with 512 KiB free: exit " << r.exit_code << ": " << r.out << r.err;
    EXPECT_EQ(r.exit_code, 7) << r.out << r.err;
  }
  EXPECT_NE(r.err.find("out of space"), std::string::npos) << r.err;
  ProcessResult st = kmsfs({"rotate", mnt_, "--status", "--json"}, false);
  nlohmann::json j = nlohmann::json::parse(st.out, nullptr, false);
  EXPECT_EQ(j.value("phase", ""), "paused") << st.out << st.err;
  EXPECT_TRUE(j.value("paused_for_space", false)) << st.out;
  expect_unchanged("after running out of space");
  // The pause outlives the daemon: it must not restart by itself. (fsck would report the
  // file whose re-encryption stopped part-way, as it should: it is checked at the end.)
  ASSERT_EQ(daemon_->stop(), 0) << daemon_->log();
  logs_ += daemon_->log();
  start();
  expect_unchanged("after the remount");
  st = kmsfs({"rotate", mnt_, "--status", "--json"}, false);
  EXPECT_EQ(nlohmann::json::parse(st.out, nullptr, false).value("phase", ""), "paused") << st.out << st.err;

  free_filler();
  ProcessResult resumed = kmsfs({"rotate", mnt_, "--resume", "--wait"}, false);
  std::cout << mode() << ": --resume once space is freed: exit " << resumed.exit_code << "\n" << resumed.out;
  EXPECT_EQ(resumed.exit_code, 0) << resumed.out << resumed.err;
  st = kmsfs({"rotate", mnt_, "--status", "--json"}, false);
  j = nlohmann::json::parse(st.out, nullptr, false);
  EXPECT_EQ(j.value("phase", ""), "done") << st.out;
  EXPECT_EQ(j.value("failed", -1), 0) << st.out;
  fsck_and_remount();
  expect_unchanged("after the re-encryption");
}

TEST_P(FullDisk, AppendsFailCleanlyAndKeepEveryFsyncedByte) {
  const std::string stream = pattern(64 << 20, 21);
  leave(3 << 20);
  int fd = ::open(at("log").c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  ASSERT_GE(fd, 0);
  size_t written = 0, acked = 0;
  std::string failed_at;
  int err = 0;
  for (int i = 0; failed_at.empty() && written + 50000 <= stream.size(); ++i) {
    ssize_t w = ::write(fd, stream.data() + written, 50000);  // not block-aligned on purpose
    if (w < 0) failed_at = "write", err = errno;
    else written += static_cast<size_t>(w);
    if (failed_at.empty() && i % 3 == 2) {
      if (::fsync(fd) == 0) acked = written;
      else failed_at = "fsync", err = errno;
    }
  }
  if (::close(fd) != 0 && failed_at.empty()) failed_at = "close", err = errno;
  std::cout << mode() << ": appends failed at " << failed_at << " (" << std::strerror(err) << ") with " << written
            << " bytes accepted, " << acked << " acknowledged by fsync\n";
  ASSERT_FALSE(failed_at.empty());
  EXPECT_TRUE(err == ENOSPC || err == EDQUOT) << std::strerror(err);
  if (!writeback()) {
    EXPECT_EQ(failed_at, "write") << "without the cache write(2) itself must fail";
  }
  const std::string before = stream.substr(0, acked), after = stream.substr(0, written);
  auto check = [&](const std::string& got) {
    if (got.size() < acked) return "lost acknowledged bytes: " + std::to_string(got.size()) + " < " + std::to_string(acked);
    return blocks_old_or_new(got, before, after);
  };
  expect_converges(at("log"), check);
  fsck_and_remount();
  expect_converges(at("log"), check);
  // Space freed, appending works again.
  free_filler();
  const std::string more = pattern(100000, 22);
  fd = ::open(at("log").c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  const uint64_t at_size = stat_size(at("log"));
  EXPECT_EQ(::write(fd, more.data(), more.size()), static_cast<ssize_t>(more.size()));
  EXPECT_EQ(::fsync(fd), 0) << std::strerror(errno);
  EXPECT_EQ(::close(fd), 0);
  EXPECT_EQ(read_all(at("log")).data.substr(at_size), more);
}

TEST_P(FullDisk, WritesThroughASharedMappingFailAtMsyncAndKeepEverySyncedPage) {
  constexpr size_t kSize = 8 << 20, kChunk = 256 << 10;
  int fd = ::open(at("mapped").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::ftruncate(fd, kSize), 0);  // sparse: pages written through the map need space
  ASSERT_EQ(::fsync(fd), 0);
  leave(1 << 20);
  char* map = static_cast<char*>(::mmap(nullptr, kSize, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0));
  ASSERT_NE(map, MAP_FAILED) << std::strerror(errno);
  const std::string data = pattern(kSize, 31);
  size_t acked = 0;
  int err = 0;
  for (size_t off = 0; off < kSize; off += kChunk) {
    std::memcpy(map + off, data.data() + off, kChunk);
    if (::msync(map + off, kChunk, MS_SYNC) != 0) {
      err = errno;
      break;
    }
    acked = off + kChunk;
  }
  ::munmap(map, kSize);
  const int close_rc = ::close(fd);
  std::cout << mode() << ": writes through the mapping failed at msync after " << acked << " bytes ("
            << std::strerror(err) << "), close " << (close_rc == 0 ? "ok" : std::strerror(errno)) << "\n";
  ASSERT_NE(err, 0) << "8 MiB written through a mapping fitted in 1 MiB?";
  EXPECT_TRUE(err == ENOSPC || err == EDQUOT) << std::strerror(err);
  const std::string zeros(kSize, '\0');
  auto check = [&](const std::string& got) -> std::string {
    if (got.size() != kSize) return "size " + std::to_string(got.size()) + ", not the " + std::to_string(kSize) + " set";
    if (got.compare(0, acked, data, 0, acked) != 0) return "pages synced by msync lost";
    return blocks_old_or_new(got, zeros, data);
  };
  expect_converges(at("mapped"), check);
  fsck_and_remount();
  expect_converges(at("mapped"), check);
}

INSTANTIATE_TEST_SUITE_P(Cache, FullDisk,
                         // Limit::kQuota: not yet (ext4 -O quota with -o usrquota did not mount here).
                         ::testing::Values(Param{Cache::kWriteback, Limit::kDisk}, Param{Cache::kNoWriteback, Limit::kDisk}),
                         [](const ::testing::TestParamInfo<Param>& i) {
                           std::string n = i.param.cache == Cache::kWriteback ? "writeback" : "no_writeback";
                           return i.param.limit == Limit::kQuota ? "quota_" + n : n;
                         });

}  // namespace
}  // namespace kmsfs::testing
