// Helpers every KMS handler shares: resolving a KeyId member, the key-state checks AWS
// applies, the KeyMetadata shape, and List* paging.
#include <algorithm>

#include "kms_ops.h"

namespace kmsfs::kms_local {

ApiResult<Key*> key_from_member(OpContext& ctx, const RequestFields& f, const char* member,
                                bool allow_alias) {
  auto id = f.string(member, 1, 2048);
  if (!id.ok()) return id.error();
  return ctx.store.resolve(id.value(), allow_alias);
}

std::optional<ApiError> check_not_pending_deletion(const KeyStore& store, const Key& key) {
  if (key.state == KeyState::kPendingDeletion) {
    return kms_errors::invalid_state(store.key_arn(key.id) + " is pending deletion.");
  }
  return std::nullopt;
}

std::optional<ApiError> check_enabled(const KeyStore& store, const Key& key) {
  if (auto e = check_not_pending_deletion(store, key)) return e;
  if (key.state == KeyState::kDisabled) {
    return kms_errors::disabled(store.key_arn(key.id) + " is disabled.");
  }
  return std::nullopt;
}

json key_metadata(const KeyStore& store, const Key& key) {
  json m = {{"AWSAccountId", store.account_id()},
            {"KeyId", key.id},
            {"Arn", store.key_arn(key.id)},
            {"CreationDate", key.creation_date},
            {"Enabled", key.state == KeyState::kEnabled},
            {"Description", key.description},
            {"KeyUsage", "ENCRYPT_DECRYPT"},
            {"KeyState", key_state_name(key.state)},
            {"Origin", "AWS_KMS"},
            {"KeyManager", "CUSTOMER"},
            {"CustomerMasterKeySpec", "SYMMETRIC_DEFAULT"},
            {"KeySpec", "SYMMETRIC_DEFAULT"},
            {"EncryptionAlgorithms", {"SYMMETRIC_DEFAULT"}},
            {"MultiRegion", false},
            {"CurrentKeyMaterialId", key.current().id}};
  if (key.state == KeyState::kPendingDeletion) {
    m["DeletionDate"] = key.deletion_date;
    m["PendingDeletionWindowInDays"] = key.pending_window_days;
  }
  return m;
}

ApiResult<json> paginate(const RequestFields& f, std::vector<std::pair<std::string, json>> items,
                         const char* list_name, int64_t default_limit, int64_t max_limit,
                         json out) {
  auto limit = f.optional_int("Limit", 1, max_limit);
  if (!limit.ok()) return limit.error();
  auto marker = f.optional_string("Marker", 1, 1024);
  if (!marker.ok()) return marker.error();
  std::sort(items.begin(), items.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
  size_t start = 0;
  if (marker.value()) {
    start = static_cast<size_t>(
        std::lower_bound(items.begin(), items.end(), *marker.value(),
                         [](const auto& item, const std::string& m) { return item.first < m; }) -
        items.begin());
  }
  const size_t n = static_cast<size_t>(limit.value().value_or(default_limit));
  json list = json::array();
  size_t i = start;
  for (; i < items.size() && list.size() < n; ++i) list.push_back(std::move(items[i].second));
  out[list_name] = std::move(list);
  out["Truncated"] = i < items.size();
  if (i < items.size()) out["NextMarker"] = items[i].first;
  return out;
}

}  // namespace kmsfs::kms_local
