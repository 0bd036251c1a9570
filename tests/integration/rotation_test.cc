// Key rotation on a live mount, as an operator runs it: `kmsfs keyring rotate`, then
// `kmsfs rotate MOUNTPOINT --to main`, while applications keep reading and writing; the
// daemon killed with SIGKILL mid-run; offline rotation and its lock; pause, resume,
// cancel; and on KMS (tools/kms-local), a move to another key by ReEncrypt alone.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <sstream>
#include <thread>

#include "base/unique_fd.h"
#include "format/backing_file.h"
#include "format/header.h"
#include "kms_local.h"
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

std::string rel(int i) { return "d" + std::to_string(i % 13) + "/file-" + std::to_string(i); }
size_t size_of(int i) { return 1 + static_cast<size_t>(i * 7919 % 20000); }

void make_files(MountedVault& v, int n, uint64_t seed) {
  for (int d = 0; d < 13; ++d) std::filesystem::create_directories(v.at("d" + std::to_string(d)));
  for (int i = 0; i < n; ++i) write_file(v.at(rel(i)), pattern(size_of(i), seed + static_cast<uint64_t>(i)));
}

void expect_files(MountedVault& v, int n, uint64_t seed) {
  int bad = 0;
  for (int i = 0; i < n; ++i)
    if (read_file(v.at(rel(i))) != pattern(size_of(i), seed + static_cast<uint64_t>(i)) && ++bad < 5)
      ADD_FAILURE() << rel(i) << " reads back wrong";
  EXPECT_EQ(bad, 0);
}

// Every kmsfs file in the backing tree, by its header: how many have both slots under `key`.
struct Census {
  int files = 0, under = 0;
  std::vector<std::string> others;
};
// Every kmsfs file's header, by backing path.
std::map<std::string, FileHeader> headers(const std::string& backing) {
  std::map<std::string, FileHeader> out;
  for (auto it = std::filesystem::recursive_directory_iterator(backing); it != std::filesystem::end(it); ++it) {
    const std::string name = it->path().filename().string();
    if (!it->is_regular_file() || name.find('.') != std::string::npos) continue;
    auto f = PosixBackingFile::open(it->path().string(), O_RDONLY);
    if (!f.ok()) continue;
    Bytes raw(header::kSize);
    auto n = (*f)->read_at(raw, 0);
    if (!n.ok()) continue;
    raw.resize(*n);
    if (auto h = parse_header(raw); h.ok()) out.emplace(it->path().string(), std::move(*h));
  }
  return out;
}

Census census(const std::string& backing, const KeyRef& key) {
  Census c;
  for (const auto& [path, h] : headers(backing)) {
    ++c.files;
    const bool ok = h.slots[0] && h.slots[1] && h.slots[0]->key == key && h.slots[1]->key == key;
    if (ok) ++c.under;
    else if (c.others.size() < 5) c.others.push_back(path);
  }
  return c;
}

json rotation_status(MountedVault& v) {
  ProcessResult r = kmsfs({"rotate", v.mnt(), "--status", "--json"});
  return json::parse(r.out, nullptr, false);
}

json wait_done(MountedVault& v, std::chrono::seconds limit = 120s) {
  const auto until = std::chrono::steady_clock::now() + limit;
  json j;
  while (std::chrono::steady_clock::now() < until) {
    j = rotation_status(v);
    if (j.value("phase", "") != "running") return j;
    std::this_thread::sleep_for(100ms);
  }
  ADD_FAILURE() << "rotation still running after " << limit.count() << " s: " << j.dump();
  return j;
}

const KeyRef kMain(uint32_t version) { return KeyRef{ProviderId::kKeyring, "main", version}; }

// The vault's key spec as `kmsfs init` recorded it (keyring or KMS alike).
std::string key_spec(const MountedVault& v) {
  return json::parse(read_file(v.backing() + "/kmsfs.conf")).at("key").at("spec").get<std::string>();
}

