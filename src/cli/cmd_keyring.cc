// kmsfs keyring create|add|rotate|disable|enable|prune|list: administration of a local
// keyring.
#include <sys/stat.h>

#include <memory>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/output.h"
#include "cli/passphrase_options.h"
#include "cli/providers.h"
#include "crypto/kdf.h"
#include "fsck/key_census.h"
#include "keys/keyring/key_spec.h"
#include "keys/keyring/keyring.h"
#include "vault/vault.h"

namespace kmsfs::cli {

namespace {

using json = nlohmann::ordered_json;

// Options shared by every keyring subcommand.
struct KeyringOptions {
  std::string keyring;
  PassphraseOptions passphrase;
};

struct CreateOptions : KeyringOptions {
  bool no_passphrase = false;
  std::string kdf_profile = "moderate";
  std::vector<std::string> keys;
};

struct NameOptions : KeyringOptions {
  std::string name;  // NAME, or NAME:VERSION for enable/disable
};

struct PruneOptions : NameOptions {
  std::vector<std::string> vaults;
};

struct ListOptions : KeyringOptions {
  bool json = false;
};

Status run_create(const CreateOptions& o) {
  struct stat st;
  if (::lstat(o.keyring.c_str(), &st) == 0)
    return Status(Code::kAlreadyExists, "keyring " + o.keyring + " already exists (refusing to overwrite)");
  for (const auto& name : o.keys)
    if (!valid_key_name(name))
      return Status(Code::kInvalidArgument, "key name '" + name + "' must match [A-Za-z0-9._-]{1,64}");
  if (o.no_passphrase) return Keyring::create(o.keyring, nullptr, {}, o.keys).status();
  ASSIGN_OR_RETURN(Argon2Params params, argon2_profile(o.kdf_profile));
  ASSIGN_OR_RETURN(SecureBuffer pw, read_passphrase(o.passphrase.source(),
                                                    "New passphrase for keyring " + o.keyring + ": ",
                                                    /*confirm_twice=*/true));
  return Keyring::create(o.keyring, &pw, params, o.keys).status();
}

Status run_add(const NameOptions& o) {
  if (!valid_key_name(o.name))
    return Status(Code::kInvalidArgument, "key name '" + o.name + "' must match [A-Za-z0-9._-]{1,64}");
  ASSIGN_OR_RETURN(Keyring k, open_keyring(o.keyring, o.passphrase.source()));
  RETURN_IF_ERROR(k.add_key(o.name));
  return k.save();
}

Status run_rotate(const NameOptions& o) {
  if (!valid_key_name(o.name))
    return Status(Code::kInvalidArgument, "key name '" + o.name + "' must match [A-Za-z0-9._-]{1,64}");
  ASSIGN_OR_RETURN(Keyring k, open_keyring(o.keyring, o.passphrase.source()));
  ASSIGN_OR_RETURN(uint32_t version, k.rotate(o.name));
  RETURN_IF_ERROR(k.save());
  return print(fmt::format("{}\n", version));
}

Status run_set_state(const NameOptions& o, KeyState state) {
  ASSIGN_OR_RETURN(KeySpec spec, parse_key_spec(o.name));
  if (!spec.version)
    return Status(Code::kInvalidArgument, "'" + o.name + "' names no version: use NAME:VERSION");
  ASSIGN_OR_RETURN(Keyring k, open_keyring(o.keyring, o.passphrase.source()));
  RETURN_IF_ERROR(k.set_state(spec.name, *spec.version, state));
  return k.save();
}

// Files named per vault in a refusal; the count is always complete.
constexpr size_t kPruneListed = 20;

std::string listing(const std::vector<std::string>& paths, uint64_t total) {
  std::string t;
  for (const auto& p : paths) t += "    " + p + "\n";
  if (total > paths.size()) t += fmt::format("    ... and {} more\n", total - paths.size());
  return t;
}

// What in `vault` still needs `ref`; empty if nothing does.
Result<std::string> still_needed(const std::string& vault, const KeyRef& ref, uint64_t& files) {
  ASSIGN_OR_RETURN(FsConfig c, Vault::peek_config(vault));
  std::string t;
  if (c.fs_key_ref == ref)
    t += fmt::format("  its filesystem key ({}) is wrapped under {}: kmsfs rotate moves it\n", kConfigFileName,
                     ref.to_string());
  if (c.provider == ProviderId::kKeyring) {
    auto spec = parse_key_spec(c.key_spec);
    if (spec.ok() && spec->name == ref.key_id && spec->version == ref.version)
      t += fmt::format("  its new files are created under {} (key spec {})\n", ref.to_string(), c.key_spec);
  }
  ASSIGN_OR_RETURN(fsck::KeyCensus census, fsck::census_key(vault, ref, kPruneListed));
  if (census.files > 0)
    t += fmt::format("  {} file(s) still have a key slot under {}:\n", census.files, ref.to_string()) +
         listing(census.listed, census.files);
  if (census.unknown > 0)
    t += fmt::format("  {} kmsfs file(s) whose header names no key that can be read (damaged, or written by a newer "
                     "kmsfs; kmsfs fsck tells which):\n",
                     census.unknown) +
         listing(census.unknown_listed, census.unknown);
  files += census.files + census.unknown;
  return t;
}

// Destroys a disabled version's material, unless a vault given still needs it: the one
// thing after which files under it can never be read again, backups included.
Status run_prune(const PruneOptions& o) {
  ASSIGN_OR_RETURN(KeySpec spec, parse_key_spec(o.name));
  if (!spec.version)
    return Status(Code::kInvalidArgument, "'" + o.name + "' names no version: use NAME:VERSION");
  ASSIGN_OR_RETURN(Keyring k, open_keyring(o.keyring, o.passphrase.source()));
  ASSIGN_OR_RETURN(KeyVersionView v, k.lookup(spec.name, *spec.version));
  const KeyRef ref{ProviderId::kKeyring, spec.name, *spec.version};
  if (v.state == KeyState::kEnabled)
    return Status(Code::kAlreadyExists, ref.to_string() + " is enabled: move every file off it (kmsfs rotate), "
                                                          "disable it, then prune it");
  std::string report;
  uint64_t files = 0;
  size_t vaults = 0;
  for (const auto& vault : o.vaults) {
    ASSIGN_OR_RETURN(std::string needs, still_needed(vault, ref, files));
    if (needs.empty()) continue;
    ++vaults;
    report += vault + ":\n" + needs;
  }
  if (vaults > 0) {
    RETURN_IF_ERROR(print(report));
    return Status(Code::kAlreadyExists,
                  fmt::format("{} is still needed in {} vault(s) ({} file(s); listed on standard output): nothing "
                              "was pruned",
                              ref.to_string(), vaults, files));
  }
  RETURN_IF_ERROR(k.prune(spec.name, *spec.version));
  return k.save();
}

json list_json(const KeyringInfo& info, bool verified) {
  json keys = json::array();
  for (const auto& key : info.keys) {
    json versions = json::array();
    for (const auto& v : key.versions)
      versions.push_back({{"version", v.version},
                          {"state", std::string(key_state_name(v.state))},
                          {"created", v.created}});
    keys.push_back({{"name", key.name}, {"versions", versions}});
  }
  json j{{"path", info.path},   {"id", info.id},         {"created", info.created},
         {"sealed", info.sealed}, {"verified", verified}, {"keys", keys}};
  if (info.kdf) j["kdf"] = {{"alg", "argon2id13"}, {"opslimit", info.kdf->opslimit}, {"memlimit", info.kdf->memlimit}};
  return j;
}

std::string list_text(const KeyringInfo& info, bool verified) {
  std::string t;
  t += fmt::format("keyring: {}\n", info.path);
  t += fmt::format("id: {}\n", info.id);
  t += fmt::format("created: {}\n", info.created);
  if (info.sealed) {
    t += fmt::format("sealed: yes ({})\n", verified ? "verified" : "unverified");
    if (info.kdf)
      t += fmt::format("kdf: argon2id13, opslimit {}, memlimit {}\n", info.kdf->opslimit, info.kdf->memlimit);
  } else {
    t += "sealed: no\n";
  }
  if (info.keys.empty()) return t + "keys: none\n";
  size_t w = 4;
  for (const auto& key : info.keys) w = std::max(w, key.name.size());
  t += fmt::format("{:<{}}  {:>7}  {:<8}  {}\n", "NAME", w, "VERSION", "STATE", "CREATED");
  for (const auto& key : info.keys)
    for (const auto& v : key.versions)
      t += fmt::format("{:<{}}  {:>7}  {:<8}  {}\n", key.name, w, v.version, key_state_name(v.state), v.created);
  return t;
}

// Metadata only, without a passphrase; with a passphrase option, a sealed keyring is
// opened so the listing is authenticated.
Status run_list(const ListOptions& o) {
  ASSIGN_OR_RETURN(KeyringInfo info, Keyring::peek(o.keyring));
  bool verified = !info.sealed;  // an unsealed keyring's checksum was checked by peek
  if (info.sealed && o.passphrase.given()) {
    ASSIGN_OR_RETURN(Keyring k, open_keyring(o.keyring, o.passphrase.source()));
    info = k.info();
    verified = true;
  }
  return print(o.json ? list_json(info, verified).dump(2) + "\n" : list_text(info, verified));
}

CLI::App* keyring_sub(CLI::App& parent, const std::string& name, const std::string& desc,
                      KeyringOptions& o) {
  CLI::App* cmd = parent.add_subcommand(name, desc);
  cmd->add_option("KEYRING", o.keyring, "Path of the keyring file")->required();
  return cmd;
}

}  // namespace

void add_keyring_commands(CLI::App& app, Commands& out) {
  CLI::App* kr = app.add_subcommand("keyring", "Manage a local keyring of versioned keys");
  kr->require_subcommand(1);

  auto c = std::make_shared<CreateOptions>();
  CLI::App* create = keyring_sub(*kr, "create", "Create a new keyring file (mode 0600)", *c);
  auto* nopw = create->add_flag("--no-passphrase", c->no_passphrase,
                                "Do not seal the keyring (only on hosts with full-disk encryption)");
  add_passphrase_options(*create, c->passphrase);
  nopw->excludes(c->passphrase.file_opt)->excludes(c->passphrase.extpass_opt);
  create->add_option("--kdf-profile", c->kdf_profile, "Argon2id cost of the passphrase")
      ->check(CLI::IsMember({"interactive", "moderate", "sensitive"}))
      ->capture_default_str();
  create->add_option("--key", c->keys, "Create a key with this name (repeatable)")
      ->type_name("NAME")
      ->allow_extra_args(false);
  create->footer(
      "Without --no-passphrase, --passphrase-file or --extpass the passphrase is asked twice\n"
      "on the terminal.\n\nExample:\n  kmsfs keyring create /etc/kmsfs/keyring --key main");
  out.push_back({"keyring create", create, [c] { return run_create(*c); }});

  auto a = std::make_shared<NameOptions>();
  CLI::App* add = keyring_sub(*kr, "add", "Add a new key (version 1)", *a);
  add->add_option("NAME", a->name, "Key name: [A-Za-z0-9._-]{1,64}")->required();
  add_passphrase_options(*add, a->passphrase);
  out.push_back({"keyring add", add, [a] { return run_add(*a); }});

  auto r = std::make_shared<NameOptions>();
  CLI::App* rotate = keyring_sub(*kr, "rotate", "Add a new version of a key; prints the new version number", *r);
  rotate->add_option("NAME", r->name, "Key name")->required();
  add_passphrase_options(*rotate, r->passphrase);
  rotate->footer(
      "New files use the newest enabled version; existing files keep the version that\n"
      "wrapped them.");
  out.push_back({"keyring rotate", rotate, [r] { return run_rotate(*r); }});

  auto d = std::make_shared<NameOptions>();
  CLI::App* disable = keyring_sub(*kr, "disable", "Disable one key version (it can be re-enabled)", *d);
  disable->add_option("NAME:VERSION", d->name, "Key and version, e.g. main:1")->required();
  add_passphrase_options(*disable, d->passphrase);
  disable->footer("Files wrapped under a disabled version cannot be opened until it is enabled again.");
  out.push_back({"keyring disable", disable, [d] { return run_set_state(*d, KeyState::kDisabled); }});

  auto e = std::make_shared<NameOptions>();
  CLI::App* enable = keyring_sub(*kr, "enable", "Enable a disabled key version again", *e);
  enable->add_option("NAME:VERSION", e->name, "Key and version, e.g. main:1")->required();
  add_passphrase_options(*enable, e->passphrase);
  out.push_back({"keyring enable", enable, [e] { return run_set_state(*e, KeyState::kEnabled); }});

  auto p = std::make_shared<PruneOptions>();
  CLI::App* prune =
      keyring_sub(*kr, "prune", "Destroy a disabled key version's material, once no file of the given vaults needs it", *p);
  prune->add_option("NAME:VERSION", p->name, "Key and version, e.g. main:1")->required();
  prune->add_option("--vault", p->vaults, "A vault (backing directory) whose files are checked first; repeatable")
      ->type_name("BACKING")
      ->required()
      ->allow_extra_args(false);
  add_passphrase_options(*prune, p->passphrase);
  prune->footer(
      "Refused (exit 8, the files listed on standard output) while the version is enabled, or any\n"
      "vault given still has a file, its filesystem key or its key of new files under it.\n"
      "Backups taken before the vault's rotation still need the version: prune it only once\n"
      "they have expired (docs/OPERATIONS.md \"Retiring a key\").\n\n"
      "Example:\n  kmsfs keyring prune /etc/kmsfs/keyring main:1 --vault /srv/vault");
  out.push_back({"keyring prune", prune, [p] { return run_prune(*p); }});

  auto l = std::make_shared<ListOptions>();
  CLI::App* list = keyring_sub(*kr, "list", "List keys, versions, states and creation times", *l);
  list->add_flag("--json", l->json, "Print one JSON object (field names: docs/CLI.md)");
  add_passphrase_options(*list, l->passphrase);
  list->footer(
      "Needs no passphrase: the listing of a sealed keyring is then marked (unverified),\n"
      "since only the passphrase can authenticate it. Give --passphrase-file or --extpass to\n"
      "open and verify it.");
  out.push_back({"keyring list", list, [l] { return run_list(*l); }});
}

}  // namespace kmsfs::cli
