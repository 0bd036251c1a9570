// The KMS keys and aliases of one account and Region: the data model, how a KeyId names a
// key (key id, key ARN, alias/NAME, alias ARN), and key material. Not thread-safe: the
// KmsService owns the one instance and serialises access to it.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "api_error.h"
#include "crypto/secure_buffer.h"

namespace kmsfs::kms_local {

enum class KeyState { kEnabled, kDisabled, kPendingDeletion };
std::string_view key_state_name(KeyState s);  // "Enabled", "Disabled", "PendingDeletion"
std::optional<KeyState> key_state_from_name(std::string_view name);

// Times are seconds since the epoch, as AWS JSON 1.1 timestamps are.
double now_seconds();

struct KeyMaterial {
  std::string id;              // 64 lowercase hex digits, like AWS's KeyMaterialId
  SecureBuffer bytes;          // kMaterialSize bytes
  double created = 0;          // for rotated material: the rotation date
  std::string rotation_type;   // "" for the key's first material, else ON_DEMAND / AUTOMATIC
};

struct Key {
  std::string id;  // UUID
  std::string description;
  double creation_date = 0;
  KeyState state = KeyState::kEnabled;
  double deletion_date = 0;  // while kPendingDeletion
  int pending_window_days = 0;
  bool rotation_enabled = false;
  int rotation_period_days = 365;
  double next_rotation_date = 0;  // while rotation_enabled
  // Material version v (as a ciphertext blob names it) is materials[v - 1]; the last one
  // encrypts. Never shrinks: rotation keeps every old material decrypting.
  std::vector<KeyMaterial> materials;

  const KeyMaterial& current() const { return materials.back(); }
  uint32_t current_version() const { return static_cast<uint32_t>(materials.size()); }
};

struct Alias {
  std::string name;  // "alias/NAME"
  std::string target_key_id;
  double created = 0;
  double updated = 0;
};

class KeyStore {
 public:
  KeyStore(std::string region, std::string account_id);

  const std::string& region() const { return region_; }
  const std::string& account_id() const { return account_id_; }
  std::string key_arn(std::string_view key_id) const;      // arn:aws:kms:R:A:key/ID
  std::string alias_arn(std::string_view alias_name) const;  // arn:aws:kms:R:A:alias/NAME

  // A new enabled key with one fresh key material.
  Key& create_key(std::string description, double now);
  // Appends a fresh material that becomes the current one.
  static void add_material(Key& key, double now, std::string rotation_type);

  // A KeyId as the API takes it. Operations that take aliases (DescribeKey and the
  // cryptographic ones) pass allow_alias; the others accept only a key id or key ARN.
  // NotFoundException otherwise, worded as AWS words it.
  ApiResult<Key*> resolve(std::string_view key_id, bool allow_alias);
  Key* find(const std::string& id);

  std::map<std::string, Key>& keys() { return keys_; }
  const std::map<std::string, Key>& keys() const { return keys_; }
  std::map<std::string, Alias>& aliases() { return aliases_; }
  const std::map<std::string, Alias>& aliases() const { return aliases_; }

  // Deletes the keys whose waiting period is over, and their aliases (AWS deletes the key
  // when the period ends; we do it the next time anything looks). True if any went.
  bool purge_deleted(double now);

 private:
  std::string region_;
  std::string account_id_;
  std::map<std::string, Key> keys_;       // by key id
  std::map<std::string, Alias> aliases_;  // by "alias/NAME"
};

std::string random_uuid();

}  // namespace kmsfs::kms_local
