// Where the mount daemon's log lines go, chosen once at start and said in the mount's
// success message, so they never go silently nowhere:
//   - the journal, natively (a priority per line and structured fields from
//     base/log_fields.h: KMSFS_FILE_ID, KMSFS_KEY, ERRNO), when stderr is the journal
//     (systemd's JOURNAL_STREAM names its device:inode), foreground or daemonized;
//   - stderr, in the foreground otherwise;
//   - syslog, daemonized with a syslog socket (/dev/log);
//   - otherwise a file, $KMSFS_LOG_DIR (default /var/log/kmsfs) / <mount name>.log,
//     rotated by size.
// The level: --log-level, else SPDLOG_LEVEL, else info.
#pragma once

#include <string>

#include "base/status.h"

namespace kmsfs::cli {

struct DaemonLogOptions {
  bool daemonized = false;
  std::string mountpoint;  // names the log file: /mnt/plain -> mnt-plain.log
  std::string level;       // --log-level, "" if not given
};

// Installs the default logger. Returns where lines go, for the user: "the journal",
// "stderr", "syslog" or the file's path. Fails only if no sink can be opened.
Result<std::string> start_daemon_log(const DaemonLogOptions& opts);

// Whether `level` is one --log-level accepts (trace, debug, info, warning, error,
// critical, off; warn and err too).
bool valid_log_level(const std::string& level);

// The file a daemon without journal or syslog writes (exposed for tests and docs).
std::string log_file_path(const std::string& mountpoint);

}  // namespace kmsfs::cli
