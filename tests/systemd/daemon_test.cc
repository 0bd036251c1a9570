// The mount daemon as systemd runs it (label `systemd`): sd_notify readiness against a
// notification socket the test owns (as the service manager's), the stop on SIGTERM, and
// where logs go when there is neither a journal nor a syslog socket.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "mounted_vault.h"

namespace kmsfs::testing {
namespace {

// The service manager's end of NOTIFY_SOCKET: a unix datagram socket.
class NotifySocket {
 public:
  explicit NotifySocket(const std::string& path) : path_(path) {
    fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_un sa{};
    sa.sun_family = AF_UNIX;
    path.copy(sa.sun_path, sizeof sa.sun_path - 1);
    if (fd_ < 0 || ::bind(fd_, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0)
      throw std::runtime_error("cannot bind " + path);
  }
  ~NotifySocket() {
    ::close(fd_);
    ::unlink(path_.c_str());
  }
  // The next message, or "" if none came within `wait` (the test then fails on content;
  // the bound only keeps a broken daemon from hanging the test).
  std::string next(std::chrono::seconds wait = std::chrono::seconds(60)) {
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(wait.count() * 1000)) != 1) return "";
    char buf[4096];
    ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
    return n > 0 ? std::string(buf, static_cast<size_t>(n)) : "";
  }

 private:
  std::string path_;
  int fd_ = -1;
};

bool has_line(const std::string& msg, const std::string& line) {
  std::istringstream in(msg);
  for (std::string l; std::getline(in, l);)
    if (l == line) return true;
  return false;
}

dev_t dev_of(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 ? st.st_dev : 0;
}

// A vault made and mounted by MountedVault, then unmounted so the test can run the daemon
// itself, as a unit would.
class ServiceDaemon : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::access("/dev/fuse", R_OK | W_OK) != 0 || ::geteuid() != 0) {
      if (const char* ci = std::getenv("CI"); ci && std::string(ci) == "true") FAIL() << "needs root and /dev/fuse";
      GTEST_SKIP() << "SKIPPED LOUDLY: needs root and /dev/fuse";
    }
    v_ = std::make_unique<MountedVault>();
    ASSERT_EQ(v_->unmount(), 0);
    parent_dev_ = dev_of(v_->tmp().path());
  }
  void TearDown() override {
    ::unsetenv("NOTIFY_SOCKET");
    if (daemon_) {
      if (dev_of(v_->mnt()) != parent_dev_) ::umount2(v_->mnt().c_str(), MNT_DETACH);
      daemon_->kill(SIGKILL);
      daemon_->wait(std::chrono::seconds(10));
    }
  }
  bool mounted() const { return dev_of(v_->mnt()) != parent_dev_; }
  std::vector<std::string> mount_argv() const {
    return {kmsfs_bin(), "mount", v_->backing(), v_->mnt(), "--foreground", "--keyring", v_->keyring()};
  }
  // The daemon started with NOTIFY_SOCKET set, as systemd starts a Type=notify service.
  void start_notified(NotifySocket&, const std::string& socket_path) {
    ::setenv("NOTIFY_SOCKET", socket_path.c_str(), 1);
    daemon_ = std::make_unique<Background>(mount_argv(), v_->tmp() / "service.log");
    ::unsetenv("NOTIFY_SOCKET");
  }
  std::string daemon_log() const {
    std::ifstream in(v_->tmp() / "service.log");
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }
  // Messages up to and including the first with `line`; fails the test if none comes.
  std::vector<std::string> until(NotifySocket& sock, const std::string& line) {
    std::vector<std::string> got;
    for (;;) {
      std::string m = sock.next();
      if (m.empty()) {
        ADD_FAILURE() << "no " << line << " from the daemon; log:\n" << daemon_log();
        return got;
      }
      got.push_back(m);
      if (has_line(m, line)) return got;
    }
  }

  std::unique_ptr<MountedVault> v_;
  std::unique_ptr<Background> daemon_;
  dev_t parent_dev_ = 0;
};

TEST_F(ServiceDaemon, ReadyOnlyOnceTheMountAnswersAndStoppingUnmountsOnSigterm) {
  const std::string sock_path = v_->tmp() / "notify.sock";
  NotifySocket sock(sock_path);
  start_notified(sock, sock_path);

  std::vector<std::string> before = until(sock, "READY=1");
  // Right when READY=1 arrives the mount answers: the mountpoint is the FUSE filesystem.
  ASSERT_TRUE(mounted()) << "READY=1 came before the mount answered";
  ASSERT_FALSE(before.empty());
  bool starting = false;
  for (const auto& m : before) starting = starting || m.find("STATUS=starting: ") != std::string::npos;
  EXPECT_TRUE(starting) << "no start-up STATUS= before READY=1";
  EXPECT_NE(before.back().find("STATUS=serving " + v_->backing() + " at " + v_->mnt()), std::string::npos)
      << before.back();

  write_file(v_->at("kept.txt"), "written before the stop\n");
  daemon_->kill(SIGTERM);
  until(sock, "STOPPING=1");
  EXPECT_EQ(daemon_->wait(std::chrono::seconds(60)), 0) << daemon_log();
  daemon_.reset();
  EXPECT_FALSE(mounted()) << "the mount outlived the daemon";
  ProcessResult cat = kmsfs({"cat", v_->backing() + "/kept.txt", "--keyring", v_->keyring()});
  EXPECT_EQ(cat.out, "written before the stop\n");
}

