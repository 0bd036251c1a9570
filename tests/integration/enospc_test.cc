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
//    content; a dense file overwritten in place needs no space and succeeds.
//
// Needs root, loop devices and e2fsprogs. Without them it skips with the reason, except
// under CI (CI=true), where that is a failure. The kmsfs mount, the ext4 mount and the loop
// device are torn down by destructors, also when a check fails.
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "loop_xfs.h"  // Daemon, must, have, add_sbin_to_path
#include "mounted_vault.h"

namespace kmsfs::testing {
namespace {

using namespace std::chrono_literals;

// An ext4 filesystem in an image file on a loop device. -m 0: no blocks reserved for root
// (the daemon runs as root), so the free space statvfs reports is all there is.
class LoopExt4 {
 public:
  static std::string unavailable() {
    if (::geteuid() != 0) return "needs root";
    if (::access("/dev/loop-control", F_OK) != 0) return "no /dev/loop-control (loop devices unavailable)";
    for (const char* p : {"losetup", "mkfs.ext4"})
      if (!have(p)) return std::string(p) + " not found (Debian packages mount, e2fsprogs)";
    return "";
  }

  LoopExt4(const TempDir& tmp, uint64_t size) : image_(tmp / "ext4.img"), mnt_(tmp / "ext4") {
    ::mkdir(mnt_.c_str(), 0755);
    int fd = ::open(image_.c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0600);
    if (fd < 0 || ::ftruncate(fd, static_cast<off_t>(size)) != 0) throw std::runtime_error("cannot create image");
    ::close(fd);
    must({"mkfs.ext4", "-q", "-F", "-m", "0", image_});
    ProcessResult r = run({"losetup", "--find", "--show", image_});
    if (r.exit_code != 0) {
      skip_reason_ = "losetup --find --show failed: " + r.err;
      return;
    }
    dev_ = r.out.substr(0, r.out.find('\n'));
    r = run({"mount", "-t", "ext4", dev_, mnt_});
    if (r.exit_code != 0) {
      skip_reason_ = "cannot mount ext4 from a loop device: " + r.err;
      return;
    }
    mounted_ = true;
  }
  ~LoopExt4() {
    if (mounted_ && ::umount2(mnt_.c_str(), 0) != 0) ::umount2(mnt_.c_str(), MNT_DETACH);
    if (!dev_.empty()) {
      // A lazily detached filesystem may hold the device a moment longer.
      for (int i = 0; i < 50 && run({"losetup", "-d", dev_}).exit_code != 0; ++i) std::this_thread::sleep_for(100ms);
    }
  }
  LoopExt4(const LoopExt4&) = delete;
  LoopExt4& operator=(const LoopExt4&) = delete;

  const std::string& skip_reason() const { return skip_reason_; }
  std::string at(const std::string& rel) const { return mnt_ + "/" + rel; }
  uint64_t free_bytes() const {
    struct statvfs sv {};
    ::statvfs(mnt_.c_str(), &sv);
    return static_cast<uint64_t>(sv.f_bavail) * sv.f_frsize;
  }

 private:
  std::string image_, mnt_, dev_, skip_reason_;
  bool mounted_ = false;
};

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

class FullDisk : public ::testing::TestWithParam<Cache> {
 protected:
  void SetUp() override {
    add_sbin_to_path();
    std::string why = LoopExt4::unavailable();
    if (why.empty()) {
      ext4_ = std::make_unique<LoopExt4>(tmp_, 32ull << 20);
      why = ext4_->skip_reason();
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

  void start() {
    std::vector<std::string> extra;
    if (GetParam() == Cache::kNoWriteback) extra.push_back("--no-writeback");
    daemon_ = std::make_unique<Daemon>(vault_, mnt_, keyring_, tmp_ / ("daemon" + std::to_string(starts_++) + ".log"), extra);
    daemon_->start();
  }
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
    const std::string data = pattern(ext4_->free_bytes() + (8 << 20), seed);
    Outcome o = write_fsync_close(at(name), data, O_CREAT | O_TRUNC);
    std::cout << (GetParam() == Cache::kWriteback ? "writeback" : "no-writeback") << ": copy of " << data.size()
              << " bytes failed at " << o.step << " (" << std::strerror(o.err) << ") after " << o.written
              << " bytes accepted by write(2)\n";
    EXPECT_NE(o.step, "none") << "a copy bigger than the free space succeeded";
    EXPECT_NE(o.step, "open");
    EXPECT_TRUE(o.err == ENOSPC || o.err == EDQUOT) << o.step << ": " << std::strerror(o.err);
    if (GetParam() == Cache::kNoWriteback) {
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
  {
    const std::string chunk(1 << 20, 'f');
    int fd = ::open(ext4_->at("filler").c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    ASSERT_GE(fd, 0);
    for (size_t n = chunk.size(); n >= 4096; n /= 16)  // then smaller, to the last block
      while (::write(fd, chunk.data(), n) > 0) {
      }
    ::fsync(fd);
    ::close(fd);
  }
  std::cout << "free after filling: " << ext4_->free_bytes() << " bytes\n";

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

INSTANTIATE_TEST_SUITE_P(Cache, FullDisk, ::testing::Values(Cache::kWriteback, Cache::kNoWriteback),
                         [](const ::testing::TestParamInfo<Cache>& i) {
                           return i.param == Cache::kWriteback ? "writeback" : "no_writeback";
                         });

}  // namespace
}  // namespace kmsfs::testing
