#include "key_store.h"

#include <chrono>
#include <cstdio>

#include "ciphertext.h"
#include "crypto/random.h"

namespace kmsfs::kms_local {

std::string_view key_state_name(KeyState s) {
  switch (s) {
    case KeyState::kEnabled: return "Enabled";
    case KeyState::kDisabled: return "Disabled";
    case KeyState::kPendingDeletion: return "PendingDeletion";
  }
  return "Unavailable";
}

std::optional<KeyState> key_state_from_name(std::string_view name) {
  for (KeyState s : {KeyState::kEnabled, KeyState::kDisabled, KeyState::kPendingDeletion}) {
    if (key_state_name(s) == name) return s;
  }
  return std::nullopt;
}

double now_seconds() {
  using namespace std::chrono;
  return duration<double>(system_clock::now().time_since_epoch()).count();
}

std::string random_uuid() {
  uint8_t b[16];
  random_bytes(b);
  b[6] = uint8_t((b[6] & 0x0f) | 0x40);  // version 4
  b[8] = uint8_t((b[8] & 0x3f) | 0x80);  // RFC 4122 variant
  std::string hex = to_hex(b);
  return hex.substr(0, 8) + "-" + hex.substr(8, 4) + "-" + hex.substr(12, 4) + "-" +
         hex.substr(16, 4) + "-" + hex.substr(20);
}

KeyStore::KeyStore(std::string region, std::string account_id)
    : region_(std::move(region)), account_id_(std::move(account_id)) {}

std::string KeyStore::key_arn(std::string_view key_id) const {
  return "arn:aws:kms:" + region_ + ":" + account_id_ + ":key/" + std::string(key_id);
}

std::string KeyStore::alias_arn(std::string_view alias_name) const {
  return "arn:aws:kms:" + region_ + ":" + account_id_ + ":" + std::string(alias_name);
}

Key& KeyStore::create_key(std::string description, double now) {
  std::string id = random_uuid();
  Key& key = keys_[id];
  key.id = id;
  key.description = std::move(description);
  key.creation_date = now;
  add_material(key, now, "");
  return key;
}

void KeyStore::add_material(Key& key, double now, std::string rotation_type) {
  KeyMaterial m;
  m.bytes = SecureBuffer(kMaterialSize);
  random_bytes(m.bytes.span());
  uint8_t id[32];
  random_bytes(id);
  m.id = to_hex(id);
  m.created = now;
  m.rotation_type = std::move(rotation_type);
  key.materials.push_back(std::move(m));
}

ApiResult<Key*> KeyStore::resolve(std::string_view key_id, bool allow_alias) {
  const std::string arn_prefix = "arn:aws:kms:" + region_ + ":" + account_id_ + ":";
  std::string_view rest = key_id;
  const bool is_arn = rest.starts_with("arn:");
  if (is_arn) {
    // An ARN of another Region or account names a key this server does not hold.
    // AWS words this "Invalid arn <the ARN's Region>".
    if (!rest.starts_with(arn_prefix)) {
      std::string_view region = rest;
      for (int i = 0; i < 3 && region.find(':') != std::string_view::npos; ++i) {
        region.remove_prefix(region.find(':') + 1);
      }
      return kms_errors::not_found("Invalid arn " + std::string(region.substr(0, region.find(':'))));
    }
    rest.remove_prefix(arn_prefix.size());
  }
  if (rest.starts_with("alias/")) {
    if (!allow_alias) return kms_errors::not_found("Invalid keyId '" + std::string(key_id) + "'");
    auto it = aliases_.find(std::string(rest));
    if (it == aliases_.end()) {
      return kms_errors::not_found("Alias " + alias_arn(rest) + " is not found.");
    }
    rest = it->second.target_key_id;
  } else if (is_arn) {
    if (!rest.starts_with("key/")) {
      return kms_errors::not_found("Invalid keyId '" + std::string(key_id) + "'");
    }
    rest.remove_prefix(4);
  }
  auto it = keys_.find(std::string(rest));
  if (it == keys_.end()) {
    return kms_errors::not_found("Key '" + key_arn(rest) + "' does not exist");
  }
  return &it->second;
}

Key* KeyStore::find(const std::string& id) {
  auto it = keys_.find(id);
  return it == keys_.end() ? nullptr : &it->second;
}

bool KeyStore::purge_deleted(double now) {
  bool any = false;
  for (auto it = keys_.begin(); it != keys_.end();) {
    if (it->second.state == KeyState::kPendingDeletion && it->second.deletion_date <= now) {
      std::erase_if(aliases_, [&](const auto& a) { return a.second.target_key_id == it->first; });
      it = keys_.erase(it);
      any = true;
    } else {
      ++it;
    }
  }
  return any;
}

}  // namespace kmsfs::kms_local
