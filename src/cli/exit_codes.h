// The one mapping from a Status to the process exit status of the `kmsfs` command. Every
// command returns a Status; main() turns it into an exit code here and nowhere else.
// docs/CLI.md documents the table; scripts rely on it, so never renumber.
#pragma once

#include <cerrno>

#include "base/status.h"
#include "fsck/report.h"

namespace kmsfs::cli {

enum ExitCode : int {
  kExitOk = 0,
  kExitInternal = 1,     // a bug, or anything not listed below
  kExitUsage = 2,        // bad option or argument (kInvalidArgument, CLI parse errors)
  kExitNotFound = 3,     // file, vault, key or keyring not there
  kExitPermission = 4,   // wrong passphrase, key disabled, access denied
  kExitCorrupt = 5,      // authentication failure, damaged header/block/config/keyring
  kExitUnsupported = 6,  // newer format version or unknown critical feature
  kExitIo = 7,           // a system call failed
  kExitExists = 8,       // refusing to overwrite
  kExitUnavailable = 9,  // a dependency (KMS, --extpass) did not answer
  kExitUnsafeConfig = 10,  // a mount config file others may write (cli/mount_config.h)
};

constexpr int exit_code(Code c) noexcept {
  switch (c) {
    case Code::kOk: return kExitOk;
    case Code::kInvalidArgument: return kExitUsage;
    case Code::kNotFound: return kExitNotFound;
    case Code::kAlreadyExists: return kExitExists;
    case Code::kPermissionDenied: return kExitPermission;
    case Code::kCorrupt: return kExitCorrupt;
    case Code::kUnsupported: return kExitUnsupported;
    case Code::kIo: return kExitIo;
    case Code::kUnavailable: return kExitUnavailable;
    case Code::kInternal: return kExitInternal;
  }
  return kExitInternal;
}

// A syscall failure whose errno says more than "I/O error" gets the specific code, so
// `open(O_EXCL)` on an existing file is "already exists" wherever it happens.
inline int exit_code(const Status& s) noexcept {
  if (s.code() == Code::kIo) {
    switch (s.sys_errno()) {
      case ENOENT: return kExitNotFound;
      case EACCES:
      case EPERM: return kExitPermission;
      case EEXIST: return kExitExists;
      default: break;
    }
  }
  return exit_code(s.code());
}

// `kmsfs fsck` answers like fsck(8), not by the table above, so monitoring reads it the
// way it reads any fsck: what the check found, not what went wrong with the command.
enum FsckExitCode : int {
  kFsckClean = 0,        // no problem found
  kFsckRepaired = 1,     // problems found, every one corrected (--repair)
  kFsckUncorrected = 4,  // problems left
  kFsckOperational = 8,  // no check: not a vault, wrong passphrase, vault in use, ...
};

// `s` is what the command returned (an error means there was no check); `outcome` what
// the check found, when there was one.
inline int fsck_exit_code(const Status& s, fsck::Outcome outcome) noexcept {
  if (!s.ok()) return kFsckOperational;
  switch (outcome) {
    case fsck::Outcome::kClean: return kFsckClean;
    case fsck::Outcome::kRepaired: return kFsckRepaired;
    case fsck::Outcome::kUncorrected: return kFsckUncorrected;
  }
  return kFsckOperational;
}

}  // namespace kmsfs::cli
