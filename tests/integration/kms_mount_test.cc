// A kmsfs mount on the AWS KMS provider, against tools/kms-local over TLS: what a user of a
// KMS-backed mount relies on when the KMS is slow, refuses, or goes away. The whole POSIX
// suite also runs on kms-local (KMSFS_TEST_KMS=tls in scripts/test.sh); these are the
// cases that need the server steered.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <functional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "kms_local.h"
#include "mounted_vault.h"

namespace kmsfs::testing {
namespace {

using nlohmann::json;

json parse(const std::string& s) { return json::parse(s, nullptr, false); }

class KmsMount : public ::testing::Test {
 protected:
  KmsMount() : kms_(KMS_LOCAL_BIN, server_options(state_dir_)) {}

  static KmsLocal::Options server_options(const TempDir& dir) {
    KmsLocal::Options o;
    o.tls = true;
    // Keys must survive a server restart (ServerStopGivesEioAndTheMountRecovers).
    o.state_file = dir / "state.json";
    return o;
  }

  void SetUp() override {
    auto [status, body] = kms_.call("CreateKey", R"({"Description":"kmsfs mount"})");
    ASSERT_EQ(status, 200) << body;
    key_id_ = parse(body)["KeyMetadata"]["KeyId"];
    arn_ = parse(body)["KeyMetadata"]["Arn"];
    ASSERT_EQ(kms_.call("CreateAlias", json{{"AliasName", "alias/kmsfs-mount"}, {"TargetKeyId", key_id_}}.dump())
                  .first,
              200);
    kms_.export_client_env();
  }

  VaultOptions vault_options(std::vector<std::string> init_args = {}, std::vector<std::string> mount_args = {}) {
    VaultOptions o;
    o.key_args = std::vector<std::string>{"--kms-key", "alias/kmsfs-mount"};
    o.init_args = std::move(init_args);
    o.mount_args = std::move(mount_args);
    return o;
  }

  void key_call(const std::string& op, json extra = json::object()) {
    extra["KeyId"] = key_id_;
    auto [status, body] = kms_.call(op, extra.dump());
    ASSERT_EQ(status, 200) << op << ": " << body;
  }

  json journal() { return parse(kms_.admin("GET", "/__admin/requests").second); }
  json stats() { return parse(kms_.admin("GET", "/__admin/stats").second)["operations"]; }
  void reset_stats() { kms_.admin("DELETE", "/__admin/stats"); }
  void faults(const std::string& config) {
    auto [status, body] = kms_.admin("POST", "/__admin/faults", config);
    ASSERT_EQ(status, 200) << body;
  }

  // open(2)'s errno, 0 on success.
  static int open_errno(const std::string& path, int flags) {
    int fd = ::open(path.c_str(), flags | O_CLOEXEC, 0644);
    if (fd < 0) return errno;
    ::close(fd);
    return 0;
  }
  // open_errno once it is `want`, polling for up to `within`; the last answer otherwise.
  static int open_errno_within(const std::string& path, int flags, int want, std::chrono::milliseconds within) {
    const auto until = std::chrono::steady_clock::now() + within;
    int e = open_errno(path, flags);
    while (e != want && std::chrono::steady_clock::now() < until) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      e = open_errno(path, flags);
    }
    return e;
  }

