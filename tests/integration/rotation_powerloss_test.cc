// Power loss during an online key rotation. The vault's backing directory lives on XFS on
// a loop device (loop_xfs.h); a tree of 1,500 files (empty, small, multi-block, sparse
// through a truncate up across a > 1 MiB gap) is written and made durable; then
// `kmsfs rotate MNT --to KEY --rate N` starts, a writer keeps changing a few open files
// (appends, overwrites, truncates up and down, new files, with fsync), and at a chosen
// moment the XFS is shut down without flushing its log (`xfs_io -x -c shutdown`), as a
// power cut would. Recovery as an operator would do it: kmsfs goes (EIO), the XFS is
// unmounted and mounted again (log replay), kmsfs is mounted again and its daemon must
// continue the run from its checkpoint (BACKING/kmsfs.rotation) by itself. Checked:
//
//  * right after the log replay, before any kmsfs touches the vault: every file's header
//    has a valid slot, and any file the cut caught between its two slot writes (one slot
//    under the new key, one under the old) authenticates completely (`kmsfs inspect
//    --keyring`), as do a sample of the others;
//  * if `kmsfs rotate --to` had answered before the cut, the run survived it: the same run
//    (its id) continues at the remount; if not, it may be lost, and starting it again works;
//  * the run ends "done" with no failed file, every file's two slots name the new key, and
//    kmsfs.conf's filesystem key moved too: after the old key is disabled in the keyring,
//    a fresh mount reads every byte of every tree file as written, and the writer's files
//    as powerloss_test's crash model allows (crash_model.h: fsync'ed bytes survive);
//  * a re-wrap does not change a file's mtime (but for the microseconds between its slot
//    writes and the mtime's restore), and nothing but the test's names is listed.
//
// Four iterations over the same vault, each rotating to a new key, at fixed seeds, with
// the cut placed: (0) in the middle of the first pass, (1) within ~30 ms of `rotate --to`
// (while the filesystem key and kmsfs.conf are re-wrapped), (2) in the second pass (the
// one that finds files created under the old key), (3) in the first pass, inside one of
// the writer's fsyncs. Alternate iterations move to a new version of the key and to
// another key. Then two iterations (first pass, second pass) on a vault in intermediate-key
// mode. KMSFS_ROTATION_POWERLOSS_ITERATIONS / _SEED explore further. ~1 minute on 2 cores.
//
// Needs root, loop devices and xfsprogs; skips with the reason otherwise. Keyring only
// (skips under KMSFS_TEST_KMS).
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <functional>
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
#include "format/backing_file.h"
#include "format/header.h"
#include "loop_xfs.h"
#include "mounted_vault.h"

