// walk_dir_tree: one fixed order at any depth, with a bounded number of descriptors, and
// directories moved during the walk either followed or reported, never a wrong entry.
#include "base/dir_walk.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <stdexcept>
#include <string>
#include <vector>

#include "base/unique_fd.h"
#include "temp_dir.h"

namespace kmsfs {
namespace {

size_t open_fds() {
  size_t n = 0;
  if (DIR* d = ::opendir("/proc/self/fd")) {
    while (::readdir(d)) ++n;
    ::closedir(d);
  }
  return n;
}

void touch(int dirfd, const std::string& name) {
  UniqueFd fd(::openat(dirfd, name.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600));
  if (!fd.valid()) throw std::runtime_error("create " + name);
}

// A chain root/d/d/.../d of `levels` directories made relative to descriptors (its path
// may be longer than PATH_MAX); the directory at depth k (the root is 0) also holds a
// file "f" when k is a multiple of f_every and a file "z" when k is a multiple of
// z_every. The files come after the "d" below them in walk order, so the walk has to
// climb back to directories whose descriptors it let go.
struct Chain {
  std::vector<std::string> dirs;                // in walk order
  std::vector<std::vector<std::string>> files;  // by depth
  // The expected walk: every directory, then the files from the deepest level up.
  std::vector<std::string> order() const {
    std::vector<std::string> out = dirs;
    for (size_t k = files.size(); k-- > 0;) out.insert(out.end(), files[k].begin(), files[k].end());
    return out;
  }
};

Chain make_chain(const std::string& root, size_t levels, size_t f_every, size_t z_every) {
  Chain c;
  c.files.resize(levels + 1);
  UniqueFd dir(::open(root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  std::string rel;
  for (size_t k = 0; k <= levels; ++k) {
    const std::string prefix = rel.empty() ? "" : rel + "/";
    if (k % f_every == 0) touch(dir.get(), "f"), c.files[k].push_back(prefix + "f");
    if (k % z_every == 0) touch(dir.get(), "z"), c.files[k].push_back(prefix + "z");
    if (k == levels) break;
    if (::mkdirat(dir.get(), "d", 0700) != 0) throw std::runtime_error("mkdir");
    dir = UniqueFd(::openat(dir.get(), "d", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    rel = prefix + "d";
    c.dirs.push_back(rel);
  }
  return c;
}

struct Walked {
  std::vector<std::string> rels;
  std::vector<std::string> unreadable;
  size_t max_fds = 0;
};

Walked walk(const std::string& root, DirWalkOptions o = {}, const std::function<void(const WalkEntry&)>& also = {}) {
  Walked w;
  Status s = walk_dir_tree(
      root, o,
      [&](const WalkEntry& e) {
        w.rels.push_back(e.rel);
        if (w.rels.size() % 97 == 0) w.max_fds = std::max(w.max_fds, open_fds());
        if (also) also(e);
        return true;
      },
      [&](const std::string& rel, const Status& st) { w.unreadable.push_back(rel + ": " + st.message()); });
  EXPECT_TRUE(s.ok()) << s.message();
  return w;
}

// The soft descriptor limit lowered for one scope, as the CLI tools may run.
class FdLimit {
 public:
  explicit FdLimit(rlim_t soft) {
    ::getrlimit(RLIMIT_NOFILE, &saved_);
    rlimit low = saved_;
    low.rlim_cur = soft;
    ::setrlimit(RLIMIT_NOFILE, &low);
  }
  ~FdLimit() { ::setrlimit(RLIMIT_NOFILE, &saved_); }

 private:
  rlimit saved_{};
};

TEST(DirWalk, ChainDeeperThanPathMaxUnderALowDescriptorLimit) {
  testing::TempDir t;
  const Chain chain = make_chain(t.path(), 2100, 700, 500);
  const std::vector<std::string> expected = chain.order();
  ASSERT_GT(chain.dirs.back().size(), size_t{PATH_MAX});
  const size_t before = open_fds();
  Walked w;
  {
    FdLimit limit(64);
    w = walk(t.path());
  }
  EXPECT_TRUE(w.unreadable.empty()) << w.unreadable.front();
  ASSERT_EQ(w.rels.size(), expected.size());
  EXPECT_TRUE(w.rels == expected);
  EXPECT_LE(w.max_fds, before + DirWalkOptions{}.max_open_dirs + 4);
  EXPECT_EQ(open_fds(), before);  // nothing left open

  // Resumed after a file deep inside: exactly what follows it.
  DirWalkOptions o;
  const auto at = std::find(expected.begin(), expected.end(), chain.files[1500][0]);
  ASSERT_NE(at, expected.end());
  o.after = *at;
  const Walked rest = walk(t.path(), o);
  EXPECT_TRUE(rest.rels == std::vector<std::string>(at + 1, expected.end()));
}

TEST(DirWalk, FewHeldDescriptorsWalkABranchingTreeInTheSameOrder) {
  testing::TempDir t;
  // Three subdirectories and two files per level, five levels.
  std::function<void(int, int)> fill = [&](int dirfd, int depth) {
    touch(dirfd, "a");
    touch(dirfd, "m");
    if (depth == 5) return;
    for (const char* d : {"b", "c", "n"}) {
      ::mkdirat(dirfd, d, 0700);
      UniqueFd sub(::openat(dirfd, d, O_RDONLY | O_DIRECTORY | O_CLOEXEC));
      fill(sub.get(), depth + 1);
    }
  };
  {
    UniqueFd root(::open(t.path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    fill(root.get(), 0);
  }
  DirWalkOptions many;
  many.max_open_dirs = 1000;
  const Walked reference = walk(t.path(), many);
  // Entries below depth d: E(5) = 2, E(d) = 2 + 3 * (1 + E(d + 1)).
  ASSERT_EQ(reference.rels.size(), 1091u);
  for (size_t held : {0, 1, 2}) {
    DirWalkOptions few;
    few.max_open_dirs = held;
    const Walked w = walk(t.path(), few);
    EXPECT_TRUE(w.unreadable.empty());
    EXPECT_TRUE(w.rels == reference.rels) << "with " << held << " held";
  }
}

// Moves and renames while the walk is deep inside: a directory moved with its content is
// followed (its ".." is not its old parent any more, so the walk finds the parent by
// name); a parent that no longer has the name the walk knows is reported, once, and the
// walk goes on with the rest of the tree.
TEST(DirWalk, DirectoriesMovedDuringTheWalkAreFollowedOrReported) {
  testing::TempDir t;
  const Chain chain = make_chain(t.path(), 60, 7, 5);
  const std::vector<std::string> expected = chain.order();
  const std::string d41 = chain.dirs[40], d30 = chain.dirs[29];  // depth 41 and 30
  const std::string deepest = chain.dirs.back();
  DirWalkOptions o;
  o.max_open_dirs = 2;

  // Moved with its content: every entry is still seen.
  Walked moved = walk(t.path(), o, [&](const WalkEntry& e) {
    if (e.rel == deepest) {
      ASSERT_EQ(::rename((t.path() + "/" + d41).c_str(), (t.path() + "/moved").c_str()), 0);
    }
  });
  EXPECT_TRUE(moved.unreadable.empty()) << moved.unreadable.front();
  EXPECT_TRUE(moved.rels == expected);
  ASSERT_EQ(::rename((t.path() + "/moved").c_str(), (t.path() + "/" + d41).c_str()), 0);

  // Moved, and a parent renamed: levels 30..40 are lost (reported once), the walk goes
  // on in level 29.
  Walked lost = walk(t.path(), o, [&](const WalkEntry& e) {
    if (e.rel != deepest) return;
    ASSERT_EQ(::rename((t.path() + "/" + d41).c_str(), (t.path() + "/moved").c_str()), 0);
    ASSERT_EQ(::rename((t.path() + "/" + d30).c_str(), (t.path() + "/" + d30 + "x").c_str()), 0);
  });
  ASSERT_EQ(lost.unreadable.size(), 1u);
  EXPECT_EQ(lost.unreadable[0].substr(0, d30.size() + 2), d30 + ": ") << lost.unreadable[0];
  std::vector<std::string> want = chain.dirs;
  for (size_t k = 61; k-- > 0;)
    if (k >= 41 || k < 30) want.insert(want.end(), chain.files[k].begin(), chain.files[k].end());
  EXPECT_TRUE(lost.rels == want);
}

TEST(DirWalk, RootEntriesCanBeLeftOutAndAnUnopenableRootFails) {
  testing::TempDir t;
  UniqueFd root(::open(t.path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  touch(root.get(), "keep");
  touch(root.get(), "skip");
  ::mkdirat(root.get(), "sub", 0700);
  UniqueFd sub(::openat(root.get(), "sub", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  touch(sub.get(), "skip");
  DirWalkOptions o;
  o.skip_in_root = [](std::string_view n) { return n == "skip"; };
  EXPECT_EQ(walk(t.path(), o).rels, (std::vector<std::string>{"keep", "sub", "sub/skip"}));
  Status s = walk_dir_tree(t.path() + "/missing", o, [](const WalkEntry&) { return true; },
                           [](const std::string&, const Status&) {});
  EXPECT_FALSE(s.ok());
}

}  // namespace
}  // namespace kmsfs
