// The VmFlags line of the mapping that holds an address, from /proc/self/smaps
// ("lo": locked, "dd": MADV_DONTDUMP), with a space at both ends for find(" lo ").
#pragma once

#include <cstdint>
#include <fstream>
#include <string>

namespace kmsfs {

// AddressSanitizer's mlock interceptor does nothing (and reports success).
#if defined(__SANITIZE_ADDRESS__)
constexpr bool kMlockWorks = false;
#else
constexpr bool kMlockWorks = true;
#endif

inline std::string vm_flags_of(const void* p) {
  const auto addr = reinterpret_cast<uintptr_t>(p);
  std::ifstream in("/proc/self/smaps");
  bool inside = false;
  for (std::string line; std::getline(in, line);) {
    const size_t dash = line.find('-');
    if (dash != std::string::npos && line.find_first_not_of("0123456789abcdef") == dash) {
      const uintptr_t start = std::stoull(line.substr(0, dash), nullptr, 16);
      const uintptr_t end = std::stoull(line.substr(dash + 1), nullptr, 16);
      inside = addr >= start && addr < end;
    } else if (inside && line.starts_with("VmFlags:")) {
      return line.substr(8) + " ";
    }
  }
  return "";
}

}  // namespace kmsfs
