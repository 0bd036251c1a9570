// The audit log file writer (control/audit_log.h) when its disk fails: a real write(2)
// failure, made by a file size limit (RLIMIT_FSIZE: EFBIG past it, with SIGXFSZ ignored).
#include "control/audit_log.h"

#include <sys/resource.h>
#include <sys/stat.h>

#include <gtest/gtest.h>

#include <csignal>
#include <fstream>
#include <string>

#include "cli/mount_config.h"
#include "temp_dir.h"

namespace kmsfs {
namespace {

AuditEvent unwrap_event() {
  AuditEvent e;
  e.op = "unwrap";
  e.key = "keyring:main@1";
  e.file_id = "00112233445566778899aabbccddeeff";
  e.detail = std::string(200, 'x');  // lines of ~350 bytes
  return e;
}

// Lowers this process's file size limit for the scope (and ignores SIGXFSZ, so a write
// past it fails with EFBIG instead of killing the test).
class FileSizeLimit {
 public:
  explicit FileSizeLimit(rlim_t bytes) {
    ::getrlimit(RLIMIT_FSIZE, &saved_);
    old_handler_ = std::signal(SIGXFSZ, SIG_IGN);
    rlimit r = saved_;
    r.rlim_cur = bytes;
    ::setrlimit(RLIMIT_FSIZE, &r);
  }
  ~FileSizeLimit() {
    ::setrlimit(RLIMIT_FSIZE, &saved_);
    std::signal(SIGXFSZ, old_handler_);
  }

 private:
  rlimit saved_{};
  void (*old_handler_)(int) = nullptr;
};

TEST(AuditLogFile, AFailingDiskIsCountedAndOperationsGoOnByDefault) {
  testing::TempDir dir("audit-unit");
  AuditLogOptions o;
  o.path = dir / "audit.jsonl";
  auto log = AuditLog::open(o);
  ASSERT_TRUE(log.ok()) << log.status().message();
  {
    FileSizeLimit limit(4096);
    for (int i = 0; i < 40; ++i) EXPECT_TRUE((*log)->record(unwrap_event()).ok());
    (*log)->wait_written();
  }
  const AuditLogStats stats = (*log)->stats();
  EXPECT_GE(stats.write_failures, 20u);
  EXPECT_EQ(stats.records + stats.write_failures, 40u);
  EXPECT_GT(stats.last_failure_unix, 0);
  struct stat st;
  ASSERT_EQ(::stat(o.path.c_str(), &st), 0);
  EXPECT_LE(st.st_size, 4096);
  // The writer goes on once the disk takes lines again.
  EXPECT_TRUE((*log)->record(unwrap_event()).ok());
  (*log)->wait_written();
  EXPECT_EQ((*log)->stats().records, stats.records + 1);
}

TEST(AuditLogFile, ARequiredLogFailsTheOperationWhoseLineIsLost) {
  testing::TempDir dir("audit-unit");
  AuditLogOptions o;
  o.path = dir / "audit.jsonl";
  o.required = true;
  auto log = AuditLog::open(o);
  ASSERT_TRUE(log.ok()) << log.status().message();
  EXPECT_TRUE((*log)->record(unwrap_event()).ok());
  FileSizeLimit limit(4096);
  int refused = 0;
  for (int i = 0; i < 40; ++i) {
    Status s = (*log)->record(unwrap_event());
    if (!s.ok()) {
      ++refused;
      EXPECT_EQ(s.code(), Code::kUnavailable);
      EXPECT_NE(s.message().find("audit log"), std::string::npos) << s.message();
    }
  }
  EXPECT_GE(refused, 20);  // everything past 4 KiB
  const AuditLogStats stats = (*log)->stats();
  EXPECT_EQ(stats.write_failures, static_cast<uint64_t>(refused));
  EXPECT_EQ(stats.records, 41u - refused);
}

TEST(AuditLogFile, LinesHoldOnlyTheFieldsThatApply) {
  AuditEvent e;
  e.op = "flush";
  e.detail = "key cache";
  e.count = 3;
  e.trigger = "user";
  e.requester.reset();
  const std::string line = AuditLog::format(e, std::chrono::system_clock::time_point{});
  EXPECT_EQ(line,
            R"({"time":"1970-01-01T00:00:00.000Z","op":"flush","result":"ok","trigger":"user","detail":"key cache","count":3})");
}

// One table entry covers the flag, the -o option (fstab) and the config file key.
TEST(AuditLogFile, OptionsAreMountSettings) {
  for (const char* key : {"audit_log", "audit_log_max_size", "audit_log_keep", "audit_required"}) {
    bool found = false;
    for (const auto& s : cli::mount_option_specs()) found = found || s.key == key;
    EXPECT_TRUE(found) << key;
  }
}

}  // namespace
}  // namespace kmsfs
