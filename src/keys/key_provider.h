// The narrow seam every key provider implements (keyring now; AWS KMS, PKCS#11, Vault
// Transit later). Three operations, shaped after KMS so the keyring is not privileged:
// generate a data key, unwrap a wrapped one, and re-wrap server-side (ReEncrypt) so
// rotation never needs the plaintext DEK.
#pragma once

#include <memory>
#include <string_view>
#include <vector>

#include "base/bytes.h"
#include "base/status.h"
#include "crypto/secure_buffer.h"
#include "format/key_ref.h"
#include "keys/request_stats.h"

namespace kmsfs {

constexpr size_t kDataKeySize = 32;

struct DataKey {
  SecureBuffer plaintext;  // kDataKeySize bytes
  Bytes wrapped;           // opaque to everything but the provider
  KeyRef ref;              // exactly which key (and version) wrapped it
};

struct Rewrapped {
  Bytes wrapped;
  KeyRef ref;
};

class KeyProvider {
 public:
  virtual ~KeyProvider() = default;
  virtual ProviderId id() const noexcept = 0;

  // Turns a user's key spec ("main", "main:2"; for KMS an alias, id or ARN) into the exact
  // ref that new data keys go under now (keyring: the newest enabled version; KMS: the ARN).
  virtual Result<KeyRef> resolve(std::string_view spec) = 0;

  // A fresh random data key and its wrap under `key`, bound to `ctx`.
  virtual Result<DataKey> generate_data_key(const KeyRef& key, const EncryptionContext& ctx) = 0;

  // kPermissionDenied if the key (version) is disabled or access is denied; kCorrupt if the
  // blob does not authenticate under that key and context; kNotFound for an unknown key.
  virtual Result<SecureBuffer> unwrap(const KeyRef& key, ByteSpan wrapped,
                                      const EncryptionContext& ctx) = 0;

  // Moves a wrap from `from` to `to` under the same context.
  virtual Result<Rewrapped> rewrap(const KeyRef& from, ByteSpan wrapped,
                                   const EncryptionContext& ctx, const KeyRef& to) = 0;

  // Whether unwrapping may wait on a network service. The key cache fetches keys of remote
  // providers on its own threads (callers wait with a deadline) and those of local ones
  // in the caller's thread (a hand-off would cost more than the unwrap).
  virtual bool remote() const { return false; }

  // The operator trusts these keys of this provider (exact key ids: a trust record, a key
  // named on the command line). A provider that confines where it sends requests (the AWS
  // one: only to allowed Regions) opens up for them; never called with a key read from
  // the backing directory.
  virtual Status allow_keys(const std::vector<std::string>& key_ids) {
    (void)key_ids;
    return Status::Ok();
  }

  // Picks up key changes made outside this process (a keyring file changed by `kmsfs
  // keyring rotate` while a mount runs). Remote providers see changes on every call.
  virtual Status refresh() { return Status::Ok(); }

  // The provider's remote calls, if it makes any (for stats and metrics).
  virtual const RequestStats* request_stats() const { return nullptr; }
};

}  // namespace kmsfs