// How many of `before`'s files now have a DEK of one re-encryption run in both slots,
// none mid-way, and a wrapped DEK unlike the one they had.
struct Fresh {
  int files = 0, fresh = 0, midway = 0;
  std::set<ReencryptRunId> runs;
  std::vector<std::string> stale;
};
Fresh fresh_keys(const std::string& backing, const std::map<std::string, FileHeader>& before) {
  Fresh f;
  for (const auto& [path, h] : headers(backing)) {
    auto old = before.find(path);
    if (old == before.end()) continue;
    ++f.files;
    bool ok = true;
    for (const auto& s : h.slots) {
      if (!s) continue;
      if (s->reencrypt) ++f.midway, ok = false;
      if (!s->dek_run || s->wrapped_dek == old->second.slots[0]->wrapped_dek) ok = false;
      if (s->dek_run) f.runs.insert(*s->dek_run);
    }
    if (ok) ++f.fresh;
    else if (f.stale.size() < 5) f.stale.push_back(path);
  }
  return f;
}

TEST(RotationOnline, EveryFileMovesWhileAWriterAndAReaderRunAndEveryByteReadsBack) {
  MountedVault v;
  if (std::getenv("KMSFS_TEST_KMS")) GTEST_SKIP() << "keyring rotation; the KMS case is below";
  const int n = 1500;
  make_files(v, n, 100);
  std::filesystem::create_directories(v.at("w"));
  const std::string big = pattern(6 << 20, 7);
  write_file(v.at("big"), big);
  kmsfs({"keyring", "rotate", v.keyring(), "main"});

  std::atomic<bool> stop{false};
  std::atomic<int> wrong_reads{0}, reads{0}, writes{0};
  std::map<int, std::string> expected;  // the writer's files: their last content
  std::thread writer([&] {
    for (uint64_t k = 0; !stop; ++k) {
      const int slot = static_cast<int>(k % 40);
      std::string data = pattern(500 + k % 9000, 5000 + k);
      write_file(v.at("w/f" + std::to_string(slot)), data);
      expected[slot] = std::move(data);
      ++writes;
    }
  });
  std::thread reader([&] {
    std::mt19937 rng(42);
    while (!stop) {
      const int i = static_cast<int>(rng() % n);
      if (read_file(v.at(rel(i))) != pattern(size_of(i), 100 + static_cast<uint64_t>(i))) ++wrong_reads;
      if (rng() % 50 == 0 && read_file(v.at("big")) != big) ++wrong_reads;
      ++reads;
    }
  });
  ProcessResult r = kmsfs({"rotate", v.mnt(), "--to", "main", "--wait", "--json", "--rate", "0"}, false);
  stop = true;
  writer.join();
  reader.join();
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  const json j = last_json_line(r.out);
  EXPECT_EQ(j.value("phase", ""), "done");
  EXPECT_EQ(j.value("failed", -1), 0);
  EXPECT_GE(j.value("rotated", 0), n + 1);
  EXPECT_EQ(wrong_reads, 0);
  EXPECT_GT(reads, 10);
  EXPECT_GT(writes, 10);

  expect_files(v, n, 100);
  EXPECT_EQ(read_file(v.at("big")), big);
  for (const auto& [slot, data] : expected) EXPECT_EQ(read_file(v.at("w/f" + std::to_string(slot))), data);
  // The last writes may postdate the final pass: they were born under the target anyway.
  const Census c = census(v.backing(), kMain(2));
  EXPECT_EQ(c.under, c.files) << (c.others.empty() ? "" : c.others[0]);
  EXPECT_GE(c.files, n + 41);

  // The old version can be disabled: a fresh mount reads everything.
  v.unmount();
  kmsfs({"keyring", "disable", v.keyring(), "main:1"});
  v.mount();
  expect_files(v, n, 100);
  EXPECT_EQ(read_file(v.at("big")), big);
}

TEST(RotationOnline, KilledWithSigkillMidRunTheRemountedDaemonFinishes) {
  MountedVault v;
  if (std::getenv("KMSFS_TEST_KMS")) GTEST_SKIP() << "keyring rotation";
  const int n = 1200;
  make_files(v, n, 300);
  for (int seed = 1; seed <= 3; ++seed) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    kmsfs({"keyring", "rotate", v.keyring(), "main"});
    kmsfs({"rotate", v.mnt(), "--to", "main", "--rate", "600"});
    std::mt19937 rng(static_cast<uint32_t>(seed));
    std::this_thread::sleep_for(std::chrono::milliseconds(200 + rng() % 1500));
    v.kill_daemon(SIGKILL);
    v.unmount();  // reaps the dead daemon
    const Census mid = census(v.backing(), kMain(static_cast<uint32_t>(seed + 1)));
    EXPECT_LT(mid.under, mid.files) << "the kill came too late to test anything";
    v.mount();  // continues the run on its own
    const json j = wait_done(v);
    EXPECT_EQ(j.value("phase", ""), "done") << j.dump();
    EXPECT_EQ(j.value("failed", -1), 0);
    const Census c = census(v.backing(), kMain(static_cast<uint32_t>(seed + 1)));
    EXPECT_EQ(c.under, c.files);
    EXPECT_EQ(c.files, n);
    expect_files(v, n, 300);
  }
}

