// The rotation's walk: one fixed order, so a checkpoint is one path and a resumed pass
// visits exactly the files after it.
#include <gtest/gtest.h>

#include <fstream>

#include "rotation/tree_walk.h"
#include "vault_fixture.h"

namespace kmsfs {
namespace {

std::vector<std::string> walk(const std::string& root, const std::string& after, bool encrypted = false) {
  std::vector<std::string> out;
  Status s = walk_files(root, WalkOptions{encrypted}, after, [&](const std::string& rel) { return out.push_back(rel), true; },
                        [](const std::string&, const Status&) {});
  EXPECT_TRUE(s.ok()) << s.message();
  return out;
}

TEST(TreeWalk, SortedDepthFirstSkippingVaultFilesAndResumingAfterACursor) {
  testing::TempDir t;
  for (const char* d : {"b", "b/c", "a"}) std::filesystem::create_directory(t.path / d);
  for (const char* f : {"z", "b/c/y", "b/x", "a/w", "kmsfs.conf", "kmsfs.rotation", "kmsfs.lock", "b/kmsfs.conf", "m.name"})
    std::ofstream(t.path / f) << "x";
  std::filesystem::create_symlink("z", t.path / "link");
  const std::vector<std::string> all = {"a/w", "b/c/y", "b/kmsfs.conf", "b/x", "m.name", "z"};
  EXPECT_EQ(walk(t.str(), ""), all);
  for (size_t i = 0; i < all.size(); ++i) {
    std::vector<std::string> rest(all.begin() + static_cast<long>(i) + 1, all.end());
    EXPECT_EQ(walk(t.str(), all[i]), rest) << "after " << all[i];
    for (size_t j = 0; j < all.size(); ++j) EXPECT_EQ(walk_before(all[i], all[j]), i < j);
  }
  // A checkpoint whose file is gone still resumes at the right place.
  std::filesystem::remove(t.path / "b/c/y");
  EXPECT_EQ(walk(t.str(), "b/c/y"), (std::vector<std::string>{"b/kmsfs.conf", "b/x", "m.name", "z"}));
  // Encrypted names never hold a '.': such names are side files and temporaries.
  EXPECT_EQ(walk(t.str(), "", true), (std::vector<std::string>{"a/w", "b/x", "z"}));
}

}  // namespace
}  // namespace kmsfs
