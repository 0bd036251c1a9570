// The fault soak (issue 17): a kmsfs mount on the AWS KMS provider against tools/kms-local,
// its backing directory on a 64 MiB ext4 on a loop device kept near full, under mixed load
// for KMSFS_SOAK_SECONDS (default 60) while kms-local cycles through latency, throttling,
// 5xx, dropped connections, a full outage and health:
//
//  * several workers, each in its own directory (so each one's model is exact), doing
//    fsstress-like random operations: create, write at a random offset, truncate, rename,
//    unlink, mkdir, fsync, read-and-compare;
//  * an sqlite3 workload (WAL, so its -shm mapping is an mmap of a kmsfs file): one
//    transaction per process, a rolling window of rows;
//  * the daemon's RSS, open descriptors and threads sampled from /proc every second.
//
// Allowed failures, each only where the fault explains it: ENOSPC/EDQUOT anywhere (the
// disk is near full); EIO only for operations that may need a KMS call (opening or
// creating a file, truncate by path). A failed operation must be atomic for names (a
// failed create leaves no file, a failed rename leaves exactly one of the two names) and
// block-atomic for content (every 4 KiB block holds its old or its new content, the size
// lies between the old and the new); such a file is then left alone but for rename and
// unlink. At the end every file is checked against the model, the vault is checked by
// `kmsfs fsck`, remounted, and checked again; the samples must show no growth.
//
//   KMSFS_SOAK_SECONDS=1800 ctest --test-dir build -L soak --output-on-failure
//
// Needs root, loop devices, e2fsprogs and sqlite3; skips loudly without them (fails under
// CI=true).
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "kms_local.h"
#include "loop_ext4.h"
#include "loop_xfs.h"  // Daemon
#include "mounted_vault.h"

