// KeyProvider over AWS KMS (or a KMS-compatible endpoint such as tools/kms-local). A data
// key is a KMS GenerateDataKey under the key's ARN, bound to the file's encryption
// context; the header records the ARN KMS returned, never an alias, so retargeting an alias
// changes where new files go but never orphans old ones.
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "keys/aws/credentials.h"
#include "keys/aws/kms_client.h"
#include "keys/aws/settings.h"
#include "keys/key_provider.h"

namespace kmsfs::aws {

class AwsKmsProvider final : public KeyProvider {
 public:
  // The real thing: libcurl transport, default credential chain, settings from `env`.
  static Result<std::unique_ptr<AwsKmsProvider>> create(const AwsKmsOptions& o,
                                                        Env env = Env::process());
  explicit AwsKmsProvider(std::shared_ptr<KmsClient> client,
                          std::chrono::seconds resolve_ttl = std::chrono::seconds(300));

  ProviderId id() const noexcept override { return ProviderId::kAwsKms; }
  // ARN, "alias/NAME", key id, or an alias ARN. DescribeKey checks that the key exists, is
  // enabled, and is a symmetric ENCRYPT_DECRYPT key; the answer's ARN becomes the KeyRef.
  // Cached for resolve_ttl: every file create resolves the vault's spec, and an alias
  // retarget is picked up within that time.
  Result<KeyRef> resolve(std::string_view spec) override;
  Result<DataKey> generate_data_key(const KeyRef& key, const EncryptionContext& ctx) override;
  Result<SecureBuffer> unwrap(const KeyRef& key, ByteSpan wrapped,
                              const EncryptionContext& ctx) override;
  Result<Rewrapped> rewrap(const KeyRef& from, ByteSpan wrapped, const EncryptionContext& ctx,
                           const KeyRef& to) override;
  bool remote() const override { return true; }

  // Region confinement (KmsClient::allow_region): a key ARN is used only in the configured
  // region or a region allowed here. The layer that knows which keys the OPERATOR named
  // (command line, trusted key list) calls allow_key for each of them before any file is
  // opened; a key reference read from a header must never be passed here.
  Status allow_region(std::string_view region) { return client_->allow_region(region); }
  Status allow_key(std::string_view key_arn) { return client_->allow_key_arn(key_arn); }
  // Every ARN among them (a key id or alias names no Region and needs none allowed).
  Status allow_keys(const std::vector<std::string>& key_ids) override {
    for (const auto& k : key_ids)
      if (k.starts_with("arn:")) RETURN_IF_ERROR(client_->allow_key_arn(k));
    return Status::Ok();
  }
  const RequestStats* request_stats() const override { return &client_->stats(); }

 private:
  Status check_ref(const KeyRef& key) const;
  KeyRef ref_from_answer(const std::string& answered, const KeyRef& asked) const;

  std::shared_ptr<KmsClient> client_;
  const std::chrono::seconds resolve_ttl_;
  std::mutex mu_;
  std::map<std::string, std::pair<KeyRef, std::chrono::steady_clock::time_point>, std::less<>>
      resolved_;
};

}  // namespace kmsfs::aws
