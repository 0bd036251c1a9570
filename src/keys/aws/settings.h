// Where the AWS KMS provider's settings come from, as the AWS SDKs document them (the "AWS
// SDKs and Tools Reference Guide"; docs/KMS.md "Settings"): command-line options, the
// environment, and the profile in the shared config file. Every invalid value is one
// error line that names the variable or the profile setting.
//
// Endpoint, first set wins: --kms-endpoint; AWS_ENDPOINT_URL_KMS; AWS_ENDPOINT_URL; the
// profile's `services = NAME` section ([services NAME] with an indented `kms =` sub-key
// `endpoint_url`); the profile's `endpoint_url`; else the Region's own endpoint, chosen by
// AWS_USE_FIPS_ENDPOINT / AWS_USE_DUALSTACK_ENDPOINT. AWS_IGNORE_CONFIGURED_ENDPOINT_URLS
// (or the profile's ignore_configured_endpoint_urls) drops all but --kms-endpoint. An
// endpoint chosen here is the operator's; it still passes check_endpoint_security.
#pragma once

#include <string>

#include "base/status.h"
#include "keys/aws/credentials.h"
#include "keys/aws/kms_arn.h"

namespace kmsfs::aws {

// What the user may set; everything left empty comes from the environment (docs/KMS.md).
struct AwsKmsOptions {
  std::string region;    // --region
  std::string endpoint;  // --kms-endpoint
  std::string profile;   // overrides AWS_PROFILE
  // Accept a plain http:// endpoint that is not loopback (also
  // KMSFS_KMS_ALLOW_INSECURE_ENDPOINT=1 in the environment).
  bool allow_insecure_endpoint = false;
};

// AWS_MAX_ATTEMPTS / max_attempts (attempts per call a user waits on, 1 to 20, default 3)
// and AWS_RETRY_MODE / retry_mode (standard, the default; adaptive adds client-side rate
// limiting; legacy, whose meaning differs between SDKs, is taken as standard). The
// environment wins over the profile.
struct RetrySettings {
  int max_attempts = 3;
  bool adaptive = false;
  std::string mode = "standard";  // as configured: standard, adaptive or legacy
};

struct AwsSettings {
  std::string region;
  std::string profile;
  // Empty: the Region's endpoint (default_kms_endpoint with `variant`).
  std::string endpoint;
  // Where `endpoint` came from, for messages: "--kms-endpoint", "AWS_ENDPOINT_URL_KMS",
  // "AWS_ENDPOINT_URL", "[services NAME] kms.endpoint_url", "profile NAME endpoint_url".
  std::string endpoint_source;
  EndpointVariant variant;  // AWS_USE_FIPS_ENDPOINT, AWS_USE_DUALSTACK_ENDPOINT
  bool allow_insecure_endpoint = false;
  RetrySettings retry;
};

// kInvalidArgument, naming the variable or setting, for a value that is not valid.
Result<AwsSettings> resolve_settings(const AwsKmsOptions& o, const Env& env);
// resolve_settings(...).retry for the profile AWS_PROFILE names.
Result<RetrySettings> retry_settings(const Env& env);

}  // namespace kmsfs::aws
