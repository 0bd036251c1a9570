// Issue 17, "Nothing lost under faults": a core dump of the daemon under load holds no key
// material, and no key reaches its log at any level.
//
// The daemon keeps itself non-dumpable (PR_SET_DUMPABLE 0, RLIMIT_CORE 0), but root's
// gcore attaches anyway (CAP_SYS_PTRACE), and a core_pattern pipe with
// fs.suid_dumpable=2 can still collect a crash. What protects keys then is that they live
// only in MADV_DONTDUMP memory, which the kernel and gdb both leave out of a core.
//
// Each test mounts a vault, runs writers, readers and name operations through the mount,
// takes a core of the live daemon with gcore in the middle of it, and searches the core
// for every key the test can work out independently (known_keys.h): the keyring key, the
// filesystem key, name keys, each file's DEK (and intermediate key), content key, MAC
// keys, the XAES subkey of every block on disk, AES key schedules, hex and base64
// spellings. The same patterns are searched in the daemon's *live* memory, where they must
// be found: that proves the search would see them, and that the core leaves them out
// because of where they live, not because the test computed the wrong bytes.
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <random>
#include <set>
#include <sstream>
#include <thread>
#include <utility>
#include <vector>

#include "core_scan.h"
#include "crypto/kdf.h"
#include "keys/keyring/keyring.h"
#include "keys/keyring/keyring_provider.h"
#include "kms_local.h"
#include "known_keys.h"
#include "mounted_vault.h"

namespace kmsfs::testing {
namespace {

constexpr int kFiles = 4;
constexpr size_t kFileSize = 2 << 20;

// Random reads and writes on a few files, and creates, renames, lists, symlinks and
// xattrs in a directory, until stopped: the daemon is busy in every key path when the
// core is taken.
class Load {
 public:
  explicit Load(const MountedVault& v) : v_(v) {
    ::mkdir(v.at("d").c_str(), 0755);
    for (int f = 0; f < kFiles; ++f) write_file(v.at("f" + std::to_string(f)), pattern(kFileSize, f + 1));
    if (::symlink("f0", v.at("d/link").c_str()) != 0) throw std::runtime_error("symlink failed");
    if (::setxattr(v.at("f0").c_str(), "user.note", "hello", 5, 0) != 0) throw std::runtime_error("setxattr failed");
    for (int f = 0; f < kFiles; ++f) threads_.emplace_back([this, f] { blocks(f); });
    threads_.emplace_back([this] { names(); });
  }
  ~Load() { close(); }

  // The threads end; the big files stay open (their keys stay in use) until destruction.
  void stop() {
    stop_ = true;
    for (auto& t : threads_) t.join();
    threads_.clear();
  }
  void close() {
    stop();
    for (int& fd : fds_)
      if (fd >= 0) ::close(std::exchange(fd, -1));
  }
  uint64_t ops() const { return ops_; }
  std::string error() const { return error_ ? "a load thread failed: " + std::string(strerror(error_)) : ""; }

 private:
  void blocks(int f) {
    const int fd = fds_[f] = ::open(v_.at("f" + std::to_string(f)).c_str(), O_RDWR | O_CLOEXEC);
    if (fd < 0) return fail(errno);
    std::mt19937_64 rng(f);
    std::string buf(64 << 10, 'x');
    for (uint64_t i = 0; !stop_; ++i) {
      const size_t len = 4096 * (1 + rng() % 16);
      const off_t off = static_cast<off_t>(rng() % (kFileSize - len));
      const ssize_t n = (i % 2) ? ::pwrite(fd, buf.data(), len, off) : ::pread(fd, buf.data(), len, off);
      if (n < 0 || (i % 64 == 63 && ::fdatasync(fd) != 0)) {
        fail(errno);
        break;
      }
      ++ops_;
    }
  }

