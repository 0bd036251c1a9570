// OpenSSL's allocator hooks: inside a NoDumpScope, what OpenSSL allocates comes from the
// no-dump heap; everything else goes to malloc as before.
#include <openssl/crypto.h>

#include <atomic>
#include <cstdlib>

#include "crypto/nodump_heap.h"

namespace kmsfs {
namespace {

thread_local int t_scope_depth = 0;
std::atomic<bool> g_routed{false};

void* openssl_malloc(size_t n, const char*, int) {
  return t_scope_depth > 0 ? nodump_alloc(n) : std::malloc(n);
}

void* openssl_realloc(void* p, size_t n, const char*, int) {
  // Memory of the heap stays in it wherever it is grown; in a scope everything moves in.
  if (t_scope_depth > 0 || in_nodump_heap(p)) return nodump_realloc(p, n);
  return std::realloc(p, n);
}

// Also right for what OpenSSL allocated before the hooks: nodump_free hands it to free().
void openssl_free(void* p, const char*, int) { nodump_free(p); }

bool install() noexcept {
  if (!g_routed && CRYPTO_set_mem_functions(openssl_malloc, openssl_realloc, openssl_free) == 1) g_routed = true;
  return g_routed;
}

// OpenSSL takes hooks only before its first allocation, and shared libraries may make one
// from their initializers, before main and before any initializer of ours (Debian's
// libcpp-httplib, which the metrics endpoint links, initializes OpenSSL at load). An
// executable's .preinit_array runs before every shared library's initializer; at that
// point libcrypto is mapped and relocated, and setting the hooks only writes its statics.
// Any executable that links this object gets the hooks; outside a scope they are malloc.
void install_early(int, char**, char**) { install(); }
[[gnu::section(".preinit_array"), gnu::used]] void (*const kInstallEarly)(int, char**, char**) = install_early;

}  // namespace

NoDumpScope::NoDumpScope() noexcept { ++t_scope_depth; }
NoDumpScope::~NoDumpScope() { --t_scope_depth; }

Status route_openssl_to_nodump_heap() {
  if (!install())
    return Status(Code::kInternal,
                  "OpenSSL allocated memory before kmsfs could route its cipher contexts to no-dump memory");
  return Status::Ok();
}

bool openssl_routed_to_nodump_heap() noexcept { return g_routed; }

}  // namespace kmsfs
