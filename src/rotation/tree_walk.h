// The files a rotation visits: every regular file of the backing tree that may be a kmsfs
// file, in one fixed order (names sorted byte-wise, depth first), so a checkpoint can be
// a single path and a resumed pass starts right after it. fsck walks the same order over
// every entry (walk_entries), so its report lists files in the order rotation moves them.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"

namespace kmsfs {

struct WalkOptions {
  // With encrypted names no file name holds a '.', so such names (long-name side files,
  // temporaries) are the vault's own, not files to rotate; a hashed long name
  // ("kmsfs.ln.<hash>") is a file of the tree all the same.
  bool encrypted_names = true;
};

enum class EntryType : uint8_t { kFile, kDirectory, kOther };

struct WalkEntry {
  const std::string& rel;  // relative to the root
  std::string_view name;   // the last component of rel
  EntryType type;
  int dirfd;               // the directory holding it, open during the call
};

// Calls visit(entry) for every entry after `after` ("" = from the start), in walk order,
// a directory before what it holds; the vault's own files in the root (kmsfs.conf, ...)
// are left out. Stops early when visit returns false. Directories that cannot be read
// are reported to `unreadable` and skipped.
Status walk_entries(const std::string& root, const std::string& after,
                    const std::function<bool(const WalkEntry&)>& visit,
                    const std::function<void(const std::string& rel, const Status&)>& unreadable);

// Calls visit(relative path) for each file after `after` ("" = from the start), in order;
// stops early when visit returns false. Directories that cannot be read are reported to
// `unreadable` and skipped.
Status walk_files(const std::string& root, const WalkOptions& opts, const std::string& after,
                  const std::function<bool(const std::string& rel)>& visit,
                  const std::function<void(const std::string& rel, const Status&)>& unreadable);

// Whether `a` comes before `b` in walk order (component-wise byte order).
bool walk_before(const std::string& a, const std::string& b);

}  // namespace kmsfs
