// XAES-256-GCM, https://c2sp.org/XAES-256-GCM: AES-256-GCM under a per-nonce subkey
//   L  = AES-256_K(0^128)
//   K1 = L << 1, XOR 0x87 into the last byte if the MSB of L was set (CMAC subkey)
//   Kx = AES-256_K(00 01 'X' 00 || N[0:12] ^ K1) || AES-256_K(00 02 'X' 00 || N[0:12] ^ K1)
//   ct = AES-256-GCM(Kx, N[12:24], pt, aad)
// Per seal that is two AES blocks plus one GCM key setup on top of plain GCM.
#include <openssl/err.h>
#include <openssl/evp.h>
#include <sodium.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstring>
#include <utility>

#include "crypto/aead_impl.h"
#include "crypto/detail.h"
#include "crypto/nodump_heap.h"
#include "crypto/secure_buffer.h"

namespace kmsfs::detail {
namespace {

constexpr size_t kBlock = 16;
constexpr size_t kKxNonce = 12;  // N[0:12] feeds the subkey, N[12:24] is the GCM nonce
constexpr size_t kMaxPlaintext = (uint64_t{1} << 36) - 32;  // GCM: 2^32 - 2 blocks
// EVP lengths are int; feed larger inputs in block-aligned pieces.
constexpr size_t kEvpChunk = size_t{1} << 30;

// Zeroes a stack copy of derived key material on every exit path.
template <size_t N>
struct Scrubbed {
  uint8_t b[N];
  ~Scrubbed() { sodium_memzero(b, N); }
};

// Contexts for one operation at a time: `ecb` carries the base key schedule and is never
// re-keyed; `gcm` is re-keyed with the subkey on every call. EVP_CIPHER_CTX is not
// thread-safe, so each concurrent caller needs its own pair.
struct Worker {
  CipherCtxPtr ecb;
  CipherCtxPtr gcm;
};

class XAes256Gcm final : public Aead {
 public:
  static Result<std::unique_ptr<Aead>> create(ByteSpan key) {
    const NoDumpScope no_dump;  // the contexts hold the key schedule
    std::unique_ptr<XAes256Gcm> a(new XAes256Gcm(key));
    ASSIGN_OR_RETURN(std::unique_ptr<Worker> w, a->make_worker());
    Scrubbed<kBlock> l;
    static const uint8_t kZero[kBlock] = {};
    int outl = 0;
    if (EVP_EncryptUpdate(w->ecb.get(), l.b, &outl, kZero, kBlock) != 1 || outl != int{kBlock})
      return openssl_error("XAES-256-GCM: computing L");
    uint8_t* k1 = a->k1_.data();
    const uint8_t msb = l.b[0] >> 7;
    for (size_t i = 0; i + 1 < kBlock; ++i) k1[i] = uint8_t(l.b[i] << 1 | l.b[i + 1] >> 7);
    k1[kBlock - 1] = uint8_t(l.b[kBlock - 1] << 1);
    // Constant time: the MSB of L is secret.
    k1[kBlock - 1] ^= uint8_t(0x87 & (0 - msb));
    a->release(w.release());  // the first seal will want it
    return std::unique_ptr<Aead>(std::move(a));
  }

  ~XAes256Gcm() override {
    for (auto& slot : pool_) delete slot.load(std::memory_order_acquire);
  }

  CipherId id() const noexcept override { return CipherId::kAes256Gcm; }

