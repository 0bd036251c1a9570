// Integer members of the vault's JSON files (kmsfs.conf, trust records), read strictly.
// nlohmann's get<uint32_t>() turns 4096.5 into 4096, -1 into 4294967295 and 2^32+1 into 1,
// so a damaged or hand-edited file would be misread (a version 2^32+1 as version 1)
// instead of refused.
#pragma once

#include <cstdint>
#include <limits>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

namespace kmsfs {

// The value if `v` is a JSON integer (no fraction, exponent or sign: nlohmann reads
// 1.0, 1e3 and -0 as other number types) no greater than T's maximum.
template <typename T>
std::optional<T> json_uint(const nlohmann::json& v) {
  if (!v.is_number_unsigned()) return std::nullopt;
  const uint64_t u = v.get<uint64_t>();
  if (u > std::numeric_limits<T>::max()) return std::nullopt;
  return static_cast<T>(u);
}

// "generation must be an integer from 0 to 18446744073709551615, not 1.5": one line, the
// value cut short (it may be any JSON the file holds).
template <typename T>
std::string json_uint_error(const std::string& name, const nlohmann::json& v) {
  std::string got = v.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  if (got.size() > 40) got = got.substr(0, 40) + "...";
  return name + " must be an integer from 0 to " + std::to_string(std::numeric_limits<T>::max()) + ", not " + got;
}

}  // namespace kmsfs
