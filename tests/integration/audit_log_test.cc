// The audit log (docs/OPERATIONS.md "The audit log") of a mount on the AWS KMS provider,
// against tools/kms-local: what an auditor reads from it after files were created, read,
// flushed, refused and rotated, in both key modes; that it never holds a plaintext name or
// a key; that it rotates by size; and that it cannot be put inside the vault or the mount.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "core_scan.h"
#include "kms_local.h"
#include "known_keys.h"
#include "mounted_vault.h"

namespace kmsfs::testing {
namespace {

using nlohmann::json;

json parse(const std::string& s) { return json::parse(s, nullptr, false); }

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Every line of an audit log, parsed; a line that is not a JSON object fails the test.
std::vector<json> lines_of(const std::string& path) {
  std::vector<json> out;
  std::istringstream in(slurp(path));
  for (std::string line; std::getline(in, line);) {
    json j = parse(line);
    EXPECT_TRUE(j.is_object()) << path << ": not a JSON line: " << line;
    if (!j.is_object()) continue;
    EXPECT_TRUE(j.contains("time") && j.contains("op") && j.contains("result")) << line;
    out.push_back(std::move(j));
  }
  return out;
}

std::vector<json> with_op(const std::vector<json>& lines, const std::string& op) {
  std::vector<json> out;
  for (const auto& j : lines)
    if (j.value("op", "") == op) out.push_back(j);
  return out;
}

class AuditLog : public ::testing::Test {
 protected:
  AuditLog() : kms_(KMS_LOCAL_BIN, server_options()) {}
  static KmsLocal::Options server_options() {
    KmsLocal::Options o;
    o.tls = true;
    return o;
  }
  void SetUp() override {
    auto [status, body] = kms_.call("CreateKey", R"({"Description":"kmsfs audit"})");
    ASSERT_EQ(status, 200) << body;
    key_id_ = parse(body)["KeyMetadata"]["KeyId"];
    arn_ = parse(body)["KeyMetadata"]["Arn"];
    ASSERT_EQ(kms_.call("CreateAlias", json{{"AliasName", "alias/kmsfs-audit"}, {"TargetKeyId", key_id_}}.dump()).first,
              200);
    kms_.export_client_env();
  }
  VaultOptions options(std::vector<std::string> init_args = {}, std::vector<std::string> mount_args = {}) {
    VaultOptions o;
    o.key_args = std::vector<std::string>{"--kms-key", "alias/kmsfs-audit"};
    o.init_args = std::move(init_args);
    o.mount_args = {"--audit-log", log_};
    for (auto& a : mount_args) o.mount_args.push_back(std::move(a));
    return o;
  }
  void key_call(const std::string& op) {
    auto [status, body] = kms_.call(op, json{{"KeyId", key_id_}}.dump());
    ASSERT_EQ(status, 200) << op << ": " << body;
  }
  // Every plaintext key of the vault (the test unwraps them at the server, as the daemon
  // does), in every spelling a log line could carry.
  PatternSet vault_keys(const std::string& backing) {
    PatternSet set;
    add_vault_keys(set, backing, [this](const KeyRef& ref, ByteSpan wrapped, const EncryptionContext& ctx) {
      json context = json::object();
      for (const auto& [k, val] : ctx.pairs()) context[k] = val;
      auto [status, body] = kms_.call(
          "Decrypt", json{{"KeyId", ref.key_id}, {"CiphertextBlob", base64(wrapped)}, {"EncryptionContext", context}}.dump());
      if (status != 200) throw std::runtime_error("kms-local Decrypt: " + body);
      return unbase64(parse(body)["Plaintext"].get<std::string>());
    }, /*block_subkeys=*/false);
    return set;
  }

