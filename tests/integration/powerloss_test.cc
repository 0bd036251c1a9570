// Power loss under a kmsfs mount: the vault's backing directory lives on an XFS filesystem
// on a loop device, and in the middle of a workload the XFS is shut down without flushing
// its log (`xfs_io -x -c shutdown`): everything it had not yet made durable is dropped, as
// a power cut would. Then kmsfs is unmounted (it sees EIO), the XFS is unmounted and
// mounted again (log recovery), kmsfs is mounted again, and every file is checked against
// a model of what the workload had fsync'ed:
//
//  * a file, name or unlink made durable by fsync (file) and fsync (directory) is there;
//  * a file's size lies between the smallest and the largest size it had since its last
//    fsync (so everything fsync'ed is still inside it);
//  * every block reads, except that a block the workload wrote (or kmsfs re-sealed: the old
//    last block on a size change) after the file's last fsync may fail with EIO;
//  * every byte read is one the file held at that position at some time since its last
//    fsync: the fsync'ed byte, a byte written since, or zero where the file was shorter.
//    Never anything else (no stale, foreign or unauthenticated bytes).
//
// Workload (random, seeded): sequential appends with fdatasync every few appends, random
// overwrites of a preallocated file with fsync, truncates up and down (also across large
// sparse gaps) with writes, many small files (create, write, fsync, fsync of the
// directory; rewrite with O_TRUNC; unlink), and atomic replace (write temp, fsync, rename
// over, fsync of the directory). A third of the small files and one of the two replaced
// config files have names of 200+ bytes, which encrypted names store under a hashed short
// name with the full name in a side file (FORMAT.md §11.4): create, unlink and rename over
// of those must be as crash-safe as of short names, and leave no stray entry. The cut comes
// after a seeded number of operations plus a seeded delay, while the workload keeps running.
//
// Needs root, loop devices and xfsprogs; skips with the reason otherwise. Everything
// (kmsfs mount, XFS mount, loop device) is torn down by destructors, also when a check fails.
#include <fcntl.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <thread>

#include "crash_model.h"
#include "loop_xfs.h"
#include "mounted_vault.h"

namespace kmsfs::testing {
namespace {

using namespace std::chrono_literals;

constexpr int kIterations = 12;

// ---------------------------------------------------------------- the names

// A name and the files it may refer to after the cut.
// Over the backing NAME_MAX once encrypted (a 200-byte name is 272 base64url characters).
const std::string kLongConfig = "config-" + std::string(200, 'L');

struct NameModel {
  std::vector<int> candidates;  // file ids; the name must hold one of them if present
  bool may_be_absent = true;
  bool must_be_absent = false;  // unlink made durable
};

// ---------------------------------------------------------------- the workload

class Workload : public CutAwareWorkload {
 public:
  Workload(std::string root, uint64_t B, uint64_t seed) : CutAwareWorkload(std::move(root), B, seed) {}
  ~Workload() { close_all(); }

  // Closes the long-lived descriptors (close may fail after the cut; that is fine).
  void close_all() {
    for (int* fd : {&append_fd_, &random_fd_, &trunc_fd_}) {
      if (*fd >= 0) ::close(*fd);
      *fd = -1;
    }
  }

  // Durable starting point: files created, filled, fsync'ed, directories fsync'ed.
  void prepare() {
    mkdir_synced("small");
    append_id_ = create_synced("append.log", "", &append_fd_, O_APPEND);
    random_id_ = create_synced("random.db", rand_bytes(2 << 20), &random_fd_, 0);
    trunc_id_ = create_synced("trunc.bin", rand_bytes(300000), &trunc_fd_, 0);
    int cfg = -1;
    config_id_ = create_synced("config", "version 0\n" + rand_bytes(3000), &cfg, 0);
    ::close(cfg);
    create_synced(kLongConfig, "version 0\n" + rand_bytes(2000), &cfg, 0);
    ::close(cfg);
  }

  // Runs until `stop`; counts operations in `ops`.
  // `syncing` is non-zero while a big fsync is in flight (the cut aims for those).
  void run(std::atomic<bool>& stop, std::atomic<int>& ops, std::atomic<bool>& cut_started, std::atomic<int>& syncing) {
    watch(cut_started, syncing);
    while (!stop.load()) {
      step();
      ops.fetch_add(1);
    }
  }

  const std::map<std::string, NameModel>& names() const { return names_; }
  const FileModel& file(int id) const { return files_[static_cast<size_t>(id)]; }
  uint64_t bytes() const { return bytes_; }

