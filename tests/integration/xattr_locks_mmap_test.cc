// Extended attributes, advisory locks (kept by the kernel: the daemon implements neither
// getlk/setlk nor flock) and memory mappings through the mount.
#include <fcntl.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>

#include "posix_util.h"

namespace kmsfs::testing {
namespace {

std::vector<std::string> xattr_names(const std::string& path) {
  ssize_t n = ::listxattr(path.c_str(), nullptr, 0);
  if (n < 0) throw std::runtime_error("listxattr " + path + ": " + err_str(errno));
  std::string buf(static_cast<size_t>(n), '\0');
  n = ::listxattr(path.c_str(), buf.data(), buf.size());
  if (n < 0) throw std::runtime_error("listxattr " + path + ": " + err_str(errno));
  std::vector<std::string> out;
  for (size_t i = 0; i < static_cast<size_t>(n);) {
    std::string name(buf.c_str() + i);
    i += name.size() + 1;
    out.push_back(name);
  }
  return out;
}

bool has(const std::vector<std::string>& v, const std::string& s) { return std::find(v.begin(), v.end(), s) != v.end(); }

std::string get_xattr(const std::string& path, const char* name) {
  char buf[256];
  ssize_t n = ::getxattr(path.c_str(), name, buf, sizeof buf);
  if (n < 0) throw std::runtime_error(std::string("getxattr ") + name + ": " + err_str(errno));
  return std::string(buf, static_cast<size_t>(n));
}

TEST(Xattrs, UserXattrsSetGetListRemove) {
  PosixVault v;
  write_file(v.at("f"), "content");
  const std::string f = v.at("f");
  ASSERT_EQ(::setxattr(f.c_str(), "user.color", "blue", 4, 0), 0) << err_str(errno);
  ASSERT_EQ(::setxattr(f.c_str(), "user.empty", "", 0, 0), 0) << err_str(errno);
  EXPECT_EQ(get_xattr(f, "user.color"), "blue");
  EXPECT_EQ(get_xattr(f, "user.empty"), "");
  EXPECT_EQ(::getxattr(f.c_str(), "user.color", nullptr, 0), 4);  // size query
  char small[2];
  EXPECT_EQ(::getxattr(f.c_str(), "user.color", small, sizeof small), -1);
  EXPECT_EQ(errno, ERANGE);
  auto names = xattr_names(f);
  EXPECT_TRUE(has(names, "user.color"));
  EXPECT_TRUE(has(names, "user.empty"));

  EXPECT_EQ(::setxattr(f.c_str(), "user.color", "red", 3, XATTR_CREATE), -1);
  EXPECT_EQ(errno, EEXIST);
  EXPECT_EQ(::setxattr(f.c_str(), "user.none", "x", 1, XATTR_REPLACE), -1);
  EXPECT_EQ(errno, ENODATA);
  ASSERT_EQ(::setxattr(f.c_str(), "user.color", "green!", 6, XATTR_REPLACE), 0) << err_str(errno);
  EXPECT_EQ(get_xattr(f, "user.color"), "green!");

  ASSERT_EQ(::removexattr(f.c_str(), "user.empty"), 0) << err_str(errno);
  char buf[16];
  EXPECT_EQ(::getxattr(f.c_str(), "user.empty", buf, sizeof buf), -1);
  EXPECT_EQ(errno, ENODATA);
  EXPECT_FALSE(has(xattr_names(f), "user.empty"));
  EXPECT_EQ(::removexattr(f.c_str(), "user.empty"), -1);
  EXPECT_EQ(errno, ENODATA);

  // On an open fd and on a directory.
  Fd fd(f, O_RDONLY);
  ASSERT_EQ(::fsetxattr(fd.get(), "user.viafd", "1", 1, 0), 0) << err_str(errno);
  ASSERT_EQ(::mkdir(v.at("d").c_str(), 0755), 0);
  ASSERT_EQ(::setxattr(v.at("d").c_str(), "user.dir", "yes", 3, 0), 0) << err_str(errno);
  fd.reset();
  EXPECT_EQ(read_file(f), "content");  // xattrs live beside the content, not in it

  v.remount();
  EXPECT_EQ(get_xattr(f, "user.color"), "green!");
  EXPECT_EQ(get_xattr(f, "user.viafd"), "1");
  EXPECT_EQ(get_xattr(v.at("d"), "user.dir"), "yes");
  EXPECT_FALSE(has(xattr_names(f), "user.empty"));
  EXPECT_EQ(read_file(f), "content");
}

// The daemon answers the kernel's per-write security.capability lookup from memory once a
// file is known to have none; setting and clearing capabilities must still be seen.
TEST(Xattrs, FileCapabilitiesAreSeenAndClearedByWrites) {
  if (run({"setcap", "-h"}).exit_code == 127) GTEST_SKIP() << "setcap (libcap2-bin) not installed";
  MountedVault v;
  const std::string f = v.at("tool");
  write_file(f, "binary");
  for (int i = 0; i < 3; ++i) {  // writes that consult (and cache) "no capabilities"
    int fd = ::open(f.c_str(), O_WRONLY | O_APPEND);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::write(fd, "x", 1), 1);
    ::close(fd);
  }
  ASSERT_EQ(run({"setcap", "cap_net_raw+ep", f}).exit_code, 0);
  EXPECT_NE(run({"getcap", f}).out.find("cap_net_raw"), std::string::npos);
  // Any write clears file capabilities (the kernel's killpriv, through removexattr).
  int fd = ::open(f.c_str(), O_WRONLY | O_APPEND);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::write(fd, "y", 1), 1);
  ::close(fd);
  EXPECT_EQ(run({"getcap", f}).out.find("cap_net_raw"), std::string::npos);
  char buf[64];
  EXPECT_EQ(::getxattr(f.c_str(), "security.capability", buf, sizeof buf), -1);
  EXPECT_EQ(errno, ENODATA);
}