  TempDir state_dir_{"kms-mount-state"};  // before kms_, which uses it
  KmsLocal kms_;
  std::string key_id_, arn_;
};

TEST_F(KmsMount, FilesReadBackAfterRemountAndEveryCallCarriesTheContext) {
  MountedVault v(vault_options({"--context", "team=storage"}));
  ASSERT_EQ(::mkdir(v.at("dir").c_str(), 0755), 0);
  const std::string big = pattern(3 * 65536 + 17, 1);
  write_file(v.at("a.txt"), "alpha\n");
  write_file(v.at("dir/big.bin"), big);
  v.remount();
  reset_stats();
  EXPECT_EQ(read_file(v.at("a.txt")), "alpha\n");
  EXPECT_EQ(read_file(v.at("dir/big.bin")), big);
  EXPECT_GE(stats()["Decrypt"]["ok"].get<int>(), 2) << stats();

  // The header names the key by the ARN KMS answered (not the alias), and the context.
  auto inspect = kmsfs({"inspect", "--backing-path", v.backing_at("dir/big.bin"), "--verify"});
  EXPECT_NE(inspect.out.find("key id " + arn_), std::string::npos) << inspect.out;
  EXPECT_EQ(inspect.out.find("alias/"), std::string::npos) << inspect.out;
  EXPECT_NE(inspect.out.find("context: team=storage"), std::string::npos) << inspect.out;
  EXPECT_NE(inspect.out.find("context: kmsfs:file-id="), std::string::npos) << inspect.out;
  EXPECT_NE(inspect.out.find("authenticated: yes"), std::string::npos) << inspect.out;
  EXPECT_EQ(journal().back()["EncryptionContext"]["team"], "storage");  // inspect's Decrypt too

  // Every data-key call the mount made named the key by ARN with the file's context, so
  // key policies with kms:EncryptionContext conditions and CloudTrail see it.
  int checked = 0;
  for (const auto& e : journal()) {
    if (e["operation"] != "Decrypt" && e["operation"] != "GenerateDataKey") continue;
    ++checked;
    EXPECT_EQ(e["KeyId"], arn_) << e;
    ASSERT_TRUE(e.contains("EncryptionContext")) << e;
    EXPECT_EQ(e["EncryptionContext"]["team"], "storage") << e;
    EXPECT_TRUE(e["EncryptionContext"].contains("kmsfs:fs-id")) << e;
    // A file's data key, or the filesystem key (names) that mount and `kmsfs encrypt-path` open.
    EXPECT_TRUE(e["EncryptionContext"].contains("kmsfs:file-id") ||
                e["EncryptionContext"].value("kmsfs:purpose", "") == "filesystem-key")
        << e;
  }
  EXPECT_GE(checked, 2);
}

// With a 1-second key TTL: a key cached before the KMS refused it stops working within
// TTL + 1 s.
TEST_F(KmsMount, DisabledOrPendingDeletionKeyFailsNewOpensWithEacces) {
  MountedVault v(vault_options({}, {"--key-ttl", "1"}));
  write_file(v.at("kept"), "kept\n");
  write_file(v.at("payroll-2026.xlsx"), "other\n");
  v.remount();  // nothing unwrapped yet but the names key
  int held = ::open(v.at("kept").c_str(), O_RDWR | O_CLOEXEC);
  ASSERT_GE(held, 0) << std::strerror(errno);
  char first[8] = {};
  ASSERT_EQ(::pread(held, first, sizeof first, 0), 5);  // now in the kernel's page cache

  key_call("DisableKey");
  reset_stats();
  EXPECT_EQ(open_errno(v.at("payroll-2026.xlsx"), O_RDONLY), EACCES);
  // One refused call per open: not retried, and not asked again for the header's twin slot.
  EXPECT_EQ(stats()["Decrypt"], (json{{"DisabledException", 1}})) << stats();
  EXPECT_EQ(open_errno(v.at("new"), O_WRONLY | O_CREAT | O_EXCL), EACCES);
  EXPECT_EQ(::access(v.at("new").c_str(), F_OK), -1) << "a failed create left a file behind";
  EXPECT_NE(v.log().find("disabled"), std::string::npos) << v.log();
  // The log names the key, never a plaintext file name (names are encrypted).
  EXPECT_EQ(v.log().find("payroll-2026.xlsx"), std::string::npos) << v.log();
  // A file opened before loses its key within TTL + 1 s too, through the kernel's page
  // cache (its pages were read and cached before the key was disabled).
  char buf[8] = {};
  int read_errno = 0;
  for (auto until = std::chrono::steady_clock::now() + std::chrono::seconds(2);
       std::chrono::steady_clock::now() < until; std::this_thread::sleep_for(std::chrono::milliseconds(50))) {
    if (::pread(held, buf, sizeof buf, 0) < 0) {
      read_errno = errno;
      break;
    }
  }
  EXPECT_EQ(read_errno, EACCES) << "an open file still read after its key was disabled";
  ::close(held);

  key_call("EnableKey");
  // A refusal is remembered for a second (no KMS request per access of a revoked file).
  EXPECT_EQ(open_errno_within(v.at("payroll-2026.xlsx"), O_RDONLY, 0, std::chrono::seconds(3)), 0);
  EXPECT_EQ(read_file(v.at("payroll-2026.xlsx")), "other\n");

  key_call("ScheduleKeyDeletion", {{"PendingWindowInDays", 7}});
  EXPECT_EQ(open_errno_within(v.at("kept"), O_RDONLY, EACCES, std::chrono::seconds(2)), EACCES);
  EXPECT_EQ(open_errno(v.at("new"), O_WRONLY | O_CREAT | O_EXCL), EACCES);
  key_call("CancelKeyDeletion");  // leaves the key Disabled, as AWS does
  EXPECT_EQ(open_errno(v.at("kept"), O_RDONLY), EACCES);
  key_call("EnableKey");
  EXPECT_EQ(open_errno_within(v.at("kept"), O_RDONLY, 0, std::chrono::seconds(3)), 0);
  EXPECT_EQ(read_file(v.at("kept")), "kept\n");
  write_file(v.at("new"), "born after recovery\n");
  v.remount();
  EXPECT_EQ(read_file(v.at("new")), "born after recovery\n");
  EXPECT_EQ(v.unmount(), 0);
}

// A mapping outlives its file's right to the key no more than a read does: revocation
// drops the kernel's cached pages, mapped ones included, and the next touch of a page
// faults into a read that is refused, which the kernel turns into SIGBUS (docs/
// THREAT_MODEL.md "Revocation"). Pages of a mapping are never left readable.
TEST_F(KmsMount, AMappingOfARevokedFileFaultsWithSigbus) {
  MountedVault v(vault_options({}, {"--key-ttl", "1"}));
  const std::string data(3 * 4096, 'm');
  write_file(v.at("mapped"), data);
  v.remount();
  int fd = ::open(v.at("mapped").c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0) << std::strerror(errno);
  void* map = ::mmap(nullptr, data.size(), PROT_READ, MAP_SHARED, fd, 0);
  ASSERT_NE(map, MAP_FAILED) << std::strerror(errno);
  const volatile char* bytes = static_cast<const volatile char*>(map);
  ASSERT_EQ(bytes[0], 'm');  // the first page is mapped and cached now
  ASSERT_EQ(bytes[4096], 'm');

  key_call("DisableKey");
  int read_errno = 0;
  char buf[8];
  for (auto until = std::chrono::steady_clock::now() + std::chrono::seconds(3);
       std::chrono::steady_clock::now() < until; std::this_thread::sleep_for(std::chrono::milliseconds(50))) {
    if (::pread(fd, buf, sizeof buf, 0) < 0) {
      read_errno = errno;
      break;
    }
  }
  ASSERT_EQ(read_errno, EACCES) << "the file still read after its key was disabled";
  // The touch happens in a child (it shares the mapping), so the signal ends only it.
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    volatile char c = bytes[0];
    (void)c;
    ::_exit(0);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGBUS)
      << "a mapped page of a revoked file was still readable (status " << status << ")";
  ::munmap(map, data.size());
  ::close(fd);
  key_call("EnableKey");
  EXPECT_EQ(open_errno_within(v.at("mapped"), O_RDONLY, 0, std::chrono::seconds(3)), 0);
  EXPECT_EQ(read_file(v.at("mapped")), data);
  EXPECT_EQ(v.unmount(), 0);
}

