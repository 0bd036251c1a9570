// A keyring vault whose provider counts calls and can pose as remote, be slowed down or
// fail: the real keyring behind a wrapper (key sources and rotation tests).
#pragma once

#include <atomic>
#include <chrono>
#include <filesystem>
#include <functional>
#include <mutex>
#include <stdexcept>
#include <optional>
#include <thread>
#include <vector>

#include "vault_fixture.h"

namespace kmsfs::testing {

class CountingProvider final : public KeyProvider {
 public:
  explicit CountingProvider(std::unique_ptr<KeyProvider> inner) : inner_(std::move(inner)) {}
  ProviderId id() const noexcept override { return inner_->id(); }
  bool remote() const override { return is_remote; }
  Result<KeyRef> resolve(std::string_view spec) override {
    // Pinned: a KMS resolves an alias once in a while, not at every create.
    if (pinned) return *pinned;
    return inner_->resolve(spec);
  }
  Result<DataKey> generate_data_key(const KeyRef& k, const EncryptionContext& c) override {
    ++generates;
    std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms.load()));
    if (fail) return Status(Code::kUnavailable, "provider unreachable (test)");
    return inner_->generate_data_key(k, c);
  }
  Result<SecureBuffer> unwrap(const KeyRef& k, ByteSpan w, const EncryptionContext& c) override {
    ++unwraps;
    return inner_->unwrap(k, w, c);
  }
  Result<Rewrapped> rewrap(const KeyRef& f, ByteSpan w, const EncryptionContext& c, const KeyRef& t) override {
    ++rewraps;
    const std::string file(c.get(EncryptionContext::kFileIdKey).value_or(""));
    {
      std::lock_guard g(log_mu);
      const bool throttled = fail || (!file.empty() && file == throttle_once_file);
      if (file == throttle_once_file) throttle_once_file.clear();
      rewrap_log.emplace_back(file, !throttled);
      if (throttled) return Status(Code::kUnavailable, "provider unreachable (test)");
    }
    return inner_->rewrap(f, w, c, t);
  }
  Status refresh() override { return inner_->refresh(); }
  KeyProvider& inner() { return *inner_; }

  std::atomic<int> generates{0};
  std::atomic<int> unwraps{0};
  std::atomic<int> rewraps{0};
  std::atomic<int> delay_ms{0};
  std::atomic<bool> fail{false};
  std::atomic<bool> is_remote{false};
  std::optional<KeyRef> pinned;
  // Rewraps in call order: (file id, or "" for the filesystem key; whether it succeeded).
  // The first rewrap of the file named by throttle_once_file (hex id) fails as unavailable.
  std::mutex log_mu;
  std::vector<std::pair<std::string, bool>> rewrap_log;
  std::string throttle_once_file;

 private:
  std::unique_ptr<KeyProvider> inner_;
};

// A keyring vault whose provider counts.
struct CountedVault {
  testing::TempDir tmp;
  std::string backing = tmp.str("backing");
  KeyProviders providers{nullptr};
  CountingProvider* counter = nullptr;
  KeyringProvider* keyring = nullptr;

  CountedVault() {
    std::filesystem::create_directory(backing);
    std::vector<std::string> names = {"main"};
    auto kr = Keyring::create(tmp.str("keyring"), nullptr, Argon2Params{}, names);
    if (!kr.ok()) throw std::runtime_error(kr.status().message());
    auto inner = std::make_unique<KeyringProvider>(std::move(*kr));
    keyring = inner.get();
    auto c = std::make_unique<CountingProvider>(std::move(inner));
    counter = c.get();
    providers.add(std::move(c));
  }
  std::unique_ptr<Vault> init(KeyMode mode, uint64_t max_files = 10000) {
    InitOptions o;
    o.key_spec = "main";
    o.key_mode = mode;
    o.intermediate_max_files = max_files;
    (void)o.user_context.set("team", "storage");
    auto v = Vault::init(backing, providers, o);
    if (!v.ok()) throw std::runtime_error(v.status().message());
    return std::move(*v);
  }
  std::string path(int i) const { return backing + "/f" + std::to_string(i); }

  // `kmsfs keyring rotate main` and `kmsfs keyring disable main:N`, saved to the file
  // too: rotation re-reads the keyring, as a mount does.
  void rotate_key() { keyring_update([](Keyring& k) { return k.rotate("main").status(); }); }
  void disable_version(uint32_t v) {
    keyring_update([v](Keyring& k) { return k.set_state("main", v, KeyState::kDisabled); });
  }

 private:
  void keyring_update(const std::function<Status(Keyring&)>& change) {
    Status s = keyring->update([&](Keyring& k) {
      Status c = change(k);
      return c.ok() ? k.save() : c;
    });
    if (!s.ok()) throw std::runtime_error(s.message());
  }
};

}  // namespace kmsfs::testing
