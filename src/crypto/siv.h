// AES-SIV (RFC 5297): deterministic authenticated encryption. The same key, associated
// data and plaintext always give the same ciphertext, which is what a name lookup needs
// (the backing name of "a.txt" must be computable without listing the directory), and it
// stays secure without a nonce: it leaks only equality of whole (AD, plaintext) inputs.
// Output layout: V (16-byte synthetic IV, which is also the tag) || C (len(pt) bytes).
#pragma once

#include <cstddef>
#include <memory>
#include <span>

#include "base/bytes.h"
#include "base/status.h"
#include "crypto/secure_buffer.h"

struct evp_cipher_ctx_st;

namespace kmsfs {

constexpr size_t kSivTagSize = 16;
constexpr size_t kSivKeySize = 64;  // AES-256-SIV: 256-bit MAC key + 256-bit CTR key

class Siv {
 public:
  // 64-byte keys select AES-256-SIV (what kmsfs uses); 32-byte keys AES-128-SIV (for the
  // RFC's own test vectors). kInvalidArgument for any other size.
  static Result<Siv> create(ByteSpan key);

  // Each element of `ad` is one associated-data component of the S2V vector.
  Result<Bytes> seal(std::span<const ByteSpan> ad, ByteSpan pt) const;
  // kCorrupt if `in` is shorter than the tag or does not authenticate.
  // Returns Bytes, not SecureBuffer: names are data the kernel sees anyway, and a readdir
  // opens thousands of them.
  Result<Bytes> open(std::span<const ByteSpan> ad, ByteSpan in) const;

 private:
  using Ctx = std::shared_ptr<const evp_cipher_ctx_st>;
  Siv(Ctx enc, Ctx dec) : enc_(std::move(enc)), dec_(std::move(dec)) {}
  // Keyed once; every call works on a copy. Keying per call (two AES key schedules and a
  // CMAC fetch) was a quarter of the daemon's user time on creates and lookups. Only read
  // (copied from) after create(), so threads share them.
  Ctx enc_, dec_;
};

}  // namespace kmsfs
