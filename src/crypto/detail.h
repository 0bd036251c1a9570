// Internal to src/crypto: RAII handles for OpenSSL objects, one-time library setup and
// the mapping of OpenSSL failures onto Status. Not included by other modules.
#pragma once

#include <openssl/evp.h>
#include <openssl/kdf.h>

#include <memory>
#include <string_view>

#include "base/status.h"

namespace kmsfs::detail {

// libsodium must be initialised once before its allocator, CSPRNG or ciphers are used;
// every entry point that touches sodium calls this (a function-local static, so cheap).
void ensure_sodium() noexcept;

struct CipherCtxFree { void operator()(EVP_CIPHER_CTX* p) const noexcept { EVP_CIPHER_CTX_free(p); } };
struct CipherFree { void operator()(EVP_CIPHER* p) const noexcept { EVP_CIPHER_free(p); } };
struct MdFree { void operator()(EVP_MD* p) const noexcept { EVP_MD_free(p); } };

using CipherCtxPtr = std::unique_ptr<EVP_CIPHER_CTX, CipherCtxFree>;
using CipherPtr = std::unique_ptr<EVP_CIPHER, CipherFree>;
using MdPtr = std::unique_ptr<EVP_MD, MdFree>;

// Allocates a cipher context; throws std::bad_alloc when OpenSSL is out of memory
// (the only exception the codebase allows).
CipherCtxPtr new_cipher_ctx();

// kInternal carrying the first queued OpenSSL error; drains the thread's error queue so
// a stale entry never gets blamed on a later call.
Status openssl_error(std::string_view what);

// Algorithm objects are fetched once per process: EVP_*_fetch walks the provider store
// under a lock, which is far too slow for a per-block path. Immutable after fetch, so
// sharing them across threads is safe. Never null (a missing algorithm aborts: the
// default provider always has these, so absence means a broken installation).
const EVP_CIPHER* aes256_ecb();
const EVP_CIPHER* aes256_gcm();
// AES-SIV (RFC 5297) with a 256-bit (AES-128-SIV) or 512-bit (AES-256-SIV) key.
const EVP_CIPHER* aes_siv(size_t key_size);
const EVP_MD* sha256_md();

}  // namespace kmsfs::detail