  void names() {
    for (uint64_t i = 0; !stop_; ++i) {
      const std::string a = v_.at("d/n" + std::to_string(i)), b = v_.at("d/renamed" + std::to_string(i));
      write_file(a, "content " + std::to_string(i));
      if (::rename(a.c_str(), b.c_str()) != 0) return fail(errno);
      char target[64];
      if (::readlink(v_.at("d/link").c_str(), target, sizeof target) < 0) return fail(errno);
      char value[16];
      if (::getxattr(v_.at("f0").c_str(), "user.note", value, sizeof value) < 0) return fail(errno);
      std::error_code ec;
      for (const auto& e : std::filesystem::directory_iterator(v_.at("d"), ec)) (void)e;
      // Most go again: the test derives the keys of the ones left, one KMS call each.
      if (i % 8 != 0 && ::unlink(b.c_str()) != 0) return fail(errno);
      ++ops_;
    }
  }

  void fail(int e) {
    error_ = e;
    stop_ = true;
  }

  const MountedVault& v_;
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> ops_{0};
  std::atomic<int> error_{0};
  std::array<int, kFiles> fds_ = [] {
    std::array<int, kFiles> a;
    a.fill(-1);
    return a;
  }();
  std::vector<std::thread> threads_;
};

// "VmLck: 1234 kB" of a process: locked memory (keys, the no-dump heap), against
// RLIMIT_MEMLOCK (8 MiB by default for a user without CAP_IPC_LOCK).
std::string locked_memory(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(in, line);)
    if (line.starts_with("VmLck:")) return line.substr(6 + line.substr(6).find_first_not_of(" \t"));
  return "?";
}

std::set<std::string> categories(const std::vector<Hit>& hits) {
  std::set<std::string> out;
  for (const Hit& h : hits) out.insert(h.pattern->category);
  return out;
}

// One row per category: patterns searched, then hits in the core under load, the core
// after it, live memory under load, live memory after it.
std::string summary(const PatternSet& set, std::array<const std::vector<Hit>*, 4> columns) {
  std::map<std::string, std::array<size_t, 5>> rows;
  for (const Pattern& p : set.patterns()) ++rows[p.category][0];
  for (size_t c = 0; c < columns.size(); ++c)
    for (const Hit& h : *columns[c]) ++rows[h.pattern->category][c + 1];
  std::ostringstream out;
  out << "  category: patterns | hits in the core under load, after it | in live memory under load, after it\n";
  for (const auto& [c, r] : rows)
    out << "  " << c << ": " << r[0] << " | " << r[1] << ", " << r[2] << " | " << r[3] << ", " << r[4] << "\n";
  return out.str();
}

class Secrets : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::access("/usr/bin/gcore", X_OK) != 0) GTEST_SKIP() << "needs gdb's gcore (apt-get install gdb)";
    // The daemon's most verbose logging (spdlog's SPDLOG_LEVEL, read at mount).
    ::setenv("SPDLOG_LEVEL", "debug", 1);
  }
  void TearDown() override { ::unsetenv("SPDLOG_LEVEL"); }

  // Mounted, loaded, cored, searched. `must_be_live` are categories the live memory must
  // show (the positive control).
  void check(MountedVault& v, const TestUnwrap& unwrap, PatternSet base, const std::set<std::string>& must_be_live) {
    const pid_t pid = v.daemon_pid();
    auto t = std::chrono::steady_clock::now();
    std::ostringstream timing;
    auto phase = [&](const char* name) {
      const auto now = std::chrono::steady_clock::now();
      timing << " " << name << " " << std::chrono::duration_cast<std::chrono::milliseconds>(now - t).count() << " ms;";
      t = now;
    };
    Load load(v);
    std::this_thread::sleep_for(std::chrono::seconds(1));
    ASSERT_GT(load.ops(), 0u) << load.error();

    PatternSet statics = base;
    add_vault_keys(statics, v.backing(), unwrap, /*block_subkeys=*/false);
    const std::vector<MapsLine> maps = read_maps(pid);
    const uint64_t ops_before = load.ops();
    phase("load and key derivation");
    const std::string core = take_core(pid, v.tmp().path());
    phase("gcore");
    const std::vector<Hit> live = scan_live(pid, statics);
    phase("live scan");
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    EXPECT_GT(load.ops(), ops_before) << "the load stopped while the core was taken";
    load.stop();
    EXPECT_EQ(load.error(), "");
    phase("load stopped");

    // Now that the blocks are on disk: the XAES subkeys of their nonces too.
    PatternSet all = base;
    const VaultSecretCount n = add_vault_keys(all, v.backing(), unwrap, /*block_subkeys=*/true);
    phase("all keys derived");
    const std::vector<Hit> in_core = scan_core(core, all, maps);
    std::filesystem::remove(core);
    phase("core scan");
    // Quiet, the files still open: each pooled GCM context still holds the subkey of its
    // last message, whose nonce is now on disk, so a leak of those is certain to show.
    const std::vector<MapsLine> maps_after = read_maps(pid);
    const std::string core_after = take_core(pid, v.tmp().path());
    const std::vector<Hit> live_after = scan_live(pid, all);
    const std::vector<Hit> in_core_after = scan_core(core_after, all, maps_after);
    std::filesystem::remove(core_after);
    phase("second core and both scans");
    std::cout << "phases:" << timing.str() << "\n";
    std::cout << "searched " << all.size() << " patterns (" << n.files << " files, " << n.block_subkeys
              << " block subkeys); daemon's locked memory " << locked_memory(pid) << "\n"
              << summary(all, {&in_core, &in_core_after, &live, &live_after});

    const std::set<std::string> seen = categories(live);
    // What the vault has decides what must be found: no name keys with plaintext names; in
    // intermediate key mode the cache holds the intermediate key, and a DEK lives only
    // while it is derived; XChaCha20 files have no per-block subkeys (XAES keeps the last
    // one in each pooled GCM context).
    std::set<std::string> searched;
    for (const Pattern& p : all.patterns()) searched.insert(p.category);
    const bool names_encrypted = searched.count("name key") != 0;
    const bool intermediate = searched.count("intermediate key") != 0;
    for (std::string c : must_be_live) {
      if (c == "name key schedule" && !names_encrypted) continue;
      if (c == "DEK" && intermediate) c = "intermediate key";
      EXPECT_TRUE(seen.count(c)) << "positive control: no " << c << " found in the live daemon's memory, so the "
                                 << "search cannot be trusted to see one in the core";
    }
    if (n.block_subkeys > 0) {
      EXPECT_TRUE(categories(live_after).count("block subkey"))
          << "positive control: no XAES block subkey in the live daemon's memory after the load";
    }
    EXPECT_TRUE(in_core.empty()) << "key material in a core of the daemon under load:\n" << describe(in_core);
    EXPECT_TRUE(in_core_after.empty()) << "key material in a core of the daemon after the load:\n"
                                       << describe(in_core_after);

    load.close();
    EXPECT_EQ(v.unmount(), 0);
    const std::string log = v.log();
    EXPECT_NE(log.find("debug:"), std::string::npos) << "the daemon did not log at debug level:\n" << log;
    const std::vector<Hit> in_log = scan_text(log, all);
    EXPECT_TRUE(in_log.empty()) << "key material in the daemon's log:\n" << describe(in_log);
  }
};

