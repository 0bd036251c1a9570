#include "crypto/random.h"

#include <pthread.h>
#include <sodium.h>

#include <atomic>
#include <cstring>
#include <limits>

#include "crypto/detail.h"

namespace kmsfs {
namespace {

// Bumped in the child after fork(): a buffer filled before the fork exists in both
// processes, and handing out the same bytes twice would repeat nonces.
std::atomic<uint64_t> g_fork_generation{1};

void on_fork_child() { g_fork_generation.fetch_add(1, std::memory_order_relaxed); }

// Per-thread ChaCha20 stream (randombytes_buf_deterministic) keyed from randombytes_buf:
// getrandom(2) costs ~4 ns/byte here, 24 bytes per 4 KiB seal were ~7% of the seal.
// Fast key erasure: each refill's first 32 bytes become the next key and are never
// handed out. Re-keyed from the kernel after fork and every kReseedEvery refills.
struct NonceStream {
  uint8_t key[32];
  uint8_t bytes[4096];
  size_t pos = sizeof bytes;  // empty until first use
  uint64_t generation = 0;    // fork generation the key was drawn in; 0 = never
  uint32_t refills = 0;
};
constexpr uint32_t kReseedEvery = 256;  // ~43,000 nonces of 24 bytes
// Trivially destructible and constant-initialised: no TLS guard on the hot path.
thread_local NonceStream t_nonces;

void refill(NonceStream& ns, uint64_t generation) noexcept {
  if (ns.generation != generation || ns.refills % kReseedEvery == 0) {
    random_bytes(ns.key);
    ns.generation = generation;
  }
  ++ns.refills;
  randombytes_buf_deterministic(ns.bytes, sizeof ns.bytes, ns.key);
  std::memcpy(ns.key, ns.bytes, sizeof ns.key);
  sodium_memzero(ns.bytes, sizeof ns.key);
  ns.pos = sizeof ns.key;
}

}  // namespace

void random_bytes(MutableByteSpan out) noexcept {
  if (out.empty()) return;
  detail::ensure_sodium();
  randombytes_buf(out.data(), out.size());
}

void random_nonce(MutableByteSpan out) noexcept {
  static const bool registered = pthread_atfork(nullptr, nullptr, on_fork_child) == 0;
  if (!registered || out.size() > 1024) {
    random_bytes(out);  // no fork protection, or too big to be worth buffering
    return;
  }
  NonceStream& ns = t_nonces;
  const uint64_t gen = g_fork_generation.load(std::memory_order_relaxed);
  if (ns.generation != gen || sizeof ns.bytes - ns.pos < out.size()) {
    detail::ensure_sodium();
    refill(ns, gen);
  }
  std::memcpy(out.data(), ns.bytes + ns.pos, out.size());
  ns.pos += out.size();
}

uint64_t random_u64() noexcept {
  uint8_t b[8];
  random_bytes(b);
  return get_le64(b);
}

uint64_t random_uniform(uint64_t bound) noexcept {
  if (bound <= 1) return 0;  // bound == 0 violates the contract; 0 is the least-bad answer
  if (bound <= std::numeric_limits<uint32_t>::max()) {
    detail::ensure_sodium();
    return randombytes_uniform(static_cast<uint32_t>(bound));
  }
  // Reject the lowest (2^64 mod bound) values so every residue has the same number of
  // preimages; r % bound is then exactly uniform. Expected < 2 draws.
  const uint64_t threshold = (0 - bound) % bound;
  for (;;) {
    const uint64_t r = random_u64();
    if (r >= threshold) return r % bound;
  }
}

}  // namespace kmsfs