// The key cache (--key-ttl): reopening a file within the TTL costs no KMS call, a file
// created by this mount none at all; past the TTL each key costs exactly one more call
// (made in the background shortly before expiry for keys in use, so no open waits).
TEST_F(KmsMount, OpensWithinTheKeyTtlCostOneDecryptAndOneMoreAfterIt) {
  // No key pool: its background GenerateDataKeys would blur the exact counts.
  MountedVault v(vault_options({}, {"--key-ttl", "4", "--key-pool", "0"}));
  write_file(v.at("old"), "old\n");
  v.remount();
  reset_stats();
  for (int i = 0; i < 20; ++i) ASSERT_EQ(read_file(v.at("old")), "old\n");
  write_file(v.at("new"), "new\n");
  for (int i = 0; i < 20; ++i) ASSERT_EQ(read_file(v.at("new")), "new\n");
  json s = stats();
  EXPECT_EQ(s["Decrypt"], (json{{"ok", 1}})) << s;
  EXPECT_EQ(s["GenerateDataKey"], (json{{"ok", 1}})) << s;
  std::this_thread::sleep_for(std::chrono::milliseconds(5000));  // past both TTLs
  ASSERT_EQ(read_file(v.at("old")), "old\n");
  ASSERT_EQ(read_file(v.at("new")), "new\n");
  ASSERT_EQ(read_file(v.at("old")), "old\n");
  EXPECT_EQ(stats()["Decrypt"], (json{{"ok", 3}})) << stats();
}

TEST_F(KmsMount, FiftyConcurrentOpensOfAnUncachedFileCostOneDecrypt) {
  MountedVault v(vault_options());
  write_file(v.at("shared"), "shared\n");
  v.remount();
  reset_stats();
  faults(R"({"latency_ms":200})");  // the opens overlap the one fetch
  std::atomic<int> ok{0};
  std::vector<std::thread> ts;
  for (int i = 0; i < 50; ++i) ts.emplace_back([&] { ok += read_file(v.at("shared")) == "shared\n"; });
  for (auto& t : ts) t.join();
  EXPECT_EQ(ok, 50);
  EXPECT_EQ(stats()["Decrypt"], (json{{"ok", 1}})) << stats();
}

// An open that waits for the KMS (its key not cached, Decrypt slow) holds no lock that
// another operation needs: stat of that very file and of others, and `ls -l` of their
// directory, answer while it waits (issue 19). statx with AT_STATX_FORCE_SYNC makes each
// stat reach the daemon instead of the kernel's attribute cache.
TEST_F(KmsMount, StatAndListingAnswerWhileAnOpenWaitsForTheKms) {
  MountedVault v(vault_options());
  write_file(v.at("slow"), "slow\n");
  write_file(v.at("other"), "other\n");
  v.remount();  // an empty key cache: the next open of `slow` asks the KMS
  faults(R"({"latency_ms":4000,"operations":["Decrypt"]})");
  std::atomic<bool> opened{false};
  std::thread opener([&] {
    EXPECT_EQ(read_file(v.at("slow")), "slow\n");
    opened = true;
  });
  // kms-local counts a request once answered, so give the open a head start into its
  // 4 s Decrypt instead; the check after the stats says whether it was still waiting.
  std::this_thread::sleep_for(std::chrono::seconds(1));
  const auto slowest_of = [&](const std::function<void()>& op) {
    const auto t0 = std::chrono::steady_clock::now();
    op();
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0);
  };
  auto force_stat = [&](const std::string& path) {
    struct statx stx {};
    ASSERT_EQ(::statx(AT_FDCWD, path.c_str(), AT_STATX_FORCE_SYNC, STATX_BASIC_STATS, &stx), 0) << path;
    EXPECT_EQ(stx.stx_size, std::filesystem::path(path).filename() == "slow" ? 5u : 6u);
  };
  std::vector<std::pair<std::string, std::chrono::milliseconds>> took;
  took.emplace_back("stat of the file being opened", slowest_of([&] { force_stat(v.at("slow")); }));
  took.emplace_back("stat of another file", slowest_of([&] { force_stat(v.at("other")); }));
  took.emplace_back("ls -l", slowest_of([&] {
    for (const auto& e : std::filesystem::directory_iterator(v.mnt())) force_stat(e.path());
  }));
  const bool open_still_waiting = !opened;
  opener.join();
  // Before the fix each of these waited for the open (~3 s); 1 s leaves room for a loaded
  // CI machine, and the note reports the times measured.
  EXPECT_TRUE(open_still_waiting) << "the open finished before the stats: the test proved nothing";
  for (const auto& [what, ms] : took) {
    EXPECT_LT(ms.count(), 1000) << what;
    std::printf("%s: %lld ms while the open waited for the KMS\n", what.c_str(), static_cast<long long>(ms.count()));
  }
}

// --stale-if-error: with the server gone, cached keys keep opening files past their TTL for
// that long, then stop (EIO).
TEST_F(KmsMount, StaleIfErrorBridgesAnOutageForItsBoundOnly) {
  MountedVault v(vault_options({}, {"--key-ttl", "1", "--stale-if-error", "3"}));
  write_file(v.at("f"), "cached\n");  // its key is in the cache from the create
  ASSERT_EQ(kms_.stop(), 0);
  const auto t0 = std::chrono::steady_clock::now();
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));  // past the TTL
  EXPECT_EQ(read_file(v.at("f")), "cached\n");
  EXPECT_NE(v.log().find("serving cached keys"), std::string::npos) << v.log();
  std::this_thread::sleep_until(t0 + std::chrono::milliseconds(5500));  // past TTL + stale-if-error
  EXPECT_EQ(open_errno(v.at("f"), O_RDONLY), EIO);
  kms_.restart();
  // A fetch begun during the outage may still be between its retries, and the endpoint's
  // circuit breaker may be open (at most 12.5 s): allow both to end.
  EXPECT_EQ(open_errno_within(v.at("f"), O_RDONLY, 0, std::chrono::seconds(15)), 0);
  EXPECT_EQ(read_file(v.at("f")), "cached\n");
}

