// kmsfs inspect BACKING_FILE: the header of one backing file, field by field; with a
// keyring, also whether the header and every block authenticate. Never prints a secret
// (a wrapped key is reported by length only).
#include <fcntl.h>

#include <memory>
#include <optional>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/file_stream.h"
#include "cli/keyring_locator.h"
#include "cli/output.h"
#include "cli/passphrase_options.h"
#include "cli/providers.h"
#include "cli/vault_path.h"
#include "format/backing_file.h"
#include "format/layout.h"
#include "vault/vault.h"

namespace kmsfs::cli {

namespace {

using json = nlohmann::ordered_json;

struct InspectOptions {
  std::string file;
  bool backing_path = false;
  bool json = false;
  bool verify = false;
  std::optional<std::string> keyring;
  PassphraseOptions passphrase;
  AwsCliOptions aws;
  NamedKey named;

  // Authentication needs key material, so it runs only when asked for: plain `inspect`
  // stays non-interactive and works without any keyring.
  bool wants_auth() const { return keyring.has_value() || verify || passphrase.given() || named.given(); }
};

struct Auth {
  bool checked = false;
  Status status;
  std::optional<uint64_t> bad_block;
};

json slot_json(const FileHeader& h, int i) {
  json s{{"index", i}};
  if (!h.slots[i]) {
    s["valid"] = false;
    s["problem"] = h.slot_problem[i];
    return s;
  }
  const HeaderSlot& slot = *h.slots[i];
  s["valid"] = true;
  s["seq"] = slot.seq;
  s["provider"] = std::string(provider_name(slot.key.provider));
  s["key_id"] = slot.key.key_id;
  s["version"] = slot.key.version;
  s["key_ref"] = slot.key.to_string();
  s["wrapped_key_length"] = slot.wrapped_dek.size();
  s["sparse_ranges"] = slot.state ? slot.state->ranges.size() : 0;
  s["state_generation"] = slot.state ? slot.state->generation : 0;
  s["unknown_records"] = slot.extra.size();
  if (slot.intermediate)
    s["intermediate_key"] = {{"id", to_hex(slot.intermediate->id)}, {"wrapped_length", slot.intermediate->wrapped.size()}};
  return s;
}

json report_json(const std::string& path, const FileHeader& h, uint64_t backing_size, const Auth& auth) {
  const Layout::Decoded d = Layout::of(h.header_size, h.block_size).plaintext_size(backing_size);
  json ctx = json::object();
  for (const auto& [k, v] : h.context.pairs()) ctx[k] = v;
  json j{
      {"path", path},
      {"format_version", h.version},
      {"cipher", std::string(cipher_name(h.cipher))},
      {"block_size", h.block_size},
      {"header_size", h.header_size},
      {"file_id", to_hex(h.file_id)},
      {"critical_features", h.critical_features},
      {"optional_features", h.optional_features},
      {"unknown_records", h.extra_immutable.size()},
      {"backing_size", backing_size},
      {"plaintext_size", d.plain_size},
      {"size_well_formed", d.well_formed},
      {"context", ctx},
      {"slots", json::array({slot_json(h, 0), slot_json(h, 1)})},
      {"active_slot", h.active_slot()},
  };
  if (!auth.checked) {
    j["authenticated"] = nullptr;
  } else {
    j["authenticated"] = auth.status.ok();
    if (!auth.status.ok()) j["authentication_error"] = auth.status.message();
    if (auth.bad_block) j["first_bad_block"] = *auth.bad_block;
  }
  return j;
}

std::string slot_text(const FileHeader& h, int i) {
  if (!h.slots[i]) return fmt::format("slot {}: invalid ({})\n", i, h.slot_problem[i]);
  const HeaderSlot& s = *h.slots[i];
  // In intermediate mode the provider key wrapped the intermediate key; the data key is
  // sealed under that.
  const std::string wrapped =
      s.intermediate ? fmt::format("intermediate key {} ({} bytes wrapped), data key sealed under it ({} bytes)",
                                   to_hex(s.intermediate->id), s.intermediate->wrapped.size(), s.wrapped_dek.size())
                     : fmt::format("wrapped key {} bytes", s.wrapped_dek.size());
  return fmt::format("slot {}: seq {}, provider {}, key id {}, version {}, {}, sparse ranges {}, generation {}\n", i,
                     s.seq, provider_name(s.key.provider), s.key.key_id, s.key.version, wrapped,
                     s.state ? s.state->ranges.size() : 0, s.state ? s.state->generation : 0);
}

std::string report_text(const std::string& path, const FileHeader& h, uint64_t backing_size,
                        const Auth& auth) {
  const Layout::Decoded d = Layout::of(h.header_size, h.block_size).plaintext_size(backing_size);
  std::string t;
  t += fmt::format("path: {}\n", path);
  t += fmt::format("format version: {}\n", h.version);
  t += fmt::format("cipher: {}\n", cipher_name(h.cipher));
  t += fmt::format("block size: {}\n", h.block_size);
  t += fmt::format("header size: {}\n", h.header_size);
  t += fmt::format("file id: {}\n", to_hex(h.file_id));
  if (h.critical_features || h.optional_features)
    t += fmt::format("features: critical {:#x}, optional {:#x}\n", h.critical_features, h.optional_features);
  t += fmt::format("backing size: {}\n", backing_size);
  t += fmt::format("plaintext size: {}{}\n", d.plain_size, d.well_formed ? "" : " (malformed size (truncated?))");
  for (const auto& [k, v] : h.context.pairs()) t += fmt::format("context: {}={}\n", k, v);
  t += slot_text(h, 0);
  t += slot_text(h, 1);
  t += fmt::format("active slot: {}\n", h.active_slot());
  if (!auth.checked) {
    t += "authenticated: not checked (no key given)\n";
  } else if (auth.status.ok()) {
    t += "authenticated: yes\n";
  } else {
    if (auth.bad_block) t += fmt::format("first bad block: {}\n", *auth.bad_block);
    t += fmt::format("authenticated: no ({})\n", auth.status.message());
  }
  return t;
}

// Unwraps the file key, checks the header MAC and the file state (open_crypt_file), then
// reads every block.
Auth authenticate(const InspectOptions& o, std::shared_ptr<BackingFile> backing, KeyProviders* vault_providers) {
  Auth a;
  a.checked = true;
  std::unique_ptr<KeyProviders> own;
  if (!vault_providers) {
    auto providers = providers_for_file(o.file, o.keyring, o.passphrase, o.aws, o.named);
    if (!providers.ok()) {
      a.status = providers.status();
      return a;
    }
    own = std::move(*providers);
    vault_providers = own.get();
  }
  auto f = open_crypt_file(std::move(backing), *vault_providers);
  if (!f.ok()) {
    a.status = f.status();
    return a;
  }
  StreamResult r = stream_plaintext(**f, [](ByteSpan) { return Status::Ok(); });
  a.status = r.status;
  a.bad_block = r.bad_block;
  return a;
}

Status run_inspect(const InspectOptions& in) {
  InspectOptions o = in;
  ASSIGN_OR_RETURN(ResolvedFile resolved, resolve_backing_file(in.file, in.backing_path, in.keyring, in.passphrase, in.aws));
  o.file = resolved.path;
  KeyProviders* vault_providers = resolved.vault ? resolved.vault->providers.get() : nullptr;
  ASSIGN_OR_RETURN(auto posix, PosixBackingFile::open(o.file, O_RDONLY));
  std::shared_ptr<BackingFile> backing(std::move(posix));
  ASSIGN_OR_RETURN(FileHeader h, read_header(*backing));
  ASSIGN_OR_RETURN(uint64_t backing_size, backing->size());
  Auth auth;
  if (o.wants_auth()) auth = authenticate(o, backing, vault_providers);
  RETURN_IF_ERROR(print(o.json ? report_json(o.file, h, backing_size, auth).dump(2) + "\n"
                               : report_text(o.file, h, backing_size, auth)));
  return auth.status;
}

}  // namespace

void add_inspect_command(CLI::App& app, Commands& out) {
  auto o = std::make_shared<InspectOptions>();
  CLI::App* cmd = app.add_subcommand("inspect", "Show the header of one backing file; optionally authenticate it");
  cmd->add_option("FILE", o->file,
                  "BACKING/PLAIN/PATH (a path in the plaintext view of a vault), an encrypted backing path "
                  "with --backing-path, or a backing file copied out of any vault")
      ->required();
  add_backing_path_flag(*cmd, o->backing_path);
  cmd->add_flag("--json", o->json, "Print one JSON object (field names: docs/CLI.md)");
  cmd->add_option("--keyring", o->keyring,
                  "Also unwrap the file key with this keyring and authenticate the header and "
                  "every block")
      ->type_name("KEYRING");
  cmd->add_flag("--verify", o->verify,
                "Authenticate with the keys found as for cat (the trust record of the vault the "
                "file lies in, or --key/--kms-key)");
  add_named_key_options(*cmd, o->named);
  add_passphrase_options(*cmd, o->passphrase);
  add_aws_options(*cmd, o->aws);
  cmd->footer(
      "Without --keyring/--verify (or a passphrase option) only the header's structure is\n"
      "checked. Exits 5 on a damaged header, or when authentication fails (the first bad\n"
      "block is reported).\n\n"
      "Examples:\n  kmsfs inspect /srv/vault/report.pdf\n"
      "  kmsfs inspect --backing-path /srv/vault/kQ9f... --json\n"
      "  kmsfs inspect /srv/vault/report.pdf --json --keyring /etc/kmsfs/keyring --passphrase-file /run/kmsfs/pw");
  out.push_back({"inspect", cmd, [o] { return run_inspect(*o); }});
}

}  // namespace kmsfs::cli
