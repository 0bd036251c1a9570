// Checks a request's SigV4 signature (header form) the way AWS does, with the signer's own
// verifier (keys/aws/sigv4.h): access key known, session token matching and unexpired,
// credential scope naming this Region and the expected service, X-Amz-Date within the
// allowed skew, signature equal. The failure kinds are protocol-neutral; the KMS and STS
// front ends each word them in their own error vocabulary.
#pragma once

#include <optional>
#include <string>

#include "credentials.h"
#include "keys/aws/sigv4.h"

namespace kmsfs::kms_local {

struct AuthPolicy {
  std::string region;
  double max_skew_seconds = 300;  // AWS allows 5 minutes
};

enum class AuthFailure {
  kMissing,           // no Authorization header
  kIncomplete,        // malformed Authorization, no X-Amz-Date, a signed header missing
  kUnknownKey,        // access key not known
  kBadToken,          // session token missing, wrong, or sent with a long-term key
  kExpiredToken,      // temporary credentials past their expiration
  kBadScope,          // credential scope of another Region or service
  kSignatureExpired,  // X-Amz-Date too far from the server's clock
  kBadSignature,      // the signature does not match
};

struct AuthError {
  AuthFailure kind;
  std::string message;  // as AWS words it
};

struct AuthResult {
  std::optional<AuthError> error;
  Principal principal;  // when !error
};

// `service` is what the scope must name: "kms" or "sts". `now` in seconds since the epoch.
// For STS, the global endpoint's "us-east-1" scope is accepted besides policy.region.
AuthResult authenticate(const aws::HttpRequest& req, std::string_view service,
                        const AuthPolicy& policy, const CredentialStore& creds, double now);

// "20150830T123600Z" -> seconds since the epoch; nullopt if malformed.
std::optional<double> parse_amz_date(std::string_view amz_date);

}  // namespace kmsfs::kms_local
