// A kmsfs mount on the AWS KMS provider, against tools/kms-local over TLS: what a user of a
// KMS-backed mount relies on when the KMS is slow, refuses, or goes away. The whole POSIX
// suite also runs on kms-local (KMSFS_TEST_KMS=tls in scripts/test.sh); these are the
// cases that need the server steered.
#include <fcntl.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <cerrno>
#include <cstring>
#include <string>
#include <thread>

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
  auto inspect = kmsfs({"inspect", v.backing_at("dir/big.bin"), "--verify"});
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
  // A file opened before keeps its data key until it is closed (the key cache with a TTL
  // that also revokes open files is the next layer).
  char buf[8] = {};
  EXPECT_EQ(::pread(held, buf, sizeof buf, 0), 5);
  ::close(held);

  key_call("EnableKey");
  EXPECT_EQ(read_file(v.at("payroll-2026.xlsx")), "other\n");

  key_call("ScheduleKeyDeletion", {{"PendingWindowInDays", 7}});
  EXPECT_EQ(open_errno_within(v.at("kept"), O_RDONLY, EACCES, std::chrono::seconds(2)), EACCES);
  EXPECT_EQ(open_errno(v.at("new"), O_WRONLY | O_CREAT | O_EXCL), EACCES);
  key_call("CancelKeyDeletion");  // leaves the key Disabled, as AWS does
  EXPECT_EQ(open_errno(v.at("kept"), O_RDONLY), EACCES);
  key_call("EnableKey");
  EXPECT_EQ(read_file(v.at("kept")), "kept\n");
  write_file(v.at("new"), "born after recovery\n");
  v.remount();
  EXPECT_EQ(read_file(v.at("new")), "born after recovery\n");
  EXPECT_EQ(v.unmount(), 0);
}

// The key cache (--key-ttl): reopening a file within the TTL costs no KMS call, a file
// created by this mount none at all; past the TTL each key costs exactly one more call
// (made in the background shortly before expiry for keys in use, so no open waits).
TEST_F(KmsMount, OpensWithinTheKeyTtlCostOneDecryptAndOneMoreAfterIt) {
  MountedVault v(vault_options({}, {"--key-ttl", "4"}));
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

TEST_F(KmsMount, ThrottlingErrorsDropsAndLatencyAreRetriedNotFailed) {
  MountedVault v(vault_options());
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

}  // namespace
}  // namespace kmsfs::testing
