#include "crypto/kdf.h"

#include <openssl/evp.h>
#include <sodium.h>

#include <algorithm>
#include <initializer_list>
#include <new>

#include "crypto/detail.h"

namespace kmsfs {
namespace {

constexpr size_t kHkdfMaxOut = 255 * 32;
// libsodium's own ceiling is 4 TiB; a keyring we did not write ourselves could name it.
constexpr uint64_t kArgon2MaxMem = uint64_t{4} << 30;

// OSSL_PARAM wants non-const pointers for inputs it only reads, and a non-null one even
// for an empty string (HKDF treats "no key" as an error, not as the empty key).
void* param_ptr(ByteSpan b) {
  static const uint8_t kEmpty = 0;
  return const_cast<uint8_t*>(b.empty() ? &kEmpty : b.data());
}

// HMAC-SHA256 of the concatenated parts. libsodium's streaming HMAC allocates nothing and
// fetches nothing; OpenSSL 3's HMAC() and its HKDF's extract step fetch "HMAC" by name on
// every call, which the profile of file creates showed as 15 % of the daemon's user time
// (three HKDF derivations per file).
void hmac_parts(ByteSpan key, std::initializer_list<ByteSpan> parts, uint8_t out[32]) {
  crypto_auth_hmacsha256_state st;
  crypto_auth_hmacsha256_init(&st, static_cast<const uint8_t*>(param_ptr(key)), key.size());
  for (ByteSpan p : parts)
    if (!p.empty()) crypto_auth_hmacsha256_update(&st, p.data(), p.size());
  crypto_auth_hmacsha256_final(&st, out);
  sodium_memzero(&st, sizeof st);
}

}  // namespace

Status hkdf_sha256(ByteSpan ikm, ByteSpan salt, std::string_view info, MutableByteSpan out) {
  if (out.empty() || out.size() > kHkdfMaxOut)
    return Status(Code::kInvalidArgument, "HKDF-SHA256 output must be 1..8160 bytes");
  detail::ensure_sodium();
  // RFC 5869 over libsodium's HMAC-SHA256. An empty salt is HMAC's empty key, which HMAC
  // pads to the same block as the RFC's HashLen zero bytes.
  Digest32 prk;
  hmac_parts(salt, {ikm}, prk.data());
  Digest32 t;
  size_t have = 0;
  for (uint8_t i = 1; have < out.size(); ++i) {
    const uint8_t counter[1] = {i};
    const ByteSpan previous = i == 1 ? ByteSpan() : ByteSpan(t);
    hmac_parts(prk, {previous, as_bytes(info), ByteSpan(counter, 1)}, t.data());
    const size_t n = std::min(t.size(), out.size() - have);
    std::copy_n(t.begin(), n, out.begin() + static_cast<std::ptrdiff_t>(have));
    have += n;
  }
  secure_zero(prk.data(), prk.size());
  secure_zero(t.data(), t.size());
  return Status::Ok();
}

Result<SecureBuffer> hkdf_key(ByteSpan ikm, ByteSpan salt, std::string_view info, size_t size) {
  SecureBuffer key(size);
  RETURN_IF_ERROR(hkdf_sha256(ikm, salt, info, key.span()));
  return key;
}

Digest32 hmac_sha256(ByteSpan key, ByteSpan data) {
  detail::ensure_sodium();
  Digest32 out;
  hmac_parts(key, {data}, out.data());
  return out;
}

Digest32 sha256(ByteSpan data) {
  Digest32 out;
  unsigned int len = 0;
  if (EVP_Digest(param_ptr(data), data.size(), out.data(), &len, detail::sha256_md(), nullptr) != 1 ||
      len != out.size()) {
    throw std::bad_alloc();
  }
  return out;
}

Result<Argon2Params> argon2_profile(std::string_view name) {
  if (name == "interactive")
    return Argon2Params{crypto_pwhash_argon2id_OPSLIMIT_INTERACTIVE,
                        crypto_pwhash_argon2id_MEMLIMIT_INTERACTIVE};
  if (name == "moderate")
    return Argon2Params{crypto_pwhash_argon2id_OPSLIMIT_MODERATE,
                        crypto_pwhash_argon2id_MEMLIMIT_MODERATE};
  if (name == "sensitive")
    return Argon2Params{crypto_pwhash_argon2id_OPSLIMIT_SENSITIVE,
                        crypto_pwhash_argon2id_MEMLIMIT_SENSITIVE};
  return Status(Code::kInvalidArgument,
                "unknown argon2 profile '" + std::string(name) +
                    "' (expected interactive, moderate or sensitive)");
}

Status argon2id(std::span<const char> passphrase, ByteSpan salt, const Argon2Params& p,
                MutableByteSpan out) {
  static_assert(kArgon2SaltSize == crypto_pwhash_argon2id_SALTBYTES);
  if (salt.size() != kArgon2SaltSize)
    return Status(Code::kInvalidArgument, "argon2id salt must be 16 bytes");
  if (out.size() < crypto_pwhash_argon2id_BYTES_MIN || out.size() > crypto_pwhash_argon2id_BYTES_MAX)
    return Status(Code::kInvalidArgument, "argon2id output length out of range");
  if (passphrase.size() > crypto_pwhash_argon2id_PASSWD_MAX)
    return Status(Code::kInvalidArgument, "argon2id passphrase too long");
  if (p.opslimit < crypto_pwhash_argon2id_OPSLIMIT_MIN ||
      p.opslimit > crypto_pwhash_argon2id_OPSLIMIT_MAX)
    return Status(Code::kInvalidArgument, "argon2id opslimit " + std::to_string(p.opslimit) +
                                              " out of range");
  const uint64_t max_mem = std::min<uint64_t>(crypto_pwhash_argon2id_MEMLIMIT_MAX, kArgon2MaxMem);
  if (p.memlimit < crypto_pwhash_argon2id_MEMLIMIT_MIN || p.memlimit > max_mem)
    return Status(Code::kInvalidArgument, "argon2id memlimit " + std::to_string(p.memlimit) +
                                              " bytes out of range (8 KiB .. 4 GiB)");
  detail::ensure_sodium();
  static const char kEmpty = 0;
  const char* pw = passphrase.empty() ? &kEmpty : passphrase.data();
  if (crypto_pwhash(out.data(), out.size(), pw, passphrase.size(), salt.data(), p.opslimit,
                    static_cast<size_t>(p.memlimit), crypto_pwhash_ALG_ARGON2ID13) != 0) {
    secure_zero(out.data(), out.size());
    return Status(Code::kInternal, "argon2id: could not allocate " +
                                       std::to_string(p.memlimit >> 20) + " MiB");
  }
  return Status::Ok();
}

}  // namespace kmsfs
