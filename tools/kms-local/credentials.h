// Every credential the server accepts: the long-term access keys of the credentials file,
// and the temporary ones its STS issues (access key + secret + session token, until they
// expire). Secrets never come from argv; they live in locked memory (SecureBuffer).
//
// The credentials file is the AWS shared-credentials format, so a test can hand the same
// file to the AWS CLI (AWS_SHARED_CREDENTIALS_FILE):
//   [alice]                       <- the identity's name (its IAM user name)
//   aws_access_key_id = AKIA...
//   aws_secret_access_key = ...
// Other keys in a section are ignored; '#' and ';' start comment lines.
#pragma once

#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "crypto/secure_buffer.h"

namespace kmsfs::kms_local {

struct LongTermKey {
  std::string name;  // the section name
  std::string access_key_id;
  SecureBuffer secret;
};

// kInvalidArgument naming the line on a malformed file, a section without both keys or a
// repeated access key id.
Result<std::vector<LongTermKey>> parse_credentials(std::string_view text);
Result<std::vector<LongTermKey>> load_credentials_file(const std::string& path);

// Who signed a request, as STS GetCallerIdentity reports it.
struct Principal {
  std::string arn;      // arn:aws:iam::ACCOUNT:user/NAME or ...:assumed-role/ROLE/SESSION
  std::string user_id;  // the unique id part (AIDA... / AROA...:SESSION)
};

// What a verifier needs to know about an access key id.
struct KeyLookup {
  enum Kind { kUnknown, kLongTerm, kSession } kind = kUnknown;
  SecureBuffer secret;
  std::string session_token;  // kSession only
  double expiration = 0;      // kSession only
  Principal principal;
};

struct IssuedSession {
  std::string access_key_id;
  std::string secret;  // handed to the client in the STS answer, so ordinary memory
  std::string session_token;
  double expiration = 0;
};

// A stable AWS-looking unique id ("AIDA" / "AROA" + 17 characters) derived from `seed`:
// the same user or role always gets the same id, as in IAM.
std::string derived_unique_id(std::string_view prefix, std::string_view seed);

class CredentialStore {
 public:
  CredentialStore(std::vector<LongTermKey> keys, std::string account_id);

  KeyLookup lookup(const std::string& access_key_id) const;
  // New temporary credentials for `principal`, valid for `lifetime_seconds` from `now`.
  IssuedSession issue_session(Principal principal, double lifetime_seconds, double now);

 private:
  struct Session {
    SecureBuffer secret;
    std::string token;
    double expiration = 0;
    Principal principal;
  };
  const std::string account_id_;
  std::map<std::string, LongTermKey> long_term_;  // by access key id; immutable
  mutable std::mutex mu_;
  std::map<std::string, Session> sessions_;  // by access key id; guarded by mu_
};

}  // namespace kmsfs::kms_local
