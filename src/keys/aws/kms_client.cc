#include "keys/aws/kms_client.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <thread>

#include "crypto/vector_registers.h"
#include "keys/aws/kms_errors.h"
#include "keys/aws/url.h"
#include "keys/call_priority.h"

namespace kmsfs::aws {

namespace {
template <typename T>
Result<T> with_op(std::string_view op, Result<T> r) {
  if (!r.ok()) return r.status().with_context("KMS " + std::string(op));
  return r;
}
}  // namespace

std::string region_of_arn(std::string_view key_id) {
  Result<KmsArn> arn = parse_kms_arn(key_id);
  return arn.ok() ? arn->region : std::string();
}

KmsClient::KmsClient(std::shared_ptr<HttpTransport> http,
                     std::shared_ptr<CredentialsProvider> creds, KmsClientOptions opts)
    : http_(std::move(http)), creds_(std::move(creds)), opts_(std::move(opts)) {
  if (!opts_.random) opts_.random = default_random01;
  if (!opts_.sleep) opts_.sleep = [](std::chrono::milliseconds d) { std::this_thread::sleep_for(d); };
  if (!opts_.clock) opts_.clock = [] { return std::chrono::system_clock::now(); };
  // Malformed regions are simply not allowed; region_for says so when one is needed.
  if (valid_region(opts_.region)) allowed_.push_back(opts_.region);
  for (const std::string& r : opts_.allowed_regions) {
    if (!allow_region(r).ok()) spdlog::warn("KMS: ignoring malformed allowed region");
  }
  if (!opts_.endpoint.empty()) {
    Result<Url> url = parse_url(opts_.endpoint);
    endpoint_status_ = url.ok() ? check_endpoint_security(*url, opts_.allow_insecure_endpoint)
                                : url.status();
  }
  if (opts_.adaptive) limiter_ = std::make_unique<AdaptiveRateLimiter>();
  stats_->set_live_source([this](RequestStats::Snapshot& s) {
    s.retry_quota = quota_.available();
    s.retries_refused = quota_.refused();
    std::lock_guard g(breakers_mu_);
    for (const auto& [origin, b] : breakers_) {
      const CircuitBreaker::Stats bs = b->stats();
      s.breaker_opened += bs.opened;
      s.breaker_rejected += bs.rejected;
      s.breaker_state[origin] = static_cast<int>(b->state());
    }
  });
}

Status KmsClient::allow_region(std::string_view region) {
  if (!valid_region(region)) {
    return Status(Code::kInvalidArgument, "not a valid AWS region name");
  }
  std::lock_guard g(region_mu_);
  if (std::find(allowed_.begin(), allowed_.end(), region) == allowed_.end()) {
    allowed_.emplace_back(region);
  }
  return Status::Ok();
}

Status KmsClient::allow_key_arn(std::string_view key_arn) {
  ASSIGN_OR_RETURN(KmsArn arn, parse_kms_arn(key_arn));
  return allow_region(arn.region);
}

std::vector<std::string> KmsClient::allowed_regions() const {
  std::lock_guard g(region_mu_);
  return allowed_;
}

CircuitBreaker& KmsClient::breaker_for(const std::string& origin) {
  std::lock_guard g(breakers_mu_);
  auto& b = breakers_[origin];
  if (!b) b = std::make_unique<CircuitBreaker>(opts_.breaker);
  return *b;  // never erased: the reference outlives the lock
}

Result<std::string> KmsClient::region_for(std::string_view key_id) const {
  if (key_id.starts_with("arn:")) {
    ASSIGN_OR_RETURN(KmsArn arn, parse_kms_arn(key_id));
    std::lock_guard g(region_mu_);
    if (std::find(allowed_.begin(), allowed_.end(), arn.region) != allowed_.end()) return arn.region;
    std::string allowed;
    for (const std::string& r : allowed_) allowed += (allowed.empty() ? "" : ", ") + r;
    // The ARN is well-formed (no spaces, no control characters), so it can be shown.
    return Status(Code::kPermissionDenied,
                  "refused KMS key " + std::string(key_id) + ": region " + arn.region +
                      " is not one this client was configured for (" +
                      (allowed.empty() ? std::string("none") : allowed) +
                      "); pass --region or name the key to allow it");
  }
  RETURN_IF_ERROR(check_kms_key_name(key_id));
  if (!opts_.region.empty()) {
    if (!valid_region(opts_.region)) {
      return Status(Code::kInvalidArgument,
                    "the configured AWS region '" + opts_.region + "' is not a valid region name");
    }
    return opts_.region;
  }
  std::lock_guard g(region_mu_);
  if (allowed_.empty()) {
    return Status(Code::kInvalidArgument,
                  "no AWS region for KMS key '" + std::string(key_id) +
                      "': pass --region, set AWS_REGION, or use the key ARN");
  }
  return allowed_.front();
}

Result<HttpResponse> KmsClient::call(std::string_view op, const std::string& key_id,
                                     std::string body) {
  WipeOnExit wipe_body(body);
  RETURN_IF_ERROR(endpoint_status_.with_context("KMS " + std::string(op)));
  ASSIGN_OR_RETURN(std::string region, region_for(key_id));
  // The host comes from the operator's endpoint, or from a checked region and its
  // partition's DNS suffix: never from the key name's text.
  std::string endpoint = opts_.endpoint;
  if (endpoint.empty()) {
    ASSIGN_OR_RETURN(endpoint, default_kms_endpoint(region, opts_.variant));
  }
  ASSIGN_OR_RETURN(Url url, parse_url(endpoint));

  CircuitBreaker& breaker = breaker_for(url.origin);
  // Only a call someone waits on retries; rotation defers a file instead, and background
  // work simply stops (call_priority.h). Only those two may probe a breaker that is open.
  const CallPriority priority = call_priority();
  const int max_attempts = priority == CallPriority::kUser ? std::max(1, opts_.retry.max_attempts) : 1;
  const bool may_probe = priority != CallPriority::kBackground;
  auto not_sent = [&](const Status& last) {
    const auto in = breaker.retry_in();
    return Status(Code::kUnavailable,
                  "KMS " + std::string(op) + " at " + url.origin + " not sent: the endpoint is failing (circuit breaker " +
                      breaker_state_name(breaker.state()) + (in.count() > 0 ? ", next try in " + std::to_string(in.count()) + " ms" : "") +
                      ")" + (last.ok() ? "" : "; last error: " + last.message()));
  };

  Status last;
  int attempts = 0;
  int quota_spent = 0;
  bool last_was_transport = false;
  for (int attempt = 0; attempt < max_attempts; ++attempt) {
    if (attempt > 0) {
      // Our own failures (or others') opened the breaker: fail now, not after a backoff.
      if (breaker.state() != BreakerState::kClosed) return not_sent(last);
      if (!quota_.acquire(last_was_transport)) {
        spdlog::debug("KMS {} on {}: {}; no retry, the retry quota is spent", op, key_id, last.message());
        break;
      }
      // As botocore: a success refunds the cost of the last retry.
      quota_spent = last_was_transport ? RetryQuota::kTimeoutCost : RetryQuota::kRetryCost;
      auto delay = backoff_delay(opts_.retry, attempt - 1, opts_.random());
      spdlog::debug("KMS {} on {}: {}; retry {} in {} ms", op, key_id, last.message(), attempt,
                    delay.count());
      stats_->record_retry(op);
      opts_.sleep(delay);
    }
    const CircuitBreaker::Admission admission = breaker.admit(may_probe);
    if (admission == CircuitBreaker::Admission::kRejected) return not_sent(last);
    const bool probe = admission == CircuitBreaker::Admission::kProbe;
    // Whatever ends this attempt before it reaches the endpoint says nothing about it.
    struct ProbeGuard {
      CircuitBreaker& b;
      bool armed;
      ~ProbeGuard() {
        if (armed) b.cancel_probe();
      }
    } probe_guard{breaker, probe};
    if (limiter_) limiter_->acquire();
    ASSIGN_OR_RETURN(std::shared_ptr<const Credentials> creds, creds_->get());

    HttpRequest req;
    req.method = "POST";
    req.path = url.path;
    req.headers = {{"Host", url.host_header},
                   {"Content-Type", "application/x-amz-json-1.1"},
                   {"X-Amz-Target", "TrentService." + std::string(op)}};
    req.body = body;
    SigningParams sp{.region = region, .service = "kms", .amz_date = amz_date(opts_.clock())};
    RETURN_IF_ERROR(sign_headers(req, *creds, sp).status());

    HttpCall hc;
    hc.method = "POST";
    hc.url = url.origin + url.path;
    hc.headers = std::move(req.headers);
    hc.body = std::move(req.body);
    WipeOnExit wipe_sent(hc.body);
    const auto t0 = std::chrono::steady_clock::now();
    ++attempts;
    Result<HttpResponse> r = http_->send(hc);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (!r.ok()) {
      stats_->record(op, "ConnectionError", seconds);
      if (r.status().code() != Code::kUnavailable) return r.status().with_context("KMS " + std::string(op));
      probe_guard.armed = false;
      breaker.on_failure(probe);
      if (limiter_) limiter_->on_response(false);
      last = r.status();
      last_was_transport = true;
      continue;
    }
    probe_guard.armed = false;
    if (r->status == 200) {
      stats_->record(op, "ok", seconds);
      breaker.on_success(probe);
      if (limiter_) limiter_->on_response(false);
      quota_.release(quota_spent);
      return r;
    }

    const std::string_view body_text(r->body.data(), r->body.size());
    ErrorAnswer err = parse_error(body_text);
    if (err.type.empty()) err.type = r->header("x-amzn-errortype");
    if (err.type.empty() && err.message.empty()) {
      // A proxy's or load balancer's page (HTML, XML, text): classified by the status
      // alone, and never repeated (it can be large, multi-line, or say too much).
      const size_t first = body_text.find_first_not_of(" \t\r\n");
      if (first != std::string_view::npos && body_text[first] != '{') {
        err.message = "not a KMS answer (an HTML, XML or text page: a proxy or load balancer?)";
      }
    }
    const std::string_view short_type = short_error_code(err.type);
    stats_->record(op, short_type.empty() ? "HTTP " + std::to_string(r->status) : std::string(short_type), seconds);
    last = map_kms_error(r->status, err.type, err.message, op, key_id);
    const RetryClass rc = classify_http(r->status, err.type);
    if (limiter_) limiter_->on_response(rc == RetryClass::kThrottled);
    if (rc == RetryClass::kNever) {
      // A definite answer (denied, disabled, not found): the endpoint works.
      breaker.on_success(probe);
      return last;
    }
    if (rc == RetryClass::kThrottled) stats_->record_throttled();
    breaker.on_failure(probe);
    last_was_transport = false;
  }
  if (last.code() == Code::kUnavailable) {
    return Status(Code::kUnavailable, "KMS " + std::string(op) + " at " + url.origin + ": " + last.message() +
                                          " (after " + std::to_string(attempts) + " attempt" +
                                          (attempts == 1 ? "" : "s") + ")");
  }
  return last;
}

Result<PlaintextAnswer> KmsClient::generate_data_key(const std::string& key_id,
                                                     const EncryptionContext& ctx) {
  ASSIGN_OR_RETURN(std::string body, generate_data_key_body(key_id, ctx));
  ASSIGN_OR_RETURN(HttpResponse r, call("GenerateDataKey", key_id, std::move(body)));
  Result<PlaintextAnswer> a = parse_generate_data_key(r.body);
  wipe(r.body);
  clear_vector_registers();  // the base64 key passed through them; the thread may now sleep
  if (!a.ok()) return a.status().with_context("KMS GenerateDataKey");
  if (a.ok() && a->plaintext.size() != 32) {
    return Status(Code::kCorrupt, "KMS GenerateDataKey returned a " +
                                      std::to_string(a->plaintext.size()) + "-byte key, not 32");
  }
  return a;
}

Result<PlaintextAnswer> KmsClient::decrypt(const std::string& key_id, ByteSpan blob,
                                           const EncryptionContext& ctx) {
  ASSIGN_OR_RETURN(std::string body, decrypt_body(key_id, blob, ctx));
  ASSIGN_OR_RETURN(HttpResponse r, call("Decrypt", key_id, std::move(body)));
  Result<PlaintextAnswer> a = parse_decrypt(r.body);
  wipe(r.body);
  clear_vector_registers();
  if (!a.ok()) return a.status().with_context("KMS Decrypt");
  return a;
}

Result<BlobAnswer> KmsClient::reencrypt(const std::string& source_key_id, ByteSpan blob,
                                        const EncryptionContext& source_ctx,
                                        const std::string& dest_key_id,
                                        const EncryptionContext& dest_ctx) {
  // Sent to the destination key's region: ReEncrypt is a call on the destination key.
  // The source key must be usable too: its name is in the request.
  if (source_key_id.starts_with("arn:")) RETURN_IF_ERROR(region_for(source_key_id).status());
  ASSIGN_OR_RETURN(std::string body,
                   reencrypt_body(source_key_id, blob, source_ctx, dest_key_id, dest_ctx));
  ASSIGN_OR_RETURN(HttpResponse r, call("ReEncrypt", dest_key_id, std::move(body)));
  return with_op("ReEncrypt", parse_blob_answer(r.body));
}

Result<BlobAnswer> KmsClient::encrypt(const std::string& key_id, ByteSpan plaintext,
                                      const EncryptionContext& ctx) {
  ASSIGN_OR_RETURN(WipedString body, encrypt_body(key_id, plaintext, ctx));
  std::string copy(body.data(), body.size());  // call() wipes this copy once sent
  wipe(body);
  ASSIGN_OR_RETURN(HttpResponse r, call("Encrypt", key_id, std::move(copy)));
  return with_op("Encrypt", parse_blob_answer(r.body));
}

Result<KeyMetadata> KmsClient::describe_key(const std::string& key_id) {
  ASSIGN_OR_RETURN(std::string body, describe_key_body(key_id));
  ASSIGN_OR_RETURN(HttpResponse r, call("DescribeKey", key_id, std::move(body)));
  return with_op("DescribeKey", parse_describe_key(r.body));
}

}  // namespace kmsfs::aws
