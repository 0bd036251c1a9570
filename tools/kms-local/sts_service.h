// The STS side of kms-local: AssumeRole, AssumeRoleWithWebIdentity and GetCallerIdentity
// in the STS query protocol (form-encoded POST, Action=...&Version=2011-06-15, XML answers
// as STS sends them). Enough for a client's credential-provider tests: the temporary
// credentials it issues are accepted for KMS calls until they expire.
//
// There is no IAM: any well-formed role ARN can be assumed by any known caller, and any
// well-formed JWT is accepted as a web identity token (its "exp" claim is honoured).
#pragma once

#include <map>
#include <optional>
#include <string>

#include "api_error.h"
#include "credentials.h"
#include "request_auth.h"

namespace kmsfs::kms_local {

struct StsConfig {
  std::string account_id;
  // When set, every session lasts this long whatever DurationSeconds asked (tests use a
  // few seconds to watch credentials expire; AWS's minimum is 900).
  std::optional<double> forced_lifetime_seconds;
};

struct XmlReply {
  int status = 200;
  std::string body;
  std::string error_code;  // the <Code> of an error document, for the counters
};

class StsService {
 public:
  StsService(StsConfig config, CredentialStore& creds);

  // AssumeRoleWithWebIdentity is the one action callers make unsigned.
  static bool is_unsigned_action(const std::string& action);
  static bool has_action(const std::string& action);

  // `params`: the decoded form (and query) parameters. `caller`: who signed the request
  // (null for an unsigned action).
  XmlReply call(const std::map<std::string, std::string>& params, const Principal* caller,
                const std::string& request_id, double now);

  // The STS error document for an ApiError (auth failures, throttling, faults).
  static XmlReply error_reply(const ApiError& e, const std::string& request_id);
  // Authentication failures in STS's words (InvalidClientTokenId, SignatureDoesNotMatch...).
  static ApiError auth_error(const AuthError& e);

 private:
  StsConfig config_;
  CredentialStore& creds_;
};

// "2026-11-23T14:41:00Z"
std::string iso8601(double seconds);

}  // namespace kmsfs::kms_local