namespace kmsfs::testing {
namespace {

using nlohmann::json;

// `kmsfs rotate --wait --json` prints one JSON object per line while the run goes on, the
// final status last.
json last_json_line(const std::string& out) {
  std::string s = out;
  while (!s.empty() && s.back() == '\n') s.pop_back();
  const size_t nl = s.rfind('\n');
  return json::parse(nl == std::string::npos ? s : s.substr(nl + 1), nullptr, false);
}

using namespace std::chrono_literals;

constexpr int kIterations = 4;
constexpr int kFiles = 1500;
constexpr int kDirs = 16;
// Files per second: a pass over ~1,550 files takes ~2 s, a run (two passes) ~4 s.
constexpr int kRate = 800;

// ---------------------------------------------------------------- the tree

std::string tree_rel(int i) {
  return "t" + std::to_string(i % kDirs) + (i % 3 == 0 ? "/sub/" : "/") + "f" + std::to_string(i);
}

// File i: its data, written as an application would write it (kmsfs must keep it exact).
struct TreeFile {
  std::string head;      // at offset 0
  uint64_t size = 0;     // after the truncate up (sparse files), else head.size()
  std::string tail;      // sparse files: written to end at `size`
};

TreeFile tree_file(int i) {
  std::mt19937_64 rng(0x70ee + static_cast<uint64_t>(i));
  auto uni = [&](uint64_t lo, uint64_t hi) { return std::uniform_int_distribution<uint64_t>(lo, hi)(rng); };
  const uint64_t seed = 1000003ull * static_cast<uint64_t>(i);
  TreeFile f;
  switch (i % 25) {
    case 0: break;  // empty
    case 1:
      if (i % 50 == 1) {  // sparse: head, a truncate up across > 1 MiB, a tail
        f.head = pattern(uni(1, 20000), seed);
        f.tail = pattern(uni(1, 9000), seed + 1);
        f.size = f.head.size() + uni((1 << 20) + 2 * 65536, (2 << 20) + 100000) + f.tail.size();
        return f;
      }
      f.head = pattern(uni(1, 100), seed);
      break;
    case 2:
    case 3:
    case 4: f.head = pattern(uni(8192, 262144), seed); break;  // multi-block
    default: f.head = pattern(uni(1, 12000), seed); break;
  }
  f.size = f.head.size();
  return f;
}

std::string tree_content(int i) {
  TreeFile f = tree_file(i);
  std::string c = f.head;
  c.resize(f.size, '\0');
  if (!f.tail.empty()) c.replace(f.size - f.tail.size(), f.tail.size(), f.tail);
  return c;
}

void write_all(int fd, const std::string& d, uint64_t off, const std::string& what) {
  if (d.empty()) return;
  if (::pwrite(fd, d.data(), d.size(), static_cast<off_t>(off)) != static_cast<ssize_t>(d.size()))
    throw std::runtime_error("write " + what + ": " + std::strerror(errno));
}

void write_tree_file(const std::string& path, int i) {
  TreeFile f = tree_file(i);
  int fd = ::open(path.c_str(), O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0644);
  if (fd < 0) throw std::runtime_error("create " + path + ": " + std::strerror(errno));
  write_all(fd, f.head, 0, path);
  if (!f.tail.empty()) {
    const uint64_t tail_at = f.size - f.tail.size();
    if (::ftruncate(fd, static_cast<off_t>(tail_at)) != 0) throw std::runtime_error("truncate up " + path);
    write_all(fd, f.tail, tail_at, path);
  }
  if (::fsync(fd) != 0) throw std::runtime_error("fsync " + path + ": " + std::strerror(errno));
  ::close(fd);
}

// ---------------------------------------------------------------- headers

// Every kmsfs file of the backing tree, by its header.
struct Census {
  int files = 0;
  int under = 0;                    // both slots valid and under the target
  int half = 0;                     // one slot under the target, the other not (a cut between the two writes)
  int old = 0;                      // no slot under the target
  std::vector<std::string> bad;     // no valid slot, or not parseable
  std::vector<std::string> half_paths, not_under;
  int excused = 0;                  // in `excused` (files whose create was never fsync'ed): not looked at
};

Census census(const std::string& backing, const KeyRef& target, const std::set<std::string>& excused = {}) {
  Census c;
  for (auto it = std::filesystem::recursive_directory_iterator(backing); it != std::filesystem::end(it); ++it) {
    const std::string name = it->path().filename().string();
    // kmsfs.conf, kmsfs.rotation, kmsfs.lock, their temporaries, long-name side files.
    if (!it->is_regular_file() || name.find('.') != std::string::npos) continue;
    const std::string path = it->path().string();
    if (excused.count(path)) {
      ++c.excused;
      continue;
    }
    ++c.files;
    auto f = PosixBackingFile::open(path, O_RDONLY);
    Bytes raw(header::kSize);
    auto n = f.ok() ? (*f)->read_at(raw, 0) : Result<size_t>(f.status());
    if (!n.ok()) {
      c.bad.push_back(path + ": " + n.status().message());
      continue;
    }
    raw.resize(*n);
    auto h = parse_header(raw);
    if (!h.ok()) {
      c.bad.push_back(path + ": " + h.status().message());
      continue;
    }
    int valid = 0, on_target = 0;
    for (const auto& s : h->slots) {
      valid += s.has_value();
      on_target += s && s->key == target;
    }
    if (valid == 2 && on_target == 2) {
      ++c.under;
      continue;
    }
    if (on_target > 0) ++c.half, c.half_paths.push_back(path);
    else ++c.old;
    if (c.not_under.size() < 5)
      c.not_under.push_back(path + " (" + std::to_string(valid) + " valid slots, " + std::to_string(on_target) +
                            " under the target; slot problems: " + h->slot_problem[0] + " / " + h->slot_problem[1] + ")");
  }
  return c;
}

// ---------------------------------------------------------------- the writer

struct NameState {
  int id;
  bool required;  // its create (file and directory fsync) was durable before the cut
};

// A few open files changed all through the rotation (the worker re-wraps them through
// their open CryptFile), modelled as in powerloss_test (crash_model.h).
class Writer : public CutAwareWorkload {
 public:
  Writer(std::string root, std::string dir, uint64_t B, uint64_t seed)
      : CutAwareWorkload(std::move(root), B, seed), dir_(std::move(dir)) {}
  ~Writer() { close_all(); }

  // Durable starting point: the directory and three files, fsync'ed, directories too.
  void prepare() {
    if (::mkdir(p(dir_).c_str(), 0755) != 0) throw std::runtime_error("mkdir " + dir_ + ": " + std::strerror(errno));
    sync_dir_or_throw(".");
    app_ = create(dir_ + "/append.log", "", O_APPEND, &app_fd_);
    db_ = create(dir_ + "/random.db", rand_bytes(512 << 10), 0, &db_fd_);
    sp_ = create(dir_ + "/sparse.bin", rand_bytes(100000), 0, &sp_fd_);
    sync_dir_or_throw(dir_);
    for (auto& [rel, n] : names_) n.required = true;
  }

