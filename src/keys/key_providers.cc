#include "keys/key_providers.h"

namespace kmsfs {

void KeyProviders::add(std::unique_ptr<KeyProvider> p) {
  std::lock_guard lock(mu_);
  ProviderId id = p->id();
  providers_[id] = std::move(p);
}

Result<KeyProvider*> KeyProviders::get(ProviderId id) {
  std::lock_guard lock(mu_);
  auto it = providers_.find(id);
  if (it != providers_.end()) return it->second.get();
  if (!factory_)
    return Status(Code::kUnsupported, std::string("no ") + std::string(provider_name(id)) +
                                          " key provider is configured for this command");
  // Creation may prompt for a passphrase; holding mu_ meanwhile is deliberate, so two
  // threads never prompt twice.
  ASSIGN_OR_RETURN(auto p, factory_(id));
  KeyProvider* raw = p.get();
  providers_[id] = std::move(p);
  return raw;
}

std::vector<std::pair<ProviderId, const RequestStats*>> KeyProviders::request_stats() {
  std::lock_guard lock(mu_);
  std::vector<std::pair<ProviderId, const RequestStats*>> out;
  for (const auto& [id, p] : providers_) {
    if (const RequestStats* s = p->request_stats()) out.emplace_back(id, s);
  }
  return out;
}

}  // namespace kmsfs
