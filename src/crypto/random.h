// The one CSPRNG: libsodium's randombytes (getrandom(2) on Linux).
#pragma once

#include <cstdint>

#include "base/bytes.h"

namespace kmsfs {

void random_bytes(MutableByteSpan out) noexcept;
uint64_t random_u64() noexcept;
// Uniform in [0, bound); bound > 0.
uint64_t random_uniform(uint64_t bound) noexcept;

// For values that are published anyway (AEAD nonces) and only need to be unique: a
// per-thread ChaCha20 stream keyed from random_bytes, because one getrandom(2) per 4 KiB
// block seal costs more than the subkey derivation. Never use it for keys: its state
// is ordinary memory. Fork-safe: a child re-keys instead of replaying the parent's stream.
void random_nonce(MutableByteSpan out) noexcept;

}  // namespace kmsfs