  void run(std::atomic<bool>& stop, std::atomic<bool>& cut_started, std::atomic<int>& syncing) {
    watch(cut_started, syncing);
    while (!stop) {
      step();
      ++op_;
      std::this_thread::sleep_for(1ms);  // leave the FUSE threads to the rotation too
    }
  }

  void close_all() {
    for (int* fd : {&app_fd_, &db_fd_, &sp_fd_}) {
      if (*fd >= 0) ::close(*fd);
      *fd = -1;
    }
  }

  const std::map<std::string, NameState>& names() const { return names_; }
  const FileModel& file(int id) const { return files_[static_cast<size_t>(id)]; }

 private:
  bool sync_fd(int fd, int id, bool data_only) {
    FileModel& f = files_[static_cast<size_t>(id)];
    syncing_->fetch_add(1);
    const long rc = data_only ? ::fdatasync(fd) : ::fsync(fd);
    syncing_->fetch_sub(1);
    if (!trusted(rc, (data_only ? "fdatasync " : "fsync ") + f.name)) return false;
    f.synced_now();
    return true;
  }
  void sync_dir_or_throw(const std::string& rel) {
    if (!fsync_dir(rel)) throw std::runtime_error("fsync of " + rel + " failed: " + failure());
  }

  int create(const std::string& rel, const std::string& data, int flags, int* fd) {
    files_.push_back(FileModel{});
    const int id = static_cast<int>(files_.size()) - 1;
    FileModel& f = files_.back();
    f.name = rel;
    names_[rel] = NameState{id, false};
    *fd = ::open(p(rel).c_str(), O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC | flags, 0644);
    if (!check(*fd, "create " + rel)) return id;
    if (!data.empty()) {
      f.write(0, data, B_);
      if (!check(::pwrite(*fd, data.data(), data.size(), 0), "write " + rel)) return id;
    }
    sync_fd(*fd, id, false);
    return id;
  }

  void step() {
    const uint64_t r = uni(0, 99);
    if (r < 25) return append();
    if (r < 30) return (void)sync_fd(app_fd_, app_, uni(0, 1));
    if (r < 50) return overwrite();
    if (r < 56) return (void)sync_fd(db_fd_, db_, uni(0, 1));
    if (r < 72) return sparse_op();
    if (r < 80) return (void)sync_fd(sp_fd_, sp_, 0);
    return new_file();
  }

  void append() {
    FileModel& f = files_[static_cast<size_t>(app_)];
    if (f.cur.size() > (8u << 20)) return overwrite();
    const std::string d = rand_bytes(uni(0, 9) == 0 ? uni(4096, 65536) : uni(1, 5000));
    f.write(f.cur.size(), d, B_);
    check(::write(app_fd_, d.data(), d.size()), "append");
  }

  void overwrite() {
    FileModel& f = files_[static_cast<size_t>(db_)];
    const size_t len = uni(1, 12000);
    const uint64_t off = uni(0, f.cur.size() - len);
    const std::string d = rand_bytes(len);
    f.write(off, d, B_);
    check(::pwrite(db_fd_, d.data(), len, static_cast<off_t>(off)), "overwrite");
  }

  // Truncates up across a sealed-gap limit (a new sparse range: a slot write, racing the
  // worker's slot writes), down, and writes.
  void sparse_op() {
    FileModel& f = files_[static_cast<size_t>(sp_)];
    const uint64_t size = f.cur.size(), r = uni(0, 9);
    if (r < 3 || size > (6u << 20)) {
      const uint64_t n = size ? uni(size / 4, size) : 0;
      f.truncate(n);
      check(::ftruncate(sp_fd_, static_cast<off_t>(n)), "ftruncate down");
    } else if (r < 6) {
      const uint64_t n = size + (uni(0, 1) ? uni((1 << 20) + 2 * B_, (2 << 20)) : uni(1, 50000));
      f.truncate(n);
      check(::ftruncate(sp_fd_, static_cast<off_t>(n)), "ftruncate up");
    } else {
      const std::string d = rand_bytes(uni(1, 16000));
      const uint64_t off = uni(0, size + 20000);
      f.write(off, d, B_);
      check(::pwrite(sp_fd_, d.data(), d.size(), static_cast<off_t>(off)), "write sparse.bin");
    }
  }

  void new_file() {
    const std::string rel = dir_ + "/n" + std::to_string(next_++);
    int fd = -1;
    create(rel, rand_bytes(uni(0, 3) == 0 ? uni(0, 50) : uni(50, 20000)), 0, &fd);
    if (fd >= 0) ::close(fd);
    if (files_[static_cast<size_t>(names_[rel].id)].ever_synced && fsync_dir(dir_)) names_[rel].required = true;
  }

