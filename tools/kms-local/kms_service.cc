#include "kms_service.h"

#include <array>
#include <cstdio>

#include "kms_ops.h"
#include "state_file.h"

namespace kmsfs::kms_local {
namespace {

struct Operation {
  std::string_view name;
  OpHandler handler;
};

constexpr std::array kOperations = {
    Operation{"CreateKey", op_create_key},
    Operation{"DescribeKey", op_describe_key},
    Operation{"ListKeys", op_list_keys},
    Operation{"EnableKey", op_enable_key},
    Operation{"DisableKey", op_disable_key},
    Operation{"ScheduleKeyDeletion", op_schedule_key_deletion},
    Operation{"CancelKeyDeletion", op_cancel_key_deletion},
    Operation{"CreateAlias", op_create_alias},
    Operation{"UpdateAlias", op_update_alias},
    Operation{"DeleteAlias", op_delete_alias},
    Operation{"ListAliases", op_list_aliases},
    Operation{"Encrypt", op_encrypt},
    Operation{"Decrypt", op_decrypt},
    Operation{"GenerateDataKey", op_generate_data_key},
    Operation{"GenerateDataKeyWithoutPlaintext", op_generate_data_key_without_plaintext},
    Operation{"ReEncrypt", op_re_encrypt},
    Operation{"EnableKeyRotation", op_enable_key_rotation},
    Operation{"DisableKeyRotation", op_disable_key_rotation},
    Operation{"GetKeyRotationStatus", op_get_key_rotation_status},
    Operation{"RotateKeyOnDemand", op_rotate_key_on_demand},
    Operation{"ListKeyRotations", op_list_key_rotations},
};

OpHandler find_handler(std::string_view op) {
  for (const Operation& o : kOperations) {
    if (o.name == op) return o.handler;
  }
  return nullptr;
}

}  // namespace

KmsService::KmsService(KeyStore store, std::string state_path)
    : store_(std::move(store)), state_path_(std::move(state_path)) {}

bool KmsService::has_operation(std::string_view op) { return find_handler(op) != nullptr; }

ApiResult<nlohmann::json> KmsService::call(std::string_view op, std::string_view body) {
  OpHandler handler = find_handler(op);
  if (handler == nullptr) return kms_errors::unknown_operation("");
  nlohmann::json request = nlohmann::json::object();
  // botocore sends "{}" for a request without members; an empty body means the same.
  if (!body.empty()) {
    request = nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
    if (!request.is_object()) return kms_errors::serialization("The request body is not a JSON object");
  }

  std::lock_guard lock(mu_);
  OpContext ctx{store_, now_seconds()};
  ctx.changed = store_.purge_deleted(ctx.now);
  ApiResult<nlohmann::json> out = handler(ctx, RequestFields(request));
  if (ctx.changed && !state_path_.empty()) {
    // The change stays in memory even if it cannot be saved; the client sees a 500 and
    // the operator the reason in the log.
    if (Status st = save_state(store_, state_path_); !st.ok()) {
      std::fprintf(stderr, "kms-local: saving state: %s\n", st.to_string().c_str());
      return internal_error(st);
    }
  }
  return out;
}

}  // namespace kmsfs::kms_local
