// The mounts of this process's mount namespace, from /proc/self/mountinfo: where a
// filesystem is mounted, its type and its source (kmsfs mounts are "kmsfs:BACKING").
#pragma once

#include <optional>
#include <string>
#include <vector>

namespace kmsfs::cli {

struct MountEntry {
  std::string mountpoint;
  std::string fstype;  // "fuse.kmsfs", "fuse.sshfs", "autofs", ...
  std::string source;  // "kmsfs:BACKING" for kmsfs
  bool is_fuse() const { return fstype == "fuse" || fstype == "fuseblk" || fstype.starts_with("fuse."); }
  // The backing directory of a kmsfs mount, else "".
  std::string kmsfs_backing() const;
};

// Every mount, in mount order (a later entry at the same mountpoint is on top).
std::vector<MountEntry> read_mountinfo();
// The topmost mount at `mountpoint` (absolute, normalised), if any.
std::optional<MountEntry> mount_at(const std::string& mountpoint);

}  // namespace kmsfs::cli