  Status seal_with_nonce(ByteSpan nonce, ByteSpan pt, ByteSpan aad,
                         MutableByteSpan out) const override {
    RETURN_IF_ERROR(check_seal_args(nonce, pt, out, kMaxPlaintext));
    const NoDumpScope no_dump;  // a new worker's contexts, anything OpenSSL keys on the way
    std::memmove(out.data(), nonce.data(), kAeadNonceSize);  // nonce may alias out
    const uint8_t* n = out.data();
    uint8_t* ct = out.data() + kAeadNonceSize;
    uint8_t* tag = ct + pt.size();

    ASSIGN_OR_RETURN(Lease w, lease());
    RETURN_IF_ERROR(start(*w, n, /*enc=*/1));
    int outl = 0;
    for (size_t off = 0; off < aad.size(); off += kEvpChunk) {
      const int len = int(std::min(kEvpChunk, aad.size() - off));
      if (EVP_EncryptUpdate(w->gcm.get(), nullptr, &outl, aad.data() + off, len) != 1)
        return openssl_error("XAES-256-GCM: aad");
    }
    for (size_t off = 0; off < pt.size(); off += kEvpChunk) {
      const int len = int(std::min(kEvpChunk, pt.size() - off));
      if (EVP_EncryptUpdate(w->gcm.get(), ct + off, &outl, pt.data() + off, len) != 1 || outl != len)
        return openssl_error("XAES-256-GCM: encrypt");
    }
    if (EVP_EncryptFinal_ex(w->gcm.get(), tag, &outl) != 1 ||
        EVP_CIPHER_CTX_ctrl(w->gcm.get(), EVP_CTRL_AEAD_GET_TAG, int{kAeadTagSize}, tag) != 1)
      return openssl_error("XAES-256-GCM: tag");
    return Status::Ok();
  }

  Status open(ByteSpan in, ByteSpan aad, MutableByteSpan out) const override {
    RETURN_IF_ERROR(check_open_args(in, out));
    const NoDumpScope no_dump;
    Status st = open_impl(in, aad, out);
    // Never hand back partially decrypted (unauthenticated) bytes.
    if (!st.ok()) secure_zero(out.data(), out.size());
    return st;
  }

 private:
  // Fits the pool in one cache line; more concurrent callers than slots still work,
  // their surplus contexts are just freed instead of pooled.
  static constexpr size_t kPoolSlots = 8;

  // Returns the worker to the pool when the operation ends, whatever the exit path.
  class Lease {
   public:
    Lease(const XAes256Gcm* owner, Worker* w) : owner_(owner), w_(w) {}
    Lease(Lease&& o) noexcept : owner_(o.owner_), w_(std::exchange(o.w_, nullptr)) {}
    Lease& operator=(Lease&&) = delete;
    ~Lease() { if (w_ != nullptr) owner_->release(w_); }
    Worker* operator->() const { return w_; }
    Worker& operator*() const { return *w_; }

   private:
    const XAes256Gcm* owner_;
    Worker* w_;
  };

  explicit XAes256Gcm(ByteSpan key) : key_(SecureBuffer::copy_of(key)), k1_(kBlock) {}

  Result<std::unique_ptr<Worker>> make_worker() const {
    auto w = std::make_unique<Worker>();
    w->ecb = new_cipher_ctx();
    w->gcm = new_cipher_ctx();
    if (EVP_EncryptInit_ex2(w->ecb.get(), aes256_ecb(), key_.data(), nullptr, nullptr) != 1 ||
        EVP_CIPHER_CTX_set_padding(w->ecb.get(), 0) != 1)
      return openssl_error("XAES-256-GCM: AES-256-ECB init");
    if (EVP_CipherInit_ex2(w->gcm.get(), aes256_gcm(), nullptr, nullptr, 1, nullptr) != 1)
      return openssl_error("XAES-256-GCM: AES-256-GCM init");
    return w;
  }

  // Lock-free: a slot is either empty or owned by the pool; exchange hands it to exactly
  // one caller. Each thread starts at its own slot to spread contention.
  Result<Lease> lease() const {
    static std::atomic<size_t> next_hint{0};
    thread_local const size_t hint = next_hint.fetch_add(1, std::memory_order_relaxed);
    for (size_t i = 0; i < kPoolSlots; ++i) {
      auto& slot = pool_[(hint + i) % kPoolSlots];
      if (slot.load(std::memory_order_relaxed) == nullptr) continue;
      if (Worker* w = slot.exchange(nullptr, std::memory_order_acquire)) return Lease(this, w);
    }
    ASSIGN_OR_RETURN(std::unique_ptr<Worker> w, make_worker());
    return Lease(this, w.release());
  }

