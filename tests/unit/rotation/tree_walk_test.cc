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
  Status s = walk_files(root, WalkOptions{encrypted}, after, [&](const WalkEntry& e) { return out.push_back(e.rel), true; },
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

TEST(TreeWalk, HashedLongNamesAreFilesOfTheTreeTheirSideFilesAreNot) {
  testing::TempDir t;
  std::filesystem::create_directory(t.path / "d");
  for (const char* f : {"d/kmsfs.ln.AbC", "d/kmsfs.ln.AbC.name", "d/kmsfs.tmp.0123", "d/x", "kmsfs.ln.Zz", "kmsfs.ln.Zz.name"})
    std::ofstream(t.path / f) << "x";
  EXPECT_EQ(walk(t.str(), "", true), (std::vector<std::string>{"d/kmsfs.ln.AbC", "d/x", "kmsfs.ln.Zz"}));
  EXPECT_EQ(walk(t.str(), "d/kmsfs.ln.AbC", true), (std::vector<std::string>{"d/x", "kmsfs.ln.Zz"}));
}

TEST(TreeWalk, EveryEntryDirectoriesBeforeTheirContent) {
  testing::TempDir t;
  for (const char* d : {"b", "b/c"}) std::filesystem::create_directory(t.path / d);
  for (const char* f : {"b/c/y", "a.txt", "kmsfs.conf", "kmsfs.conf.tmp.1.2"}) std::ofstream(t.path / f) << "x";
  std::filesystem::create_symlink("a.txt", t.path / "link");
  std::vector<std::string> seen;
  Status s = walk_entries(
      t.str(), "",
      [&](const WalkEntry& e) {
        const char* type = e.type == EntryType::kDirectory ? "d:" : e.type == EntryType::kFile ? "f:" : "o:";
        seen.push_back(type + e.rel);
        return true;
      },
      [](const std::string&, const Status&) {});
  ASSERT_TRUE(s.ok()) << s.message();
  EXPECT_EQ(seen, (std::vector<std::string>{"f:a.txt", "d:b", "d:b/c", "f:b/c/y", "o:link"}));
}

}  // namespace
}  // namespace kmsfs
