#pragma once

#include <filesystem>
#include <string>

#include "keys/keyring/keyring.h"
#include "keys/keyring/keyring_provider.h"
#include "vault/vault.h"

namespace kmsfs::testing {

// A fresh temporary directory, removed with everything in it at the end of the test.
struct TempDir {
  std::filesystem::path path;
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "kmsfs-test-XXXXXX").string();
    path = ::mkdtemp(tmpl.data());
  }
  ~TempDir() { std::filesystem::remove_all(path); }
  std::string str(const std::string& sub = "") const { return sub.empty() ? path.string() : (path / sub).string(); }
};

// An unsealed keyring with key "main" and a provider set that serves it.
struct KeyringVault {
  TempDir tmp;
  std::string keyring_path = tmp.str("keyring");
  std::string backing = tmp.str("backing");
  KeyProviders providers{nullptr};

  KeyringVault() {
    std::filesystem::create_directory(backing);
    std::vector<std::string> names = {"main"};
    auto kr = Keyring::create(keyring_path, nullptr, Argon2Params{}, names);
    if (!kr.ok()) throw std::runtime_error(kr.status().message());
    providers.add(std::make_unique<KeyringProvider>(std::move(*kr)));
  }
  KeyringProvider& keyring() { return static_cast<KeyringProvider&>(*providers.get(ProviderId::kKeyring).value()); }
};

}  // namespace kmsfs::testing
