#include "stats.h"

namespace kmsfs::kms_local {

void Stats::record(std::string_view op, std::string_view result) {
  std::lock_guard lock(mu_);
  ++total_;
  ++counts_[std::string(op.empty() ? "(unknown)" : op)][std::string(result)];
}

nlohmann::json Stats::to_json() const {
  std::lock_guard lock(mu_);
  nlohmann::json ops = nlohmann::json::object();
  for (const auto& [op, results] : counts_) ops[op] = results;
  return {{"total", total_}, {"operations", std::move(ops)}};
}

void Stats::reset() {
  std::lock_guard lock(mu_);
  total_ = 0;
  counts_.clear();
}

}  // namespace kmsfs::kms_local
