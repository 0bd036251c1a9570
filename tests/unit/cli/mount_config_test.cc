// The mount config file, the environment layer and their precedence (cli/mount_config.h):
// what an admin writes in /etc/kmsfs/NAME.conf, KMSFS_* or on the command line, and which
// one the mount ends up with.
#include <gtest/gtest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <map>

#include "cli/exit_codes.h"
#include "cli/mount_config.h"
#include "temp_dir.h"

namespace kmsfs::cli {
namespace {

using Words = std::vector<std::string>;

EnvLookup env_of(std::map<std::string, std::string> vars) {
  return [vars = std::move(vars)](const std::string& name) -> std::optional<std::string> {
    auto it = vars.find(name);
    if (it == vars.end()) return std::nullopt;
    return it->second;
  };
}

bool has(const Words& w, const std::string& word) { return std::find(w.begin(), w.end(), word) != w.end(); }

class MountConfigTest : public ::testing::Test {
 protected:
  void SetUp() override { ::setenv("KMSFS_CONFIG_DIR", dir_.path().c_str(), 1); }
  void TearDown() override { ::unsetenv("KMSFS_CONFIG_DIR"); }
  std::string write(const std::string& name, const std::string& text, mode_t mode = 0600) {
    const std::string p = dir_.path() + "/" + name;
    std::ofstream(p) << text;
    ::chmod(p.c_str(), mode);
    return p;
  }
  testing::TempDir dir_;
};

TEST(MountOptionSpecs, EveryMountFlagIsAKey) {
  std::map<std::string, bool> keys;
  for (const auto& s : mount_option_specs()) keys[s.key] = s.takes_value;
  // Taken from the CLI definition: values and flags as `kmsfs mount --help` has them.
  EXPECT_TRUE(keys.at("key_ttl"));
  EXPECT_TRUE(keys.at("keyring"));
  EXPECT_TRUE(keys.at("passphrase_file"));
  EXPECT_TRUE(keys.at("region"));
  EXPECT_TRUE(keys.at("kms_endpoint"));
  EXPECT_FALSE(keys.at("no_writeback"));
  EXPECT_FALSE(keys.at("foreground"));
  EXPECT_FALSE(keys.contains("help"));
  EXPECT_FALSE(keys.contains("config"));
}

TEST(MountOptions, CommasInsideDoubleQuotesStayInTheValue) {
  EXPECT_EQ(split_mount_options("ro,badname=\"a,b*\",key_ttl=5"), (Words{"ro", "badname=a,b*", "key_ttl=5"}));
  EXPECT_EQ(split_mount_options(",,allow_other,"), (Words{"allow_other"}));
}

TEST(MountOptions, KmsfsKeysBecomeSettingsTheRestStaysGeneric) {
  MountSettings l;
  for (const char* o : {"key_ttl=60", "no-writeback", "keyring=/etc/kmsfs/k", "allow_other", "ro", "badname=*.x"})
    ASSERT_TRUE(add_mount_option(l, o).ok()) << o;
  EXPECT_EQ(l.values.at("key_ttl"), "60");
  EXPECT_EQ(l.values.at("no_writeback"), "true");
  EXPECT_EQ(l.values.at("keyring"), "/etc/kmsfs/k");
  EXPECT_EQ(l.options, (Words{"allow_other", "ro", "badname=*.x"}));
  EXPECT_FALSE(add_mount_option(l, "key_ttl").ok());          // a value is needed
  EXPECT_FALSE(add_mount_option(l, "no_writeback=maybe").ok());  // a flag is true or false
}

TEST(MountConfigFile, KeyValueLinesCommentsQuotesAndFlags) {
  auto c = parse_mount_config(
      "# the vault of app\n"
      "\n"
      "backing = /srv/vault\n"
      "  mountpoint=/mnt/plain  \n"
      "key-ttl = 60\n"
      "no_writeback\n"
      "extpass = \"/usr/local/bin/get pass\"\n"
      "options = allow_other,badname=\"a,b\"\n",
      "t.conf");
  ASSERT_TRUE(c.ok()) << c.status().message();
  EXPECT_EQ(c->values.at("backing"), "/srv/vault");
  EXPECT_EQ(c->values.at("mountpoint"), "/mnt/plain");
  EXPECT_EQ(c->values.at("key_ttl"), "60");
  EXPECT_EQ(c->values.at("no_writeback"), "true");
  EXPECT_EQ(c->values.at("extpass"), "/usr/local/bin/get pass");
  EXPECT_EQ(c->options, (Words{"allow_other", "badname=a,b"}));
}

TEST(MountConfigFile, TheEnvironmentFileFormOfEarlierReleasesIsRead) {
  auto c = parse_mount_config(
      "KMSFS_BACKING=/srv/vault\nKMSFS_MOUNTPOINT=/mnt/plain\nKMSFS_KEYRING=/etc/kmsfs/keyring\n"
      "KMSFS_OPTIONS=-o allow_other --key-ttl 30\n",
      "legacy.conf");
  ASSERT_TRUE(c.ok()) << c.status().message();
  EXPECT_EQ(c->values.at("backing"), "/srv/vault");
  EXPECT_EQ(c->values.at("keyring"), "/etc/kmsfs/keyring");
  EXPECT_EQ(c->values.at("key_ttl"), "30");
  EXPECT_EQ(c->options, (Words{"allow_other"}));
}

TEST(MountConfigFile, ErrorsNameTheFileAndLine) {
  auto unknown = parse_mount_config("backing = /srv/v\nkey_tll = 5\n", "/etc/kmsfs/a.conf");
  ASSERT_FALSE(unknown.ok());
  EXPECT_EQ(unknown.status().code(), Code::kInvalidArgument);
  EXPECT_NE(unknown.status().message().find("/etc/kmsfs/a.conf:2"), std::string::npos) << unknown.status().message();
  EXPECT_NE(unknown.status().message().find("key_tll"), std::string::npos);
  EXPECT_FALSE(parse_mount_config("backing = srv/v\n", "a").ok());  // relative
  EXPECT_FALSE(parse_mount_config("key_ttl\n", "a").ok());          // no value
  EXPECT_FALSE(parse_mount_config("= 5\n", "a").ok());
}

TEST_F(MountConfigTest, ABareNameReadsNameDotConf) {
  write("app.conf", "backing = /srv/app\nmountpoint = /mnt/app\nkey_ttl = 60\noptions = allow_other\n");
  auto r = expand_mount_words({"app"}, env_of({}));
  ASSERT_TRUE(r.error.ok()) << r.error.message();
  EXPECT_EQ(r.words, (Words{"/srv/app", "/mnt/app", "--key-ttl=60", "-o", "allow_other"}));
}

TEST_F(MountConfigTest, FlagsBeatEnvironmentBeatsFileBeatsDefaults) {
  write("app.conf", "backing = /srv/app\nmountpoint = /mnt/app\nkey_ttl = 60\nthreads = 4\nmax_cached_keys = 7\n");
  auto r = expand_mount_words({"app", "--key-ttl", "10"}, env_of({{"KMSFS_KEY_TTL", "20"}, {"KMSFS_THREADS", "8"}}));
  ASSERT_TRUE(r.error.ok()) << r.error.message();
  EXPECT_TRUE(has(r.words, "--key-ttl=10"));        // flag over environment and file
  EXPECT_TRUE(has(r.words, "--threads=8"));         // environment over file
  EXPECT_TRUE(has(r.words, "--max-cached-keys=7"));  // file over default
  EXPECT_FALSE(has(r.words, "--stale-if-error"));   // default: nothing said
  // -o key=value is a flag too, and outranks the environment.
  auto o = expand_mount_words({"app", "-o", "key_ttl=11,ro"}, env_of({{"KMSFS_KEY_TTL", "20"}}));
  ASSERT_TRUE(o.error.ok());
  EXPECT_TRUE(has(o.words, "--key-ttl=11"));
  EXPECT_TRUE(has(o.words, "ro"));
}

TEST_F(MountConfigTest, PositionalPathsOverrideTheFilesAndGenericOptionsAccumulate) {
  const std::string conf = write("x.conf", "backing = /srv/app\nmountpoint = /mnt/app\noptions = ro,allow_other\n");
  auto r = expand_mount_words({"--config", conf, "/srv/other", "/mnt/other", "-o", "rw"}, env_of({}));
  ASSERT_TRUE(r.error.ok()) << r.error.message();
  EXPECT_EQ(r.words, (Words{"/srv/other", "/mnt/other", "-o", "ro", "-o", "allow_other", "-o", "rw"}));
}

TEST_F(MountConfigTest, KmsfsKeyringInTheEnvironmentOutranksTheFilesKeyring) {
  write("k.conf", "backing = /srv/app\nmountpoint = /mnt/app\nkeyring = /etc/kmsfs/file-keyring\n");
  auto with_env = expand_mount_words({"k"}, env_of({{"KMSFS_KEYRING", "/etc/kmsfs/env-keyring"}}));
  ASSERT_TRUE(with_env.error.ok());
  // Not a flag: the keyring locator reads $KMSFS_KEYRING itself.
  EXPECT_EQ(with_env.words, (Words{"/srv/app", "/mnt/app"}));
  auto without = expand_mount_words({"k"}, env_of({}));
  EXPECT_TRUE(has(without.words, "--keyring=/etc/kmsfs/file-keyring"));
}

TEST_F(MountConfigTest, WithoutAConfigTheCommandLineIsKept) {
  auto r = expand_mount_words({"/srv/v", "/mnt/p", "-f", "--key-ttl", "5", "-o", "allow_other,ro", "--bogus"}, env_of({}));
  ASSERT_TRUE(r.error.ok());
  EXPECT_EQ(r.words, (Words{"/srv/v", "/mnt/p", "--foreground", "--key-ttl=5", "-o", "allow_other", "-o", "ro", "--bogus"}));
  // --help is left for the CLI to answer.
  EXPECT_EQ(expand_mount_words({"--help"}, env_of({})).words, (Words{"--help"}));
}

TEST_F(MountConfigTest, AMissingNameOrBackingIsRefused) {
  auto missing = expand_mount_words({"nosuch"}, env_of({}));
  EXPECT_FALSE(missing.error.ok());
  EXPECT_EQ(missing.exit_code, kExitNotFound);
  write("half.conf", "backing = /srv/app\n");
  auto half = expand_mount_words({"half"}, env_of({}));
  EXPECT_EQ(half.exit_code, kExitUsage);
  EXPECT_NE(half.error.message().find("mountpoint"), std::string::npos);
}

TEST_F(MountConfigTest, AFileOthersMayWriteIsRefusedWithItsOwnExitCode) {
  write("open.conf", "backing = /srv/app\nmountpoint = /mnt/app\n", 0620);
  auto r = expand_mount_words({"open"}, env_of({}));
  EXPECT_EQ(r.exit_code, kExitUnsafeConfig);
  EXPECT_NE(r.error.message().find("writable by group or others"), std::string::npos) << r.error.message();
  if (::geteuid() == 0) {
    const std::string p = write("theirs.conf", "backing = /srv/app\nmountpoint = /mnt/app\n", 0600);
    ASSERT_EQ(::chown(p.c_str(), 65534, 65534), 0);
    auto t = expand_mount_words({"theirs"}, env_of({}));
    EXPECT_EQ(t.exit_code, kExitUnsafeConfig);
    EXPECT_NE(t.error.message().find("not owned by root"), std::string::npos) << t.error.message();
  }
}

}  // namespace
}  // namespace kmsfs::cli
