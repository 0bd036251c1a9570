// The one error style of kmsfs: expected failures travel as values (Status / Result<T>).
// errno for FUSE and exit codes for the CLI are derived from a Status in exactly one
// place each (fs/errno_map, cli/exit_codes), so lower layers never guess at either.
#pragma once

#include <cassert>
#include <string>
#include <utility>
#include <variant>

namespace kmsfs {

enum class Code : int {
  kOk = 0,
  kInvalidArgument,   // caller error: bad option, bad size, malformed input we were handed
  kNotFound,          // a file, key, key version or config that is not there
  kAlreadyExists,     // refusing to overwrite (vault already initialised, key exists)
  kPermissionDenied,  // key disabled, access denied by the provider, wrong passphrase
  kCorrupt,           // authentication failed / malformed on-disk data: never return its bytes
  kUnsupported,       // unknown format version or critical feature: refuse, don't guess
  kIo,                // a syscall failed; sys_errno() holds the errno
  kUnavailable,       // a dependency (KMS) did not answer; retrying later may work
  kInternal,          // a bug: an invariant did not hold
};

const char* code_name(Code c) noexcept;

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(Code code, std::string message, int sys_errno = 0)
      : code_(code), errno_(sys_errno), message_(std::move(message)) {}

  static Status Ok() { return {}; }
  static Status Io(int err, std::string message);  // message gets ": strerror(err)" appended

  bool ok() const noexcept { return code_ == Code::kOk; }
  Code code() const noexcept { return code_; }
  int sys_errno() const noexcept { return errno_; }
  const std::string& message() const noexcept { return message_; }

  // Prefixes context ("reading header of /srv/v/a: ...") while keeping code and errno.
  Status with_context(const std::string& where) const;
  std::string to_string() const;

 private:
  Code code_ = Code::kOk;
  int errno_ = 0;
  std::string message_;
};

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}                       // NOLINT: implicit by design
  Result(Status status) : v_(std::move(status)) { assert(!std::get<Status>(v_).ok()); }  // NOLINT

  bool ok() const noexcept { return v_.index() == 0; }
  explicit operator bool() const noexcept { return ok(); }

  T& value() & { assert(ok()); return std::get<0>(v_); }
  const T& value() const& { assert(ok()); return std::get<0>(v_); }
  T&& value() && { assert(ok()); return std::get<0>(std::move(v_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T&& operator*() && { return std::move(*this).value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

  const Status& status() const& {
    static const Status kOk;
    return ok() ? kOk : std::get<1>(v_);
  }
  Status status() && { return ok() ? Status() : std::get<1>(std::move(v_)); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace kmsfs

// Early return on error. Keep these the only macros in the codebase.
#define KMSFS_CONCAT_INNER(a, b) a##b
#define KMSFS_CONCAT(a, b) KMSFS_CONCAT_INNER(a, b)

#define RETURN_IF_ERROR(expr)                    \
  do {                                           \
    ::kmsfs::Status _st = (expr);                \
    if (!_st.ok()) return _st;                   \
  } while (0)

#define ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr)    \
  auto tmp = (expr);                             \
  if (!tmp.ok()) return std::move(tmp).status(); \
  lhs = std::move(tmp).value()

#define ASSIGN_OR_RETURN(lhs, expr) \
  ASSIGN_OR_RETURN_IMPL(KMSFS_CONCAT(_res_, __LINE__), lhs, expr)