// `kmsfs stats` counts exactly what the server counted; flush-keys makes the next access
// ask KMS; `kmsfs status` lists the mount; the Prometheus endpoint parses with the Python
// client's parser and says the same.
TEST_F(KmsMount, StatsFlushKeysStatusAndMetricsAgreeWithTheServer) {
  MountedVault v(vault_options({}, {"--metrics-listen", "127.0.0.1:0", "--key-pool", "0"}));
  reset_stats();
  v.remount();  // from here the server and the new daemon count the same requests
  for (int i = 0; i < 5; ++i) write_file(v.at("f" + std::to_string(i)), "file " + std::to_string(i));
  for (int i = 0; i < 5; ++i) ASSERT_EQ(read_file(v.at("f" + std::to_string(i))), "file " + std::to_string(i));

  auto mount_stats = [&] {
    ProcessResult r = kmsfs({"stats", v.mnt(), "--json"});
    json j = parse(r.out);
    EXPECT_TRUE(j.is_object()) << r.out << r.err;
    return j;
  };
  // The mount's own count of each (operation, result) is the server's count.
  auto expect_same_counts = [&](const json& mine) {
    json server = stats();
    int compared = 0;
    for (const auto& r : mine["kms"]["requests"]) {
      EXPECT_EQ(r["count"], server[r["operation"].get<std::string>()][r["result"].get<std::string>()]) << r << server;
      ++compared;
    }
    EXPECT_GE(compared, 2);  // at least DescribeKey/Decrypt at mount and GenerateDataKey
  };
  json j = mount_stats();
  expect_same_counts(j);
  EXPECT_EQ(j["mountpoint"], v.mnt());
  EXPECT_EQ(j["cache"]["keys"], 5) << j;  // the five data keys (the names key is not cached)
  EXPECT_DOUBLE_EQ(j["kms"]["requests_total"].get<double>() * 0.03 / 10000, j["kms"]["estimated_cost_usd"].get<double>());

  ProcessResult human = kmsfs({"stats", v.mnt()});
  EXPECT_NE(human.out.find("GenerateDataKey"), std::string::npos) << human.out;
  EXPECT_NE(human.out.find("key cache: 5 keys"), std::string::npos) << human.out;
  ProcessResult status = kmsfs({"status"});
  EXPECT_NE(status.out.find(v.mnt() + "  backing " + v.backing()), std::string::npos) << status.out;

  const int decrypts = stats()["Decrypt"]["ok"];
  ProcessResult flush = kmsfs({"flush-keys", v.mnt()});
  EXPECT_NE(flush.out.find("dropped 5 cached key(s)"), std::string::npos) << flush.out;
  EXPECT_EQ(mount_stats()["cache"]["keys"], 0);
  ASSERT_EQ(read_file(v.at("f0")), "file 0");
  EXPECT_EQ(stats()["Decrypt"]["ok"], decrypts + 1);

  // Prometheus text at the port the daemon logged.
  struct stat missing {};
  EXPECT_NE(::stat(v.at("not-there").c_str(), &missing), 0);
  const std::map<std::string, double> m = v.scrape_metrics();
  auto sample = [&m](const std::string& key) { return m.contains(key) ? m.at(key) : -1.0; };
  json server = stats();
  EXPECT_EQ(sample("kmsfs_kms_requests_total{operation=Decrypt,result=ok}"), server["Decrypt"]["ok"].get<double>());
  EXPECT_EQ(sample("kmsfs_kms_requests_total{operation=GenerateDataKey,result=ok}"),
            server["GenerateDataKey"]["ok"].get<double>());
  EXPECT_EQ(sample("kmsfs_key_cache_keys"), 1);
  EXPECT_GE(sample("kmsfs_key_cache_evictions_total"), 5);
  // Latency by operation: one observation per request the server saw.
  EXPECT_EQ(sample("kmsfs_kms_request_duration_seconds_count{operation=Decrypt}"), server["Decrypt"]["ok"].get<double>());
  EXPECT_EQ(sample("kmsfs_kms_request_duration_seconds_count{operation=GenerateDataKey}"),
            server["GenerateDataKey"]["ok"].get<double>());
  EXPECT_EQ(sample("kmsfs_kms_request_duration_seconds_bucket{le=+Inf,operation=Decrypt}"),
            server["Decrypt"]["ok"].get<double>());
  // The FUSE side: this test's opens and creates (its reads may come from the page
  // cache), and the lookup of a name that is not there.
  EXPECT_GE(sample("kmsfs_fuse_requests_total{op=open}"), 1);
  EXPECT_GE(sample("kmsfs_fuse_requests_total{op=create}"), 5);
  EXPECT_EQ(sample("kmsfs_fuse_request_duration_seconds_count{op=create}"), sample("kmsfs_fuse_requests_total{op=create}"));
  EXPECT_GE(sample("kmsfs_fuse_request_errors_total{errno=ENOENT,op=lookup}"), 1);
  int build_info = 0;
  for (const auto& [k, val] : m)
    if (k.starts_with("kmsfs_build_info{commit=") && k.find(",version=") != std::string::npos && val == 1) ++build_info;
  EXPECT_EQ(build_info, 1);
  const double now = std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  EXPECT_GT(sample("kmsfs_start_time_seconds"), now - 600);
  EXPECT_LE(sample("kmsfs_start_time_seconds"), now);
  // The load control, on a KMS that answered everything: breaker closed, quota full.
  int breakers = 0;
  for (const auto& [k, val] : m) {
    if (!k.starts_with("kmsfs_kms_breaker_state{")) continue;
    ++breakers;
    EXPECT_EQ(val, 0) << k;
  }
  EXPECT_EQ(breakers, 1);
  EXPECT_EQ(sample("kmsfs_kms_breaker_opened_total"), 0);
  EXPECT_EQ(sample("kmsfs_kms_breaker_rejected_total"), 0);
  EXPECT_EQ(sample("kmsfs_kms_throttled_total"), 0);
  EXPECT_EQ(sample("kmsfs_kms_retries_refused_total"), 0);
  EXPECT_EQ(sample("kmsfs_kms_retry_quota"), 500);
  EXPECT_EQ(v.unmount(), 0);
  EXPECT_EQ(kmsfs({"stats", v.mnt()}, /*check=*/false).exit_code, 3) << "stats of an unmounted path must fail";
}

