// Text encodings of binary names (RFC 4648), unpadded: file names must not contain '/'
// or NUL, and '=' padding would only cost name length. base64url for case-sensitive
// backing filesystems; lowercase base32 for case-insensitive ones (where "Ab" and "aB"
// would be the same file).
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "base/bytes.h"

namespace kmsfs {

std::string base64url_encode(ByteSpan b);
// nullopt on a character outside the alphabet, a length no encoding produces (len % 4 == 1)
// or non-zero trailing bits (so every byte string has exactly one encoding).
std::optional<Bytes> base64url_decode(std::string_view s);
size_t base64url_encoded_size(size_t n);

std::string base32_encode(ByteSpan b);  // alphabet a-z 2-7
std::optional<Bytes> base32_decode(std::string_view s);  // lowercase only, same strictness
size_t base32_encoded_size(size_t n);

// `s` made safe for a line of text on a terminal: control characters as escapes (\n, \r,
// \t, else \xNN; C1 controls, U+0080..U+009F, as the \xNN of their UTF-8 bytes), a
// backslash as \\ (so every escape is unambiguous), bytes that are not UTF-8 as \xNN;
// the rest (printable ASCII, other UTF-8) as it is. For names in human output: a name
// holding a newline or an escape sequence cannot split a report line or drive the
// terminal. JSON output keeps names exact.
std::string printable(std::string_view s);

}  // namespace kmsfs
