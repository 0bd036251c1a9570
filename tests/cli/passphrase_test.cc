// Sealed keyrings: the passphrase comes from a file, a command or the terminal, and never
// shows up in argv, output or errors.
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <thread>

#include "cli_fixture.h"

namespace kmsfs::testing {
namespace {

constexpr const char* kPassphrase = "Tr0ub4dor-and-3-horses";

class PassphraseTest : public CliTest {
 protected:
  void SetUp() override {
    write_file(p("pw"), std::string(kPassphrase) + "\n");
    write_file(p("wrong-pw"), "not the passphrase\n");
  }
  // Every run of a test goes through here: the passphrase must be in none of its argv,
  // stdout or stderr.
  ProcessResult run(std::vector<std::string> args, SpawnOptions opts = {}) {
    for (const auto& a : args) EXPECT_FALSE(contains(a, kPassphrase)) << "the test put the passphrase on argv";
    auto r = kmsfs(args, opts);
    EXPECT_FALSE(contains(r.out, kPassphrase)) << r.out;
    EXPECT_FALSE(contains(r.err, kPassphrase)) << r.err;
    return r;
  }
  void make_sealed_keyring() {
    auto r = run({"keyring", "create", "keyring", "--passphrase-file", "pw", "--kdf-profile", "interactive",
                  "--key", "main"});
    ASSERT_TRUE(Succeeded(r));
  }
};

TEST_F(PassphraseTest, SealedKeyringWithPassphraseFile) {
  ASSERT_NO_FATAL_FAILURE(make_sealed_keyring());
  struct stat st;
  ASSERT_EQ(::stat(p("keyring").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);

  auto list = run({"keyring", "list", "keyring"});
  ASSERT_TRUE(Succeeded(list));
  EXPECT_TRUE(contains(list.out, "sealed: yes (unverified)")) << list.out;
  list = run({"keyring", "list", "keyring", "--passphrase-file", "pw"});
  ASSERT_TRUE(Succeeded(list));
  EXPECT_TRUE(contains(list.out, "sealed: yes (verified)")) << list.out;

  ASSERT_EQ(::mkdir(p("vault").c_str(), 0755), 0);
  std::vector<std::string> init{"init", "vault", "--keyring", "keyring", "--key", "main", "--passphrase-file", "pw"};
  for (const auto& a : matrix_init_args()) init.push_back(a);
  ASSERT_TRUE(Succeeded(run(init)));
  const std::string data = random_bytes(100000, 3);
  write_file(p("plain"), data);
  // --backing-path: inspect below reads the backing file without any key material.
  ASSERT_TRUE(Succeeded(run({"encrypt-file", "--backing-path", "vault", "plain", "f.bin", "--passphrase-file", "pw"})));
  auto cat = run({"cat", "--backing-path", "vault/f.bin", "--passphrase-file", "pw"});
  ASSERT_TRUE(Succeeded(cat));
  EXPECT_TRUE(cat.out == data);
  auto inspect = run({"inspect", "--backing-path", "vault/f.bin", "--verify", "--passphrase-file", "pw"});
  ASSERT_TRUE(Succeeded(inspect));
  EXPECT_TRUE(contains(inspect.out, "authenticated: yes")) << inspect.out;
  // Without key material inspect never asks for a passphrase.
  inspect = run({"inspect", "--backing-path", "vault/f.bin"});
  ASSERT_TRUE(Succeeded(inspect));
  EXPECT_TRUE(contains(inspect.out, "authenticated: not checked")) << inspect.out;
}

TEST_F(PassphraseTest, SealedKeyringWithExtpass) {
  auto r = run({"keyring", "create", "keyring", "--extpass", "echo pw", "--kdf-profile", "interactive", "--key", "main"});
  ASSERT_TRUE(Succeeded(r));
  make_vault("vault", "keyring", {"--extpass", "echo pw"});
  write_file(p("plain"), "extpass data");
  ASSERT_TRUE(Succeeded(run({"encrypt-file", "vault", "plain", "f", "--extpass", "echo pw"})));
  auto cat = run({"cat", "vault/f", "--extpass", "echo pw"});
  ASSERT_TRUE(Succeeded(cat));
  EXPECT_EQ(cat.out, "extpass data");
  // The same passphrase from a file works too (first line, without its newline).
  write_file(p("pw2"), "pw\r\nignored second line\n");
  cat = run({"cat", "vault/f", "--passphrase-file", "pw2"});
  ASSERT_TRUE(Succeeded(cat));
  EXPECT_EQ(cat.out, "extpass data");
  // A failing command is reported by exit status, never by its command line.
  EXPECT_TRUE(FailedWith(run({"cat", "vault/f", "--extpass", "exit 3"}), kUnavailable, {"exited with status 3"}));
}

TEST_F(PassphraseTest, WrongPassphraseIsPermissionDenied) {
  ASSERT_NO_FATAL_FAILURE(make_sealed_keyring());
  make_vault("vault", "keyring", {"--passphrase-file", "pw"});
  write_file(p("plain"), "x");
  ASSERT_TRUE(Succeeded(run({"encrypt-file", "vault", "plain", "f", "--passphrase-file", "pw"})));
  EXPECT_TRUE(FailedWith(run({"cat", "vault/f", "--passphrase-file", "wrong-pw"}), kPermission,
                         {"cat: ", "wrong passphrase", "keyring"}));
  EXPECT_TRUE(FailedWith(run({"keyring", "add", "keyring", "other", "--passphrase-file", "wrong-pw"}), kPermission,
                         {"keyring add: ", "wrong passphrase"}));
  EXPECT_TRUE(FailedWith(run({"keyring", "list", "keyring", "--passphrase-file", "wrong-pw"}), kPermission,
                         {"wrong passphrase"}));
  EXPECT_TRUE(FailedWith(run({"inspect", "vault/f", "--verify", "--passphrase-file", "wrong-pw"}), kPermission,
                         {"wrong passphrase"}));
  EXPECT_TRUE(FailedWith(run({"cat", "vault/f", "--passphrase-file", "no-such-file"}), kNotFound,
                         {"passphrase file"}));
  EXPECT_TRUE(FailedWith(run({"cat", "vault/f", "--passphrase-file", "pw", "--extpass", "echo x"}), kUsage,
                         {"excludes"}));
}

TEST_F(PassphraseTest, NoTerminalAndNoPassphraseOptionIsAClearError) {
  // The child runs in its own session: there is no /dev/tty to prompt on.
  EXPECT_TRUE(FailedWith(run({"keyring", "create", "keyring", "--kdf-profile", "interactive"}), kUsage,
                         {"keyring create: ", "--passphrase-file"}));
  EXPECT_NE(::access(p("keyring").c_str(), F_OK), 0);
  ASSERT_NO_FATAL_FAILURE(make_sealed_keyring());
  make_vault("vault", "keyring", {"--passphrase-file", "pw"});
  write_file(p("plain"), "x");
  ASSERT_TRUE(Succeeded(run({"encrypt-file", "vault", "plain", "f", "--passphrase-file", "pw"})));
  EXPECT_TRUE(FailedWith(run({"cat", "vault/f"}), kUsage, {"cat: ", "--passphrase-file"}));
  EXPECT_TRUE(FailedWith(run({"keyring", "rotate", "keyring", "main"}), kUsage, {"--passphrase-file"}));
}

// With a terminal: `keyring create` asks twice, and other commands ask once, only for a
// sealed keyring. The child gets a pseudo-terminal as its /dev/tty.
TEST_F(PassphraseTest, PromptsOnTheTerminal) {
  SpawnOptions o;
  o.cwd = tmp_.path();
  o.pty = true;
  o.env.emplace_back("KMSFS_KEYRING", std::nullopt);
  {
    Subprocess create({KMSFS_BIN, "keyring", "create", "keyring", "--kdf-profile", "interactive", "--key", "main"}, o);
    std::string seen;
    ASSERT_TRUE(create.pty_expect("New passphrase for keyring keyring: ", &seen)) << seen;
    create.pty_type(std::string(kPassphrase) + "\n");
    ASSERT_TRUE(create.pty_expect("Repeat the passphrase: ", &seen)) << seen;
    EXPECT_FALSE(contains(seen, kPassphrase)) << "echo was on";
    create.pty_type(std::string(kPassphrase) + "\n");
    auto r = create.wait();
    ASSERT_TRUE(Succeeded(r));
  }
  // The passphrase typed is the one in the file.
  auto list = run({"keyring", "list", "keyring", "--passphrase-file", "pw"});
  ASSERT_TRUE(Succeeded(list));
  EXPECT_TRUE(contains(list.out, "sealed: yes (verified)")) << list.out;
  {
    Subprocess add({KMSFS_BIN, "keyring", "add", "keyring", "second"}, o);
    std::string seen;
    ASSERT_TRUE(add.pty_expect("Passphrase for keyring keyring: ", &seen)) << seen;
    add.pty_type(std::string(kPassphrase) + "\n");
    ASSERT_TRUE(Succeeded(add.wait()));
  }
  {
    Subprocess mismatch({KMSFS_BIN, "keyring", "create", "other", "--kdf-profile", "interactive"}, o);
    ASSERT_TRUE(mismatch.pty_expect("New passphrase"));
    mismatch.pty_type("one passphrase\n");
    ASSERT_TRUE(mismatch.pty_expect("Repeat the passphrase: "));
    mismatch.pty_type("another passphrase\n");
    EXPECT_TRUE(FailedWith(mismatch.wait(), kUsage, {"keyring create: ", "passphrases do not match"}));
    EXPECT_NE(::access(p("other").c_str(), F_OK), 0);
  }
  // An unsealed keyring never prompts, even with a terminal.
  make_plain_keyring("plain");
  Subprocess add({KMSFS_BIN, "keyring", "add", "plain", "k"}, o);
  ASSERT_TRUE(Succeeded(add.wait()));
}

TEST_F(PassphraseTest, PassphraseIsNotInProcCmdline) {
  ASSERT_NO_FATAL_FAILURE(make_sealed_keyring());
  // The passphrase command waits a little so the running process can be looked at.
  std::vector<std::string> argv{KMSFS_BIN, "keyring", "list", "keyring", "--extpass", "sleep 1; cat pw"};
  for (const auto& a : argv) ASSERT_FALSE(contains(a, kPassphrase));
  SpawnOptions o;
  o.cwd = tmp_.path();
  Subprocess proc(argv, o);
  std::string cmdline;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (std::chrono::steady_clock::now() < deadline) {
    std::ifstream f("/proc/" + std::to_string(proc.pid()) + "/cmdline", std::ios::binary);
    cmdline.assign(std::istreambuf_iterator<char>(f), {});
    if (contains(cmdline, "--extpass")) break;  // exec'd: this is kmsfs's own argv
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_TRUE(contains(cmdline, "--extpass")) << "never saw kmsfs's argv";
  EXPECT_FALSE(contains(cmdline, kPassphrase));
  auto r = proc.wait();
  ASSERT_TRUE(Succeeded(r));
  EXPECT_TRUE(contains(r.out, "sealed: yes (verified)")) << r.out;
  EXPECT_FALSE(contains(r.out, kPassphrase));
}

}  // namespace
}  // namespace kmsfs::testing
