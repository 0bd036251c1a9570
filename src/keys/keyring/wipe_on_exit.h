// Wipes an ordinary byte vector that briefly held secrets (read_file returns Bytes) on
// every path out of a scope, exceptions included.
#pragma once

#include "base/bytes.h"
#include "crypto/secure_buffer.h"

namespace kmsfs {

class WipeOnExit {
 public:
  explicit WipeOnExit(Bytes& b) : b_(b) {}
  ~WipeOnExit() { secure_zero(b_.data(), b_.size()); }
  WipeOnExit(const WipeOnExit&) = delete;
  WipeOnExit& operator=(const WipeOnExit&) = delete;

 private:
  Bytes& b_;
};

}  // namespace kmsfs
