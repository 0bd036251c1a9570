// Standard base64 (RFC 4648, with padding): how AWS JSON 1.1 carries blobs (Plaintext,
// CiphertextBlob) and how the state file stores key material.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "base/bytes.h"

namespace kmsfs::kms_local {

std::string base64_encode(ByteSpan data);
// nullopt unless `text` is canonical padded base64 (length a multiple of 4, no whitespace):
// a blob that does not decode is the caller's error, never guessed at.
std::optional<Bytes> base64_decode(std::string_view text);

}  // namespace kmsfs::kms_local
