// Secret bytes live only here: locked (no swap), excluded from core dumps, zeroed on
// release. Small buffers (keys) come from a slab of fixed-size slots so that tens of
// thousands of cached keys cost a few locked pages, not one mapping each as
// sodium_malloc would; large ones fall back to sodium_malloc.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "base/bytes.h"
#include "base/status.h"

namespace kmsfs {

class SecureBuffer {
 public:
  SecureBuffer() = default;
  // Zero-filled. Throws std::bad_alloc if locked memory cannot be had (RLIMIT_MEMLOCK):
  // running on unlocked memory silently would break the promise, so we refuse loudly.
  explicit SecureBuffer(size_t size);
  static SecureBuffer copy_of(ByteSpan bytes);
  ~SecureBuffer();

  SecureBuffer(SecureBuffer&& o) noexcept;
  SecureBuffer& operator=(SecureBuffer&& o) noexcept;
  SecureBuffer(const SecureBuffer&) = delete;
  SecureBuffer& operator=(const SecureBuffer&) = delete;

  uint8_t* data() noexcept { return data_; }
  const uint8_t* data() const noexcept { return data_; }
  size_t size() const noexcept { return size_; }
  bool empty() const noexcept { return size_ == 0; }
  MutableByteSpan span() noexcept { return {data_, size_}; }
  ByteSpan span() const noexcept { return {data_, size_}; }
  // Explicit deep copy (never implicit: copies of secrets should be visible in review).
  SecureBuffer clone() const { return copy_of(span()); }
  // Shrinks the visible size (e.g. after decrypting into a buffer sized for the worst case).
  void truncate(size_t new_size) noexcept;

 private:
  void release() noexcept;
  uint8_t* data_ = nullptr;
  size_t size_ = 0;
  size_t capacity_ = 0;
  bool from_slab_ = false;
};

// Statistics of the slab, for tests and the metrics endpoint.
struct SecureSlabStats {
  size_t slots_in_use = 0;
  size_t slots_total = 0;
  size_t bytes_locked = 0;
  size_t chunks = 0;
};
SecureSlabStats secure_slab_stats();

// For tests: true if every byte of the slot that held [p, p+n) is zero. Used to prove
// release() wipes memory without reading freed heap memory through UB.
bool secure_slab_slot_is_zero(const void* p, size_t n);

// Process hardening for anything that holds keys: no core dumps (RLIMIT_CORE 0),
// PR_SET_DUMPABLE 0 (no ptrace by same uid, no /proc/PID/mem), and OpenSSL's cipher
// contexts in no-dump memory (route_openssl_to_nodump_heap: must run before OpenSSL's
// first allocation, so call this first in main). Idempotent.
Status harden_process();

// Constant-time equality (sodium_memcmp); false if sizes differ.
bool ct_equal(ByteSpan a, ByteSpan b) noexcept;

// Zeroes memory in a way the compiler cannot elide.
void secure_zero(void* p, size_t n) noexcept;

}  // namespace kmsfs
