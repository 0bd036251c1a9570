// Fault injection: what tests use to see a client cope with a slow, throttling, failing or
// vanishing KMS. Set at start (flags) or at run time (POST /__admin/faults with the JSON
// form below); applies to KMS and STS operations, never to the admin endpoints.
//
//   {"latency_ms": 200,          every matching request waits this long first
//    "throttle_rate": 0.5,       ThrottlingException (400), before the operation runs
//    "error_rate": 0.1,          KMSInternalException (500; STS: InternalFailure), before
//    "drop_rate": 0.1,           the connection is closed without an answer, AFTER the
//                                operation ran (the worst case: the work is done, the
//                                client cannot know)
//    "operations": ["Decrypt"],  only these (X-Amz-Target operation or STS Action); empty
//                                or absent: all
//    "count": 3,                 inject at most this many faults, then clear the whole
//                                configuration (absent: no limit)
//    "quirk": "nulls",           answer quirks: what a client must tolerate (or refuse
//                                clearly) from something that is not quite KMS, on every
//                                matching KMS request the rates leave alone (not STS):
//                                  "nulls"          the answer gains null optional members
//                                                   (DescribeKey: Enabled too) and unknown
//                                                   members, as newer KMS versions add
//                                  "missing_field"  the answer loses its required member
//                                                   (Plaintext, CiphertextBlob, KeyMetadata.Arn,
//                                                   else KeyId)
//                                  "html_error"     an HTML page (a proxy, a load balancer)
//                                                   instead of the operation
//                                  "xml_error"      an XML error document instead of it
//                                  "none"           (the default)
//    "quirk_status": 503}        the HTTP status of html_error (default 502) and xml_error
//                                (default 403): 400..599
//
// The three rates share one draw, so they must add up to at most 1.
#pragma once

#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/status.h"

namespace kmsfs::kms_local {

enum class Quirk { kNone, kNulls, kMissingField, kHtmlError, kXmlError };
std::string_view quirk_name(Quirk q);
std::optional<Quirk> quirk_from_name(std::string_view name);

struct FaultConfig {
  int64_t latency_ms = 0;
  double throttle_rate = 0;
  double error_rate = 0;
  double drop_rate = 0;
  std::vector<std::string> operations{};
  std::optional<int64_t> count{};
  Quirk quirk = Quirk::kNone;
  int64_t quirk_status = 0;  // 0: the quirk's default

  bool applies_to(std::string_view op) const;
};

// kInvalidArgument naming the member on an unknown member, a wrong type or a bad range.
Result<FaultConfig> fault_config_from_json(const nlohmann::json& j);
nlohmann::json to_json(const FaultConfig& c);
Status validate(const FaultConfig& c);

enum class FaultKind { kNone, kThrottle, kServerError, kDrop, kQuirk };

struct FaultDecision {
  int64_t latency_ms = 0;
  FaultKind kind = FaultKind::kNone;
  Quirk quirk = Quirk::kNone;  // with kQuirk
  int quirk_status = 0;        // with kQuirk: the status of an error page
};

class Faults {
 public:
  explicit Faults(FaultConfig initial = {}) : config_(std::move(initial)) {}
  void set(FaultConfig c);
  FaultConfig get() const;
  // What to do to one request for operation `op`. `uniform01` is a draw in [0, 1) (a
  // parameter so tests can pin it). Quirks only where `quirks_apply` (KMS requests).
  FaultDecision draw(std::string_view op, double uniform01, bool quirks_apply = true);

 private:
  mutable std::mutex mu_;
  FaultConfig config_;
};

}  // namespace kmsfs::kms_local