  void release(Worker* w) const noexcept {
    for (auto& slot : pool_) {
      Worker* expected = nullptr;
      if (slot.compare_exchange_strong(expected, w, std::memory_order_release,
                                       std::memory_order_relaxed))
        return;
    }
    delete w;
  }

  // Derives Kx from N[0:12] and keys the GCM context with it and IV N[12:24].
  Status start(Worker& w, const uint8_t* n, int enc) const {
    Scrubbed<2 * kBlock> m;
    static constexpr uint8_t kPrefix1[4] = {0x00, 0x01, 'X', 0x00};
    static constexpr uint8_t kPrefix2[4] = {0x00, 0x02, 'X', 0x00};
    std::memcpy(m.b, kPrefix1, 4);
    std::memcpy(m.b + 4, n, kKxNonce);
    std::memcpy(m.b + kBlock, kPrefix2, 4);
    std::memcpy(m.b + kBlock + 4, n, kKxNonce);
    const uint8_t* k1 = k1_.data();
    for (size_t i = 0; i < kBlock; ++i) {
      m.b[i] ^= k1[i];
      m.b[kBlock + i] ^= k1[i];
    }
    Scrubbed<kAeadKeySize> kx;
    int outl = 0;
    if (EVP_EncryptUpdate(w.ecb.get(), kx.b, &outl, m.b, int{2 * kBlock}) != 1 ||
        outl != int{2 * kBlock})
      return openssl_error("XAES-256-GCM: subkey derivation");
    if (EVP_CipherInit_ex2(w.gcm.get(), nullptr, kx.b, n + kKxNonce, enc, nullptr) != 1)
      return openssl_error("XAES-256-GCM: GCM key setup");
    return Status::Ok();
  }

  Status open_impl(ByteSpan in, ByteSpan aad, MutableByteSpan out) const {
    const uint8_t* n = in.data();
    const uint8_t* ct = n + kAeadNonceSize;
    const uint8_t* tag = ct + out.size();

    ASSIGN_OR_RETURN(Lease w, lease());
    RETURN_IF_ERROR(start(*w, n, /*enc=*/0));
    // OpenSSL copies the tag; the ctrl API just is not const-correct.
    if (EVP_CIPHER_CTX_ctrl(w->gcm.get(), EVP_CTRL_AEAD_SET_TAG, int{kAeadTagSize},
                            const_cast<uint8_t*>(tag)) != 1)
      return openssl_error("XAES-256-GCM: set tag");
    int outl = 0;
    for (size_t off = 0; off < aad.size(); off += kEvpChunk) {
      const int len = int(std::min(kEvpChunk, aad.size() - off));
      if (EVP_DecryptUpdate(w->gcm.get(), nullptr, &outl, aad.data() + off, len) != 1)
        return openssl_error("XAES-256-GCM: aad");
    }
    for (size_t off = 0; off < out.size(); off += kEvpChunk) {
      const int len = int(std::min(kEvpChunk, out.size() - off));
      if (EVP_DecryptUpdate(w->gcm.get(), out.data() + off, &outl, ct + off, len) != 1 || outl != len)
        return openssl_error("XAES-256-GCM: decrypt");
    }
    uint8_t final_block[kBlock];
    if (EVP_DecryptFinal_ex(w->gcm.get(), final_block, &outl) != 1) {
      ERR_clear_error();
      return Status(Code::kCorrupt, "authentication failed");
    }
    return Status::Ok();
  }

  SecureBuffer key_;  // read only when a new worker is keyed
  SecureBuffer k1_;
  mutable std::array<std::atomic<Worker*>, kPoolSlots> pool_{};
};

}  // namespace

Result<std::unique_ptr<Aead>> make_xaes_256_gcm(ByteSpan key) { return XAes256Gcm::create(key); }

}  // namespace kmsfs::detail
