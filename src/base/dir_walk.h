// A depth-first walk of a directory tree in one fixed order (names sorted byte-wise, a
// directory before what it holds) that works at any depth. Backing paths of an encrypted
// vault are about twice as long as their plaintext ones, so a tree the mount accepts
// (plaintext paths up to 4,095 bytes) holds paths far past PATH_MAX, about 2,000
// directories deep. So no full path ever reaches a syscall: every entry is reached
// relative to its directory's descriptor, and only a bounded number of directories is
// held open (the command-line tools run under a soft limit of 1,024 descriptors).
//
// How deeper levels are kept without a descriptor each: the root and the deepest
// `max_open_dirs` directories on the current path are held open; when the walk climbs
// back to a directory whose descriptor was closed, it reopens it as ".." of the child it
// leaves (one openat) and checks the result is the directory it listed (device and inode
// number). A child moved elsewhere meanwhile has another "..": the walk then reopens the
// directory by name from the root, checking each level the same way. A directory that
// can no longer be reached either way (moved, removed) is reported, and the walk goes on
// with the rest of the tree.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "base/status.h"

namespace kmsfs {

enum class EntryType : uint8_t { kFile, kDirectory, kOther };

struct WalkEntry {
  const std::string& rel;  // relative to the root (valid during the call only)
  std::string_view name;   // the last component of rel
  EntryType type;
  int dirfd;               // the directory holding it, open during the call
  size_t depth = 0;        // 0 for an entry of the root itself
};

struct DirWalkOptions {
  // Entries of the root to leave out (the vault's own files); none if empty.
  std::function<bool(std::string_view name)> skip_in_root;
  // Resume after this entry ("" = from the start): entries before it and the directories
  // on its path (visited by the run that recorded it) are not visited again.
  std::string after;
  // Directories held open besides the root. Deeper ones are reopened on the way back up.
  size_t max_open_dirs = 32;
};

// Calls visit(entry) for every entry in walk order; stops early when visit returns false.
// Directories that cannot be opened or listed (or that moved away during the walk) are
// reported to `unreadable` with their path and skipped. Fails only if the root cannot be
// opened.
Status walk_dir_tree(const std::string& root, const DirWalkOptions& opts,
                     const std::function<bool(const WalkEntry&)>& visit,
                     const std::function<void(const std::string& rel, const Status&)>& unreadable);

}  // namespace kmsfs
