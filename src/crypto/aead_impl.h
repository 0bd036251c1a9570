// Internal to src/crypto: constructors of the concrete AEADs behind Aead::create.
// The key size has already been checked by the caller.
#pragma once

#include <memory>

#include "crypto/aead.h"

namespace kmsfs::detail {

Result<std::unique_ptr<Aead>> make_xaes_256_gcm(ByteSpan key);
Result<std::unique_ptr<Aead>> make_xchacha20_poly1305(ByteSpan key);

// Size and aliasing checks shared by both ciphers, so they fail identically.
Status check_seal_args(ByteSpan nonce, ByteSpan pt, MutableByteSpan out, size_t max_pt);
// kCorrupt if `in` is too short to be a sealed message, kInvalidArgument for `out`.
Status check_open_args(ByteSpan in, MutableByteSpan out);

}  // namespace kmsfs::detail