TEST(RotationOnline, PauseResumeAndCancelFromTheCommandLineSurviveARemount) {
  MountedVault v;
  if (std::getenv("KMSFS_TEST_KMS")) GTEST_SKIP() << "keyring rotation";
  make_files(v, 600, 500);
  kmsfs({"keyring", "rotate", v.keyring(), "main"});
  kmsfs({"rotate", v.mnt(), "--to", "main", "--rate", "100"});
  std::this_thread::sleep_for(500ms);
  kmsfs({"rotate", v.mnt(), "--pause"});
  std::this_thread::sleep_for(300ms);
  const json paused = rotation_status(v);
  EXPECT_EQ(paused.value("phase", ""), "paused");
  std::this_thread::sleep_for(400ms);
  EXPECT_EQ(rotation_status(v).value("seen", 0), paused.value("seen", -1));
  v.remount();
  EXPECT_EQ(rotation_status(v).value("phase", ""), "paused");
  ProcessResult again = kmsfs({"rotate", v.mnt(), "--to", "main"}, false);
  EXPECT_EQ(again.exit_code, 8) << again.err;  // one run at a time
  EXPECT_NE(again.err.find("cancel it first"), std::string::npos) << again.err;
  kmsfs({"rotate", v.mnt(), "--resume"});
  std::this_thread::sleep_for(300ms);
  EXPECT_EQ(rotation_status(v).value("phase", ""), "running");
  ProcessResult cancel = kmsfs({"rotate", v.mnt(), "--cancel", "--json"});
  EXPECT_EQ(json::parse(cancel.out, nullptr, false).value("phase", ""), "cancelled");
  const Census c = census(v.backing(), kMain(2));
  EXPECT_GT(c.under, 0);
  EXPECT_LT(c.under, c.files);
  // Finishing it is a new run.
  ProcessResult finish = kmsfs({"rotate", v.mnt(), "--to", "main", "--wait", "--rate", "0"}, false);
  EXPECT_EQ(finish.exit_code, 0) << finish.out << finish.err;
  EXPECT_EQ(census(v.backing(), kMain(2)).under, c.files);
  expect_files(v, 600, 500);
}

// `rotate --wait` without a terminal (a log, a CI job): a labelled line per pass and one
// every 5 s, never a "0/0" frame before the walk counted, and files counted once.
TEST(RotationOnline, WaitWithoutATerminalPrintsLabelledLinesAndCountsEachFileOnce) {
  MountedVault v;
  if (std::getenv("KMSFS_TEST_KMS")) GTEST_SKIP() << "keyring rotation";
  const int n = 150;
  make_files(v, n, 700);
  kmsfs({"keyring", "rotate", v.keyring(), "main"});
  // 25 files/s: the run lasts more than 5 s, so at least two lines of pass 1.
  ProcessResult r = kmsfs({"rotate", v.mnt(), "--to", "main", "--wait", "--rate", "25"}, false);
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  std::vector<std::string> lines;
  std::istringstream in(r.out);
  for (std::string l; std::getline(in, l);) lines.push_back(l);
  int pass1 = 0;
  for (const auto& l : lines) {
    EXPECT_EQ(l.find('\r'), std::string::npos) << "no redrawn bar without a terminal: " << l;
    EXPECT_EQ(l.find(" 0/0 "), std::string::npos) << l;
    if (l.starts_with("pass 1: ")) ++pass1;
  }
  EXPECT_GE(pass1, 2) << r.out;
  ASSERT_FALSE(lines.empty());
  EXPECT_TRUE(lines.front().starts_with("pass 1: ")) << r.out;
  const json st = rotation_status(v);
  EXPECT_EQ(st.value("phase", ""), "done");
  // Every file once: the status and the final report count the tree's files, not per pass.
  const Census c = census(v.backing(), kMain(2));
  EXPECT_EQ(c.under, c.files);
  EXPECT_EQ(st.value("seen", 0), c.files) << st.dump();
  EXPECT_NE(r.out.find(std::to_string(c.files)), std::string::npos) << r.out;
}

