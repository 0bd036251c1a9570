// Growable buffers for bytes that may carry key material on their way in or out (an HTTP
// response with a base64 Plaintext, an Encrypt request body): allocated from the no-dump
// heap (locked, left out of core dumps: a core taken while a KMS answer is being parsed
// must not hold it) and zeroed before they are freed, including the old block on each
// reallocation. The plaintext itself goes straight into a SecureBuffer.
#pragma once

#include <cstddef>
#include <cstdint>
#include <new>
#include <string>

#include "crypto/nodump_heap.h"
#include "crypto/secure_buffer.h"

namespace kmsfs::aws {

template <typename T>
struct WipingAllocator {
  using value_type = T;
  WipingAllocator() noexcept = default;
  template <typename U>
  WipingAllocator(const WipingAllocator<U>&) noexcept {}  // NOLINT: rebinding
  T* allocate(size_t n) {
    if (n > SIZE_MAX / sizeof(T)) throw std::bad_alloc();
    void* p = nodump_alloc(n * sizeof(T));
    if (p == nullptr) throw std::bad_alloc();  // like SecureBuffer: never unlocked instead
    return static_cast<T*>(p);
  }
  void deallocate(T* p, size_t) noexcept { nodump_free(p); }  // which zeroes it
  template <typename U>
  bool operator==(const WipingAllocator<U>&) const noexcept { return true; }
};

// Short strings live inside the object (SSO) and are not freed through the allocator, so
// the destructor of a WipedString would miss them: use wipe() or WipedStringGuard.
using WipedString = std::basic_string<char, std::char_traits<char>, WipingAllocator<char>>;

inline void wipe(WipedString& s) noexcept {
  secure_zero(s.data(), s.size());
  s.clear();
}
inline void wipe(std::string& s) noexcept {
  secure_zero(s.data(), s.size());
  s.clear();
}

// Wipes a string (SSO bytes included) when the scope ends.
template <typename S>
class WipeOnExit {
 public:
  explicit WipeOnExit(S& s) : s_(s) {}
  ~WipeOnExit() { wipe(s_); }
  WipeOnExit(const WipeOnExit&) = delete;
  WipeOnExit& operator=(const WipeOnExit&) = delete;

 private:
  S& s_;
};

}  // namespace kmsfs::aws
