// The KMS side of kms-local: routes an operation name to its handler under one lock, and
// saves the key store after every change. Knows nothing of HTTP or signatures.
#pragma once

#include <mutex>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "api_error.h"
#include "key_store.h"

namespace kmsfs::kms_local {

class KmsService {
 public:
  // state_path empty: the keys live in memory only.
  KmsService(KeyStore store, std::string state_path);

  static bool has_operation(std::string_view op);
  // `op` is the X-Amz-Target suffix ("Encrypt"), `body` the request's JSON text.
  ApiResult<nlohmann::json> call(std::string_view op, std::string_view body);

 private:
  std::mutex mu_;  // one at a time: every operation is microseconds, and the file is one
  KeyStore store_;
  const std::string state_path_;
};

}  // namespace kmsfs::kms_local