 private:
  int new_file(const std::string& name) {
    FileModel f;
    f.name = name;
    files_.push_back(std::move(f));
    return static_cast<int>(files_.size()) - 1;
  }

  static std::string dir_of(const std::string& rel) {
    auto s = rel.find_last_of('/');
    return s == std::string::npos ? "." : rel.substr(0, s);
  }

  void mkdir_synced(const std::string& rel) {
    if (::mkdir(p(rel).c_str(), 0755) != 0) throw std::runtime_error("mkdir " + rel + ": " + std::strerror(errno));
    if (!fsync_dir(".")) throw std::runtime_error("fsync of the root failed: " + failure());
  }

  // Creates, writes, fsyncs the file and its directory; leaves the fd open in *fd.
  int create_synced(const std::string& rel, const std::string& data, int* fd, int extra_flags) {
    int id = new_file(rel);
    FileModel& f = files_[static_cast<size_t>(id)];
    *fd = ::open(p(rel).c_str(), O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC | extra_flags, 0644);
    if (*fd < 0) throw std::runtime_error("create " + rel + ": " + std::strerror(errno));
    if (!data.empty()) {
      f.write(0, data, B_);
      if (::pwrite(*fd, data.data(), data.size(), 0) != static_cast<ssize_t>(data.size()))
        throw std::runtime_error("write " + rel + ": " + std::strerror(errno));
    }
    if (::fsync(*fd) != 0) throw std::runtime_error("fsync " + rel + ": " + std::strerror(errno));
    f.synced_now();
    if (!fsync_dir(dir_of(rel))) throw std::runtime_error("fsync dir of " + rel + ": " + failure());
    names_[rel] = NameModel{{id}, false, false};
    return id;
  }

  void step() {
    ++op_;
    uint64_t r = uni(0, 99);
    if (r < 22) return append();
    if (r < 27) return sync_file(append_fd_, append_id_, uni(0, 1));
    if (r < 45) return overwrite();
    if (r < 50) return sync_file(random_fd_, random_id_, uni(0, 1));
    if (r < 58) return trunc_op();
    if (r < 62) return sync_file(trunc_fd_, trunc_id_, 0);
    if (r < 80) return small_create();
    if (r < 88) return small_rewrite();
    if (r < 94) return small_unlink();
    return replace_config();
  }

  void append() {
    FileModel& f = files_[static_cast<size_t>(append_id_)];
    if (f.cur.size() > (48u << 20)) return overwrite();
    uint64_t r = uni(0, 19);
    size_t len = r == 0 ? uni(256 << 10, 1 << 20) : r < 6 ? uni(4096, 65536) : uni(1, 6000);
    std::string d = rand_bytes(len);
    f.write(f.cur.size(), d, B_);
    bytes_ += len;
    check(::write(append_fd_, d.data(), len), "append");
  }

  void overwrite() {
    FileModel& f = files_[static_cast<size_t>(random_id_)];
    size_t len = uni(1, 16384);
    uint64_t off = uni(0, f.cur.size() - len);
    std::string d = rand_bytes(len);
    f.write(off, d, B_);
    bytes_ += len;
    check(::pwrite(random_fd_, d.data(), len, static_cast<off_t>(off)), "overwrite");
  }

  void sync_file(int fd, int id, bool data_only) {
    FileModel& f = files_[static_cast<size_t>(id)];
    syncing_->fetch_add(1);
    long rc = data_only ? ::fdatasync(fd) : ::fsync(fd);
    syncing_->fetch_sub(1);
    if (trusted(rc, data_only ? "fdatasync " + f.name : "fsync " + f.name)) f.synced_now();
  }

  void trunc_op() {
    FileModel& f = files_[static_cast<size_t>(trunc_id_)];
    uint64_t size = f.cur.size();
    uint64_t r = uni(0, 9);
    if (r < 3) {
      uint64_t n = size ? uni(0, size) : 0;
      f.truncate(n);
      check(::ftruncate(trunc_fd_, static_cast<off_t>(n)), "ftruncate down");
    } else if (r < 5 && size < (8u << 20)) {
      // Up, sometimes across a gap larger than the sealed-gap limit (a sparse range).
      uint64_t n = size + (uni(0, 2) == 0 ? uni((1 << 20) + 2 * B_, 3 << 20) : uni(1, 100000));
      f.truncate(n);
      check(::ftruncate(trunc_fd_, static_cast<off_t>(n)), "ftruncate up");
    } else {
      size_t len = uni(1, 20000);
      uint64_t off = uni(0, size + 50000);
      if (off + len > (10u << 20)) off = size ? uni(0, size - 1) : 0;
      std::string d = rand_bytes(len);
      f.write(off, d, B_);
      bytes_ += len;
      check(::pwrite(trunc_fd_, d.data(), len, static_cast<off_t>(off)), "write trunc.bin");
    }
  }