  std::string dir_;
  int next_ = 0;
  std::vector<FileModel> files_;
  std::map<std::string, NameState> names_;
  int app_ = -1, db_ = -1, sp_ = -1;
  int app_fd_ = -1, db_fd_ = -1, sp_fd_ = -1;
};

// ---------------------------------------------------------------- the test

enum class CutAt { kFirstPass, kStart, kSecondPass, kWriterFsync };
const char* cut_name(CutAt c) {
  switch (c) {
    case CutAt::kFirstPass: return "first pass";
    case CutAt::kStart: return "rotate --to";
    case CutAt::kSecondPass: return "second pass";
    case CutAt::kWriterFsync: return "first pass, in a writer fsync";
  }
  return "?";
}

class RotationPowerLoss : public ::testing::Test {
 protected:
  void SetUp() override {
    add_sbin_to_path();
    if (std::getenv("KMSFS_TEST_KMS")) GTEST_SKIP() << "rotates keyring keys (the KMS case is in rotation_it_test)";
    const std::string why = LoopXfs::unavailable();
    if (!why.empty()) GTEST_SKIP() << why;
    xfs_ = std::make_unique<LoopXfs>(tmp_);
    if (!xfs_->skip_reason().empty()) GTEST_SKIP() << xfs_->skip_reason();
    keyring_ = tmp_ / "keyring";  // off the XFS: the cut is the vault's, not the keyring's
    kmsfs({"keyring", "create", keyring_, "--no-passphrase", "--key", "main"});
    mnt_ = tmp_ / "mnt";
    ::mkdir(mnt_.c_str(), 0755);
    vault_ = xfs_->at("vault");
    ::mkdir(vault_.c_str(), 0755);
    std::vector<std::string> init = {"init", vault_, "--keyring", keyring_, "--key", "main"};
    for (const auto& a : init_args()) init.push_back(a);
    ProcessResult ir = kmsfs(init);
    ASSERT_EQ(ir.exit_code, 0);
    if (auto at = ir.out.find("block size: "); at != std::string::npos) B_ = std::stoull(ir.out.substr(at + 12));
    start_daemon("populate");

    const auto t0 = std::chrono::steady_clock::now();
    for (int d = 0; d < kDirs; ++d) std::filesystem::create_directories(mnt_ + "/t" + std::to_string(d) + "/sub");
    for (int i = 0; i < kFiles; ++i) write_tree_file(mnt_ + "/" + tree_rel(i), i);
    must({"sync", "-f", xfs_->mnt()});  // names and directories too
    // The mtimes the backing files hold (with the kernel's writeback cache, the mount that
    // created an empty file shows the kernel's mtime for it, a few ms off the backing's).
    ASSERT_EQ(daemon_->stop(), 0) << daemon_->log();
    start_daemon("before");
    for (int i = 0; i < kFiles; ++i) {
      struct stat st {};
      ASSERT_EQ(::stat((mnt_ + "/" + tree_rel(i)).c_str(), &st), 0) << tree_rel(i);
      mtimes_.push_back(st.st_mtim);
    }
    std::cout << "tree: " << kFiles << " files written and synced in "
              << std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() << " s (block size " << B_
              << ")\n";
  }

  // `kmsfs init` options beyond the key.
  virtual std::vector<std::string> init_args() const { return matrix_init_args(); }
  // `kmsfs rotate --to` options beyond the target and the file rate.
  virtual std::vector<std::string> rotate_args() const { return {}; }
  bool reencrypting() const { return !rotate_args().empty(); }
  std::vector<std::string> rotate_cmd(const std::string& spec, bool wait) const {
    std::vector<std::string> a = {"rotate", mnt_, "--to", spec, "--rate", std::to_string(kRate), "--json"};
    if (wait) a.push_back("--wait");
    for (const auto& x : rotate_args()) a.push_back(x);
    return a;
  }

  void TearDown() override {
    daemon_.reset();  // kmsfs first (it holds files on the XFS), then XFS and the loop device
    xfs_.reset();
  }

  void start_daemon(const std::string& tag) {
    daemon_ = std::make_unique<Daemon>(vault_, mnt_, keyring_, tmp_ / ("daemon-" + tag + ".log"),
                                       std::vector<std::string>{});
    daemon_->start();
  }

  std::optional<json> status() {
    ProcessResult r = kmsfs({"rotate", mnt_, "--status", "--json"}, false);
    if (r.exit_code != 0) return std::nullopt;
    json j = json::parse(r.out, nullptr, false);
    if (j.is_discarded()) return std::nullopt;
    return j;
  }

  // Until the run is no longer running; the last status.
  json wait_done(std::chrono::seconds limit) {
    const auto until = std::chrono::steady_clock::now() + limit;
    std::optional<json> j;
    while (std::chrono::steady_clock::now() < until) {
      j = status();
      if (j && j->value("phase", "") != "running") return *j;
      std::this_thread::sleep_for(100ms);
    }
    ADD_FAILURE() << "rotation not done after " << limit.count() << " s: " << (j ? j->dump() : "no status");
    return j ? *j : json::object();
  }

