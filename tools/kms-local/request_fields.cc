#include "request_fields.h"

#include <cctype>

#include "base64.h"

namespace kmsfs::kms_local {
namespace {

ApiError wrong_type(const char* name, const char* expected) {
  return kms_errors::serialization(std::string("Expected ") + expected + " for member " + name);
}

}  // namespace

std::string wire_member_name(const char* name) {
  std::string s(name);
  if (!s.empty()) s[0] = char(std::tolower(static_cast<unsigned char>(s[0])));
  return s;
}

ApiResult<std::optional<std::string>> RequestFields::optional_string(const char* name,
                                                                     size_t min_len,
                                                                     size_t max_len) const {
  auto it = body_.find(name);
  if (it == body_.end() || it->is_null()) return std::optional<std::string>();
  if (!it->is_string()) return wrong_type(name, "a string");
  std::string v = it->get<std::string>();
  if (v.size() < min_len) {
    return validation_error(wire_member_name(name),
                            "Member must have length greater than or equal to " +
                                std::to_string(min_len));
  }
  if (v.size() > max_len) {
    return validation_error(wire_member_name(name),
                            "Member must have length less than or equal to " +
                                std::to_string(max_len));
  }
  return std::optional<std::string>(std::move(v));
}

ApiResult<std::string> RequestFields::string(const char* name, size_t min_len,
                                             size_t max_len) const {
  auto v = optional_string(name, min_len, max_len);
  if (!v.ok()) return v.error();
  if (!v.value()) return validation_error(wire_member_name(name), "Member must not be null");
  return std::move(*v.value());
}

ApiResult<std::optional<int64_t>> RequestFields::optional_int(const char* name, int64_t min,
                                                              int64_t max) const {
  auto it = body_.find(name);
  if (it == body_.end() || it->is_null()) return std::optional<int64_t>();
  if (!it->is_number_integer()) return wrong_type(name, "an integer");
  int64_t v = it->get<int64_t>();
  if (v < min) {
    return validation_error(wire_member_name(name),
                            "Member must have value greater than or equal to " +
                                std::to_string(min));
  }
  if (v > max) {
    return validation_error(wire_member_name(name),
                            "Member must have value less than or equal to " + std::to_string(max));
  }
  return std::optional<int64_t>(v);
}

ApiResult<std::optional<bool>> RequestFields::optional_bool(const char* name) const {
  auto it = body_.find(name);
  if (it == body_.end() || it->is_null()) return std::optional<bool>();
  if (!it->is_boolean()) return wrong_type(name, "a boolean");
  return std::optional<bool>(it->get<bool>());
}

ApiResult<Bytes> RequestFields::blob(const char* name, size_t min_len, size_t max_len) const {
  auto it = body_.find(name);
  if (it == body_.end() || it->is_null()) {
    return validation_error(wire_member_name(name), "Member must not be null");
  }
  if (!it->is_string()) return wrong_type(name, "a base64 string");
  auto bytes = base64_decode(it->get_ref<const std::string&>());
  if (!bytes) return kms_errors::serialization("Member " + std::string(name) + " is not base64");
  if (bytes->size() < min_len) {
    return validation_error(wire_member_name(name),
                            "Member must have length greater than or equal to " +
                                std::to_string(min_len));
  }
  if (bytes->size() > max_len) {
    return validation_error(wire_member_name(name),
                            "Member must have length less than or equal to " +
                                std::to_string(max_len));
  }
  return std::move(*bytes);
}

ApiResult<ContextMap> RequestFields::context(const char* name) const {
  auto it = body_.find(name);
  ContextMap out;
  if (it == body_.end() || it->is_null()) return out;
  if (!it->is_object()) return wrong_type(name, "a map");
  for (const auto& [k, v] : it->items()) {
    if (!v.is_string()) return wrong_type(name, "string values");
    out.emplace(k, v.get<std::string>());
  }
  return out;
}

ApiResult<std::optional<std::string>> RequestFields::optional_enum(
    const char* name, std::initializer_list<const char*> allowed) const {
  auto v = optional_string(name, 0, SIZE_MAX);
  if (!v.ok() || !v.value()) return v;
  std::string set;
  for (const char* a : allowed) {
    if (*v.value() == a) return v;
    set += set.empty() ? "" : ", ";
    set += a;
  }
  return validation_error(wire_member_name(name),
                          "Member must satisfy enum value set: [" + set + "]");
}

}  // namespace kmsfs::kms_local