// The keys of a keyring vault, with its keyring key and that key's wrap key as the base.
class SecretsKeyring : public Secrets {
 protected:
  void run(VaultOptions opts) {
    MountedVault v(std::move(opts));
    auto keyring = KeyringProvider::open(v.keyring(), nullptr);
    ASSERT_TRUE(keyring.ok()) << keyring.status().message();
    KeyringProvider& provider = **keyring;
    TestUnwrap unwrap = [&](const KeyRef& ref, ByteSpan wrapped, const EncryptionContext& ctx) {
      Result<SecureBuffer> k = provider.unwrap(ref, wrapped, ctx);
      if (!k.ok()) throw std::runtime_error("keyring unwrap: " + k.status().message());
      return Bytes(k->span().begin(), k->span().end());
    };
    auto opened = Keyring::open(v.keyring(), nullptr);
    ASSERT_TRUE(opened.ok()) << opened.status().message();
    auto main = opened->lookup("main", 1);
    ASSERT_TRUE(main.ok()) << main.status().message();
    PatternSet base;
    add_key(base, "keyring key", "keyring key main:1", main->material, KeyUse::kOpaque);
    // The wrap key of that version (HKDF, FORMAT.md §7.2), an XChaCha20-Poly1305 key.
    Result<SecureBuffer> wrap_key = hkdf_key(main->material, {}, "kmsfs keyring wrap v1");
    ASSERT_TRUE(wrap_key.ok());
    add_key(base, "keyring wrap key", "wrap key of main:1", wrap_key->span(), KeyUse::kOpaque);
    check(v, unwrap, std::move(base), {"keyring key", "DEK", "content key", "name key schedule"});
  }
};

