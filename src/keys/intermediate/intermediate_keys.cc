#include "keys/intermediate/intermediate_keys.h"

#include "crypto/random.h"
#include "keys/intermediate/intermediate_wrap.h"

namespace kmsfs {

IntermediateKeys::IntermediateKeys(IntermediateKeyOptions opts, KeyCache* cache)
    : opts_(std::move(opts)), cache_(cache) {}

Result<std::shared_ptr<const IntermediateKey>> IntermediateKeys::for_new_file(KeyProvider& provider,
                                                                              const KeyRef& ref,
                                                                              const EncryptionContext& file_ctx) {
  std::unique_lock lock(mu_);
  const auto deadline = Clock::now() + opts_.wait_deadline;
  while (true) {
    if (current_ && current_asked_ == ref && used_ < opts_.max_files && now() - born_ < opts_.max_age) {
      ++used_;
      ++stats_.files;
      return current_;
    }
    if (!flight_) break;
    // Another create is generating one: share its answer (success or failure).
    std::shared_ptr<Flight> f = flight_;
    if (!cv_.wait_until(lock, deadline, [&] { return f->done; }))
      return Status(Code::kUnavailable, "timed out waiting for a new intermediate key under " + ref.to_string(),
                    ETIMEDOUT);
    if (!f->error.ok()) return f->error;
    // Loop: take it if it is still current and has room.
  }
  auto flight = std::make_shared<Flight>();
  flight_ = flight;
  const uint64_t epoch = epoch_;
  lock.unlock();

  IntermediateKeyId id;
  random_bytes(id);
  auto gen = [&]() -> Result<std::shared_ptr<const IntermediateKey>> {
    ASSIGN_OR_RETURN(EncryptionContext ctx, intermediate_context(file_ctx, id));
    auto dk = provider.generate_data_key(ref, ctx);
    if (!dk.ok()) return dk.status().with_context("new intermediate key under " + ref.to_string());
    auto ik = std::make_shared<IntermediateKey>();
    ik->ref = dk->ref;
    ik->record.id = id;
    ik->record.wrapped = std::move(dk->wrapped);
    ik->ctx = std::move(ctx);
    ik->key = std::make_shared<const SecureBuffer>(std::move(dk->plaintext));
    if (cache_) cache_->insert(ik->ref, ik->record.wrapped, ik->ctx, *ik->key);
    return std::shared_ptr<const IntermediateKey>(std::move(ik));
  };
  auto result = gen();

  lock.lock();
  flight->done = true;
  if (flight_ == flight) flight_.reset();
  if (!result.ok()) {
    ++stats_.failures;
    flight->error = result.status();
  } else {
    ++stats_.generated;
    ++stats_.files;
    flight->key = *result;
    if (epoch == epoch_) {  // not flushed meanwhile
      current_ = *result;
      current_asked_ = ref;
      used_ = 1;
      born_ = now();
    }
  }
  cv_.notify_all();
  return result;
}

void IntermediateKeys::drop(const std::shared_ptr<const IntermediateKey>& ik) {
  std::lock_guard lock(mu_);
  if (current_ == ik) current_.reset();
}

void IntermediateKeys::flush() {
  std::lock_guard lock(mu_);
  current_.reset();
  ++epoch_;
}

IntermediateKeyStats IntermediateKeys::stats() const {
  std::lock_guard lock(mu_);
  return stats_;
}

}  // namespace kmsfs