  KmsLocal kms_;
  std::string key_id_, arn_;
  TempDir logs_{"kmsfs-audit-logs"};  // outside the vault and the mount
  std::string log_ = logs_ / "audit.jsonl";
};

TEST_F(AuditLog, RecordsEveryKeyOperationPerFileWithTheRequesterAndNoNameOrKey) {
  MountedVault v(options());
  const std::vector<std::string> names = {"payroll-2026.xlsx", "board-minutes.txt", "merger-plan.doc"};
  for (const auto& n : names) write_file(v.at(n), "secret contents of " + n);
  v.remount();
  for (const auto& n : names) EXPECT_EQ(read_file(v.at(n)), "secret contents of " + n);
  EXPECT_EQ(read_file(v.at(names[1])), "secret contents of " + names[1]);  // its key is cached now
  ASSERT_EQ(kmsfs({"flush-keys", v.mnt()}).exit_code, 0);
  EXPECT_EQ(read_file(v.at(names[0])), "secret contents of " + names[0]);
  const json stats = parse(kmsfs({"stats", v.mnt(), "--json"}).out);
  ASSERT_EQ(v.unmount(), 0);

  struct stat st;
  ASSERT_EQ(::stat(log_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  const std::vector<json> lines = lines_of(log_);

  // Creates: one GenerateDataKey per file, under the key's ARN, with the file's context,
  // and the create that used it, by this process.
  std::set<std::string> created;
  for (const auto& c : with_op(lines, "file_create")) {
    EXPECT_EQ(c["result"], "ok") << c;
    EXPECT_EQ(c["key"], "aws-kms:" + arn_) << c;
    EXPECT_EQ(c["context"]["kmsfs:file-id"], c["file_id"]) << c;
    EXPECT_EQ(c.value("uid", -1), static_cast<int>(::getuid())) << c;
    EXPECT_EQ(c.value("pid", -1), static_cast<int>(::getpid())) << c;
    EXPECT_EQ(c["trigger"], "user") << c;
    created.insert(c["file_id"].get<std::string>());
  }
  EXPECT_EQ(created.size(), names.size());
  int generated = 0;
  for (const auto& g : with_op(lines, "generate"))
    if (g.contains("file_id") && created.count(g["file_id"].get<std::string>()) && g["result"] == "ok") ++generated;
  EXPECT_GE(generated, static_cast<int>(names.size()));

  // Reads after the remount: a miss and a Decrypt per file, for the reader; then hits.
  std::map<std::string, int> unwraps, misses, opens;
  for (const auto& u : with_op(lines, "unwrap"))
    if (u.contains("file_id") && u["result"] == "ok") {
      ++unwraps[u["file_id"].get<std::string>()];
      EXPECT_EQ(u.value("pid", -1), static_cast<int>(::getpid())) << u;
    }
  for (const auto& m : with_op(lines, "cache_miss"))
    if (m.contains("file_id")) ++misses[m["file_id"].get<std::string>()];
  for (const auto& o : with_op(lines, "file_open")) {
    EXPECT_EQ(o["result"], "ok") << o;
    ++opens[o["file_id"].get<std::string>()];
  }
  int cache_hits = 0;
  for (const auto& h : with_op(lines, "cache_hit"))
    if (h.contains("file_id") && h["result"] == "ok" && h.value("pid", -1) == static_cast<int>(::getpid())) ++cache_hits;
  EXPECT_GE(cache_hits, 1);
  for (const auto& id : created) {
    EXPECT_GE(unwraps[id], 1) << id;
    EXPECT_GE(misses[id], 1) << id;
    EXPECT_GE(opens[id], 1) << id;
  }
  // The filesystem key at each mount, and flush-keys, with how many keys it dropped.
  int fs_key = 0;
  for (const auto& u : with_op(lines, "unwrap"))
    if (u["context"].value("kmsfs:purpose", "") == "filesystem-key") ++fs_key;
  EXPECT_EQ(fs_key, 2);
  bool flushed = false;
  for (const auto& f : with_op(lines, "flush"))
    if (f.value("detail", "") == "key cache" && f.value("count", 0) >= 1) flushed = true;
  EXPECT_TRUE(flushed);
  EXPECT_EQ(stats["audit_log"]["path"], log_) << stats;
  EXPECT_GE(stats["audit_log"]["records"].get<int>(), 10) << stats;
  EXPECT_EQ(stats["audit_log"]["write_failures"], 0) << stats;

  // No plaintext name, and not one key of the vault in any spelling.
  const std::string text = slurp(log_);
  for (const auto& n : names) EXPECT_EQ(text.find(n), std::string::npos) << n;
  const PatternSet keys = vault_keys(v.backing());
  ASSERT_GT(keys.size(), 10u);
  std::vector<Hit> hits;
  keys.scan(reinterpret_cast<const uint8_t*>(text.data()), text.size(), 0, hits);
  for (const auto& h : hits) ADD_FAILURE() << "the audit log holds " << h.pattern->what << " at offset " << h.address;
}

TEST_F(AuditLog, ARefusedUnwrapIsRecordedAsDenied) {
  MountedVault v(options({}, {"--key-ttl", "1"}));
  write_file(v.at("kept"), "kept\n");
  v.remount();
  key_call("DisableKey");
  EXPECT_EQ(::open(v.at("kept").c_str(), O_RDONLY | O_CLOEXEC), -1);
  EXPECT_EQ(errno, EACCES);
  key_call("EnableKey");
  ASSERT_EQ(v.unmount(), 0);
  const std::vector<json> lines = lines_of(log_);
  int denied_unwraps = 0, denied_opens = 0;
  for (const auto& u : with_op(lines, "unwrap"))
    if (u["result"] == "denied" && u.contains("file_id")) {
      ++denied_unwraps;
      EXPECT_EQ(u["key"], "aws-kms:" + arn_) << u;
      EXPECT_NE(u.value("error", "").find("isabled"), std::string::npos) << u;
      EXPECT_EQ(u.value("uid", -1), static_cast<int>(::getuid())) << u;
    }
  for (const auto& o : with_op(lines, "file_open"))
    if (o["result"] == "denied") ++denied_opens;
  EXPECT_EQ(denied_unwraps, 1);
  EXPECT_GE(denied_opens, 1);
}

// Intermediate-key mode: the KMS (and its trail) sees one intermediate key; the audit log
// still names every file that was created or opened under it.
TEST_F(AuditLog, IntermediateModeStillHasAnEntryPerFile) {
  MountedVault v(options({"--key-mode", "intermediate"}));
  constexpr int kFiles = 20;
  for (int i = 0; i < kFiles; ++i) write_file(v.at("f" + std::to_string(i)), std::to_string(i));
  v.remount();
  for (int i = 0; i < kFiles; ++i) EXPECT_EQ(read_file(v.at("f" + std::to_string(i))), std::to_string(i));
  ASSERT_EQ(v.unmount(), 0);
  const std::vector<json> lines = lines_of(log_);
  std::set<std::string> created, opened, iks;
  for (const auto& c : with_op(lines, "file_create")) {
    created.insert(c["file_id"].get<std::string>());
    iks.insert(c["ik_id"].get<std::string>());
  }
  for (const auto& o : with_op(lines, "file_open")) {
    ASSERT_TRUE(o.contains("ik_id")) << o;
    opened.insert(o["file_id"].get<std::string>());
  }
  EXPECT_EQ(created.size(), static_cast<size_t>(kFiles));
  EXPECT_EQ(opened, created);
  EXPECT_EQ(iks.size(), 1u);
  // The provider calls themselves name the intermediate key, never a file.
  int ik_calls = 0;
  for (const auto& j : lines) {
    if (j["op"] != "generate" && j["op"] != "unwrap") continue;
    EXPECT_FALSE(j.contains("file_id")) << j;
    if (j.contains("ik_id")) ++ik_calls;
  }
  EXPECT_EQ(ik_calls, 2);  // generated at the first create, unwrapped once after the remount
}

TEST_F(AuditLog, RotationRecordsEachFileMovedAndTheConfig) {
  MountedVault v(options());
  constexpr int kFiles = 5;
  for (int i = 0; i < kFiles; ++i) write_file(v.at("f" + std::to_string(i)), std::to_string(i));
  auto [status, body] = kms_.call("CreateKey", R"({"Description":"kmsfs audit rotated"})");
  ASSERT_EQ(status, 200) << body;
  const std::string to_arn = parse(body)["KeyMetadata"]["Arn"];
  ProcessResult r = kmsfs({"rotate", v.mnt(), "--to", to_arn, "--wait", "--rate", "0"}, false);
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  ASSERT_EQ(v.unmount(), 0);
  const std::vector<json> lines = lines_of(log_);
  std::set<std::string> rotated, rewrapped;
  for (const auto& f : with_op(lines, "rotate_file")) {
    EXPECT_EQ(f["result"], "ok") << f;
    EXPECT_EQ(f["key"], "aws-kms:" + arn_) << f;
    EXPECT_EQ(f["to_key"], "aws-kms:" + to_arn) << f;
    EXPECT_EQ(f["trigger"], "rotation") << f;
    rotated.insert(f["file_id"].get<std::string>());
  }
  for (const auto& w : with_op(lines, "rewrap"))
    if (w.contains("file_id") && w["result"] == "ok") rewrapped.insert(w["file_id"].get<std::string>());
  EXPECT_EQ(rotated.size(), static_cast<size_t>(kFiles));
  EXPECT_EQ(rewrapped, rotated);
  const auto config = with_op(lines, "rotate_config");
  ASSERT_EQ(config.size(), 1u);
  EXPECT_EQ(config[0]["to_key"], "aws-kms:" + to_arn) << config[0];
}

TEST_F(AuditLog, RotatesBySizeAndKeepsTheNewestFiles) {
  // As fstab and mount(8) pass them: -o options (the same keys as /etc/kmsfs/NAME.conf).
  MountedVault v(options({}, {"-o", "audit_log_max_size=4K,audit_log_keep=2"}));
  for (int i = 0; i < 40; ++i) write_file(v.at("f" + std::to_string(i)), "x");
  const json stats = parse(kmsfs({"stats", v.mnt(), "--json"}).out);
  ASSERT_EQ(v.unmount(), 0);
  EXPECT_GE(stats["audit_log"]["rotations"].get<int>(), 2) << stats;
  for (const std::string& f : std::vector<std::string>{log_, log_ + ".1", log_ + ".2"}) {
    struct stat st;
    ASSERT_EQ(::stat(f.c_str(), &st), 0) << f;
    EXPECT_LE(st.st_size, 4096) << f;
    EXPECT_EQ(st.st_mode & 07777, 0600u) << f;
    EXPECT_FALSE(lines_of(f).empty()) << f;
  }
  EXPECT_FALSE(std::filesystem::exists(log_ + ".3"));
  // The newest lines are in the live file: the last create is there.
  bool last_create = false;
  for (const auto& c : with_op(lines_of(log_), "file_create")) last_create = true, (void)c;
  EXPECT_TRUE(last_create);
}

TEST_F(AuditLog, APathInsideTheVaultOrTheMountIsRefused) {
  MountedVault v(options());
  ASSERT_EQ(v.unmount(), 0);
  for (const auto& [path, where] : {std::pair{v.backing() + "/audit.jsonl", "inside the backing directory"},
                                    std::pair{v.mnt() + "/sub/../audit.jsonl", "inside the mountpoint"}}) {
    ProcessResult r = kmsfs({"mount", v.backing(), v.mnt(), "--foreground", "--audit-log", path}, false);
    EXPECT_NE(r.exit_code, 0) << path;
    EXPECT_NE(r.err.find(where), std::string::npos) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  }
  EXPECT_FALSE(std::filesystem::exists(v.backing() + "/audit.jsonl"));
}

}  // namespace
}  // namespace kmsfs::testing
