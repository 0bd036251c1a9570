// mount.kmsfs: the mount(8) helper, the same binary as kmsfs (dispatched on argv[0]).
//
// mount(8) runs `/sbin/mount.kmsfs SOURCE TARGET [-sfnv] [-N NS] [-o OPTIONS] [-t TYPE]`
// for type kmsfs; mount.fuse3 runs `kmsfs SOURCE TARGET -o OPTIONS` for type fuse.kmsfs
// (or fuse with SOURCE kmsfs#BACKING). Both become a plain `kmsfs mount`: SOURCE is the
// backing directory, or a config NAME (/etc/kmsfs/NAME.conf) when it has no '/'; every
// kmsfs mount option is an -o option (key_ttl=60, keyring=/etc/kmsfs/k, no_writeback,
// region=eu-west-1, ...); the fstab-only options that reach a helper (nofail, _netdev,
// auto, noauto, user, users, comment=, x-*, defaults, rw) are dropped; the rest (ro,
// nosuid, nodev, noatime, allow_other, ...) go to FUSE. It returns once the mount answers
// and exits as mount(8) documents: 0 mounted, 1 bad usage or option, 32 mount failure.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "base/status.h"
#include "cli/mount_config.h"

namespace kmsfs::cli {

enum class MountCall {
  kNone,    // any other command
  kMount,   // kmsfs mount ... (expanded: NAME, --config, environment, -o keys)
  kHelper,  // mount.kmsfs SOURCE TARGET ..., or kmsfs SOURCE TARGET ... from mount.fuse3
};
MountCall classify_mount_call(int argc, char** argv);

// mount(8)'s exit codes.
enum : int { kMountOk = 0, kMountUsage = 1, kMountFailure = 32 };
int mount8_exit_code(int kmsfs_exit);

struct HelperCall {
  std::string source, target, options, type;
  bool sloppy = false, fake = false, no_mtab = false, verbose = false;
};
// The words after argv[0].
Result<HelperCall> parse_helper_args(const std::vector<std::string>& args);
// True for an option mount(8) or fstab keep for themselves.
bool is_fstab_only_option(const std::string& item);
// The `kmsfs mount` words for a helper call (after "mount").
ExpandedMount helper_mount_words(const HelperCall& call, const EnvLookup& getenv);

// Runs a kMount or kHelper call through `run` (main's CLI, given the rewritten argv) and
// returns the exit code.
int run_mount_call(MountCall kind, int argc, char** argv, const std::function<int(int, char**)>& run);

}  // namespace kmsfs::cli
