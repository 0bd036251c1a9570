#include "sts_service.h"

#include <cmath>
#include <ctime>

#include <nlohmann/json.hpp>

#include "base64.h"

namespace kmsfs::kms_local {
namespace {

constexpr const char* kNamespace = "https://sts.amazonaws.com/doc/2011-06-15/";

ApiError sts_error(int status, const char* code, std::string message) {
  return ApiError{status, code, std::move(message)};
}
ApiError validation(std::string message) {
  return sts_error(400, "ValidationError", std::move(message));
}

std::string xml_escape(std::string_view s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&apos;"; break;
      default: out += c;
    }
  }
  return out;
}

std::string element(std::string_view name, std::string_view value) {
  return "<" + std::string(name) + ">" + xml_escape(value) + "</" + std::string(name) + ">";
}

std::string document(const std::string& action, const std::string& result_body,
                     const std::string& request_id) {
  return "<" + action + "Response xmlns=\"" + kNamespace + "\">\n  <" + action + "Result>\n" +
         result_body + "  </" + action + "Result>\n  <ResponseMetadata>\n    " +
         element("RequestId", request_id) + "\n  </ResponseMetadata>\n</" + action +
         "Response>\n";
}

const std::string* param(const std::map<std::string, std::string>& p, const char* name) {
  auto it = p.find(name);
  return it == p.end() ? nullptr : &it->second;
}

// The role name of "arn:aws:iam::123456789012:role/path/Name", or nullopt.
std::optional<std::string> role_name(const std::string& arn) {
  constexpr std::string_view kPrefix = "arn:aws:iam::";
  if (!arn.starts_with(kPrefix)) return std::nullopt;
  size_t colon = arn.find(':', kPrefix.size());
  if (colon == std::string::npos || colon - kPrefix.size() != 12) return std::nullopt;
  std::string_view resource = std::string_view(arn).substr(colon + 1);
  if (!resource.starts_with("role/") || resource.size() == 5 || resource.back() == '/') {
    return std::nullopt;
  }
  return std::string(resource.substr(resource.rfind('/') + 1));
}

bool session_name_ok(const std::string& s) {
  if (s.size() < 2 || s.size() > 64) return false;
  for (char c : s) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || std::string_view("_+=,.@-").find(c) !=
                                                             std::string_view::npos)) {
      return false;
    }
  }
  return true;
}

// A JWT's claims, without checking its signature (no identity provider to trust here).
std::optional<nlohmann::json> jwt_claims(const std::string& token) {
  size_t a = token.find('.'), b = a == std::string::npos ? a : token.find('.', a + 1);
  if (b == std::string::npos || token.find('.', b + 1) != std::string::npos) return std::nullopt;
  std::string payload = token.substr(a + 1, b - a - 1);
  for (char& c : payload) c = c == '-' ? '+' : c == '_' ? '/' : c;  // base64url -> base64
  while (payload.size() % 4) payload += '=';
  auto raw = base64_decode(payload);
  if (!raw) return std::nullopt;
  auto claims = nlohmann::json::parse(raw->begin(), raw->end(), nullptr, false);
  if (!claims.is_object()) return std::nullopt;
  return claims;
}

std::string claim(const nlohmann::json& claims, const char* name, const char* fallback) {
  auto it = claims.find(name);
  if (it != claims.end() && it->is_string()) return it->get<std::string>();
  if (it != claims.end() && it->is_array() && !it->empty() && (*it)[0].is_string()) {
    return (*it)[0].get<std::string>();  // "aud" may be a list
  }
  return fallback;
}

struct Assumed {
  std::string role_arn;
  std::string session_name;
  double lifetime = 3600;
};

ApiResult<Assumed> assume_params(const std::map<std::string, std::string>& p,
                                 std::optional<double> forced) {
  const std::string* arn = param(p, "RoleArn");
  const std::string* name = param(p, "RoleSessionName");
  if (!arn || !name) return validation("RoleArn and RoleSessionName are required");
  if (!role_name(*arn)) return validation("Invalid RoleArn: " + *arn);
  if (!session_name_ok(*name)) {
    return validation("1 validation error detected: Value '" + *name +
                      "' at 'roleSessionName' failed to satisfy constraint: Member must satisfy "
                      "regular expression pattern: [\\w+=,.@-]*");
  }
  Assumed a{*arn, *name};
  if (const std::string* d = param(p, "DurationSeconds")) {
    char* end = nullptr;
    long v = std::strtol(d->c_str(), &end, 10);
    if (d->empty() || *end != '\0' || v < 900 || v > 43200) {
      return validation("1 validation error detected: Value '" + *d +
                        "' at 'durationSeconds' failed to satisfy constraint: Member must have "
                        "value between 900 and 43200");
    }
    a.lifetime = static_cast<double>(v);
  }
  if (forced) a.lifetime = *forced;
  return a;
}

}  // namespace

