#include "vault/config.h"

#include <nlohmann/json.hpp>

#include "crypto/kdf.h"
#include "crypto/secure_buffer.h"
#include "format/header.h"
#include "vault/json_fields.h"

namespace kmsfs {

bool is_vault_file_name(std::string_view name) noexcept {
  for (std::string_view own : {kConfigFileName, kLockFileName, kRotationFileName, kJournalFileName, kQuarantineDirName}) {
    if (name == own) return true;
    // write_file_atomic's temporary files ("NAME.tmp.PID.N").
    if (name.starts_with(own) && name.substr(own.size()).starts_with(".tmp.")) return true;
  }
  return false;
}

using nlohmann::json;

const std::vector<std::string>& known_config_features() {
  static const std::vector<std::string> kKnown = {kFeatureIntermediateKeys};
  return kKnown;
}

std::string_view key_mode_name(KeyMode m) noexcept {
  return m == KeyMode::kIntermediate ? "intermediate" : "per-file";
}

std::optional<KeyMode> key_mode_from_name(std::string_view name) noexcept {
  if (name == "per-file") return KeyMode::kPerFile;
  if (name == "intermediate") return KeyMode::kIntermediate;
  return std::nullopt;
}

std::vector<TrustedKey> FsConfig::declared_keys() const {
  if (!trust_keys.empty()) return trust_keys;
  return {TrustedKey{fs_key_ref.provider, fs_key_ref.key_id}};
}

Result<EncryptionContext> FsConfig::fs_key_context() const {
  EncryptionContext ctx = user_context;
  RETURN_IF_ERROR(ctx.set(EncryptionContext::kFsIdKey, fs_id_hex()));
  RETURN_IF_ERROR(ctx.set(EncryptionContext::kPurposeKey, "filesystem-key"));
  return ctx;
}

Result<EncryptionContext> FsConfig::file_context(const FileId& file_id) const {
  EncryptionContext ctx = user_context;
  RETURN_IF_ERROR(ctx.set(EncryptionContext::kFsIdKey, fs_id_hex()));
  RETURN_IF_ERROR(ctx.set(EncryptionContext::kFileIdKey, to_hex(file_id)));
  return ctx;
}

namespace {

json body_of(const FsConfig& c) {
  json ctx = json::object();
  for (const auto& [k, v] : c.user_context.pairs()) ctx[k] = v;
  json body{
      {"kmsfs_config", c.version},
      {"fs_id", c.fs_id_hex()},
      {"created", c.created},
      {"features", c.features},
      {"cipher", std::string(cipher_name(c.cipher))},
      {"block_size", c.block_size},
      {"header_size", c.header_size},
      {"name_mode", c.name_mode},
      {"key", {{"provider", std::string(provider_name(c.provider))}, {"spec", c.key_spec}, {"keyring", c.keyring_hint}}},
      {"context", ctx},
      {"fs_key",
       {{"provider", std::string(provider_name(c.fs_key_ref.provider))},
        {"key_id", c.fs_key_ref.key_id},
        {"version", c.fs_key_ref.version},
        {"wrapped", to_hex(c.fs_key_wrapped)}}},
  };
  // Written only in intermediate mode, so per-file configs stay byte-identical to those of
  // earlier versions (and their MACs valid).
  if (c.key_mode == KeyMode::kIntermediate)
    body["key_mode"] = {{"mode", std::string(key_mode_name(c.key_mode))},
                        {"intermediate_max_files", c.intermediate_max_files},
                        {"intermediate_max_age_s", c.intermediate_max_age_s}};
  // Only in configs written since generations exist, so older ones keep their bytes (and
  // their MACs) until a rotation rewrites them.
  if (c.generation > 0) {
    body["generation"] = c.generation;
    json keys = json::array();
    for (const auto& k : c.declared_keys())
      keys.push_back({{"provider", std::string(provider_name(k.provider))}, {"key_id", k.key_id}});
    body["trust_keys"] = keys;
    json ends = json::array();
    for (const auto& e : c.endorsements)
      ends.push_back({{"provider", std::string(provider_name(e.ref.provider))},
                      {"key_id", e.ref.key_id},
                      {"version", e.ref.version},
                      {"wrapped", to_hex(e.wrapped)}});
    body["endorsements"] = ends;
  }
  if (c.encrypted_names())
    body["names"] = {{"encoding", std::string(name_encoding_name(c.name_encoding))}, {"longname_max", c.longname_max}};
  return body;
}

// The MAC covers the compact dump of everything but "mac": nlohmann's objects are
// std::maps, so keys come out sorted and the bytes are canonical.
Digest32 mac_of(const json& body, ByteSpan mac_key) {
  std::string canonical = body.dump();
  return hmac_sha256(mac_key, as_bytes(canonical));
}

Status bad(const std::string& where, const std::string& what) {
  return Status(Code::kCorrupt, "vault config " + where + ": " + what);
}

// A required integer member, strictly (json_fields.h); a missing one throws as j.at() does
// and is named by the catch in parse_config.
template <typename T>
Result<T> uint_member(const json& obj, const char* key, const std::string& name, const std::string& where) {
  const json& v = obj.at(key);
  if (auto u = json_uint<T>(v)) return *u;
  return bad(where, json_uint_error<T>(name, v));
}

// JSON strings are UTF-8 and nlohmann's dump() throws (type_error 316) on anything else.
// The strings a parsed config holds are UTF-8 already (the parser checks); these come from
// the operator (init's --keyring path, a key spec) and are refused by name instead.
Status check_utf8(const FsConfig& c) {
  std::vector<std::pair<std::string_view, std::string_view>> fields = {
      {"created", c.created},           {"name_mode", c.name_mode},     {"key.spec", c.key_spec},
      {"key.keyring", c.keyring_hint}, {"fs_key.key_id", c.fs_key_ref.key_id}};
  for (const auto& f : c.features) fields.emplace_back("features", f);
  for (const auto& [k, v] : c.user_context.pairs()) {
    fields.emplace_back("context", k);
    fields.emplace_back("context", v);
  }
  for (const auto& k : c.trust_keys) fields.emplace_back("trust_keys.key_id", k.key_id);
  for (const auto& e : c.endorsements) fields.emplace_back("endorsements.key_id", e.ref.key_id);
  for (const auto& [name, value] : fields)
    if (!is_utf8(value))
      return Status(Code::kInvalidArgument, "vault config: " + std::string(name) + " is not UTF-8 text");
  return Status::Ok();
}

bool hex_to_id(const std::string& s, FsId& out) {
  Bytes b;
  if (!from_hex(s, b) || b.size() != out.size()) return false;
  std::copy(b.begin(), b.end(), out.begin());
  return true;
}

}  // namespace

Result<Bytes> serialize_config(const FsConfig& c, ByteSpan mac_key) {
  RETURN_IF_ERROR(check_utf8(c));
  json body = body_of(c);
  Digest32 mac = mac_of(body, mac_key);
  body["mac"] = to_hex(mac);
  std::string text = body.dump(2) + "\n";
  return Bytes(text.begin(), text.end());
}

Result<FsConfig> parse_config(ByteSpan text, const std::string& where) {
  json j = json::parse(as_chars(text), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return bad(where, "not valid JSON");
  FsConfig c;
  try {
    if (!j.contains("kmsfs_config") || !j["kmsfs_config"].is_number())
      return bad(where, "missing field kmsfs_config (not a kmsfs vault config?)");
    ASSIGN_OR_RETURN(c.version, uint_member<uint32_t>(j, "kmsfs_config", "kmsfs_config", where));
    if (c.version > kConfigVersion)
      return Status(Code::kUnsupported, "vault config " + where + ": format version " +
                                            std::to_string(c.version) + " is newer than this kmsfs supports (" +
                                            std::to_string(kConfigVersion) + "); upgrade kmsfs");
    if (c.version == 0) return bad(where, "format version 0");
    c.features = j.at("features").get<std::vector<std::string>>();
    for (const auto& f : c.features) {
      const auto& known = known_config_features();
      if (std::find(known.begin(), known.end(), f) == known.end())
        return Status(Code::kUnsupported, "vault config " + where + ": requires feature '" + f +
                                              "', which this kmsfs does not support; upgrade kmsfs");
    }
    if (!hex_to_id(j.at("fs_id").get<std::string>(), c.fs_id)) return bad(where, "fs_id is not 32 hex digits");
    c.created = j.at("created").get<std::string>();
    auto cipher = cipher_from_name(j.at("cipher").get<std::string>());
    if (!cipher) return Status(Code::kUnsupported, "vault config " + where + ": unknown cipher '" + j.at("cipher").get<std::string>() + "'");
    c.cipher = *cipher;
    ASSIGN_OR_RETURN(c.block_size, uint_member<uint32_t>(j, "block_size", "block_size", where));
    if (!valid_block_size(c.block_size)) return bad(where, "block_size " + std::to_string(c.block_size) + " out of range");
    ASSIGN_OR_RETURN(c.header_size, uint_member<uint32_t>(j, "header_size", "header_size", where));
    if (c.header_size != header::kSize) return Status(Code::kUnsupported, "vault config " + where + ": header_size " + std::to_string(c.header_size) + " not supported");
    c.name_mode = j.at("name_mode").get<std::string>();
    if (c.name_mode == "aes-siv") {
      const json& names = j.at("names");
      auto enc = name_encoding_from_name(names.at("encoding").get<std::string>());
      if (!enc) return Status(Code::kUnsupported, "vault config " + where + ": unknown name encoding '" + names.at("encoding").get<std::string>() + "'");
      c.name_encoding = *enc;
      ASSIGN_OR_RETURN(c.longname_max, uint_member<uint32_t>(names, "longname_max", "names.longname_max", where));
      if (c.longname_max < kMinLongnameMax || c.longname_max > 255) return bad(where, "names.longname_max out of range");
    } else if (c.name_mode != "plaintext") {
      return Status(Code::kUnsupported, "vault config " + where + ": name mode '" + c.name_mode + "' not supported");
    }
    const json& key = j.at("key");
    auto prov = provider_from_name(key.at("provider").get<std::string>());
    if (!prov) return Status(Code::kUnsupported, "vault config " + where + ": unknown key provider '" + key.at("provider").get<std::string>() + "'");
    c.provider = *prov;
    c.key_spec = key.at("spec").get<std::string>();
    c.keyring_hint = key.value("keyring", "");
    for (const auto& [k, v] : j.at("context").items()) {
      if (k.rfind("kmsfs:", 0) == 0) return bad(where, "context key '" + k + "' uses the reserved kmsfs: prefix");
      Status s = c.user_context.set(k, v.get<std::string>());
      if (!s.ok()) return bad(where, s.message());
    }
    if (j.contains("key_mode")) {
      const json& km = j.at("key_mode");
      auto mode = key_mode_from_name(km.at("mode").get<std::string>());
      if (!mode) return Status(Code::kUnsupported, "vault config " + where + ": key mode '" + km.at("mode").get<std::string>() + "' not supported");
      c.key_mode = *mode;
      ASSIGN_OR_RETURN(c.intermediate_max_files,
                       uint_member<uint64_t>(km, "intermediate_max_files", "key_mode.intermediate_max_files", where));
      ASSIGN_OR_RETURN(c.intermediate_max_age_s,
                       uint_member<uint32_t>(km, "intermediate_max_age_s", "key_mode.intermediate_max_age_s", where));
      if (c.intermediate_max_files == 0 || c.intermediate_max_age_s == 0)
        return bad(where, "key_mode limits must be positive");
    }
    const bool listed = std::find(c.features.begin(), c.features.end(), kFeatureIntermediateKeys) != c.features.end();
    if (listed != (c.key_mode == KeyMode::kIntermediate))
      return bad(where, "key_mode and the 'intermediate-keys' feature disagree");
    const json& fk = j.at("fs_key");
    auto fprov = provider_from_name(fk.at("provider").get<std::string>());
    if (!fprov) return bad(where, "fs_key.provider unknown");
    ASSIGN_OR_RETURN(uint32_t fs_key_version, uint_member<uint32_t>(fk, "version", "fs_key.version", where));
    c.fs_key_ref = KeyRef{*fprov, fk.at("key_id").get<std::string>(), fs_key_version};
    if (!from_hex(fk.at("wrapped").get<std::string>(), c.fs_key_wrapped) || c.fs_key_wrapped.empty())
      return bad(where, "fs_key.wrapped is not hex");
    if (j.contains("generation")) {
      ASSIGN_OR_RETURN(c.generation, uint_member<uint64_t>(j, "generation", "generation", where));
    }
    if (j.contains("trust_keys")) {
      for (const json& k : j.at("trust_keys")) {
        auto p = provider_from_name(k.at("provider").get<std::string>());
        if (!p) return bad(where, "trust_keys: unknown provider");
        c.trust_keys.push_back({*p, k.at("key_id").get<std::string>()});
      }
      const TrustedKey fs{c.fs_key_ref.provider, c.fs_key_ref.key_id};
      if (std::find(c.trust_keys.begin(), c.trust_keys.end(), fs) == c.trust_keys.end())
        return bad(where, "trust_keys does not list the filesystem key's key");
    }
    if (j.contains("endorsements")) {
      for (const json& e : j.at("endorsements")) {
        auto p = provider_from_name(e.at("provider").get<std::string>());
        if (!p) return bad(where, "endorsements: unknown provider");
        FsConfig::Endorsement en;
        ASSIGN_OR_RETURN(uint32_t version, uint_member<uint32_t>(e, "version", "endorsements.version", where));
        en.ref = KeyRef{*p, e.at("key_id").get<std::string>(), version};
        if (!from_hex(e.at("wrapped").get<std::string>(), en.wrapped) || en.wrapped.empty())
          return bad(where, "endorsements: wrapped is not hex");
        const auto declared = c.declared_keys();
        if (std::find(declared.begin(), declared.end(), TrustedKey{en.ref.provider, en.ref.key_id}) == declared.end())
          return bad(where, "an endorsement is under a key trust_keys does not list");
        c.endorsements.push_back(std::move(en));
      }
    }
    if (c.generation == 0 && (!c.trust_keys.empty() || !c.endorsements.empty()))
      return bad(where, "trust_keys or endorsements without a generation");
    Bytes mac;
    if (!from_hex(j.at("mac").get<std::string>(), mac) || mac.size() != 32) return bad(where, "mac is not 64 hex digits");
    std::copy(mac.begin(), mac.end(), c.mac.begin());
  } catch (const json::exception& e) {
    // Missing fields and wrong types: name the field nlohmann complains about.
    return bad(where, std::string("malformed: ") + e.what());
  }
  return c;
}

Status verify_config(ByteSpan text, const FsConfig& parsed, ByteSpan mac_key, const std::string& where) {
  json j = json::parse(as_chars(text), nullptr, false);
  if (j.is_discarded() || !j.is_object()) return bad(where, "not valid JSON");
  j.erase("mac");
  Digest32 want = mac_of(j, mac_key);
  if (!ct_equal(want, parsed.mac))
    return Status(Code::kCorrupt, "vault config " + where +
                                      " does not authenticate: it was modified, or belongs to another key");
  return Status::Ok();
}

}  // namespace kmsfs