  // Every tree file reads back exactly; the writer's files as the crash model allows.
  std::vector<std::string> check_content(const Writer& w) {
    std::vector<std::string> problems;
    for (int i = 0; i < kFiles; ++i) {
      const std::string rel = tree_rel(i);
      std::string got;
      try {
        got = read_file(mnt_ + "/" + rel);
      } catch (const std::exception& e) {
        problems.push_back(e.what());
        continue;
      }
      if (got != tree_content(i))
        problems.push_back(rel + ": reads back " + std::to_string(got.size()) + " bytes, not the " +
                           std::to_string(tree_content(i).size()) + " written");
      struct stat st {};
      if (::stat((mnt_ + "/" + rel).c_str(), &st) == 0 &&
          (st.st_mtim.tv_sec != mtimes_[static_cast<size_t>(i)].tv_sec ||
           st.st_mtim.tv_nsec != mtimes_[static_cast<size_t>(i)].tv_nsec))
        ++mtime_changed_;
    }
    for (const auto& [rel, n] : w.names()) {
      struct stat st;
      const std::string path = mnt_ + "/" + rel;
      if (::lstat(path.c_str(), &st) != 0) {
        if (errno != ENOENT || n.required) problems.push_back(rel + ": " + std::strerror(errno));
        continue;
      }
      const ReadBack rb = read_back(path, B_);
      for (const auto& b : judge(w.file(n.id), rb, B_)) problems.push_back(rel + ": " + b);
    }
    return problems;
  }

