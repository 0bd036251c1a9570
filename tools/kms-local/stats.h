// Request counters per operation and result, for tests to read (GET /__admin/stats):
//   {"total": 7, "operations": {"Encrypt": {"ok": 3, "ThrottlingException": 1},
//                               "AssumeRole": {"ok": 1}, ...}}
// The result is "ok", the error's type (AWS's __type / STS Code), or "ConnectionDropped".
// Requests that name no known operation count under "(unknown)".
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace kmsfs::kms_local {

class Stats {
 public:
  void record(std::string_view op, std::string_view result);
  nlohmann::json to_json() const;
  void reset();

 private:
  mutable std::mutex mu_;
  uint64_t total_ = 0;
  std::map<std::string, std::map<std::string, uint64_t>, std::less<>> counts_;
};

}  // namespace kmsfs::kms_local
