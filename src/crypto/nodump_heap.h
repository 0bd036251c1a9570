// A malloc for memory that other libraries allocate on our behalf and that holds key
// material: OpenSSL's cipher contexts (the AES key schedules of content and name keys),
// libcurl's buffers (a KMS answer carries a data key in base64), the buffers of an HTTP
// exchange. Locked (no swap) and MADV_DONTDUMP (left out of core dumps, also of root's
// gcore, which ignores PR_SET_DUMPABLE), zeroed when freed.
//
// SecureBuffer remains the place for kmsfs's own keys; this heap exists because those
// libraries allocate their own objects and we can only choose the allocator.
//
// All memory comes from one reserved address range, so "is this pointer ours?" is two
// compares: a free() hook sees every free of the library, most of them of ordinary
// malloc memory, which it passes on to free().
#pragma once

#include <cstddef>

#include "base/status.h"

namespace kmsfs {

// nullptr when locked memory cannot be had (RLIMIT_MEMLOCK) or the range is exhausted:
// the caller's allocation fails, as with SecureBuffer we never fall back to unlocked
// memory. Alignment as malloc's (16 bytes).
void* nodump_alloc(size_t n) noexcept;
// Zeroes and releases memory of this heap; anything else goes to free(), so libraries that
// mix their own allocations with malloc's stay correct. nullptr is a no-op.
void nodump_free(void* p) noexcept;
// realloc: memory of this heap stays in it; a malloc pointer is moved into it.
void* nodump_realloc(void* p, size_t n) noexcept;
bool in_nodump_heap(const void* p) noexcept;

struct NoDumpHeapStats {
  size_t bytes_in_use = 0;   // sum of the slots handed out (their size classes)
  size_t bytes_locked = 0;   // committed, locked, never returned
  size_t allocations = 0;    // live
};
NoDumpHeapStats nodump_heap_stats();

// While one is alive on a thread, OpenSSL's allocations on that thread come from this
// heap (once route_openssl_to_nodump_heap() has run). Opened around everything that keys,
// copies or uses a cipher context, so whatever OpenSSL allocates for a key lives here,
// wherever it is freed later. Nests.
class NoDumpScope {
 public:
  NoDumpScope() noexcept;
  ~NoDumpScope();
  NoDumpScope(const NoDumpScope&) = delete;
  NoDumpScope& operator=(const NoDumpScope&) = delete;
};

// OpenSSL's allocator hooks (CRYPTO_set_mem_functions). OpenSSL accepts them only before
// its first allocation, which a shared library's initializer may make before main, so any
// executable linking this library installs them from its .preinit_array, before every
// library initializer. This confirms it (installing them now if that did not run); kInternal
// if OpenSSL refused them: the caller must not go on to hold keys (harden_process()).
Status route_openssl_to_nodump_heap();
bool openssl_routed_to_nodump_heap() noexcept;

}  // namespace kmsfs