std::string iso8601(double seconds) {
  std::time_t t = static_cast<std::time_t>(std::floor(seconds));
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

StsService::StsService(StsConfig config, CredentialStore& creds)
    : config_(std::move(config)), creds_(creds) {}

bool StsService::is_unsigned_action(const std::string& action) {
  return action == "AssumeRoleWithWebIdentity";
}

bool StsService::has_action(const std::string& action) {
  return action == "AssumeRole" || action == "AssumeRoleWithWebIdentity" ||
         action == "GetCallerIdentity";
}

XmlReply StsService::error_reply(const ApiError& e, const std::string& request_id) {
  const char* type = e.http_status >= 500 ? "Receiver" : "Sender";
  std::string body = std::string("<ErrorResponse xmlns=\"") + kNamespace + "\">\n  <Error>\n    " +
                     element("Type", type) + "\n    " + element("Code", e.type) + "\n    " +
                     element("Message", e.message) + "\n  </Error>\n  " +
                     element("RequestId", request_id) + "\n</ErrorResponse>\n";
  return XmlReply{e.http_status, std::move(body), e.type};
}

ApiError StsService::auth_error(const AuthError& e) {
  switch (e.kind) {
    case AuthFailure::kMissing: return sts_error(403, "MissingAuthenticationToken", e.message);
    case AuthFailure::kIncomplete: return sts_error(400, "IncompleteSignature", e.message);
    case AuthFailure::kUnknownKey:
    case AuthFailure::kBadToken: return sts_error(403, "InvalidClientTokenId", e.message);
    case AuthFailure::kExpiredToken: return sts_error(400, "ExpiredToken", e.message);
    case AuthFailure::kBadScope:
    case AuthFailure::kSignatureExpired:
    case AuthFailure::kBadSignature: return sts_error(403, "SignatureDoesNotMatch", e.message);
  }
  return sts_error(403, "AccessDenied", e.message);
}

XmlReply StsService::call(const std::map<std::string, std::string>& params,
                          const Principal* caller, const std::string& request_id, double now) {
  const std::string* action = param(params, "Action");
  const std::string* version = param(params, "Version");
  if (!action || !has_action(*action)) {
    return error_reply(sts_error(400, "InvalidAction",
                                 "Could not find operation " + (action ? *action : "") +
                                     " for version " + (version ? *version : "")),
                       request_id);
  }
  if (!version || *version != "2011-06-15") {
    return error_reply(sts_error(400, "InvalidAction", "Version must be 2011-06-15"), request_id);
  }

  if (*action == "GetCallerIdentity") {
    std::string body = "    " + element("Arn", caller->arn) + "\n    " +
                       element("UserId", caller->user_id) + "\n    " +
                       element("Account", config_.account_id) + "\n";
    return XmlReply{200, document(*action, body, request_id), ""};
  }

  auto assumed = assume_params(params, config_.forced_lifetime_seconds);
  if (!assumed.ok()) return error_reply(assumed.error(), request_id);
  std::string extra;  // AssumeRoleWithWebIdentity's own result members
  if (*action == "AssumeRoleWithWebIdentity") {
    const std::string* token = param(params, "WebIdentityToken");
    std::optional<nlohmann::json> claims;
    if (token) claims = jwt_claims(*token);
    if (!claims) {
      return error_reply(sts_error(400, "InvalidIdentityToken",
                                   "The ID Token provided is not a valid JWT."),
                         request_id);
    }
    if (auto exp = claims->find("exp"); exp != claims->end() && exp->is_number() &&
                                        exp->get<double>() <= now) {
      return error_reply(sts_error(400, "ExpiredTokenException", "Token expired"), request_id);
    }
    extra = "    " + element("SubjectFromWebIdentityToken", claim(*claims, "sub", "")) +
            "\n    " + element("Audience", claim(*claims, "aud", "")) + "\n    " +
            element("Provider", claim(*claims, "iss", "")) + "\n";
  }

  const Assumed& a = assumed.value();
  std::string role = *role_name(a.role_arn);
  Principal who{"arn:aws:sts::" + config_.account_id + ":assumed-role/" + role + "/" +
                    a.session_name,
                derived_unique_id("AROA", a.role_arn) + ":" + a.session_name};
  IssuedSession s = creds_.issue_session(who, a.lifetime, now);
  std::string body = "    <Credentials>\n      " + element("AccessKeyId", s.access_key_id) +
                     "\n      " + element("SecretAccessKey", s.secret) + "\n      " +
                     element("SessionToken", s.session_token) + "\n      " +
                     element("Expiration", iso8601(s.expiration)) +
                     "\n    </Credentials>\n    <AssumedRoleUser>\n      " +
                     element("AssumedRoleId", who.user_id) + "\n      " +
                     element("Arn", who.arn) + "\n    </AssumedRoleUser>\n" + extra;
  return XmlReply{200, document(*action, body, request_id), ""};
}

}  // namespace kmsfs::kms_local