// An operator watches a run from the metrics endpoint and `kmsfs stats` too, and they
// agree with `rotate --status`.
TEST(RotationOnline, ProgressIsExportedToPrometheusAndStats) {
  VaultOptions o;
  o.mount_args = {"--metrics-listen", "127.0.0.1:0"};
  MountedVault v(o);
  if (std::getenv("KMSFS_TEST_KMS")) GTEST_SKIP() << "keyring rotation";
  auto rotation_metrics = [&] {
    std::map<std::string, double> m;
    for (const auto& [k, val] : v.scrape_metrics())
      if (k.starts_with("kmsfs_rotation_")) m[k] = val;
    return m;
  };
  auto stats = [&] { return json::parse(kmsfs({"stats", v.mnt(), "--json"}).out, nullptr, false); };

  make_files(v, 40, 1500);
  EXPECT_TRUE(rotation_metrics().empty()) << "no rotation yet";
  EXPECT_TRUE(stats()["rotation"].is_null()) << stats().dump();

  kmsfs({"keyring", "rotate", v.keyring(), "main"});
  ProcessResult r = kmsfs({"rotate", v.mnt(), "--to", "main", "--wait", "--rate", "0"}, false);
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  const json status = rotation_status(v);
  ASSERT_EQ(status.value("phase", ""), "done") << status.dump();
  std::map<std::string, double> m = rotation_metrics();
  const std::string info = "kmsfs_rotation_info{mode=rewrap,phase=done,run=" + status["id"].get<std::string>() +
                           ",target=" + status["target"].get<std::string>() + "}";
  ASSERT_TRUE(m.contains(info)) << info << " not among " << json(m).dump(2);
  EXPECT_EQ(m[info], 1.0);
  EXPECT_EQ(m["kmsfs_rotation_active"], 0.0);
  EXPECT_GE(status["rotated"].get<double>(), 40.0) << status.dump();
  EXPECT_EQ(m["kmsfs_rotation_files_rotated"], status["rotated"].get<double>()) << json(m).dump(2);
  EXPECT_EQ(m.at("kmsfs_rotation_pass_files{state=failed}"), 0.0);
  EXPECT_EQ(m["kmsfs_rotation_pass_files{state=seen}"], status["seen"].get<double>());
  EXPECT_EQ(m["kmsfs_rotation_pass"], status["pass"].get<double>());
  EXPECT_EQ(m["kmsfs_rotation_bytes"], status["bytes"].get<double>());
  const json s = stats();
  EXPECT_EQ(s["rotation"]["phase"], "done") << s.dump();
  EXPECT_EQ(s["rotation"]["rotated"], status["rotated"]);
  const std::string human = kmsfs({"stats", v.mnt()}).out;
  EXPECT_NE(human.find("rotation: done to " + status["target"].get<std::string>() + " (re-wrap), pass "), std::string::npos)
      << human;
  EXPECT_EQ(census(v.backing(), kMain(2)).under, census(v.backing(), kMain(2)).files);
}

TEST(RotationLazy, NewAndRewrittenFilesUseANewKeyringVersionAtOnceWithoutARotateCommand) {
  MountedVault v;
  if (std::getenv("KMSFS_TEST_KMS")) GTEST_SKIP() << "keyring versions";
  write_file(v.at("kept"), "old content");
  write_file(v.at("rewritten"), "old content");
  write_file(v.at("truncated"), "old content");
  kmsfs({"keyring", "rotate", v.keyring(), "main"});  // another process changes the keyring file
  std::this_thread::sleep_for(1200ms);                 // the mount notices within a second
  write_file(v.at("new"), "new file");
  write_file(v.at("rewritten"), "rewritten in place (O_TRUNC)");
  std::filesystem::resize_file(v.at("truncated"), 0);
  auto key_of = [&](const std::string& rel) {
    Bytes raw(header::kSize);
    auto f = PosixBackingFile::open(v.backing_at(rel), O_RDONLY);
    EXPECT_TRUE(f.ok());
    EXPECT_TRUE((*f)->read_at(raw, 0).ok());
    auto h = parse_header(raw);
    EXPECT_TRUE(h.ok());
    const bool both = h->slots[0] && h->slots[1] && h->slots[0]->key == h->slots[1]->key;
    return both ? h->slots[0]->key.version : 0u;
  };
  EXPECT_EQ(key_of("new"), 2u);
  EXPECT_EQ(key_of("rewritten"), 2u);
  EXPECT_EQ(key_of("truncated"), 2u);
  EXPECT_EQ(key_of("kept"), 1u) << "untouched files wait for the rotation pass";
  v.remount();
  EXPECT_EQ(read_file(v.at("rewritten")), "rewritten in place (O_TRUNC)");
  EXPECT_EQ(read_file(v.at("kept")), "old content");
  EXPECT_EQ(read_file(v.at("truncated")), "");
}

