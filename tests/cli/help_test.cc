// --version, --help and `kmsfs help COMMAND`.
#include "cli_fixture.h"

namespace kmsfs::testing {
namespace {

class HelpTest : public CliTest {};

TEST_F(HelpTest, Version) {
  auto r = kmsfs({"--version"});
  ASSERT_TRUE(Succeeded(r));
  EXPECT_EQ(r.out.rfind("kmsfs 0.1.0\n", 0), 0u) << r.out;
  EXPECT_TRUE(contains(r.out, "file header version 1")) << r.out;
}

TEST_F(HelpTest, HelpInitAndInitHelpAgree) {
  auto a = kmsfs({"help", "init"});
  auto b = kmsfs({"init", "--help"});
  ASSERT_TRUE(Succeeded(a));
  ASSERT_TRUE(Succeeded(b));
  for (const char* opt : {"--keyring", "--key", "--cipher", "--block-size", "--context", "--passphrase-file", "--extpass"}) {
    EXPECT_TRUE(contains(a.out, opt)) << opt << "\n" << a.out;
    EXPECT_TRUE(contains(b.out, opt)) << opt << "\n" << b.out;
  }
  EXPECT_TRUE(contains(a.out, "kmsfs init")) << a.out;
  EXPECT_EQ(a.out, b.out);
}

TEST_F(HelpTest, NestedHelp) {
  auto r = kmsfs({"help", "keyring", "create"});
  ASSERT_TRUE(Succeeded(r));
  for (const char* opt : {"--no-passphrase", "--kdf-profile", "--key", "--passphrase-file"})
    EXPECT_TRUE(contains(r.out, opt)) << opt << "\n" << r.out;
  auto top = kmsfs({"help"});
  ASSERT_TRUE(Succeeded(top));
  for (const char* cmd : {"keyring", "init", "inspect", "cat", "encrypt-file"})
    EXPECT_TRUE(contains(top.out, cmd)) << cmd << "\n" << top.out;
}

TEST_F(HelpTest, EveryCommandHasHelp) {
  const std::vector<std::vector<std::string>> commands = {
      {"keyring"}, {"keyring", "create"}, {"keyring", "add"}, {"keyring", "rotate"},
      {"keyring", "disable"}, {"keyring", "enable"}, {"keyring", "list"}, {"init"},
      {"inspect"}, {"cat"}, {"encrypt-file"}, {"rotate"}, {"help"}};
  for (auto args : commands) {
    args.push_back("--help");
    auto r = kmsfs(args);
    EXPECT_TRUE(Succeeded(r)) << args[0];
    EXPECT_TRUE(contains(r.out, "Usage: kmsfs " + args[0])) << r.out;
  }
}

}  // namespace
}  // namespace kmsfs::testing
