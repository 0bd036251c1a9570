#include "cli_fixture.h"

#include <sys/stat.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <random>
#include <sstream>

namespace kmsfs::testing {

bool contains(std::string_view hay, std::string_view needle) {
  return hay.find(needle) != std::string_view::npos;
}

static std::string describe(const ProcessResult& r) {
  std::ostringstream s;
  s << "exit " << r.exit_code << (r.timed_out ? " (timed out)" : "") << "\n--- stderr ---\n"
    << r.err << "--- stdout (" << r.out.size() << " bytes) ---\n"
    << (r.out.size() > 2000 ? r.out.substr(0, 2000) + "..." : r.out);
  return s.str();
}

::testing::AssertionResult Succeeded(const ProcessResult& r) {
  if (r.exit_code == 0 && r.err.empty()) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "expected success, got " << describe(r);
}

::testing::AssertionResult FailedWith(const ProcessResult& r, int code,
                                      std::initializer_list<std::string_view> needles) {
  if (r.exit_code != code)
    return ::testing::AssertionFailure() << "expected exit " << code << ", got " << describe(r);
  const size_t newlines = static_cast<size_t>(std::count(r.err.begin(), r.err.end(), '\n'));
  if (newlines != 1 || r.err.back() != '\n' || r.err.rfind("kmsfs: ", 0) != 0)
    return ::testing::AssertionFailure() << "stderr is not one 'kmsfs: ...' line: " << describe(r);
  for (auto n : needles)
    if (!contains(r.err, n))
      return ::testing::AssertionFailure() << "stderr lacks '" << n << "': " << describe(r);
  return ::testing::AssertionSuccess();
}

std::string random_bytes(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::string s(n, '\0');
  for (auto& c : s) c = static_cast<char>(rng());
  return s;
}

void write_file(const std::string& path, std::string_view data) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(data.data(), static_cast<std::streamsize>(data.size()));
  if (!f) throw std::runtime_error("writing " + path);
}

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error("reading " + path);
  std::ostringstream s;
  s << f.rdbuf();
  return s.str();
}

void flip_bit(const std::string& path, uint64_t offset, int bit) {
  std::fstream f(path, std::ios::binary | std::ios::in | std::ios::out);
  f.seekg(static_cast<std::streamoff>(offset));
  char c = 0;
  f.get(c);
  c = static_cast<char>(c ^ (1 << bit));
  f.seekp(static_cast<std::streamoff>(offset));
  f.put(c);
  if (!f) throw std::runtime_error("flipping a bit of " + path);
}

ProcessResult CliTest::kmsfs(std::vector<std::string> args, SpawnOptions opts) const {
  args.insert(args.begin(), KMSFS_BIN);
  if (opts.cwd.empty()) opts.cwd = tmp_.path();
  bool env_keyring = false;
  for (const auto& [k, v] : opts.env) env_keyring |= k == "KMSFS_KEYRING";
  if (!env_keyring) opts.env.emplace_back("KMSFS_KEYRING", std::nullopt);
  return run_process(args, opts);
}

bool CliTest::matrix_encrypts_names() {
  const auto args = matrix_init_args();
  return std::find(args.begin(), args.end(), "--plaintext-names") == args.end();
}

std::vector<std::string> CliTest::matrix_init_args() {
  std::vector<std::string> out;
  const char* env = std::getenv("KMSFS_TEST_INIT_ARGS");
  if (env == nullptr) return out;
  std::istringstream s(env);
  for (std::string w; s >> w;) out.push_back(w);
  return out;
}

std::string CliTest::matrix_cipher() {
  auto args = matrix_init_args();
  for (size_t i = 0; i + 1 < args.size(); ++i)
    if (args[i] == "--cipher") return args[i + 1];
  return "aes-256-gcm";
}

void CliTest::make_plain_keyring(const std::string& keyring, std::vector<std::string> keys) {
  std::vector<std::string> args{"keyring", "create", keyring, "--no-passphrase"};
  for (const auto& k : keys) {
    args.push_back("--key");
    args.push_back(k);
  }
  auto r = kmsfs(args);
  ASSERT_TRUE(Succeeded(r));
  ASSERT_EQ(r.out, "");
}

std::string CliTest::make_vault(const std::string& vault, const std::string& keyring,
                                std::vector<std::string> extra) {
  ::mkdir(p(vault).c_str(), 0755);
  std::vector<std::string> args{"init", vault, "--keyring", keyring, "--key", "main"};
  args.insert(args.end(), extra.begin(), extra.end());
  for (const auto& a : matrix_init_args()) args.push_back(a);
  auto r = kmsfs(args);
  EXPECT_TRUE(Succeeded(r));
  return r.out;
}

void CliTest::encrypt(const std::string& vault, const std::string& dest, const std::string& data,
                      std::vector<std::string> extra) {
  const std::string plain = p("plain-" + std::to_string(std::hash<std::string>{}(dest)));
  write_file(plain, data);
  // Options first, then "--": an encrypted DEST name may begin with '-' (and "-h..." is --help).
  // --backing-path: these tests name and damage the backing file itself.
  std::vector<std::string> args{"encrypt-file", "--backing-path"};
  args.insert(args.end(), extra.begin(), extra.end());
  args.insert(args.end(), {"--", vault, plain, dest});
  auto r = kmsfs(args);
  ASSERT_TRUE(Succeeded(r));
  ASSERT_TRUE(contains(r.out, std::to_string(data.size()) + " bytes encrypted")) << r.out;
}

nlohmann::json CliTest::inspect_json(const std::string& file, std::vector<std::string> extra) {
  std::vector<std::string> args{"inspect", "--backing-path", file, "--json"};
  args.insert(args.end(), extra.begin(), extra.end());
  auto r = kmsfs(args);
  EXPECT_TRUE(Succeeded(r));
  auto j = nlohmann::json::parse(r.out, nullptr, /*allow_exceptions=*/false);
  EXPECT_FALSE(j.is_discarded()) << r.out;
  return j;
}

}  // namespace kmsfs::testing
