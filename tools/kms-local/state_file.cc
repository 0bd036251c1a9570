#include "state_file.h"

#include <nlohmann/json.hpp>

#include "base/file_io.h"
#include "base64.h"
#include "ciphertext.h"

namespace kmsfs::kms_local {
namespace {

using nlohmann::json;
constexpr int kFormatVersion = 1;
constexpr size_t kMaxStateFile = 256u << 20;

json to_json(const Key& k) {
  json materials = json::array();
  for (const KeyMaterial& m : k.materials) {
    materials.push_back({{"id", m.id},
                         {"key", base64_encode(m.bytes.span())},
                         {"created", m.created},
                         {"rotation_type", m.rotation_type}});
  }
  return {{"id", k.id},
          {"description", k.description},
          {"creation_date", k.creation_date},
          {"state", key_state_name(k.state)},
          {"deletion_date", k.deletion_date},
          {"pending_window_days", k.pending_window_days},
          {"rotation_enabled", k.rotation_enabled},
          {"rotation_period_days", k.rotation_period_days},
          {"next_rotation_date", k.next_rotation_date},
          {"materials", std::move(materials)}};
}

// Throws nlohmann::json::exception on a missing or mistyped field; load_state catches.
Key key_from_json(const json& j) {
  Key k;
  k.id = j.at("id").get<std::string>();
  k.description = j.at("description").get<std::string>();
  k.creation_date = j.at("creation_date").get<double>();
  auto state = key_state_from_name(j.at("state").get<std::string>());
  if (!state) throw std::runtime_error("unknown key state");
  k.state = *state;
  k.deletion_date = j.at("deletion_date").get<double>();
  k.pending_window_days = j.at("pending_window_days").get<int>();
  k.rotation_enabled = j.at("rotation_enabled").get<bool>();
  k.rotation_period_days = j.at("rotation_period_days").get<int>();
  k.next_rotation_date = j.at("next_rotation_date").get<double>();
  for (const json& jm : j.at("materials")) {
    KeyMaterial m;
    m.id = jm.at("id").get<std::string>();
    auto bytes = base64_decode(jm.at("key").get<std::string>());
    if (!bytes || bytes->size() != kMaterialSize) throw std::runtime_error("bad key material");
    m.bytes = SecureBuffer::copy_of(*bytes);
    secure_zero(bytes->data(), bytes->size());
    m.created = jm.at("created").get<double>();
    m.rotation_type = jm.at("rotation_type").get<std::string>();
    k.materials.push_back(std::move(m));
  }
  if (k.materials.empty()) throw std::runtime_error("key without material");
  return k;
}

}  // namespace

Status save_state(const KeyStore& store, const std::string& path) {
  json keys = json::array(), aliases = json::array();
  for (const auto& [id, k] : store.keys()) keys.push_back(to_json(k));
  for (const auto& [name, a] : store.aliases()) {
    aliases.push_back({{"name", a.name},
                       {"target_key_id", a.target_key_id},
                       {"created", a.created},
                       {"updated", a.updated}});
  }
  json doc = {{"format", "kms-local-state"},
              {"version", kFormatVersion},
              {"region", store.region()},
              {"account_id", store.account_id()},
              {"keys", std::move(keys)},
              {"aliases", std::move(aliases)}};
  std::string text = doc.dump(1);
  Status st = write_file_atomic(path, as_bytes(text), 0600);
  secure_zero(text.data(), text.size());
  return st;
}

Result<KeyStore> load_state(const std::string& path, const std::string& region,
                            const std::string& account_id) {
  ASSIGN_OR_RETURN(Bytes raw, read_file(path, kMaxStateFile));
  KeyStore store(region, account_id);
  try {
    json doc = json::parse(raw.begin(), raw.end());
    secure_zero(raw.data(), raw.size());
    if (doc.at("format") != "kms-local-state" || doc.at("version") != kFormatVersion) {
      return Status(Code::kUnsupported, path + ": not a version 1 kms-local state file");
    }
    if (doc.at("region") != region || doc.at("account_id") != account_id) {
      return Status(Code::kInvalidArgument,
                    path + ": written for region " + doc.at("region").get<std::string>() +
                        " and account " + doc.at("account_id").get<std::string>() +
                        "; start with the same --region and --account-id");
    }
    for (const json& jk : doc.at("keys")) {
      Key k = key_from_json(jk);
      std::string id = k.id;
      store.keys().emplace(std::move(id), std::move(k));
    }
    for (const json& ja : doc.at("aliases")) {
      Alias a{ja.at("name").get<std::string>(), ja.at("target_key_id").get<std::string>(),
              ja.at("created").get<double>(), ja.at("updated").get<double>()};
      std::string name = a.name;
      store.aliases().emplace(std::move(name), std::move(a));
    }
  } catch (const std::exception& e) {
    secure_zero(raw.data(), raw.size());
    return Status(Code::kCorrupt, path + ": malformed state file: " + e.what());
  }
  return store;
}

}  // namespace kmsfs::kms_local
