#include "fs/errno_map.h"

#include <cerrno>

namespace kmsfs {

int to_errno(const Status& s) noexcept {
  if (s.sys_errno() != 0) return s.sys_errno();
  switch (s.code()) {
    case Code::kOk: return 0;
    case Code::kInvalidArgument: return EINVAL;
    case Code::kNotFound: return ENOENT;
    case Code::kAlreadyExists: return EEXIST;
    case Code::kPermissionDenied: return EACCES;
    case Code::kCorrupt:
    case Code::kUnsupported:
    case Code::kIo:
    case Code::kUnavailable:
    case Code::kInternal: return EIO;
  }
  return EIO;
}

}  // namespace kmsfs