TEST(RotationOffline, RefusedWhileMountedThenMovesAnUnmountedTree) {
  MountedVault v;
  if (std::getenv("KMSFS_TEST_KMS")) GTEST_SKIP() << "keyring rotation";
  make_files(v, 300, 700);
  kmsfs({"keyring", "rotate", v.keyring(), "main"});
  ProcessResult busy =
      kmsfs({"rotate", "--offline", v.backing(), "--to", "main", "--keyring", v.keyring()}, false);
  EXPECT_EQ(busy.exit_code, 8) << busy.err;
  EXPECT_NE(busy.err.find("in use by a kmsfs mount at " + v.mnt()), std::string::npos) << busy.err;
  EXPECT_EQ(census(v.backing(), kMain(2)).under, 0);
  v.unmount();
  ProcessResult r = kmsfs({"rotate", "--offline", v.backing(), "--to", "main", "--keyring", v.keyring()}, false);
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find(": done"), std::string::npos) << r.out;
  const Census c = census(v.backing(), kMain(2));
  EXPECT_EQ(c.under, c.files);
  EXPECT_EQ(c.files, 300);
  ProcessResult st = kmsfs({"rotate", "--offline", v.backing(), "--status", "--json"});
  EXPECT_EQ(json::parse(st.out, nullptr, false).value("phase", ""), "done");
  // A second mount of a mounted vault is refused the same way.
  v.mount();
  const std::string other = v.tmp().path() + "/other";
  std::filesystem::create_directories(other);
  ProcessResult second = kmsfs({"mount", v.backing(), other, "--keyring", v.keyring()}, false);
  EXPECT_NE(second.exit_code, 0);
  EXPECT_NE(second.err.find("in use by"), std::string::npos) << second.err;
  expect_files(v, 300, 700);
}

