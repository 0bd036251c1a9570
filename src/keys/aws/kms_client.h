// AWS KMS over its JSON 1.1 protocol (X-Amz-Target: TrentService.<Op>, SigV4 service
// "kms"), with the retry policy of retry.h and the error mapping of kms_errors.h. Only
// the five operations kmsfs needs. Thread-safe.
//
// Load control, so a struggling KMS is not hit harder (docs/OPERATIONS.md "When the KMS
// struggles"): attempts per call by the calling thread's priority (keys/call_priority.h),
// a circuit breaker per endpoint (keys/circuit_breaker.h), the standard mode's retry
// quota, and, with AWS_RETRY_MODE=adaptive, the adaptive mode's client-side rate limiter.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "keys/aws/credentials.h"
#include "keys/aws/http.h"
#include "keys/aws/kms_arn.h"
#include "keys/aws/kms_json.h"
#include "keys/request_stats.h"
#include "keys/aws/retry.h"
#include "keys/aws/adaptive_limiter.h"
#include "keys/circuit_breaker.h"

namespace kmsfs::aws {

struct KmsClientOptions {
  // The region for key ids and aliases, and a region whose key ARNs may be used.
  std::string region;
  // Further regions whose key ARNs may be used: the regions of the key ARNs the operator
  // named. Default (empty): `region` only. A key ARN read from a file header never adds a
  // region (headers are attacker-controlled): a request about a key ARN in any other region
  // is refused before anything is sent. KmsClient::allow_region adds to this later.
  std::vector<std::string> allowed_regions;
  // Overrides https://kms.REGION.DNS-SUFFIX (--kms-endpoint, AWS_ENDPOINT_URL_KMS,
  // AWS_ENDPOINT_URL). Requests are still signed for the key's region, and a key ARN must
  // still be in an allowed region.
  std::string endpoint;
  // Without `endpoint`: the Region's FIPS and/or dual-stack endpoint (kms_arn.h).
  EndpointVariant variant;
  // Accept a plain http:// endpoint to a host that is not loopback
  // (KMSFS_KMS_ALLOW_INSECURE_ENDPOINT=1). Off: http:// only to 127.0.0.0/8, ::1, localhost.
  bool allow_insecure_endpoint = false;
  RetryPolicy retry;
  bool adaptive = false;  // AWS_RETRY_MODE=adaptive: client-side rate limiting
  CircuitBreakerOptions breaker;
  Random01 random;                                          // default: default_random01
  std::function<void(std::chrono::milliseconds)> sleep;    // default: this_thread::sleep_for
  Clock clock;                                              // default: system_clock::now
};

// The region in "arn:aws:kms:eu-west-1:111122223333:key/...", or "" if `key_id` is not a
// well-formed KMS key ARN (kms_arn.h).
std::string region_of_arn(std::string_view key_id);

class KmsClient {
 public:
  KmsClient(std::shared_ptr<HttpTransport> http, std::shared_ptr<CredentialsProvider> creds,
            KmsClientOptions opts);

  Result<PlaintextAnswer> generate_data_key(const std::string& key_id, const EncryptionContext& ctx);
  // Always names the key: KMS then refuses a blob made under another key instead of
  // decrypting with whatever key the blob names.
  Result<PlaintextAnswer> decrypt(const std::string& key_id, ByteSpan blob,
                                  const EncryptionContext& ctx);
  Result<BlobAnswer> reencrypt(const std::string& source_key_id, ByteSpan blob,
                               const EncryptionContext& source_ctx, const std::string& dest_key_id,
                               const EncryptionContext& dest_ctx);
  Result<BlobAnswer> encrypt(const std::string& key_id, ByteSpan plaintext,
                             const EncryptionContext& ctx);
  Result<KeyMetadata> describe_key(const std::string& key_id);

  // Every attempt this client made, by operation and result.
  const RequestStats& stats() const { return *stats_; }

  // The region a request about `key_id` goes to. kInvalidArgument if `key_id` is not a
  // well-formed key name (kms_arn.h) or no region is known for a key id or alias;
  // kPermissionDenied if it is a key ARN in a region that is not allowed.
  Result<std::string> region_for(std::string_view key_id) const;

  // Allows key ARNs in `region` from now on (kInvalidArgument if it is not a well-formed
  // region name). For the layer above: call it for each key the OPERATOR names (on the
  // command line, in an operator-trusted key list), never for a key read from a header.
  // Without a configured region, the first region allowed is also the region of key ids and
  // aliases.
  Status allow_region(std::string_view region);
  // allow_region(region of `key_arn`); kInvalidArgument unless a well-formed key ARN.
  Status allow_key_arn(std::string_view key_arn);
  // The regions key ARNs may be in, configured first.
  std::vector<std::string> allowed_regions() const;

  // Whether the configured endpoint is acceptable (check_endpoint_security, parse_url);
  // every request also fails with this status. Lets a mount fail at start.
  Status check_endpoint() const { return endpoint_status_; }

 private:
  // One operation with retries. `body` is wiped once sent (Encrypt's holds a plaintext).
  Result<HttpResponse> call(std::string_view op, const std::string& key_id, std::string body);
  CircuitBreaker& breaker_for(const std::string& origin);

  mutable std::mutex region_mu_;
  std::vector<std::string> allowed_;  // under region_mu_
  Status endpoint_status_;            // of opts_.endpoint, fixed at construction
  std::shared_ptr<HttpTransport> http_;
  std::shared_ptr<CredentialsProvider> creds_;
  KmsClientOptions opts_;
  std::unique_ptr<RequestStats> stats_ = std::make_unique<RequestStats>();
  RetryQuota quota_;
  std::unique_ptr<AdaptiveRateLimiter> limiter_;  // AWS_RETRY_MODE=adaptive only
  std::mutex breakers_mu_;
  std::map<std::string, std::unique_ptr<CircuitBreaker>> breakers_;  // by endpoint origin
};

}  // namespace kmsfs::aws
