#include "faults.h"

#include <algorithm>

namespace kmsfs::kms_local {

std::string_view quirk_name(Quirk q) {
  switch (q) {
    case Quirk::kNone: return "none";
    case Quirk::kNulls: return "nulls";
    case Quirk::kMissingField: return "missing_field";
    case Quirk::kHtmlError: return "html_error";
    case Quirk::kXmlError: return "xml_error";
  }
  return "none";
}

std::optional<Quirk> quirk_from_name(std::string_view name) {
  for (Quirk q : {Quirk::kNone, Quirk::kNulls, Quirk::kMissingField, Quirk::kHtmlError, Quirk::kXmlError}) {
    if (quirk_name(q) == name) return q;
  }
  return std::nullopt;
}

bool FaultConfig::applies_to(std::string_view op) const {
  return operations.empty() || std::find(operations.begin(), operations.end(), op) != operations.end();
}

Status validate(const FaultConfig& c) {
  auto bad = [](std::string why) { return Status(Code::kInvalidArgument, "faults: " + why); };
  if (c.latency_ms < 0 || c.latency_ms > 600000) return bad("latency_ms must be 0..600000");
  for (double r : {c.throttle_rate, c.error_rate, c.drop_rate}) {
    if (!(r >= 0 && r <= 1)) return bad("rates must be within [0, 1]");
  }
  if (c.throttle_rate + c.error_rate + c.drop_rate > 1 + 1e-9) {
    return bad("throttle_rate + error_rate + drop_rate must not exceed 1");
  }
  if (c.count && *c.count < 1) return bad("count must be at least 1");
  if (c.quirk_status != 0 && (c.quirk_status < 400 || c.quirk_status > 599)) {
    return bad("quirk_status must be 400..599");
  }
  return Status::Ok();
}

Result<FaultConfig> fault_config_from_json(const nlohmann::json& j) {
  auto bad = [](std::string why) { return Status(Code::kInvalidArgument, "faults: " + why); };
  if (!j.is_object()) return bad("expected a JSON object");
  FaultConfig c;
  for (const auto& [k, v] : j.items()) {
    if (k == "latency_ms" || k == "count") {
      if (!v.is_number_integer()) return bad(k + " must be an integer");
      if (k == "count") {
        c.count = v.get<int64_t>();
      } else {
        c.latency_ms = v.get<int64_t>();
      }
    } else if (k == "throttle_rate" || k == "error_rate" || k == "drop_rate") {
      if (!v.is_number()) return bad(k + " must be a number");
      double& rate = k == "throttle_rate" ? c.throttle_rate
                     : k == "error_rate"  ? c.error_rate
                                          : c.drop_rate;
      rate = v.get<double>();
    } else if (k == "operations") {
      if (!v.is_array()) return bad("operations must be a list of strings");
      for (const auto& op : v) {
        if (!op.is_string()) return bad("operations must be a list of strings");
        c.operations.push_back(op.get<std::string>());
      }
    } else if (k == "quirk") {
      std::optional<Quirk> q = v.is_string() ? quirk_from_name(v.get<std::string>()) : std::nullopt;
      if (!q) return bad("quirk must be one of none, nulls, missing_field, html_error, xml_error");
      c.quirk = *q;
    } else if (k == "quirk_status") {
      if (!v.is_number_integer()) return bad("quirk_status must be an integer");
      c.quirk_status = v.get<int64_t>();
    } else {
      return bad("unknown member '" + k + "'");
    }
  }
  RETURN_IF_ERROR(validate(c));
  return c;
}

nlohmann::json to_json(const FaultConfig& c) {
  nlohmann::json j = {{"latency_ms", c.latency_ms},
                      {"throttle_rate", c.throttle_rate},
                      {"error_rate", c.error_rate},
                      {"drop_rate", c.drop_rate},
                      {"operations", c.operations}};
  if (c.count) j["count"] = *c.count;
  j["quirk"] = std::string(quirk_name(c.quirk));
  if (c.quirk_status != 0) j["quirk_status"] = c.quirk_status;
  return j;
}

void Faults::set(FaultConfig c) {
  std::lock_guard lock(mu_);
  config_ = std::move(c);
}

FaultConfig Faults::get() const {
  std::lock_guard lock(mu_);
  return config_;
}

FaultDecision Faults::draw(std::string_view op, double u, bool quirks_apply) {
  std::lock_guard lock(mu_);
  FaultDecision d;
  if (!config_.applies_to(op)) return d;
  d.latency_ms = config_.latency_ms;
  if (u < config_.drop_rate) {
    d.kind = FaultKind::kDrop;
  } else if (u < config_.drop_rate + config_.error_rate) {
    d.kind = FaultKind::kServerError;
  } else if (u < config_.drop_rate + config_.error_rate + config_.throttle_rate) {
    d.kind = FaultKind::kThrottle;
  } else if (quirks_apply && config_.quirk != Quirk::kNone) {
    d.kind = FaultKind::kQuirk;
    d.quirk = config_.quirk;
    d.quirk_status = static_cast<int>(config_.quirk_status != 0 ? config_.quirk_status
                                      : config_.quirk == Quirk::kXmlError ? 403
                                                                          : 502);
  }
  if (d.kind != FaultKind::kNone && config_.count && --*config_.count == 0) config_ = {};
  return d;
}

}  // namespace kmsfs::kms_local