TEST_F(KmsMount, ThrottlingErrorsDropsAndLatencyAreRetriedNotFailed) {
  MountedVault v(vault_options({}, {"--key-pool", "0"}));
  for (int i = 0; i < 4; ++i) write_file(v.at("f" + std::to_string(i)), "file " + std::to_string(i));
  v.remount();
  reset_stats();
  // Each configuration spoils the next two data-key calls: the third attempt succeeds.
  const char* spoilers[] = {R"({"throttle_rate":1,"count":2,"operations":["Decrypt","GenerateDataKey"]})",
                            R"({"error_rate":1,"count":2,"operations":["Decrypt","GenerateDataKey"]})",
                            R"({"drop_rate":1,"count":2,"operations":["Decrypt","GenerateDataKey"]})"};
  int i = 0;
  for (const char* f : spoilers) {
    faults(f);
    EXPECT_EQ(read_file(v.at("f" + std::to_string(i))), "file " + std::to_string(i)) << f;
    ++i;
  }
  faults(R"({"throttle_rate":1,"count":2,"operations":["GenerateDataKey"]})");
  write_file(v.at("created"), "created under throttling");
  faults(R"({"latency_ms":300})");
  EXPECT_EQ(read_file(v.at("f3")), "file 3");
  kms_.admin("DELETE", "/__admin/faults");

  json s = stats();
  EXPECT_EQ(s["Decrypt"]["ThrottlingException"], 2) << s;
  EXPECT_EQ(s["Decrypt"]["KMSInternalException"], 2) << s;
  EXPECT_EQ(s["Decrypt"]["ConnectionDropped"], 2) << s;
  EXPECT_EQ(s["GenerateDataKey"]["ThrottlingException"], 2) << s;
  EXPECT_EQ(s["Decrypt"]["ok"], 4) << s;
  EXPECT_EQ(s["GenerateDataKey"]["ok"], 1) << s;
  v.remount();
  EXPECT_EQ(read_file(v.at("created")), "created under throttling");
}

// Intermediate-key mode: 10,000 creates cost one GenerateDataKey (an intermediate key
// wraps 10,000 files by default) and reading them all after a remount one Decrypt. The
// calls name the intermediate key in their context, never a file.
TEST_F(KmsMount, IntermediateModeTenThousandFilesCostAHandfulOfCalls) {
  MountedVault v(vault_options({"--key-mode", "intermediate"}));
  v.remount();
  reset_stats();
  constexpr int kFiles = 10000;
  for (int i = 0; i < kFiles; ++i) write_file(v.at("f" + std::to_string(i)), std::to_string(i));
  json s = stats();
  EXPECT_GE(s["GenerateDataKey"]["ok"].get<int>(), 1) << s;
  EXPECT_LE(s["GenerateDataKey"]["ok"].get<int>(), 3) << s;
  EXPECT_FALSE(s.contains("Decrypt")) << s;  // the new intermediate key went into the cache
  int intermediates = 0;
  for (const auto& e : journal()) {
    if (e["operation"] != "GenerateDataKey") continue;
    const json& ctx = e["EncryptionContext"];
    if (ctx.value("kmsfs:purpose", "") == "filesystem-key") continue;  // init's
    ++intermediates;
    EXPECT_EQ(ctx["kmsfs:purpose"], "intermediate-key") << e;
    EXPECT_EQ(ctx["kmsfs:ik-id"].get<std::string>().size(), 32u) << e;
    EXPECT_FALSE(ctx.contains("kmsfs:file-id")) << e;
  }
  EXPECT_EQ(intermediates, s["GenerateDataKey"]["ok"].get<int>());
  json ms = parse(kmsfs({"stats", v.mnt(), "--json"}).out);
  EXPECT_EQ(ms["key_mode"], "intermediate") << ms;
  EXPECT_EQ(ms["intermediate_keys"]["files"], kFiles) << ms;

  v.remount();
  reset_stats();
  for (int i = 0; i < kFiles; ++i) ASSERT_EQ(read_file(v.at("f" + std::to_string(i))), std::to_string(i)) << i;
  s = stats();
  EXPECT_GE(s["Decrypt"]["ok"].get<int>(), 1) << s;
  EXPECT_LE(s["Decrypt"]["ok"].get<int>(), 3) << s;
  EXPECT_FALSE(s.contains("GenerateDataKey")) << s;

  // A file copied out of the vault decrypts on its own with the KMS key alone.
  std::string backing_file;
  for (const auto& e : std::filesystem::directory_iterator(v.backing()))
    if (!e.path().filename().string().starts_with("kmsfs.")) backing_file = e.path();
  ProcessResult cat = kmsfs({"cat", "--backing-path", backing_file});
  EXPECT_EQ(cat.exit_code, 0) << cat.err;
  EXPECT_FALSE(cat.out.empty());
}

