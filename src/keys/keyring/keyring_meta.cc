#include "keys/keyring/keyring_meta.h"

#include <exception>
#include <initializer_list>
#include <set>

#include <nlohmann/json.hpp>

#include "keys/keyring/key_spec.h"
#include "keys/keyring/timestamp.h"

namespace kmsfs {

using Json = nlohmann::ordered_json;

std::string_view key_state_name(KeyState s) noexcept {
  switch (s) {
    case KeyState::kEnabled: return "enabled";
    case KeyState::kDisabled: return "disabled";
    case KeyState::kPruned: return "pruned";
  }
  return "unknown";
}

size_t KeyringMeta::material_count() const {
  size_t n = 0;
  for (const auto& k : keys)
    for (const auto& v : k.versions) n += v.state != KeyState::kPruned;
  return n;
}

bool KeyringMeta::any_pruned() const {
  for (const auto& k : keys)
    for (const auto& v : k.versions)
      if (v.state == KeyState::kPruned) return true;
  return false;
}

std::string encode_meta(const KeyringMeta& meta) {
  Json j;
  j["keyring_id"] = meta.keyring_id;
  j["created"] = meta.created;
  if (meta.kdf) {
    j["kdf"] = {{"alg", kKdfAlgArgon2id13},
                {"salt", to_hex(meta.kdf->salt)},
                {"opslimit", meta.kdf->params.opslimit},
                {"memlimit", meta.kdf->params.memlimit}};
  }
  Json keys = Json::array();
  for (const auto& k : meta.keys) {
    Json versions = Json::array();
    for (const auto& v : k.versions) {
      versions.push_back({{"version", v.version},
                          {"created", v.created},
                          {"state", key_state_name(v.state)}});
    }
    keys.push_back({{"name", k.name}, {"versions", std::move(versions)}});
  }
  j["keys"] = std::move(keys);
  // Every string was validated as ASCII before it got here; `replace` only makes dump()
  // unable to throw.
  return j.dump(-1, ' ', false, Json::error_handler_t::replace);
}

namespace {

Status bad(const std::string& field, const std::string& why) {
  return Status(Code::kCorrupt, field + ": " + why);
}

// Strictness about unknown fields: a sealed file's meta is authenticated, so an unknown
// field means a newer writer, and the container's version/flags are how newer writers
// say so. Anything else is damage.
Status only_fields(const Json& obj, const std::string& field,
                   std::initializer_list<std::string_view> allowed) {
  for (const auto& [k, _] : obj.items()) {
    bool known = false;
    for (auto a : allowed) known = known || (k == a);
    if (!known) return bad(field + "." + k, "unknown field");
  }
  return Status::Ok();
}

Result<const Json*> member(const Json& obj, const std::string& field, const char* name) {
  auto it = obj.find(name);
  if (it == obj.end()) return bad(field + "." + name, "missing");
  return &*it;
}

Result<std::string> string_member(const Json& obj, const std::string& field, const char* name) {
  ASSIGN_OR_RETURN(const Json* v, member(obj, field, name));
  if (!v->is_string()) return bad(field + "." + name, "not a string");
  return v->get_ref<const std::string&>();
}

Result<uint64_t> uint_member(const Json& obj, const std::string& field, const char* name) {
  ASSIGN_OR_RETURN(const Json* v, member(obj, field, name));
  if (!v->is_number_unsigned()) return bad(field + "." + name, "not an unsigned integer");
  return v->get<uint64_t>();
}

Result<std::string> timestamp_member(const Json& obj, const std::string& field, const char* name) {
  ASSIGN_OR_RETURN(std::string s, string_member(obj, field, name));
  if (!valid_rfc3339_utc(s)) return bad(field + "." + name, "not an RFC 3339 UTC timestamp");
  return s;
}

bool lower_hex(std::string_view s) {
  return s.find_first_not_of("0123456789abcdef") == std::string_view::npos;
}

Result<KdfMeta> parse_kdf(const Json& j) {
  const std::string f = "meta.kdf";
  if (!j.is_object()) return bad(f, "not an object");
  RETURN_IF_ERROR(only_fields(j, f, {"alg", "salt", "opslimit", "memlimit"}));
  ASSIGN_OR_RETURN(std::string alg, string_member(j, f, "alg"));
  if (alg != kKdfAlgArgon2id13) return bad(f + ".alg", "unknown algorithm '" + alg + "'");
  ASSIGN_OR_RETURN(std::string salt_hex, string_member(j, f, "salt"));
  Bytes salt;
  if (salt_hex.size() != 2 * kArgon2SaltSize || !lower_hex(salt_hex) || !from_hex(salt_hex, salt))
    return bad(f + ".salt", "not 32 lowercase hex characters");
  KdfMeta kdf;
  std::copy(salt.begin(), salt.end(), kdf.salt.begin());
  ASSIGN_OR_RETURN(kdf.params.opslimit, uint_member(j, f, "opslimit"));
  if (kdf.params.opslimit < kMinArgon2Ops || kdf.params.opslimit > kMaxArgon2Ops)
    return bad(f + ".opslimit", "out of range");
  ASSIGN_OR_RETURN(kdf.params.memlimit, uint_member(j, f, "memlimit"));
  if (kdf.params.memlimit < kMinArgon2Mem || kdf.params.memlimit > kMaxArgon2Mem)
    return bad(f + ".memlimit", "out of range");
  return kdf;
}

Result<KeyInfo> parse_key(const Json& j, const std::string& f) {
  if (!j.is_object()) return bad(f, "not an object");
  RETURN_IF_ERROR(only_fields(j, f, {"name", "versions"}));
  KeyInfo key;
  ASSIGN_OR_RETURN(key.name, string_member(j, f, "name"));
  if (!valid_key_name(key.name)) return bad(f + ".name", "not a valid key name");
  ASSIGN_OR_RETURN(const Json* versions, member(j, f, "versions"));
  const std::string vf = f + ".versions";
  if (!versions->is_array()) return bad(vf, "not an array");
  if (versions->empty()) return bad(vf, "empty");
  for (size_t i = 0; i < versions->size(); ++i) {
    const Json& v = (*versions)[i];
    const std::string ef = vf + "[" + std::to_string(i) + "]";
    if (!v.is_object()) return bad(ef, "not an object");
    RETURN_IF_ERROR(only_fields(v, ef, {"version", "created", "state"}));
    KeyVersionInfo info;
    ASSIGN_OR_RETURN(uint64_t number, uint_member(v, ef, "version"));
    if (number != i + 1) return bad(vf, "not consecutive");
    info.version = static_cast<uint32_t>(number);
    ASSIGN_OR_RETURN(info.created, timestamp_member(v, ef, "created"));
    ASSIGN_OR_RETURN(std::string state, string_member(v, ef, "state"));
    if (state == "enabled") {
      info.state = KeyState::kEnabled;
    } else if (state == "disabled") {
      info.state = KeyState::kDisabled;
    } else if (state == "pruned") {
      info.state = KeyState::kPruned;
    } else {
      return bad(ef + ".state", "unknown state");
    }
    key.versions.push_back(std::move(info));
  }
  return key;
}

Result<KeyringMeta> parse_meta_json(const Json& j, bool sealed) {
  if (!j.is_object()) return bad("meta", "not a JSON object");
  RETURN_IF_ERROR(only_fields(j, "meta", {"keyring_id", "created", "kdf", "keys"}));
  KeyringMeta meta;
  ASSIGN_OR_RETURN(meta.keyring_id, string_member(j, "meta", "keyring_id"));
  if (meta.keyring_id.size() != kKeyringIdHexSize || !lower_hex(meta.keyring_id))
    return bad("meta.keyring_id", "not 32 lowercase hex characters");
  ASSIGN_OR_RETURN(meta.created, timestamp_member(j, "meta", "created"));

  auto kdf = j.find("kdf");
  if (sealed && kdf == j.end()) return bad("meta.kdf", "missing in a sealed keyring");
  if (!sealed && kdf != j.end()) return bad("meta.kdf", "present in an unsealed keyring");
  if (sealed) {
    ASSIGN_OR_RETURN(meta.kdf, parse_kdf(*kdf));
  }

  ASSIGN_OR_RETURN(const Json* keys, member(j, "meta", "keys"));
  if (!keys->is_array()) return bad("meta.keys", "not an array");
  std::set<std::string> names;
  for (size_t i = 0; i < keys->size(); ++i) {
    const std::string f = "meta.keys[" + std::to_string(i) + "]";
    ASSIGN_OR_RETURN(KeyInfo key, parse_key((*keys)[i], f));
    if (!names.insert(key.name).second) return bad(f + ".name", "duplicate key name");
    meta.keys.push_back(std::move(key));
  }
  return meta;
}

}  // namespace

Result<KeyringMeta> parse_meta(ByteSpan json, bool sealed) {
  // The parser runs without exceptions; the try block is for the accessors, which
  // could only throw on a type check this file forgot. Nothing may escape either way.
  try {
    Json j = Json::parse(json.begin(), json.end(), nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded()) return bad("meta", "not valid JSON");
    return parse_meta_json(j, sealed);
  } catch (const std::exception& e) {
    return bad("meta", std::string("unreadable (") + e.what() + ")");
  }
}

}  // namespace kmsfs
