#include "cli/vault_path.h"

#include <sys/stat.h>

#include <filesystem>

#include "cli/keyring_locator.h"
#include "cli/providers.h"
#include "vault/config.h"
#include "vault/paths.h"

namespace kmsfs::cli {

Result<VaultPath> split_vault_path(const std::string& arg) {
  std::filesystem::path p = std::filesystem::path(arg).lexically_normal();
  std::filesystem::path prefix = p;
  while (true) {
    struct stat st;
    const std::string conf = (prefix.empty() ? std::string(".") : prefix.string()) + "/" + kConfigFileName;
    if (::stat(conf.c_str(), &st) == 0) {
      std::string rel = p.lexically_relative(prefix.empty() ? "." : prefix).string();
      if (rel == ".") rel.clear();
      return VaultPath{prefix.empty() ? "." : prefix.string(), rel};
    }
    if (!prefix.has_relative_path() || prefix == prefix.parent_path()) break;
    prefix = prefix.parent_path();
  }
  return Status(Code::kNotFound, "no kmsfs vault (a directory with " + std::string(kConfigFileName) +
                                     ") at or above '" + arg + "'", ENOENT);
}

TrustStore trust_store() { return TrustStore(TrustStore::default_dir()); }

Result<OpenedVault> open_vault_offline(const std::string& dir, const std::optional<std::string>& keyring,
                                       const PassphraseOptions& pass, const AwsCliOptions& aws) {
  ASSIGN_OR_RETURN(TrustAnchor anchor, load_trust_anchor(dir, trust_store()));
  OpenedVault o;
  o.providers = make_providers(
      {[keyring, dir, record = anchor.record.keyring] { return locate_keyring({keyring, record, dir}); },
       pass.source(), aws},
      anchor.record.key_trust());
  ASSIGN_OR_RETURN(o.vault, Vault::open(dir, *o.providers, std::move(anchor)));
  return o;
}

Result<ResolvedFile> resolve_backing_file(const std::string& file, bool backing_path,
                                          const std::optional<std::string>& keyring, const PassphraseOptions& pass,
                                          const AwsCliOptions& aws) {
  struct stat st;
  const bool exists = ::lstat(file.c_str(), &st) == 0;
  if (backing_path) {
    if (!exists) return Status::Io(errno, file + " (--backing-path: no such backing file)");
    return ResolvedFile{file, std::nullopt};
  }
  auto vp = split_vault_path(file);
  if (!vp.ok() || vp->rel.empty()) {
    // Outside any vault: a copy of a backing file, which has no plaintext path.
    if (exists && !S_ISDIR(st.st_mode)) return ResolvedFile{file, std::nullopt};
    if (vp.ok()) return Status(Code::kInvalidArgument, file + " is a vault's backing directory, not a file", EISDIR);
    return Status::Io(ENOENT, file + " (neither a path inside a vault nor a backing file)");
  }
  ASSIGN_OR_RETURN(OpenedVault ov, open_vault_offline(vp->vault_dir, keyring, pass, aws));
  ASSIGN_OR_RETURN(std::string rel, encrypt_path(*ov.vault, vp->rel));
  std::string path = vp->vault_dir + "/" + rel;
  if (::lstat(path.c_str(), &st) == 0) return ResolvedFile{std::move(path), std::move(ov)};
  // Not in the plaintext view. An encrypted name given as it is on disk says how to ask.
  if (exists && path != file)
    return Status(Code::kNotFound,
                  file + ": no such file in the vault's plaintext view; it is a backing path: add --backing-path",
                  ENOENT);
  return Status(Code::kNotFound, file + ": no such file in the vault", ENOENT);
}

void add_backing_path_flag(CLI::App& cmd, bool& backing_path) {
  cmd.add_flag("--backing-path", backing_path,
               "The path given is an encrypted backing path (as fsck and ls -l print it), not a path in the "
               "plaintext view");
}

void add_named_key_options(CLI::App& cmd, NamedKey& k) {
  auto* key = cmd.add_option("--key", k.key,
                             "For a file outside any vault: the keyring key that must have wrapped it "
                             "(NAME; with --keyring or $KMSFS_KEYRING)")
                  ->type_name("NAME");
  auto* kms = cmd.add_option("--kms-key", k.kms_key,
                             "For a file outside any vault: the AWS KMS key that must have wrapped it "
                             "(key ARN or alias/NAME)")
                  ->type_name("KEY");
  key->excludes(kms);
  kms->excludes(key);
}

Result<std::unique_ptr<KeyProviders>> providers_for_file(const std::string& file,
                                                         const std::optional<std::string>& keyring,
                                                         const PassphraseOptions& pass, const AwsCliOptions& aws,
                                                         const NamedKey& named) {
  const std::optional<std::string> vault = find_vault_above(file);
  if (named.given()) {
    const std::string backing = vault.value_or("");
    auto providers = make_providers(
        {[keyring, backing] { return locate_keyring({keyring, "", backing}); }, pass.source(), aws}, KeyTrust({}, ""));
    if (!named.key.empty()) {
      const std::string name = named.key.substr(0, named.key.find(':'));
      providers->set_trust(KeyTrust({{ProviderId::kKeyring, name}}, "--key " + named.key));
    } else {
      providers->set_trust(KeyTrust({}, "--kms-key " + named.kms_key));
      auto ref = providers->resolve_operator_spec(ProviderId::kAwsKms, named.kms_key);
      if (!ref.ok()) return ref.status().with_context("--kms-key " + named.kms_key);
    }
    return providers;
  }
  if (!vault)
    return Status(Code::kInvalidArgument, file + " is not inside a vault: name the key that must have wrapped it "
                                                 "(--key NAME with a keyring, or --kms-key ARN)");
  ASSIGN_OR_RETURN(TrustAnchor anchor, load_trust_anchor(*vault, trust_store()));
  // A file is read with the record's keys alone (a damaged or replaced config does not
  // stop a single-file restore). But a config newer than the record (a rotation made on
  // another host) is authenticated first, so this host learns the keys files are now under.
  ASSIGN_OR_RETURN(FsConfig c, Vault::peek_config(*vault));
  if (c.generation > anchor.record.generation) {
    ASSIGN_OR_RETURN(OpenedVault ov, open_vault_offline(*vault, keyring, pass, aws));
    ov.vault.reset();  // it refers to the providers; they now trust what the record learned
    return std::move(ov.providers);
  }
  return make_providers(
      {[keyring, dir = *vault, record = anchor.record.keyring] { return locate_keyring({keyring, record, dir}); },
       pass.source(), aws},
      anchor.record.key_trust());
}

}  // namespace kmsfs::cli