// Per-file mode: once a create has shown demand, data keys are generated ahead and the
// next creates take them (each file still gets its own GenerateDataKey, with its file id
// in the context); flush-keys drops the pool.
TEST_F(KmsMount, PerFileCreatesTakePreGeneratedKeysAndFlushKeysDropsThem) {
  MountedVault v(vault_options());
  faults(R"({"latency_ms":20})");
  write_file(v.at("first"), "first");  // finds the pool empty and starts the fill
  auto pool = [&] { return parse(kmsfs({"stats", v.mnt(), "--json"}).out)["key_pool"]; };
  for (int i = 0; i < 200 && pool()["size"] < 16; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(25));
  ASSERT_GE(pool()["size"], 16) << pool();
  for (int i = 0; i < 16; ++i) write_file(v.at("f" + std::to_string(i)), std::to_string(i));
  json p = pool();
  EXPECT_EQ(p["taken"], 16) << p;
  EXPECT_EQ(p["misses"], 1) << p;
  kms_.admin("DELETE", "/__admin/faults");
  // Each file's key was generated for that file: the contexts name 17 distinct files.
  std::set<std::string> ids;
  for (const auto& e : journal())
    if (e["operation"] == "GenerateDataKey" && e["EncryptionContext"].contains("kmsfs:file-id"))
      ids.insert(e["EncryptionContext"]["kmsfs:file-id"].get<std::string>());
  EXPECT_GE(ids.size(), 17u);
  for (int i = 0; i < 200 && pool()["size"] < 16; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(25));
  ProcessResult flush = kmsfs({"flush-keys", v.mnt()});
  ASSERT_EQ(flush.exit_code, 0) << flush.err;
  p = pool();
  EXPECT_EQ(p["size"], 0) << p;
  EXPECT_GE(p["discarded"].get<int>(), 16) << p;
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_EQ(pool()["size"], 0) << "refilled before any create asked";
  v.remount();
  for (int i = 0; i < 16; ++i) EXPECT_EQ(read_file(v.at("f" + std::to_string(i))), std::to_string(i));
}

TEST_F(KmsMount, ServerStopGivesEioAndTheMountRecoversWithNothingLost) {
  MountedVault v(vault_options());
  write_file(v.at("held"), "held\n");
  write_file(v.at("cold"), "cold\n");
  v.remount();
  int held = ::open(v.at("held").c_str(), O_RDWR | O_CLOEXEC);
  ASSERT_GE(held, 0) << std::strerror(errno);

  ASSERT_EQ(kms_.stop(), 0);
  // A file whose key is held keeps working, writes included.
  ASSERT_EQ(::pwrite(held, "HELD", 4, 0), 4);
  ASSERT_EQ(::fsync(held), 0);
  // One whose key must come from KMS fails with EIO, after the client's retries; so does a
  // create (it needs a new data key). The mount itself stays up and answers.
  EXPECT_EQ(open_errno(v.at("cold"), O_RDONLY), EIO);
  EXPECT_EQ(open_errno(v.at("born"), O_WRONLY | O_CREAT | O_EXCL), EIO);
  struct stat st {};
  EXPECT_EQ(::stat(v.at("cold").c_str(), &st), 0);
  EXPECT_EQ(st.st_size, 5);
  EXPECT_TRUE(v.mounted());
  EXPECT_NE(v.log().find("KMS"), std::string::npos) << v.log();

  kms_.restart();  // same port and state file
  // The failures opened the endpoint's circuit breaker: calls fail fast until its period
  // (at most 10 s, +25 % jitter) ends and the next one probes.
  EXPECT_EQ(open_errno_within(v.at("cold"), O_RDONLY, 0, std::chrono::seconds(15)), 0);
  EXPECT_EQ(read_file(v.at("cold")), "cold\n");
  EXPECT_EQ(open_errno(v.at("born"), O_WRONLY | O_CREAT | O_EXCL), 0) << "a failed create left a file behind";
  write_file(v.at("born"), "born\n");
  ::close(held);
  v.remount();
  EXPECT_EQ(read_file(v.at("held")), "HELD\n");
  EXPECT_EQ(read_file(v.at("cold")), "cold\n");
  EXPECT_EQ(read_file(v.at("born")), "born\n");
  EXPECT_EQ(v.unmount(), 0);
}

// Issue 17 (the soak's EIO): a file already open holds its key; when its lease runs out
// while the KMS is failing (5xx, throttling, dropped connections, each past the client's
// retries) the renewal's failure is not a refusal, so the file keeps reading and writing,
// fsync included. Only a refusal cuts it off (DisabledOrPendingDeletionKeyFailsNewOpens...).
TEST_F(KmsMount, AnOpenFileKeepsWritingWhenItsKeyRenewalMeetsAFailingKms) {
  MountedVault v(vault_options({}, {"--key-ttl", "1", "--key-pool", "0"}));
  const std::vector<std::string> kinds = {R"({"error_rate":1})", R"({"throttle_rate":1})", R"({"drop_rate":1})"};
  for (size_t i = 0; i < kinds.size(); ++i) write_file(v.at("held" + std::to_string(i)), std::string(20000, 'a'));
  write_file(v.at("cold"), "cold\n");
  v.remount();
  auto evictions = [&] {
    json j = parse(kmsfs({"stats", v.mnt(), "--json"}).out);
    return j["cache"]["evictions"].is_number() ? j["cache"]["evictions"].get<int>() : -1;
  };
  std::vector<std::string> models;
  for (size_t i = 0; i < kinds.size(); ++i) {
    SCOPED_TRACE(kinds[i]);
    const std::string name = "held" + std::to_string(i);
    // The KMS healthy again (its circuit breaker may be open from the round before).
    kms_.admin("DELETE", "/__admin/faults");
    ASSERT_EQ(open_errno_within(v.at(name), O_RDWR, 0, std::chrono::seconds(20)), 0);
    int held = ::open(v.at(name).c_str(), O_RDWR | O_CLOEXEC);
    ASSERT_GE(held, 0) << std::strerror(errno);
    const int before = evictions();
    ASSERT_GE(before, 0);
    faults(kinds[i]);
    // Wait until the cache has dropped the file's key at its TTL (its background refresh
    // failed), so the next write must renew the file's right to it through the KMS.
    for (auto until = std::chrono::steady_clock::now() + std::chrono::seconds(15);
         evictions() == before && std::chrono::steady_clock::now() < until;)
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    ASSERT_GT(evictions(), before) << "the key never left the cache";
    std::string model(20000, 'a');
    const std::string data(5000, static_cast<char>('b' + i));
    model.replace(3000, data.size(), data);
    EXPECT_EQ(::pwrite(held, data.data(), data.size(), 3000), static_cast<ssize_t>(data.size())) << std::strerror(errno);
    EXPECT_EQ(::fsync(held), 0) << std::strerror(errno);
    std::string got(model.size(), '\0');
    EXPECT_EQ(::pread(held, got.data(), got.size(), 0), static_cast<ssize_t>(model.size())) << std::strerror(errno);
    EXPECT_EQ(got, model);
    // A file whose key is not in hand still needs the KMS.
    EXPECT_EQ(open_errno(v.at("cold"), O_RDONLY), EIO);
    EXPECT_EQ(::close(held), 0) << std::strerror(errno);
    models.push_back(model);
  }
  kms_.admin("DELETE", "/__admin/faults");
  EXPECT_NE(v.log().find("keeps its key"), std::string::npos) << v.log();
  v.remount();
  for (size_t i = 0; i < kinds.size(); ++i) {
    const std::string name = "held" + std::to_string(i);
    EXPECT_EQ(open_errno_within(v.at(name), O_RDONLY, 0, std::chrono::seconds(15)), 0);
    EXPECT_EQ(read_file(v.at(name)), models[i]) << name;
  }
  EXPECT_EQ(read_file(v.at("cold")), "cold\n");
  EXPECT_EQ(v.unmount(), 0);
}

