// The intermediate key new files are sealed under (intermediate-key mode, the analogue of
// S3 Bucket Keys): one provider GenerateDataKey yields a key that wraps the DEKs of up to
// `max_files` new files for at most `max_age`, then the next create rolls to a fresh one.
// Every file's header carries the provider-wrapped intermediate key, so a file copied
// anywhere still decrypts with access to the provider key alone.
//
// Concurrent creates that find no usable key share one generation (single flight); no
// lock is held across the provider call.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>

#include "base/status.h"
#include "crypto/secure_buffer.h"
#include "format/header.h"
#include "keys/cache/key_cache.h"
#include "keys/key_provider.h"

namespace kmsfs {

struct IntermediateKeyOptions {
  uint64_t max_files = 10000;
  std::chrono::milliseconds max_age{std::chrono::seconds(300)};
  // How long a create waits for a generation another create started.
  std::chrono::milliseconds wait_deadline{std::chrono::seconds(20)};
  std::function<std::chrono::steady_clock::time_point()> clock{};  // tests
};

struct IntermediateKey {
  KeyRef ref;                    // the provider key that wrapped it
  IntermediateKeyRecord record;  // id and wrapped form, as the header stores them
  EncryptionContext ctx;         // what it is wrapped with (intermediate_context)
  std::shared_ptr<const SecureBuffer> key;
};

struct IntermediateKeyStats {
  uint64_t generated = 0;  // provider calls that made a key
  uint64_t failures = 0;
  uint64_t files = 0;      // new files handed a key
};

class IntermediateKeys {
 public:
  // Keys it generates go into `cache` too (may be null), so files created under them
  // reopen without a provider call.
  IntermediateKeys(IntermediateKeyOptions opts, KeyCache* cache);

  // The key for one new file under `ref` (`file_ctx` is that file's context): the current
  // one, or a fresh one when it is used up, too old, under another ref, or was dropped.
  Result<std::shared_ptr<const IntermediateKey>> for_new_file(KeyProvider& provider, const KeyRef& ref,
                                                              const EncryptionContext& file_ctx);
  // Stops handing out `ik` (its provider key refused it); the next create makes a new one.
  void drop(const std::shared_ptr<const IntermediateKey>& ik);
  // Forgets the current key (flush-keys; a key reference change also rolls it).
  void flush();

  IntermediateKeyStats stats() const;
  const IntermediateKeyOptions& options() const { return opts_; }

 private:
  using Clock = std::chrono::steady_clock;
  struct Flight {
    bool done = false;
    Status error;
    std::shared_ptr<const IntermediateKey> key;
  };
  Clock::time_point now() const { return opts_.clock ? opts_.clock() : Clock::now(); }

  const IntermediateKeyOptions opts_;
  KeyCache* const cache_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::shared_ptr<const IntermediateKey> current_;
  KeyRef current_asked_;  // the ref it was generated for (what for_new_file compares)
  uint64_t used_ = 0;
  Clock::time_point born_{};
  uint64_t epoch_ = 0;  // bumped by flush: a generation started before it is not kept
  std::shared_ptr<Flight> flight_;
  IntermediateKeyStats stats_;
};

}  // namespace kmsfs
