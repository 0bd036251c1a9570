// A vault is a backing directory with a kmsfs.conf. This layer ties the format to the key
// providers: it initialises vaults, creates files (fresh DEK, header) and opens them
// (unwrap, verify) for the FUSE layer, rotation and the offline tools.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <string>

#include "base/status.h"
#include "format/crypt_file.h"
#include "keys/cache/key_cache.h"
#include "keys/intermediate/intermediate_keys.h"
#include "keys/key_providers.h"
#include "keys/pool/data_key_pool.h"
#include "format/names.h"
#include "vault/config.h"
#include "vault/open_files.h"
#include "vault/trust_store.h"

namespace kmsfs {

struct InitOptions {
  CipherId cipher = CipherId::kAes256Gcm;
  uint32_t block_size = 4096;
  ProviderId provider = ProviderId::kKeyring;
  std::string key_spec;
  std::string keyring_hint;
  EncryptionContext user_context;
  bool plaintext_names = false;
  NameEncoding name_encoding = NameEncoding::kBase64Url;
  uint32_t longname_max = kDefaultLongnameMax;
  KeyMode key_mode = KeyMode::kPerFile;
  uint64_t intermediate_max_files = 10000;
  uint32_t intermediate_max_age_s = 300;
};

// How a mount amortizes provider calls for new files (cmd_mount; offline tools use none).
struct KeySourceOptions {
  // Intermediate mode: lower the config's limits (0 keeps them).
  uint64_t intermediate_max_files = 0;
  std::chrono::milliseconds intermediate_max_age{0};
  // Per-file mode with a remote provider: pre-generated data keys (0 max: no pool).
  DataKeyPoolOptions pool;
};

// Records one file's key put to use (op "file_open", "file_create", "rotate_file", ...) in
// `sink`, per file in both key modes: in intermediate mode the provider's and the key
// cache's events name only the intermediate key the file's DEK is sealed under. `s` must
// name no path (with plaintext names a backing path is a plaintext name). Ok without a
// sink; the sink's refusal (a required audit log) otherwise.
Status audit_file(AuditSink* sink, const char* op, const FileHeader& h, const HeaderSlot& slot, const Status& s,
                  std::string detail = {});

// Reads and parses a file's header (structure only).
Result<FileHeader> read_header(BackingFile& f);

// Unwraps a provider-wrapped key: a file's DEK or, in intermediate mode, the key its DEK
// is sealed under (FORMAT.md §3.4.3).
using ProviderUnwrap =
    std::function<Result<std::shared_ptr<const SecureBuffer>>(const KeyRef&, ByteSpan wrapped, const EncryptionContext&)>;
// The DEK one slot of `h` holds, through `unwrap`. Does not check the header MAC: a slot
// whose wrap was swapped opens to a DEK the MAC then refuses (CryptFile::open).
// `wrapped` is a DEK wrapped the way `slot` wraps its own (under its key, or sealed under
// its intermediate key): the slot's DEK, or a re-encryption's second one (§3.9).
Result<SecureBuffer> dek_wrapped_like(const FileHeader& h, const HeaderSlot& slot, ByteSpan wrapped,
                                      const ProviderUnwrap& unwrap);
inline Result<SecureBuffer> slot_dek(const FileHeader& h, const HeaderSlot& slot, const ProviderUnwrap& unwrap) {
  return dek_wrapped_like(h, slot, slot.wrapped_dek, unwrap);
}

// Opens any kmsfs file with whatever provider its header names: the basis of `cat` and
// `inspect --verify` on a file copied out of a backup, with no vault config in sight.
// With a cache, the data key comes from it (and goes into it).
Result<std::unique_ptr<CryptFile>> open_crypt_file(std::shared_ptr<BackingFile> backing,
                                                   KeyProviders& providers,
                                                   CryptFile::Options opts = {},
                                                   KeyCache* cache = nullptr);

// What this host trusts for one vault (its record in the trust store) and where to save
// what it learns: an authenticated newer config (another host's rotation) or this
// process's own rotation.
struct TrustAnchor {
  TrustStore store;
  TrustRecord record;
};

// The anchor of the vault in `dir` on this host: its record in `store`, found by the fs id
// the (not yet authenticated) config claims. kPermissionDenied, with the command that
// accepts it, if this host has no record of that vault.
Result<TrustAnchor> load_trust_anchor(const std::string& dir, const TrustStore& store);

// Whether `r` lets this host accept config `c` (read from `dir`), before any key is used:
// the same fs id, a generation no older than the record's, and a wrap of the filesystem
// key under a key the record trusts. Returns that wrap. kPermissionDenied otherwise.
Result<std::pair<KeyRef, Bytes>> trusted_config_wrap(const FsConfig& c, const TrustRecord& r, const std::string& dir);

class Vault {
 public:
  // Writes a new kmsfs.conf into `dir` (which must exist; an existing config is refused).
  static Result<std::unique_ptr<Vault>> init(const std::string& dir, KeyProviders& providers,
                                             const InitOptions& opts);
  // Loads and authenticates kmsfs.conf against this host's trust anchor: its fs id must be
  // the record's, its generation at least the record's, and its filesystem key unwrapped
  // under a key the record trusts (its own wrap, or an endorsement under a retired key).
  // A newer authenticated config teaches the record its key set and generation (saved).
  // From then on `providers` serve only the record's keys. kNotFound if `dir` is not a
  // vault; kPermissionDenied if the config is not one this host trusts.
  static Result<std::unique_ptr<Vault>> open(const std::string& dir, KeyProviders& providers, TrustAnchor anchor);
  // Without a trust anchor: whatever keys the config and headers name (unit tests, and
  // fixtures whose keys the test itself made). Never for a backing directory a user gave.
  static Result<std::unique_ptr<Vault>> open_unanchored(const std::string& dir, KeyProviders& providers);
  // Parses kmsfs.conf without keys (for messages and to learn the provider before opening).
  static Result<FsConfig> peek_config(const std::string& dir);

