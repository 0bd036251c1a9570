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

#include "keys/aws/credentials.h"
#include "keys/aws/http.h"
#include "keys/aws/kms_json.h"
#include "keys/request_stats.h"
#include "keys/aws/retry.h"
#include "keys/aws/adaptive_limiter.h"
#include "keys/circuit_breaker.h"

namespace kmsfs::aws {

struct KmsClientOptions {
  // The region for key ids and aliases; a key ARN always names its own region. If empty,
  // the region of the first key ARN the client is asked about is used (a mount unwraps the
  // vault's filesystem key, by ARN, before it resolves the vault's alias for new files).
  std::string region;
  // Overrides https://kms.REGION.amazonaws.com (--kms-endpoint, AWS_ENDPOINT_URL_KMS,
  // AWS_ENDPOINT_URL). Requests are still signed for the key's region.
  std::string endpoint;
  RetryPolicy retry;
  bool adaptive = false;  // AWS_RETRY_MODE=adaptive: client-side rate limiting
  CircuitBreakerOptions breaker;
  Random01 random;                                          // default: default_random01
  std::function<void(std::chrono::milliseconds)> sleep;    // default: this_thread::sleep_for
  Clock clock;                                              // default: system_clock::now
};

// The region in "arn:aws:kms:eu-west-1:111122223333:key/...", or "" if `key_id` is not an ARN.
std::string region_of_arn(std::string_view key_id);
// https://kms.REGION.amazonaws.com (amazonaws.com.cn in the China regions).
std::string default_kms_endpoint(std::string_view region);

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

  // The region a request about `key_id` goes to; kInvalidArgument if none is known.
  Result<std::string> region_for(std::string_view key_id) const;

 private:
  // One operation with retries. `body` is wiped once sent (Encrypt's holds a plaintext).
  Result<HttpResponse> call(std::string_view op, const std::string& key_id, std::string body);
  CircuitBreaker& breaker_for(const std::string& origin);

  mutable std::mutex region_mu_;
  mutable std::string learned_region_;
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
