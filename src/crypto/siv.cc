#include "crypto/siv.h"

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>

#include <climits>

#include "crypto/detail.h"
#include "crypto/nodump_heap.h"

namespace kmsfs {

using detail::openssl_error;

namespace {

Result<detail::CipherCtxPtr> keyed_ctx(ByteSpan key, bool encrypt) {
  detail::CipherCtxPtr ctx = detail::new_cipher_ctx();
  const EVP_CIPHER* c = detail::aes_siv(key.size());
  if (EVP_CipherInit_ex2(ctx.get(), c, key.data(), nullptr, encrypt ? 1 : 0, nullptr) != 1)
    return openssl_error("AES-SIV: init");
  return ctx;
}

// A fresh context for one message: a copy of the keyed template (its S2V state is the
// initial one, since nothing is ever fed to the template itself).
Result<detail::CipherCtxPtr> copy_of(const EVP_CIPHER_CTX* keyed) {
  detail::CipherCtxPtr ctx = detail::new_cipher_ctx();
  if (EVP_CIPHER_CTX_copy(ctx.get(), keyed) != 1) return openssl_error("AES-SIV: context copy");
  return ctx;
}

Status add_ad(EVP_CIPHER_CTX* ctx, std::span<const ByteSpan> ad) {
  for (ByteSpan a : ad) {
    if (a.size() > INT_MAX) return Status(Code::kInvalidArgument, "AES-SIV: associated data too large");
    int outl = 0;
    // A null output buffer makes this one S2V associated-data component.
    if (EVP_CipherUpdate(ctx, nullptr, &outl, a.data(), static_cast<int>(a.size())) != 1)
      return openssl_error("AES-SIV: associated data");
  }
  return Status::Ok();
}

}  // namespace

Result<Siv> Siv::create(ByteSpan key) {
  if (key.size() != 32 && key.size() != 64)
    return Status(Code::kInvalidArgument, "AES-SIV key must be 32 or 64 bytes, got " + std::to_string(key.size()));
  const NoDumpScope no_dump;  // the templates hold the CMAC and CTR key schedules
  ASSIGN_OR_RETURN(detail::CipherCtxPtr enc, keyed_ctx(key, true));
  ASSIGN_OR_RETURN(detail::CipherCtxPtr dec, keyed_ctx(key, false));
  return Siv(Ctx(enc.release(), detail::CipherCtxFree()), Ctx(dec.release(), detail::CipherCtxFree()));
}

Result<Bytes> Siv::seal(std::span<const ByteSpan> ad, ByteSpan pt) const {
  if (pt.size() > INT_MAX - kSivTagSize) return Status(Code::kInvalidArgument, "AES-SIV: plaintext too large");
  const NoDumpScope no_dump;  // the per-call copy of the keyed template
  ASSIGN_OR_RETURN(detail::CipherCtxPtr ctx, copy_of(enc_.get()));
  RETURN_IF_ERROR(add_ad(ctx.get(), ad));
  Bytes out(kSivTagSize + pt.size());
  int outl = 0;
  // OpenSSL wants exactly one plaintext update; an empty one still runs S2V.
  if (EVP_EncryptUpdate(ctx.get(), out.data() + kSivTagSize, &outl, pt.data(), static_cast<int>(pt.size())) != 1 ||
      static_cast<size_t>(outl) != pt.size())
    return openssl_error("AES-SIV: encrypt");
  int finl = 0;
  if (EVP_EncryptFinal_ex(ctx.get(), out.data() + kSivTagSize + outl, &finl) != 1 || finl != 0)
    return openssl_error("AES-SIV: final");
  if (EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_AEAD_GET_TAG, kSivTagSize, out.data()) != 1)
    return openssl_error("AES-SIV: tag");
  return out;
}

Result<Bytes> Siv::open(std::span<const ByteSpan> ad, ByteSpan in) const {
  if (in.size() < kSivTagSize) return Status(Code::kCorrupt, "AES-SIV: ciphertext shorter than its tag");
  if (in.size() > INT_MAX) return Status(Code::kInvalidArgument, "AES-SIV: ciphertext too large");
  const NoDumpScope no_dump;
  ASSIGN_OR_RETURN(detail::CipherCtxPtr ctx, copy_of(dec_.get()));
  // The tag goes in first: SIV decrypts with V as the CTR IV, then recomputes and compares.
  if (EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_AEAD_SET_TAG, kSivTagSize,
                          const_cast<uint8_t*>(in.data())) != 1)
    return openssl_error("AES-SIV: set tag");
  RETURN_IF_ERROR(add_ad(ctx.get(), ad));
  const ByteSpan c = in.subspan(kSivTagSize);
  // One spare byte so data() is never null for an empty plaintext.
  Bytes out(c.size() + 1);
  int outl = 0;
  const int ok = EVP_DecryptUpdate(ctx.get(), out.data(), &outl, c.data(), static_cast<int>(c.size()));
  int finl = 0;
  if (ok != 1 || EVP_DecryptFinal_ex(ctx.get(), out.data() + outl, &finl) != 1) {
    ERR_clear_error();  // the cause is the tag, not a library fault
    OPENSSL_cleanse(out.data(), out.size());  // never hand out unauthenticated bytes
    return Status(Code::kCorrupt, "AES-SIV: authentication failed");
  }
  out.resize(c.size());
  return out;
}

}  // namespace kmsfs
