#include <fmt/format.h>

#include "cli/commands.h"
#include "format/header.h"
#include "vault/config.h"

#ifndef KMSFS_VERSION
#error "KMSFS_VERSION must be defined by the build (src/cli/CMakeLists.txt)"
#endif

namespace kmsfs::cli {

std::string version_text() {
  return fmt::format("kmsfs {}\non-disk format: file header version {}, vault config version {}",
                     KMSFS_VERSION, header::kVersion, kConfigVersion);
}

}  // namespace kmsfs::cli
