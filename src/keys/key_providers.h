// Which provider serves a given ProviderId. A header names its provider, so opening a file
// may need a provider the vault config does not mention; providers are therefore created
// on first use by a factory that the caller (cli) supplies with the command's options
// (keyring path, passphrase source, AWS settings).
//
// With a trust set (set_trust), every provider is reached through a checking wrapper: a
// key reference the set does not name is refused before the provider sees it, and a
// provider no trusted key belongs to is never even created (no credential lookup, no
// connection). The CLI always sets one; only unit tests run without.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <utility>
#include <vector>

#include "base/status.h"
#include "keys/audit.h"
#include "keys/key_provider.h"
#include "keys/key_trust.h"

namespace kmsfs {

class KeyProviders {
 public:
  using Factory = std::function<Result<std::unique_ptr<KeyProvider>>(ProviderId)>;
  explicit KeyProviders(Factory factory);
  ~KeyProviders();
  KeyProviders(const KeyProviders&) = delete;
  KeyProviders& operator=(const KeyProviders&) = delete;

  // Adopts an already-built provider (tests, or a command that built it up front).
  void add(std::unique_ptr<KeyProvider> p);
  // Creates the provider on first use; later calls return the same one. Thread-safe.
  // With a trust set, kCorrupt for a provider no trusted key belongs to.
  Result<KeyProvider*> get(ProviderId id);
  // The request counters of the providers created so far that keep any.
  std::vector<std::pair<ProviderId, const RequestStats*>> request_stats();

  // Restricts every later call to the keys of `trust`.
  void set_trust(KeyTrust trust);
  // Trusts one more key from now on (a rotation's target, named by the operator).
  void trust_key(const TrustedKey& k);
  // Resolves a key spec the operator named (a command-line or control-socket argument,
  // never bytes from the backing directory) and trusts the key it resolves to from now on.
  Result<KeyRef> resolve_operator_spec(ProviderId id, std::string_view spec);
  // Ok if no trust set is in force or it names `ref`.
  Status check(const KeyRef& ref) const;
  // The trust set in force, if any.
  std::optional<KeyTrust> trust() const;

  // Every generate, unwrap and rewrap through get() from now on is recorded in `sink`
  // (keys/audit.h), and so are the key cache's, the vault's and rotation's events, which
  // find the sink here. With a required sink, an operation whose event cannot be
  // written fails. Set before the providers are used concurrently.
  void set_audit(std::shared_ptr<AuditSink> sink);
  AuditSink* audit() const { return audit_.get(); }

 private:
  class Checked;
  class Audited;
  Factory factory_;
  mutable std::mutex mu_;
  std::map<ProviderId, std::unique_ptr<KeyProvider>> providers_;  // under mu_
  std::map<ProviderId, std::unique_ptr<Checked>> checked_;        // under mu_
  std::optional<KeyTrust> trust_;                                 // under mu_
  std::shared_ptr<AuditSink> audit_;
  std::map<KeyProvider*, std::unique_ptr<Audited>> audited_;      // under mu_; by the provider seen through it
  // `p` seen through the audit sink, if there is one. mu_ held.
  KeyProvider* audited_locked(KeyProvider* p);
  // Tells a provider which of its keys are trusted (KeyProvider::allow_keys).
  void inform_locked(ProviderId id, KeyProvider& p);
  Result<KeyProvider*> raw_locked(ProviderId id);
};

}  // namespace kmsfs