// systemctl stop while a client holds a file open with data only in the kernel's
// writeback cache: the mount leaves the namespace at once, the daemon keeps serving the
// open file, and what the client wrote reaches the vault once it closes the file.
TEST_F(ServiceDaemon, SigtermWithAFileOpenDetachesAndLosesNothing) {
  const std::string sock_path = v_->tmp() / "notify.sock";
  NotifySocket sock(sock_path);
  start_notified(sock, sock_path);
  until(sock, "READY=1");
  ASSERT_TRUE(mounted());

  const std::string data = pattern(3 << 20, 7);
  int fd = ::open(v_->at("open.bin").c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::write(fd, data.data(), data.size() / 2), static_cast<ssize_t>(data.size() / 2));
  daemon_->kill(SIGTERM);
  until(sock, "STOPPING=1");
  // The STATUS after STOPPING says the mount is detached and waits for open files.
  std::string status;
  while (status.find("waiting for its open files") == std::string::npos) {
    status = sock.next();
    if (status.empty()) break;
  }
  EXPECT_NE(status, "") << "no STATUS= about the detached mount; log:\n" << daemon_log();
  EXPECT_FALSE(mounted()) << "a busy mount was not detached";
  EXPECT_TRUE(daemon_->running()) << "the daemon quit with a file still open";
  ASSERT_EQ(::write(fd, data.data() + data.size() / 2, data.size() - data.size() / 2),
            static_cast<ssize_t>(data.size() - data.size() / 2));
  ASSERT_EQ(::close(fd), 0);
  EXPECT_EQ(daemon_->wait(std::chrono::seconds(60)), 0) << daemon_log();
  daemon_.reset();
  ProcessResult cat = kmsfs({"cat", v_->backing() + "/open.bin", "--keyring", v_->keyring()});
  EXPECT_TRUE(cat.out == data) << "the vault holds " << cat.out.size() << " of " << data.size() << " bytes";
}

// No journal (JOURNAL_STREAM unset) and no syslog socket: a daemonized mount logs to a
// file, says so, and honours --log-level.
TEST_F(ServiceDaemon, WithoutJournalOrSyslogLogsGoToAFileTheMountNames) {
  const std::string log_dir = v_->tmp() / "logs";
  ProcessOptions po;
  po.env = {"KMSFS_LOG_DIR=" + log_dir, "KMSFS_SYSLOG_SOCKET=" + (v_->tmp() / "no-such-socket")};
  ::unsetenv("JOURNAL_STREAM");
  ProcessResult r = kmsfs({"mount", v_->backing(), v_->mnt(), "--keyring", v_->keyring(), "--log-level", "debug"},
                          true, po);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ASSERT_TRUE(mounted());
  std::smatch m;
  ASSERT_TRUE(std::regex_search(r.out, m, std::regex("logs go to (/[^)]+)\\)"))) << r.out;
  const std::string log_path = m[1];
  EXPECT_EQ(log_path.rfind(log_dir + "/", 0), 0u) << log_path;
  write_file(v_->at("a.txt"), "x");
  kmsfs({"umount", v_->mnt()});
  std::string log = read_file(log_path);
  EXPECT_NE(log.find("info: serving " + v_->backing()), std::string::npos) << log;
  EXPECT_NE(log.find("debug: "), std::string::npos) << "--log-level debug logged no debug line:\n" << log;
  EXPECT_NE(log.find("unmounted " + v_->mnt()), std::string::npos) << log;
  struct stat st {};
  ASSERT_EQ(::stat(log_path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0007, 0u) << "the log file is world-accessible";

  // --log-level warning: the next mount's info lines are not written.
  r = kmsfs({"mount", v_->backing(), v_->mnt(), "--keyring", v_->keyring(), "--log-level", "warning"}, true, po);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  kmsfs({"umount", v_->mnt()});
  EXPECT_EQ(read_file(log_path), log) << "--log-level warning still logged info lines";
}

TEST_F(ServiceDaemon, AnUnknownLogLevelIsAUsageError) {
  ProcessResult r = kmsfs({"mount", v_->backing(), v_->mnt(), "--log-level", "chatty"}, false);
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("chatty"), std::string::npos) << r.err;
  EXPECT_FALSE(mounted());
}

}  // namespace
}  // namespace kmsfs::testing
