// The KMS operations kms-local implements, one handler each, grouped by file:
// kms_key_ops.cc (lifecycle), kms_alias_ops.cc, kms_crypto_ops.cc, kms_rotation_ops.cc.
// A handler reads its request through RequestFields and answers the response JSON or an
// ApiError; KmsService (kms_service.cc) holds the lock, saves the state and routes.
#pragma once

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "api_error.h"
#include "key_store.h"
#include "request_fields.h"

namespace kmsfs::kms_local {

using nlohmann::json;

struct OpContext {
  KeyStore& store;
  double now = 0;
  bool changed = false;  // set by a handler that changed the store, which is then saved
};

using OpHandler = ApiResult<json> (*)(OpContext&, const RequestFields&);

ApiResult<json> op_create_key(OpContext&, const RequestFields&);
ApiResult<json> op_describe_key(OpContext&, const RequestFields&);
ApiResult<json> op_list_keys(OpContext&, const RequestFields&);
ApiResult<json> op_enable_key(OpContext&, const RequestFields&);
ApiResult<json> op_disable_key(OpContext&, const RequestFields&);
ApiResult<json> op_schedule_key_deletion(OpContext&, const RequestFields&);
ApiResult<json> op_cancel_key_deletion(OpContext&, const RequestFields&);

ApiResult<json> op_create_alias(OpContext&, const RequestFields&);
ApiResult<json> op_update_alias(OpContext&, const RequestFields&);
ApiResult<json> op_delete_alias(OpContext&, const RequestFields&);
ApiResult<json> op_list_aliases(OpContext&, const RequestFields&);

ApiResult<json> op_encrypt(OpContext&, const RequestFields&);
ApiResult<json> op_decrypt(OpContext&, const RequestFields&);
ApiResult<json> op_generate_data_key(OpContext&, const RequestFields&);
ApiResult<json> op_generate_data_key_without_plaintext(OpContext&, const RequestFields&);
ApiResult<json> op_re_encrypt(OpContext&, const RequestFields&);

ApiResult<json> op_enable_key_rotation(OpContext&, const RequestFields&);
ApiResult<json> op_disable_key_rotation(OpContext&, const RequestFields&);
ApiResult<json> op_get_key_rotation_status(OpContext&, const RequestFields&);
ApiResult<json> op_rotate_key_on_demand(OpContext&, const RequestFields&);
ApiResult<json> op_list_key_rotations(OpContext&, const RequestFields&);

// --- Shared by the handlers (kms_ops_common.cc). ---

// Reads the KeyId-shaped member `member` and resolves it.
ApiResult<Key*> key_from_member(OpContext& ctx, const RequestFields& f, const char* member,
                                bool allow_alias);
// DisabledException / KMSInvalidStateException unless the key may be used (Enabled).
std::optional<ApiError> check_enabled(const KeyStore& store, const Key& key);
// KMSInvalidStateException if the key is pending deletion.
std::optional<ApiError> check_not_pending_deletion(const KeyStore& store, const Key& key);
json key_metadata(const KeyStore& store, const Key& key);

// One page of a List* answer: `items` sorted by their marker string; the page starts at
// the first item whose marker is >= the request's Marker. Adds `list_name`, Truncated and
// NextMarker to `out`.
ApiResult<json> paginate(const RequestFields& f, std::vector<std::pair<std::string, json>> items,
                         const char* list_name, int64_t default_limit, int64_t max_limit,
                         json out = json::object());

}  // namespace kmsfs::kms_local
