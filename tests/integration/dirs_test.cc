// Names through the mount: mkdir/rmdir/readdir and their errors, unlink and rename
// (while open, over existing names, across directories, NOREPLACE, EXCHANGE), a
// directory of 100,000 entries, and readdir racing with creates and unlinks.
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <map>
#include <set>
#include <thread>

#include "posix_util.h"

namespace kmsfs::testing {
namespace {

// Every name readdir returns (without . and ..), with duplicates kept.
std::vector<std::string> list_dir(const std::string& path) {
  DIR* d = ::opendir(path.c_str());
  if (!d) throw std::runtime_error("opendir " + path + ": " + err_str(errno));
  std::vector<std::string> out;
  errno = 0;
  while (struct dirent* e = ::readdir(d)) {
    if (std::strcmp(e->d_name, ".") && std::strcmp(e->d_name, "..")) out.emplace_back(e->d_name);
    errno = 0;
  }
  int err = errno;
  ::closedir(d);
  if (err) throw std::runtime_error("readdir " + path + ": " + err_str(err));
  return out;
}

void touch(const std::string& path) {
  int fd = ::open(path.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
  if (fd < 0) throw std::runtime_error("create " + path + ": " + err_str(errno));
  ::close(fd);
}

TEST(Dirs, MkdirRmdirReaddirAndErrors) {
  PosixVault v;
  ASSERT_EQ(::mkdir(v.at("d").c_str(), 0750), 0) << err_str(errno);
  struct stat st = lstat_of(v.at("d"));
  EXPECT_TRUE(S_ISDIR(st.st_mode));
  EXPECT_EQ(st.st_mode & 07777, 0750u);
  EXPECT_EQ(::mkdir(v.at("d").c_str(), 0755), -1);
  EXPECT_EQ(errno, EEXIST);
  ASSERT_EQ(::mkdir(v.at("d/sub").c_str(), 0755), 0);
  write_file(v.at("d/file"), "x");
  std::vector<std::string> names = list_dir(v.at("d"));
  EXPECT_EQ(std::set<std::string>(names.begin(), names.end()), (std::set<std::string>{"sub", "file"}));
  EXPECT_EQ(names.size(), 2u);

  EXPECT_EQ(::rmdir(v.at("d").c_str()), -1);
  EXPECT_EQ(errno, ENOTEMPTY);
  EXPECT_EQ(::rmdir(v.at("nope").c_str()), -1);
  EXPECT_EQ(errno, ENOENT);
  EXPECT_EQ(::rmdir(v.at("d/file").c_str()), -1);
  EXPECT_EQ(errno, ENOTDIR);
  EXPECT_EQ(::unlink(v.at("d/sub").c_str()), -1);
  EXPECT_EQ(errno, EISDIR);
  EXPECT_EQ(::open(v.at("d").c_str(), O_WRONLY | O_CLOEXEC), -1);
  EXPECT_EQ(errno, EISDIR);
  EXPECT_EQ(::mkdir(v.at("d/file/x").c_str(), 0755), -1);
  EXPECT_EQ(errno, ENOTDIR);
  EXPECT_EQ(::open(v.at("d/file/x").c_str(), O_RDONLY | O_CLOEXEC), -1);
  EXPECT_EQ(errno, ENOTDIR);
  EXPECT_EQ(::open(v.at("missing/x").c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0644), -1);
  EXPECT_EQ(errno, ENOENT);
  EXPECT_EQ(::unlink(v.at("d/none").c_str()), -1);
  EXPECT_EQ(errno, ENOENT);
  EXPECT_EQ(::opendir(v.at("d/file").c_str()), nullptr);
  EXPECT_EQ(errno, ENOTDIR);

  // Names: 255 bytes is the limit, 256 is ENAMETOOLONG for every operation.
  const std::string ok_name(255, 'n'), long_name(256, 'n');
  touch(v.at(ok_name));
  EXPECT_EQ(file_size(v.at(ok_name)), 0);
  struct stat dummy;
  EXPECT_EQ(::stat(v.at(long_name).c_str(), &dummy), -1);
  EXPECT_EQ(errno, ENAMETOOLONG);
  EXPECT_EQ(::open(v.at(long_name).c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0644), -1);
  EXPECT_EQ(errno, ENAMETOOLONG);
  EXPECT_EQ(::mkdir(v.at(long_name).c_str(), 0755), -1);
  EXPECT_EQ(errno, ENAMETOOLONG);
  EXPECT_EQ(::rename(v.at(ok_name).c_str(), v.at(long_name).c_str()), -1);
  EXPECT_EQ(errno, ENAMETOOLONG);
  EXPECT_EQ(::symlink("t", v.at(long_name).c_str()), -1);
  EXPECT_EQ(errno, ENAMETOOLONG);

  ASSERT_EQ(::unlink(v.at("d/file").c_str()), 0);
  ASSERT_EQ(::rmdir(v.at("d/sub").c_str()), 0);
  ASSERT_EQ(::rmdir(v.at("d").c_str()), 0);
  EXPECT_EQ(::stat(v.at("d").c_str(), &dummy), -1);
  EXPECT_EQ(errno, ENOENT);
  v.remount();
  EXPECT_EQ(list_dir(v.mnt()), std::vector<std::string>{ok_name});
}

TEST(Dirs, UnlinkWhileOpenKeepsTheFileUsable) {
  PosixVault v;
  const std::string data = pattern(20000, 11);
  write_file(v.at("gone"), data);
  Fd fd(v.at("gone"), O_RDWR);
  ASSERT_TRUE(fd.ok());
  ASSERT_EQ(::unlink(v.at("gone").c_str()), 0);
  struct stat st {};
  EXPECT_EQ(::stat(v.at("gone").c_str(), &st), -1);
  EXPECT_EQ(errno, ENOENT);
  ASSERT_EQ(::fstat(fd.get(), &st), 0) << err_str(errno);
  EXPECT_EQ(st.st_nlink, 0u);
  EXPECT_EQ(st.st_size, 20000);
  EXPECT_SAME_BYTES(pread_str(fd.get(), 30000, 0), data);
  pwrite_str(fd.get(), "still writable", 19990);
  std::string expect = data.substr(0, 19990) + "still writable";
  ASSERT_EQ(::fsync(fd.get()), 0) << err_str(errno);
  drop_caches();  // the next read goes to the daemon, which reads the unlinked backing file
  EXPECT_SAME_BYTES(pread_str(fd.get(), 30000, 0), expect);
  ASSERT_EQ(::fstat(fd.get(), &st), 0);
  EXPECT_EQ(st.st_size, static_cast<off_t>(expect.size()));
  // The name is free for a new file meanwhile.
  write_file(v.at("gone"), "new");
  EXPECT_EQ(read_file(v.at("gone")), "new");
  EXPECT_SAME_BYTES(pread_str(fd.get(), 30000, 0), expect);
  ASSERT_EQ(fd.close(), 0);
  v.remount();
  EXPECT_EQ(read_file(v.at("gone")), "new");
  EXPECT_EQ(list_dir(v.backing()).size(), 3u);  // kmsfs.conf, kmsfs.lock and the new file: nothing leaked
}

TEST(Dirs, RenameWhileOpen) {
  PosixVault v;
  ASSERT_EQ(::mkdir(v.at("a").c_str(), 0755), 0);
  ASSERT_EQ(::mkdir(v.at("b").c_str(), 0755), 0);
  write_file(v.at("a/f"), "before");
  Fd fd(v.at("a/f"), O_RDWR);
  ASSERT_TRUE(fd.ok());
  ASSERT_EQ(::rename(v.at("a/f").c_str(), v.at("b/g").c_str()), 0) << err_str(errno);
  pwrite_str(fd.get(), "AFTER!", 0);
  // Renaming the parent directory too does not disturb the open file.
  ASSERT_EQ(::rename(v.at("b").c_str(), v.at("c").c_str()), 0) << err_str(errno);
  pwrite_str(fd.get(), "+", 6);
  ASSERT_EQ(fd.close(), 0);
  EXPECT_EQ(read_file(v.at("c/g")), "AFTER!+");
  v.remount();
  EXPECT_EQ(read_file(v.at("c/g")), "AFTER!+");
}

TEST(Dirs, RenameOverExistingAndAcrossDirectories) {
  PosixVault v;
  write_file(v.at("src"), "source");
  write_file(v.at("dst"), "destination");
  Fd old_dst(v.at("dst"), O_RDONLY);
  ASSERT_EQ(::rename(v.at("src").c_str(), v.at("dst").c_str()), 0) << err_str(errno);
  EXPECT_EQ(read_file(v.at("dst")), "source");
  struct stat st;
  EXPECT_EQ(::stat(v.at("src").c_str(), &st), -1);
  EXPECT_EQ(errno, ENOENT);
  // The replaced file lives on for its open fd.
  EXPECT_EQ(pread_str(old_dst.get(), 100, 0), "destination");
  old_dst.reset();

  ASSERT_EQ(::mkdir(v.at("d1").c_str(), 0755), 0);
  ASSERT_EQ(::mkdir(v.at("d2").c_str(), 0755), 0);
  ASSERT_EQ(::mkdir(v.at("d1/sub").c_str(), 0755), 0);
  write_file(v.at("d1/sub/deep"), "deep");
  ASSERT_EQ(::rename(v.at("dst").c_str(), v.at("d1/moved").c_str()), 0) << err_str(errno);
  ASSERT_EQ(::rename(v.at("d1/sub").c_str(), v.at("d2/sub").c_str()), 0) << err_str(errno);
  EXPECT_EQ(read_file(v.at("d1/moved")), "source");
  EXPECT_EQ(read_file(v.at("d2/sub/deep")), "deep");
  // Directory rename errors come from the backing fs, unchanged.
  ASSERT_EQ(::mkdir(v.at("full").c_str(), 0755), 0);
  write_file(v.at("full/x"), "x");
  EXPECT_EQ(::rename(v.at("d2").c_str(), v.at("full").c_str()), -1);
  EXPECT_EQ(errno, ENOTEMPTY);
  EXPECT_EQ(::rename(v.at("d2").c_str(), v.at("d2/sub/inside").c_str()), -1);
  EXPECT_EQ(errno, EINVAL);
  EXPECT_EQ(::rename(v.at("d1/moved").c_str(), v.at("d2").c_str()), -1);
  EXPECT_EQ(errno, EISDIR);
  v.remount();
  EXPECT_EQ(read_file(v.at("d1/moved")), "source");
  EXPECT_EQ(read_file(v.at("d2/sub/deep")), "deep");
}

TEST(Dirs, RenameNoreplaceAndExchange) {
  PosixVault v;
  write_file(v.at("a"), "content of a");
  write_file(v.at("b"), "content of b, longer");
  EXPECT_EQ(::renameat2(AT_FDCWD, v.at("a").c_str(), AT_FDCWD, v.at("b").c_str(), RENAME_NOREPLACE), -1);
  EXPECT_EQ(errno, EEXIST);
  EXPECT_EQ(read_file(v.at("a")), "content of a");
  EXPECT_EQ(read_file(v.at("b")), "content of b, longer");
  ASSERT_EQ(::renameat2(AT_FDCWD, v.at("a").c_str(), AT_FDCWD, v.at("c").c_str(), RENAME_NOREPLACE), 0)
      << err_str(errno);
  EXPECT_EQ(read_file(v.at("c")), "content of a");

  const ino_t ino_b = lstat_of(v.at("b")).st_ino, ino_c = lstat_of(v.at("c")).st_ino;
  ASSERT_EQ(::renameat2(AT_FDCWD, v.at("b").c_str(), AT_FDCWD, v.at("c").c_str(), RENAME_EXCHANGE), 0)
      << err_str(errno);
  EXPECT_EQ(read_file(v.at("b")), "content of a");
  EXPECT_EQ(read_file(v.at("c")), "content of b, longer");
  EXPECT_EQ(file_size(v.at("b")), 12);
  EXPECT_EQ(file_size(v.at("c")), 20);
  EXPECT_EQ(lstat_of(v.at("b")).st_ino, ino_c);
  EXPECT_EQ(lstat_of(v.at("c")).st_ino, ino_b);
  // A file and a directory swap too.
  ASSERT_EQ(::mkdir(v.at("dir").c_str(), 0755), 0);
  write_file(v.at("dir/in"), "in");
  ASSERT_EQ(::renameat2(AT_FDCWD, v.at("dir").c_str(), AT_FDCWD, v.at("c").c_str(), RENAME_EXCHANGE), 0)
      << err_str(errno);
  EXPECT_EQ(read_file(v.at("c/in")), "in");
  EXPECT_EQ(read_file(v.at("dir")), "content of b, longer");
  EXPECT_EQ(::renameat2(AT_FDCWD, v.at("b").c_str(), AT_FDCWD, v.at("none").c_str(), RENAME_EXCHANGE), -1);
  EXPECT_EQ(errno, ENOENT);
  v.remount();
  EXPECT_EQ(read_file(v.at("b")), "content of a");
  EXPECT_EQ(read_file(v.at("dir")), "content of b, longer");
  EXPECT_EQ(read_file(v.at("c/in")), "in");
}

TEST(Dirs, TelldirSeekdirResumeWhereTheyLeft) {
  PosixVault v;
  ASSERT_EQ(::mkdir(v.at("d").c_str(), 0755), 0);
  for (int i = 0; i < 600; ++i) touch(v.at("d/name-with-some-length-" + std::to_string(i)));
  DIR* d = ::opendir(v.at("d").c_str());
  ASSERT_NE(d, nullptr);
  std::vector<std::string> first;
  long mark = -1;
  while (true) {
    if (first.size() == 250) mark = ::telldir(d);  // the position of the next entry
    struct dirent* e = ::readdir(d);
    if (!e) break;
    first.emplace_back(e->d_name);
  }
  ASSERT_EQ(first.size(), 602u);  // with . and ..
  ASSERT_GE(mark, 0);
  ::seekdir(d, mark);
  std::vector<std::string> again;
  while (struct dirent* e = ::readdir(d)) again.emplace_back(e->d_name);
  EXPECT_EQ(again, std::vector<std::string>(first.begin() + 250, first.end()));
  ::rewinddir(d);
  std::vector<std::string> all;
  while (struct dirent* e = ::readdir(d)) all.emplace_back(e->d_name);
  EXPECT_EQ(all, first);
  ::closedir(d);
}

TEST(Dirs, HundredThousandEntriesListedCompletely) {
  PosixVault v;
  constexpr int kN = 100000;
  ASSERT_EQ(::mkdir(v.at("big").c_str(), 0755), 0);
  const std::string dir = v.at("big") + "/";
  // Far more inodes than the daemon's fd limit may allow (20000 in some containers) stay
  // in the kernel's cache after these creates: the daemon must get the kernel to forget
  // some, or creates fail with EMFILE.
  char name[32];
  for (int i = 0; i < kN; ++i) {
    std::snprintf(name, sizeof name, "entry-%06d", i);
    int fd = ::open((dir + name).c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
    ASSERT_GE(fd, 0) << "create #" << i << ": " << err_str(errno);
    ::close(fd);
  }
  auto check = [&](const char* when) {
    std::vector<std::string> names = list_dir(v.at("big"));
    EXPECT_EQ(names.size(), static_cast<size_t>(kN)) << when;
    std::set<std::string> unique(names.begin(), names.end());
    EXPECT_EQ(unique.size(), names.size()) << when << ": duplicates";
    int i = 0;
    for (const auto& n : unique) {  // sorted: entry-000000 ... entry-099999
      std::snprintf(name, sizeof name, "entry-%06d", i++);
      if (n != name) {
        ADD_FAILURE() << when << ": expected " << name << ", got " << n;
        break;
      }
    }
  };
  check("after creating");
  drop_caches();  // the kernel forgets the inodes; listing again looks them all up afresh
  check("after dropping caches");
  v.remount();
  check("after remount");
}

TEST(Dirs, ReaddirWhileEntriesComeAndGo) {
  PosixVault v;
  ASSERT_EQ(::mkdir(v.at("churn").c_str(), 0755), 0);
  const std::string dir = v.at("churn") + "/";
  std::set<std::string> stable;
  for (int i = 0; i < 3000; ++i) {
    std::string n = "stable-" + std::to_string(i);
    touch(dir + n);
    stable.insert(n);
  }
  std::atomic<bool> stop{false};
  std::atomic<long> churned{0};
  std::atomic<int> churn_errno{0};
  std::vector<std::thread> churners;
  for (int t = 0; t < 2; ++t) {
    churners.emplace_back([&, t] {
      for (long i = 0; !stop; ++i) {
        std::string n = dir + "churn-" + std::to_string(t) + "-" + std::to_string(i % 500);
        if (i % 1000 < 500) {
          int fd = ::open(n.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
          if (fd < 0) churn_errno = errno; else ::close(fd);
        } else if (::unlink(n.c_str()) != 0) {
          churn_errno = errno;
        }
        churned++;
      }
    });
  }
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(3);
  int passes = 0;
  while (std::chrono::steady_clock::now() < until || passes < 3) {
    std::vector<std::string> names = list_dir(v.at("churn"));
    std::map<std::string, int> seen;
    for (const auto& n : names) seen[n]++;
    for (const auto& [n, count] : seen) {
      if (stable.count(n)) {
        ASSERT_EQ(count, 1) << "stable entry " << n << " listed " << count << " times in pass " << passes;
      } else {
        ASSERT_EQ(n.rfind("churn-", 0), 0u) << "unexpected name " << n;
      }
    }
    for (const auto& n : stable) ASSERT_EQ(seen.count(n), 1u) << "stable entry " << n << " missing in pass " << passes;
    passes++;
  }
  stop = true;
  for (auto& t : churners) t.join();
  EXPECT_EQ(churn_errno.load(), 0) << err_str(churn_errno.load());
  EXPECT_GT(churned.load(), 100);
  EXPECT_GE(passes, 3);
  EXPECT_TRUE(v.mounted());
}

}  // namespace
}  // namespace kmsfs::testing
