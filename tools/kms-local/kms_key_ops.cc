// Key lifecycle: CreateKey, DescribeKey, ListKeys, EnableKey / DisableKey,
// ScheduleKeyDeletion / CancelKeyDeletion.
#include "kms_ops.h"

namespace kmsfs::kms_local {
namespace {

constexpr double kDay = 86400;

// kms-local models symmetric encryption keys in AWS's own key store only; anything else a
// CreateKey asks for is refused rather than silently ignored.
std::optional<ApiError> check_supported(const RequestFields& f) {
  struct Only {
    const char* member;
    const char* value;
  };
  for (Only o : {Only{"KeyUsage", "ENCRYPT_DECRYPT"}, Only{"KeySpec", "SYMMETRIC_DEFAULT"},
                 Only{"CustomerMasterKeySpec", "SYMMETRIC_DEFAULT"}, Only{"Origin", "AWS_KMS"}}) {
    auto v = f.optional_string(o.member, 0, 256);
    if (!v.ok()) return v.error();
    if (v.value() && *v.value() != o.value) {
      return kms_errors::unsupported(std::string("kms-local supports only ") + o.member + " " +
                                     o.value);
    }
  }
  for (const char* absent : {"CustomKeyStoreId", "XksKeyId"}) {
    if (f.has(absent)) return kms_errors::unsupported(std::string("kms-local has no ") + absent);
  }
  auto multi = f.optional_bool("MultiRegion");
  if (!multi.ok()) return multi.error();
  if (multi.value().value_or(false)) return kms_errors::unsupported("no multi-Region keys");
  return std::nullopt;
}

}  // namespace

ApiResult<json> op_create_key(OpContext& ctx, const RequestFields& f) {
  if (auto e = check_supported(f)) return *e;
  auto description = f.optional_string("Description", 0, 8192);
  if (!description.ok()) return description.error();
  // Policy and Tags are accepted and not kept: kms-local has no IAM to apply them.
  Key& key = ctx.store.create_key(description.value().value_or(""), ctx.now);
  ctx.changed = true;
  return json{{"KeyMetadata", key_metadata(ctx.store, key)}};
}

ApiResult<json> op_describe_key(OpContext& ctx, const RequestFields& f) {
  auto key = key_from_member(ctx, f, "KeyId", /*allow_alias=*/true);
  if (!key.ok()) return key.error();
  return json{{"KeyMetadata", key_metadata(ctx.store, *key.value())}};
}

ApiResult<json> op_list_keys(OpContext& ctx, const RequestFields& f) {
  std::vector<std::pair<std::string, json>> items;
  for (const auto& [id, key] : ctx.store.keys()) {
    items.emplace_back(id, json{{"KeyId", id}, {"KeyArn", ctx.store.key_arn(id)}});
  }
  return paginate(f, std::move(items), "Keys", 100, 1000);
}

ApiResult<json> op_enable_key(OpContext& ctx, const RequestFields& f) {
  auto key = key_from_member(ctx, f, "KeyId", false);
  if (!key.ok()) return key.error();
  if (auto e = check_not_pending_deletion(ctx.store, *key.value())) return *e;
  key.value()->state = KeyState::kEnabled;
  ctx.changed = true;
  return json::object();
}

ApiResult<json> op_disable_key(OpContext& ctx, const RequestFields& f) {
  auto key = key_from_member(ctx, f, "KeyId", false);
  if (!key.ok()) return key.error();
  if (auto e = check_not_pending_deletion(ctx.store, *key.value())) return *e;
  key.value()->state = KeyState::kDisabled;
  ctx.changed = true;
  return json::object();
}

ApiResult<json> op_schedule_key_deletion(OpContext& ctx, const RequestFields& f) {
  auto key = key_from_member(ctx, f, "KeyId", false);
  if (!key.ok()) return key.error();
  // The API model allows 1..365; the service enforces 7..30.
  auto days = f.optional_int("PendingWindowInDays", 7, 30);
  if (!days.ok()) return days.error();
  Key& k = *key.value();
  if (auto e = check_not_pending_deletion(ctx.store, k)) return *e;
  k.state = KeyState::kPendingDeletion;
  k.pending_window_days = static_cast<int>(days.value().value_or(30));
  k.deletion_date = ctx.now + k.pending_window_days * kDay;
  ctx.changed = true;
  return json{{"KeyId", ctx.store.key_arn(k.id)},
              {"DeletionDate", k.deletion_date},
              {"KeyState", key_state_name(k.state)},
              {"PendingWindowInDays", k.pending_window_days}};
}

ApiResult<json> op_cancel_key_deletion(OpContext& ctx, const RequestFields& f) {
  auto key = key_from_member(ctx, f, "KeyId", false);
  if (!key.ok()) return key.error();
  Key& k = *key.value();
  if (k.state != KeyState::kPendingDeletion) {
    return kms_errors::invalid_state(ctx.store.key_arn(k.id) + " is not pending deletion.");
  }
  k.state = KeyState::kDisabled;  // as AWS: a key comes back disabled
  k.deletion_date = 0;
  k.pending_window_days = 0;
  ctx.changed = true;
  return json{{"KeyId", ctx.store.key_arn(k.id)}};
}

}  // namespace kmsfs::kms_local
