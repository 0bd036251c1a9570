#include "keys/aws/kms_errors.h"

#include <string>

#include "keys/aws/retry.h"

namespace kmsfs::aws {

Status map_kms_error(long status, std::string_view error_type, std::string_view message,
                     std::string_view operation, std::string_view key_id) {
  std::string_view code = short_error_code(error_type);
  std::string op(operation);
  std::string key = key_id.empty() ? std::string("(no key)") : std::string(key_id);
  std::string tail = message.empty() ? std::string() : ": " + std::string(message);
  std::string what = code.empty() ? "HTTP " + std::to_string(status) : std::string(code);

  if (code == "AccessDeniedException") {
    return Status(Code::kPermissionDenied, "KMS denied " + op + " on " + key + tail);
  }
  if (code == "DisabledException") {
    return Status(Code::kPermissionDenied, "KMS " + op + ": key disabled: " + key + tail);
  }
  if (code == "KMSInvalidStateException") {
    return Status(Code::kPermissionDenied,
                  "KMS " + op + ": key " + key +
                      " is in an invalid state (pending deletion or import, or not enabled)" + tail);
  }
  if (code == "NotFoundException") {
    return Status(Code::kNotFound, "KMS " + op + ": key not found: " + key + tail);
  }
  if (code == "InvalidCiphertextException" || code == "IncorrectKeyException") {
    return Status(Code::kCorrupt, "KMS " + op + " under " + key +
                                      ": the wrapped key does not authenticate under this key "
                                      "and encryption context (" + what + ")" + tail);
  }
  if (code == "UnrecognizedClientException" || code == "InvalidSignatureException" ||
      code == "IncompleteSignature" || code == "ExpiredTokenException" ||
      code == "MissingAuthenticationToken" || status == 401 || status == 403) {
    return Status(Code::kPermissionDenied,
                  "KMS " + op + ": the AWS credentials were rejected (" + what + ")" + tail);
  }
  if (code == "InvalidKeyUsageException") {
    return Status(Code::kInvalidArgument,
                  "KMS " + op + ": key " + key + " cannot be used for this operation" + tail);
  }
  if (classify_http(status, code) != RetryClass::kNever) {
    return Status(Code::kUnavailable, "KMS " + op + " on " + key + " failed after retries (" +
                                          what + ")" + tail);
  }
  return Status(Code::kInvalidArgument, "KMS rejected " + op + " on " + key + " (" + what + ")" + tail);
}

}  // namespace kmsfs::aws