  // The config. Rotation changes the key of new files and the filesystem key's wrap while
  // mounted: read those through key_spec() and fs_key_ref(), which take the lock.
  const FsConfig& config() const { return config_; }
  std::string key_spec() const;
  KeyRef fs_key_ref() const;
  const std::string& dir() const { return dir_; }

  // Creates `path` (O_EXCL, mode) as an empty kmsfs file under the vault's current key.
  Result<std::unique_ptr<CryptFile>> create_file(const std::string& path, mode_t mode);
  // Same, on a backing file the caller already created (the FUSE create path).
  Result<std::unique_ptr<CryptFile>> create_file(std::shared_ptr<BackingFile> backing);
  // Opens an existing file; refuses one that belongs to another filesystem.
  Result<std::unique_ptr<CryptFile>> open_file(const std::string& path, bool writable);
  Result<std::unique_ptr<CryptFile>> open_file(std::shared_ptr<BackingFile> backing);
  // kCorrupt unless the header's context names this vault's filesystem id. `where`
  // names the file in the message.
  Status check_ours(const FileHeader& h) const;

  CryptFile::Options file_options() const { return file_opts_; }
  // Opens and creates go through `cache` from now on (the mount's; it must outlive the
  // vault). Offline tools use none: each of their keys is unwrapped once anyway.
  void use_key_cache(KeyCache* cache) { cache_ = cache; }
  KeyCache* key_cache() const { return cache_; }
  KeyProviders& providers() { return providers_; }
  // Sets up the key sources for new files; call before files are created concurrently.
  // Intermediate keys never outlive the cache's TTL as a source of new files, and pooled
  // data keys expire with it.
  Status start_key_sources(const KeySourceOptions& opts);
  // Drops the pooled data keys and the current intermediate key (flush-keys).
  void flush_key_sources();
  const DataKeyPool* key_pool() const { return pool_.get(); }
  const IntermediateKeys* intermediate_keys() const { return intermediates_.get(); }
  // Rotation: re-wraps the filesystem key under `to` (kept if it is there already) and
  // makes `spec` the key of new files from now on; rewrites kmsfs.conf atomically with the
  // next generation, `to` added to its trusted keys and the old wrap kept as an
  // endorsement (other hosts that trust only the old key learn the new one from it), and
  // records the same in the trust anchor.
  Status rotate_config(const KeyRef& to, const std::string& spec);
  // Trusts the key an operator named (a rotation target given on a command line or the
  // control socket, never a spec read from the backing directory): resolves `spec` with
  // the vault's provider and adds the key to the providers' trust set. The trust record
  // learns it when rotate_config writes the config naming it.
  Result<KeyRef> trust_operator_key(const std::string& spec);
  // The trust record in force (nullopt for an unanchored vault).
  std::optional<TrustRecord> trust_record() const;
  // The wrap `from` (of a file with header `h`) moved to key `to` by the provider (KMS
  // ReEncrypt; keyring: unwrap and wrap): the DEK's wrap, or in intermediate mode the
  // intermediate key's (the sealed DEK stays), and a re-encryption's second DEK with it.
  // `before_call` runs before each provider call (rate limits, counting).
  Result<SlotWrap> move_wrap(const FileHeader& h, const SlotWrap& from, const KeyRef& to,
                             const std::function<void()>& before_call = {});
  // Lazy rotation: if the open file `f` is not under the key new files get now, moves it
  // there (a file rewritten from empty is as good as new). Local providers only: with a
  // remote one, nothing is done (the rotation pass moves it). Ok if nothing was to do.
  Status follow_current_key(CryptFile& f);
  // Starts re-encrypting `f` (FORMAT.md §3.9) under a fresh DEK wrapped like its current
  // one: per-file, one provider data key under the slot's key; intermediate mode, a local
  // key sealed under the file's intermediate key. Ok if one is under way already.
  Status begin_reencrypt(CryptFile& f, const ReencryptRunId& run);
  // Points an open file's key guard at the wrap its header holds now (after a re-wrap or
  // a finished re-encryption), so renewals never go through a wrap that is gone.
  Status retarget_guard(CryptFile& f);
  // While set, new files record this re-encryption run (their DEK is fresh): the run then
  // skips them.
  void set_reencrypt_run(std::optional<ReencryptRunId> run);
  // Every CryptFile this process has open, shared by the mount and the rotation worker.
  OpenFiles& open_files() { return open_files_; }
  // The name cipher, or nullptr when the vault keeps plaintext names.
  const NameCipher* names() const { return names_.get(); }