TEST_F(SecretsKeyring, AKeyringMountUnderLoadDumpsNoKey) { run({}); }

// XChaCha20-Poly1305 keys go through vector registers in libsodium, and libsodium clears
// none; a key copied just before a thread starts used to reach that thread's stack through
// the dynamic linker's lazy resolver (crypto/eager_binding.h).
TEST_F(SecretsKeyring, AnXChaChaMountUnderLoadDumpsNoKey) {
  const std::vector<std::string> m = matrix_init_args();
  if (std::find(m.begin(), m.end(), "--cipher") != m.end()) GTEST_SKIP() << "the option matrix picks the cipher";
  VaultOptions o;
  o.init_args = {"--cipher", "xchacha20-poly1305"};
  run(std::move(o));
}

// The AWS KMS provider over TLS: plaintext data keys arrive base64 in JSON answers through
// OpenSSL's record layer and libcurl's buffers.
class SecretsKms : public Secrets {
 protected:
  SecretsKms() : kms_(KMS_LOCAL_BIN, tls_options()) {}
  static KmsLocal::Options tls_options() {
    KmsLocal::Options o;
    o.tls = true;
    return o;
  }
  void SetUp() override {
    Secrets::SetUp();
    if (IsSkipped()) return;
    auto [status, body] = kms_.call("CreateKey", R"({"Description":"kmsfs secrets"})");
    ASSERT_EQ(status, 200) << body;
    const std::string key_id = nlohmann::json::parse(body)["KeyMetadata"]["KeyId"];
    ASSERT_EQ(kms_.call("CreateAlias", nlohmann::json{{"AliasName", "alias/kmsfs-secrets"}, {"TargetKeyId", key_id}}.dump())
                  .first,
              200);
    kms_.export_client_env();
  }
  // The test learns each plaintext the way the daemon does: Decrypt at the server (once
  // per wrapped key: the keys are derived twice).
  TestUnwrap unwrap() {
    return [this](const KeyRef& ref, ByteSpan wrapped, const EncryptionContext& ctx) {
      Bytes& known = plaintexts_[Bytes(wrapped.begin(), wrapped.end())];
      if (!known.empty()) return known;
      nlohmann::json context = nlohmann::json::object();
      for (const auto& [k, val] : ctx.pairs()) context[k] = val;
      auto [status, body] = kms_.call(
          "Decrypt", nlohmann::json{{"KeyId", ref.key_id}, {"CiphertextBlob", base64(wrapped)}, {"EncryptionContext", context}}
                         .dump());
      if (status != 200) throw std::runtime_error("kms-local Decrypt: " + body);
      known = unbase64(nlohmann::json::parse(body)["Plaintext"].get<std::string>());
      return known;
    };
  }
  VaultOptions options(std::vector<std::string> init_args = {}) {
    VaultOptions o;
    o.key_args = std::vector<std::string>{"--kms-key", "alias/kmsfs-secrets"};
    o.init_args = std::move(init_args);
    return o;
  }
  KmsLocal kms_;
  std::map<Bytes, Bytes> plaintexts_;  // wrapped -> plaintext
};

TEST_F(SecretsKms, APerFileKmsMountUnderLoadDumpsNoKey) {
  MountedVault v(options());
  check(v, unwrap(), PatternSet(), {"DEK", "content key", "name key schedule"});
}

TEST_F(SecretsKms, AnIntermediateKeyMountUnderLoadDumpsNoKey) {
  MountedVault v(options({"--key-mode", "intermediate"}));
  check(v, unwrap(), PatternSet(), {"intermediate key", "content key", "name key schedule"});
}

}  // namespace
}  // namespace kmsfs::testing
