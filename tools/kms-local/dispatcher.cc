#include "dispatcher.h"

#include <chrono>
#include <thread>

#include "crypto/random.h"

namespace kmsfs::kms_local {
namespace {

constexpr std::string_view kTargetPrefix = "TrentService.";
constexpr const char* kJsonType = "application/x-amz-json-1.1";

HttpReply kms_error_reply(const ApiError& e, const std::string& request_id) {
  nlohmann::json body = {{"__type", e.type}};
  if (!e.message.empty()) body["message"] = e.message;
  return HttpReply{e.http_status, kJsonType, body.dump(), request_id};
}

double uniform01() { return static_cast<double>(random_uniform(uint64_t(1) << 53)) / double(uint64_t(1) << 53); }

// The fields of a KMS request that say which key and context it names.
nlohmann::json journaled_fields(const std::string& body) {
  nlohmann::json out = nlohmann::json::object();
  auto j = nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return out;
  for (const char* f : {"KeyId", "EncryptionContext", "SourceKeyId", "SourceEncryptionContext",
                        "DestinationKeyId", "DestinationEncryptionContext"}) {
    if (j.contains(f)) out[f] = j[f];
  }
  return out;
}

bool is_form(const aws::HttpRequest& req) {
  auto type = req.header("content-type");
  return type && type->starts_with("application/x-www-form-urlencoded");
}

}  // namespace

ApiError kms_auth_error(const AuthError& e) {
  switch (e.kind) {
    case AuthFailure::kMissing: return {400, "MissingAuthenticationTokenException", e.message};
    case AuthFailure::kIncomplete: return {400, "IncompleteSignatureException", e.message};
    case AuthFailure::kUnknownKey:
    case AuthFailure::kBadToken: return {400, "UnrecognizedClientException", e.message};
    case AuthFailure::kExpiredToken: return {400, "ExpiredTokenException", e.message};
    case AuthFailure::kBadScope:
    case AuthFailure::kSignatureExpired:
    case AuthFailure::kBadSignature: return {400, "InvalidSignatureException", e.message};
  }
  return {400, "AccessDeniedException", e.message};
}

void apply_answer_quirk(Quirk q, std::string_view op, nlohmann::json& answer) {
  if (!answer.is_object()) return;
  if (q == Quirk::kNulls) {
    // Members a newer KMS may send as null, and members this server has never heard of.
    for (const char* m : {"EncryptionAlgorithm", "KeyMaterialId", "CiphertextForRecipient",
                          "SourceEncryptionAlgorithm", "DestinationEncryptionAlgorithm"}) {
      answer[m] = nullptr;
    }
    answer["KmsLocalUnknownMember"] = {{"nested", {1, nullptr, "x"}}, {"flag", true}};
    if (auto m = answer.find("KeyMetadata"); m != answer.end() && m->is_object()) {
      for (const char* f : {"Description", "MultiRegionConfiguration", "ValidTo", "Enabled",
                            "CustomerMasterKeySpec", "KmsLocalUnknownMember"}) {
        (*m)[f] = nullptr;
      }
    }
    return;
  }
  if (q == Quirk::kMissingField) {
    if (op == "Decrypt") {
      answer.erase("Plaintext");
    } else if (op == "GenerateDataKey" || op == "Encrypt" || op == "ReEncrypt") {
      answer.erase("CiphertextBlob");
    } else if (auto m = answer.find("KeyMetadata"); m != answer.end() && m->is_object()) {
      m->erase("Arn");
    } else {
      answer.erase("KeyId");
    }
  }
}

std::map<std::string, std::string> parse_form(std::string_view text) {
  std::map<std::string, std::string> out;
  auto decode = [](std::string_view s) {
    std::string plus_free(s);
    for (char& c : plus_free) c = c == '+' ? ' ' : c;
    return aws::uri_decode(plus_free);
  };
  while (!text.empty()) {
    size_t amp = text.find('&');
    std::string_view pair = text.substr(0, amp);
    text = amp == std::string_view::npos ? std::string_view() : text.substr(amp + 1);
    if (pair.empty()) continue;
    size_t eq = pair.find('=');
    out[decode(pair.substr(0, eq))] =
        eq == std::string_view::npos ? std::string() : decode(pair.substr(eq + 1));
  }
  return out;
}

Dispatcher::Dispatcher(AuthPolicy auth, KmsService& kms, StsService& sts,
                       const CredentialStore& creds, Faults& faults, Stats& stats)
    : auth_(std::move(auth)), kms_(kms), sts_(sts), creds_(creds), faults_(faults), stats_(stats) {}

std::optional<ApiError> Dispatcher::inject(const std::string& op, bool& drop, FaultDecision* quirk) {
  FaultDecision d = faults_.draw(op, uniform01(), quirk != nullptr);
  if (quirk) *quirk = d;
  if (d.latency_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(d.latency_ms));
  drop = d.kind == FaultKind::kDrop;
  if (d.kind == FaultKind::kThrottle) return kms_errors::throttling();
  if (d.kind == FaultKind::kServerError) {
    return kms_errors::internal("kms-local: injected server error");
  }
  return std::nullopt;
}

Outcome Dispatcher::handle(const aws::HttpRequest& req) {
  const std::string request_id = random_uuid();
  Outcome out;
  if (auto target = req.header("x-amz-target")) {
    std::string op(target->starts_with(kTargetPrefix) ? target->substr(kTargetPrefix.size())
                                                      : *target);
    out = handle_kms(req, op, request_id);
  } else {
    auto form = is_form(req) ? parse_form(req.body) : std::map<std::string, std::string>();
    for (auto& [k, v] : parse_form(req.query)) form.emplace(k, v);
    if (form.count("Action")) {
      out = handle_sts(req, form, request_id);
    } else {
      ApiError e = kms_errors::unknown_operation(
          "kms-local: expected an X-Amz-Target header (KMS) or an Action parameter (STS)");
      out = Outcome{kms_error_reply(e, request_id), "", e.type, false, nullptr};
    }
  }
  stats_.record(out.operation, out.drop ? "ConnectionDropped" : out.result, std::move(out.detail));
  return out;
}

Outcome Dispatcher::handle_kms(const aws::HttpRequest& req, const std::string& op,
                               const std::string& id) {
  // Operations this server lacks still count under their own name.
  Outcome out{{}, op, "ok", false, nullptr};
  auto finish = [&](const ApiError& e) {
    out.reply = kms_error_reply(e, id);
    out.result = e.type;
    return out;
  };
  out.detail = journaled_fields(req.body);
  FaultDecision quirk;
  if (auto injected = inject(op, out.drop, &quirk)) return finish(*injected);
  if (quirk.kind == FaultKind::kQuirk &&
      (quirk.quirk == Quirk::kHtmlError || quirk.quirk == Quirk::kXmlError)) {
    // What a proxy or load balancer in front of KMS answers: not KMS's JSON at all.
    const std::string status = std::to_string(quirk.quirk_status);
    if (quirk.quirk == Quirk::kHtmlError) {
      out.reply = HttpReply{quirk.quirk_status, "text/html",
                            "<html>\r\n<head><title>" + status + " Error</title></head>\r\n<body>\r\n<center><h1>" +
                                status + " Error</h1></center>\r\n<hr><center>kms-local quirk</center>\r\n</body>\r\n</html>\r\n",
                            id};
    } else {
      out.reply = HttpReply{quirk.quirk_status, "application/xml",
                            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>AccessDenied</Code>"
                            "<Message>kms-local quirk: not a KMS answer</Message></Error>\n",
                            id};
    }
    out.result = quirk.quirk == Quirk::kHtmlError ? "QuirkHtmlError" : "QuirkXmlError";
    return out;
  }
  AuthResult auth = authenticate(req, "kms", auth_, creds_, now_seconds());
  if (auth.error) return finish(kms_auth_error(*auth.error));
  out.detail["caller"] = auth.principal.arn;
  if (!KmsService::has_operation(op)) return finish(kms_errors::unknown_operation(""));
  auto result = kms_.call(op, req.body);
  if (!result.ok()) return finish(result.error());
  nlohmann::json answer = result.value();
  if (quirk.kind == FaultKind::kQuirk) apply_answer_quirk(quirk.quirk, op, answer);
  out.reply = HttpReply{200, kJsonType, answer.dump(), id};
  return out;
}

Outcome Dispatcher::handle_sts(const aws::HttpRequest& req,
                               const std::map<std::string, std::string>& form,
                               const std::string& id) {
  const std::string& action = form.at("Action");
  Outcome out{{}, action, "ok", false, nullptr};
  auto finish = [&](const ApiError& e) {
    XmlReply x = StsService::error_reply(e, id);
    out.reply = HttpReply{x.status, "text/xml", std::move(x.body), id};
    out.result = e.type;
    return out;
  };
  if (auto injected = inject(action, out.drop)) {
    // STS's own names for the two injected errors.
    const bool throttled = injected->type == "ThrottlingException";
    return finish(ApiError{injected->http_status, throttled ? "Throttling" : "InternalFailure",
                           injected->message});
  }
  const double now = now_seconds();
  const bool is_signed = !StsService::is_unsigned_action(action);
  AuthResult auth;
  if (is_signed) {
    auth = authenticate(req, "sts", auth_, creds_, now);
    if (auth.error) return finish(StsService::auth_error(*auth.error));
    out.detail = {{"caller", auth.principal.arn}};
  }
  XmlReply x = sts_.call(form, is_signed ? &auth.principal : nullptr, id, now);
  if (!x.error_code.empty()) out.result = x.error_code;
  out.reply = HttpReply{x.status, "text/xml", std::move(x.body), id};
  return out;
}

}  // namespace kmsfs::kms_local
