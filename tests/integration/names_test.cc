// Encrypted names (the default): what the backing directory shows, long names and their
// side files, names that do not decrypt (sync conflict copies, tampering), restores onto
// other filesystems, and the offline path tools. Skipped under --plaintext-names.
#include <dirent.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <fcntl.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <set>
#include <string>
#include <vector>

#include "posix_util.h"

namespace kmsfs::testing {
namespace {

namespace fs = std::filesystem;

bool names_encrypted(const MountedVault& v) { return v.backing_at("x") != v.backing() + "/x"; }

#define SKIP_IF_PLAINTEXT(v)                              \
  do {                                                    \
    if (!names_encrypted(v)) {                            \
      GTEST_SKIP() << "vault has plaintext names";        \
    }                                                     \
  } while (0)

std::vector<std::string> backing_names(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::recursive_directory_iterator(dir)) out.push_back(e.path().filename().string());
  return out;
}

std::set<std::string> ls(const std::string& dir) {
  std::set<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) out.insert(e.path().filename().string());
  return out;
}

// Lazily unmounts a mount a test made with the daemonizing `kmsfs mount`, even when an
// assertion returns early (declared after the TempDir it lives in, so it goes first).
struct ScopedUnmount {
  std::string mp;
  ~ScopedUnmount() {
    struct stat a {}, b {};
    if (::stat(mp.c_str(), &a) == 0 && ::stat((mp + "/..").c_str(), &b) == 0 && a.st_dev == b.st_dev) return;
    ::umount2(mp.c_str(), MNT_DETACH);
  }
};

std::string trim(std::string s) {
  while (!s.empty() && s.back() == '\n') s.pop_back();
  return s;
}

TEST(Names, BackingShowsNoPlaintextNameTargetOrXattr) {
  PosixVault v;
  SKIP_IF_PLAINTEXT(v);
  ASSERT_EQ(::mkdir(v.at("payroll-dir").c_str(), 0755), 0);
  write_file(v.at("payroll-dir/2026-payroll.xlsx"), "x");
  ASSERT_EQ(::symlink("2026-payroll.xlsx", v.at("payroll-dir/payroll-link").c_str()), 0);
  ASSERT_EQ(::setxattr(v.at("payroll-dir/2026-payroll.xlsx").c_str(), "user.payroll-tag", "payroll-value", 13, 0), 0);
  for (const auto& n : backing_names(v.backing())) EXPECT_EQ(n.find("payroll"), std::string::npos) << n;
  for (const auto& e : fs::recursive_directory_iterator(v.backing())) {
    const std::string p = e.path().string();
    if (e.is_symlink()) {
      EXPECT_EQ(fs::read_symlink(p).string().find("payroll"), std::string::npos);
    }
    char list[4096];
    ssize_t n = ::llistxattr(p.c_str(), list, sizeof list);
    for (ssize_t i = 0; i < n; i += ssize_t(std::strlen(list + i)) + 1) {
      EXPECT_EQ(std::string(list + i).find("payroll"), std::string::npos);
      char val[512];
      ssize_t vn = ::lgetxattr(p.c_str(), list + i, val, sizeof val);
      if (vn > 0) {
        EXPECT_EQ(std::string(val, size_t(vn)).find("payroll"), std::string::npos);
      }
    }
  }
  // The plaintext view is intact.
  EXPECT_EQ(ls(v.at("payroll-dir")), (std::set<std::string>{"2026-payroll.xlsx", "payroll-link"}));
  char buf[64];
  ASSERT_EQ(::getxattr(v.at("payroll-dir/2026-payroll.xlsx").c_str(), "user.payroll-tag", buf, sizeof buf), 13);
  EXPECT_EQ(std::string(buf, 13), "payroll-value");
  ssize_t ln = ::readlink(v.at("payroll-dir/payroll-link").c_str(), buf, sizeof buf);
  EXPECT_EQ(std::string(buf, size_t(ln)), "2026-payroll.xlsx");
  EXPECT_EQ(lstat_of(v.at("payroll-dir/payroll-link")).st_size, 17);
}