TEST(RotationReencrypt, EveryFileGetsAFreshDataKeyWhileAWriterAndAReaderRunAndEveryByteReadsBack) {
  // Also under KMSFS_TEST_KMS: the new DEKs then come from GenerateDataKey.
  MountedVault v;
  const int n = 1500;
  make_files(v, n, 900);
  const std::string big = pattern(5 << 20, 17);
  write_file(v.at("big"), big);
  {
    // Sparse: data, an 8 MiB hole, data.
    UniqueFd fd(::open(v.at("sparse").c_str(), O_RDWR | O_CREAT, 0644));
    ASSERT_TRUE(fd.valid());
    ASSERT_EQ(::pwrite(fd.get(), "head", 4, 0), 4);
    ASSERT_EQ(::pwrite(fd.get(), "tail", 4, 8 << 20), 4);
  }
  std::filesystem::create_directories(v.at("w"));
  const auto before = headers(v.backing());

  std::atomic<bool> stop{false};
  std::atomic<int> wrong_reads{0}, reads{0}, writes{0};
  std::string big_now = big;  // the writer also overwrites parts of "big" in place
  std::mutex big_mu;
  std::thread writer([&] {
    UniqueFd fd(::open(v.at("big").c_str(), O_RDWR));
    for (uint64_t k = 0; !stop; ++k) {
      const std::string data = pattern(3000 + k % 5000, 7000 + k);
      const uint64_t off = (k * 1048573) % (big.size() - data.size());
      {
        std::lock_guard lock(big_mu);
        if (::pwrite(fd.get(), data.data(), data.size(), static_cast<off_t>(off)) != static_cast<ssize_t>(data.size()))
          ++wrong_reads;
        big_now.replace(off, data.size(), data);
      }
      write_file(v.at("w/f" + std::to_string(k % 20)), data);
      ++writes;
      std::this_thread::sleep_for(2ms);
    }
  });
  std::thread reader([&] {
    std::mt19937 rng(7);
    while (!stop) {
      const int i = static_cast<int>(rng() % n);
      if (read_file(v.at(rel(i))) != pattern(size_of(i), 900 + static_cast<uint64_t>(i))) ++wrong_reads;
      if (rng() % 20 == 0) {
        std::lock_guard lock(big_mu);
        if (read_file(v.at("big")) != big_now) ++wrong_reads;
      }
      ++reads;
    }
  });
  ProcessResult r = kmsfs({"rotate", v.mnt(), "--to", key_spec(v), "--reencrypt", "--wait", "--json", "--rate", "0",
                           "--kms-rate", "0", "--rate-mb", "0"},
                          false);
  stop = true;
  writer.join();
  reader.join();
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  const json j = last_json_line(r.out);
  EXPECT_EQ(j.value("mode", ""), "reencrypt");
  EXPECT_EQ(j.value("failed", -1), 0);
  EXPECT_GE(j.value("bytes", 0.0), 5.0 * (1 << 20));
  EXPECT_EQ(wrong_reads, 0);
  EXPECT_GT(reads, 10);
  EXPECT_GT(writes, 10);

  const Fresh f = fresh_keys(v.backing(), before);
  EXPECT_EQ(f.files, static_cast<int>(before.size()));
  EXPECT_EQ(f.fresh, f.files) << (f.stale.empty() ? "" : f.stale[0]);
  EXPECT_EQ(f.midway, 0);
  EXPECT_EQ(f.runs.size(), 1u);
  expect_files(v, n, 900);
  {
    std::lock_guard lock(big_mu);
    EXPECT_EQ(read_file(v.at("big")), big_now);
  }
  // The hole is still a hole in the backing file, and reads as zeros.
  std::string sparse = read_file(v.at("sparse"));
  ASSERT_EQ(sparse.size(), (8u << 20) + 4);
  EXPECT_EQ(sparse.substr(0, 4), "head");
  EXPECT_EQ(sparse.substr(8 << 20), "tail");
  EXPECT_EQ(sparse.find_first_not_of('\0', 4), static_cast<size_t>(8 << 20));
  struct stat st;
  ASSERT_EQ(::stat(v.backing_at("sparse").c_str(), &st), 0);
  EXPECT_LT(st.st_blocks * 512, 1 << 20);
  // A fresh mount reads every byte with the new keys alone (nothing left mid-way).
  v.remount();
  expect_files(v, n, 900);
  EXPECT_EQ(read_file(v.at("big")), big_now);
}

TEST(RotationReencrypt, KilledMidFileTheRemountedDaemonContinuesFromTheWatermark) {
  MountedVault v;
  if (std::getenv("KMSFS_TEST_KMS")) GTEST_SKIP() << "covered on the keyring; the KMS path is tested above";
  const int n = 100;
  make_files(v, n, 1100);
  const std::string big = pattern(24 << 20, 29);
  write_file(v.at("big"), big);
  for (int seed = 1; seed <= 3; ++seed) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    const auto before = headers(v.backing());
    // 8 MiB/s: the big file alone takes about 3 s.
    kmsfs({"rotate", v.mnt(), "--to", "main", "--reencrypt", "--rate-mb", "8"});
    std::mt19937 rng(static_cast<uint32_t>(seed));
    std::this_thread::sleep_for(std::chrono::milliseconds(300 + rng() % 2500));
    v.kill_daemon(SIGKILL);
    v.unmount();
    const Fresh mid = fresh_keys(v.backing(), before);
    EXPECT_LT(mid.fresh, mid.files) << "the kill came too late to test anything";
    v.mount();  // recovers the journal, then continues the run on its own
    const json j = wait_done(v, 180s);
    EXPECT_EQ(j.value("phase", ""), "done") << j.dump();
    EXPECT_EQ(j.value("failed", -1), 0);
    const Fresh f = fresh_keys(v.backing(), before);
    EXPECT_EQ(f.fresh, f.files) << (f.stale.empty() ? "" : f.stale[0]);
    EXPECT_EQ(f.files, n + 1);
    expect_files(v, n, 1100);
    EXPECT_EQ(read_file(v.at("big")), big);
  }
}

