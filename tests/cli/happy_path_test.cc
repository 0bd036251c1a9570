// The main job end to end: keyring, vault, encrypt-file, cat, inspect.
#include <sys/stat.h>

#include <regex>

#include <algorithm>

#include "cli_fixture.h"

namespace kmsfs::testing {
namespace {

using nlohmann::json;

// The value of "field: value" in a text report.
std::string field(const std::string& text, const std::string& name) {
  std::smatch m;
  if (std::regex_search(text, m, std::regex("(^|\n)" + name + ": ([^\n]*)"))) return m[2];
  return "";
}

class HappyPathTest : public CliTest {};

TEST_F(HappyPathTest, CreateInitEncryptCatInspect) {
  make_plain_keyring("keyring");
  const std::string init = make_vault("vault", "keyring", {"--context", "team=demo"});
  const std::string fs_id = field(init, "fs id");
  EXPECT_EQ(fs_id.size(), 32u) << init;
  EXPECT_EQ(field(init, "cipher"), matrix_cipher());
  EXPECT_TRUE(contains(field(init, "key"), "keyring:main@1")) << init;
  EXPECT_EQ(field(init, "config"), p("vault/kmsfs.conf"));

  const std::string big = random_bytes((1 << 20) + 12345, 1);
  write_file(p("big.plain"), big);
  write_file(p("empty.plain"), "");
  // --backing-path: this test reads and inspects the backing file by its name.
  auto enc = kmsfs({"encrypt-file", "--backing-path", "vault", "big.plain", "big.bin"});
  ASSERT_TRUE(Succeeded(enc));
  EXPECT_TRUE(contains(enc.out, std::to_string(big.size()) + " bytes encrypted")) << enc.out;
  ASSERT_TRUE(Succeeded(kmsfs({"encrypt-file", "--backing-path", "vault", "empty.plain", "empty.bin"})));

  // The backing file holds no plaintext.
  EXPECT_FALSE(contains(read_file(p("vault/big.bin")), big.substr(100000, 64)));

  auto cat = kmsfs({"cat", "--backing-path", "vault/big.bin"});
  ASSERT_TRUE(Succeeded(cat));
  EXPECT_TRUE(cat.out == big) << "cat gave " << cat.out.size() << " bytes";
  // A backing path read as a plaintext path: with encrypted names no such file is in the
  // plaintext view, and the error says how to ask for the backing file.
  if (matrix_encrypts_names()) {
    EXPECT_TRUE(FailedWith(kmsfs({"cat", "vault/big.bin"}), kNotFound, {"vault/big.bin", "add --backing-path"}));
    EXPECT_TRUE(FailedWith(kmsfs({"inspect", "vault/big.bin"}), kNotFound, {"add --backing-path"}));
  }
  EXPECT_TRUE(FailedWith(kmsfs({"cat", "--backing-path", "vault/nope.bin"}), kNotFound, {"vault/nope.bin", "no such backing file"}));
  auto cat_empty = kmsfs({"cat", "--backing-path", "vault/empty.bin"});
  ASSERT_TRUE(Succeeded(cat_empty));
  EXPECT_EQ(cat_empty.out, "");

  auto text = kmsfs({"inspect", "--backing-path", "vault/big.bin"});
  ASSERT_TRUE(Succeeded(text));
  const std::string file_id = field(text.out, "file id");
  EXPECT_EQ(file_id.size(), 32u) << text.out;
  EXPECT_TRUE(contains(enc.out, file_id)) << enc.out;
  EXPECT_EQ(field(text.out, "path"), "vault/big.bin");
  EXPECT_EQ(field(text.out, "format version"), "1");
  EXPECT_EQ(field(text.out, "cipher"), matrix_cipher());
  EXPECT_EQ(field(text.out, "header size"), "4096");
  EXPECT_EQ(field(text.out, "plaintext size"), std::to_string(big.size()));
  EXPECT_TRUE(contains(text.out, "context: kmsfs:fs-id=" + fs_id + "\n")) << text.out;
  EXPECT_TRUE(contains(text.out, "context: kmsfs:file-id=" + file_id + "\n")) << text.out;
  EXPECT_TRUE(contains(text.out, "context: team=demo\n")) << text.out;
  EXPECT_TRUE(contains(field(text.out, "slot 0"), "key id main, version 1")) << text.out;
  // A keyring wrap is 73 bytes; so is a DEK sealed under an intermediate key (matrix slice).
  const auto margs = matrix_init_args();
  const bool intermediate = std::find(margs.begin(), margs.end(), "intermediate") != margs.end();
  EXPECT_TRUE(contains(field(text.out, "slot 1"), intermediate ? "data key sealed under it (73 bytes)" : "wrapped key 73 bytes"))
      << text.out;
  EXPECT_EQ(field(text.out, "authenticated"), "not checked (no key given)");

  json j = inspect_json("vault/big.bin");
  EXPECT_EQ(j["file_id"], file_id);
  EXPECT_EQ(j["cipher"], matrix_cipher());
  EXPECT_EQ(j["format_version"], 1);
  EXPECT_EQ(j["plaintext_size"], big.size());
  EXPECT_EQ(j["size_well_formed"], true);
  EXPECT_EQ(j["context"]["kmsfs:fs-id"], fs_id);
  EXPECT_EQ(j["context"]["kmsfs:file-id"], file_id);
  EXPECT_EQ(j["context"]["team"], "demo");
  ASSERT_TRUE(j["active_slot"].is_number_integer());
  const json& slot = j["slots"][j["active_slot"].get<int>()];
  EXPECT_EQ(slot["valid"], true);
  EXPECT_EQ(slot["provider"], "keyring");
  EXPECT_EQ(slot["key_id"], "main");
  EXPECT_EQ(slot["version"], 1);
  EXPECT_EQ(slot["key_ref"], "keyring:main@1");
  EXPECT_TRUE(j["authenticated"].is_null());

  auto verified = kmsfs({"inspect", "--backing-path", "vault/big.bin", "--keyring", "keyring"});
  ASSERT_TRUE(Succeeded(verified));
  EXPECT_EQ(field(verified.out, "authenticated"), "yes");
  EXPECT_EQ(inspect_json("vault/empty.bin", {"--keyring", "keyring"})["authenticated"], true);
  EXPECT_EQ(inspect_json("vault/big.bin", {"--verify"})["authenticated"], true);
}

TEST_F(HappyPathTest, EncryptFileDestinationsAndMode) {
  make_plain_keyring("keyring");
  make_vault("vault", "keyring");
  write_file(p("plain"), "hello, vault\n");
  ASSERT_EQ(::chmod(p("plain").c_str(), 0640), 0);
  const bool encrypted_names = matrix_encrypts_names();

  // DEST is a plaintext path: parents are created, names encrypted as the mount does
  // (a long one out of line), and ls, cat and inspect find it by the same path.
  const std::string long_name(180, 'n');
  ASSERT_TRUE(Succeeded(kmsfs({"encrypt-file", "vault", "plain", "reports/q3/report.pdf"})));
  ASSERT_TRUE(Succeeded(kmsfs({"encrypt-file", "vault", "plain", "reports/" + long_name})));
  EXPECT_EQ(::access(p("vault/reports").c_str(), F_OK) == 0, !encrypted_names);
  auto ls = kmsfs({"ls", "vault/reports"});
  ASSERT_TRUE(Succeeded(ls));
  EXPECT_TRUE(contains(ls.out, "q3")) << ls.out;
  EXPECT_TRUE(contains(ls.out, long_name)) << ls.out;
  EXPECT_FALSE(contains(ls.out, "does not decrypt")) << ls.out;
  for (const std::string& f : std::vector<std::string>{"vault/reports/q3/report.pdf", "vault/reports/" + long_name}) {
    auto cat = kmsfs({"cat", f});
    ASSERT_TRUE(Succeeded(cat)) << f;
    EXPECT_EQ(cat.out, "hello, vault\n");
    auto inspect = kmsfs({"inspect", f});
    ASSERT_TRUE(Succeeded(inspect)) << f;
    EXPECT_TRUE(contains(inspect.out, "plaintext size: 13")) << inspect.out;
  }
  auto backing = kmsfs({"encrypt-path", "vault", "reports/q3/report.pdf"});
  ASSERT_TRUE(Succeeded(backing));
  struct stat st;
  ASSERT_EQ(::stat(p(backing.out.substr(0, backing.out.size() - 1)).c_str(), &st), 0) << backing.out;
  EXPECT_EQ(st.st_mode & 0777, 0640u);
  EXPECT_TRUE(FailedWith(kmsfs({"encrypt-file", "vault", "plain", "reports/q3/report.pdf"}), kExists,
                         {"encrypt-file: ", "reports/q3/report.pdf", "already exists", "--overwrite"}));
  // --overwrite replaces it whole (written beside it, renamed over it): no temporary left.
  write_file(p("plain2"), "revised numbers\n");
  auto over = kmsfs({"encrypt-file", "--overwrite", "vault", "plain2", "reports/q3/report.pdf"});
  ASSERT_TRUE(Succeeded(over));
  EXPECT_TRUE(contains(over.out, "replacing the old file")) << over.out;
  EXPECT_EQ(kmsfs({"cat", "vault/reports/q3/report.pdf"}).out, "revised numbers\n");
  auto listing = kmsfs({"ls", "vault/reports/q3"});
  EXPECT_EQ(listing.out, "report.pdf\n");
  EXPECT_TRUE(FailedWith(kmsfs({"encrypt-file", "vault", "plain", "../escape.txt"}), kUsage, {"'..'"}));
  EXPECT_NE(::access(p("escape.txt").c_str(), F_OK), 0);
  EXPECT_TRUE(FailedWith(kmsfs({"encrypt-file", "vault", "no-such-plain", "x.txt"}), kNotFound,
                         {"no-such-plain"}));

  // --backing-path: DEST is a backing path, absolute or relative to the vault, as is.
  ASSERT_EQ(::mkdir(p("vault/sub").c_str(), 0755), 0);
  ASSERT_TRUE(Succeeded(kmsfs({"encrypt-file", "--backing-path", "vault", "plain", "sub/rel.txt"})));
  ASSERT_TRUE(Succeeded(kmsfs({"encrypt-file", "--backing-path", p("vault"), p("plain"), p("vault/sub/abs.txt")})));
  ASSERT_EQ(::stat(p("vault/sub/rel.txt").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0640u);
  for (const char* f : {"vault/sub/rel.txt", "vault/sub/abs.txt"}) {
    auto cat = kmsfs({"cat", "--backing-path", f});
    ASSERT_TRUE(Succeeded(cat));
    EXPECT_EQ(cat.out, "hello, vault\n");
  }
  EXPECT_TRUE(FailedWith(kmsfs({"encrypt-file", "--backing-path", "vault", "plain", p("outside.txt")}), kUsage,
                         {"encrypt-file: ", "outside the vault"}));
  EXPECT_TRUE(FailedWith(kmsfs({"encrypt-file", "--backing-path", "vault", "plain", "../escape.txt"}), kUsage,
                         {"outside the vault"}));
  EXPECT_NE(::access(p("escape.txt").c_str(), F_OK), 0);
}

TEST_F(HappyPathTest, KeyringDiscovery) {
  make_plain_keyring("keyring");
  make_vault("vault", "keyring");
  ASSERT_EQ(::mkdir(p("vault/a").c_str(), 0755), 0);
  ASSERT_EQ(::mkdir(p("vault/a/b").c_str(), 0755), 0);
  encrypt("vault", "a/b/deep.txt", "deep data");

  // init stored the keyring as an absolute path.
  auto conf = nlohmann::json::parse(read_file(p("vault/kmsfs.conf")));
  EXPECT_EQ(conf["key"]["keyring"], p("keyring"));

  // cat walks up from the file to the vault's kmsfs.conf, from any working directory.
  SpawnOptions elsewhere;
  elsewhere.cwd = "/";
  auto cat = kmsfs({"cat", "--backing-path", p("vault/a/b/deep.txt")}, elsewhere);
  ASSERT_TRUE(Succeeded(cat));
  EXPECT_EQ(cat.out, "deep data");

  // A file copied out of the vault: no kmsfs.conf above it, so no trust record says which
  // key it may be under: the operator names it.
  write_file(p("copy.bin"), read_file(p("vault/a/b/deep.txt")));
  EXPECT_TRUE(FailedWith(kmsfs({"cat", "copy.bin"}), kUsage, {"cat: ", "copy.bin", "is not inside a vault", "--key"}));
  EXPECT_TRUE(FailedWith(kmsfs({"inspect", "copy.bin", "--verify"}), kUsage, {"is not inside a vault"}));
  EXPECT_TRUE(FailedWith(kmsfs({"cat", "copy.bin", "--key", "main"}), kUsage, {"no keyring: pass --keyring"}));
  EXPECT_TRUE(FailedWith(kmsfs({"cat", "copy.bin", "--keyring", "keyring", "--key", "other"}), kCorrupt,
                         {"names key keyring:main", "does not trust"}));
  SpawnOptions env;
  env.env.emplace_back("KMSFS_KEYRING", p("keyring"));
  cat = kmsfs({"cat", "copy.bin", "--key", "main"}, env);
  ASSERT_TRUE(Succeeded(cat));
  EXPECT_EQ(cat.out, "deep data");
  cat = kmsfs({"cat", "copy.bin", "--keyring", "keyring", "--key", "main"});
  ASSERT_TRUE(Succeeded(cat));
  EXPECT_EQ(cat.out, "deep data");

  // init needs --keyring (or KMSFS_KEYRING): it has no vault to take a hint from.
  ASSERT_EQ(::mkdir(p("vault2").c_str(), 0755), 0);
  EXPECT_TRUE(FailedWith(kmsfs({"init", "vault2", "--key", "main"}), kUsage, {"init: no keyring: pass --keyring"}));
  EXPECT_TRUE(Succeeded(kmsfs({"init", "vault2", "--key", "main"}, env)));
}

TEST_F(HappyPathTest, CatIntoClosedPipeExitsQuietly) {
  make_plain_keyring("keyring");
  make_vault("vault", "keyring");
  encrypt("vault", "big.bin", random_bytes(3 << 20, 2));
  SpawnOptions o;
  o.close_stdout_early = true;
  auto r = kmsfs({"cat", "--backing-path", "vault/big.bin"}, o);
  EXPECT_EQ(r.exit_code, kIo) << r.err;
  EXPECT_EQ(r.err, "");
}

}  // namespace
}  // namespace kmsfs::testing
