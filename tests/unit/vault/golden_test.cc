// Golden fixtures: vaults written by kmsfs 0.1.0 (format version 1) and committed under
// tests/fixtures/v1. Every later version must decrypt them byte for byte. Never
// regenerate them; a new format version adds tests/fixtures/vN beside them.
#include <gtest/gtest.h>

#include "crypto/kdf.h"
#include "keys/keyring/keyring_provider.h"
#include "keys/keyring/passphrase.h"
#include "vault/vault.h"

namespace kmsfs {
namespace {

const std::string kDir = std::string(KMSFS_SOURCE_DIR) + "/tests/fixtures/v1";

// The generator's plaintext (make_v1.sh): a SHA-256 chain seeded with n+1, cut to n bytes.
Bytes chain(size_t n) {
  Bytes out;
  Bytes c(8, 0);
  put_le64(c.data(), n + 1);
  while (out.size() < n) {
    Digest32 d = sha256(c);
    c.assign(d.begin(), d.end());
    out.insert(out.end(), d.begin(), d.end());
  }
  out.resize(n);
  return out;
}

Bytes read_plain(Vault& v, const std::string& name) {
  auto f = v.open_file(v.dir() + "/" + name, false);
  EXPECT_TRUE(f.ok()) << name << ": " << f.status().message();
  if (!f.ok()) return {};
  Bytes out((*f)->size());
  auto n = (*f)->read(out, 0);
  EXPECT_TRUE(n.ok()) << name << ": " << n.status().message();
  return out;
}

void check_vault(const std::string& vault, const std::string& keyring, bool sealed) {
  std::optional<SecureBuffer> pw;
  if (sealed) pw = *read_passphrase_file(kDir + "/passphrase");
  auto kp = KeyringProvider::open(kDir + "/" + keyring, pw ? &*pw : nullptr);
  ASSERT_TRUE(kp.ok()) << kp.status().message();
  KeyProviders providers(nullptr);
  providers.add(std::move(*kp));
  auto v = Vault::open_unanchored(kDir + "/" + vault, providers);
  ASSERT_TRUE(v.ok()) << vault << ": " << v.status().message();
  EXPECT_EQ(v->get()->config().user_context.get("app").value_or(""), "golden");
  const std::pair<const char*, size_t> files[] = {{"empty", 0},    {"one", 1},     {"b4095", 4095},
                                                  {"b4096", 4096}, {"b4097", 4097}, {"k100", 102400}};
  for (const auto& [name, size] : files) EXPECT_EQ(read_plain(**v, name), chain(size)) << vault << "/" << name;
}

TEST(GoldenV1, AesGcm4KiB) {
  check_vault("vault-aes-4k", "keyring", false);
  KeyProviders providers(nullptr);
  providers.add(std::move(*KeyringProvider::open(kDir + "/keyring", nullptr)));
  auto v = *Vault::open_unanchored(kDir + "/vault-aes-4k", providers);
  // The sparse file: "head" at 0, an authenticated 3 MiB hole, "tail" at 3 MiB.
  Bytes want(3 * 1024 * 1024 + 4, 0);
  std::copy_n("head", 4, want.begin());
  std::copy_n("tail", 4, want.end() - 4);
  EXPECT_EQ(read_plain(*v, "sparse"), want);
}

TEST(GoldenV1, XChaCha1KiB) { check_vault("vault-xchacha-1k", "keyring", false); }
TEST(GoldenV1, SealedKeyring) { check_vault("vault-sealed", "keyring-sealed", true); }

}  // namespace
}  // namespace kmsfs