 private:
  // `mac_key` authenticates kmsfs.conf; kept so rotation can rewrite it.
  Vault(std::string dir, FsConfig config, KeyProviders& providers, SecureBuffer mac_key)
      : dir_(std::move(dir)), config_(std::move(config)), config_mac_key_(std::move(mac_key)), providers_(providers) {}
  static Result<std::unique_ptr<Vault>> open_impl(const std::string& dir, KeyProviders& providers,
                                                  std::optional<TrustAnchor> anchor);

  std::string dir_;
  FsConfig config_;                  // key_spec, fs_key_ref and fs_key_wrapped under config_mu_
  mutable std::mutex config_mu_;
  SecureBuffer config_mac_key_;
  OpenFiles open_files_;
  KeyProviders& providers_;
  CryptFile::Options file_opts_;
  std::unique_ptr<NameCipher> names_;
  KeyCache* cache_ = nullptr;
  std::unique_ptr<IntermediateKeys> intermediates_;  // intermediate mode only
  std::unique_ptr<DataKeyPool> pool_;                // per-file mode with a remote provider
  std::optional<ReencryptRunId> reencrypt_run_;      // under config_mu_
  std::optional<TrustAnchor> anchor_;                // under config_mu_

  Status init_names(ByteSpan fs_key);
  // A per-file data key for a new file: a fresh file id, its context, one provider call.
  Result<PooledDataKey> new_data_key(KeyProvider& p, const KeyRef& ref) const;
  Result<std::unique_ptr<CryptFile>> create_per_file(std::shared_ptr<BackingFile> backing, FileHeader h,
                                                     KeyProvider& p, const KeyRef& ref, std::optional<ReencryptRunId> run);
  Result<std::unique_ptr<CryptFile>> create_intermediate(std::shared_ptr<BackingFile> backing, FileHeader h,
                                                         KeyProvider& p, const KeyRef& ref, std::optional<ReencryptRunId> run);
};

}  // namespace kmsfs
