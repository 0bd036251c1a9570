// Files whose content decides what a process trusts (keyrings, the trust store) are used
// only if nobody but root and the caller could have written them: the rule of sshd's
// StrictModes, applied to the file and to every directory above it.
#pragma once

#include <sys/types.h>

#include <string>

#include "base/status.h"
#include "base/unique_fd.h"

namespace kmsfs {

// kPermissionDenied unless `path` (resolved, symlinks followed) and each directory from
// its parent up to "/" is owned by root or `uid` and is neither group- nor
// world-writable. A root-owned directory with the sticky bit (/tmp) is accepted: others
// may create entries there but cannot replace or rename ours. `what` names the file in
// the message ("keyring", "trust record").
Status check_private_path(const std::string& path, const std::string& what, uid_t uid);

// Whether `path` (resolved) is `dir` (resolved) or lies beneath it. False when either
// does not resolve.
bool path_is_within(const std::string& path, const std::string& dir);

// Opens `rel` (a relative path read from attacker-writable data, e.g. a journal entry)
// beneath the directory `dirfd`, following no symlink in any component and never leaving
// the directory (no "..", no absolute path, no magic links): openat2(2) with
// RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS, and where the kernel has
// no openat2 (ENOSYS, or EPERM from a seccomp filter) a walk of openat(O_NOFOLLOW) one
// component at a time; that walk also opens a path of PATH_MAX bytes or more (a deep
// backing path), which no path syscall takes, holding two descriptors at a time.
// kPermissionDenied ("escapes") for a path that would leave the
// directory or cross a symlink; the errno of open(2) otherwise. `flags` as for open(2)
// (O_CLOEXEC and O_NOFOLLOW are added); creating is not supported.
Result<UniqueFd> open_beneath(int dirfd, const std::string& rel, int flags);
// The fallback alone (public so tests cover it on kernels that have openat2): refuses
// any ".." outright.
Result<UniqueFd> open_beneath_by_walk(int dirfd, const std::string& rel, int flags);

}  // namespace kmsfs