  void iteration(int it, uint64_t seed, CutAt cut_at) {
    SCOPED_TRACE("iteration " + std::to_string(it) + ", seed " + std::to_string(seed) + ", cut in the " +
                 cut_name(cut_at));
    const auto t0 = std::chrono::steady_clock::now();
    // The target: a new version of main, or another key.
    std::string spec;
    KeyRef target;
    if (it % 2 == 0) {
      ProcessResult r = kmsfs({"keyring", "rotate", keyring_, "main"});
      ASSERT_EQ(r.exit_code, 0);
      spec = "main";
      target = KeyRef{ProviderId::kKeyring, "main", static_cast<uint32_t>(std::stoul(r.out))};
    } else {
      spec = "k" + std::to_string(it);
      ASSERT_EQ(kmsfs({"keyring", "add", keyring_, spec}).exit_code, 0);
      target = KeyRef{ProviderId::kKeyring, spec, 1};
    }
    const Census before = census(vault_, target);
    ASSERT_EQ(before.under, 0);
    ASSERT_TRUE(before.bad.empty()) << before.bad[0];

    std::mt19937_64 rng(seed);
    auto uni = [&](uint64_t lo, uint64_t hi) { return std::uniform_int_distribution<uint64_t>(lo, hi)(rng); };
    const std::string wdir = "w" + std::to_string(it);
    Writer w(mnt_, wdir, B_, seed);
    ASSERT_NO_THROW(w.prepare()) << daemon_->log();

    std::atomic<bool> stop{false}, cut_started{false};
    std::atomic<int> syncing{0};
    std::thread writer([&] { w.run(stop, cut_started, syncing); });
    // `rotate --to` in the background: the early cut may come before it answers.
    std::atomic<bool> answered_before_cut{false};
    std::string run_id, start_out;
    std::thread starter([&] {
      ProcessResult r = kmsfs(rotate_cmd(spec, false), false);
      const bool before_cut = !cut_started.load();
      start_out = r.out + r.err;
      if (r.exit_code == 0 && before_cut) {
        answered_before_cut = true;
        run_id = json::parse(r.out, nullptr, false).value("id", "");
      }
    });

    // Wait for the moment, then cut.
    const double frac = static_cast<double>(uni(5, 95)) / 100;
    const int delay_us = static_cast<int>(uni(0, cut_at == CutAt::kStart ? 30000 : 20000));
    json last = json::object();
    std::string reached = "no status seen";
    if (cut_at != CutAt::kStart) {
      const uint32_t want_pass = cut_at == CutAt::kSecondPass ? 2 : 1;
      const auto until = std::chrono::steady_clock::now() + 60s;
      while (std::chrono::steady_clock::now() < until) {
        std::optional<json> j = status();
        if (j && j->value("target", "") == target.to_string()) {
          last = *j;
          const uint32_t pass = j->value("pass", 1u);
          const double seen = j->value("seen", 0.0), total = std::max(1.0, j->value("total", 1.0));
          if (j->value("phase", "") != "running" || pass > want_pass || (pass == want_pass && seen / total >= frac))
            break;
        }
        std::this_thread::sleep_for(10ms);
      }
      if (cut_at == CutAt::kWriterFsync)
        for (int i = 0; i < 2000 && syncing.load() == 0; ++i) std::this_thread::sleep_for(100us);
      reached = "pass " + std::to_string(last.value("pass", 0)) + ", " + std::to_string(last.value("seen", 0)) + " of " +
                std::to_string(last.value("total", 0)) + " seen, " + last.value("phase", "?");
    }
    std::this_thread::sleep_for(std::chrono::microseconds(delay_us));
    cut_started = true;
    std::string cut_error;
    try {
      xfs_->shutdown();
    } catch (const std::exception& e) {
      cut_error = e.what();
    }
    const double cut_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::this_thread::sleep_for(20ms);  // the writer and the worker run into the dead filesystem a little
    stop = true;
    writer.join();
    starter.join();
    w.close_all();
    ASSERT_TRUE(cut_error.empty()) << cut_error;
    ASSERT_TRUE(w.failure().empty()) << w.failure() << "\n" << daemon_->log();
    ASSERT_NE(last.value("phase", "running"), "done") << "the run ended before the cut: nothing was tested";

    // Recovery: kmsfs goes (it saw EIO), the XFS goes and comes back (log replay).
    const int drc = daemon_->stop();
    const std::string log_before = daemon_->log();
    daemon_.reset();
    ASSERT_NO_THROW(xfs_->unmount());
    ASSERT_NO_THROW(xfs_->mount());

    // A writer file whose create was not fsync'ed may be left without a (whole) header:
    // kmsfs cannot open it, and the rotation skips it as not a kmsfs file.
    std::set<std::string> excused;
    for (const auto& [rel, n] : w.names())
      if (!w.file(n.id).ever_synced) {
        ProcessResult r = kmsfs({"encrypt-path", vault_, rel, "--keyring", keyring_});
        excused.insert(r.out.substr(0, r.out.find('\n')));
      }

    // Before any kmsfs touches the vault: every header has a valid slot; a tree file the
    // cut caught between its two slot writes, and a sample of the others, authenticate
    // completely. (The writer's files may hold blocks written after their last fsync that
    // read EIO; the crash model judges them through the mount below.)
    const Census mid = census(vault_, target, excused);
    EXPECT_TRUE(mid.bad.empty()) << mid.bad.size() << " unreadable header(s) after the cut, e.g. " << mid.bad[0];
    const std::string wbacking = [&] {
      ProcessResult r = kmsfs({"encrypt-path", vault_, wdir, "--keyring", keyring_});
      return r.out.substr(0, r.out.find('\n')) + "/";
    }();
    std::vector<std::string> to_inspect, tree_files;
    for (const auto& path : mid.half_paths)
      if (!path.starts_with(wbacking)) to_inspect.push_back(path);
    for (auto e = std::filesystem::recursive_directory_iterator(vault_); e != std::filesystem::end(e); ++e)
      if (e->is_regular_file() && e->path().filename().string().find('.') == std::string::npos &&
          !e->path().string().starts_with(wbacking))
        tree_files.push_back(e->path().string());
    std::sort(tree_files.begin(), tree_files.end());
    for (int k = 0; k < 12 && !tree_files.empty(); ++k) to_inspect.push_back(tree_files[uni(0, tree_files.size() - 1)]);
    for (const auto& path : to_inspect) {
      ProcessResult r = kmsfs({"inspect", "--backing-path", path, "--json", "--keyring", keyring_}, false);
      EXPECT_EQ(r.exit_code, 0) << path << ": " << r.out << r.err;
      EXPECT_EQ(json::parse(r.out, nullptr, false).value("authenticated", false), true) << path << ": " << r.out;
    }
    // Where a cut around `rotate --to` landed: kmsfs.conf moved to the target or not.
    const json conf = json::parse(read_file(vault_ + "/kmsfs.conf"), nullptr, false);
    const bool conf_moved = conf.is_object() && conf["fs_key"].value("key_id", "") == target.key_id &&
                            conf["fs_key"].value("version", 0u) == target.version;
    std::optional<json> checkpoint;
    try {
      checkpoint = json::parse(read_file(vault_ + "/kmsfs.rotation"), nullptr, false);
    } catch (...) {
    }
    const bool same_run = checkpoint && !checkpoint->is_discarded() && checkpoint->value("target", "") == target.to_string();
    if (answered_before_cut) {
      ASSERT_TRUE(same_run) << "`rotate --to` answered " << start_out << " before the cut, but kmsfs.rotation is "
                            << (checkpoint ? checkpoint->dump() : "missing");
      EXPECT_EQ(checkpoint->value("id", ""), run_id);
      EXPECT_TRUE(conf_moved) << "the run survived, kmsfs.conf's filesystem key did not move: " << conf.dump();
    }
    const std::string resumed_at =
        same_run ? "checkpoint: pass " + std::to_string(checkpoint->value("pass", 0)) + ", " +
                       std::to_string(checkpoint->value("seen", 0)) + " seen, phase " + checkpoint->value("phase", "?")
                 : "no checkpoint of this run (started again)";

    // The remounted daemon continues the run by itself.
    start_daemon("it" + std::to_string(it) + "-after");
    daemon_log_after_cut_.clear();
    const auto t_resume = std::chrono::steady_clock::now();
    json done;
    if (same_run) {
      done = wait_done(120s);
    } else {
      ProcessResult r = kmsfs(rotate_cmd(spec, true), false);
      EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
      done = last_json_line(r.out);
    }
    const double resume_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_resume).count();
    daemon_log_after_cut_ = daemon_->log();
    EXPECT_EQ(done.value("phase", ""), "done") << done.dump() << "\n" << daemon_->log();
    if (!reencrypting()) {
      EXPECT_EQ(done.value("failed", -1), 0) << done.dump();
    } else {
      // Re-encryption reads every block: a writer's block written after its last fsync may
      // have been torn by the cut (the crash model allows it to read EIO), and then that
      // file is reported and skipped. Any other failure is a bug.
      const std::string wrel = wbacking.substr(vault_.size() + 1);
      for (const auto& e : done.value("errors", json::array()))
        EXPECT_TRUE(e.value("path", "").starts_with(wrel) && e.value("message", "").find(" block ") != std::string::npos)
            << "a tree file failed to re-encrypt: " << e.dump();
      EXPECT_EQ(done.value("failed", -1), static_cast<int>(done.value("errors", json::array()).size())) << done.dump();
    }
    EXPECT_EQ(done.value("target", ""), target.to_string());
    const Census after = census(vault_, target, excused);
    EXPECT_EQ(after.under, after.files) << (after.not_under.empty() ? "" : after.not_under[0]);
    EXPECT_TRUE(after.bad.empty()) << after.bad.size() << " bad, e.g. " << (after.bad.empty() ? "" : after.bad[0]);
    EXPECT_GE(after.files, kFiles + 3);

