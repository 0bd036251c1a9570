#include "keys/aws/aws_kms_provider.h"

namespace kmsfs::aws {

Result<std::unique_ptr<AwsKmsProvider>> AwsKmsProvider::create(const AwsKmsOptions& o, Env env) {
  ASSIGN_OR_RETURN(AwsSettings s, resolve_settings(o, env));
  // A Region with no dual-stack endpoint fails now, not at the first file opened.
  if (s.endpoint.empty() && valid_region(s.region)) RETURN_IF_ERROR(default_kms_endpoint(s.region, s.variant).status());
  std::shared_ptr<HttpTransport> http = make_curl_transport();
  ChainOptions chain;
  chain.env = std::move(env);
  chain.http = http;
  // Only a profile the user named: the implicit "default" may be absent (an EC2 instance or a
  // container has no AWS config), and the chain must then go on to the metadata sources.
  chain.profile = o.profile;
  chain.region = s.region;
  KmsClientOptions ko;
  ko.region = s.region;
  ko.endpoint = s.endpoint;
  ko.allow_insecure_endpoint = s.allow_insecure_endpoint;
  ko.variant = s.variant;
  ko.retry.max_attempts = s.retry.max_attempts;
  ko.adaptive = s.retry.adaptive;
  auto client = std::make_shared<KmsClient>(http, make_default_chain(std::move(chain)), std::move(ko));
  RETURN_IF_ERROR(client->check_endpoint().with_context("KMS endpoint from " + s.endpoint_source));
  return std::make_unique<AwsKmsProvider>(std::move(client));
}

AwsKmsProvider::AwsKmsProvider(std::shared_ptr<KmsClient> client, std::chrono::seconds resolve_ttl)
    : client_(std::move(client)), resolve_ttl_(resolve_ttl) {}

Status AwsKmsProvider::check_ref(const KeyRef& key) const {
  if (key.provider != ProviderId::kAwsKms || key.key_id.empty()) {
    return Status(Code::kInvalidArgument, "not an AWS KMS key reference: " + key.to_string());
  }
  return Status::Ok();
}

KeyRef AwsKmsProvider::ref_from_answer(const std::string& answered, const KeyRef& asked) const {
  // KMS answers with the key ARN; a server that answers otherwise (not a well-formed key
  // ARN, or one in a region this client may not use) does not get to change what the
  // header records.
  const bool usable = parse_kms_arn(answered).ok() && client_->region_for(answered).ok();
  return KeyRef{ProviderId::kAwsKms, usable ? answered : asked.key_id, 0};
}

Result<KeyRef> AwsKmsProvider::resolve(std::string_view spec) {
  if (spec.empty() || spec.size() > kMaxKeyIdSize) {
    return Status(Code::kInvalidArgument, "AWS KMS key spec must be 1 to " +
                                              std::to_string(kMaxKeyIdSize) + " characters");
  }
  auto now = std::chrono::steady_clock::now();
  {
    std::lock_guard g(mu_);
    if (auto it = resolved_.find(spec); it != resolved_.end() && now < it->second.second) {
      return it->second.first;
    }
  }
  RETURN_IF_ERROR(check_kms_key_name(spec));
  std::string key(spec);
  ASSIGN_OR_RETURN(KeyMetadata m, client_->describe_key(key));
  if (!parse_kms_arn(m.arn).ok()) {
    return Status(Code::kCorrupt, "KMS DescribeKey of " + key + " returned no well-formed key ARN");
  }
  if (Result<std::string> r = client_->region_for(m.arn); !r.ok()) {
    return Status(Code::kCorrupt, "KMS DescribeKey of " + key +
                                      " answered a key in a region this client may not use");
  }
  if (m.key_state == "PendingDeletion" || m.key_state == "PendingReplicaDeletion") {
    return Status(Code::kPermissionDenied, "KMS key " + m.arn + " is pending deletion");
  }
  if (!m.enabled || (!m.key_state.empty() && m.key_state != "Enabled")) {
    return Status(Code::kPermissionDenied, "KMS key " + m.arn + " is disabled (state " +
                                               (m.key_state.empty() ? "unknown" : m.key_state) + ")");
  }
  if (m.key_usage != "ENCRYPT_DECRYPT") {
    return Status(Code::kInvalidArgument, "KMS key " + m.arn + " has KeyUsage " + m.key_usage +
                                              "; kmsfs needs ENCRYPT_DECRYPT");
  }
  if (m.key_spec != "SYMMETRIC_DEFAULT") {
    return Status(Code::kInvalidArgument, "KMS key " + m.arn + " has KeySpec " + m.key_spec +
                                              "; kmsfs needs SYMMETRIC_DEFAULT");
  }
  if (m.arn.size() > kMaxKeyIdSize) {
    return Status(Code::kInvalidArgument, "KMS key ARN longer than " + std::to_string(kMaxKeyIdSize));
  }
  KeyRef ref{ProviderId::kAwsKms, m.arn, 0};
  std::lock_guard g(mu_);
  resolved_[key] = {ref, now + resolve_ttl_};
  return ref;
}

Result<DataKey> AwsKmsProvider::generate_data_key(const KeyRef& key, const EncryptionContext& ctx) {
  RETURN_IF_ERROR(check_ref(key));
  ASSIGN_OR_RETURN(PlaintextAnswer a, client_->generate_data_key(key.key_id, ctx));
  if (a.plaintext.size() != kDataKeySize) {
    return Status(Code::kCorrupt, "KMS GenerateDataKey returned a key of the wrong size");
  }
  return DataKey{std::move(a.plaintext), std::move(a.blob), ref_from_answer(a.key_id, key)};
}

Result<SecureBuffer> AwsKmsProvider::unwrap(const KeyRef& key, ByteSpan wrapped,
                                            const EncryptionContext& ctx) {
  RETURN_IF_ERROR(check_ref(key));
  ASSIGN_OR_RETURN(PlaintextAnswer a, client_->decrypt(key.key_id, wrapped, ctx));
  if (a.plaintext.size() != kDataKeySize) {
    return Status(Code::kCorrupt, "KMS Decrypt under " + key.key_id +
                                      " returned " + std::to_string(a.plaintext.size()) +
                                      " bytes, not a data key");
  }
  return std::move(a.plaintext);
}

Result<Rewrapped> AwsKmsProvider::rewrap(const KeyRef& from, ByteSpan wrapped,
                                         const EncryptionContext& ctx, const KeyRef& to) {
  RETURN_IF_ERROR(check_ref(from));
  RETURN_IF_ERROR(check_ref(to));
  ASSIGN_OR_RETURN(BlobAnswer a, client_->reencrypt(from.key_id, wrapped, ctx, to.key_id, ctx));
  return Rewrapped{std::move(a.blob), ref_from_answer(a.key_id, to)};
}

}  // namespace kmsfs::aws