TEST(RotationReencrypt, FsckReportsAFileKilledMidwayAndRepairFinishesIt) {
  MountedVault v;
  if (std::getenv("KMSFS_TEST_KMS")) GTEST_SKIP() << "covered on the keyring";
  const std::string big = pattern(24 << 20, 31);
  write_file(v.at("big"), big);  // first in the walk order
  make_files(v, 20, 1300);
  kmsfs({"rotate", v.mnt(), "--to", "main", "--reencrypt", "--rate-mb", "8"});
  std::this_thread::sleep_for(1200ms);
  v.kill_daemon(SIGKILL);
  v.unmount();

  auto fsck = [&](std::vector<std::string> extra) {
    std::vector<std::string> args = {"fsck", v.backing(), "--json", "--keyring", v.keyring()};
    args.insert(args.end(), extra.begin(), extra.end());
    ProcessResult r = kmsfs(args, false);
    return std::make_pair(r.exit_code, json::parse(r.out, nullptr, false));
  };
  auto kinds = [](const json& j) {
    std::multiset<std::string> k;
    for (const auto& f : j.value("findings", json::array())) k.insert(f.value("kind", ""));
    return k;
  };
  auto [code, report] = fsck({});
  EXPECT_EQ(code, 4) << report.dump(2);
  // The half-done file; and the journal, unless the kill tore the entry being written (the
  // blocks move only once it is whole, so a torn entry is no step in flight).
  int files_midway = 0, journal = 0;
  for (const auto& f : report.value("findings", json::array())) {
    if (f.value("kind", "") != "interrupted_reencryption") continue;
    (f.value("path", "") == "kmsfs.journal" ? journal : files_midway) += 1;
  }
  EXPECT_EQ(files_midway, 1) << report.dump(2);
  EXPECT_LE(journal, 1) << report.dump(2);
  EXPECT_EQ(kinds(report).count("interrupted_rotation"), 1u) << report.dump(2);
  EXPECT_EQ(kinds(report).count("damaged_block"), 0u) << "every block of the half-done file authenticates";

  auto [fixed, repaired] = fsck({"--repair"});
  EXPECT_EQ(fixed, 1) << repaired.dump(2);
  auto [clean, after] = fsck({});
  EXPECT_EQ(clean, 0) << after.dump(2);
  EXPECT_EQ(kinds(after).count("interrupted_reencryption"), 0u) << after.dump(2);
  v.mount();
  EXPECT_EQ(read_file(v.at("big")), big);
  expect_files(v, 20, 1300);
  EXPECT_EQ(rotation_status(v).value("phase", ""), "done");
}

// A key on the test's kms-local server under `alias`: (key id, ARN).
std::pair<std::string, std::string> make_kms_key(KmsLocal& kms, const std::string& alias) {
  auto [status, body] = kms.call("CreateKey", R"({"Description":"kmsfs rotation"})");
  EXPECT_EQ(status, 200) << body;
  const json k = json::parse(body)["KeyMetadata"];
  EXPECT_EQ(kms.call("CreateAlias", json{{"AliasName", alias}, {"TargetKeyId", k["KeyId"]}}.dump()).first, 200);
  return std::make_pair(k["KeyId"].get<std::string>(), k["Arn"].get<std::string>());
}

TEST(RotationKms, AnotherKeyByReEncryptAloneThroughThrottlingThenTheOldKeyCanGo) {
  KmsLocal::Options ko;
  ko.tls = true;
  KmsLocal kms(KMS_LOCAL_BIN, ko);
  const auto [old_id, old_arn] = make_kms_key(kms, "alias/rot-old");
  const auto [new_id, new_arn] = make_kms_key(kms, "alias/rot-new");
  kms.export_client_env();
  VaultOptions o;
  o.key_args = std::vector<std::string>{"--kms-key", "alias/rot-old"};
  o.mount_args = {"--key-pool", "0"};
  MountedVault v(o);
  const int n = 200;
  make_files(v, n, 900);
  v.remount();  // nothing open, nothing cached: every call the rotation makes shows below
  ASSERT_EQ(kms.admin("DELETE", "/__admin/stats").first, 200);
  ASSERT_EQ(kms.admin("POST", "/__admin/faults", R"({"throttle_rate":0.3,"operations":["ReEncrypt"],"count":20})").first, 200);
  ProcessResult r = kmsfs({"rotate", v.mnt(), "--to", "alias/rot-new", "--wait", "--json", "--kms-rate", "0"}, false);
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  const json j = last_json_line(r.out);
  EXPECT_EQ(j.value("failed", -1), 0);
  EXPECT_EQ(j.value("target", ""), "aws-kms:" + new_arn);
  const json stats = json::parse(kms.admin("GET", "/__admin/stats").second);
  // One ReEncrypt per file and one for the filesystem key; no data key left the KMS.
  EXPECT_EQ(stats["operations"]["ReEncrypt"].value("ok", 0), n + 1) << stats.dump();
  EXPECT_GT(stats["operations"]["ReEncrypt"].value("ThrottlingException", 0), 0) << stats.dump();
  EXPECT_FALSE(stats["operations"].contains("Decrypt")) << stats.dump();
  EXPECT_FALSE(stats["operations"].contains("GenerateDataKey")) << stats.dump();
  ASSERT_EQ(kms.admin("DELETE", "/__admin/faults").first, 200);
  const Census c = census(v.backing(), KeyRef{ProviderId::kAwsKms, new_arn, 0});
  EXPECT_EQ(c.under, c.files);
  EXPECT_EQ(c.files, n);

  // The old key goes; a fresh mount reads every byte.
  ASSERT_EQ(kms.call("DisableKey", json{{"KeyId", old_id}}.dump()).first, 200);
  v.remount();
  expect_files(v, n, 900);
  write_file(v.at("after"), "born under the new key");
  EXPECT_EQ(read_file(v.at("after")), "born under the new key");
}

