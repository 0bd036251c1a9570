// One API request, start to finish, without any HTTP library: which protocol and operation
// it is (X-Amz-Target: TrentService.<Op> -> KMS JSON 1.1; an Action= form -> STS query),
// fault injection, signature check, the operation, the counters. The HTTP front end
// (http_server.cc) only converts requests and replies, so this is what the unit tests drive.
#pragma once

#include <cstdint>
#include <string>

#include "credentials.h"
#include "faults.h"
#include "keys/aws/sigv4.h"
#include "kms_service.h"
#include "request_auth.h"
#include "stats.h"
#include "sts_service.h"

namespace kmsfs::kms_local {

struct HttpReply {
  int status = 200;
  std::string content_type;
  std::string body;
  std::string request_id;  // sent as x-amzn-RequestId
};

struct Outcome {
  HttpReply reply;
  std::string operation;  // "Encrypt", "AssumeRole"; empty if none could be told
  std::string result;     // "ok" or the error type, as counted in the stats
  bool drop = false;      // close the connection without sending `reply`
  nlohmann::json detail;  // journaled request fields (stats.h), null if none
};

class Dispatcher {
 public:
  Dispatcher(AuthPolicy auth, KmsService& kms, StsService& sts, const CredentialStore& creds,
             Faults& faults, Stats& stats);

  // Sleeps for injected latency before answering.
  Outcome handle(const aws::HttpRequest& req);

 private:
  Outcome handle_kms(const aws::HttpRequest& req, const std::string& op, const std::string& id);
  Outcome handle_sts(const aws::HttpRequest& req, const std::map<std::string, std::string>& form,
                     const std::string& id);
  // Latency, then maybe an injected error (returned) or a drop (noted in `drop`). With
  // `quirk` (KMS requests), an answer quirk may be drawn too and is left there.
  std::optional<ApiError> inject(const std::string& op, bool& drop, FaultDecision* quirk = nullptr);

  const AuthPolicy auth_;
  KmsService& kms_;
  StsService& sts_;
  const CredentialStore& creds_;
  Faults& faults_;
  Stats& stats_;
};

// Authentication failures in KMS's words (UnrecognizedClientException,
// InvalidSignatureException, ...). All HTTP 400, as the JSON services answer them.
ApiError kms_auth_error(const AuthError& e);

// A quirk (faults.h) applied to a successful KMS answer: null and unknown members added,
// or the required member removed. Error-page quirks do not touch answers.
void apply_answer_quirk(Quirk q, std::string_view op, nlohmann::json& answer);

// application/x-www-form-urlencoded (and query strings): '+' is a space, %XX a byte.
std::map<std::string, std::string> parse_form(std::string_view text);

}  // namespace kmsfs::kms_local