namespace kmsfs::testing {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

constexpr int kWorkers = 4;
constexpr size_t kBlock = 4096;
constexpr size_t kMaxFileSize = 384 << 10;
constexpr size_t kMaxFilesPerWorker = 24;
constexpr int kMaxSubdirs = 4;
constexpr uint64_t kFreeWhenFull = 12ull << 20;  // what the filler leaves to the workload

int soak_seconds() {
  const char* s = std::getenv("KMSFS_SOAK_SECONDS");
  return s != nullptr && std::atoi(s) > 0 ? std::atoi(s) : 60;
}

// What kms-local does, in turn, for a few seconds each. The rates share one draw (<= 1).
const std::vector<std::string> kFaultCycle = {
    R"({"latency_ms": 150})",
    R"({"throttle_rate": 0.5})",
    R"({"error_rate": 0.3})",
    R"({"drop_rate": 0.3})",
    R"({"latency_ms": 20, "throttle_rate": 0.1, "error_rate": 0.1, "drop_rate": 0.1})",
    R"({"error_rate": 1})",  // the KMS down
    R"({})",
};

// One file as the model knows it. A file whose last change failed is `uncertain`: each of
// its blocks holds `data`'s (the old) or `alt`'s (the new) content, and it is no longer
// written to.
struct FileModel {
  std::string data;
  bool uncertain = false;
  std::string alt;
};

// Describes how `got` breaks the model, or "" if it does not.
std::string check_content(const FileModel& m, const std::string& got) {
  if (!m.uncertain) {
    if (got.size() != m.data.size())
      return "size " + std::to_string(got.size()) + ", the model says " + std::to_string(m.data.size());
    for (size_t i = 0; i < got.size(); ++i)
      if (got[i] != m.data[i]) return "differs from the model at byte " + std::to_string(i);
    return "";
  }
  const size_t lo = std::min(m.data.size(), m.alt.size()), hi = std::max(m.data.size(), m.alt.size());
  if (got.size() < lo || got.size() > hi)
    return "size " + std::to_string(got.size()) + " outside [" + std::to_string(lo) + ", " + std::to_string(hi) +
           "] after a failed change";
  auto padded = [&](const std::string& s) {
    std::string p = s.substr(0, got.size());
    p.resize(got.size(), '\0');
    return p;
  };
  const std::string before = padded(m.data), after = padded(m.alt);
  for (size_t off = 0; off < got.size(); off += kBlock) {
    const size_t n = std::min(kBlock, got.size() - off);
    if (got.compare(off, n, before, off, n) != 0 && got.compare(off, n, after, off, n) != 0)
      return "block at " + std::to_string(off) + " holds neither its old nor its new content after a failed change";
  }
  return "";
}

struct ReadBack {
  int err = 0;
  std::string data;
};
ReadBack read_back(const std::string& path) {
  ReadBack r;
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return {errno, ""};
  char buf[1 << 16];
  for (ssize_t n; (n = ::read(fd, buf, sizeof buf)) != 0;) {
    if (n < 0) {
      r.err = errno;
      break;
    }
    r.data.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return r;
}

bool exists(const std::string& path) {
  struct stat st {};
  return ::lstat(path.c_str(), &st) == 0;
}

// Counts shared by the workers.
struct Tally {
  std::atomic<uint64_t> ops{0}, enospc{0}, eio{0}, sqlite_ok{0}, sqlite_failed{0};
  std::mutex mu;
  std::vector<std::string> violations;
  std::map<std::string, uint64_t> eio_by_op;
  void violation(const std::string& v) {
    std::lock_guard<std::mutex> l(mu);
    if (violations.size() < 50) violations.push_back(v);
  }
};

// One fsstress-like worker: random operations in mnt/w<id>, with an exact model of it.
class Worker {
 public:
  Worker(int id, std::string mnt, Tally& tally)
      : id_(id), mnt_(std::move(mnt)), root_("w" + std::to_string(id)), rng_(0x50a4 + id), tally_(tally) {}

  bool setup() {
    if (::mkdir(abs(root_).c_str(), 0755) != 0) return false;
    dirs_.insert(root_);
    return true;
  }

  void run(Clock::time_point until) {
    while (Clock::now() < until) step();
  }

  // Compares the tree under mnt/w<id> with the model; returns what differs.
  std::vector<std::string> verify() const {
    std::vector<std::string> out;
    std::set<std::string> seen_dirs, seen_files;
    walk(root_, seen_dirs, seen_files, out);
    for (const auto& d : dirs_)
      if (!seen_dirs.count(d)) out.push_back(d + ": directory missing");
    for (const auto& d : seen_dirs)
      if (!dirs_.count(d)) out.push_back(d + ": directory not in the model");
    for (const auto& [path, m] : files_) {
      if (!seen_files.count(path)) {
        out.push_back(path + ": file missing");
        continue;
      }
      ReadBack r = read_back(abs(path));
      if (r.err != 0) {
        out.push_back(path + ": read fails: " + std::strerror(r.err));
        continue;
      }
      std::string why = check_content(m, r.data);
      if (!why.empty()) out.push_back(path + ": " + why);
    }
    for (const auto& f : seen_files)
      if (!files_.count(f)) out.push_back(f + ": file not in the model");
    return out;
  }
  size_t files() const { return files_.size(); }
  size_t uncertain() const {
    return static_cast<size_t>(std::count_if(files_.begin(), files_.end(), [](auto& f) { return f.second.uncertain; }));
  }

 private:
  std::string abs(const std::string& rel) const { return mnt_ + "/" + rel; }

  void walk(const std::string& rel, std::set<std::string>& dirs, std::set<std::string>& files,
            std::vector<std::string>& out) const {
    dirs.insert(rel);
    DIR* d = ::opendir(abs(rel).c_str());
    if (d == nullptr) {
      out.push_back(rel + ": opendir: " + std::strerror(errno));
      return;
    }
    std::vector<std::pair<std::string, bool>> entries;
    while (dirent* e = ::readdir(d)) {
      std::string n = e->d_name;
      if (n == "." || n == "..") continue;
      struct stat st {};
      if (::lstat(abs(rel + "/" + n).c_str(), &st) != 0) {
        out.push_back(rel + "/" + n + ": lstat: " + std::strerror(errno));
        continue;
      }
      entries.emplace_back(n, S_ISDIR(st.st_mode));
    }
    ::closedir(d);
    for (const auto& [n, is_dir] : entries) {
      if (is_dir) walk(rel + "/" + n, dirs, files, out);
      else files.insert(rel + "/" + n);
    }
  }

  size_t below(size_t n) { return n == 0 ? 0 : std::uniform_int_distribution<size_t>(0, n - 1)(rng_); }
  std::string bytes(size_t n) {
    std::string s(n, '\0');
    for (auto& c : s) c = static_cast<char>(rng_());
    return s;
  }
  std::string random_dir() {
    auto it = dirs_.begin();
    std::advance(it, static_cast<long>(below(dirs_.size())));
    return *it;
  }
  // A file, or "" if there is none; `certain_only` skips files left uncertain.
  std::string random_file(bool certain_only) {
    std::vector<const std::string*> c;
    for (const auto& [p, m] : files_)
      if (!certain_only || !m.uncertain) c.push_back(&p);
    return c.empty() ? "" : *c[below(c.size())];
  }

  // Counts the outcome; true if `err` is an allowed failure (`kms` = the operation may
  // need a KMS call), otherwise records a violation.
  bool allowed(int err, const std::string& what, bool kms) {
    if (err == ENOSPC || err == EDQUOT) {
      ++tally_.enospc;
      return true;
    }
    if (err == EIO && kms) {
      ++tally_.eio;
      std::lock_guard<std::mutex> l(tally_.mu);
      ++tally_.eio_by_op[what.substr(0, what.find(' '))];
      return true;
    }
    tally_.violation(what + ": " + std::strerror(err));
    return false;
  }

  void step() {
    ++tally_.ops;
    const size_t r = below(100);
    const bool crowded = files_.size() >= kMaxFilesPerWorker;
    if (r < 18 && !crowded) return create();
    if (r < 40) return write();
    if (r < 50) return truncate();
    if (r < 60) return rename();
    if (r < 72 || crowded) return unlink();
    if (r < 75) return mkdir();
    if (r < 82) return fsync();
    return read();
  }

  void create() {
    const std::string p = random_dir() + "/f" + std::to_string(next_++);
    int fd = ::open(abs(p).c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) {
      const int e = errno;
      allowed(e, "create " + p, true);
      if (exists(abs(p))) tally_.violation("create " + p + " failed (" + std::strerror(e) + ") but left the file");
      return;
    }
    files_[p] = {};
    const std::string data = bytes(below(kMaxFileSize / 2));
    finish_write(fd, p, 0, data);
  }

  // pwrite, fsync, close of an open file; the model follows (or becomes uncertain).
  void finish_write(int fd, const std::string& p, size_t off, const std::string& data) {
    FileModel& m = files_[p];
    std::string next = m.data;
    if (next.size() < off + data.size()) next.resize(off + data.size(), '\0');
    next.replace(off, data.size(), data);
    int err = 0;
    std::string step;
    for (size_t done = 0; done < data.size() && err == 0;) {
      ssize_t w = ::pwrite(fd, data.data() + done, data.size() - done, static_cast<off_t>(off + done));
      if (w < 0) err = errno, step = "write";
      else done += static_cast<size_t>(w);
    }
    if (err == 0 && ::fsync(fd) != 0) err = errno, step = "fsync";
    if (::close(fd) != 0 && err == 0) err = errno, step = "close";
    if (err == 0) {
      m.data = std::move(next);
      return;
    }
    allowed(err, step + " " + p, false);
    m.uncertain = true;
    m.alt = std::move(next);
  }

  void write() {
    const std::string p = random_file(true);
    if (p.empty()) return;
    int fd = ::open(abs(p).c_str(), O_WRONLY | O_CLOEXEC);
    if (fd < 0) {
      allowed(errno, "open " + p, true);
      return;
    }
    const size_t size = files_[p].data.size();
    const size_t off = below(std::min(size + (16 << 10), kMaxFileSize));
    finish_write(fd, p, off, bytes(std::min(below(64 << 10) + 1, kMaxFileSize - off)));
  }

  void truncate() {
    const std::string p = random_file(true);
    if (p.empty()) return;
    const size_t to = below(kMaxFileSize);
    FileModel& m = files_[p];
    std::string next = m.data;
    next.resize(to, '\0');
    if (::truncate(abs(p).c_str(), static_cast<off_t>(to)) == 0) {
      m.data = std::move(next);
      return;
    }
    allowed(errno, "truncate " + p, true);
    m.uncertain = true;
    m.alt = std::move(next);
  }

  void rename() {
    const std::string from = random_file(false);
    if (from.empty()) return;
    const std::string to = random_dir() + "/f" + std::to_string(next_++);
    if (::rename(abs(from).c_str(), abs(to).c_str()) != 0) {
      const int e = errno;
      allowed(e, "rename " + from, false);
      const bool a = exists(abs(from)), b = exists(abs(to));
      if (a == b) tally_.violation("failed rename " + from + " -> " + to + ": both or neither name exist");
      if (!b) return;
    }
    files_[to] = std::move(files_[from]);
    files_.erase(from);
  }

  void unlink() {
    const std::string p = random_file(false);
    if (p.empty()) return;
    if (::unlink(abs(p).c_str()) != 0) {
      allowed(errno, "unlink " + p, false);
      if (exists(abs(p))) return;
    }
    files_.erase(p);
  }

  void mkdir() {
    if (dirs_.size() > kMaxSubdirs) return;
    const std::string p = root_ + "/d" + std::to_string(next_++);
    if (::mkdir(abs(p).c_str(), 0755) != 0) {
      allowed(errno, "mkdir " + p, false);
      if (!exists(abs(p))) return;
    }
    dirs_.insert(p);
  }

  void fsync() {
    const std::string p = random_file(true);
    if (p.empty()) return;
    int fd = ::open(abs(p).c_str(), O_RDWR | O_CLOEXEC);
    if (fd < 0) {
      allowed(errno, "open " + p, true);
      return;
    }
    int err = ::fsync(fd) == 0 ? 0 : errno;
    if (::close(fd) != 0 && err == 0) err = errno;
    if (err != 0) allowed(err, "fsync " + p, false);
  }

  void read() {
    const std::string p = random_file(true);
    if (p.empty()) return;
    ReadBack r = read_back(abs(p));
    if (r.err != 0) {
      allowed(r.err, "read " + p, true);
      return;
    }
    std::string why = check_content(files_[p], r.data);
    if (!why.empty()) tally_.violation("read during the run " + p + ": " + why);
  }

  int id_;
  std::string mnt_, root_;
  std::mt19937_64 rng_;
  Tally& tally_;
  uint64_t next_ = 0;
  std::set<std::string> dirs_;
  std::map<std::string, FileModel> files_;
};

// sqlite3 in WAL mode, one transaction per process: insert row i, delete rows older than
// 100. Rows committed are known exactly; a failed transaction may or may not have landed.
class SqliteLoad {
 public:
  SqliteLoad(std::string db, Tally& tally) : db_(std::move(db)), tally_(tally) {}

  bool setup() {
    return sql("PRAGMA journal_mode=WAL; CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB);").exit_code == 0;
  }
  void run(Clock::time_point until) {
    while (Clock::now() < until) {
      const int i = ++last_;
      ProcessResult r = sql("BEGIN; INSERT INTO t VALUES(" + std::to_string(i) +
                            ", randomblob(3000)); DELETE FROM t WHERE id <= " + std::to_string(i - kWindow) +
                            "; COMMIT;");
      (r.exit_code == 0 ? ok_ : failed_).insert(i);
      ++(r.exit_code == 0 ? tally_.sqlite_ok : tally_.sqlite_failed);
    }
  }
  // The database is intact and holds what the committed transactions say.
  std::vector<std::string> verify() {
    std::vector<std::string> out;
    ProcessResult ic = sql("PRAGMA integrity_check;");
    if (ic.exit_code != 0 || ic.out != "ok\n") out.push_back("sqlite integrity_check: " + ic.out + ic.err);
    ProcessResult ids = sql("SELECT id FROM t ORDER BY id;");
    if (ids.exit_code != 0) {
      out.push_back("sqlite SELECT: " + ids.err);
      return out;
    }
    std::set<int> present;
    std::istringstream in(ids.out);
    for (int id; in >> id;) present.insert(id);
    int top = ok_.empty() ? 0 : *ok_.rbegin();
    if (!present.empty()) top = std::max(top, *present.rbegin());
    for (int id : present)
      if (!ok_.count(id) && !failed_.count(id)) out.push_back("sqlite: row " + std::to_string(id) + " never written");
    for (int id : ok_)
      if (id > top - kWindow && !present.count(id))
        out.push_back("sqlite: committed row " + std::to_string(id) + " is missing");
    return out;
  }

 private:
  static constexpr int kWindow = 100;
  ProcessResult sql(const std::string& s) {
    ProcessOptions o;
    o.stdin_data = s;
    return ::kmsfs::testing::run({"sqlite3", "-bail", "-cmd", ".timeout 10000", db_}, o);
  }
  std::string db_;
  Tally& tally_;
  int last_ = 0;
  std::set<int> ok_, failed_;
};

struct Sample {
  uint64_t rss_kib = 0, fds = 0, threads = 0;
};
Sample sample(pid_t pid) {
  Sample s;
  std::ifstream st("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(st, line);) {
    if (line.rfind("VmRSS:", 0) == 0) s.rss_kib = std::stoull(line.substr(6));
    if (line.rfind("Threads:", 0) == 0) s.threads = std::stoull(line.substr(8));
  }
  if (DIR* d = ::opendir(("/proc/" + std::to_string(pid) + "/fd").c_str())) {
    while (dirent* e = ::readdir(d))
      if (e->d_name[0] != '.') ++s.fds;
    ::closedir(d);
  }
  return s;
}

// No growth: after a warm-up (the first fifth), the peak of the second half of the run is
// at most the peak of the first half times `factor` plus `slack`. A leak of a descriptor,
// thread or buffer per operation grows far beyond that over thousands of operations.
void expect_bounded(const std::vector<Sample>& v, uint64_t Sample::*field, const char* what, double factor,
                    uint64_t slack) {
  ASSERT_GE(v.size(), 10u) << "too few samples";
  const size_t warm = v.size() / 5, mid = warm + (v.size() - warm) / 2;
  uint64_t first = 0, second = 0;
  for (size_t i = warm; i < mid; ++i) first = std::max(first, v[i].*field);
  for (size_t i = mid; i < v.size(); ++i) second = std::max(second, v[i].*field);
  EXPECT_LE(second, static_cast<uint64_t>(static_cast<double>(first) * factor) + slack)
      << what << " grew: peak " << first << " in the first half of the run, " << second << " in the second";
}

class Soak : public ::testing::Test {
 protected:
  void SetUp() override {
    add_sbin_to_path();
    std::string why = LoopExt4::unavailable();
    if (why.empty() && !have("sqlite3")) why = "sqlite3 not found (Debian package sqlite3)";
    if (why.empty()) {
      ext4_ = std::make_unique<LoopExt4>(tmp_, 64ull << 20);
      why = ext4_->skip_reason();
    }
    if (!why.empty()) {
      const char* ci = std::getenv("CI");
      if (ci != nullptr && std::string(ci) == "true") FAIL() << "CI=true but the soak cannot run: " << why;
      std::cerr << "\n*** SKIPPING the fault soak (issue 17 goes untested here): " << why << " ***\n\n";
      GTEST_SKIP() << why;
    }
    kms_ = std::make_unique<KmsLocal>(KMS_LOCAL_BIN, KmsLocal::Options{{"--quiet"}, false, ""});
    auto [status, body] = kms_->call("CreateKey", R"({"Description":"kmsfs soak"})");
    ASSERT_EQ(status, 200) << body;
    const std::string key = nlohmann::json::parse(body)["KeyMetadata"]["KeyId"];
    ASSERT_EQ(kms_->call("CreateAlias", R"({"AliasName":"alias/soak","TargetKeyId":")" + key + "\"}").first, 200);
    kms_->export_client_env();
    keyring_ = tmp_ / "keyring";  // unused by a KMS vault; the daemon helper passes one
    kmsfs({"keyring", "create", keyring_, "--no-passphrase", "--key", "main"});
    vault_ = ext4_->at("vault");
    ASSERT_EQ(::mkdir(vault_.c_str(), 0755), 0);
    ASSERT_EQ(kmsfs({"init", vault_, "--kms-key", "alias/soak"}).exit_code, 0);
    mnt_ = tmp_ / "mnt";
    ::mkdir(mnt_.c_str(), 0755);
  }
  void TearDown() override {
    daemon_.reset();
    ext4_.reset();
    kms_.reset();
  }
  void start() {
    // A short key TTL: files' keys are fetched again (Decrypt) throughout the run, so the
    // faults reach opens, not only the key pool.
    daemon_ = std::make_unique<Daemon>(vault_, mnt_, keyring_, tmp_ / ("daemon" + std::to_string(starts_++) + ".log"),
                                       std::vector<std::string>{"--key-ttl", "2"});
    daemon_->start();
  }
  std::string stop_daemon() {
    const int rc = daemon_->stop();
    std::string log = daemon_->log();
    daemon_.reset();
    EXPECT_EQ(rc, 0) << log;
    return log;
  }

  TempDir tmp_{"kmsfs-soak", "/var/tmp"};
  std::unique_ptr<LoopExt4> ext4_;
  std::unique_ptr<KmsLocal> kms_;
  std::unique_ptr<Daemon> daemon_;
  std::string keyring_, vault_, mnt_;
  int starts_ = 0;
};

TEST_F(Soak, MixedLoadUnderKmsFaultsOnANearlyFullDiskLosesNothing) {
  const int seconds = soak_seconds();
  start();
  Tally tally;
  std::vector<std::unique_ptr<Worker>> workers;
  for (int i = 0; i < kWorkers; ++i) {
    workers.push_back(std::make_unique<Worker>(i, mnt_, tally));
    ASSERT_TRUE(workers.back()->setup()) << std::strerror(errno);
  }
  SqliteLoad sqlite(mnt_ + "/db.sqlite", tally);
  ASSERT_TRUE(sqlite.setup());
  // Near full: a filler beside the vault leaves the workload a few MiB.
  {
    const uint64_t free = ext4_->free_bytes();
    ASSERT_GT(free, kFreeWhenFull);
    int fd = ::open(ext4_->at("filler").c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::posix_fallocate(fd, 0, static_cast<off_t>(free - kFreeWhenFull)), 0);
    ::close(fd);
  }
  std::cout << "soak: " << seconds << " s, " << kWorkers << " workers + sqlite3, " << ext4_->free_bytes()
            << " bytes free on the backing ext4\n";

  const auto until = Clock::now() + std::chrono::seconds(seconds);
  std::vector<std::thread> threads;
  for (auto& w : workers) threads.emplace_back([&w, until] { w->run(until); });
  threads.emplace_back([&sqlite, until] { sqlite.run(until); });

  std::vector<Sample> samples;
  size_t fault = 0;
  for (int tick = 0; Clock::now() < until; ++tick) {
    if (tick % 4 == 0) {
      auto [status, body] = kms_->admin("POST", "/__admin/faults", kFaultCycle[fault++ % kFaultCycle.size()]);
      EXPECT_EQ(status, 200) << body;
    }
    samples.push_back(sample(daemon_->pid()));
    std::this_thread::sleep_for(1s);
  }
  for (auto& t : threads) t.join();
  kms_->admin("DELETE", "/__admin/faults");
  samples.push_back(sample(daemon_->pid()));
  const std::string kms_stats = kms_->admin("GET", "/__admin/stats").second;

  uint64_t files = 0, uncertain = 0;
  for (auto& w : workers) files += w->files(), uncertain += w->uncertain();
  std::cout << "soak: " << tally.ops << " operations, " << tally.enospc << " ENOSPC/EDQUOT, " << tally.eio
            << " EIO (";
  for (const auto& [op, n] : tally.eio_by_op) std::cout << op << " " << n << " ";
  std::cout << "), sqlite3 " << tally.sqlite_ok << " transactions committed, " << tally.sqlite_failed << " failed; "
            << files << " files at the end, " << uncertain << " of them after a failed change\n";
  std::cout << "soak: daemon RSS " << samples.front().rss_kib << " -> " << samples.back().rss_kib << " KiB, fds "
            << samples.front().fds << " -> " << samples.back().fds << ", threads " << samples.front().threads << " -> "
            << samples.back().threads << " (" << samples.size() << " samples)\n";
  std::cout << "soak: kms-local " << kms_stats << "\n";
  for (const auto& v : tally.violations) ADD_FAILURE() << "during the run: " << v;
  EXPECT_GT(tally.enospc, 0u) << "the disk never filled: the soak did not test a full disk";

  expect_bounded(samples, &Sample::rss_kib, "RSS (KiB)", 1.25, 16 << 10);
  expect_bounded(samples, &Sample::fds, "open descriptors", 1.25, 16);
  expect_bounded(samples, &Sample::threads, "threads", 1.0, 4);

  auto verify_all = [&](const char* when) {
    std::vector<std::string> bad;
    // The kernel learns of a failed write-back's outcome (the daemon's invalidation of the
    // inode) asynchronously: before the remount, a file changed just before the end may
    // need a moment to show what the daemon holds.
    for (int attempt = 0; attempt < 10 && (attempt == 0 || !bad.empty()); ++attempt) {
      if (attempt > 0) std::this_thread::sleep_for(500ms);
      bad.clear();
      for (auto& w : workers)
        for (auto& b : w->verify()) bad.push_back(b);
    }
    for (auto& b : sqlite.verify()) bad.push_back(b);
    for (size_t i = 0; i < std::min<size_t>(bad.size(), 30); ++i) ADD_FAILURE() << when << ": " << bad[i];
    std::cout << "soak: verified " << when << ": " << bad.size() << " differences\n";
  };
  // The filler goes first: reading a WAL-mode sqlite database creates its -wal and -shm
  // files, which on a full disk fails ("unable to open database file"), as on any
  // filesystem (sqlite writes a byte into each page of -shm); the vault is unchanged by it.
  ASSERT_EQ(::unlink(ext4_->at("filler").c_str()), 0) << std::strerror(errno);
  verify_all("before the remount");
  const std::string log = stop_daemon();
  ProcessResult f = kmsfs({"fsck", vault_}, false);
  EXPECT_EQ(f.exit_code, 0) << "kmsfs fsck after the soak:\n" << f.out << f.err << "\n--- daemon log (tail):\n"
                            << log.substr(log.size() > 8000 ? log.size() - 8000 : 0);
  start();
  verify_all("after the remount");
  stop_daemon();
}

}  // namespace
}  // namespace kmsfs::testing
