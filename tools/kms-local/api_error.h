// The errors kms-local answers with, in AWS's own vocabulary. kmsfs code reports failures
// as Status (src/base/status.h); this tool's job is to speak the AWS wire protocol, whose
// error names (DisabledException vs KMSInvalidStateException vs IncorrectKeyException ...)
// are finer than Status codes, so handlers build these directly. A Status coming up from a
// src/ library becomes an ApiError in exactly one place: internal_error().
#pragma once

#include <cassert>
#include <string>
#include <utility>
#include <variant>

#include "base/status.h"

namespace kmsfs::kms_local {

struct ApiError {
  int http_status = 400;
  std::string type;     // "NotFoundException", or STS's "InvalidClientTokenId"
  std::string message;  // may be empty: AWS sends none for InvalidCiphertextException
};

// Value or ApiError, shaped like kmsfs::Result so the two read alike.
template <typename T>
class [[nodiscard]] ApiResult {
 public:
  ApiResult(T value) : v_(std::move(value)) {}     // NOLINT: implicit by design
  ApiResult(ApiError error) : v_(std::move(error)) {}  // NOLINT
  bool ok() const noexcept { return v_.index() == 0; }
  T& value() & { assert(ok()); return std::get<0>(v_); }
  T&& value() && { assert(ok()); return std::get<0>(std::move(v_)); }
  const ApiError& error() const { assert(!ok()); return std::get<1>(v_); }

 private:
  std::variant<T, ApiError> v_;
};

// KMS (AWS JSON 1.1) errors. All are HTTP 400 but KMSInternalException (500).
namespace kms_errors {
ApiError not_found(std::string message);
ApiError already_exists(std::string message);
ApiError disabled(std::string message);
ApiError invalid_state(std::string message);
ApiError invalid_ciphertext(std::string message);
ApiError incorrect_key(std::string message);
ApiError access_denied(std::string message);
ApiError validation(std::string message);
ApiError invalid_alias_name(std::string message);
ApiError invalid_marker(std::string message);
ApiError limit_exceeded(std::string message);
ApiError invalid_key_usage(std::string message);
ApiError unsupported(std::string message);
ApiError serialization(std::string message);
ApiError unknown_operation(std::string message);
ApiError throttling();
ApiError internal(std::string message);
}  // namespace kms_errors

// "1 validation error detected: Value at 'field' failed to satisfy constraint: ..." as AWS
// words it, so a client's log reads the same against kms-local and the real service.
ApiError validation_error(const std::string& field, const std::string& constraint);

// A failure from a src/ library (state file I/O, crypto): a bug or the machine, never the
// caller. KMSInternalException, 500.
ApiError internal_error(const Status& status);

}  // namespace kmsfs::kms_local
