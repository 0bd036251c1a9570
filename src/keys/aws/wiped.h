// Growable buffers for bytes that may carry key material on their way in or out (an HTTP
// response with a base64 Plaintext, an Encrypt request body): every block they ever
// allocate is zeroed before it is freed, including the old block on each reallocation.
// Not locked memory: these hold secrets for one request; the plaintext itself goes
// straight into a SecureBuffer.
#pragma once

#include <cstddef>
#include <memory>
#include <string>

#include "crypto/secure_buffer.h"

namespace kmsfs::aws {

template <typename T>
struct WipingAllocator {
  using value_type = T;
  WipingAllocator() noexcept = default;
  template <typename U>
  WipingAllocator(const WipingAllocator<U>&) noexcept {}  // NOLINT: rebinding
  T* allocate(size_t n) { return std::allocator<T>().allocate(n); }
  void deallocate(T* p, size_t n) noexcept {
    secure_zero(p, n * sizeof(T));
    std::allocator<T>().deallocate(p, n);
  }
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
