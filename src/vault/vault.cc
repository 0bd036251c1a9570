#include "vault/vault.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <ctime>

#include "base/file_io.h"
#include "crypto/kdf.h"
#include "crypto/random.h"
#include "format/file_keys.h"
#include "format/header.h"
#include "keys/intermediate/intermediate_wrap.h"
#include "vault/cached_key_guard.h"

namespace kmsfs {

namespace {

constexpr size_t kMaxConfigSize = 64 * 1024;

std::string config_path(const std::string& dir) { return dir + "/" + kConfigFileName; }

std::string now_rfc3339() {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

Result<SecureBuffer> config_mac_key(ByteSpan fs_key, const FsId& id) {
  return hkdf_key(fs_key, id, "kmsfs v1 config mac key");
}

}  // namespace

Result<FileHeader> read_header(BackingFile& f) {
  Bytes raw(header::kSize);
  ASSIGN_OR_RETURN(size_t n, f.read_at(raw, 0));
  raw.resize(n);
  auto h = parse_header(raw);
  if (!h.ok()) return h.status().with_context(f.name());
  return h;
}

Status audit_file(AuditSink* sink, const char* op, const FileHeader& h, const HeaderSlot& slot, const Status& s,
                  std::string detail) {
  if (sink == nullptr) return Status::Ok();
  AuditEvent e;
  e.op = op;
  e.key = slot.key.to_string();
  set_context(e, h.context);
  e.file_id = to_hex(h.file_id);
  if (slot.intermediate) e.ik_id = to_hex(slot.intermediate->id);
  e.detail = std::move(detail);
  set_result(e, s);
  return record_audit(sink, std::move(e));
}

Result<SecureBuffer> dek_wrapped_like(const FileHeader& h, const HeaderSlot& slot, ByteSpan wrapped,
                                      const ProviderUnwrap& unwrap) {
  if (!slot.intermediate) {
    ASSIGN_OR_RETURN(auto dek, unwrap(slot.key, wrapped, h.context));
    return dek->clone();
  }
  const IntermediateKeyRecord& ik = *slot.intermediate;
  ASSIGN_OR_RETURN(EncryptionContext ik_ctx, intermediate_context(h.context, ik.id));
  ASSIGN_OR_RETURN(auto ik_key, unwrap(slot.key, ik.wrapped, ik_ctx));
  return open_dek(ik_key->span(), ik.id, wrapped, h.context);
}

Result<std::unique_ptr<CryptFile>> open_crypt_file(std::shared_ptr<BackingFile> backing,
                                                   KeyProviders& providers,
                                                   CryptFile::Options opts,
                                                   KeyCache* cache) {
  ASSIGN_OR_RETURN(FileHeader h, read_header(*backing));
  // Try the active slot first, then the other: either one unwraps to the same DEK, and a
  // damaged or stale slot must not make the file unreadable.
  const int active = h.active_slot();
  Status first_error;
  for (int idx : {active, 1 - active}) {
    if (idx < 0 || !h.slots[idx]) continue;
    const HeaderSlot& slot = *h.slots[idx];
    // A slot that repeats the one just refused (same key, same wrapped bytes) would be
    // refused again: asking twice only doubles the KMS calls and the wait.
    if (idx != active && active >= 0 && h.slots[active] && !first_error.ok() &&
        h.slots[active]->key.to_string() == slot.key.to_string() &&
        h.slots[active]->wrapped_dek == slot.wrapped_dek && h.slots[active]->intermediate == slot.intermediate) {
      continue;
    }
    std::shared_ptr<KeyGuard> guard;
    // A provider-wrapped key: the DEK itself, or (intermediate mode) the key it is sealed
    // under. The cache (and the file's guard) holds that provider-wrapped key.
    bool keep_guard = true;  // the file's own DEK (or IK) only, not a re-encryption's
    auto unwrap = [&](const KeyRef& ref, ByteSpan wrapped,
                      const EncryptionContext& ctx) -> Result<std::shared_ptr<const SecureBuffer>> {
      if (cache) {
        ASSIGN_OR_RETURN(KeyCache::Lease lease, cache->unwrap(ref, wrapped, ctx));
        if (keep_guard)
          guard = std::make_shared<CachedKeyGuard>(*cache, ref, Bytes(wrapped.begin(), wrapped.end()), ctx, lease);
        return std::move(lease.key);
      }
      ASSIGN_OR_RETURN(KeyProvider * provider, providers.get(ref.provider));
      ASSIGN_OR_RETURN(SecureBuffer k, provider->unwrap(ref, wrapped, ctx));
      return std::make_shared<const SecureBuffer>(std::move(k));
    };
    Result<SecureBuffer> dek = slot_dek(h, slot, unwrap);
    if (!dek.ok()) {
      if (first_error.ok()) first_error = dek.status();
      (void)audit_file(providers.audit(), "file_open", h, slot, dek.status(), idx == active ? "" : "other slot");
      continue;
    }
    // With a required audit log, a file whose key use cannot be recorded does not open.
    RETURN_IF_ERROR(audit_file(providers.audit(), "file_open", h, slot, Status::Ok(), idx == active ? "" : "other slot"));
    ASSIGN_OR_RETURN(auto keys, FileKeys::derive(h.cipher, dek->span(), h.file_id));
    // Mid re-encryption: the new DEK too, from the active slot's record (FORMAT.md §3.9).
    std::shared_ptr<const FileKeys> next;
    if (active >= 0 && h.slots[active]->reencrypt) {
      const HeaderSlot& a = *h.slots[active];
      keep_guard = false;
      auto next_dek = dek_wrapped_like(h, a, a.reencrypt->wrapped_dek, unwrap);
      if (!next_dek.ok())
        return next_dek.status().with_context(backing->name() + ": file " + to_hex(h.file_id) + ": re-encryption key");
      ASSIGN_OR_RETURN(next, FileKeys::derive(h.cipher, next_dek->span(), h.file_id));
    }
    ASSIGN_OR_RETURN(auto f, CryptFile::open(backing, std::move(h), std::move(keys), opts, std::move(next)));
    if (guard) f->set_key_guard(std::move(guard));
    return f;
  }
  return first_error.with_context(backing->name() + ": file " + to_hex(h.file_id) + ": key " +
                                  h.slots[active]->key.to_string());
}

// Reads kmsfs.conf, turning "no such file" into "not a vault" (or "does not exist").
static Result<Bytes> read_config_text(const std::string& dir) {
  auto text = read_file(config_path(dir), kMaxConfigSize);
  if (text.ok() || text.status().code() != Code::kNotFound) return text;
  struct stat st;
  if (::stat(dir.c_str(), &st) != 0) return Status(Code::kNotFound, "'" + dir + "' does not exist", ENOENT);
  return Status(Code::kNotFound, "'" + dir + "' is not a kmsfs vault (no " + kConfigFileName + ")", ENOENT);
}

Result<FsConfig> Vault::peek_config(const std::string& dir) {
  ASSIGN_OR_RETURN(Bytes text, read_config_text(dir));
  return parse_config(text, config_path(dir));
}

Result<TrustAnchor> load_trust_anchor(const std::string& dir, const TrustStore& store) {
  ASSIGN_OR_RETURN(FsConfig c, Vault::peek_config(dir));
  ASSIGN_OR_RETURN(std::optional<TrustRecord> r, store.load(c.fs_id));
  if (!r)
    return Status(Code::kPermissionDenied,
                  "vault " + dir + " (fs id " + c.fs_id_hex() + ") is not trusted on this host: no record in " +
                      store.dir() + "; if it is the vault you expect, accept it once with 'kmsfs trust accept " + dir +
                      " --fs-id " + c.fs_id_hex() + " " +
                      (c.fs_key_ref.provider == ProviderId::kKeyring ? "--keyring PATH --key NAME" : "--kms-key ARN") +
                      "' (docs/OPERATIONS.md, \"A second host, a restore\")");
  return TrustAnchor{store, std::move(*r)};
}

Result<std::pair<KeyRef, Bytes>> trusted_config_wrap(const FsConfig& c, const TrustRecord& r, const std::string& dir) {
  const std::string path = config_path(dir);
  if (r.fs_id != c.fs_id)
    return Status(Code::kPermissionDenied, "vault config " + path + " names fs id " + c.fs_id_hex() +
                                               ", not the trusted " + r.fs_id_hex() + ": it was replaced");
  if (c.generation < r.generation)
    return Status(Code::kPermissionDenied,
                  "vault config " + path + " is generation " + std::to_string(c.generation) + ", older than the " +
                      std::to_string(r.generation) + " this host has seen: a rollback (an old copy put back) is "
                      "refused; to restore an older generation on purpose: kmsfs trust accept " + dir + " --fs-id " +
                      c.fs_id_hex() + " ... --allow-older");
  // Its own wrap, or an endorsement under a key this host already trusts (a rotation
  // made on another host).
  const KeyTrust trust = r.key_trust();
  if (trust.trusts(c.fs_key_ref)) return std::make_pair(c.fs_key_ref, c.fs_key_wrapped);
  for (const auto& e : c.endorsements)
    if (trust.trusts(e.ref)) return std::make_pair(e.ref, e.wrapped);
  return Status(Code::kPermissionDenied,
                "vault config " + path + " is under key " + c.fs_key_ref.to_string() +
                    ", which this host does not trust (trusted: " + (trust.keys().empty() ? "none" : trust.describe()) +
                    "), and no key it trusts endorses it: it was replaced, or rotated by a kmsfs without trust "
                    "records; if the change was deliberate, accept it with 'kmsfs trust accept'");
}

Result<std::unique_ptr<Vault>> Vault::open(const std::string& dir, KeyProviders& providers, TrustAnchor anchor) {
  return open_impl(dir, providers, std::move(anchor));
}

Result<std::unique_ptr<Vault>> Vault::open_unanchored(const std::string& dir, KeyProviders& providers) {
  return open_impl(dir, providers, std::nullopt);
}

Result<std::unique_ptr<Vault>> Vault::open_impl(const std::string& dir, KeyProviders& providers,
                                                std::optional<TrustAnchor> anchor) {
  const std::string path = config_path(dir);
  ASSIGN_OR_RETURN(Bytes text, read_config_text(dir));
  ASSIGN_OR_RETURN(FsConfig c, parse_config(text, path));
  KeyRef auth_ref = c.fs_key_ref;
  Bytes auth_wrapped = c.fs_key_wrapped;
  if (anchor) {
    providers.set_trust(anchor->record.key_trust());
    ASSIGN_OR_RETURN(auto wrap, trusted_config_wrap(c, anchor->record, dir));
    auth_ref = std::move(wrap.first);
    auth_wrapped = std::move(wrap.second);
  }
  ASSIGN_OR_RETURN(KeyProvider * p, providers.get(auth_ref.provider));
  ASSIGN_OR_RETURN(EncryptionContext fs_ctx, c.fs_key_context());
  auto fs_key = p->unwrap(auth_ref, auth_wrapped, fs_ctx);
  if (!fs_key.ok())
    return fs_key.status().with_context("vault " + dir + ": filesystem key (" + auth_ref.to_string() + ")");
  ASSIGN_OR_RETURN(SecureBuffer mac_key, config_mac_key(fs_key->span(), c.fs_id));
  RETURN_IF_ERROR(verify_config(text, c, mac_key.span(), path));
  if (anchor) {
    // Authentic: a holder of a key this host trusts wrote it. A newer generation teaches
    // the record its key set (never a key this host withdrew trust from).
    TrustRecord& r = anchor->record;
    bool changed = r.vault_dir != dir;
    if (c.generation > r.generation) {
      // Added to what the host trusts, never replacing it: a key leaves only by the
      // operator's 'kmsfs trust distrust', and a distrusted one never comes back.
      for (const auto& k : c.declared_keys())
        if (std::find(r.keys.begin(), r.keys.end(), k) == r.keys.end()) r.keys.push_back(k);
      r.generation = c.generation;
      changed = true;
    }
    r.vault_dir = dir;
    if (changed) RETURN_IF_ERROR(anchor->store.save(r));
    providers.set_trust(r.key_trust());
  }
  std::unique_ptr<Vault> v(new Vault(dir, std::move(c), providers, std::move(mac_key)));
  v->anchor_ = std::move(anchor);
  RETURN_IF_ERROR(v->init_names(fs_key->span()));
  return v;
}

Result<std::unique_ptr<Vault>> Vault::init(const std::string& dir, KeyProviders& providers,
                                           const InitOptions& opts) {
  struct stat st;
  if (::stat(dir.c_str(), &st) != 0) return Status::Io(errno, "backing directory " + dir);
  if (!S_ISDIR(st.st_mode)) return Status(Code::kInvalidArgument, dir + " is not a directory");
  if (!valid_block_size(opts.block_size))
    return Status(Code::kInvalidArgument, "block size " + std::to_string(opts.block_size) +
                                              " must be a power of two from 1024 to 1048576");
  FsConfig c;
  random_bytes(c.fs_id);
  c.created = now_rfc3339();
  c.cipher = opts.cipher;
  c.block_size = opts.block_size;
  c.provider = opts.provider;
  c.key_spec = opts.key_spec;
  c.keyring_hint = opts.keyring_hint;
  c.user_context = opts.user_context;
  c.name_mode = opts.plaintext_names ? "plaintext" : "aes-siv";
  c.name_encoding = opts.name_encoding;
  c.longname_max = opts.longname_max;
  c.key_mode = opts.key_mode;
  if (c.key_mode == KeyMode::kIntermediate) {
    if (opts.intermediate_max_files == 0 || opts.intermediate_max_age_s == 0)
      return Status(Code::kInvalidArgument, "intermediate key limits (files, age) must be positive");
    c.intermediate_max_files = opts.intermediate_max_files;
    c.intermediate_max_age_s = opts.intermediate_max_age_s;
    c.features.push_back(kFeatureIntermediateKeys);
  }
  if (!opts.plaintext_names && (c.longname_max < kMinLongnameMax || c.longname_max > 255))
    return Status(Code::kInvalidArgument, "--longname-max must be between " + std::to_string(kMinLongnameMax) +
                                              " and 255, got " + std::to_string(c.longname_max));
  for (const auto& [k, v] : c.user_context.pairs())
    if (k.rfind("kmsfs:", 0) == 0)
      return Status(Code::kInvalidArgument, "encryption context key '" + k + "' is reserved (kmsfs: prefix)");
  // Both contexts must have room for the reserved pairs, or files could never be created.
  auto fs_ctx = c.fs_key_context();
  auto file_ctx = c.file_context(FileId{});
  if (file_ctx.ok() && c.key_mode == KeyMode::kIntermediate) {
    auto ik_ctx = intermediate_context(*file_ctx, IntermediateKeyId{});
    if (!ik_ctx.ok()) file_ctx = ik_ctx.status();
  }
  if (!fs_ctx.ok() || !file_ctx.ok())
    return Status(Code::kInvalidArgument, "encryption context too large: " +
                                              (fs_ctx.ok() ? file_ctx.status() : fs_ctx.status()).message() +
                                              " once kmsfs adds its own pairs");
  ASSIGN_OR_RETURN(KeyProvider * p, providers.get(opts.provider));
  ASSIGN_OR_RETURN(KeyRef ref, p->resolve(opts.key_spec));
  auto fs_key = p->generate_data_key(ref, *fs_ctx);
  if (!fs_key.ok()) return fs_key.status().with_context("vault " + dir + ": generating the filesystem key");
  c.fs_key_ref = fs_key->ref;
  c.fs_key_wrapped = fs_key->wrapped;
  c.generation = 1;
  ASSIGN_OR_RETURN(SecureBuffer mac_key, config_mac_key(fs_key->plaintext.span(), c.fs_id));
  ASSIGN_OR_RETURN(Bytes text, serialize_config(c, mac_key.span()));
  ASSIGN_OR_RETURN(c, parse_config(text, config_path(dir)));  // keeps the MAC field filled
  Status w = write_file_atomic(config_path(dir), text, 0644, /*exclusive=*/true);
  if (w.code() == Code::kAlreadyExists)
    return Status(Code::kAlreadyExists, "'" + dir + "' is already a kmsfs vault (" + kConfigFileName + " exists)");
  RETURN_IF_ERROR(w);
  std::unique_ptr<Vault> v(new Vault(dir, std::move(c), providers, std::move(mac_key)));
  RETURN_IF_ERROR(v->init_names(fs_key->plaintext.span()));
  return v;
}

std::string Vault::key_spec() const {
  std::lock_guard lock(config_mu_);
  return config_.key_spec;
}

KeyRef Vault::fs_key_ref() const {
  std::lock_guard lock(config_mu_);
  return config_.fs_key_ref;
}

Status Vault::rotate_config(const KeyRef& to, const std::string& spec) {
  // One rotation at a time changes these; the lock is not held across the provider call,
  // so creates (which read the key spec) never wait on the KMS here.
  FsConfig next;
  {
    std::lock_guard lock(config_mu_);
    next = config_;
  }
  next.key_spec = spec;
  if (!(next.fs_key_ref == to)) {
    if (to.provider != next.fs_key_ref.provider)
      return Status(Code::kUnsupported, "rotation from " + next.fs_key_ref.to_string() + " to another provider's key " +
                                            to.to_string() + " is not supported");
    ASSIGN_OR_RETURN(KeyProvider * p, providers_.get(next.fs_key_ref.provider));
    ASSIGN_OR_RETURN(EncryptionContext ctx, next.fs_key_context());
    auto moved = p->rewrap(next.fs_key_ref, next.fs_key_wrapped, ctx, to);
    if (!moved.ok()) return moved.status().with_context("vault " + dir_ + ": re-wrapping the filesystem key");
    // The old wrap stays as an endorsement under the old key (unless it is the same key,
    // a newer keyring version), so hosts that trust only that key authenticate this config.
    const TrustedKey old_key{next.fs_key_ref.provider, next.fs_key_ref.key_id};
    const TrustedKey new_key{moved->ref.provider, moved->ref.key_id};
    std::vector<TrustedKey> keys = next.declared_keys();
    if (std::find(keys.begin(), keys.end(), new_key) == keys.end()) keys.push_back(new_key);
    next.trust_keys = std::move(keys);
    std::erase_if(next.endorsements, [&](const FsConfig::Endorsement& e) {
      return TrustedKey{e.ref.provider, e.ref.key_id} == new_key || TrustedKey{e.ref.provider, e.ref.key_id} == old_key;
    });
    if (!(old_key == new_key)) next.endorsements.push_back({next.fs_key_ref, next.fs_key_wrapped});
    next.fs_key_ref = moved->ref;
    next.fs_key_wrapped = std::move(moved->wrapped);
  }
  AuditEvent e;
  e.op = "rotate_config";
  e.to_key = next.fs_key_ref.to_string();
  e.detail = "new files under " + spec;
  {
    std::lock_guard lock(config_mu_);
    if (next.key_spec == config_.key_spec && next.fs_key_ref == config_.fs_key_ref) return Status::Ok();
    e.key = config_.fs_key_ref.to_string();
    next.trust_keys = next.declared_keys();  // a config from before trust_keys gets them now
    next.generation = std::max<uint64_t>(config_.generation, anchor_ ? anchor_->record.generation : 0) + 1;
    ASSIGN_OR_RETURN(Bytes text, serialize_config(next, config_mac_key_.span()));
    RETURN_IF_ERROR(write_file_atomic(config_path(dir_), text, 0644));
    if (anchor_) {
      TrustRecord& r = anchor_->record;
      for (const auto& k : next.trust_keys)
        if (std::find(r.keys.begin(), r.keys.end(), k) == r.keys.end()) r.keys.push_back(k);
      r.generation = next.generation;
      // The config is written: a record left behind by a failed save only makes this host
      // learn the same thing again from the config at its next open.
      Status saved = anchor_->store.save(r);
      if (!saved.ok()) return saved.with_context("vault " + dir_ + ": the config is rotated, but the trust record");
    }
    config_.key_spec = std::move(next.key_spec);
    config_.fs_key_ref = std::move(next.fs_key_ref);
    config_.fs_key_wrapped = std::move(next.fs_key_wrapped);
    config_.generation = next.generation;
    config_.trust_keys = std::move(next.trust_keys);
    config_.endorsements = std::move(next.endorsements);
  }
  // Recorded once the new config is written (a failure returned above is the caller's to
  // report); the step cannot be undone, so a required log cannot refuse it.
  (void)record_audit(providers_.audit(), std::move(e));
  return Status::Ok();
}

Result<KeyRef> Vault::trust_operator_key(const std::string& spec) {
  ASSIGN_OR_RETURN(KeyRef ref, providers_.resolve_operator_spec(config_.provider, spec));
  return ref;
}

std::optional<TrustRecord> Vault::trust_record() const {
  std::lock_guard lock(config_mu_);
  if (!anchor_) return std::nullopt;
  return anchor_->record;
}

Status Vault::init_names(ByteSpan fs_key) {
  if (!config_.encrypted_names()) return Status::Ok();
  ASSIGN_OR_RETURN(names_, NameCipher::create(fs_key, config_.fs_id, config_.cipher, config_.name_encoding,
                                              config_.longname_max));
  return Status::Ok();
}

Status Vault::start_key_sources(const KeySourceOptions& opts) {
  const auto ttl = cache_ ? cache_->options().ttl : std::chrono::milliseconds::max();
  if (config_.key_mode == KeyMode::kIntermediate) {
    IntermediateKeyOptions io;
    io.max_files = config_.intermediate_max_files;
    if (opts.intermediate_max_files) io.max_files = std::min(io.max_files, opts.intermediate_max_files);
    io.max_age = std::chrono::seconds(config_.intermediate_max_age_s);
    if (opts.intermediate_max_age.count() > 0) io.max_age = std::min(io.max_age, opts.intermediate_max_age);
    // A key disabled in the KMS must stop minting files within the TTL too.
    io.max_age = std::min(io.max_age, ttl);
    intermediates_ = std::make_unique<IntermediateKeys>(io, cache_);
    return Status::Ok();
  }
  if (opts.pool.max_size == 0) return Status::Ok();
  ASSIGN_OR_RETURN(KeyProvider * p, providers_.get(config_.provider));
  if (!p->remote()) return Status::Ok();  // a local generate costs less than a pool
  DataKeyPoolOptions po = opts.pool;
  po.ttl = std::min(po.ttl, ttl);
  pool_ = std::make_unique<DataKeyPool>([this, p](const KeyRef& ref) { return new_data_key(*p, ref); }, po);
  return Status::Ok();
}

Result<PooledDataKey> Vault::new_data_key(KeyProvider& p, const KeyRef& ref) const {
  PooledDataKey k;
  random_bytes(k.file_id);
  ASSIGN_OR_RETURN(k.ctx, config_.file_context(k.file_id));
  ASSIGN_OR_RETURN(k.key, p.generate_data_key(ref, k.ctx));
  return k;
}

void Vault::flush_key_sources() {
  if (pool_) pool_->flush();
  if (intermediates_) intermediates_->flush();
  if (!pool_ && !intermediates_) return;
  AuditEvent e;
  e.op = "flush";
  e.detail = pool_ ? "data key pool" : "intermediate key";
  (void)record_audit(providers_.audit(), std::move(e));
}

Result<std::unique_ptr<CryptFile>> Vault::create_file(std::shared_ptr<BackingFile> backing) {
  FileHeader h;
  h.cipher = config_.cipher;
  h.block_size = config_.block_size;
  h.header_size = config_.header_size;
  ASSIGN_OR_RETURN(KeyProvider * p, providers_.get(config_.provider));
  ASSIGN_OR_RETURN(KeyRef ref, p->resolve(key_spec()));
  std::optional<ReencryptRunId> run;
  {
    std::lock_guard lock(config_mu_);
    run = reencrypt_run_;
  }
  if (config_.key_mode == KeyMode::kIntermediate) return create_intermediate(std::move(backing), std::move(h), *p, ref, run);
  return create_per_file(std::move(backing), std::move(h), *p, ref, run);
}

Result<std::unique_ptr<CryptFile>> Vault::create_per_file(std::shared_ptr<BackingFile> backing, FileHeader h,
                                                          KeyProvider& p, const KeyRef& ref,
                                                          std::optional<ReencryptRunId> run) {
  std::optional<PooledDataKey> pooled = pool_ ? pool_->take(ref) : std::nullopt;
  const bool from_pool = pooled.has_value();
  if (!pooled) {
    auto fresh = new_data_key(p, ref);
    // Filling follows the creates' own calls: only a KMS that just served one is asked
    // for more (data_key_pool.h).
    if (pool_) pool_->on_create_result(ref, fresh.status());
    if (!fresh.ok()) return fresh.status().with_context(backing->name() + ": new data key under " + ref.to_string());
    pooled = std::move(*fresh);
  }
  h.file_id = pooled->file_id;
  h.context = std::move(pooled->ctx);
  DataKey dk = std::move(pooled->key);
  HeaderSlot slot;
  slot.key = dk.ref;
  slot.wrapped_dek = std::move(dk.wrapped);
  slot.dek_run = run;
  h.slots[0] = std::move(slot);
  RETURN_IF_ERROR(audit_file(providers_.audit(), "file_create", h, *h.slots[0], Status::Ok(),
                             from_pool ? "pooled data key" : "new data key"));
  ASSIGN_OR_RETURN(auto keys, FileKeys::derive(h.cipher, dk.plaintext.span(), h.file_id));
  std::shared_ptr<KeyGuard> guard;
  if (cache_) {
    KeyCache::Lease lease = cache_->insert(h.slots[0]->key, h.slots[0]->wrapped_dek, h.context, dk.plaintext);
    guard = std::make_shared<CachedKeyGuard>(*cache_, h.slots[0]->key, h.slots[0]->wrapped_dek, h.context, lease);
  }
  ASSIGN_OR_RETURN(auto f, CryptFile::create(std::move(backing), std::move(h), std::move(keys), file_opts_));
  if (guard) f->set_key_guard(std::move(guard));
  return f;
}

Result<std::unique_ptr<CryptFile>> Vault::create_intermediate(std::shared_ptr<BackingFile> backing, FileHeader h,
                                                              KeyProvider& p, const KeyRef& ref,
                                                              std::optional<ReencryptRunId> run) {
  // Offline tools start no key sources: theirs are the config's limits (single-threaded).
  if (!intermediates_) RETURN_IF_ERROR(start_key_sources(KeySourceOptions{}));
  random_bytes(h.file_id);
  ASSIGN_OR_RETURN(h.context, config_.file_context(h.file_id));
  auto ik = intermediates_->for_new_file(p, ref, h.context);
  if (!ik.ok()) return ik.status().with_context(backing->name());
  std::shared_ptr<const SecureBuffer> ik_key = (*ik)->key;
  std::shared_ptr<KeyGuard> guard;
  if (cache_) {
    // Through the cache, not the copy held for creates: a key the KMS refused since (a
    // refresh evicted it) must not mint files, and the file's guard needs the lease.
    auto lease = cache_->unwrap((*ik)->ref, (*ik)->record.wrapped, (*ik)->ctx);
    if (!lease.ok()) {
      intermediates_->drop(*ik);
      return lease.status().with_context(backing->name() + ": intermediate key " + to_hex((*ik)->record.id));
    }
    ik_key = lease->key;
    guard = std::make_shared<CachedKeyGuard>(*cache_, (*ik)->ref, (*ik)->record.wrapped, (*ik)->ctx, *lease);
  }
  SecureBuffer dek(kDataKeySize);
  random_bytes(dek.span());
  HeaderSlot slot;
  slot.key = (*ik)->ref;
  ASSIGN_OR_RETURN(slot.wrapped_dek, seal_dek(ik_key->span(), (*ik)->record.id, dek.span(), h.context));
  slot.intermediate = (*ik)->record;
  slot.dek_run = run;
  h.slots[0] = std::move(slot);
  RETURN_IF_ERROR(audit_file(providers_.audit(), "file_create", h, *h.slots[0], Status::Ok(), "sealed under the intermediate key"));
  ASSIGN_OR_RETURN(auto keys, FileKeys::derive(h.cipher, dek.span(), h.file_id));
  ASSIGN_OR_RETURN(auto f, CryptFile::create(std::move(backing), std::move(h), std::move(keys), file_opts_));
  if (guard) f->set_key_guard(std::move(guard));
  return f;
}

Result<SlotWrap> Vault::move_wrap(const FileHeader& h, const SlotWrap& from, const KeyRef& to,
                                  const std::function<void()>& before_call) {
  if (from.key.provider != to.provider)
    return Status(Code::kUnsupported, "moving a file from " + from.key.to_string() + " to another provider's key " +
                                          to.to_string() + " is not supported");
  ASSIGN_OR_RETURN(KeyProvider * p, providers_.get(from.key.provider));
  auto call = [&](ByteSpan wrapped, const EncryptionContext& ctx) {
    if (before_call) before_call();
    return p->rewrap(from.key, wrapped, ctx, to);
  };
  SlotWrap out = from;
  if (from.intermediate) {
    // The sealed DEK (and a re-encryption's) stays: the intermediate key does not change.
    ASSIGN_OR_RETURN(EncryptionContext ik_ctx, intermediate_context(h.context, from.intermediate->id));
    ASSIGN_OR_RETURN(Rewrapped r, call(from.intermediate->wrapped, ik_ctx));
    out.key = r.ref;
    out.intermediate->wrapped = std::move(r.wrapped);
    return out;
  }
  ASSIGN_OR_RETURN(Rewrapped r, call(from.wrapped_dek, h.context));
  out.key = r.ref;
  out.wrapped_dek = std::move(r.wrapped);
  if (!from.reencrypt_wrapped.empty()) {
    ASSIGN_OR_RETURN(Rewrapped r2, call(from.reencrypt_wrapped, h.context));
    if (!(r2.ref == out.key)) return Status(Code::kInternal, "provider moved the two data keys to different keys");
    out.reencrypt_wrapped = std::move(r2.wrapped);
  }
  return out;
}

Status Vault::follow_current_key(CryptFile& f) {
  ASSIGN_OR_RETURN(KeyProvider * p, providers_.get(config_.provider));
  // Never a network round trip in a foreground truncate (a KMS outage would stall every
  // O_TRUNC of an old file); the rotation pass moves those.
  if (p->remote()) return Status::Ok();
  ASSIGN_OR_RETURN(KeyRef now, p->resolve(key_spec()));
  const FileHeader h = f.header();
  if (all_slots_under(h, now)) return Status::Ok();
  const SlotWrap from = wrap_of(*h.slots[h.active_slot()]);
  ASSIGN_OR_RETURN(SlotWrap to, move_wrap(h, from, now));
  RETURN_IF_ERROR(f.rewrap(from, to));
  return retarget_guard(f);
}

Status Vault::begin_reencrypt(CryptFile& f, const ReencryptRunId& run) {
  const FileHeader h = f.header();
  const int active = h.active_slot();
  if (active < 0) return Status(Code::kCorrupt, f.backing().name() + ": no valid key slot");
  const HeaderSlot& s = *h.slots[active];
  if (s.reencrypt) return Status::Ok();
  const std::string where = f.backing().name() + ": file " + to_hex(h.file_id);
  ASSIGN_OR_RETURN(KeyProvider * p, providers_.get(s.key.provider));
  Bytes wrapped;
  std::shared_ptr<const FileKeys> keys;
  if (!s.intermediate) {
    auto dk = p->generate_data_key(s.key, h.context);
    if (!dk.ok()) return dk.status().with_context(where + ": new data key under " + s.key.to_string());
    // The record is unwrapped with the slot's key reference: it must name the same key.
    if (!(dk->ref == s.key))
      return Status(Code::kInternal, where + ": provider wrapped the new data key under " + dk->ref.to_string() +
                                         ", not " + s.key.to_string());
    wrapped = std::move(dk->wrapped);
    ASSIGN_OR_RETURN(keys, FileKeys::derive(h.cipher, dk->plaintext.span(), h.file_id));
  } else {
    const IntermediateKeyRecord& ik = *s.intermediate;
    ASSIGN_OR_RETURN(EncryptionContext ik_ctx, intermediate_context(h.context, ik.id));
    std::shared_ptr<const SecureBuffer> ik_key;
    if (cache_) {
      ASSIGN_OR_RETURN(KeyCache::Lease lease, cache_->unwrap(s.key, ik.wrapped, ik_ctx));
      ik_key = std::move(lease.key);
    } else {
      ASSIGN_OR_RETURN(SecureBuffer k, p->unwrap(s.key, ik.wrapped, ik_ctx));
      ik_key = std::make_shared<const SecureBuffer>(std::move(k));
    }
    SecureBuffer dek(kDataKeySize);
    random_bytes(dek.span());
    ASSIGN_OR_RETURN(wrapped, seal_dek(ik_key->span(), ik.id, dek.span(), h.context));
    ASSIGN_OR_RETURN(keys, FileKeys::derive(h.cipher, dek.span(), h.file_id));
  }
  return f.begin_reencrypt(std::move(wrapped), std::move(keys), run);
}

Status Vault::retarget_guard(CryptFile& f) {
  auto* guard = dynamic_cast<CachedKeyGuard*>(f.key_guard().get());
  if (!guard || !cache_) return Status::Ok();
  const FileHeader h = f.header();
  const int active = h.active_slot();
  if (active < 0) return Status(Code::kCorrupt, f.backing().name() + ": no valid key slot");
  const HeaderSlot& s = *h.slots[active];
  EncryptionContext ctx = h.context;
  ByteSpan blob = s.wrapped_dek;
  if (s.intermediate) {
    ASSIGN_OR_RETURN(ctx, intermediate_context(h.context, s.intermediate->id));
    blob = s.intermediate->wrapped;
  }
  ASSIGN_OR_RETURN(KeyCache::Lease lease, cache_->unwrap(s.key, blob, ctx));
  guard->retarget(s.key, Bytes(blob.begin(), blob.end()), std::move(ctx), lease);
  return Status::Ok();
}

void Vault::set_reencrypt_run(std::optional<ReencryptRunId> run) {
  std::lock_guard lock(config_mu_);
  reencrypt_run_ = run;
}

Result<std::unique_ptr<CryptFile>> Vault::create_file(const std::string& path, mode_t mode) {
  ASSIGN_OR_RETURN(auto backing, PosixBackingFile::open(path, O_RDWR | O_CREAT | O_EXCL, mode));
  auto f = create_file(std::shared_ptr<BackingFile>(std::move(backing)));
  if (!f.ok()) ::unlink(path.c_str());  // never leave a half-made file behind
  return f;
}

Result<std::unique_ptr<CryptFile>> Vault::open_file(std::shared_ptr<BackingFile> backing) {
  ASSIGN_OR_RETURN(auto f, open_crypt_file(backing, providers_, file_opts_, cache_));
  // The name (a readlink for an fd-only backing file) is built only for the refusal.
  Status ours = check_ours(f->header());
  if (!ours.ok()) return ours.with_context(backing->name() + ": file " + to_hex(f->id()));
  return f;
}

Status Vault::check_ours(const FileHeader& h) const {
  auto fs = h.context.get(EncryptionContext::kFsIdKey);
  if (!fs || *fs != config_.fs_id_hex())
    return Status(Code::kCorrupt, "belongs to another filesystem (fs id " + std::string(fs.value_or("none")) + ")");
  return Status::Ok();
}

Result<std::unique_ptr<CryptFile>> Vault::open_file(const std::string& path, bool writable) {
  ASSIGN_OR_RETURN(auto backing, PosixBackingFile::open(path, writable ? O_RDWR : O_RDONLY));
  return open_file(std::shared_ptr<BackingFile>(std::move(backing)));
}

}  // namespace kmsfs
