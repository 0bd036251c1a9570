#include "base/status.h"

#include <cstring>

namespace kmsfs {

const char* code_name(Code c) noexcept {
  switch (c) {
    case Code::kOk: return "ok";
    case Code::kInvalidArgument: return "invalid argument";
    case Code::kNotFound: return "not found";
    case Code::kAlreadyExists: return "already exists";
    case Code::kPermissionDenied: return "permission denied";
    case Code::kCorrupt: return "corrupt";
    case Code::kUnsupported: return "unsupported";
    case Code::kIo: return "I/O error";
    case Code::kUnavailable: return "unavailable";
    case Code::kInternal: return "internal error";
  }
  return "unknown";
}

Status Status::Io(int err, std::string message) {
  char buf[128];
  // GNU strerror_r returns the string to use (may not be buf).
  const char* s = strerror_r(err, buf, sizeof buf);
  return Status(Code::kIo, std::move(message) + ": " + s, err);
}

Status Status::with_context(const std::string& where) const {
  if (ok()) return *this;
  return Status(code_, where + ": " + message_, errno_);
}

std::string Status::to_string() const {
  if (ok()) return "ok";
  return message_;
}

}  // namespace kmsfs
