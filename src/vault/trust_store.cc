#include "vault/trust_store.h"

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <ctime>
#include <memory>

#include <nlohmann/json.hpp>

#include "base/file_io.h"
#include "base/path_safety.h"
#include "vault/json_fields.h"

namespace kmsfs {

using nlohmann::json;

namespace {

constexpr uint32_t kTrustVersion = 1;
constexpr size_t kMaxRecordSize = 256 * 1024;

std::string now_rfc3339() {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

json keys_json(const std::vector<TrustedKey>& keys) {
  json a = json::array();
  for (const auto& k : keys) a.push_back({{"provider", std::string(provider_name(k.provider))}, {"key_id", k.key_id}});
  return a;
}

Result<std::vector<TrustedKey>> keys_of(const json& a, const std::string& where, const char* field) {
  std::vector<TrustedKey> out;
  if (!a.is_array()) return Status(Code::kCorrupt, "trust record " + where + ": " + field + " is not an array");
  for (const auto& e : a) {
    if (!e.is_object() || !e.contains("provider") || !e.contains("key_id") || !e["provider"].is_string() ||
        !e["key_id"].is_string())
      return Status(Code::kCorrupt, "trust record " + where + ": malformed entry in " + field);
    auto p = provider_from_name(e["provider"].get<std::string>());
    if (!p) return Status(Code::kCorrupt, "trust record " + where + ": unknown provider in " + field);
    out.push_back({*p, e["key_id"].get<std::string>()});
  }
  return out;
}

}  // namespace

KeyTrust TrustRecord::key_trust() const {
  std::vector<TrustedKey> in_force;
  for (const auto& k : keys)
    if (std::find(distrusted.begin(), distrusted.end(), k) == distrusted.end()) in_force.push_back(k);
  return KeyTrust(std::move(in_force), "the trust record of vault " + fs_id_hex());
}

std::string TrustStore::default_dir() {
  if (const char* env = std::getenv(kTrustDirEnv); env && *env) return env;
  if (::geteuid() == 0) return "/var/lib/kmsfs/trust";
  if (const char* state = std::getenv("XDG_STATE_HOME"); state && *state == '/')
    return std::string(state) + "/kmsfs/trust";
  const char* home = std::getenv("HOME");
  return std::string(home && *home ? home : "/") + "/.local/state/kmsfs/trust";
}

std::string TrustStore::path_of(const FsId& id) const { return dir_ + "/" + to_hex(id) + ".json"; }

Result<std::string> serialize_trust_record(const TrustRecord& r) {
  // JSON strings are UTF-8 (nlohmann's dump() throws on anything else). The keyring path
  // and key ids must come back byte for byte, so other bytes are refused; a parsed record
  // holds only UTF-8 already, these come from the operator (--keyring, --key).
  auto not_utf8 = [](const std::string& what) {
    return Status(Code::kInvalidArgument, "trust record: " + what + " is not UTF-8 text");
  };
  if (!is_utf8(r.keyring)) return not_utf8("the keyring path");
  for (const auto* ks : {&r.keys, &r.distrusted})
    for (const auto& k : *ks)
      if (!is_utf8(k.key_id)) return not_utf8("a key id");
  if (!is_utf8(r.updated)) return not_utf8("the update time");
  json j{{"kmsfs_trust", kTrustVersion},
         {"fs_id", r.fs_id_hex()},
         {"generation", r.generation},
         {"keys", keys_json(r.keys)},
         {"distrusted", keys_json(r.distrusted)},
         {"keyring", r.keyring},
         {"vault", r.vault_dir},
         {"updated", r.updated}};
  // The vault directory is for people (where it was last opened from), and Linux paths
  // need not be UTF-8: bytes that are not are written as U+FFFD rather than refusing to
  // mount such a vault.
  return j.dump(2, ' ', false, json::error_handler_t::replace) + "\n";
}

Result<TrustRecord> parse_trust_record(const std::string& text, const std::string& where) {
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  auto bad = [&](const std::string& what) { return Status(Code::kCorrupt, "trust record " + where + ": " + what); };
  if (j.is_discarded() || !j.is_object()) return bad("not valid JSON");
  TrustRecord r;
  try {
    if (!j.contains("kmsfs_trust") || !j["kmsfs_trust"].is_number()) return bad("missing kmsfs_trust");
    const auto version = json_uint<uint32_t>(j["kmsfs_trust"]);
    if (!version) return bad(json_uint_error<uint32_t>("kmsfs_trust", j["kmsfs_trust"]));
    if (*version != kTrustVersion)
      return Status(Code::kUnsupported, "trust record " + where + ": version " + j["kmsfs_trust"].dump() +
                                            " is not supported by this kmsfs");
    Bytes id;
    if (!from_hex(j.at("fs_id").get<std::string>(), id) || id.size() != r.fs_id.size())
      return bad("fs_id is not 32 hex digits");
    std::copy(id.begin(), id.end(), r.fs_id.begin());
    const auto generation = json_uint<uint64_t>(j.at("generation"));
    if (!generation) return bad(json_uint_error<uint64_t>("generation", j.at("generation")));
    r.generation = *generation;
    ASSIGN_OR_RETURN(r.keys, keys_of(j.at("keys"), where, "keys"));
    ASSIGN_OR_RETURN(r.distrusted, keys_of(j.value("distrusted", json::array()), where, "distrusted"));
    r.keyring = j.value("keyring", "");
    r.vault_dir = j.value("vault", "");
    r.updated = j.value("updated", "");
  } catch (const json::exception& e) {
    return bad(std::string("malformed: ") + e.what());
  }
  if (!r.keyring.empty() && r.keyring.front() != '/') return bad("keyring must be an absolute path");
  return r;
}

Result<std::optional<TrustRecord>> TrustStore::load(const FsId& id) const {
  const std::string path = path_of(id);
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return std::optional<TrustRecord>();
    return Status::Io(errno, "trust record " + path);
  }
  RETURN_IF_ERROR(check_private_path(path, "trust record", ::geteuid()));
  ASSIGN_OR_RETURN(Bytes text, read_file(path, kMaxRecordSize));
  ASSIGN_OR_RETURN(TrustRecord r, parse_trust_record(std::string(text.begin(), text.end()), path));
  if (r.fs_id != id) return Status(Code::kCorrupt, "trust record " + path + " names fs id " + r.fs_id_hex());
  return std::optional<TrustRecord>(std::move(r));
}

Status TrustStore::ensure_dir() const {
  // Created one level at a time, private at the last level (the parents are the system's).
  std::string partial;
  size_t pos = 0;
  while (pos != std::string::npos) {
    pos = dir_.find('/', pos + 1);
    partial = dir_.substr(0, pos);
    if (partial.empty()) continue;
    const mode_t mode = pos == std::string::npos ? 0700 : 0755;
    if (::mkdir(partial.c_str(), mode) != 0 && errno != EEXIST) return Status::Io(errno, "trust directory " + partial);
  }
  return Status::Ok();
}

Status TrustStore::save(TrustRecord r) const {
  RETURN_IF_ERROR(ensure_dir());
  RETURN_IF_ERROR(check_private_path(dir_, "trust directory", ::geteuid()));
  r.updated = now_rfc3339();
  ASSIGN_OR_RETURN(const std::string text, serialize_trust_record(r));
  return write_file_atomic(path_of(r.fs_id), as_bytes(text), 0600);
}

Status TrustStore::remove(const FsId& id) const {
  if (::unlink(path_of(id).c_str()) != 0 && errno != ENOENT) return Status::Io(errno, "remove " + path_of(id));
  return Status::Ok();
}

Result<std::vector<TrustRecord>> TrustStore::list() const {
  std::vector<TrustRecord> out;
  struct CloseDir {
    void operator()(DIR* d) const { ::closedir(d); }
  };
  std::unique_ptr<DIR, CloseDir> d(::opendir(dir_.c_str()));
  if (!d) {
    if (errno == ENOENT) return out;
    return Status::Io(errno, "trust directory " + dir_);
  }
  std::vector<std::string> names;
  while (dirent* e = ::readdir(d.get())) {
    std::string n = e->d_name;
    if (n.size() == 37 && n.ends_with(".json")) names.push_back(n);
  }
  std::sort(names.begin(), names.end());
  for (const auto& n : names) {
    Bytes id;
    if (!from_hex(n.substr(0, 32), id) || id.size() != 16) continue;
    FsId fs{};
    std::copy(id.begin(), id.end(), fs.begin());
    ASSIGN_OR_RETURN(auto r, load(fs));
    if (r) out.push_back(std::move(*r));
  }
  return out;
}

}  // namespace kmsfs
