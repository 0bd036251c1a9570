// The files a rotation visits: every regular file of the backing tree that may be a kmsfs
// file, in one fixed order (names sorted byte-wise, depth first), so a checkpoint can be
// a single path and a resumed pass starts right after it.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "base/status.h"

namespace kmsfs {

struct WalkOptions {
  // With encrypted names no file name holds a '.', so such names (long-name side files,
  // temporaries) are the vault's own, not files to rotate.
  bool encrypted_names = true;
};

// Calls visit(relative path) for each file after `after` ("" = from the start), in order;
// stops early when visit returns false. Directories that cannot be read are reported to
// `unreadable` and skipped.
Status walk_files(const std::string& root, const WalkOptions& opts, const std::string& after,
                  const std::function<bool(const std::string& rel)>& visit,
                  const std::function<void(const std::string& rel, const Status&)>& unreadable);

// Whether `a` comes before `b` in walk order (component-wise byte order).
bool walk_before(const std::string& a, const std::string& b);

}  // namespace kmsfs
