#include "vault/cached_key_guard.h"

namespace kmsfs {

CachedKeyGuard::CachedKeyGuard(KeyCache& cache, KeyRef ref, Bytes wrapped, EncryptionContext ctx,
                               const KeyCache::Lease& lease)
    : cache_(cache),
      ref_(std::move(ref)),
      wrapped_(std::move(wrapped)),
      ctx_(std::move(ctx)),
      id_(lease.id),
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
  ASSIGN_OR_RETURN(KeyCache::Lease lease, cache_.unwrap(ref, wrapped, ctx));
  refresh_from_ns_.store(ns(lease.valid_until - cache_.refresh_ahead()), std::memory_order_release);
  valid_until_ns_.store(ns(lease.valid_until), std::memory_order_release);
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
