#include "keys/key_providers.h"

namespace kmsfs {

// A provider seen through the trust set: every key reference is checked before the
// provider hears of it, and what resolve() or a generate/rewrap answers is checked too (an
// alias retargeted in the KMS to a key the operator never trusted mints nothing).
class KeyProviders::Checked final : public KeyProvider {
 public:
  Checked(KeyProviders& owner, KeyProvider& inner) : owner_(owner), inner_(inner) {}
  ProviderId id() const noexcept override { return inner_.id(); }
  Result<KeyRef> resolve(std::string_view spec) override {
    ASSIGN_OR_RETURN(KeyRef ref, inner_.resolve(spec));
    Status s = owner_.check(ref);
    if (!s.ok()) return Status(Code::kPermissionDenied, "key spec '" + std::string(spec) + "' resolves to a key that " + s.message());
    return ref;
  }
  Result<DataKey> generate_data_key(const KeyRef& key, const EncryptionContext& ctx) override {
    RETURN_IF_ERROR(owner_.check(key));
    return inner_.generate_data_key(key, ctx);
  }
  Result<SecureBuffer> unwrap(const KeyRef& key, ByteSpan wrapped, const EncryptionContext& ctx) override {
    RETURN_IF_ERROR(owner_.check(key));
    return inner_.unwrap(key, wrapped, ctx);
  }
  Result<Rewrapped> rewrap(const KeyRef& from, ByteSpan wrapped, const EncryptionContext& ctx,
                           const KeyRef& to) override {
    RETURN_IF_ERROR(owner_.check(from));
    RETURN_IF_ERROR(owner_.check(to));
    return inner_.rewrap(from, wrapped, ctx, to);
  }
  bool remote() const override { return inner_.remote(); }
  Status refresh() override { return inner_.refresh(); }
  const RequestStats* request_stats() const override { return inner_.request_stats(); }

 private:
  KeyProviders& owner_;
  KeyProvider& inner_;
};

// A provider whose every key operation is recorded in the audit sink: what a KMS's own trail
// would show (CloudTrail), with the file id and the requester it cannot see. The event is
// recorded after the call, outside every lock; a required sink that cannot record it
// turns a success into a failure, so no key is used unrecorded.
class KeyProviders::Audited final : public KeyProvider {
 public:
  Audited(AuditSink& sink, KeyProvider& inner) : sink_(sink), inner_(inner) {}
  ProviderId id() const noexcept override { return inner_.id(); }
  Result<KeyRef> resolve(std::string_view spec) override { return inner_.resolve(spec); }
  Result<DataKey> generate_data_key(const KeyRef& key, const EncryptionContext& ctx) override {
    auto r = inner_.generate_data_key(key, ctx);
    AuditEvent e = event("generate", key, ctx, r.status());
    if (r.ok()) e.key = r->ref.to_string();
    RETURN_IF_ERROR(record_audit(&sink_, std::move(e)));
    return r;
  }
  Result<SecureBuffer> unwrap(const KeyRef& key, ByteSpan wrapped, const EncryptionContext& ctx) override {
    auto r = inner_.unwrap(key, wrapped, ctx);
    RETURN_IF_ERROR(record_audit(&sink_, event("unwrap", key, ctx, r.status())));
    return r;
  }
  Result<Rewrapped> rewrap(const KeyRef& from, ByteSpan wrapped, const EncryptionContext& ctx,
                           const KeyRef& to) override {
    auto r = inner_.rewrap(from, wrapped, ctx, to);
    AuditEvent e = event("rewrap", from, ctx, r.status());
    e.to_key = r.ok() ? r->ref.to_string() : to.to_string();
    RETURN_IF_ERROR(record_audit(&sink_, std::move(e)));
    return r;
  }
  bool remote() const override { return inner_.remote(); }
  Status allow_keys(const std::vector<std::string>& key_ids) override { return inner_.allow_keys(key_ids); }
  Status refresh() override { return inner_.refresh(); }
  const RequestStats* request_stats() const override { return inner_.request_stats(); }