// Issue 17: the mount's own count of its GenerateDataKey requests (every attempt, also
// those that never reached the server).
int mount_requests(const MountedVault& v, const std::string& op) {
  json j = parse(kmsfs({"stats", v.mnt(), "--json"}).out);
  int n = 0;
  for (const auto& r : j["kms"]["requests"])
    if (r["operation"] == op) n += r["count"].get<int>();
  return n;
}

// Creates that succeed or fail: errno of each.
std::vector<int> create_files(const MountedVault& v, const std::string& prefix, int n) {
  std::vector<int> errs;
  for (int i = 0; i < n; ++i) {
    const std::string path = v.at(prefix + std::to_string(i));
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    errs.push_back(fd < 0 ? errno : 0);
    if (fd >= 0) {
      EXPECT_EQ(::write(fd, "x", 1), 1);
      ::close(fd);
    }
  }
  return errs;
}

// Whatever the KMS does, a create costs at most AWS_MAX_ATTEMPTS (3) GenerateDataKey
// requests, the key pool's fills included: the pool fills only after a create's own
// success and stops at its first failure, and the circuit breaker stops the rest.
TEST_F(KmsMount, ACreateCostsAtMostMaxAttemptsRequestsWhateverTheKmsDoes) {
  constexpr int kCreates = 40;
  struct Case {
    std::string name, faults;
    bool disable = false, down = false;
  };
  const std::vector<Case> cases = {{"throttle 10%", R"({"throttle_rate":0.1})"},
                                   {"throttle 100%", R"({"throttle_rate":1})"},
                                   {"key disabled", "", true},
                                   {"server down", "", false, true}};
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    MountedVault v(vault_options());
    write_file(v.at("warm"), "warm");  // the key resolved, the pool filling
    for (int i = 0; i < 200 && parse(kmsfs({"stats", v.mnt(), "--json"}).out)["key_pool"]["size"] < 16; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(25));
    if (!c.faults.empty()) faults(c.faults);
    if (c.disable) key_call("DisableKey");
    if (c.down) {
      ASSERT_EQ(kms_.stop(), 0);
    }
    const int before = mount_requests(v, "GenerateDataKey");
    const std::vector<int> errs = create_files(v, "f", kCreates);
    std::this_thread::sleep_for(std::chrono::milliseconds(500));  // fills the creates set off
    const int requests = mount_requests(v, "GenerateDataKey") - before;
    const int failed = static_cast<int>(std::count_if(errs.begin(), errs.end(), [](int e) { return e != 0; }));
    EXPECT_LE(requests, 3 * kCreates) << requests << " requests for " << kCreates << " creates, " << failed << " failed";
    if (c.name == "throttle 10%") {
      EXPECT_LE(failed, 2);
    } else {
      EXPECT_GE(failed, kCreates - 16) << "the pool's keys made before the fault may serve some";
    }
    if (c.disable) {
      // The first refusal (a fill's or a create's) drops the pool; from then on each create
      // costs its one refused request, plus the fills that were already out (at most 16).
      EXPECT_LE(requests, failed + 16) << requests;
      key_call("EnableKey");
    }
    if (c.down) kms_.restart();
    kms_.admin("DELETE", "/__admin/faults");
  }
}

// flush-keys empties the pool and no longer doubles its target: the next create refills
// it to the same size.
TEST_F(KmsMount, FlushKeysDoesNotGrowTheKeyPool) {
  MountedVault v(vault_options());
  auto pool = [&] { return parse(kmsfs({"stats", v.mnt(), "--json"}).out)["key_pool"]; };
  auto wait_full = [&] {
    for (int i = 0; i < 200; ++i) {
      json p = pool();
      if (p["size"] == p["target"]) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(25));
    }
  };
  write_file(v.at("first"), "first");
  wait_full();
  const int target = pool()["target"];
  EXPECT_EQ(target, 16);
  for (int round = 0; round < 5; ++round) {
    ASSERT_EQ(kmsfs({"flush-keys", v.mnt()}).exit_code, 0);
    const int before = mount_requests(v, "GenerateDataKey");
    write_file(v.at("r" + std::to_string(round)), "round");
    wait_full();
    const int requests = mount_requests(v, "GenerateDataKey") - before;
    EXPECT_EQ(pool()["target"], target) << "round " << round;
    EXPECT_LE(requests, 1 + target) << "round " << round;
  }
}

