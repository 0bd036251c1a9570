// XChaCha20-Poly1305 (libsodium IETF variant): the constant-time software choice for
// CPUs without AES instructions.
#include <sodium.h>

#include <cstring>

#include "crypto/aead_impl.h"
#include "crypto/detail.h"
#include "crypto/secure_buffer.h"

namespace kmsfs::detail {
namespace {

static_assert(crypto_aead_xchacha20poly1305_ietf_KEYBYTES == kAeadKeySize);
static_assert(crypto_aead_xchacha20poly1305_ietf_NPUBBYTES == kAeadNonceSize);
static_assert(crypto_aead_xchacha20poly1305_ietf_ABYTES == kAeadTagSize);

class XChaCha20Poly1305 final : public Aead {
 public:
  explicit XChaCha20Poly1305(ByteSpan key) : key_(SecureBuffer::copy_of(key)) {}

  CipherId id() const noexcept override { return CipherId::kXChaCha20Poly1305; }

  Status seal_with_nonce(ByteSpan nonce, ByteSpan pt, ByteSpan aad,
                         MutableByteSpan out) const override {
    RETURN_IF_ERROR(check_seal_args(nonce, pt, out, kMaxPlaintext));
    std::memmove(out.data(), nonce.data(), kAeadNonceSize);  // nonce may alias out
    uint8_t* ct = out.data() + kAeadNonceSize;
    uint8_t* tag = ct + pt.size();
    crypto_aead_xchacha20poly1305_ietf_encrypt_detached(ct, tag, nullptr, pt.data(), pt.size(),
                                                        aad.data(), aad.size(), nullptr,
                                                        out.data(), key_.data());
    return Status::Ok();
  }

  Status open(ByteSpan in, ByteSpan aad, MutableByteSpan out) const override {
    RETURN_IF_ERROR(check_open_args(in, out));
    const uint8_t* nonce = in.data();
    const uint8_t* ct = nonce + kAeadNonceSize;
    const size_t ct_len = out.size();
    const uint8_t* tag = ct + ct_len;
    if (crypto_aead_xchacha20poly1305_ietf_decrypt_detached(out.data(), nullptr, ct, ct_len, tag,
                                                            aad.data(), aad.size(), nonce,
                                                            key_.data()) != 0) {
      secure_zero(out.data(), out.size());
      return Status(Code::kCorrupt, "authentication failed");
    }
    return Status::Ok();
  }

 private:
  static constexpr size_t kMaxPlaintext = crypto_aead_xchacha20poly1305_ietf_MESSAGEBYTES_MAX;
  SecureBuffer key_;
};

}  // namespace

Result<std::unique_ptr<Aead>> make_xchacha20_poly1305(ByteSpan key) {
  ensure_sodium();
  return std::unique_ptr<Aead>(std::make_unique<XChaCha20Poly1305>(key));
}

}  // namespace kmsfs::detail
