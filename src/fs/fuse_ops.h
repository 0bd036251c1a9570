// The libfuse low-level operation table for a kmsfs mount. userdata is the Filesystem.
#pragma once

#include "fs/fuse_api.h"

namespace kmsfs {

fuse_lowlevel_ops make_fuse_ops();

}  // namespace kmsfs
