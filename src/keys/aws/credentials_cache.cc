// The credentials cache with background refresh, and the static provider.
#include <algorithm>
#include <condition_variable>
#include <mutex>
#include <stop_token>
#include <thread>

#include "keys/aws/credentials.h"

namespace kmsfs::aws {
namespace {

using std::chrono::system_clock;

class StaticProvider final : public CredentialsProvider {
 public:
  explicit StaticProvider(Credentials c) : c_(std::make_shared<const Credentials>(std::move(c))) {}
  Result<std::shared_ptr<const Credentials>> get() override { return c_; }
  std::string name() const override { return "static"; }

 private:
  std::shared_ptr<const Credentials> c_;
};

class CachingProvider final : public CredentialsProvider {
 public:
  CachingProvider(std::string name, Fetch fetch, CacheOptions opts)
      : name_(std::move(name)), fetch_(std::move(fetch)), opts_(std::move(opts)) {
    if (!opts_.clock) opts_.clock = [] { return system_clock::now(); };
  }

  ~CachingProvider() override {
    if (worker_.joinable()) {
      worker_.request_stop();
      cv_.notify_all();
      worker_.join();
    }
  }

  std::string name() const override { return name_; }

  Result<std::shared_ptr<const Credentials>> get() override {
    {
      std::unique_lock lk(mu_);
      if (usable(lk)) return current_;
    }
    // None yet, or expired: this caller must wait. One fetch at a time (lock order:
    // fetch_mu_ before mu_); the others wait for its result instead of stampeding the
    // metadata service, then find it installed.
    std::lock_guard fetch_lk(fetch_mu_);
    {
      std::unique_lock lk(mu_);
      if (usable(lk)) return current_;
    }
    Result<Credentials> fresh = fetch_();
    if (!fresh.ok()) return std::move(fresh).status();
    std::unique_lock lk(mu_);
    install(lk, std::move(fresh).value());
    return current_;
  }

 private:
  bool usable(std::unique_lock<std::mutex>&) const {
    return current_ && (!current_->expiration || opts_.clock() < *current_->expiration);
  }

  void install(std::unique_lock<std::mutex>&, Credentials c) {
    current_ = std::make_shared<const Credentials>(std::move(c));
    fetched_at_ = opts_.clock();
    if (current_->expiration && !worker_.joinable()) {
      worker_ = std::jthread([this](std::stop_token st) { refresh_loop(st); });
    }
    cv_.notify_all();
  }

  // Wakes refresh_ahead before expiry and fetches while the old credentials still work.
  void refresh_loop(std::stop_token st) {
    std::unique_lock lk(mu_);
    while (!st.stop_requested()) {
      auto exp = current_ ? current_->expiration : std::nullopt;
      if (!exp) {  // a source that stopped expiring: nothing to refresh
        cv_.wait(lk, st, [] { return false; });
        continue;
      }
      // Credentials that live shorter than twice refresh_ahead (STS allows 15 minutes) are
      // refreshed at half their life: refreshing `refresh_ahead` early would fetch again at
      // once, in a loop against the metadata service.
      const auto life = std::chrono::duration_cast<std::chrono::seconds>(*exp - fetched_at_);
      auto due = *exp - std::min<std::chrono::seconds>(opts_.refresh_ahead, life / 2);
      // The clock may be a test clock: wait in short steps and re-read it.
      if (opts_.clock() < due) {
        cv_.wait_for(lk, st, std::chrono::milliseconds(200), [] { return false; });
        continue;
      }
      lk.unlock();
      Result<Credentials> fresh = [&] {
        std::lock_guard fetch_lk(fetch_mu_);
        return fetch_();
      }();
      lk.lock();
      if (fresh.ok()) {
        current_ = std::make_shared<const Credentials>(std::move(fresh).value());
        fetched_at_ = opts_.clock();
      } else {
        cv_.wait_for(lk, st, opts_.retry_every, [] { return false; });
      }
    }
  }

  const std::string name_;
  const Fetch fetch_;
  CacheOptions opts_;
  std::mutex fetch_mu_;  // serialises fetches; taken before mu_ when both are held
  std::mutex mu_;
  std::condition_variable_any cv_;
  std::shared_ptr<const Credentials> current_;
  std::chrono::system_clock::time_point fetched_at_{};
  std::jthread worker_;  // last: stopped and joined before the rest goes
};

}  // namespace

std::shared_ptr<CredentialsProvider> make_caching_provider(std::string name, Fetch fetch,
                                                           CacheOptions opts) {
  return std::make_shared<CachingProvider>(std::move(name), std::move(fetch), std::move(opts));
}

std::shared_ptr<CredentialsProvider> make_static_provider(Credentials c) {
  return std::make_shared<StaticProvider>(std::move(c));
}

}  // namespace kmsfs::aws