    // Nothing needs the old key any more: disable it; a fresh mount (kmsfs.conf's
    // filesystem key included) reads every byte.
    EXPECT_EQ(daemon_->stop(), 0) << daemon_->log();
    daemon_.reset();
    if (!previous_.empty()) kmsfs({"keyring", "disable", keyring_, previous_});
    previous_ = target.key_id + ":" + std::to_string(target.version);
    start_daemon("it" + std::to_string(it) + "-check");
    mtime_changed_ = 0;
    std::vector<std::string> problems = check_content(w);
    std::set<std::string> listed;
    for (const auto& e : std::filesystem::directory_iterator(mnt_)) listed.insert(e.path().filename().string());
    std::set<std::string> want = {wdir};
    for (int d = 0; d < kDirs; ++d) want.insert("t" + std::to_string(d));
    EXPECT_EQ(listed, want);
    // A re-wrap puts the mtime back after its two slot writes; a cut between a log force
    // that caught the writes' mtime and the one that would have caught the restore can
    // leave one file's mtime moved (a window of microseconds). More is a bug.
    // Re-encryption rewrites the content: the backing mtime moves with it (FORMAT §3.9.4).
    if (!reencrypting()) {
      EXPECT_LE(mtime_changed_, 2) << "tree files whose mtime the rotation changed";
    }
    if (reencrypting()) {
      // Every tree file has a DEK of this run (the writer's may have been born in it).
      const std::string run = done.value("id", "");
      int stale = 0;
      std::string example;
      for (auto e = std::filesystem::recursive_directory_iterator(vault_); e != std::filesystem::end(e); ++e) {
        if (!e->is_regular_file() || e->path().filename().string().find('.') != std::string::npos ||
            e->path().string().starts_with(wbacking))
          continue;
        auto f = PosixBackingFile::open(e->path().string(), O_RDONLY);
        Bytes raw(header::kSize);
        if (!f.ok() || !(*f)->read_at(raw, 0).ok()) continue;
        auto h = parse_header(raw);
        if (!h.ok()) continue;
        const HeaderSlot& a = *h->slots[h->active_slot()];
        if (a.reencrypt || !a.dek_run || to_hex(*a.dek_run) != run) {
          ++stale;
          if (example.empty()) example = e->path().string();
        }
      }
      EXPECT_EQ(stale, 0) << "files without a DEK of run " << run << ", e.g. " << example;
    }

