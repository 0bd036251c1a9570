// Base64 as the AWS SDKs exchange blobs and plaintexts with KMS: the standard alphabet
// (RFC 4648 section 4), padded, canonical. Decoding refuses everything else (a missing or
// extra '=', bits set under the padding, whitespace, the URL-safe alphabet, bytes from
// 0x80 up), so that one answer has exactly one meaning: two texts never decode to the
// same bytes, and a scanner and a JSON parser never disagree on what a value says.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "base/bytes.h"
#include "base/status.h"
#include "keys/aws/wiped.h"

namespace kmsfs::aws {

std::string base64_encode(ByteSpan bytes);
WipedString base64_encode_secret(ByteSpan bytes);

// The most bytes `b64` can decode to (what base64_decode_into needs).
inline size_t base64_max_decoded(size_t b64_size) { return b64_size / 4 * 3; }

// Decodes into out[0, base64_max_decoded(b64.size())) and gives the decoded size, or why
// the text is refused ("its length is not a multiple of 4", ...: nothing of the text
// itself, which may be a secret). Branch-free over the characters (the text may be a
// data key): only the verdict depends on them.
Result<size_t> base64_decode_into(std::string_view b64, uint8_t* out);
// kInvalidArgument "not base64: WHY".
Result<Bytes> base64_decode(std::string_view b64);

}  // namespace kmsfs::aws