TEST(Locks, FlockConflictsBetweenOpenFiles) {
  PosixVault v;
  write_file(v.at("lock"), "x");
  Fd a(v.at("lock"), O_RDWR), b(v.at("lock"), O_RDWR);
  ASSERT_EQ(::flock(a.get(), LOCK_EX | LOCK_NB), 0) << err_str(errno);
  EXPECT_EQ(::flock(b.get(), LOCK_EX | LOCK_NB), -1);
  EXPECT_EQ(errno, EWOULDBLOCK);
  EXPECT_EQ(::flock(b.get(), LOCK_SH | LOCK_NB), -1);
  EXPECT_EQ(errno, EWOULDBLOCK);
  ASSERT_EQ(::flock(a.get(), LOCK_UN), 0);
  EXPECT_EQ(::flock(b.get(), LOCK_SH | LOCK_NB), 0) << err_str(errno);
  EXPECT_EQ(::flock(a.get(), LOCK_SH | LOCK_NB), 0) << err_str(errno);  // shared with shared
  EXPECT_EQ(::flock(a.get(), LOCK_EX | LOCK_NB), -1);
  EXPECT_EQ(errno, EWOULDBLOCK);
  // Closing the fd drops its lock.
  b.reset();
  EXPECT_EQ(::flock(a.get(), LOCK_EX | LOCK_NB), 0) << err_str(errno);
}

TEST(Locks, PosixRecordLocksConflictAcrossProcesses) {
  PosixVault v;
  write_file(v.at("rec"), std::string(1000, 'r'));
  Fd fd(v.at("rec"), O_RDWR);
  struct flock fl {};
  fl.l_type = F_WRLCK;
  fl.l_whence = SEEK_SET;
  fl.l_start = 0;
  fl.l_len = 100;
  ASSERT_EQ(::fcntl(fd.get(), F_SETLK, &fl), 0) << err_str(errno);
  const std::string path = v.at("rec");
  const pid_t parent = ::getpid();
  int rc = in_child([&] {
    int cfd = ::open(path.c_str(), O_RDWR);
    if (cfd < 0) return 10;
    struct flock c {};
    c.l_type = F_WRLCK;
    c.l_whence = SEEK_SET;
    c.l_start = 50;
    c.l_len = 10;
    if (::fcntl(cfd, F_SETLK, &c) == 0) return 11;  // must conflict
    if (errno != EAGAIN && errno != EACCES) return 12;
    c.l_type = F_RDLCK;
    if (::fcntl(cfd, F_SETLK, &c) == 0) return 13;
    struct flock q {};
    q.l_type = F_WRLCK;
    q.l_whence = SEEK_SET;
    q.l_start = 0;
    q.l_len = 1000;
    if (::fcntl(cfd, F_GETLK, &q) != 0) return 14;
    if (q.l_type != F_WRLCK || q.l_pid != parent || q.l_start != 0 || q.l_len != 100) return 15;
    c.l_type = F_WRLCK;
    c.l_start = 200;
    c.l_len = 100;
    if (::fcntl(cfd, F_SETLK, &c) != 0) return 16;  // disjoint: fine
    return 0;
  });
  EXPECT_EQ(rc, 0);
  // Unlocked, the child gets it.
  fl.l_type = F_UNLCK;
  ASSERT_EQ(::fcntl(fd.get(), F_SETLK, &fl), 0);
  rc = in_child([&] {
    int cfd = ::open(path.c_str(), O_RDWR);
    struct flock c {};
    c.l_type = F_WRLCK;
    c.l_whence = SEEK_SET;
    c.l_start = 0;
    c.l_len = 100;
    return cfd >= 0 && ::fcntl(cfd, F_SETLK, &c) == 0 ? 0 : 20;
  });
  EXPECT_EQ(rc, 0);
}

