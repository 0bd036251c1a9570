// Which keys a command may use on a vault's behalf: the trust anchor's key set, as the
// key providers enforce it. Every byte of a header or a vault config is written by whoever
// can write the backing directory, so a key reference read from one is only a claim: a
// provider is asked about it (a network request, a credential, a keyring lookup) only if
// the operator trusted that key (docs/THREAT_MODEL.md, "The trust anchor").
#pragma once

#include <string>
#include <vector>

#include "base/status.h"
#include "format/key_ref.h"

namespace kmsfs {

struct TrustedKey {
  ProviderId provider = ProviderId::kKeyring;
  // Keyring: the key name (every version of it: the keyring file itself is the operator's,
  // and a disabled version refuses on its own). AWS KMS: the exact key ARN.
  std::string key_id;

  bool operator==(const TrustedKey&) const = default;
  std::string to_string() const;  // "keyring:main", "aws-kms:arn:aws:kms:..."
  // Whether `ref` names this key.
  bool matches(const KeyRef& ref) const;
};

class KeyTrust {
 public:
  KeyTrust() = default;  // trusts nothing
  // `source` says where the set came from, for refusals ("the trust record of vault X").
  KeyTrust(std::vector<TrustedKey> keys, std::string source) : keys_(std::move(keys)), source_(std::move(source)) {}

  bool allows_provider(ProviderId p) const;
  bool trusts(const KeyRef& ref) const;
  // Ok, or kCorrupt "header names key X, which ... does not trust": a reference the operator
  // never trusted can only come from someone who wrote the backing store.
  Status check(const KeyRef& ref) const;
  // Adds a key (a rotation's operator-named target); no-op if present.
  void add(const TrustedKey& k);
  const std::vector<TrustedKey>& keys() const { return keys_; }
  const std::string& source() const { return source_; }
  std::string describe() const;  // "keyring:main, keyring:old"

 private:
  std::vector<TrustedKey> keys_;
  std::string source_;
};

}  // namespace kmsfs
