#include "crypto/detail.h"

#include <openssl/err.h>
#include <sodium.h>

#include <cstdio>
#include <cstdlib>
#include <new>
#include <string>

namespace kmsfs::detail {
namespace {

[[noreturn]] void die(const char* what) noexcept {
  std::fprintf(stderr, "kmsfs: fatal: %s\n", what);
  std::abort();
}

template <typename Ptr, typename Fetch>
Ptr fetch_or_die(Fetch fetch, const char* name) {
  Ptr p(fetch(nullptr, name, nullptr));
  if (!p) die(name);
  return p;
}

}  // namespace

void ensure_sodium() noexcept {
  // sodium_init() is itself idempotent but not documented as safe to race with other
  // sodium calls; the static makes the first call happen-before all later ones.
  static const bool ok = sodium_init() >= 0;
  if (!ok) die("sodium_init failed");
}

CipherCtxPtr new_cipher_ctx() {
  CipherCtxPtr ctx(EVP_CIPHER_CTX_new());
  if (!ctx) throw std::bad_alloc();
  return ctx;
}

Status openssl_error(std::string_view what) {
  std::string msg(what);
  if (unsigned long e = ERR_get_error(); e != 0) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    msg += ": ";
    msg += buf;
  }
  ERR_clear_error();
  return Status(Code::kInternal, std::move(msg));
}

const EVP_CIPHER* aes256_ecb() {
  static const CipherPtr c = fetch_or_die<CipherPtr>(EVP_CIPHER_fetch, "AES-256-ECB");
  return c.get();
}

const EVP_CIPHER* aes256_gcm() {
  static const CipherPtr c = fetch_or_die<CipherPtr>(EVP_CIPHER_fetch, "AES-256-GCM");
  return c.get();
}

const EVP_CIPHER* aes_siv(size_t key_size) {
  static const CipherPtr c128 = fetch_or_die<CipherPtr>(EVP_CIPHER_fetch, "AES-128-SIV");
  static const CipherPtr c256 = fetch_or_die<CipherPtr>(EVP_CIPHER_fetch, "AES-256-SIV");
  return key_size == 32 ? c128.get() : key_size == 64 ? c256.get() : nullptr;
}

const EVP_MD* sha256_md() {
  static const MdPtr md = fetch_or_die<MdPtr>(EVP_MD_fetch, "SHA256");
  return md.get();
}

}  // namespace kmsfs::detail
