// keyring add/rotate/disable/enable/list, and what key states do to files.
#include <map>

#include "cli_fixture.h"

namespace kmsfs::testing {
namespace {

using nlohmann::json;

class KeyringTest : public CliTest {
 protected:
  json list_json(const std::string& keyring) {
    auto r = kmsfs({"keyring", "list", keyring, "--json"});
    EXPECT_TRUE(Succeeded(r));
    auto j = json::parse(r.out, nullptr, false);
    EXPECT_FALSE(j.is_discarded()) << r.out;
    return j;
  }
  // {name: [state of v1, state of v2, ...]}
  std::map<std::string, std::vector<std::string>> states(const std::string& keyring) {
    std::map<std::string, std::vector<std::string>> out;
    const json listing = list_json(keyring);
    for (const auto& k : listing["keys"]) {
      auto& v = out[k["name"].get<std::string>()];
      for (const auto& ver : k["versions"]) {
        EXPECT_EQ(ver["version"].get<size_t>(), v.size() + 1);
        EXPECT_TRUE(ver["created"].is_string());
        v.push_back(ver["state"].get<std::string>());
      }
    }
    return out;
  }
};

using States = std::map<std::string, std::vector<std::string>>;

TEST_F(KeyringTest, AddRotateDisableEnableList) {
  make_plain_keyring("keyring");
  auto add = kmsfs({"keyring", "add", "keyring", "backup"});
  ASSERT_TRUE(Succeeded(add));
  EXPECT_EQ(add.out, "");
  EXPECT_TRUE(FailedWith(kmsfs({"keyring", "add", "keyring", "backup"}), kExists, {"keyring add: ", "'backup' already exists"}));
  EXPECT_TRUE(FailedWith(kmsfs({"keyring", "add", "keyring", "bad/name"}), kUsage, {"key name"}));

  auto rot = kmsfs({"keyring", "rotate", "keyring", "main"});
  ASSERT_TRUE(Succeeded(rot));
  EXPECT_EQ(rot.out, "2\n");
  rot = kmsfs({"keyring", "rotate", "keyring", "main"});
  ASSERT_TRUE(Succeeded(rot));
  EXPECT_EQ(rot.out, "3\n");
  EXPECT_EQ(states("keyring"), (States{{"main", {"enabled", "enabled", "enabled"}}, {"backup", {"enabled"}}}));

  auto disable = kmsfs({"keyring", "disable", "keyring", "main:2"});
  ASSERT_TRUE(Succeeded(disable));
  EXPECT_EQ(disable.out, "");
  EXPECT_EQ(states("keyring"), (States{{"main", {"enabled", "disabled", "enabled"}}, {"backup", {"enabled"}}}));
  ASSERT_TRUE(Succeeded(kmsfs({"keyring", "enable", "keyring", "main:2"})));
  EXPECT_EQ(states("keyring"), (States{{"main", {"enabled", "enabled", "enabled"}}, {"backup", {"enabled"}}}));

  EXPECT_TRUE(FailedWith(kmsfs({"keyring", "rotate", "keyring", "nope"}), kNotFound, {"keyring rotate: ", "'nope' not found"}));
  EXPECT_TRUE(FailedWith(kmsfs({"keyring", "disable", "keyring", "main"}), kUsage, {"NAME:VERSION"}));
  EXPECT_TRUE(FailedWith(kmsfs({"keyring", "disable", "keyring", "main:9"}), kNotFound, {"no version 9"}));
  EXPECT_TRUE(FailedWith(kmsfs({"keyring", "enable", "keyring", "main:x"}), kUsage, {"enable: "}));

  json j = list_json("keyring");
  EXPECT_EQ(j["path"], "keyring");
  EXPECT_EQ(j["sealed"], false);
  EXPECT_EQ(j["verified"], true);
  EXPECT_EQ(j["id"].get<std::string>().size(), 32u);
  EXPECT_FALSE(j.contains("kdf"));

  auto text = kmsfs({"keyring", "list", "keyring"});
  ASSERT_TRUE(Succeeded(text));
  EXPECT_TRUE(contains(text.out, "sealed: no\n")) << text.out;
  EXPECT_TRUE(contains(text.out, "backup")) << text.out;
  EXPECT_FALSE(contains(text.out, "unverified")) << text.out;
}

TEST_F(KeyringTest, CreateWithSeveralKeysAndRefuseOverwrite) {
  auto r = kmsfs({"keyring", "create", "kr", "--no-passphrase", "--key", "a", "--key", "b"});
  ASSERT_TRUE(Succeeded(r));
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(states("kr"), (States{{"a", {"enabled"}}, {"b", {"enabled"}}}));
  const std::string before = read_file(p("kr"));
  EXPECT_TRUE(FailedWith(kmsfs({"keyring", "create", "kr", "--no-passphrase"}), kExists, {"keyring create: ", "already exists"}));
  EXPECT_EQ(read_file(p("kr")), before);
  EXPECT_TRUE(FailedWith(kmsfs({"keyring", "create", "kr2", "--no-passphrase", "--key", "x y"}), kUsage, {"key name"}));
  EXPECT_TRUE(FailedWith(kmsfs({"keyring", "list", "missing"}), kNotFound, {"keyring list: ", "missing"}));
}

TEST_F(KeyringTest, SealedListingWithoutPassphraseIsUnverified) {
  write_file(p("pw"), "keyring passphrase\n");
  ASSERT_TRUE(Succeeded(kmsfs({"keyring", "create", "kr", "--passphrase-file", "pw", "--kdf-profile", "interactive", "--key", "main"})));
  json j = list_json("kr");
  EXPECT_EQ(j["sealed"], true);
  EXPECT_EQ(j["verified"], false);
  EXPECT_EQ(j["kdf"]["alg"], "argon2id13");
  EXPECT_EQ(j["keys"][0]["name"], "main");
  auto r = kmsfs({"keyring", "list", "kr", "--json", "--passphrase-file", "pw"});
  ASSERT_TRUE(Succeeded(r));
  EXPECT_EQ(json::parse(r.out)["verified"], true);
}

TEST_F(KeyringTest, KeyVersionsAndFiles) {
  make_plain_keyring("keyring");
  make_vault("vault", "keyring");
  encrypt("vault", "v1.txt", "under version one");
  EXPECT_EQ(inspect_json("vault/v1.txt")["slots"][1]["key_ref"], "keyring:main@1");

  ASSERT_TRUE(Succeeded(kmsfs({"keyring", "rotate", "keyring", "main"})));
  encrypt("vault", "v2.txt", "under version two");
  json j = inspect_json("vault/v2.txt");
  const json& slot = j["slots"][j["active_slot"].get<int>()];
  EXPECT_EQ(slot["key_id"], "main");
  EXPECT_EQ(slot["version"], 2);

  // Files under v1 still open after the rotation.
  auto cat = kmsfs({"cat", "--backing-path", "vault/v1.txt"});
  ASSERT_TRUE(Succeeded(cat));
  EXPECT_EQ(cat.out, "under version one");

  // Disabling v1 locks out exactly the files it wraps.
  ASSERT_TRUE(Succeeded(kmsfs({"keyring", "disable", "keyring", "main:1"})));
  auto denied = kmsfs({"cat", "--backing-path", "vault/v1.txt"});
  EXPECT_TRUE(FailedWith(denied, kPermission, {"cat: ", "vault/v1.txt", "key main version 1 is disabled"}));
  EXPECT_EQ(denied.out, "");
  EXPECT_TRUE(FailedWith(kmsfs({"inspect", "--backing-path", "vault/v1.txt", "--verify"}), kPermission, {"disabled"}));
  cat = kmsfs({"cat", "--backing-path", "vault/v2.txt"});
  ASSERT_TRUE(Succeeded(cat));
  EXPECT_EQ(cat.out, "under version two");

  ASSERT_TRUE(Succeeded(kmsfs({"keyring", "enable", "keyring", "main:1"})));
  cat = kmsfs({"cat", "--backing-path", "vault/v1.txt"});
  ASSERT_TRUE(Succeeded(cat));
  EXPECT_EQ(cat.out, "under version one");
}

TEST_F(KeyringTest, CorruptedKeyringIsCorrupt) {
  write_file(p("garbage"), "this is not a keyring at all, just some text\n");
  EXPECT_TRUE(FailedWith(kmsfs({"keyring", "list", "garbage"}), kCorrupt, {"keyring list: ", "garbage"}));

  make_plain_keyring("keyring");
  make_vault("vault", "keyring");
  encrypt("vault", "f", "data");
  // Damage the key material of the unsealed keyring: its checksum catches it.
  const std::string kr = read_file(p("keyring"));
  flip_bit(p("keyring"), kr.size() - 40);
  EXPECT_TRUE(FailedWith(kmsfs({"cat", "--backing-path", "vault/f"}), kCorrupt, {"cat: ", "keyring"}));
  EXPECT_TRUE(FailedWith(kmsfs({"keyring", "rotate", "keyring", "main"}), kCorrupt, {"keyring rotate: ", "keyring"}));

  // Cut short (a copy interrupted): one line naming the keyring and saying so, for every
  // command that reads it.
  write_file(p("cut"), kr.substr(0, 40));
  for (const std::vector<std::string>& cmd :
       {std::vector<std::string>{"keyring", "list", "cut"}, {"keyring", "rotate", "cut", "main"}, {"cat", "vault/f", "--keyring", "cut"}})
    EXPECT_TRUE(FailedWith(kmsfs(cmd), kCorrupt,
                           {"keyring cut: truncated or damaged (", "restore it from a backup"}))
        << cmd[0] << " " << cmd[1];
}

}  // namespace
}  // namespace kmsfs::testing
