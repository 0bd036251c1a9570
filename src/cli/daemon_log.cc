#include "cli/daemon_log.h"

#include <sys/stat.h>
#include <syslog.h>
#include <systemd/sd-journal.h>
#include <unistd.h>

#include <spdlog/cfg/env.h>
#include <spdlog/sinks/base_sink.h>
#include <spdlog/sinks/rotating_file_sink.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/sinks/syslog_sink.h>
#include <spdlog/spdlog.h>

#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <vector>

#include "base/log_fields.h"

namespace kmsfs::cli {

namespace {

constexpr size_t kLogFileBytes = 10 * 1024 * 1024;
constexpr size_t kLogFilesKept = 5;

std::string env_or(const char* name, const char* fallback) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? v : fallback;
}

// systemd connects stdout/stderr to the journal and sets JOURNAL_STREAM=DEV:INODE of that
// stream; a process whose stderr was redirected since must not log there natively.
bool stderr_is_journal() {
  const char* js = std::getenv("JOURNAL_STREAM");
  if (js == nullptr) return false;
  struct stat st {};
  if (::fstat(STDERR_FILENO, &st) != 0) return false;
  unsigned long long dev = 0, ino = 0;
  if (std::sscanf(js, "%llu:%llu", &dev, &ino) != 2) return false;
  return dev == st.st_dev && ino == st.st_ino;
}

int journal_priority(spdlog::level::level_enum l) {
  switch (l) {
    case spdlog::level::trace:
    case spdlog::level::debug: return LOG_DEBUG;
    case spdlog::level::info: return LOG_INFO;
    case spdlog::level::warn: return LOG_WARNING;
    case spdlog::level::err: return LOG_ERR;
    case spdlog::level::critical: return LOG_CRIT;
    default: return LOG_INFO;
  }
}

// One journal entry per line: MESSAGE, PRIORITY, SYSLOG_IDENTIFIER, the mountpoint, and
// the fields the logging thread attached (LogFields).
class JournalSink final : public spdlog::sinks::base_sink<std::mutex> {
 public:
  explicit JournalSink(std::string mountpoint) : mountpoint_(std::move(mountpoint)) {}

 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    std::vector<std::string> fields;
    fields.reserve(6 + LogFields::current().size());
    fields.push_back("MESSAGE=" + std::string(msg.payload.data(), msg.payload.size()));
    fields.push_back("PRIORITY=" + std::to_string(journal_priority(msg.level)));
    fields.push_back("SYSLOG_IDENTIFIER=kmsfs");
    fields.push_back("KMSFS_MOUNTPOINT=" + mountpoint_);
    for (const auto& f : LogFields::current()) fields.push_back(std::string(f.name) + "=" + f.value);
    std::vector<iovec> iov;
    iov.reserve(fields.size());
    for (auto& f : fields) iov.push_back({f.data(), f.size()});
    if (sd_journal_sendv(iov.data(), static_cast<int>(iov.size())) < 0) {
      // journald gone (restarting?): the stream it gave us may still take the line.
      std::string line = "kmsfs: " + std::string(spdlog::level::to_string_view(msg.level).data()) + ": " +
                         std::string(msg.payload.data(), msg.payload.size()) + "\n";
      (void)!::write(STDERR_FILENO, line.data(), line.size());
    }
  }
  void flush_() override {}

 private:
  const std::string mountpoint_;
};

// systemd-escape's path rule, simplified: "/mnt/my vault" -> "mnt-my\x20vault".
std::string mount_name(const std::string& mountpoint) {
  std::string out;
  size_t i = 0;
  while (i < mountpoint.size() && mountpoint[i] == '/') ++i;
  for (; i < mountpoint.size(); ++i) {
    const unsigned char c = static_cast<unsigned char>(mountpoint[i]);
    if (c == '/') {
      if (!out.empty() && out.back() != '-') out += '-';
    } else if (std::isalnum(c) || c == '_' || (c == '.' && !out.empty())) {
      out += static_cast<char>(c);
    } else {
      char hex[5];
      std::snprintf(hex, sizeof hex, "\\x%02x", c);
      out += hex;
    }
  }
  while (!out.empty() && out.back() == '-') out.pop_back();
  return out.empty() ? "root" : out;
}

void install(std::shared_ptr<spdlog::logger> logger, const std::string& level) {
  spdlog::set_default_logger(std::move(logger));
  spdlog::cfg::load_env_levels();  // SPDLOG_LEVEL=debug: the debug lines, libfuse's too
  if (!level.empty()) spdlog::set_level(spdlog::level::from_str(level));
}

}  // namespace

bool valid_log_level(const std::string& level) {
  if (level == "off") return true;
  return spdlog::level::from_str(level) != spdlog::level::off;
}

std::string log_file_path(const std::string& mountpoint) {
  return env_or("KMSFS_LOG_DIR", "/var/log/kmsfs") + "/" + mount_name(mountpoint) + ".log";
}

Result<std::string> start_daemon_log(const DaemonLogOptions& opts) {
  if (stderr_is_journal()) {
    auto logger = std::make_shared<spdlog::logger>("kmsfs", std::make_shared<JournalSink>(opts.mountpoint));
    install(logger, opts.level);
    return std::string("the journal");
  }
  if (!opts.daemonized) {
    auto logger = spdlog::stderr_logger_mt("kmsfs-stderr");
    logger->set_pattern("kmsfs[%P]: %l: %v");
    install(logger, opts.level);
    return std::string("stderr");
  }
  // Only the check can be pointed elsewhere (tests): syslog(3) itself writes to /dev/log.
  struct stat st {};
  if (::stat(env_or("KMSFS_SYSLOG_SOCKET", "/dev/log").c_str(), &st) == 0 && S_ISSOCK(st.st_mode)) {
    auto logger = spdlog::syslog_logger_mt("kmsfs-syslog", "kmsfs", LOG_PID, LOG_DAEMON);
    logger->set_pattern("%l: %v");
    install(logger, opts.level);
    return std::string("syslog");
  }
  const std::string path = log_file_path(opts.mountpoint);
  std::error_code ec;
  std::filesystem::create_directories(std::filesystem::path(path).parent_path(), ec);
  // Readable by the admin group, never by everyone (the daemon later runs with umask 0).
  const mode_t old_umask = ::umask(027);
  try {
    auto logger = spdlog::rotating_logger_mt("kmsfs-file", path, kLogFileBytes, kLogFilesKept);
    logger->set_pattern("%Y-%m-%dT%H:%M:%S.%e%z kmsfs[%P]: %l: %v");
    // Lines are few; each one should be on disk when someone looks, or after a crash.
    logger->flush_on(spdlog::level::trace);
    install(logger, opts.level);
  } catch (const spdlog::spdlog_ex& e) {
    ::umask(old_umask);
    return Status(Code::kIo, std::string("no syslog socket, and cannot open the log file: ") + e.what(), EIO);
  }
  ::umask(old_umask);
  return path;
}

}  // namespace kmsfs::cli
