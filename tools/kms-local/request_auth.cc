#include "request_auth.h"

#include <cmath>
#include <ctime>

namespace kmsfs::kms_local {
namespace {

AuthResult fail(AuthFailure kind, std::string message) {
  return AuthResult{AuthError{kind, std::move(message)}, {}};
}

constexpr const char* kBadSignatureMessage =
    "The request signature we calculated does not match the signature you provided. Check "
    "your AWS Secret Access Key and signing method. Consult the service documentation for "
    "details.";
constexpr const char* kInvalidToken = "The security token included in the request is invalid.";

std::string amz_date_at(double t) {
  return aws::amz_date(std::chrono::system_clock::time_point(
      std::chrono::seconds(static_cast<int64_t>(std::floor(t)))));
}

}  // namespace

std::optional<double> parse_amz_date(std::string_view s) {
  if (s.size() != 16 || s[8] != 'T' || s[15] != 'Z') return std::nullopt;
  int v[6];
  const size_t pos[6] = {0, 4, 6, 9, 11, 13}, len[6] = {4, 2, 2, 2, 2, 2};
  for (int i = 0; i < 6; ++i) {
    v[i] = 0;
    for (size_t j = pos[i]; j < pos[i] + len[i]; ++j) {
      if (s[j] < '0' || s[j] > '9') return std::nullopt;
      v[i] = v[i] * 10 + (s[j] - '0');
    }
  }
  std::tm tm{};
  tm.tm_year = v[0] - 1900;
  tm.tm_mon = v[1] - 1;
  tm.tm_mday = v[2];
  tm.tm_hour = v[3];
  tm.tm_min = v[4];
  tm.tm_sec = v[5];
  if (tm.tm_mon > 11 || tm.tm_mday < 1 || tm.tm_mday > 31 || tm.tm_hour > 23 || tm.tm_min > 59 ||
      tm.tm_sec > 60) {
    return std::nullopt;
  }
  return static_cast<double>(timegm(&tm));
}

AuthResult authenticate(const aws::HttpRequest& req, std::string_view service,
                        const AuthPolicy& policy, const CredentialStore& creds, double now) {
  auto header = req.header("authorization");
  if (!header) return fail(AuthFailure::kMissing, "Missing Authentication Token");
  auto auth = aws::parse_authorization(*header);
  if (!auth.ok()) return fail(AuthFailure::kIncomplete, auth.status().message());
  auto date_header = req.header("x-amz-date");
  if (!date_header) {
    return fail(AuthFailure::kIncomplete,
                "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' "
                "header.");
  }
  auto date = parse_amz_date(*date_header);
  if (!date) return fail(AuthFailure::kIncomplete, "X-Amz-Date is not YYYYMMDD'T'HHMMSS'Z'");

  // Who, before whether the signature holds: AWS answers an unknown key as such even when
  // the signature is also wrong.
  KeyLookup key = creds.lookup(auth->access_key_id);
  auto token = req.header("x-amz-security-token");
  switch (key.kind) {
    case KeyLookup::kUnknown:
      return fail(AuthFailure::kUnknownKey, kInvalidToken);
    case KeyLookup::kLongTerm:
      if (token) return fail(AuthFailure::kBadToken, kInvalidToken);
      break;
    case KeyLookup::kSession:
      if (!token || !ct_equal(as_bytes(*token), as_bytes(key.session_token))) {
        return fail(AuthFailure::kBadToken, kInvalidToken);
      }
      if (now >= key.expiration) {
        return fail(AuthFailure::kExpiredToken,
                    "The security token included in the request is expired");
      }
      break;
  }

  const bool region_ok =
      auth->region == policy.region || (service == "sts" && auth->region == "us-east-1");
  if (!region_ok) {
    return fail(AuthFailure::kBadScope, "Credential should be scoped to a valid region. ");
  }
  if (auth->service != service) {
    return fail(AuthFailure::kBadScope,
                "Credential should be scoped to correct service: '" + std::string(service) + "'. ");
  }
  const std::string server_date = amz_date_at(now);
  if (*date < now - policy.max_skew_seconds) {
    return fail(AuthFailure::kSignatureExpired,
                "Signature expired: " + std::string(*date_header) + " is now earlier than " +
                    amz_date_at(now - policy.max_skew_seconds) + " (" + server_date + " - " +
                    std::to_string(static_cast<int>(policy.max_skew_seconds / 60)) + " min.)");
  }
  if (*date > now + policy.max_skew_seconds) {
    return fail(AuthFailure::kSignatureExpired,
                "Signature not yet current: " + std::string(*date_header) +
                    " is still later than " + amz_date_at(now + policy.max_skew_seconds) + " (" +
                    server_date + " + " +
                    std::to_string(static_cast<int>(policy.max_skew_seconds / 60)) + " min.)");
  }

  Status st = aws::verify_header_signature(req, *auth, key.secret.span());
  if (st.code() == Code::kPermissionDenied) return fail(AuthFailure::kBadSignature, kBadSignatureMessage);
  if (!st.ok()) return fail(AuthFailure::kIncomplete, st.message());
  return AuthResult{std::nullopt, std::move(key.principal)};
}

}  // namespace kmsfs::kms_local
