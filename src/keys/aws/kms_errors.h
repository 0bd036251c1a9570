// Maps an AWS KMS error answer to the one kmsfs error style, naming the operation and the
// key so a denial reads "KMS denied Decrypt on arn:aws:kms:...: <KMS's message>".
// The table is documented in docs/KMS.md "Error mapping".
#pragma once

#include <string_view>

#include "base/status.h"

namespace kmsfs::aws {

// status: HTTP status; error_type: the "__type" of the JSON body or the x-amzn-ErrorType
// header (any form short_error_code() accepts); message: KMS's "message"/"Message".
// A retryable failure that reaches here is being reported after the last attempt.
Status map_kms_error(long status, std::string_view error_type, std::string_view message,
                     std::string_view operation, std::string_view key_id);

}  // namespace kmsfs::aws
