// kmsfs trust: this host's trust anchor of each vault (vault/trust_store.h). `init` writes
// the record of a new vault; `accept` writes it on another host or after a restore, from
// the fs id and key the operator names (never from what the backing directory says);
// `distrust` withdraws trust from a key (a compromised one) for good; `show`, `list` and
// `forget` do what they say.
#include <unistd.h>

#include <filesystem>
#include <memory>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/keyring_locator.h"
#include "cli/output.h"
#include "cli/passphrase_options.h"
#include "cli/providers.h"
#include "cli/vault_path.h"
#include "vault/vault.h"

namespace kmsfs::cli {

namespace {

struct TrustCliOptions {
  std::string backing;
  std::string fs_id;
  std::string key;      // accept: keyring key NAME; distrust: the key to withdraw
  std::string kms_key;  // accept: AWS KMS key
  std::optional<std::string> keyring;
  bool allow_older = false;
  bool json = false;
  PassphraseOptions passphrase;
  AwsCliOptions aws;
};

Result<FsId> parse_fs_id(const std::string& hex) {
  Bytes b;
  FsId id{};
  if (!from_hex(hex, b) || b.size() != id.size())
    return Status(Code::kInvalidArgument, "--fs-id '" + hex + "' is not 32 hex digits (kmsfs init prints it)");
  std::copy(b.begin(), b.end(), id.begin());
  return id;
}

nlohmann::json record_json(const TrustRecord& r, const std::string& path) {
  auto keys = [](const std::vector<TrustedKey>& ks) {
    nlohmann::json a = nlohmann::json::array();
    for (const auto& k : ks) a.push_back({{"provider", std::string(provider_name(k.provider))}, {"key_id", k.key_id}});
    return a;
  };
  return {{"fs_id", r.fs_id_hex()}, {"generation", r.generation}, {"keys", keys(r.keys)},
          {"distrusted", keys(r.distrusted)}, {"keyring", r.keyring}, {"vault", r.vault_dir},
          {"updated", r.updated}, {"path", path}};
}

std::string record_text(const TrustRecord& r, const std::string& path) {
  std::string t = fmt::format("vault {} (fs id {})\n  record: {}\n  generation: {}\n", r.vault_dir, r.fs_id_hex(),
                              path, r.generation);
  for (const auto& k : r.keys) {
    const bool out = std::find(r.distrusted.begin(), r.distrusted.end(), k) != r.distrusted.end();
    t += fmt::format("  key: {}{}\n", k.to_string(), out ? " (distrusted)" : "");
  }
  for (const auto& k : r.distrusted)
    if (std::find(r.keys.begin(), r.keys.end(), k) == r.keys.end()) t += fmt::format("  distrusted: {}\n", k.to_string());
  if (!r.keyring.empty()) t += fmt::format("  keyring: {}\n", r.keyring);
  t += fmt::format("  updated: {}\n", r.updated);
  return t;
}

Status run_accept(const TrustCliOptions& o) {
  if (o.key.empty() == o.kms_key.empty())
    return Status(Code::kInvalidArgument, "name the vault's key: exactly one of --key (keyring) and --kms-key (AWS KMS)");
  ASSIGN_OR_RETURN(FsId fs_id, parse_fs_id(o.fs_id));
  std::error_code ec;
  const std::string dir = std::filesystem::absolute(o.backing, ec).lexically_normal().string();
  ASSIGN_OR_RETURN(FsConfig c, Vault::peek_config(dir));
  if (c.fs_id != fs_id)
    return Status(Code::kPermissionDenied, "the vault at " + dir + " has fs id " + c.fs_id_hex() + ", not the " +
                                               o.fs_id + " you named: refusing (another vault was put there, or "
                                               "the fs id is wrong)");
  const TrustStore store = trust_store();
  ASSIGN_OR_RETURN(std::optional<TrustRecord> existing, store.load(fs_id));
  if (existing && c.generation < existing->generation && !o.allow_older)
    return Status(Code::kPermissionDenied, "the vault's config is generation " + std::to_string(c.generation) +
                                               ", older than the " + std::to_string(existing->generation) +
                                               " this host has seen (a restore from before a rotation?): add "
                                               "--allow-older to accept it on purpose");
  TrustRecord r;
  r.fs_id = fs_id;
  // Accepting adds trust: keys this host trusted before stay (files may still be under
  // them), distrusted ones stay out.
  if (existing) {
    r.keys = existing->keys;
    r.distrusted = existing->distrusted;
  }
  std::string keyring;
  TrustedKey named;
  auto providers = make_providers(
      {[&o, &keyring, &dir]() -> Result<std::string> {
         ASSIGN_OR_RETURN(keyring, locate_keyring({o.keyring, "", dir}));
         return keyring;
       },
       o.passphrase.source(), o.aws},
      KeyTrust({}, "the key named by --key/--kms-key"));
  if (!o.key.empty()) {
    named = {ProviderId::kKeyring, o.key.substr(0, o.key.find(':'))};
    providers->trust_key(named);
  } else {
    ASSIGN_OR_RETURN(KeyRef ref, providers->resolve_operator_spec(ProviderId::kAwsKms, o.kms_key));
    named = {ref.provider, ref.key_id};
  }
  // Trust must come from the operator's own word: taking back a key withdrawn here needs
  // the record forgotten first.
  if (std::find(r.distrusted.begin(), r.distrusted.end(), named) != r.distrusted.end())
    return Status(Code::kPermissionDenied, "key " + named.to_string() + " was distrusted on this host: 'kmsfs trust "
                                           "forget' the vault first if you really mean to trust it again");
  // Only the named key authenticates the config (the others are set after).
  std::vector<TrustedKey> earlier = std::move(r.keys);
  r.keys = {named};
  // Generation 0: the config is then authenticated under the named key, and the record
  // takes the config's own generation and key set from it (Vault::open).
  r.generation = 0;
  r.vault_dir = dir;
  auto opened = Vault::open(dir, *providers, TrustAnchor{store, r});
  if (!opened.ok()) return opened.status().with_context("accepting " + dir);
  TrustRecord now = *(*opened)->trust_record();
  for (const auto& k : earlier)
    if (std::find(now.keys.begin(), now.keys.end(), k) == now.keys.end()) now.keys.push_back(k);
  if (!keyring.empty()) now.keyring = std::filesystem::absolute(keyring, ec).lexically_normal().string();
  RETURN_IF_ERROR(store.save(now));
  ASSIGN_OR_RETURN(auto saved, store.load(fs_id));
  return print("kmsfs: trusted\n" + record_text(*saved, store.path_of(fs_id)));
}

Result<TrustRecord> record_of(const TrustCliOptions& o, const TrustStore& store) {
  FsId id{};
  if (!o.fs_id.empty()) {
    ASSIGN_OR_RETURN(id, parse_fs_id(o.fs_id));
  } else {
    if (o.backing.empty()) return Status(Code::kInvalidArgument, "name the vault: BACKING or --fs-id");
    ASSIGN_OR_RETURN(FsConfig c, Vault::peek_config(o.backing));
    id = c.fs_id;
  }
  ASSIGN_OR_RETURN(std::optional<TrustRecord> r, store.load(id));
  if (!r) return Status(Code::kNotFound, "this host has no trust record of vault " + to_hex(id) + " in " + store.dir());
  return std::move(*r);
}

Status run_show(const TrustCliOptions& o) {
  const TrustStore store = trust_store();
  ASSIGN_OR_RETURN(TrustRecord r, record_of(o, store));
  const std::string path = store.path_of(r.fs_id);
  return print(o.json ? record_json(r, path).dump(2) + "\n" : record_text(r, path));
}

Status run_list(const TrustCliOptions& o) {
  const TrustStore store = trust_store();
  ASSIGN_OR_RETURN(auto records, store.list());
  if (o.json) {
    nlohmann::json a = nlohmann::json::array();
    for (const auto& r : records) a.push_back(record_json(r, store.path_of(r.fs_id)));
    return print(a.dump(2) + "\n");
  }
  std::string t;
  for (const auto& r : records) t += record_text(r, store.path_of(r.fs_id));
  if (records.empty()) t = "no trusted vaults in " + store.dir() + "\n";
  return print(t);
}

Status run_distrust(const TrustCliOptions& o) {
  const TrustStore store = trust_store();
  ASSIGN_OR_RETURN(TrustRecord r, record_of(o, store));
  // "keyring:NAME" / "aws-kms:ARN", or a bare NAME or ARN.
  TrustedKey k;
  std::string spec = o.key;
  if (spec.starts_with("keyring:")) {
    k = {ProviderId::kKeyring, spec.substr(8)};
  } else if (spec.starts_with("aws-kms:")) {
    k = {ProviderId::kAwsKms, spec.substr(8)};
  } else if (spec.starts_with("arn:")) {
    k = {ProviderId::kAwsKms, spec};
  } else {
    k = {ProviderId::kKeyring, spec.substr(0, spec.find(':'))};
  }
  if (std::find(r.keys.begin(), r.keys.end(), k) == r.keys.end())
    return Status(Code::kNotFound, "vault " + r.fs_id_hex() + " does not trust key " + k.to_string());
  if (!o.backing.empty()) {
    ASSIGN_OR_RETURN(FsConfig c, Vault::peek_config(o.backing));
    if (TrustedKey{c.fs_key_ref.provider, c.fs_key_ref.key_id} == k)
      return Status(Code::kInvalidArgument, "key " + k.to_string() + " is the vault's current key: rotate to another "
                                            "first (kmsfs rotate --to KEY --reencrypt), then distrust it");
  }
  if (std::find(r.distrusted.begin(), r.distrusted.end(), k) == r.distrusted.end()) r.distrusted.push_back(k);
  RETURN_IF_ERROR(store.save(r));
  return print("kmsfs: vault " + r.fs_id_hex() + ": key " + k.to_string() +
               " is distrusted on this host; files still under it read EIO\n");
}

Status run_forget(const TrustCliOptions& o) {
  const TrustStore store = trust_store();
  ASSIGN_OR_RETURN(TrustRecord r, record_of(o, store));
  RETURN_IF_ERROR(store.remove(r.fs_id));
  return print("kmsfs: forgot vault " + r.fs_id_hex() + " (" + store.path_of(r.fs_id) + " removed)\n");
}

}  // namespace

void add_trust_commands(CLI::App& app, Commands& out) {
  CLI::App* trust = app.add_subcommand("trust", "This host's trust anchor of each vault: which keys it accepts");
  trust->require_subcommand(1);
  trust->footer(
      "A vault's kmsfs.conf and file headers are in the backing directory, which whoever\n"
      "writes the backing store controls; the keys a vault may use are recorded outside it\n"
      "($KMSFS_TRUST_DIR, default /var/lib/kmsfs/trust for root), one JSON file per vault.\n"
      "See docs/THREAT_MODEL.md, \"The trust anchor\", and docs/OPERATIONS.md.");

  auto a = std::make_shared<TrustCliOptions>();
  CLI::App* accept = trust->add_subcommand(
      "accept", "Trust a vault on this host (a second host, a restore): you name its fs id and key");
  accept->add_option("BACKING", a->backing, "The vault's backing directory")->required();
  accept->add_option("--fs-id", a->fs_id, "The vault's fs id, as 'kmsfs init' printed it (32 hex digits)")
      ->required();
  auto* key = accept->add_option("--key", a->key, "The keyring key its config is under (NAME)")->type_name("NAME");
  auto* kms = accept->add_option("--kms-key", a->kms_key, "The AWS KMS key its config is under (ARN or alias/NAME)")
                  ->type_name("KEY");
  key->excludes(kms);
  kms->excludes(key);
  accept->add_option("--keyring", a->keyring, "The keyring (with --key; default $KMSFS_KEYRING); recorded")
      ->type_name("KEYRING");
  accept->add_flag("--allow-older", a->allow_older,
                   "Accept a config older than the generation this host has seen (restoring from before a rotation)");
  add_passphrase_options(*accept, a->passphrase);
  add_aws_options(*accept, a->aws);
  accept->footer(
      "The config is authenticated under the key you name (one unwrap of its filesystem key)\n"
      "before anything is recorded; the record then holds the config's generation and every\n"
      "key it lists. Example:\n"
      "  kmsfs trust accept /srv/vault --fs-id c6de1df108ce26aca377ab559b226574 \\\n"
      "      --keyring /etc/kmsfs/keyring --key main");
  out.push_back({"trust accept", accept, [a] { return run_accept(*a); }});

  auto s = std::make_shared<TrustCliOptions>();
  CLI::App* show = trust->add_subcommand("show", "Show this host's trust record of a vault");
  show->add_option("BACKING", s->backing, "The vault's backing directory");
  show->add_option("--fs-id", s->fs_id, "Or the vault's fs id");
  show->add_flag("--json", s->json, "Print one JSON object");
  out.push_back({"trust show", show, [s] { return run_show(*s); }});

  auto l = std::make_shared<TrustCliOptions>();
  CLI::App* list = trust->add_subcommand("list", "List the vaults this host trusts");
  list->add_flag("--json", l->json, "Print a JSON array");
  out.push_back({"trust list", list, [l] { return run_list(*l); }});

  auto d = std::make_shared<TrustCliOptions>();
  CLI::App* distrust = trust->add_subcommand(
      "distrust", "Withdraw this host's trust from one key of a vault for good (a compromised key)");
  distrust->add_option("BACKING", d->backing, "The vault's backing directory");
  distrust->add_option("KEY", d->key, "The key: NAME, keyring:NAME, an ARN or aws-kms:ARN")->required();
  distrust->add_option("--fs-id", d->fs_id, "Or the vault's fs id instead of BACKING");
  distrust->footer(
      "No config, however authenticated, brings the key back. Files still under it read EIO.\n"
      "Rotate away from a compromised key first: kmsfs rotate MOUNTPOINT --to NEW --reencrypt --wait");
  out.push_back({"trust distrust", distrust, [d] { return run_distrust(*d); }});

  auto f = std::make_shared<TrustCliOptions>();
  CLI::App* forget = trust->add_subcommand("forget", "Remove this host's trust record of a vault");
  forget->add_option("BACKING", f->backing, "The vault's backing directory");
  forget->add_option("--fs-id", f->fs_id, "Or the vault's fs id");
  out.push_back({"trust forget", forget, [f] { return run_forget(*f); }});
}

}  // namespace kmsfs::cli
