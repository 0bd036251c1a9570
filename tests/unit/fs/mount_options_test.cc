// The -o string kmsfs hands libfuse, read back by libfuse's own option parser: what the
// kernel is told must be exactly the options meant.
#define FUSE_USE_VERSION 35
#include "fs/mount_options.h"

#include <fuse_opt.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace kmsfs {
namespace {

int collect(void* data, const char* arg, int key, fuse_args*) {
  if (key == FUSE_OPT_KEY_OPT) static_cast<std::vector<std::string>*>(data)->push_back(arg);
  return 0;
}

std::vector<std::string> as_libfuse_sees(const std::string& opts) {
  std::vector<std::string> argv_s = {"kmsfs", "-o", opts};
  std::vector<char*> argv;
  for (auto& s : argv_s) argv.push_back(s.data());
  fuse_args args = FUSE_ARGS_INIT(static_cast<int>(argv.size()), argv.data());
  const fuse_opt none[] = {FUSE_OPT_END};
  std::vector<std::string> got;
  EXPECT_EQ(fuse_opt_parse(&args, &got, none, collect), 0) << opts;
  fuse_opt_free_args(&args);
  return got;
}

TEST(MountOptions, SplitAtCommasDroppingEmptyOnes) {
  EXPECT_EQ(split_mount_options({"ro,,allow_other", "badname=*.tmp", ""}),
            (std::vector<std::string>{"ro", "allow_other", "badname=*.tmp"}));
}

// A value that holds commas is quoted (fstab, -o), and reaches libfuse escaped, as one option.
TEST(MountOptions, QuotedCommasStayInOneOptionThroughLibfuse) {
  const auto options = split_mount_options(std::vector<std::string>{"badname=\"*.a,*.b\",ro"});
  EXPECT_EQ(options, (std::vector<std::string>{"badname=*.a,*.b", "ro"}));
  EXPECT_EQ(as_libfuse_sees(fuse_option_string("/srv/v", options)),
            (std::vector<std::string>{"fsname=kmsfs:/srv/v", "subtype=kmsfs", "badname=*.a,*.b", "ro"}));
}

TEST(MountOptions, AllowOtherBringsDefaultPermissions) {
  EXPECT_EQ(as_libfuse_sees(fuse_option_string("/srv/v", {"allow_other"})),
            (std::vector<std::string>{"fsname=kmsfs:/srv/v", "subtype=kmsfs", "allow_other", "default_permissions"}));
  EXPECT_EQ(as_libfuse_sees(fuse_option_string("/srv/v", {"default_permissions", "allow_other"})),
            (std::vector<std::string>{"fsname=kmsfs:/srv/v", "subtype=kmsfs", "default_permissions", "allow_other"}));
}

// Found by fuzz/fuzz_mount_options.cc: the backing path went into fsname= unescaped, and
// libfuse splits at commas and un-escapes backslashes, so a backing directory named
// "v,allow_other" mounted with allow_other and without default_permissions (every user
// could read every file of a root mount), and "a\\b" reached the kernel as "ab".
TEST(MountOptions, CommasAndBackslashesInTheBackingPathAndValuesReachLibfuseAsTyped) {
  EXPECT_EQ(as_libfuse_sees(fuse_option_string("/srv/v,allow_other", {})),
            (std::vector<std::string>{"fsname=kmsfs:/srv/v,allow_other", "subtype=kmsfs"}));
  EXPECT_EQ(as_libfuse_sees(fuse_option_string("/srv/a\\b\\054c", {"context=a\\b"})),
            (std::vector<std::string>{"fsname=kmsfs:/srv/a\\b\\054c", "subtype=kmsfs", "context=a\\b"}));
}

}  // namespace
}  // namespace kmsfs