  void small_create() {
    std::string rel = uni(0, 2) == 0 ? "small/" + std::string(210, 'l') + std::to_string(next_small_++)
                                     : "small/s" + std::to_string(next_small_++);
    int id = new_file(rel);
    names_[rel] = NameModel{{id}, true, false};
    bool sync = uni(0, 9) != 0;  // a few stay unsynced: they may be absent or unreadable
    int fd = ::open(p(rel).c_str(), O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0644);
    if (!check(fd, "create " + rel)) return;
    std::string d = rand_bytes(uni(0, 4) == 0 ? uni(0, 100) : uni(100, 12000));
    FileModel& f = files_[static_cast<size_t>(id)];
    if (!d.empty()) f.write(0, d, B_);
    bytes_ += d.size();
    bool ok = check(::write(fd, d.data(), d.size()), "write " + rel);
    if (ok && sync && trusted(::fsync(fd), "fsync " + rel)) f.synced_now();
    ::close(fd);
    if (ok && sync && f.ever_synced && fsync_dir("small")) {
      names_[rel].may_be_absent = false;
      live_small_.push_back(rel);
    }
  }

  void small_rewrite() {
    if (live_small_.empty()) return small_create();
    const std::string rel = live_small_[uni(0, live_small_.size() - 1)];
    FileModel& f = files_[static_cast<size_t>(names_[rel].candidates[0])];
    f.truncate(0);
    int fd = ::open(p(rel).c_str(), O_WRONLY | O_TRUNC | O_CLOEXEC);
    if (!check(fd, "open O_TRUNC " + rel)) return;
    std::string d = rand_bytes(uni(1, 12000));
    f.write(0, d, B_);
    bytes_ += d.size();
    if (check(::write(fd, d.data(), d.size()), "rewrite " + rel) && trusted(::fdatasync(fd), "fdatasync " + rel))
      f.synced_now();
    ::close(fd);
  }

  void small_unlink() {
    if (live_small_.size() < 10) return small_create();
    size_t i = uni(0, live_small_.size() - 1);
    const std::string rel = live_small_[i];
    live_small_.erase(live_small_.begin() + static_cast<long>(i));
    NameModel& n = names_[rel];
    n.may_be_absent = true;
    if (check(::unlink(p(rel).c_str()), "unlink " + rel) && fsync_dir("small")) n.must_be_absent = true;
  }

  // The classic atomic replace: temp file, fsync, rename over, fsync of the directory.
  void replace_config() {
    const std::string target = uni(0, 1) ? kLongConfig : "config";
    const std::string tmp = (uni(0, 1) ? std::string(200, 't') : std::string()) + "config.tmp" + std::to_string(op_);
    int id = new_file(target.substr(0, 10) + "... (written as " + tmp.substr(tmp.size() > 20 ? tmp.size() - 20 : 0) + ")");
    names_[tmp] = NameModel{{id}, true, false};
    int fd = ::open(p(tmp).c_str(), O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0644);
    if (!check(fd, "create " + tmp)) return;
    std::string d = "version " + std::to_string(op_) + "\n" + rand_bytes(uni(10, 9000));
    FileModel& f = files_[static_cast<size_t>(id)];
    f.write(0, d, B_);
    bool ok = check(::write(fd, d.data(), d.size()), "write " + tmp) && trusted(::fsync(fd), "fsync " + tmp);
    if (ok) f.synced_now();
    ::close(fd);
    if (!ok) return;
    // From here the name "config" may hold the old or the new file, and the temp name
    // may or may not still exist (with the new file).
    NameModel& c = names_[target];
    c.candidates.push_back(id);
    if (!check(::rename(p(tmp).c_str(), p(target).c_str()), "rename " + tmp)) return;
    names_[tmp].may_be_absent = true;
    if (fsync_dir(".")) {
      c.candidates = {id};
      names_[tmp].must_be_absent = true;
    }
  }

