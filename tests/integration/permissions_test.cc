// The permission model of a root daemon: with -o allow_other the kernel checks
// permissions (default_permissions is implied), and what another user creates is owned
// by that user, in the mount and in the backing directory.
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include "posix_util.h"

namespace kmsfs::testing {
namespace {

constexpr int kNobody = 65534;

// errno of a failed call, 0 on success (fits an exit status).
int rc_errno(int rc) { return rc < 0 ? errno : 0; }

int as_nobody(const std::function<int()>& fn) { return in_child(fn, kNobody, kNobody); }

void open_tmp_for_others(const MountedVault& v) {
  // mkdtemp makes the test directory 0700; others must be able to reach the mountpoint.
  ASSERT_EQ(::chmod(v.tmp().path().c_str(), 0755), 0);
}

TEST(Permissions, AllowOtherImpliesDefaultPermissionsAndOwnership) {
  VaultOptions o;
  o.mount_args = {"-o", "allow_other"};
  PosixVault v(o);
  open_tmp_for_others(v);
  const std::string line = mount_line(v.mnt());
  EXPECT_NE(line.find("default_permissions"), std::string::npos) << line;
  EXPECT_NE(line.find("allow_other"), std::string::npos) << line;

  ASSERT_EQ(::mkdir(v.at("private").c_str(), 0700), 0);
  write_file(v.at("private/f"), "root's");
  write_file(v.at("secret"), "top secret");
  ASSERT_EQ(::chmod(v.at("secret").c_str(), 0600), 0);
  write_file(v.at("public"), "everyone");
  ASSERT_EQ(::chmod(v.at("public").c_str(), 0644), 0);

  const std::string secret = v.at("secret"), priv = v.at("private"), pub_file = v.at("public");
  EXPECT_EQ(as_nobody([&] { return rc_errno(::open(secret.c_str(), O_RDONLY)); }), EACCES);
  EXPECT_EQ(as_nobody([&] { return rc_errno(::open(pub_file.c_str(), O_WRONLY)); }), EACCES);
  EXPECT_EQ(as_nobody([&] {
              struct stat st;
              return rc_errno(::stat((priv + "/f").c_str(), &st));
            }),
            EACCES);
  EXPECT_EQ(as_nobody([&] { return ::opendir(priv.c_str()) ? 0 : errno; }), EACCES);
  EXPECT_EQ(as_nobody([&] { return rc_errno(::chmod(secret.c_str(), 0666)); }), EPERM);
  EXPECT_EQ(as_nobody([&] { return rc_errno(::chown(pub_file.c_str(), kNobody, kNobody)); }), EPERM);
  // What the mode allows is allowed.
  EXPECT_EQ(as_nobody([&] {
              int fd = ::open(pub_file.c_str(), O_RDONLY);
              if (fd < 0) return errno;
              char buf[16];
              ssize_t n = ::read(fd, buf, sizeof buf);
              ::close(fd);
              return n == 8 && std::string(buf, 8) == "everyone" ? 0 : 200;
            }),
            0);

  // A world-writable sticky directory: nobody's new entries are nobody's.
  ASSERT_EQ(::mkdir(v.at("pub").c_str(), 0755), 0);
  ASSERT_EQ(::chmod(v.at("pub").c_str(), 01777), 0);
  write_file(v.at("pub/roots"), "root");
  const std::string pub = v.at("pub");
  EXPECT_EQ(as_nobody([&] {
              int fd = ::open((pub + "/mine").c_str(), O_CREAT | O_EXCL | O_WRONLY, 0640);
              if (fd < 0) return errno;
              bool ok = ::write(fd, "mine", 4) == 4;
              if (::close(fd) != 0 || !ok) return 201;
              if (::mkdir((pub + "/mydir").c_str(), 0750) != 0) return 202;
              if (::symlink("mine", (pub + "/mylink").c_str()) != 0) return 203;
              if (::mkfifo((pub + "/myfifo").c_str(), 0600) != 0) return 204;
              return 0;
            }),
            0);
  for (const char* name : {"mine", "mydir", "mylink", "myfifo"}) {
    SCOPED_TRACE(name);
    struct stat m = lstat_of(v.at(std::string("pub/") + name));
    struct stat b = lstat_of(v.backing_at(std::string("pub/") + name));
    EXPECT_EQ(m.st_uid, static_cast<uid_t>(kNobody));
    EXPECT_EQ(m.st_gid, static_cast<gid_t>(kNobody));
    EXPECT_EQ(b.st_uid, static_cast<uid_t>(kNobody));
    EXPECT_EQ(b.st_gid, static_cast<gid_t>(kNobody));
  }
  EXPECT_EQ(lstat_of(v.at("pub/mine")).st_mode & 07777, 0640u);
  EXPECT_EQ(lstat_of(v.at("pub/mydir")).st_mode & 07777, 0750u);
  EXPECT_EQ(read_file(v.at("pub/mine")), "mine");
  // The sticky bit protects root's file from nobody; nobody's own file is theirs to remove.
  const std::string roots = v.at("pub/roots"), mine = v.at("pub/mine");
  EXPECT_EQ(as_nobody([&] { return rc_errno(::unlink(roots.c_str())); }), EPERM);
  EXPECT_EQ(as_nobody([&] { return rc_errno(::rename(roots.c_str(), (pub + "/stolen").c_str())); }), EPERM);
  EXPECT_EQ(as_nobody([&] {
              int fd = ::open(mine.c_str(), O_RDONLY);
              if (fd < 0) return errno;
              ::close(fd);
              return rc_errno(::unlink((pub + "/mylink").c_str()));
            }),
            0);

  v.remount();
  EXPECT_EQ(read_file(v.at("pub/mine")), "mine");
  EXPECT_EQ(lstat_of(v.at("pub/mine")).st_uid, static_cast<uid_t>(kNobody));
  EXPECT_EQ(as_nobody([&] { return rc_errno(::open(secret.c_str(), O_RDONLY)); }), EACCES);
}

// Writing, truncating or O_TRUNC-opening a set-id file as an unprivileged user drops the
// set-id bits, as on a local filesystem; root (CAP_FSETID) keeps them. kmsfs negotiates
// FUSE_HANDLE_KILLPRIV_V2 (so small writes skip a security.capability round trip), which
// makes this the daemon's job.
TEST(Permissions, UnprivilegedWritesDropSetIdBits) {
  VaultOptions o;
  o.mount_args = {"-o", "allow_other"};
  PosixVault v(o);
  open_tmp_for_others(v);
  const std::string f = v.at("prog");
  write_file(f, "#!/bin/sh\n");
  auto mode_of = [&](const std::string& p) { return lstat_of(p).st_mode & 07777; };
  auto append_as_nobody = [&] {
    return as_nobody([&] {
      int fd = ::open(f.c_str(), O_WRONLY | O_APPEND);
      if (fd < 0) return errno;
      ssize_t n = ::write(fd, "x", 1);
      ::close(fd);
      return n == 1 ? 0 : 200;
    });
  };

  ASSERT_EQ(::chmod(f.c_str(), 04777), 0);
  EXPECT_EQ(append_as_nobody(), 0);
  EXPECT_EQ(mode_of(f), 0777u);
  EXPECT_EQ(mode_of(v.backing_at("prog")), 0777u);

  ASSERT_EQ(::chmod(f.c_str(), 06777), 0);
  EXPECT_EQ(as_nobody([&] { return rc_errno(::truncate(f.c_str(), 3)); }), 0);
  EXPECT_EQ(mode_of(f), 0777u);

  ASSERT_EQ(::chmod(f.c_str(), 04777), 0);
  EXPECT_EQ(as_nobody([&] {
              int fd = ::open(f.c_str(), O_WRONLY | O_TRUNC);
              if (fd < 0) return errno;
              ::close(fd);
              return 0;
            }),
            0);
  EXPECT_EQ(mode_of(f), 0777u);

  // Set-group-id without group execute is mandatory-locking, not privilege: it stays.
  ASSERT_EQ(::chmod(f.c_str(), 02766), 0);
  EXPECT_EQ(append_as_nobody(), 0);
  EXPECT_EQ(mode_of(f), 02766u);

  // Root keeps the bits.
  ASSERT_EQ(::chmod(f.c_str(), 04777), 0);
  {
    int fd = ::open(f.c_str(), O_WRONLY | O_APPEND);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::write(fd, "y", 1), 1);
    ::close(fd);
  }
  EXPECT_EQ(mode_of(f), 04777u);
}

TEST(Permissions, WithoutAllowOtherOtherUsersAreShutOut) {
  PosixVault v;
  open_tmp_for_others(v);
  write_file(v.at("f"), "x");
  ASSERT_EQ(::chmod(v.at("f").c_str(), 0644), 0);
  const std::string mnt = v.mnt(), f = v.at("f");
  EXPECT_EQ(as_nobody([&] {
              struct stat st;
              return rc_errno(::stat(f.c_str(), &st));
            }),
            EACCES);
  EXPECT_EQ(as_nobody([&] { return ::opendir(mnt.c_str()) ? 0 : errno; }), EACCES);
}

}  // namespace
}  // namespace kmsfs::testing
