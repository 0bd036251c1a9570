// kmsfs fsck beside a real mount: a read-only check runs and warns, --repair is refused
// with the holder's name; and on a tree the mount wrote, hashed long names are walked,
// rotated and named like every other file.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "mounted_vault.h"

namespace kmsfs::testing {
namespace {

using nlohmann::json;

std::vector<json> findings(const json& report, const std::string& kind) {
  std::vector<json> out;
  for (const auto& f : report["findings"])
    if (f["kind"] == kind) out.push_back(f);
  return out;
}

json fsck_json(const MountedVault& v, int want, std::vector<std::string> extra = {}) {
  std::vector<std::string> args{"fsck", v.backing(), "--json", "--keyring", v.keyring()};
  args.insert(args.end(), extra.begin(), extra.end());
  ProcessResult r = kmsfs(args, false);
  EXPECT_EQ(r.exit_code, want) << r.err << r.out;
  json j = json::parse(r.out, nullptr, false);
  EXPECT_FALSE(j.is_discarded()) << r.out;
  return j;
}

TEST(FsckMounted, ReadOnlyCheckWarnsAndRepairIsRefused) {
  MountedVault v;
  std::filesystem::create_directories(v.at("d"));
  for (int i = 0; i < 20; ++i) write_file(v.at("d/f" + std::to_string(i)), pattern(1000 + 997 * i, i));

  ProcessResult check = kmsfs({"fsck", v.backing(), "--json", "--keyring", v.keyring()}, false);
  EXPECT_EQ(check.exit_code, 0) << check.err << check.out;
  EXPECT_EQ(std::count(check.err.begin(), check.err.end(), '\n'), 1) << check.err;
  EXPECT_NE(check.err.find("kmsfs: fsck: warning: vault " + v.backing() + " is in use by a kmsfs mount at " + v.mnt()),
            std::string::npos)
      << check.err;
  const json j = json::parse(check.out, nullptr, false);
  EXPECT_EQ(j.value("outcome", ""), "clean") << check.out;
  EXPECT_NE(j["in_use_by"].get<std::string>().find(v.mnt()), std::string::npos) << j["in_use_by"];
  EXPECT_EQ(j["summary"]["kmsfs_files"], 20);

  ProcessResult repair = kmsfs({"fsck", v.backing(), "--repair", "--keyring", v.keyring()}, false);
  EXPECT_EQ(repair.exit_code, 8) << repair.err;
  EXPECT_NE(repair.err.find("in use by a kmsfs mount at " + v.mnt()), std::string::npos) << repair.err;
  EXPECT_EQ(repair.out, "");
  EXPECT_TRUE(v.mounted());
  EXPECT_EQ(read_file(v.at("d/f3")), pattern(1000 + 997 * 3, 3));

  ASSERT_EQ(v.unmount(), 0);
  const json after = fsck_json(v, 0, {"--repair"});
  EXPECT_EQ(after["outcome"], "clean");
  EXPECT_TRUE(after["in_use_by"].is_null());
}

TEST(FsckMounted, LongNamesAreWalkedRotatedAndNamed) {
  MountedVault v;
  if (std::getenv("KMSFS_TEST_KMS")) GTEST_SKIP() << "keyring rotation";
  const std::string dir(150, 'D'), name(200, 'n');
  std::filesystem::create_directories(v.at(dir));
  const std::string data = pattern(9000, 1);
  write_file(v.at(dir + "/" + name), data);
  write_file(v.at(dir + "/short"), "short");
  const std::string backing = v.backing_at(dir + "/" + name);
  const std::string rel = backing.substr(v.backing().size() + 1);
  ASSERT_EQ(v.unmount(), 0);
  const bool hashed = rel.find("kmsfs.ln.") != std::string::npos;

  kmsfs({"keyring", "rotate", v.keyring(), "main"});
  EXPECT_EQ(findings(fsck_json(v, 0), "not_rotated").size(), 3u);  // config and both files
  ProcessResult rot = kmsfs({"rotate", "--offline", v.backing(), "--to", "main", "--keyring", v.keyring()}, false);
  ASSERT_EQ(rot.exit_code, 0) << rot.out << rot.err;
  const json j = fsck_json(v, 0);
  EXPECT_EQ(findings(j, "not_rotated").size(), 0u) << j.dump(2);
  EXPECT_EQ(j["summary"]["kmsfs_files"], 2);

  // A finding names the file by its plaintext path; --repair moves its side file along.
  {
    std::fstream f(backing, std::ios::binary | std::ios::in | std::ios::out);
    f.seekg(40);
    const char c = static_cast<char>(f.get() ^ 0x10);
    f.seekp(40);
    f.put(c);
  }
  const json bad = fsck_json(v, 4);
  const auto damaged = findings(bad, "damaged_header");
  ASSERT_EQ(damaged.size(), 1u) << bad.dump(2);
  EXPECT_EQ(damaged[0]["path"], rel);
  EXPECT_EQ(damaged[0]["plain_path"], dir + "/" + name);
  const json fixed = fsck_json(v, 1, {"--repair"});
  const std::string to = findings(fixed, "damaged_header")[0]["quarantined_to"];
  EXPECT_EQ(to, "kmsfs.quarantine/" + rel);
  EXPECT_TRUE(std::filesystem::exists(v.backing() + "/" + to));
  if (hashed) {
    EXPECT_TRUE(std::filesystem::exists(v.backing() + "/" + to + ".name"));
    EXPECT_FALSE(std::filesystem::exists(backing + ".name"));
  }
  v.mount();
  EXPECT_FALSE(std::filesystem::exists(v.at(dir + "/" + name)));
  EXPECT_EQ(read_file(v.at(dir + "/short")), "short");
  for (const auto& e : std::filesystem::directory_iterator(v.mnt()))
    EXPECT_EQ(e.path().filename().string().find("quarantine"), std::string::npos) << e.path();
  EXPECT_EQ(v.unmount(), 0);
}

}  // namespace
}  // namespace kmsfs::testing