// The documented leak of a filesystem-wide deterministic scheme: equal names in different
// directories have equal backing names. And the gain: a directory rename moves nothing.
TEST(Names, DeterministicAcrossDirectoriesAndDirectoryRenameIsOneRename) {
  PosixVault v;
  SKIP_IF_PLAINTEXT(v);
  ASSERT_EQ(::mkdir(v.at("a").c_str(), 0755), 0);
  ASSERT_EQ(::mkdir(v.at("b").c_str(), 0755), 0);
  write_file(v.at("a/notes.txt"), "1");
  write_file(v.at("b/notes.txt"), "2");
  EXPECT_EQ(fs::path(v.backing_at("a/notes.txt")).filename(), fs::path(v.backing_at("b/notes.txt")).filename());
  for (int i = 0; i < 200; ++i) write_file(v.at("a/f" + std::to_string(i)), std::to_string(i));
  const std::string enc_a = v.backing_at("a");
  const auto before = ls(enc_a);
  ASSERT_EQ(::rename(v.at("a").c_str(), v.at("renamed").c_str()), 0);
  EXPECT_EQ(ls(v.backing_at("renamed")), before);  // children untouched
  EXPECT_EQ(read_file(v.at("renamed/f199")), "199");
}

TEST(Names, LongNamesCreateRenameLinkAndUnlinkKeepSideFilesRight) {
  PosixVault v;
  SKIP_IF_PLAINTEXT(v);
  const std::string l1(255, 'a'), l2(250, 'b');
  ASSERT_EQ(::mkdir(v.at("d").c_str(), 0755), 0);
  ASSERT_EQ(::mkdir(v.at("e").c_str(), 0755), 0);
  write_file(v.at("d/" + l1), "long one");
  ASSERT_EQ(::mkdir(v.at("d/" + l2).c_str(), 0755), 0);
  write_file(v.at("d/" + l2 + "/inner"), "inside a long-named dir");
  EXPECT_EQ(ls(v.at("d")), (std::set<std::string>{l1, l2}));
  EXPECT_EQ(backing_names(v.backing_at("d")).size(), 5u);  // 2 entries + 2 side files + inner
  // long -> long across directories, long -> short, short -> long, hard link, exchange.
  ASSERT_EQ(::rename(v.at("d/" + l1).c_str(), v.at("e/" + l2).c_str()), 0);
  EXPECT_EQ(read_file(v.at("e/" + l2)), "long one");
  ASSERT_EQ(::rename(v.at("e/" + l2).c_str(), v.at("e/short").c_str()), 0);
  ASSERT_EQ(::link(v.at("e/short").c_str(), v.at("e/" + l1).c_str()), 0);
  EXPECT_EQ(lstat_of(v.at("e/short")).st_nlink, 2u);
  EXPECT_EQ(ls(v.at("e")), (std::set<std::string>{"short", l1}));
  ASSERT_EQ(::unlink(v.at("e/short").c_str()), 0);
  EXPECT_EQ(read_file(v.at("e/" + l1)), "long one");
  ASSERT_EQ(::syscall(SYS_renameat2, AT_FDCWD, v.at("e/" + l1).c_str(), AT_FDCWD, v.at("d/" + l2).c_str(),
                      RENAME_EXCHANGE), 0);
  EXPECT_EQ(read_file(v.at("d/" + l2)), "long one");
  EXPECT_EQ(read_file(v.at("e/" + l1 + "/inner")), "inside a long-named dir");
  // Only what is named has a side file: e has one long entry, d has one.
  auto count_side = [&](const std::string& dir) {
    int n = 0;
    for (const auto& f : ls(v.backing_at(dir))) n += f.ends_with(".name");
    return n;
  };
  EXPECT_EQ(count_side("d"), 1);
  EXPECT_EQ(count_side("e"), 1);
  ASSERT_EQ(::unlink(v.at("d/" + l2).c_str()), 0);
  EXPECT_EQ(count_side("d"), 0);
  EXPECT_EQ(ls(v.at("d")), std::set<std::string>{});
  // 256 bytes is too long, as anywhere.
  EXPECT_EQ(::mkdir(v.at("d/" + std::string(256, 'c')).c_str(), 0755), -1);
  EXPECT_EQ(errno, ENAMETOOLONG);
  v.remount();
  EXPECT_EQ(read_file(v.at("e/" + l1 + "/inner")), "inside a long-named dir");
}