 private:
  static AuditEvent event(std::string op, const KeyRef& key, const EncryptionContext& ctx, const Status& s) {
    AuditEvent e;
    e.op = std::move(op);
    e.key = key.to_string();
    set_context(e, ctx);
    set_result(e, s);
    return e;
  }
  AuditSink& sink_;
  KeyProvider& inner_;
};

KeyProviders::KeyProviders(Factory factory) : factory_(std::move(factory)) {}
KeyProviders::~KeyProviders() = default;

void KeyProviders::add(std::unique_ptr<KeyProvider> p) {
  std::lock_guard lock(mu_);
  ProviderId id = p->id();
  if (auto c = checked_.find(id); c != checked_.end()) {
    audited_.erase(c->second.get());
    checked_.erase(c);
  }
  if (auto old = providers_.find(id); old != providers_.end()) audited_.erase(old->second.get());
  inform_locked(id, *p);
  providers_[id] = std::move(p);
}

Result<KeyProvider*> KeyProviders::raw_locked(ProviderId id) {
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
  inform_locked(id, *raw);
  return raw;
}

KeyProvider* KeyProviders::audited_locked(KeyProvider* p) {
  if (!audit_) return p;
  auto& a = audited_[p];
  if (!a) a = std::make_unique<Audited>(*audit_, *p);
  return a.get();
}

void KeyProviders::set_audit(std::shared_ptr<AuditSink> sink) {
  std::lock_guard lock(mu_);
  audit_ = std::move(sink);
  audited_.clear();
}

Result<KeyProvider*> KeyProviders::get(ProviderId id) {
  std::lock_guard lock(mu_);
  if (!trust_) {
    ASSIGN_OR_RETURN(KeyProvider * raw, raw_locked(id));
    return audited_locked(raw);
  }
  if (!trust_->allows_provider(id))
    return Status(Code::kCorrupt, "names the " + std::string(provider_name(id)) + " provider, but " +
                                      (trust_->source().empty() ? "this command" : trust_->source()) +
                                      " trusts no key of it (trusted: " +
                                      (trust_->keys().empty() ? "none" : trust_->describe()) +
                                      "); no request was made");
  auto c = checked_.find(id);
  if (c != checked_.end()) return audited_locked(c->second.get());
  ASSIGN_OR_RETURN(KeyProvider * raw, raw_locked(id));
  auto wrapped = std::make_unique<Checked>(*this, *raw);
  KeyProvider* out = wrapped.get();
  checked_[id] = std::move(wrapped);
  return audited_locked(out);
}

std::vector<std::pair<ProviderId, const RequestStats*>> KeyProviders::request_stats() {
  std::lock_guard lock(mu_);
  std::vector<std::pair<ProviderId, const RequestStats*>> out;
  for (const auto& [id, p] : providers_) {
    if (const RequestStats* s = p->request_stats()) out.emplace_back(id, s);
  }
  return out;
}

void KeyProviders::inform_locked(ProviderId id, KeyProvider& p) {
  if (!trust_) return;
  std::vector<std::string> ids;
  for (const auto& k : trust_->keys())
    if (k.provider == id) ids.push_back(k.key_id);
  if (ids.empty()) return;
  Status s = p.allow_keys(ids);
  // A trusted key the provider cannot take (a malformed ARN in a record) only means
  // requests for it are refused later, with the provider's own message.
  (void)s;
}

void KeyProviders::set_trust(KeyTrust trust) {
  std::lock_guard lock(mu_);
  trust_ = std::move(trust);
  for (auto& [id, p] : providers_) inform_locked(id, *p);
}

void KeyProviders::trust_key(const TrustedKey& k) {
  std::lock_guard lock(mu_);
  if (!trust_) return;
  trust_->add(k);
  if (auto it = providers_.find(k.provider); it != providers_.end()) inform_locked(k.provider, *it->second);
}

Result<KeyRef> KeyProviders::resolve_operator_spec(ProviderId id, std::string_view spec) {
  KeyProvider* raw = nullptr;
  {
    std::lock_guard lock(mu_);
    ASSIGN_OR_RETURN(raw, raw_locked(id));
  }
  // A keyring changed on disk since the provider was opened (a new version) must be seen.
  RETURN_IF_ERROR(raw->refresh());
  // The operator named it: an ARN's Region may be asked.
  RETURN_IF_ERROR(raw->allow_keys({std::string(spec)}));
  ASSIGN_OR_RETURN(KeyRef ref, raw->resolve(spec));
  trust_key({ref.provider, ref.key_id});
  return ref;
}

Status KeyProviders::check(const KeyRef& ref) const {
  std::lock_guard lock(mu_);
  if (!trust_) return Status::Ok();
  return trust_->check(ref);
}

std::optional<KeyTrust> KeyProviders::trust() const {
  std::lock_guard lock(mu_);
  return trust_;
}

}  // namespace kmsfs
