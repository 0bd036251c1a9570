// Typed, validated access to the members of a KMS JSON request, with AWS's error wording:
// a member of the wrong JSON type is a SerializationException, a value outside the API
// model's constraints (botocore's service-2.json) a ValidationException naming the member.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "api_error.h"
#include "base/bytes.h"
#include "ciphertext.h"

namespace kmsfs::kms_local {

class RequestFields {
 public:
  // `body` must be a JSON object (KmsService checks before dispatching).
  explicit RequestFields(const nlohmann::json& body) : body_(body) {}

  bool has(const char* name) const { return body_.contains(name); }

  ApiResult<std::string> string(const char* name, size_t min_len, size_t max_len) const;
  ApiResult<std::optional<std::string>> optional_string(const char* name, size_t min_len,
                                                        size_t max_len) const;
  ApiResult<std::optional<int64_t>> optional_int(const char* name, int64_t min,
                                                 int64_t max) const;
  ApiResult<std::optional<bool>> optional_bool(const char* name) const;
  // Base64 in JSON; min_len/max_len bound the decoded size.
  ApiResult<Bytes> blob(const char* name, size_t min_len, size_t max_len) const;
  // A string-to-string map; absent is the empty context.
  ApiResult<ContextMap> context(const char* name) const;
  // Optional member that, when present, must be one of `allowed` (an enum of the model).
  ApiResult<std::optional<std::string>> optional_enum(
      const char* name, std::initializer_list<const char*> allowed) const;

 private:
  const nlohmann::json& body_;
};

// "KeyId" -> "keyId": how AWS names members in validation messages.
std::string wire_member_name(const char* name);

}  // namespace kmsfs::kms_local