// With the KMS gone, the circuit breaker lets about one connection attempt through per
// period (1 s doubling to 10 s) however hard the mount is used, and the mount recovers
// after the KMS does.
TEST_F(KmsMount, AnUnreachableKmsGetsAboutOneAttemptPerBreakerPeriod) {
  MountedVault v(vault_options());
  write_file(v.at("warm"), "warm");
  for (int i = 0; i < 200 && parse(kmsfs({"stats", v.mnt(), "--json"}).out)["key_pool"]["size"] < 16; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(25));
  auto connection_errors = [&] {
    json j = parse(kmsfs({"stats", v.mnt(), "--json"}).out);
    int n = 0;
    for (const auto& r : j["kms"]["requests"])
      if (r["result"] == "ConnectionError") n += r["count"].get<int>();
    return n;
  };
  ASSERT_EQ(kms_.stop(), 0);
  // The pool's keys go first; then every create needs the KMS.
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(16);
  int creates = 0, failed = 0;
  while (std::chrono::steady_clock::now() < until) {
    const std::string path = v.at("c" + std::to_string(creates++));
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) ++failed;
    else ::close(fd);
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  const int attempts = connection_errors();
  // 5 failures open it; then one probe per period: 1 + 2 + 4 + 8 s (±25 %) fit in 16 s.
  EXPECT_GE(attempts, 6) << creates << " creates, " << failed << " failed";
  EXPECT_LE(attempts, 12) << creates << " creates, " << failed << " failed";
  EXPECT_GT(failed, 100);
  json k = parse(kmsfs({"stats", v.mnt(), "--json"}).out)["kms"];
  EXPECT_GE(k["breaker_opened"].get<int>(), 2) << k;
  EXPECT_GT(k["breaker_rejected"].get<int>(), 100) << k;
  EXPECT_NE(k["breakers"].dump().find("open"), std::string::npos) << k;

  kms_.restart();
  EXPECT_EQ(open_errno_within(v.at("after"), O_WRONLY | O_CREAT | O_EXCL, 0, std::chrono::seconds(15)), 0);
  EXPECT_EQ(parse(kmsfs({"stats", v.mnt(), "--json"}).out)["kms"]["breakers"].dump().find("open"), std::string::npos);
}

// A rotation's file whose ReEncrypt is throttled is deferred and tried again later while
// the walk moves on to other files; the run still ends with every file moved.
TEST_F(KmsMount, RotationDefersAThrottledFileAndMovesOn) {
  MountedVault v(vault_options());
  constexpr int kFiles = 80;
  for (int i = 0; i < kFiles; ++i) write_file(v.at("f" + std::to_string(i)), std::to_string(i));
  auto [status, body] = kms_.call("CreateKey", R"({"Description":"kmsfs rotated"})");
  ASSERT_EQ(status, 200) << body;
  ASSERT_EQ(kms_.call("CreateAlias", json{{"AliasName", "alias/kmsfs-rotated"},
                                          {"TargetKeyId", parse(body)["KeyMetadata"]["KeyId"]}}.dump()).first,
            200);
  faults(R"({"throttle_rate":0.15,"operations":["ReEncrypt"]})");
  reset_stats();  // and the journal
  ProcessResult r = kmsfs({"rotate", v.mnt(), "--to", "alias/kmsfs-rotated", "--wait", "--json", "--rate", "0",
                           "--kms-rate", "0"},
                          false);
  kms_.admin("DELETE", "/__admin/faults");
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  // --wait --json: JSON lines while it runs, the final status last.
  std::string last = r.out;
  while (!last.empty() && last.back() == '\n') last.pop_back();
  const json j = parse(last.substr(last.rfind('\n') == std::string::npos ? 0 : last.rfind('\n') + 1));
  EXPECT_EQ(j.value("phase", ""), "done") << j;
  EXPECT_EQ(j.value("failed", -1), 0) << j;
  EXPECT_GE(j.value("rotated", 0), kFiles) << j;

  // The server's journal, in order: each throttled file's next ReEncrypt is not the very
  // next request (others moved on meanwhile), and it did succeed later.
  std::vector<std::pair<std::string, std::string>> calls;  // (file id, result)
  for (const auto& e : journal()) {
    if (e["operation"] != "ReEncrypt" || !e.contains("SourceEncryptionContext")) continue;
    const json& ctx = e["SourceEncryptionContext"];
    if (!ctx.contains("kmsfs:file-id")) continue;
    calls.emplace_back(ctx["kmsfs:file-id"].get<std::string>(), e["result"].get<std::string>());
  }
  int throttled = 0, moved_on = 0;
  for (size_t i = 0; i < calls.size(); ++i) {
    if (calls[i].second != "ThrottlingException") continue;
    ++throttled;
    if (i + 1 < calls.size() && calls[i + 1].first != calls[i].first) ++moved_on;
    bool later_ok = false;
    for (size_t k = i + 1; k < calls.size(); ++k)
      if (calls[k].first == calls[i].first && calls[k].second == "ok") later_ok = true;
    EXPECT_TRUE(later_ok) << "file " << calls[i].first << " never re-wrapped";
  }
  EXPECT_GE(throttled, 3);
  // (A file throttled again when it is the last one left is retried next, by itself.)
  EXPECT_GE(moved_on * 2, throttled) << "throttled files were retried at once instead of deferred";
  v.remount();
  for (int i = 0; i < kFiles; ++i) EXPECT_EQ(read_file(v.at("f" + std::to_string(i))), std::to_string(i));
}

}  // namespace
}  // namespace kmsfs::testing
