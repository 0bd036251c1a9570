#include "vault/cached_key_guard.h"

#include <spdlog/spdlog.h>

#include "base/log_fields.h"

namespace kmsfs {

namespace {

// How long a right extended for want of an answer lasts before the next renewal asks the
// KMS again (the cache's circuit breaker makes that cheap while the KMS is down).
constexpr std::chrono::seconds kRetryAfterNoAnswer{1};
// How long a write waits for a renewal's answer: the file has its key, so a slow KMS
// should cost it at most this, not the client's retries (the fetch goes on for the next).
constexpr std::chrono::milliseconds kRenewalWait{1000};
// At most one warning this often, for all open files together.
constexpr std::chrono::seconds kWarnEvery{10};
std::atomic<int64_t> last_warning_ns{0};

}  // namespace

CachedKeyGuard::CachedKeyGuard(KeyCache& cache, KeyRef ref, Bytes wrapped, EncryptionContext ctx,
                               const KeyCache::Lease& lease)
    : cache_(cache),
      ref_(std::move(ref)),
      wrapped_(std::move(wrapped)),
      ctx_(std::move(ctx)),
      id_(lease.id),
      flushes_seen_(cache.flushes()),
      refresh_from_ns_(ns(lease.valid_until - cache.refresh_ahead())),
      valid_until_ns_(ns(lease.valid_until)) {}

Status CachedKeyGuard::check() {
  const int64_t now = ns(cache_.now());
  int64_t from = refresh_from_ns_.load(std::memory_order_acquire);
  if (now < from) return Status::Ok();
  const int64_t until = valid_until_ns_.load(std::memory_order_acquire);
  if (now < until) {
    // In use near the end of the lease: one touch per lease (the exchange picks the
    // thread that sends it).
    if (refresh_from_ns_.compare_exchange_strong(from, until, std::memory_order_acq_rel)) cache_.touch(id_);
    return Status::Ok();
  }
  // The key the file holds is the one this wrap unwraps to (the cache is keyed on the
  // wrap): only the right to use it is renewed here.
  KeyRef ref;
  Bytes wrapped;
  EncryptionContext ctx;
  {
    std::lock_guard lock(mu_);
    ref = ref_, wrapped = wrapped_, ctx = ctx_;
  }
  const uint64_t flushes = cache_.flushes();
  auto lease = cache_.unwrap(ref, wrapped, ctx, kRenewalWait);
  if (!lease.ok()) return on_no_answer(ref, std::move(lease).status());
  flushes_seen_.store(flushes, std::memory_order_release);
  refresh_from_ns_.store(ns(lease->valid_until - cache_.refresh_ahead()), std::memory_order_release);
  valid_until_ns_.store(ns(lease->valid_until), std::memory_order_release);
  return Status::Ok();
}

Status CachedKeyGuard::on_no_answer(const KeyRef& ref, Status why) {
  // A refusal (denied, disabled, gone) is the revocation this guard exists for; after a
  // flush the operator asked for every right to be proven again.
  if (why.code() != Code::kUnavailable || cache_.flushes() != flushes_seen_.load(std::memory_order_acquire))
    return why;
  const int64_t now = ns(cache_.now());
  const int64_t until = ns(cache_.now() + kRetryAfterNoAnswer);
  refresh_from_ns_.store(until, std::memory_order_release);
  valid_until_ns_.store(until, std::memory_order_release);
  int64_t last = last_warning_ns.load(std::memory_order_relaxed);
  const int64_t every = std::chrono::duration_cast<std::chrono::nanoseconds>(kWarnEvery).count();
  if ((last == 0 || now - last >= every) && last_warning_ns.compare_exchange_strong(last, now)) {
    LogFields fields({{"KMSFS_KEY", ref.to_string()}});
    spdlog::warn("key {}: no answer from the key provider renewing an open file's right to it ({}); the file keeps "
                 "its key until the provider answers or refuses",
                 ref.to_string(), why.message());
  }
  return Status::Ok();
}

void CachedKeyGuard::retarget(KeyRef ref, Bytes wrapped, EncryptionContext ctx, const KeyCache::Lease& lease) {
  std::lock_guard lock(mu_);
  ref_ = std::move(ref);
  wrapped_ = std::move(wrapped);
  ctx_ = std::move(ctx);
  refresh_from_ns_.store(ns(lease.valid_until - cache_.refresh_ahead()), std::memory_order_release);
  valid_until_ns_.store(ns(lease.valid_until), std::memory_order_release);
}

}  // namespace kmsfs
