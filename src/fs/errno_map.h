// The one place a Status becomes an errno for the kernel.
#pragma once

#include "base/status.h"

namespace kmsfs {

// A syscall's own errno passes through unchanged; everything that means "these bytes
// cannot be trusted" (authentication failure, unsupported format, KMS down) is EIO.
int to_errno(const Status& s) noexcept;

}  // namespace kmsfs