// Retiring a KMS key: once every file has moved, fsck says nothing needs the old key; a
// file restored from a backup made before the rotation is named, with the key's state,
// when the old key is scheduled for deletion, so the deletion can still be cancelled.
TEST(RotationKms, FsckNamesEveryFileStillUnderAKeyScheduledForDeletion) {
  KmsLocal kms(KMS_LOCAL_BIN, {});
  const auto [old_id, old_arn] = make_kms_key(kms, "alias/retire-old");
  const auto [new_id, new_arn] = make_kms_key(kms, "alias/retire-new");
  kms.export_client_env();
  VaultOptions o;
  o.key_args = std::vector<std::string>{"--kms-key", "alias/retire-old"};
  MountedVault v(o);
  make_files(v, 12, 1700);
  const std::string victim = v.backing_at(rel(3));
  const std::string backup = read_file(victim);  // a backup taken before the rotation
  ProcessResult r = kmsfs({"rotate", v.mnt(), "--to", "alias/retire-new", "--wait", "--kms-rate", "0"}, false);
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  v.unmount();
  ASSERT_EQ(kms.call("ScheduleKeyDeletion", json{{"KeyId", old_id}, {"PendingWindowInDays", 7}}.dump()).first, 200);

  auto fsck = [&] {
    ProcessResult f = kmsfs({"fsck", v.backing(), "--json"}, false);
    return std::make_pair(f.exit_code, json::parse(f.out, nullptr, false));
  };
  auto [clean, nothing_needs_it] = fsck();
  EXPECT_EQ(clean, 0) << nothing_needs_it.dump(2);
  for (const auto& k : nothing_needs_it["keys"]) EXPECT_NE(k["key"], "aws-kms:" + old_arn) << nothing_needs_it.dump(2);

  write_file(victim, backup);
  auto [code, report] = fsck();
  EXPECT_EQ(code, 4) << report.dump(2);
  std::vector<json> unavailable;
  for (const auto& f : report["findings"])
    if (f["kind"] == "key_unavailable") unavailable.push_back(f);
  ASSERT_EQ(unavailable.size(), 1u) << report.dump(2);
  EXPECT_EQ(v.backing() + "/" + unavailable[0]["path"].get<std::string>(), victim);
  EXPECT_EQ(unavailable[0]["key"], "aws-kms:" + old_arn);
  EXPECT_NE(unavailable[0]["message"].get<std::string>().find("pending deletion"), std::string::npos) << unavailable[0];
  bool listed = false;
  for (const auto& k : report["keys"])
    if (k["key"] == "aws-kms:" + old_arn) listed = k["files"] == 1;
  EXPECT_TRUE(listed) << report.dump(2);

  // Cancelled in time (AWS leaves the key disabled): enabled again, the restored file reads.
  ASSERT_EQ(kms.call("CancelKeyDeletion", json{{"KeyId", old_id}}.dump()).first, 200);
  ASSERT_EQ(kms.call("EnableKey", json{{"KeyId", old_id}}.dump()).first, 200);
  v.mount();
  EXPECT_EQ(read_file(v.at(rel(3))), pattern(size_of(3), 1700 + 3));
}

}  // namespace
}  // namespace kmsfs::testing
