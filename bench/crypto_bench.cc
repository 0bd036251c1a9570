// Seal/open throughput of one filesystem block, per cipher and block size, next to plain
// AES-256-GCM through EVP with a fixed key: the in-process ceiling XAES is measured
// against (its extra cost is the per-nonce subkey: 2 AES blocks + a GCM key setup).
#include <benchmark/benchmark.h>
#include <openssl/evp.h>

#include <cstdlib>
#include <memory>

#include "crypto/aead.h"
#include "crypto/random.h"

namespace kmsfs {
namespace {

std::unique_ptr<Aead> make_aead(CipherId id) {
  uint8_t key[kAeadKeySize];
  random_bytes(key);
  auto a = Aead::create(id, key);
  if (!a.ok()) std::abort();
  return std::move(a).value();
}

void BM_Seal(benchmark::State& state, CipherId id) {
  static const auto xaes = make_aead(CipherId::kAes256Gcm);
  static const auto xchacha = make_aead(CipherId::kXChaCha20Poly1305);
  const Aead& a = id == CipherId::kAes256Gcm ? *xaes : *xchacha;
  const size_t n = static_cast<size_t>(state.range(0));
  Bytes pt(n, 0x5a), out(n + kAeadOverhead);
  const uint8_t aad[16] = {1, 2, 3};
  for (auto _ : state) {
    if (!a.seal(pt, aad, out).ok()) state.SkipWithError("seal failed");
    benchmark::DoNotOptimize(out.data());
  }
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(n));
}

void BM_Open(benchmark::State& state, CipherId id) {
  static const auto xaes = make_aead(CipherId::kAes256Gcm);
  static const auto xchacha = make_aead(CipherId::kXChaCha20Poly1305);
  const Aead& a = id == CipherId::kAes256Gcm ? *xaes : *xchacha;
  const size_t n = static_cast<size_t>(state.range(0));
  Bytes pt(n, 0x5a), sealed(n + kAeadOverhead), back(n);
  const uint8_t aad[16] = {1, 2, 3};
  if (!a.seal(pt, aad, sealed).ok()) state.SkipWithError("seal failed");
  for (auto _ : state) {
    if (!a.open(sealed, aad, back).ok()) state.SkipWithError("open failed");
    benchmark::DoNotOptimize(back.data());
  }
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(n));
}

struct CtxFree {
  void operator()(EVP_CIPHER_CTX* p) const { EVP_CIPHER_CTX_free(p); }
};
struct CipherFree {
  void operator()(EVP_CIPHER* p) const { EVP_CIPHER_free(p); }
};

// Reference: AES-256-GCM, key schedule done once, per message only nonce + AAD + tag,
// i.e. what a 96-bit-nonce GCM design would pay per block.
void BM_EvpGcmSeal(benchmark::State& state) {
  const size_t n = static_cast<size_t>(state.range(0));
  std::unique_ptr<EVP_CIPHER, CipherFree> cipher(EVP_CIPHER_fetch(nullptr, "AES-256-GCM", nullptr));
  std::unique_ptr<EVP_CIPHER_CTX, CtxFree> ctx(EVP_CIPHER_CTX_new());
  uint8_t key[32], iv[12];
  random_bytes(key);
  random_bytes(iv);
  if (!cipher || !ctx || EVP_EncryptInit_ex2(ctx.get(), cipher.get(), key, nullptr, nullptr) != 1) {
    state.SkipWithError("EVP init failed");
    return;
  }
  Bytes pt(n, 0x5a), out(n + 16);
  const uint8_t aad[16] = {1, 2, 3};
  for (auto _ : state) {
    int outl = 0;
    iv[0]++;
    const bool ok = EVP_EncryptInit_ex2(ctx.get(), nullptr, nullptr, iv, nullptr) == 1 &&
                    EVP_EncryptUpdate(ctx.get(), nullptr, &outl, aad, sizeof aad) == 1 &&
                    EVP_EncryptUpdate(ctx.get(), out.data(), &outl, pt.data(), int(n)) == 1 &&
                    EVP_EncryptFinal_ex(ctx.get(), out.data() + n, &outl) == 1 &&
                    EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_AEAD_GET_TAG, 16, out.data() + n) == 1;
    if (!ok) state.SkipWithError("EVP seal failed");
    benchmark::DoNotOptimize(out.data());
  }
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(n));
}

void block_sizes(benchmark::internal::Benchmark* b) {
  for (int kib : {1, 4, 16, 64}) b->Arg(kib * 1024);
}

BENCHMARK_CAPTURE(BM_Seal, aes-256-gcm, CipherId::kAes256Gcm)->Apply(block_sizes);
BENCHMARK_CAPTURE(BM_Open, aes-256-gcm, CipherId::kAes256Gcm)->Apply(block_sizes);
BENCHMARK_CAPTURE(BM_Seal, xchacha20-poly1305, CipherId::kXChaCha20Poly1305)->Apply(block_sizes);
BENCHMARK_CAPTURE(BM_Open, xchacha20-poly1305, CipherId::kXChaCha20Poly1305)->Apply(block_sizes);
BENCHMARK(BM_EvpGcmSeal)->Apply(block_sizes);
// One shared Aead sealing from several threads: the context pool must not serialise.
BENCHMARK_CAPTURE(BM_Seal, aes-256-gcm-mt, CipherId::kAes256Gcm)->Arg(4096)->Threads(1)->Threads(2)->UseRealTime();

}  // namespace
}  // namespace kmsfs

BENCHMARK_MAIN();