TEST(Mmap, ReadMapping) {
  PosixVault v;
  const std::string data = pattern(5 * 4096 + 123, 41);
  write_file(v.at("m"), data);
  drop_caches();
  Fd fd(v.at("m"), O_RDONLY);
  void* p = ::mmap(nullptr, data.size(), PROT_READ, MAP_SHARED, fd.get(), 0);
  ASSERT_NE(p, MAP_FAILED) << err_str(errno);
  EXPECT_SAME_BYTES(std::string(static_cast<const char*>(p), data.size()), data);
  ::munmap(p, data.size());
  // A private mapping at an offset.
  p = ::mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd.get(), 2 * 4096);
  ASSERT_NE(p, MAP_FAILED) << err_str(errno);
  EXPECT_SAME_BYTES(std::string(static_cast<const char*>(p), 4096), data.substr(2 * 4096, 4096));
  static_cast<char*>(p)[0] = 'P';  // private: never reaches the file
  ::munmap(p, 4096);
  fd.reset();
  EXPECT_SAME_BYTES(read_file(v.at("m")), data);
}

TEST(Mmap, SharedWriteMsyncReadAndRemount) {
  PosixVault v;
  const size_t size = 3 * 4096 + 500;
  Fd fd(v.at("shared"), O_CREAT | O_RDWR, 0644);
  ASSERT_EQ(::ftruncate(fd.get(), static_cast<off_t>(size)), 0);
  char* p = static_cast<char*>(::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0));
  ASSERT_NE(p, MAP_FAILED) << err_str(errno);
  const std::string data = pattern(size, 42);
  std::memcpy(p, data.data(), size);
  ASSERT_EQ(::msync(p, size, MS_SYNC), 0) << err_str(errno);
  // read(2), from another fd, sees the mapped writes.
  Fd other(v.at("shared"), O_RDONLY);
  EXPECT_SAME_BYTES(pread_str(other.get(), size + 10, 0), data);
  // A second round of writes to one page, then unmap and close without msync: close
  // flushes.
  std::memcpy(p + 4096 + 10, "rewritten", 9);
  std::string expect = data;
  expect.replace(4096 + 10, 9, "rewritten");
  ASSERT_EQ(::munmap(p, size), 0);
  ASSERT_EQ(fd.close(), 0);
  other.reset();
  EXPECT_SAME_BYTES(read_file(v.at("shared")), expect);
  // Still open and mounted: the backing file has it after sync.
  ::sync();
  auto cat = kmsfs({"cat", "--backing-path", v.backing_at("shared"), "--keyring", v.keyring()});
  EXPECT_SAME_BYTES(cat.out, expect);
  v.remount();
  EXPECT_SAME_BYTES(read_file(v.at("shared")), expect);
}

// Page writeback of a shared mapping goes out through whichever writable handle the
// kernel picks, here one opened O_APPEND: those writes are in place, not appends.
class MmapModes : public ::testing::TestWithParam<bool> {};
INSTANTIATE_TEST_SUITE_P(Cache, MmapModes, ::testing::Values(true, false),
                         [](const auto& tp) { return tp.param ? "Writeback" : "NoWriteback"; });

TEST_P(MmapModes, SharedWriteThroughAnAppendHandleStaysInPlace) {
  PosixVault v(GetParam() ? VaultOptions{} : no_writeback());
  const std::string data = pattern(3 * 4096 + 100, 43);
  write_file(v.at("ap"), data);
  std::string expect = data;
  {
    Fd fd(v.at("ap"), O_RDWR | O_APPEND);
    ASSERT_TRUE(fd.ok());
    char* p = static_cast<char*>(::mmap(nullptr, data.size(), PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0));
    ASSERT_NE(p, MAP_FAILED) << err_str(errno);
    std::memcpy(p + 10, "in-place", 8);
    expect.replace(10, 8, "in-place");
    ASSERT_EQ(::msync(p, data.size(), MS_SYNC), 0) << err_str(errno);
    ASSERT_EQ(::munmap(p, data.size()), 0);
    // A plain write(2) on the same fd still appends.
    write_all(fd.get(), "appended");
    expect += "appended";
    ASSERT_EQ(fd.close(), 0);
  }
  EXPECT_EQ(file_size(v.at("ap")), static_cast<off_t>(expect.size()));
  EXPECT_SAME_BYTES(read_file(v.at("ap")), expect);
  v.remount();
  EXPECT_SAME_BYTES(read_file(v.at("ap")), expect);
}

}  // namespace
}  // namespace kmsfs::testing
