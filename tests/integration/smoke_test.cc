// The few mount tests CI also runs under ASan+UBSan: the daemon comes up, files round-trip
// through a remount, nothing plaintext reaches the backing directory, it unmounts clean.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>

#include "mounted_vault.h"

namespace kmsfs::testing {
namespace {

TEST(MountSmoke, WriteRemountReadBack) {
  MountedVault v;
  const std::string small = "hello, kmsfs";
  const std::string big = pattern(3 * 1024 * 1024 + 123, 7);
  write_file(v.at("small.txt"), small);
  write_file(v.at("big.bin"), big);
  ASSERT_EQ(::mkdir(v.at("dir").c_str(), 0750), 0);
  write_file(v.at("dir/inner"), "inner");
  EXPECT_EQ(read_file(v.at("small.txt")), small);
  EXPECT_EQ(read_file(v.at("big.bin")), big);
  EXPECT_EQ(v.unmount(), 0);
  v.mount();
  EXPECT_EQ(read_file(v.at("small.txt")), small);
  EXPECT_EQ(read_file(v.at("big.bin")), big);
  EXPECT_EQ(read_file(v.at("dir/inner")), "inner");
  struct stat st {};
  ASSERT_EQ(::stat(v.at("big.bin").c_str(), &st), 0);
  EXPECT_EQ(static_cast<size_t>(st.st_size), big.size());
}

TEST(MountSmoke, BackingHoldsNoPlaintext) {
  MountedVault v;
  const std::string marker = "PLAINTEXT-MARKER-5f2c9a";
  std::string data;
  for (int i = 0; i < 1000; ++i) data += marker;
  write_file(v.at("secret.txt"), data);
  v.unmount();
  for (const auto& e : std::filesystem::recursive_directory_iterator(v.backing())) {
    if (!e.is_regular_file()) continue;
    EXPECT_EQ(read_file(e.path()).find("MARKER-5f2c9a"), std::string::npos) << e.path();
  }
  auto cat = kmsfs({"cat", "--backing-path", v.backing_at("secret.txt"), "--keyring", v.keyring()});
  EXPECT_EQ(cat.out, data);
}

TEST(MountSmoke, ConfigIsHiddenAndReserved) {
  MountedVault v;
  const std::string conf = v.backing() + "/kmsfs.conf";
  const std::string before = read_file(conf);
  struct stat st;
  EXPECT_EQ(::stat(v.at("kmsfs.conf").c_str(), &st), -1);
  EXPECT_EQ(errno, ENOENT);
  // The mount's lock sits beside the config and is just as invisible.
  EXPECT_TRUE(std::filesystem::exists(v.backing() + "/kmsfs.lock"));
  EXPECT_EQ(::stat(v.at("kmsfs.lock").c_str(), &st), -1);
  for (const auto& e : std::filesystem::directory_iterator(v.mnt())) {
    EXPECT_NE(e.path().filename(), "kmsfs.conf");
    EXPECT_NE(e.path().filename(), "kmsfs.lock");
  }
  int fd = ::open(v.at("kmsfs.conf").c_str(), O_CREAT | O_WRONLY, 0644);
  if (v.backing_at("x") == v.backing() + "/x") {
    // Plaintext names: the name is the config's, so it is reserved.
    EXPECT_EQ(fd, -1);
    EXPECT_EQ(errno, EPERM);
  } else {
    // Encrypted names: an ordinary name whose backing entry is not the config.
    ASSERT_GE(fd, 0) << strerror(errno);
    EXPECT_EQ(::write(fd, "mine", 4), 4);
    ::close(fd);
    EXPECT_EQ(read_file(v.at("kmsfs.conf")), "mine");
  }
  EXPECT_EQ(read_file(conf), before);
  v.remount();  // the real config still authenticates
}

}  // namespace
}  // namespace kmsfs::testing