  uint64_t bytes_ = 0;
  std::vector<FileModel> files_;
  std::map<std::string, NameModel> names_;
  std::vector<std::string> live_small_;
  int next_small_ = 0;
  int append_id_ = -1, random_id_ = -1, trunc_id_ = -1, config_id_ = -1;
  int append_fd_ = -1, random_fd_ = -1, trunc_fd_ = -1;
};

// ---------------------------------------------------------------- the test

class PowerLoss : public ::testing::Test {
 protected:
  void SetUp() override {
    add_sbin_to_path();
    std::string why = LoopXfs::unavailable();
    if (!why.empty()) GTEST_SKIP() << why;
    xfs_ = std::make_unique<LoopXfs>(tmp_);
    if (!xfs_->skip_reason().empty()) GTEST_SKIP() << xfs_->skip_reason();
    keyring_ = tmp_ / "keyring";
    kmsfs({"keyring", "create", keyring_, "--no-passphrase", "--key", "main"});
    mnt_ = tmp_ / "mnt";
    ::mkdir(mnt_.c_str(), 0755);
  }

  void TearDown() override {
    daemon_.reset();  // kmsfs first (it holds files on the XFS), then XFS and the loop device
    xfs_.reset();
  }

  // One iteration: fresh vault on the XFS, workload, cut, recovery, check.
  // Odd iterations mount without the kernel writeback cache: then every write reaches
  // XFS's page cache at once instead of waiting in the FUSE mount's.
  void iteration(int it, uint64_t seed) {
    const bool writeback = it % 2 == 0;
    const std::vector<std::string> extra = writeback ? std::vector<std::string>{} : std::vector<std::string>{"--no-writeback"};
    SCOPED_TRACE("iteration " + std::to_string(it) + ", seed " + std::to_string(seed) +
                 (writeback ? "" : ", --no-writeback"));
    const std::string vault = xfs_->at("vault" + std::to_string(it));
    ASSERT_EQ(::mkdir(vault.c_str(), 0755), 0);
    std::vector<std::string> init = {"init", vault};
    for (const auto& a : key_init_args(keyring_)) init.push_back(a);
    for (const auto& a : matrix_init_args()) init.push_back(a);
    ProcessResult ir = kmsfs(init);
    ASSERT_EQ(ir.exit_code, 0);
    uint64_t B = 4096;
    if (auto at = ir.out.find("block size: "); at != std::string::npos) B = std::stoull(ir.out.substr(at + 12));
    must({"sync", "-f", xfs_->mnt()});  // the vault (config, directory) exists durably
    const std::string log = tmp_ / ("daemon" + std::to_string(it) + ".log");
    daemon_ = std::make_unique<Daemon>(vault, mnt_, keyring_, log, extra);
    daemon_->start();

    // The cut: after a seeded number of operations, either at a seeded delay or (more
    // often) a seeded delay into the next fsync, when kmsfs and XFS are writing back.
    std::mt19937_64 rng(seed);
    const int cut_after = static_cast<int>(std::uniform_int_distribution<int>(100, 1000)(rng));
    const bool in_fsync = std::uniform_int_distribution<int>(0, 3)(rng) != 0;
    const int delay_us = std::uniform_int_distribution<int>(0, in_fsync ? 15000 : 40000)(rng);
    Workload w(mnt_, B, seed);
    ASSERT_NO_THROW(w.prepare()) << daemon_->log();
    std::atomic<bool> stop{false}, cut_started{false};
    std::atomic<int> ops{0}, syncing{0};
    auto t0 = std::chrono::steady_clock::now();
    std::thread worker([&] { w.run(stop, ops, cut_started, syncing); });
    while ((ops.load() < cut_after || (in_fsync && syncing.load() == 0)) && std::chrono::steady_clock::now() - t0 < 60s)
      std::this_thread::yield();
    std::this_thread::sleep_for(std::chrono::microseconds(delay_us));
    cut_started = true;
    std::string cut_error;
    try {
      xfs_->shutdown();
    } catch (const std::exception& e) {
      cut_error = e.what();
    }
    std::this_thread::sleep_for(20ms);  // the workload runs into the dead filesystem a little
    stop = true;
    worker.join();
    w.close_all();
    ASSERT_TRUE(cut_error.empty()) << cut_error;
    const std::string before = w.failure();
    ASSERT_TRUE(before.empty()) << before << "\n" << daemon_->log();
    const int cut_op = w.op_count();

    // Recovery: kmsfs goes (it saw EIO), the XFS goes and comes back (log replay).
    int drc = daemon_->stop();
    std::string log1 = daemon_->log();
    daemon_.reset();
    ASSERT_NO_THROW(xfs_->unmount());
    ASSERT_NO_THROW(xfs_->mount());
    daemon_ = std::make_unique<Daemon>(vault, mnt_, keyring_, log + ".after", extra);
    ASSERT_NO_THROW(daemon_->start());

    // Check every name the workload used.
    std::vector<std::string> problems;
    size_t files_checked = 0, eio_blocks = 0;
    std::vector<std::string> lost_blocks;
    for (const auto& [name, n] : w.names()) {
      struct stat st;
      const std::string path = mnt_ + "/" + name;
      if (::lstat(path.c_str(), &st) != 0) {
        if (errno != ENOENT) problems.push_back(name + ": stat fails: " + std::strerror(errno));
        else if (!n.may_be_absent) problems.push_back(name + ": missing, but it and its directory were fsync'ed");
        continue;
      }
      if (n.must_be_absent) {
        problems.push_back(name + ": present, but its unlink/rename and the directory were fsync'ed");
        continue;
      }
      ++files_checked;
      ReadBack rb = read_back(path, B);
      for (int e : rb.block_errno) eio_blocks += e != 0;
      std::vector<std::string> best;
      bool matched = false;
      for (int id : n.candidates) {
        std::vector<std::string> lost;
        auto bad = judge(w.file(id), rb, B, &lost);
        if (bad.empty()) {
          matched = true;
          lost_blocks.insert(lost_blocks.end(), lost.begin(), lost.end());
          break;
        }
        if (best.empty()) {
          best = bad;
          best.push_back(w.file(id).describe());
        }
      }
      if (!matched) {
        std::string s = name + " (size read " + std::to_string(rb.size) + "):";
        for (const auto& b : best) s += "\n    " + b;
        problems.push_back(s);
      }
    }
    // Nothing but the workload's names is listed: a crash between a long name's side file
    // and its entry must not surface as a stray or undecryptable entry.
    for (const std::string dir : {".", "small"}) {
      std::error_code ec;
      for (const auto& e : std::filesystem::directory_iterator(mnt_ + "/" + dir, ec)) {
        std::string rel = (dir == "." ? "" : dir + "/") + e.path().filename().string();
        if (rel != "small" && !w.names().count(rel)) problems.push_back("stray entry listed: " + rel.substr(0, 60));
      }
      if (ec) problems.push_back("readdir " + dir + ": " + ec.message());
    }
    auto secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::cout << "iteration " << it << " (seed " << seed << (writeback ? "" : ", --no-writeback") << "): cut after " << cut_op << " ops ("
              << (in_fsync ? "in an fsync" : "anywhere") << " +" << delay_us << " us), " << w.bytes() / 1024 << " KiB written, " << files_checked << " files checked, " << eio_blocks
              << " blocks read EIO (all written after the last fsync; " << lost_blocks.size()
              << " of them held fsync'ed bytes), " << w.late_syncs()
              << " syncs returned after the cut began, daemon exit " << drc << ", " << secs << " s\n";
    for (const auto& l : lost_blocks) std::cout << "  torn re-seal lost " << l << "\n";
    if (!problems.empty()) {
      std::string all;
      for (const auto& pr : problems) all += "  " + pr + "\n";
      ADD_FAILURE() << problems.size() << " problem(s) after the power cut (block size " << B << "):\n"
                    << all << "--- daemon log before the cut:\n"
                    << log1.substr(log1.size() > 3000 ? log1.size() - 3000 : 0) << "--- daemon log after:\n"
                    << daemon_->log();
    }
    EXPECT_EQ(daemon_->stop(), 0) << daemon_->log();
    daemon_.reset();
    // Make room for the next iteration.
    std::error_code ec;
    std::filesystem::remove_all(vault, ec);
  }

  TempDir tmp_{"kmsfs-powerloss"};
  std::unique_ptr<LoopXfs> xfs_;
  std::unique_ptr<Daemon> daemon_;
  std::string keyring_, mnt_;
};

TEST_F(PowerLoss, FsyncedDataSurvivesXfsShutdown) {
  // KMSFS_POWERLOSS_ITERATIONS / KMSFS_POWERLOSS_SEED explore further (seeds base+0, +1, ...).
  const char* n = ::getenv("KMSFS_POWERLOSS_ITERATIONS");
  const char* b = ::getenv("KMSFS_POWERLOSS_SEED");
  const int iterations = n && *n ? std::atoi(n) : kIterations;
  const uint64_t base = b && *b ? std::strtoull(b, nullptr, 0) : 7000;
  for (int it = 0; it < iterations; ++it) {
    iteration(it, base + static_cast<uint64_t>(it));
    if (HasFatalFailure()) return;
  }
}

}  // namespace
}  // namespace kmsfs::testing