TEST(Names, ConflictCopiesAndTamperedNamesAreSkippedOrShownWithBadname) {
  PosixVault v;
  SKIP_IF_PLAINTEXT(v);
  ASSERT_EQ(::mkdir(v.at("docs").c_str(), 0755), 0);
  write_file(v.at("docs/report.txt"), "the report");
  write_file(v.at("docs/other.txt"), "other");
  const std::string enc = v.backing_at("docs/report.txt");
  const std::string conflict = enc + " (conflicted copy 2026-11-23)";
  ASSERT_TRUE(fs::copy_file(enc, conflict));
  std::string tampered = v.backing_at("docs/other.txt");
  fs::path tp(tampered);
  std::string tname = tp.filename().string();
  tname[5] = tname[5] == 'A' ? 'B' : 'A';
  fs::rename(tampered, tp.parent_path() / tname);
  // Neither breaks the directory: they are hidden, with a log line each.
  EXPECT_EQ(ls(v.at("docs")), std::set<std::string>{"report.txt"});
  EXPECT_EQ(read_file(v.at("docs/report.txt")), "the report");
  const std::string log = v.log();
  EXPECT_NE(log.find(fs::path(conflict).filename().string()), std::string::npos) << log;
  EXPECT_NE(log.find("does not decrypt"), std::string::npos) << log;
  EXPECT_EQ(log.find("report.txt"), std::string::npos) << "plaintext name in the log:\n" << log;

  // Shown under -o badname, readable (the content carries its own header) and rescuable.
  v.unmount();
  ScopedUnmount guard{v.mnt()};
  {
    auto r = run({kmsfs_bin(), "mount", v.backing(), v.mnt(), "--keyring", v.keyring(), "-o", "badname=*conflicted*"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }
  const std::string shown = fs::path(conflict).filename().string() + " KMSFS_BAD_NAME";
  EXPECT_EQ(ls(v.at("docs")), (std::set<std::string>{"report.txt", shown}));
  EXPECT_EQ(read_file(v.at("docs/" + shown)), "the report");
  ASSERT_EQ(::rename(v.at("docs/" + shown).c_str(), v.at("docs/report (recovered).txt").c_str()), 0);
  EXPECT_EQ(read_file(v.at("docs/report (recovered).txt")), "the report");
  EXPECT_EQ(run({kmsfs_bin(), "umount", v.mnt()}).exit_code, 0);
  v.mount();
}

TEST(Names, RestoredCopyOnAnotherFilesystemMountsAndReads) {
  PosixVault v;
  SKIP_IF_PLAINTEXT(v);
  ASSERT_EQ(::mkdir(v.at("x").c_str(), 0755), 0);
  write_file(v.at("x/" + std::string(200, 'n')), "long and restored");
  write_file(v.at("x/plain"), "restored");
  ASSERT_EQ(::symlink("plain", v.at("x/ln").c_str()), 0);
  v.unmount();
  // tar (new inode numbers, no xattrs on directories) into a tmpfs: another filesystem.
  TempDir t("kmsfs-restore", "/dev/shm");
  const std::string copy = t.path() + "/copy", mnt = t.path() + "/mnt";
  ASSERT_EQ(::mkdir(copy.c_str(), 0755), 0);
  ASSERT_EQ(::mkdir(mnt.c_str(), 0755), 0);
  ASSERT_EQ(sh("tar -C '" + v.backing() + "' -cf - . | tar -C '" + copy + "' -xf -").exit_code, 0);
  ScopedUnmount guard{mnt};
  auto r = run({kmsfs_bin(), "mount", copy, mnt, "--keyring", v.keyring()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(read_file(mnt + "/x/" + std::string(200, 'n')), "long and restored");
  EXPECT_EQ(read_file(mnt + "/x/ln"), "restored");
  EXPECT_EQ(run({kmsfs_bin(), "umount", mnt}).exit_code, 0);
  v.mount();
}

TEST(Names, OfflineToolsFindAndRestoreOneFile) {
  PosixVault v;
  SKIP_IF_PLAINTEXT(v);
  ASSERT_EQ(::mkdir(v.at("projects").c_str(), 0755), 0);
  ASSERT_EQ(::mkdir(v.at("projects/2026").c_str(), 0755), 0);
  const std::string longname(240, 'q');
  write_file(v.at("projects/2026/budget.ods"), "numbers");
  write_file(v.at("projects/2026/" + longname), "long");
  v.unmount();
  const std::string k = v.keyring();
  auto l = kmsfs({"ls", v.backing() + "/projects/2026", "--keyring", k});
  EXPECT_EQ(l.out, "budget.ods\n" + longname + "\n");
  auto ll = kmsfs({"ls", "-l", v.backing() + "/projects/2026", "--keyring", k});
  EXPECT_NE(ll.out.find("           7 "), std::string::npos) << ll.out;  // plaintext size
  const std::string enc = trim(kmsfs({"encrypt-path", v.backing(), "projects/2026/budget.ods", "--keyring", k}).out);
  EXPECT_EQ(enc.find("budget"), std::string::npos);
  EXPECT_EQ(read_file(enc).size(), 4096u + 7 + 40);
  EXPECT_EQ(trim(kmsfs({"decrypt-path", v.backing(), enc, "--keyring", k}).out), "projects/2026/budget.ods");
  const std::string enc_long = trim(kmsfs({"encrypt-path", v.backing(), "projects/2026/" + longname, "--keyring", k}).out);
  EXPECT_EQ(trim(kmsfs({"decrypt-path", v.backing(), enc_long, "--keyring", k}).out), "projects/2026/" + longname);
  EXPECT_EQ(kmsfs({"cat", v.backing() + "/projects/2026/budget.ods", "--keyring", k}).out, "numbers");
  EXPECT_EQ(kmsfs({"cat", "--backing-path", enc, "--keyring", k}).out, "numbers");
  auto missing = kmsfs({"cat", v.backing() + "/projects/2026/nope", "--keyring", k}, false);
  EXPECT_NE(missing.exit_code, 0);
  EXPECT_NE(missing.err.find("projects/2026/nope"), std::string::npos) << missing.err;
  v.mount();
}

// encrypt-file DEST is a plaintext path: the file lands where the mount shows it, under
// parents it creates, with names encrypted (a long one out of line) as the mount does. While
// the vault is mounted it refuses rather than race the daemon.
TEST(Names, EncryptFileLandsWhereTheMountShowsIt) {
  PosixVault v;
  TempDir t("kmsfs-encrypt-file");
  const std::string plain = t.path() + "/report.pdf";
  write_file(plain, "quarterly numbers");
  auto busy = kmsfs({"encrypt-file", v.backing(), plain, "reports/q3.pdf", "--keyring", v.keyring()}, false);
  EXPECT_EQ(busy.exit_code, 8) << busy.err;
  EXPECT_NE(busy.err.find("in use"), std::string::npos) << busy.err;
  ASSERT_EQ(::mkdir(v.at("reports").c_str(), 0755), 0);  // one parent exists, the next does not
  v.unmount();
  const std::string longname(230, 'l');
  for (const std::string& dest : {std::string("reports/2026/q3.pdf"), "reports/2026/" + longname})
    ASSERT_EQ(kmsfs({"encrypt-file", v.backing(), plain, dest, "--keyring", v.keyring()}).exit_code, 0) << dest;
  v.mount();
  EXPECT_EQ(read_file(v.at("reports/2026/q3.pdf")), "quarterly numbers");
  EXPECT_EQ(read_file(v.at("reports/2026/" + longname)), "quarterly numbers");
  std::set<std::string> names;
  for (const auto& e : std::filesystem::directory_iterator(v.at("reports/2026"))) names.insert(e.path().filename());
  EXPECT_EQ(names, (std::set<std::string>{"q3.pdf", longname}));
  // And the mount can change them like any other file.
  write_file(v.at("reports/2026/q3.pdf"), "revised");
  EXPECT_EQ(read_file(v.at("reports/2026/q3.pdf")), "revised");
}

}  // namespace
}  // namespace kmsfs::testing
