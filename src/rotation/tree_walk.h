// The files a rotation visits: every regular file of the backing tree that may be a kmsfs
// file, in one fixed order (names sorted byte-wise, depth first), so a checkpoint can be
// a single path and a resumed pass starts right after it. fsck walks the same order over
// every entry (walk_entries), so its report lists files in the order rotation moves them.
// Both walk at any depth with a bounded number of descriptors (base/dir_walk.h): a file
// is opened relative to the directory the walk holds (WalkEntry::dirfd), never by a full
// backing path, which for a deep plaintext path is far longer than PATH_MAX.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/dir_walk.h"
#include "base/status.h"
#include "format/backing_file.h"

namespace kmsfs {

struct WalkOptions {
  // With encrypted names no file name holds a '.', so such names (long-name side files,
  // temporaries) are the vault's own, not files to rotate; a hashed long name
  // ("kmsfs.ln.<hash>") is a file of the tree all the same.
  bool encrypted_names = true;
};

// Calls visit(entry) for every entry after `after` ("" = from the start), in walk order,
// a directory before what it holds; the vault's own files in the root (kmsfs.conf, ...)
// are left out. Stops early when visit returns false. Directories that cannot be read
// are reported to `unreadable` and skipped.
Status walk_entries(const std::string& root, const std::string& after,
                    const std::function<bool(const WalkEntry&)>& visit,
                    const std::function<void(const std::string& rel, const Status&)>& unreadable);

// Calls visit(entry) for each file after `after` ("" = from the start), in order; stops
// early when visit returns false. Directories that cannot be read are reported to
// `unreadable` and skipped.
Status walk_files(const std::string& root, const WalkOptions& opts, const std::string& after,
                  const std::function<bool(const WalkEntry&)>& visit,
                  const std::function<void(const std::string& rel, const Status&)>& unreadable);

// Whether `a` comes before `b` in walk order (component-wise byte order).
bool walk_before(const std::string& a, const std::string& b);

// Opens the backing file `rel` of the tree at `root`: as its last component in `dirfd`
// (the directory the walk holds; one openat whatever the depth), or with dirfd < 0 from
// the root one component at a time, following no symlink. Messages name root/rel.
Result<std::unique_ptr<PosixBackingFile>> open_tree_file(const std::string& root, const std::string& rel, int dirfd,
                                                         int flags);

}  // namespace kmsfs
