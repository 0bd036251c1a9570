// Key rotation: EnableKeyRotation / DisableKeyRotation / GetKeyRotationStatus,
// RotateKeyOnDemand and ListKeyRotations. A rotation appends key material; old material
// stays, so every ciphertext made before keeps decrypting (the blob names its version).
// Automatic rotation is recorded (period, next date) but never fires: nothing in a test
// run lives the 90 days the shortest period takes.
#include <cstdio>

#include "kms_ops.h"

namespace kmsfs::kms_local {
namespace {

constexpr double kDay = 86400;
constexpr size_t kMaxOnDemandRotations = 25;  // the service's per-key limit

// Rotation settings change only on an enabled key (DisabledException otherwise).
ApiResult<Key*> enabled_key(OpContext& ctx, const RequestFields& f) {
  auto key = key_from_member(ctx, f, "KeyId", /*allow_alias=*/false);
  if (!key.ok()) return key;
  if (auto e = check_enabled(ctx.store, *key.value())) return *e;
  return key;
}

}  // namespace

ApiResult<json> op_enable_key_rotation(OpContext& ctx, const RequestFields& f) {
  auto period = f.optional_int("RotationPeriodInDays", 90, 2560);
  if (!period.ok()) return period.error();
  auto key = enabled_key(ctx, f);
  if (!key.ok()) return key.error();
  Key& k = *key.value();
  k.rotation_enabled = true;
  k.rotation_period_days = static_cast<int>(period.value().value_or(365));
  k.next_rotation_date = ctx.now + k.rotation_period_days * kDay;
  ctx.changed = true;
  return json::object();
}

ApiResult<json> op_disable_key_rotation(OpContext& ctx, const RequestFields& f) {
  auto key = enabled_key(ctx, f);
  if (!key.ok()) return key.error();
  key.value()->rotation_enabled = false;
  key.value()->next_rotation_date = 0;
  ctx.changed = true;
  return json::object();
}

ApiResult<json> op_get_key_rotation_status(OpContext& ctx, const RequestFields& f) {
  auto key = key_from_member(ctx, f, "KeyId", /*allow_alias=*/false);
  if (!key.ok()) return key.error();
  const Key& k = *key.value();
  json out = {{"KeyRotationEnabled", k.rotation_enabled}, {"KeyId", ctx.store.key_arn(k.id)}};
  if (k.rotation_enabled) {
    out["RotationPeriodInDays"] = k.rotation_period_days;
    out["NextRotationDate"] = k.next_rotation_date;
  }
  return out;
}

ApiResult<json> op_rotate_key_on_demand(OpContext& ctx, const RequestFields& f) {
  auto key = enabled_key(ctx, f);
  if (!key.ok()) return key.error();
  Key& k = *key.value();
  size_t on_demand = 0;
  for (const KeyMaterial& m : k.materials) on_demand += m.rotation_type == "ON_DEMAND";
  if (on_demand >= kMaxOnDemandRotations) {
    return kms_errors::limit_exceeded("The key " + ctx.store.key_arn(k.id) +
                                      " has reached the limit of 25 on-demand rotations.");
  }
  // AWS completes the rotation asynchronously; here it is done before the answer.
  KeyStore::add_material(k, ctx.now, "ON_DEMAND");
  ctx.changed = true;
  return json{{"KeyId", ctx.store.key_arn(k.id)}};
}

ApiResult<json> op_list_key_rotations(OpContext& ctx, const RequestFields& f) {
  auto include = f.optional_enum("IncludeKeyMaterial", {"ALL_KEY_MATERIAL", "ROTATIONS_ONLY"});
  if (!include.ok()) return include.error();
  auto key = key_from_member(ctx, f, "KeyId", /*allow_alias=*/false);
  if (!key.ok()) return key.error();
  const Key& k = *key.value();
  const bool all = include.value().value_or("ROTATIONS_ONLY") == "ALL_KEY_MATERIAL";
  std::vector<std::pair<std::string, json>> items;
  for (size_t i = 0; i < k.materials.size(); ++i) {
    const KeyMaterial& m = k.materials[i];
    if (m.rotation_type.empty() && !all) continue;  // the first material is no rotation
    json e = {{"KeyId", k.id},
              {"KeyMaterialId", m.id},
              {"KeyMaterialState", i + 1 == k.materials.size() ? "CURRENT" : "NON_CURRENT"}};
    if (!m.rotation_type.empty()) {
      e["RotationDate"] = m.created;
      e["RotationType"] = m.rotation_type;
    }
    char marker[24];
    std::snprintf(marker, sizeof marker, "%08zu", i);  // sorts as the materials do
    items.emplace_back(marker, std::move(e));
  }
  return paginate(f, std::move(items), "Rotations", 100, 1000);
}

}  // namespace kmsfs::kms_local
