// Which provider serves a given ProviderId. A header names its provider, so opening a file
// from a backup may need a provider the vault config does not mention; providers are
// therefore created on first use by a factory that the caller (cli) supplies with the
// command's options (keyring path, passphrase source, AWS settings).
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <utility>
#include <vector>

#include "base/status.h"
#include "keys/key_provider.h"

namespace kmsfs {

class KeyProviders {
 public:
  using Factory = std::function<Result<std::unique_ptr<KeyProvider>>(ProviderId)>;
  explicit KeyProviders(Factory factory) : factory_(std::move(factory)) {}
  // Adopts an already-built provider (tests, or a command that built it up front).
  void add(std::unique_ptr<KeyProvider> p);
  // Creates the provider on first use; later calls return the same one. Thread-safe.
  Result<KeyProvider*> get(ProviderId id);
  // The request counters of the providers created so far that keep any.
  std::vector<std::pair<ProviderId, const RequestStats*>> request_stats();

 private:
  Factory factory_;
  std::mutex mu_;
  std::map<ProviderId, std::unique_ptr<KeyProvider>> providers_;
};

}  // namespace kmsfs
