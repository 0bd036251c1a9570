// Symlinks, hard links and special files through the mount.
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include "posix_util.h"

namespace kmsfs::testing {
namespace {

std::string read_link(const std::string& path) {
  char buf[4096];
  ssize_t n = ::readlink(path.c_str(), buf, sizeof buf);
  if (n < 0) throw std::runtime_error("readlink " + path + ": " + err_str(errno));
  return std::string(buf, static_cast<size_t>(n));
}

TEST(Links, SymlinksReadlinkLstatDangling) {
  PosixVault v;
  write_file(v.at("target"), "through the link");
  ASSERT_EQ(::symlink("target", v.at("rel").c_str()), 0) << err_str(errno);
  ASSERT_EQ(::symlink("does/not/exist", v.at("dangling").c_str()), 0) << err_str(errno);
  // The backing symlink holds the target encrypted (base64url of nonce, text, tag), and
  // the backing filesystem's 4095-byte limit applies to that: 3031 bytes of plaintext.
  const bool names_encrypted = v.backing_at("target") != v.backing() + "/target";
  const std::string long_target(names_encrypted ? 3031 : 4000, 'x');
  ASSERT_EQ(::symlink(long_target.c_str(), v.at("long").c_str()), 0) << err_str(errno);
  if (names_encrypted) {
    EXPECT_EQ(::symlink(std::string(3032, 'x').c_str(), v.at("too-long").c_str()), -1);
    EXPECT_EQ(errno, ENAMETOOLONG);
  }

  EXPECT_EQ(read_link(v.at("rel")), "target");
  EXPECT_EQ(read_link(v.at("dangling")), "does/not/exist");
  EXPECT_EQ(read_link(v.at("long")), long_target);
  struct stat st = lstat_of(v.at("rel"));
  EXPECT_TRUE(S_ISLNK(st.st_mode));
  EXPECT_EQ(st.st_size, 6);
  EXPECT_EQ(read_file(v.at("rel")), "through the link");
  struct stat tst {};
  ASSERT_EQ(::stat(v.at("rel").c_str(), &tst), 0);
  EXPECT_TRUE(S_ISREG(tst.st_mode));
  EXPECT_EQ(tst.st_ino, lstat_of(v.at("target")).st_ino);

  EXPECT_TRUE(S_ISLNK(lstat_of(v.at("dangling")).st_mode));
  EXPECT_EQ(::stat(v.at("dangling").c_str(), &tst), -1);
  EXPECT_EQ(errno, ENOENT);
  EXPECT_EQ(::open(v.at("dangling").c_str(), O_RDONLY | O_CLOEXEC), -1);
  EXPECT_EQ(errno, ENOENT);
  EXPECT_EQ(::open(v.at("rel").c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC), -1);
  EXPECT_EQ(errno, ELOOP);
  EXPECT_EQ(::symlink("x", v.at("rel").c_str()), -1);
  EXPECT_EQ(errno, EEXIST);
  // Creating through a dangling link creates its target.
  ASSERT_EQ(::symlink("made-through-link", v.at("maker").c_str()), 0);
  write_file(v.at("maker"), "made");
  EXPECT_EQ(read_file(v.at("made-through-link")), "made");

  // The backing holds the symlink as a symlink, target in the clear (names are plaintext).
  // The backing link holds the target encrypted, unless names are plaintext.
  EXPECT_EQ(read_link(v.backing_at("rel")) == "target", !names_encrypted);
  v.remount();
  EXPECT_EQ(read_link(v.at("rel")), "target");
  EXPECT_EQ(read_link(v.at("long")), long_target);
  EXPECT_EQ(read_file(v.at("rel")), "through the link");
  ASSERT_EQ(::unlink(v.at("rel").c_str()), 0);
  EXPECT_EQ(read_file(v.at("target")), "through the link");
}

TEST(Links, HardLinksShareInodeAndContent) {
  PosixVault v;
  ASSERT_EQ(::mkdir(v.at("d").c_str(), 0755), 0);
  const std::string data = pattern(10000, 21);
  write_file(v.at("one"), data);
  ASSERT_EQ(::link(v.at("one").c_str(), v.at("d/two").c_str()), 0) << err_str(errno);
  struct stat a = lstat_of(v.at("one")), b = lstat_of(v.at("d/two"));
  EXPECT_EQ(a.st_ino, b.st_ino);
  EXPECT_EQ(a.st_nlink, 2u);
  EXPECT_EQ(b.st_nlink, 2u);
  EXPECT_EQ(b.st_size, 10000);
  EXPECT_SAME_BYTES(read_file(v.at("d/two")), data);

  // A write through one name is read through the other, also while both are open.
  Fd f1(v.at("one"), O_RDWR), f2(v.at("d/two"), O_RDWR);
  pwrite_str(f1.get(), "via-one", 100);
  EXPECT_EQ(pread_str(f2.get(), 7, 100), "via-one");
  pwrite_str(f2.get(), "via-two-extends", 9995);
  EXPECT_EQ(pread_str(f1.get(), 100, 9995), "via-two-extends");
  std::string expect = data;
  expect.replace(100, 7, "via-one");
  expect.replace(9995, 5, "via-t");
  expect += "wo-extends";
  ASSERT_EQ(f1.close(), 0);
  ASSERT_EQ(f2.close(), 0);
  EXPECT_EQ(file_size(v.at("one")), 10010);

  v.remount();  // both names decrypt (one file, one header)
  EXPECT_SAME_BYTES(read_file(v.at("one")), expect);
  EXPECT_SAME_BYTES(read_file(v.at("d/two")), expect);
  EXPECT_EQ(lstat_of(v.at("one")).st_ino, lstat_of(v.at("d/two")).st_ino);

  ASSERT_EQ(::unlink(v.at("one").c_str()), 0);
  EXPECT_EQ(lstat_of(v.at("d/two")).st_nlink, 1u);
  EXPECT_SAME_BYTES(read_file(v.at("d/two")), expect);
  // Links to directories are refused.
  EXPECT_EQ(::link(v.at("d").c_str(), v.at("dlink").c_str()), -1);
  EXPECT_EQ(errno, EPERM);
  v.remount();
  EXPECT_EQ(lstat_of(v.at("d/two")).st_nlink, 1u);
  EXPECT_SAME_BYTES(read_file(v.at("d/two")), expect);
}

TEST(Links, FifoAndSocketNodes) {
  PosixVault v;
  ASSERT_EQ(::mkfifo(v.at("fifo").c_str(), 0640), 0) << err_str(errno);
  struct stat st = lstat_of(v.at("fifo"));
  EXPECT_TRUE(S_ISFIFO(st.st_mode));
  EXPECT_EQ(st.st_mode & 07777, 0640u);
  EXPECT_TRUE(S_ISFIFO(lstat_of(v.backing_at("fifo")).st_mode));
  {
    // The pipe itself is the kernel's: it works through the mount.
    Fd fifo(v.at("fifo"), O_RDWR | O_NONBLOCK);
    ASSERT_TRUE(fifo.ok()) << err_str(errno);
    ASSERT_EQ(::write(fifo.get(), "ping", 4), 4);
    char buf[8] = {};
    ASSERT_EQ(::read(fifo.get(), buf, sizeof buf), 4);
    EXPECT_EQ(std::string(buf, 4), "ping");
  }

  int s = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(s, 0);
  Fd server(s);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  const std::string path = v.at("sock");
  ASSERT_LT(path.size(), sizeof addr.sun_path);
  std::strcpy(addr.sun_path, path.c_str());
  ASSERT_EQ(::bind(server.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0) << err_str(errno);
  ASSERT_EQ(::listen(server.get(), 1), 0);
  EXPECT_TRUE(S_ISSOCK(lstat_of(v.at("sock")).st_mode));
  EXPECT_TRUE(S_ISSOCK(lstat_of(v.backing_at("sock")).st_mode));
  Fd client(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  ASSERT_EQ(::connect(client.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0) << err_str(errno);
  Fd conn(::accept4(server.get(), nullptr, nullptr, SOCK_CLOEXEC));
  ASSERT_TRUE(conn.ok());
  ASSERT_EQ(::write(client.get(), "hi", 2), 2);
  char buf[4] = {};
  ASSERT_EQ(::read(conn.get(), buf, sizeof buf), 2);
  // A bound socket pins its path (and so the mount): close all before unmounting.
  conn.reset();
  client.reset();
  server.reset();

  // Device nodes are created as such (root daemon); nothing reads through them here.
  ASSERT_EQ(::mknod(v.at("null").c_str(), S_IFCHR | 0600, makedev(1, 3)), 0) << err_str(errno);
  st = lstat_of(v.at("null"));
  EXPECT_TRUE(S_ISCHR(st.st_mode));
  EXPECT_EQ(st.st_rdev, makedev(1, 3));

  ASSERT_EQ(v.unmount(), 0);
  v.mount();
  EXPECT_TRUE(S_ISFIFO(lstat_of(v.at("fifo")).st_mode));
  EXPECT_TRUE(S_ISSOCK(lstat_of(v.at("sock")).st_mode));
}

TEST(Links, MknodRegularCreatesAnEmptyEncryptedFile) {
  PosixVault v;
  ASSERT_EQ(::mknod(v.at("plain").c_str(), S_IFREG | 0640, 0), 0) << err_str(errno);
  struct stat st = lstat_of(v.at("plain"));
  EXPECT_TRUE(S_ISREG(st.st_mode));
  EXPECT_EQ(st.st_mode & 07777, 0640u);
  EXPECT_EQ(st.st_size, 0);
  EXPECT_EQ(read_file(v.at("plain")), "");
  EXPECT_EQ(::mknod(v.at("plain").c_str(), S_IFREG | 0640, 0), -1);
  EXPECT_EQ(errno, EEXIST);
  // It is a kmsfs file (header and all), not a bare empty backing file.
  auto cat = kmsfs({"cat", "--backing-path", v.backing_at("plain"), "--keyring", v.keyring()});
  EXPECT_EQ(cat.exit_code, 0) << cat.err;
  EXPECT_EQ(cat.out, "");
  Fd fd(v.at("plain"), O_WRONLY);
  ASSERT_TRUE(fd.ok());
  write_all(fd.get(), "filled");
  ASSERT_EQ(fd.close(), 0);
  v.remount();
  EXPECT_EQ(read_file(v.at("plain")), "filled");
}

}  // namespace
}  // namespace kmsfs::testing
