#include "crypto/kdf.h"

#include <openssl/core_names.h>
#include <openssl/hmac.h>
#include <openssl/params.h>
#include <sodium.h>

#include <algorithm>
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

}  // namespace

Status hkdf_sha256(ByteSpan ikm, ByteSpan salt, std::string_view info, MutableByteSpan out) {
  if (out.empty() || out.size() > kHkdfMaxOut)
    return Status(Code::kInvalidArgument, "HKDF-SHA256 output must be 1..8160 bytes");
  detail::KdfCtxPtr ctx(EVP_KDF_CTX_new(detail::hkdf_kdf()));
  if (!ctx) throw std::bad_alloc();
  char digest[] = "SHA256";
  const ByteSpan info_bytes = as_bytes(info);
  const OSSL_PARAM params[] = {
      OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, digest, 0),
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, param_ptr(ikm), ikm.size()),
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, param_ptr(salt), salt.size()),
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, param_ptr(info_bytes), info_bytes.size()),
      OSSL_PARAM_construct_end(),
  };
  if (EVP_KDF_derive(ctx.get(), out.data(), out.size(), params) != 1) {
    secure_zero(out.data(), out.size());
    return detail::openssl_error("HKDF-SHA256");
  }
  return Status::Ok();
}

Result<SecureBuffer> hkdf_key(ByteSpan ikm, ByteSpan salt, std::string_view info, size_t size) {
  SecureBuffer key(size);
  RETURN_IF_ERROR(hkdf_sha256(ikm, salt, info, key.span()));
  return key;
}

Digest32 hmac_sha256(ByteSpan key, ByteSpan data) {
  Digest32 out;
  unsigned int len = 0;
  if (HMAC(detail::sha256_md(), param_ptr(key), static_cast<int>(key.size()),
           static_cast<const uint8_t*>(param_ptr(data)), data.size(), out.data(), &len) == nullptr ||
      len != out.size()) {
    // SHA-256 cannot fail on valid input; only allocation can.
    throw std::bad_alloc();
  }
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