    std::cout << "iteration " << it << " (seed " << seed << "): to " << target.to_string() << ", cut in the "
              << cut_name(cut_at) << " at " << cut_s << " s (" << reached << ", +" << delay_us << " us; rotate --to "
              << (answered_before_cut ? "had answered" : "had not answered") << "); after log replay: "
              << mid.under << " files under the new key, " << mid.half << " with one slot moved, " << mid.old
              << " not yet, " << mid.excused << " never fsync'ed, " << to_inspect.size() << " inspected, kmsfs.conf "
              << (conf_moved ? "moved" : "not moved") << "; " << resumed_at << "; done "
              << resume_s << " s after the remount (pass " << done.value("pass", 0) << ", "
              << done.value("rotated", 0) << " re-wrapped in this run); writer: " << w.op_count() << " ops, "
              << w.late_syncs() << " syncs after the cut; daemon exit " << drc << "; "
              << after.files << " files checked, " << mtime_changed_ << " mtimes moved; "
              << (daemon_log_after_cut_.find("restored blocks") != std::string::npos ? "a journaled step undone; " : "")
              << std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() << " s\n";
    if (!problems.empty()) {
      std::string all;
      for (size_t i = 0; i < problems.size() && i < 30; ++i) all += "  " + problems[i] + "\n";
      ADD_FAILURE() << problems.size() << " problem(s) after the power cut (block size " << B_ << "):\n"
                    << all << "--- daemon log before the cut:\n"
                    << log_before.substr(log_before.size() > 3000 ? log_before.size() - 3000 : 0)
                    << "--- daemon log after:\n"
                    << daemon_->log();
    }
    // The writer's directory goes; the next iteration writes its own.
    std::error_code ec;
    std::filesystem::remove_all(mnt_ + "/" + wdir, ec);
    EXPECT_FALSE(ec) << ec.message();
  }

  TempDir tmp_{"kmsfs-rotpowerloss"};
  std::unique_ptr<LoopXfs> xfs_;
  std::unique_ptr<Daemon> daemon_;
  std::string keyring_, mnt_, vault_;
  uint64_t B_ = 4096;
  std::vector<timespec> mtimes_;
  int mtime_changed_ = 0;
  std::string daemon_log_after_cut_;
  std::string previous_ = "main:1";  // the key the files are under now, to disable once they moved
};

// KMSFS_ROTATION_POWERLOSS_ITERATIONS / KMSFS_ROTATION_POWERLOSS_SEED explore further
// (seeds base+0, +1, ...; the cut moments cycle through `cuts`).
void run_iterations(int iterations, uint64_t base, const std::vector<CutAt>& cuts,
                    const std::function<void(int, uint64_t, CutAt)>& iteration) {
  const char* n = ::getenv("KMSFS_ROTATION_POWERLOSS_ITERATIONS");
  const char* b = ::getenv("KMSFS_ROTATION_POWERLOSS_SEED");
  if (n && *n) iterations = std::atoi(n);
  if (b && *b) base = std::strtoull(b, nullptr, 0);
  for (int it = 0; it < iterations; ++it) {
    iteration(it, base + static_cast<uint64_t>(it), cuts[static_cast<size_t>(it) % cuts.size()]);
    if (::testing::Test::HasFatalFailure()) return;
  }
}

TEST_F(RotationPowerLoss, EveryFileSurvivesACutAnywhereInARotationAndTheRunFinishesAfterRemount) {
  run_iterations(kIterations, 9100,
                 {CutAt::kFirstPass, CutAt::kStart, CutAt::kSecondPass, CutAt::kWriterFsync},
                 [this](int it, uint64_t seed, CutAt cut) { iteration(it, seed, cut); });
  if (HasFatalFailure()) return;
  EXPECT_EQ(daemon_->stop(), 0) << daemon_->log();
}

// Intermediate-key mode: files share intermediate keys (here ~15 of 100 files each), and a
// rotation moves each intermediate key's wrap once for all its files; a restarted run
// moves the wrap again for the files not yet done. Two cuts: in the first pass, in the second.
class RotationPowerLossIntermediate : public RotationPowerLoss {
 protected:
  std::vector<std::string> init_args() const override {
    return {"--key-mode", "intermediate", "--intermediate-max-files", "100"};
  }
};

TEST_F(RotationPowerLossIntermediate, EveryFileSurvivesACutAndTheRunFinishesAfterRemount) {
  run_iterations(2, 9200, {CutAt::kFirstPass, CutAt::kSecondPass},
                 [this](int it, uint64_t seed, CutAt cut) { iteration(it, seed, cut); });
  if (HasFatalFailure()) return;
  EXPECT_EQ(daemon_->stop(), 0) << daemon_->log();
}

// Re-encryption: every file gets a fresh DEK and every block is sealed again in place, the
// old ciphertext of each step journaled first. A cut mid-step leaves blocks torn or half
// rewritten; the remount undoes the step from the journal and continues from the
// watermark. 16 MiB/s keeps the run going for some seconds, so cuts land mid-file.
class RotationPowerLossReencrypt : public RotationPowerLoss {
 protected:
  std::vector<std::string> rotate_args() const override { return {"--reencrypt", "--rate-mb", "16"}; }
};

TEST_F(RotationPowerLossReencrypt, EveryFileSurvivesACutMidStepAndTheRunFinishesAfterRemount) {
  run_iterations(3, 9300, {CutAt::kFirstPass, CutAt::kWriterFsync, CutAt::kFirstPass},
                 [this](int it, uint64_t seed, CutAt cut) { iteration(it, seed, cut); });
  if (HasFatalFailure()) return;
  EXPECT_EQ(daemon_->stop(), 0) << daemon_->log();
}

}  // namespace
}  // namespace kmsfs::testing
