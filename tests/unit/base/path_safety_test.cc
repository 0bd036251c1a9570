// open_beneath: a relative path read from attacker-writable data opens only beneath its
// directory, through no symlink, with openat2 and with the component walk used where the
// kernel has none.
#include "base/path_safety.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

namespace kmsfs {
namespace {

class OpenBeneath : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override {
    root_ = std::filesystem::temp_directory_path() / ("kmsfs-beneath-" + std::to_string(::getpid()));
    std::filesystem::remove_all(root_);
    std::filesystem::create_directories(root_ / "vault/a/b");
    std::filesystem::create_directories(root_ / "elsewhere");
    std::ofstream(root_ / "vault/a/b/f") << "inside";
    std::ofstream(root_ / "elsewhere/f") << "outside";
    std::filesystem::create_directory_symlink(root_ / "elsewhere", root_ / "vault/a/dirlink");
    std::filesystem::create_symlink(root_ / "elsewhere/f", root_ / "vault/a/filelink");
    dir_ = UniqueFd(::open((root_ / "vault").c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
    ASSERT_TRUE(dir_.valid());
  }
  void TearDown() override {
    std::error_code ec;
    std::filesystem::remove_all(root_, ec);
    if (ec) [[maybe_unused]] int rc = std::system(("rm -rf -- '" + root_.string() + "'").c_str());
  }
  Result<UniqueFd> open(const std::string& rel) {
    return GetParam() ? open_beneath_by_walk(dir_.get(), rel, O_RDONLY) : open_beneath(dir_.get(), rel, O_RDONLY);
  }
  std::filesystem::path root_;
  UniqueFd dir_;
};

TEST_P(OpenBeneath, OpensAPathInside) {
  for (const char* rel : {"a/b/f", "./a//b/f", "a/b/../b/f"}) {
    auto fd = open(rel);
    if (std::string(rel).find("..") != std::string::npos) {
      // ".." is refused by the walk outright; openat2 allows it only while it stays beneath.
      if (GetParam()) {
        EXPECT_FALSE(fd.ok()) << rel;
        continue;
      }
    }
    ASSERT_TRUE(fd.ok()) << rel << ": " << fd.status().message();
    char buf[16] = {};
    EXPECT_EQ(::read(fd->get(), buf, sizeof buf), 6);
    EXPECT_STREQ(buf, "inside");
  }
}

TEST_P(OpenBeneath, RefusesEveryWayOut) {
  for (const char* rel : {"../elsewhere/f", "a/../../elsewhere/f", "/etc/passwd", "a/dirlink/f", "a/filelink"}) {
    auto fd = open(rel);
    ASSERT_FALSE(fd.ok()) << rel << " opened";
    EXPECT_EQ(fd.status().code(), Code::kPermissionDenied) << rel << ": " << fd.status().message();
    EXPECT_NE(fd.status().message().find("escapes"), std::string::npos) << fd.status().message();
  }
  auto missing = open("a/b/none");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().sys_errno(), ENOENT);
}

TEST_P(OpenBeneath, OpensAPathLongerThanPathMax) {
  // Made relative to descriptors: no path syscall takes it whole.
  std::string rel;
  {
    UniqueFd d(::openat(dir_.get(), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    for (int i = 0; i < 500; ++i) {
      ASSERT_EQ(::mkdirat(d.get(), "dddddddd", 0700), 0);
      d = UniqueFd(::openat(d.get(), "dddddddd", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
      rel += "dddddddd/";
    }
    UniqueFd f(::openat(d.get(), "f", O_WRONLY | O_CREAT | O_CLOEXEC, 0600));
    ASSERT_EQ(::write(f.get(), "deep", 4), 4);
  }
  rel += "f";
  ASSERT_GT(rel.size(), size_t{PATH_MAX});
  auto fd = open(rel);
  ASSERT_TRUE(fd.ok()) << fd.status().message().substr(0, 200);
  char buf[8] = {};
  EXPECT_EQ(::read(fd->get(), buf, sizeof buf), 4);
  EXPECT_STREQ(buf, "deep");
  EXPECT_EQ(open(rel.substr(0, rel.size() - 1) + "g").status().sys_errno(), ENOENT);
}

INSTANTIATE_TEST_SUITE_P(Openat2AndWalk, OpenBeneath, ::testing::Bool(),
                         [](const auto& p) { return p.param ? "walk" : "openat2"; });

}  // namespace
}  // namespace kmsfs
