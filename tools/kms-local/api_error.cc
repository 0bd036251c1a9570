#include "api_error.h"

namespace kmsfs::kms_local {
namespace kms_errors {
namespace {
ApiError make(const char* type, std::string message, int status = 400) {
  return ApiError{status, type, std::move(message)};
}
}  // namespace

ApiError not_found(std::string m) { return make("NotFoundException", std::move(m)); }
ApiError already_exists(std::string m) { return make("AlreadyExistsException", std::move(m)); }
ApiError disabled(std::string m) { return make("DisabledException", std::move(m)); }
ApiError invalid_state(std::string m) { return make("KMSInvalidStateException", std::move(m)); }
ApiError invalid_ciphertext(std::string m) {
  return make("InvalidCiphertextException", std::move(m));
}
ApiError incorrect_key(std::string m) { return make("IncorrectKeyException", std::move(m)); }
ApiError access_denied(std::string m) { return make("AccessDeniedException", std::move(m)); }
ApiError validation(std::string m) { return make("ValidationException", std::move(m)); }
ApiError invalid_alias_name(std::string m) {
  return make("InvalidAliasNameException", std::move(m));
}
ApiError invalid_marker(std::string m) { return make("InvalidMarkerException", std::move(m)); }
ApiError limit_exceeded(std::string m) { return make("LimitExceededException", std::move(m)); }
ApiError invalid_key_usage(std::string m) {
  return make("InvalidKeyUsageException", std::move(m));
}
ApiError unsupported(std::string m) {
  return make("UnsupportedOperationException", std::move(m));
}
ApiError serialization(std::string m) { return make("SerializationException", std::move(m)); }
ApiError unknown_operation(std::string m) {
  return make("UnknownOperationException", std::move(m));
}
ApiError throttling() { return make("ThrottlingException", "Rate exceeded"); }
ApiError internal(std::string m) { return make("KMSInternalException", std::move(m), 500); }
}  // namespace kms_errors

ApiError validation_error(const std::string& field, const std::string& constraint) {
  return kms_errors::validation("1 validation error detected: Value at '" + field +
                                "' failed to satisfy constraint: " + constraint);
}

ApiError internal_error(const Status& status) {
  return kms_errors::internal(status.to_string());
}

}  // namespace kmsfs::kms_local
