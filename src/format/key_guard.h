// The right to keep using an open file's key. The format engine asks before every access;
// the vault's key cache gives that right a TTL (so a key revoked in the KMS stops working
// for open files too), offline tools give none (their files live as long as a command).
#pragma once

#include <array>
#include <cstdint>

#include "base/status.h"

namespace kmsfs {

class KeyGuard {
 public:
  virtual ~KeyGuard() = default;
  // Ok, or why the key may not be used now (kPermissionDenied, kUnavailable, ...). Cheap
  // while the right lasts; asks the key's source again once it has run out.
  virtual Status check() = 0;
  // Ends the right now: the next check asks the source (a key evicted from the cache).
  virtual void expire() = 0;
  // Which key this is, as the cache names it (an opaque digest).
  virtual const std::array<uint8_t, 32>& key_id() const = 0;
};

}  // namespace kmsfs
