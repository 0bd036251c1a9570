#include "stats.h"

namespace kmsfs::kms_local {

void Stats::record(std::string_view op, std::string_view result, nlohmann::json detail) {
  const std::string name(op.empty() ? "(unknown)" : op);
  nlohmann::json entry = detail.is_object() ? std::move(detail) : nlohmann::json::object();
  entry["operation"] = name;
  entry["result"] = std::string(result);
  std::lock_guard lock(mu_);
  ++total_;
  ++counts_[name][std::string(result)];
  journal_.push_back(std::move(entry));
  if (journal_.size() > kJournalSize) journal_.pop_front();
}

nlohmann::json Stats::journal() const {
  std::lock_guard lock(mu_);
  nlohmann::json out = nlohmann::json::array();
  for (const auto& e : journal_) out.push_back(e);
  return out;
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
  journal_.clear();
}

}  // namespace kmsfs::kms_local
