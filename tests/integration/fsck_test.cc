// kmsfs fsck beside a real mount: a read-only check runs and warns, --repair is refused
// with the holder's name; and on a tree the mount wrote, hashed long names are walked,
// rotated and named like every other file, and so is a file as deep as the mount allows
// (its backing path far longer than PATH_MAX), by tools held to 1,024 descriptors.
#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "mounted_vault.h"
#include "posix_util.h"

namespace kmsfs::testing {
namespace {

using nlohmann::json;

std::vector<json> findings(const json& report, const std::string& kind) {
  std::vector<json> out;
  for (const auto& f : report["findings"])
    if (f["kind"] == kind) out.push_back(f);
  return out;
}

json fsck_json(const MountedVault& v, int want, std::vector<std::string> extra = {}) {
  std::vector<std::string> args{"fsck", v.backing(), "--json", "--keyring", v.keyring()};
  args.insert(args.end(), extra.begin(), extra.end());
  ProcessResult r = kmsfs(args, false);
  EXPECT_EQ(r.exit_code, want) << r.err << r.out;
  json j = json::parse(r.out, nullptr, false);
  EXPECT_FALSE(j.is_discarded()) << r.out;
  return j;
}

TEST(FsckMounted, ReadOnlyCheckWarnsAndRepairIsRefused) {
  MountedVault v;
  std::filesystem::create_directories(v.at("d"));
  for (int i = 0; i < 20; ++i) write_file(v.at("d/f" + std::to_string(i)), pattern(1000 + 997 * i, i));

  ProcessResult check = kmsfs({"fsck", v.backing(), "--json", "--keyring", v.keyring()}, false);
  EXPECT_EQ(check.exit_code, 0) << check.err << check.out;
  EXPECT_EQ(std::count(check.err.begin(), check.err.end(), '\n'), 1) << check.err;
  EXPECT_NE(check.err.find("kmsfs: fsck: warning: vault " + v.backing() + " is in use by a kmsfs mount at " + v.mnt()),
            std::string::npos)
      << check.err;
  const json j = json::parse(check.out, nullptr, false);
  EXPECT_EQ(j.value("outcome", ""), "clean") << check.out;
  EXPECT_NE(j["in_use_by"].get<std::string>().find(v.mnt()), std::string::npos) << j["in_use_by"];
  EXPECT_EQ(j["summary"]["kmsfs_files"], 20);

  ProcessResult repair = kmsfs({"fsck", v.backing(), "--repair", "--keyring", v.keyring()}, false);
  EXPECT_EQ(repair.exit_code, 8) << repair.err;
  EXPECT_NE(repair.err.find("in use by a kmsfs mount at " + v.mnt()), std::string::npos) << repair.err;
  EXPECT_EQ(repair.out, "");
  EXPECT_TRUE(v.mounted());
  EXPECT_EQ(read_file(v.at("d/f3")), pattern(1000 + 997 * 3, 3));

  ASSERT_EQ(v.unmount(), 0);
  const json after = fsck_json(v, 0, {"--repair"});
  EXPECT_EQ(after["outcome"], "clean");
  EXPECT_TRUE(after["in_use_by"].is_null());
}

TEST(FsckMounted, LongNamesAreWalkedRotatedAndNamed) {
  MountedVault v;
  if (std::getenv("KMSFS_TEST_KMS")) GTEST_SKIP() << "keyring rotation";
  const std::string dir(150, 'D'), name(200, 'n');
  std::filesystem::create_directories(v.at(dir));
  const std::string data = pattern(9000, 1);
  write_file(v.at(dir + "/" + name), data);
  write_file(v.at(dir + "/short"), "short");
  const std::string backing = v.backing_at(dir + "/" + name);
  const std::string rel = backing.substr(v.backing().size() + 1);
  ASSERT_EQ(v.unmount(), 0);
  const bool hashed = rel.find("kmsfs.ln.") != std::string::npos;

  kmsfs({"keyring", "rotate", v.keyring(), "main"});
  EXPECT_EQ(findings(fsck_json(v, 0), "not_rotated").size(), 3u);  // config and both files
  ProcessResult rot = kmsfs({"rotate", "--offline", v.backing(), "--to", "main", "--keyring", v.keyring()}, false);
  ASSERT_EQ(rot.exit_code, 0) << rot.out << rot.err;
  const json j = fsck_json(v, 0);
  EXPECT_EQ(findings(j, "not_rotated").size(), 0u) << j.dump(2);
  EXPECT_EQ(j["summary"]["kmsfs_files"], 2);

  // A finding names the file by its plaintext path; --repair moves its side file along.
  {
    std::fstream f(backing, std::ios::binary | std::ios::in | std::ios::out);
    f.seekg(40);
    const char c = static_cast<char>(f.get() ^ 0x10);
    f.seekp(40);
    f.put(c);
  }
  const json bad = fsck_json(v, 4);
  const auto damaged = findings(bad, "damaged_header");
  ASSERT_EQ(damaged.size(), 1u) << bad.dump(2);
  EXPECT_EQ(damaged[0]["path"], rel);
  EXPECT_EQ(damaged[0]["plain_path"], dir + "/" + name);
  const json fixed = fsck_json(v, 1, {"--repair"});
  const std::string to = findings(fixed, "damaged_header")[0]["quarantined_to"];
  EXPECT_EQ(to, "kmsfs.quarantine/" + rel);
  EXPECT_TRUE(std::filesystem::exists(v.backing() + "/" + to));
  if (hashed) {
    EXPECT_TRUE(std::filesystem::exists(v.backing() + "/" + to + ".name"));
    EXPECT_FALSE(std::filesystem::exists(backing + ".name"));
  }
  v.mount();
  EXPECT_FALSE(std::filesystem::exists(v.at(dir + "/" + name)));
  EXPECT_EQ(read_file(v.at(dir + "/short")), "short");
  for (const auto& e : std::filesystem::directory_iterator(v.mnt()))
    EXPECT_EQ(e.path().filename().string().find("quarantine"), std::string::npos) << e.path();
  EXPECT_EQ(v.unmount(), 0);
}

// --- deep trees -------------------------------------------------------------------------

constexpr int kDeepLevels = 1990;  // "d/" x 1990 + "f": a 3,981-byte plaintext path

// Opens the directory `levels` levels of "d" below `root`, one openat at a time (its
// path is longer than the kernel takes in one call), creating what is missing if asked.
Fd open_chain(const std::string& root, int levels, bool create) {
  Fd dir(::open(root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  for (int i = 0; i < levels && dir.ok(); ++i) {
    if (create && ::mkdirat(dir.get(), "d", 0755) != 0 && errno != EEXIST) return Fd();
    dir = Fd(::openat(dir.get(), "d", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  }
  return dir;
}

// The deepest backing directory: at each level the one directory there is (names are
// encrypted, side files hold a '.').
Fd open_deep_backing_dir(const std::string& backing) {
  Fd dir(::open(backing.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  for (int level = 0; level < kDeepLevels && dir.ok(); ++level) {
    std::string pick;
    DIR* d = ::fdopendir(::dup(dir.get()));
    while (dirent* e = d ? ::readdir(d) : nullptr) {
      const std::string n = e->d_name;
      if (e->d_type == DT_DIR && n[0] != '.' && n.find('.') == std::string::npos && !n.starts_with("kmsfs")) pick = n;
    }
    if (d) ::closedir(d);
    if (pick.empty()) return Fd();
    dir = Fd(::openat(dir.get(), pick.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  }
  return dir;
}

// Tears both key slots of every file in the directory `dir` (FORMAT.md §3: slots at 1024
// and 2560): no key opens it, and a rotation fails on it.
int damage_headers_in(int dir) {
  int n = 0;
  DIR* d = ::fdopendir(::dup(dir));
  while (dirent* e = d ? ::readdir(d) : nullptr) {
    if (e->d_type != DT_REG || std::string(e->d_name).find('.') != std::string::npos) continue;
    Fd f(::openat(dir, e->d_name, O_RDWR | O_CLOEXEC));
    bool torn = f.ok();
    for (off_t off : {1024 + 30, 2560 + 30}) {
      char c = 0;
      torn = torn && ::pread(f.get(), &c, 1, off) == 1;
      c ^= 0x10;
      torn = torn && ::pwrite(f.get(), &c, 1, off) == 1;
    }
    n += torn;
  }
  if (d) ::closedir(d);
  return n;
}

// kmsfs held to a hard limit of 1,024 descriptors, as under a default shell.
ProcessResult kmsfs_at_1024(const std::vector<std::string>& args) {
  std::vector<std::string> argv = {"/usr/bin/prlimit", "--nofile=1024:1024", "--", kmsfs_bin()};
  argv.insert(argv.end(), args.begin(), args.end());
  return run(argv);
}

json parsed(const ProcessResult& r) {
  json j = json::parse(r.out, nullptr, false);
  EXPECT_FALSE(j.is_discarded()) << r.out << r.err;
  return j;
}

TEST(FsckMounted, DeepTreeIsCheckedRotatedListedAndPrunedAtAnyDepth) {
  MountedVault v;
  if (std::getenv("KMSFS_TEST_KMS")) GTEST_SKIP() << "keyring rotation";
  constexpr int kDeepFiles = 21;  // f and g0..g19, all in the deepest directory
  const std::string data = pattern(10000, 7);
  {
    Fd deep = open_chain(v.mnt(), kDeepLevels, true);
    ASSERT_TRUE(deep.ok()) << "creating the chain through the mount: " << std::strerror(errno);
    Fd f(::openat(deep.get(), "f", O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
    ASSERT_TRUE(f.ok()) << std::strerror(errno);
    ASSERT_EQ(::write(f.get(), data.data(), data.size()), static_cast<ssize_t>(data.size()));
    for (int i = 0; i + 1 < kDeepFiles; ++i) {
      Fd g(::openat(deep.get(), ("g" + std::to_string(i)).c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
      ASSERT_TRUE(g.ok()) << std::strerror(errno);
      ASSERT_EQ(::write(g.get(), "g", 1), 1);
    }
  }
  write_file(v.at("shallow"), "shallow");
  ASSERT_EQ(v.unmount(), 0);
  const std::string deep_dir = [] {
    std::string p;
    for (int i = 0; i < kDeepLevels; ++i) p += (i ? "/" : "") + std::string("d");
    return p;
  }();
  auto fsck = [&](std::vector<std::string> extra = {}) {
    std::vector<std::string> args{"fsck", v.backing(), "--json", "--keyring", v.keyring()};
    args.insert(args.end(), extra.begin(), extra.end());
    return kmsfs_at_1024(args);
  };

  // Every entry checked, the deep files too.
  ProcessResult check = fsck();
  ASSERT_EQ(check.exit_code, 0) << check.err << check.out.substr(0, 2000);
  json j = parsed(check);
  EXPECT_EQ(j["summary"]["entries"], kDeepLevels + kDeepFiles + 1);
  EXPECT_EQ(j["summary"]["kmsfs_files"], kDeepFiles + 1);

  // Rotated offline: every file moves, so the old version can be disabled and pruned.
  kmsfs({"keyring", "rotate", v.keyring(), "main"});
  ProcessResult rot = kmsfs_at_1024({"rotate", "--offline", v.backing(), "--to", "main", "--keyring", v.keyring()});
  ASSERT_EQ(rot.exit_code, 0) << rot.out << rot.err.substr(0, 2000);
  j = parsed(fsck());
  EXPECT_EQ(findings(j, "not_rotated").size(), 0u) << j.dump(2).substr(0, 4000);
  EXPECT_EQ(j["outcome"], "clean");
  kmsfs({"keyring", "disable", v.keyring(), "main:1"});
  ProcessResult prune = kmsfs_at_1024({"keyring", "prune", v.keyring(), "main:1", "--vault", v.backing()});
  EXPECT_EQ(prune.exit_code, 0) << prune.err.substr(0, 2000);

  // Listed offline by its plaintext path.
  ProcessResult ls = kmsfs_at_1024({"ls", v.backing() + "/" + deep_dir, "--keyring", v.keyring()});
  EXPECT_EQ(ls.exit_code, 0) << ls.err.substr(0, 2000);
  EXPECT_EQ(ls.out.substr(0, 5), "f\ng0\n");
  EXPECT_EQ(std::count(ls.out.begin(), ls.out.end(), '\n'), kDeepFiles);

  // And it reads back through the mount, under the new key.
  v.mount();
  {
    Fd deep = open_chain(v.mnt(), kDeepLevels, false);
    ASSERT_TRUE(deep.ok()) << std::strerror(errno);
    Fd f(::openat(deep.get(), "f", O_RDONLY | O_CLOEXEC));
    ASSERT_TRUE(f.ok()) << std::strerror(errno);
    std::string got(data.size() + 10, '\0');
    got.resize(static_cast<size_t>(std::max<ssize_t>(0, ::read(f.get(), got.data(), got.size()))));
    EXPECT_TRUE(got == data) << "read back " << got.size() << " bytes";
  }
  ASSERT_EQ(v.unmount(), 0);

  // Damaged headers that deep: a rotation fails on each (its errors name paths of tens of
  // KiB, and its state file stays readable), and --repair quarantines them, their place
  // in the tree mirrored.
  {
    Fd dir = open_deep_backing_dir(v.backing());
    ASSERT_TRUE(dir.ok()) << std::strerror(errno);
    ASSERT_EQ(damage_headers_in(dir.get()), kDeepFiles);
  }
  kmsfs({"keyring", "rotate", v.keyring(), "main"});
  rot = kmsfs_at_1024({"rotate", "--offline", v.backing(), "--to", "main", "--keyring", v.keyring()});
  EXPECT_EQ(rot.exit_code, 5) << rot.out.substr(0, 2000) << rot.err.substr(0, 2000);
  j = parsed(fsck());
  EXPECT_EQ(findings(j, "damaged_header").size(), static_cast<size_t>(kDeepFiles));
  for (const auto& f : findings(j, "unreadable")) ADD_FAILURE() << f.dump().substr(0, 2000);
  EXPECT_FALSE(j["rotation"].is_null()) << "the rotation state did not load";
  ProcessResult repair = fsck({"--repair"});
  EXPECT_EQ(repair.exit_code, 1) << repair.err << repair.out.substr(0, 2000);
  j = parsed(repair);
  const auto damaged = findings(j, "damaged_header");
  ASSERT_EQ(damaged.size(), static_cast<size_t>(kDeepFiles)) << j.dump(2).substr(0, 4000);
  size_t named_f = 0;
  for (const auto& f : damaged) {
    named_f += f["plain_path"] == deep_dir + "/f";
    EXPECT_EQ(f["status"], "quarantined");
    EXPECT_EQ(f["quarantined_to"], "kmsfs.quarantine/" + f["path"].get<std::string>());
  }
  EXPECT_EQ(named_f, 1u);
  EXPECT_EQ(parsed(fsck())["outcome"], "clean");
}

}  // namespace
}  // namespace kmsfs::testing
