// The daemon under a low open-file limit it cannot raise (a hard limit of 1,024, no
// CAP_SYS_RESOURCE, as a non-root daemon or a unit without LimitNOFILE= runs): clients
// can hold open all of it but the documented reserve, one more open fails with EMFILE
// (never EIO), and the daemon says so in one log line naming the limit and what to raise.
#include <sys/resource.h>

#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <thread>

#include "posix_util.h"

namespace kmsfs::testing {
namespace {

constexpr int kHardLimit = 1024;
// docs/OPERATIONS.md "Open files": 64 for the daemon itself plus one per worker thread
// (--threads, 16 by default); clients hold the rest, the directories they use included.
constexpr int kReserve = 64 + 16;

size_t count_lines(const std::string& log, const std::string& needle) {
  size_t n = 0;
  std::istringstream in(log);
  for (std::string l; std::getline(in, l);) n += l.find(needle) != std::string::npos;
  return n;
}

TEST(FdLimit, ClientsHoldAllButTheReserveOpenAndRunningOutIsEmfileLoggedOnce) {
  if (::access("/usr/bin/prlimit", X_OK) != 0 || ::access("/usr/bin/setpriv", X_OK) != 0)
    GTEST_SKIP() << "needs prlimit and setpriv (util-linux)";
  // This process must be able to hold more than the daemon may.
  rlimit mine{};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &mine), 0);
  if (mine.rlim_cur < 4 * kHardLimit) {
    rlimit more{4 * kHardLimit, std::max<rlim_t>(mine.rlim_max, 4 * kHardLimit)};
    ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &more), 0) << err_str(errno);
  }
  VaultOptions o;
  o.daemon_prefix = {"/usr/bin/prlimit", "--nofile=" + std::to_string(kHardLimit) + ":" + std::to_string(kHardLimit),
                     "--", "/usr/bin/setpriv", "--inh-caps=-sys_resource", "--bounding-set=-sys_resource", "--"};
  PosixVault v(o);
  EXPECT_EQ(count_lines(v.log(), "open files: limit " + std::to_string(kHardLimit)), 1u) << v.log();

  const int files = kHardLimit + 100;
  std::filesystem::create_directory(v.at("d"));
  for (int i = 0; i < files; ++i) write_file(v.at("d/f" + std::to_string(i)), "file " + std::to_string(i));

  std::vector<Fd> held;
  int err = 0;
  for (int i = 0; i < files; ++i) {
    Fd fd(v.at("d/f" + std::to_string(i)), O_RDONLY);
    if (!fd.ok()) {
      err = errno;
      break;
    }
    held.push_back(std::move(fd));
  }
  RecordProperty("held_open", static_cast<int>(held.size()));
  // Every file held, and the directory d.
  EXPECT_GE(static_cast<int>(held.size()) + 1, kHardLimit - kReserve) << "the daemon's log:\n" << v.log();
  ASSERT_LT(static_cast<int>(held.size()), files) << "the daemon's limit did not hold";
  EXPECT_TRUE(err == EMFILE || err == ENFILE) << err_str(err);
  // Held files work; more opens keep failing the same way, and the log says it once.
  char buf[32] = {};
  EXPECT_GT(::pread(held.back().get(), buf, sizeof buf, 0), 0) << err_str(errno);
  for (int i = 0; i < 20; ++i) {
    Fd more(v.at("d/f" + std::to_string(files - 1 - i)), O_RDONLY);
    EXPECT_FALSE(more.ok());
    EXPECT_TRUE(errno == EMFILE || errno == ENFILE) << err_str(errno);
  }
  const std::string log = v.log();
  EXPECT_EQ(count_lines(log, "out of file descriptors"), 1u) << log;
  EXPECT_EQ(count_lines(log, "LimitNOFILE="), 1u) << log;
  EXPECT_EQ(count_lines(log, "may have " + std::to_string(kHardLimit) + " files open"), 1u) << log;

  // The reserve was kept: the daemon is whole (libfuse had the descriptors it needed;
  // one it cannot get ends the session at unmount).
  EXPECT_EQ(count_lines(log, "libfuse"), 0u) << log;

  // Closed again, opens work again once the kernel has forgotten inodes the daemon asked
  // it to (their descriptors go with them; the closes reach the daemon asynchronously).
  held.clear();
  const std::string last = v.at("d/f" + std::to_string(files - 1));
  bool reopened = false;
  for (int i = 0; i < 100 && !reopened; ++i) {
    Fd again(last, O_RDONLY);
    reopened = again.ok();
    if (!reopened) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_TRUE(reopened) << err_str(errno);
  EXPECT_EQ(read_file(last), "file " + std::to_string(files - 1));
  EXPECT_EQ(v.unmount(), 0) << v.log();
}

}  // namespace
}  // namespace kmsfs::testing
