// The mount(8) helper's contract (cli/mount_helper.h): the argument forms mount(8) and
// mount.fuse3 use, the options fstab keeps for itself, and mount(8)'s exit codes.
#include <gtest/gtest.h>

#include <sys/stat.h>

#include <cstdlib>

#include <algorithm>
#include <fstream>

#include "cli/exit_codes.h"
#include "cli/mount_helper.h"
#include "temp_dir.h"

namespace kmsfs::cli {
namespace {

using Words = std::vector<std::string>;

std::optional<std::string> no_env(const std::string&) { return std::nullopt; }

TEST(MountHelperArgs, WhatMountRunsIsUnderstood) {
  auto c = parse_helper_args({"/srv/v", "/mnt/p", "-s", "-f", "-n", "-v", "-o", "ro,key_ttl=5", "-t", "kmsfs"});
  ASSERT_TRUE(c.ok()) << c.status().message();
  EXPECT_EQ(c->source, "/srv/v");
  EXPECT_EQ(c->target, "/mnt/p");
  EXPECT_TRUE(c->sloppy && c->fake && c->no_mtab && c->verbose);
  EXPECT_EQ(c->options, "ro,key_ttl=5");
  EXPECT_EQ(c->type, "kmsfs");
  // Grouped flags, an attached -o, mount(8)'s -N, and mount.fuse3's kmsfs#SOURCE.
  auto g = parse_helper_args({"kmsfs#/srv/v", "/mnt/p", "-nv", "-oallow_other", "-N", "/proc/1/ns/mnt"});
  ASSERT_TRUE(g.ok());
  EXPECT_EQ(g->source, "/srv/v");
  EXPECT_TRUE(g->no_mtab && g->verbose && !g->fake);
  EXPECT_EQ(g->options, "allow_other");
}

TEST(MountHelperArgs, BadUsageIsRefused) {
  EXPECT_FALSE(parse_helper_args({"/srv/v"}).ok());
  EXPECT_FALSE(parse_helper_args({"/srv/v", "/mnt/p", "-x"}).ok());
  EXPECT_FALSE(parse_helper_args({"/srv/v", "/mnt/p", "-o"}).ok());
  EXPECT_FALSE(parse_helper_args({"/srv/v", "/mnt/p", "/extra"}).ok());
}

TEST(MountHelperOptions, FstabOnlyOptionsAreDroppedOursBecomeFlagsTheRestGoesToFuse) {
  HelperCall c;
  c.source = "/srv/v";
  c.target = "/mnt/p";
  c.options = "rw,defaults,nofail,_netdev,auto,noauto,user,users,comment=systemd.automount,"
              "x-systemd.requires-mounts-for=/srv,X-mount.mkdir,nosuid,nodev,noatime,allow_other,"
              "key_ttl=60,no_writeback,passphrase_file=/etc/kmsfs/p,region=eu-west-1,kms_endpoint=https://k:1,"
              "badname=\"a,b\"";
  auto r = helper_mount_words(c, no_env);
  ASSERT_TRUE(r.error.ok()) << r.error.message();
  EXPECT_EQ(r.words, (Words{"/srv/v", "/mnt/p", "--key-ttl=60", "--kms-endpoint=https://k:1", "--no-writeback",
                            "--passphrase-file=/etc/kmsfs/p", "--region=eu-west-1", "-o", "nosuid", "-o", "nodev",
                            "-o", "noatime", "-o", "allow_other", "-o", "badname=\"a,b\""}));
  EXPECT_TRUE(is_fstab_only_option("comment=x"));
  EXPECT_FALSE(is_fstab_only_option("ro"));
}

TEST(MountHelperOptions, ASourceWithoutASlashIsAConfigName) {
  testing::TempDir dir;
  ::setenv("KMSFS_CONFIG_DIR", dir.path().c_str(), 1);
  std::ofstream(dir / "app.conf") << "backing = /srv/app\nmountpoint = /mnt/app\nkey_ttl = 60\n";
  ::chmod((dir / "app.conf").c_str(), 0600);
  HelperCall c;
  c.source = "app";
  c.target = "/mnt/elsewhere";  // fstab's mountpoint wins over the file's
  c.options = "key_ttl=5";
  auto r = helper_mount_words(c, no_env);
  ::unsetenv("KMSFS_CONFIG_DIR");
  ASSERT_TRUE(r.error.ok()) << r.error.message();
  EXPECT_EQ(r.words, (Words{"/srv/app", "/mnt/elsewhere", "--key-ttl=5"}));
}

TEST(MountHelperExit, KmsfsExitCodesBecomeMountsOwn) {
  EXPECT_EQ(mount8_exit_code(kExitOk), 0);
  EXPECT_EQ(mount8_exit_code(kExitUsage), 1);
  for (int e : {kExitNotFound, kExitPermission, kExitCorrupt, kExitIo, kExitExists, kExitUnavailable, kExitInternal,
                kExitUnsafeConfig})
    EXPECT_EQ(mount8_exit_code(e), 32) << e;
}

TEST(MountHelperDispatch, TheHelperFormsAreRecognised) {
  auto classify = [](Words w) {
    std::vector<char*> v;
    for (auto& s : w) v.push_back(s.data());
    return classify_mount_call(static_cast<int>(v.size()), v.data());
  };
  EXPECT_EQ(classify({"/sbin/mount.kmsfs", "/srv/v", "/mnt/p", "-o", "rw"}), MountCall::kHelper);
  EXPECT_EQ(classify({"kmsfs", "/srv/v", "/mnt/p", "-o", "rw"}), MountCall::kHelper);  // mount.fuse3
  EXPECT_EQ(classify({"kmsfs", "kmsfs#x", "/mnt/p"}), MountCall::kHelper);
  EXPECT_EQ(classify({"kmsfs", "mount", "/srv/v", "/mnt/p"}), MountCall::kMount);
  EXPECT_EQ(classify({"kmsfs", "cat", "/srv/v/f"}), MountCall::kNone);
  EXPECT_EQ(classify({"kmsfs", "ls", "/srv/v", "-l"}), MountCall::kNone);
  EXPECT_EQ(classify({"kmsfs", "--version"}), MountCall::kNone);
}

}  // namespace
}  // namespace kmsfs::cli
