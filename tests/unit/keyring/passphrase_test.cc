#include "keys/keyring/passphrase.h"

#include <gtest/gtest.h>
#include <poll.h>
#include <pty.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <chrono>
#include <csignal>

#include "test_util.h"

namespace kmsfs {
namespace {

using testing::TempDir;

std::string str(const SecureBuffer& b) { return std::string(as_chars(b.span())); }

Result<SecureBuffer> from_file(const TempDir& dir, std::string_view content) {
  testing::write_raw(dir / "pw", as_bytes(content));
  return read_passphrase({PassphraseSource::Kind::kFile, dir / "pw"}, "", false);
}

TEST(PassphraseFile, FirstLineWithoutItsEnding) {
  TempDir dir;
  for (auto [content, want] : {std::pair{"secret\n", "secret"},
                               {"secret", "secret"},
                               {"secret\r\n", "secret"},
                               {"secret\r\nsecond line\r\n", "secret"},
                               {"se cret \t\nx", "se cret \t"},
                               {"a\n\n", "a"}}) {
    auto pw = from_file(dir, content);
    ASSERT_TRUE(pw.ok()) << pw.status().to_string();
    EXPECT_EQ(str(*pw), want);
  }
  std::string max(kMaxPassphraseSize, 'x');
  auto big = from_file(dir, max + "\r\n");
  ASSERT_TRUE(big.ok());
  EXPECT_EQ(big->size(), kMaxPassphraseSize);
  EXPECT_FALSE(from_file(dir, max + "x").ok());
}

TEST(PassphraseFile, EmptyIsRefused) {
  TempDir dir;
  for (const char* content : {"", "\n", "\r\n", "\nsecret\n"}) {
    auto pw = from_file(dir, content);
    ASSERT_FALSE(pw.ok()) << content;
    EXPECT_EQ(pw.status().code(), Code::kInvalidArgument);
    EXPECT_EQ(pw.status().message(), "passphrase file " + dir / "pw" + " is empty");
  }
}

TEST(PassphraseFile, MissingIsNotFound) {
  TempDir dir;
  auto pw = read_passphrase_file(dir / "nope");
  ASSERT_FALSE(pw.ok());
  EXPECT_EQ(pw.status().code(), Code::kNotFound);
}

Result<SecureBuffer> extpass(const std::string& cmd) {
  return read_passphrase({PassphraseSource::Kind::kExtpass, cmd}, "", false);
}

TEST(Extpass, FirstLineOfStdout) {
  auto pw = extpass("echo secret");
  ASSERT_TRUE(pw.ok()) << pw.status().to_string();
  EXPECT_EQ(str(*pw), "secret");
  auto two = extpass("printf 'one\\r\\ntwo\\n'");
  ASSERT_TRUE(two.ok());
  EXPECT_EQ(str(*two), "one");
  auto no_newline = extpass("printf abc");
  ASSERT_TRUE(no_newline.ok());
  EXPECT_EQ(str(*no_newline), "abc");
  // stderr is the user's, stdout ours.
  auto noisy = extpass("echo 'diagnostic' >&2; echo pw");
  ASSERT_TRUE(noisy.ok());
  EXPECT_EQ(str(*noisy), "pw");
}

TEST(Extpass, LotsOfOutputAfterTheFirstLineIsDrained) {
  // Without draining, the command would die of SIGPIPE and look like a failure.
  auto pw = extpass("echo pw; head -c 1000000 /dev/zero");
  ASSERT_TRUE(pw.ok()) << pw.status().to_string();
  EXPECT_EQ(str(*pw), "pw");
}

TEST(Extpass, FailureNamesTheExitStatusNotTheOutput) {
  auto pw = extpass("echo leaked-secret; exit 3");
  ASSERT_FALSE(pw.ok());
  EXPECT_EQ(pw.status().message(), "passphrase command (--extpass) exited with status 3");
  EXPECT_EQ(pw.status().message().find("leaked"), std::string::npos);
  auto plain = extpass("exit 3");
  ASSERT_FALSE(plain.ok());
  EXPECT_NE(plain.status().message().find("status 3"), std::string::npos);
  auto missing = extpass("/nonexistent/command-xyz 2>/dev/null");
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("status 127"), std::string::npos);
  auto killed = extpass("kill -TERM $$");
  ASSERT_FALSE(killed.ok());
  EXPECT_NE(killed.status().message().find("signal 15"), std::string::npos);
}

TEST(Extpass, EmptyOutputIsRefused) {
  for (const char* cmd : {"true", "echo", "printf '\\r\\n'"}) {
    auto pw = extpass(cmd);
    ASSERT_FALSE(pw.ok()) << cmd;
    EXPECT_EQ(pw.status().code(), Code::kInvalidArgument) << cmd;
    EXPECT_NE(pw.status().message().find("status 0"), std::string::npos);
  }
  auto long_line = extpass("head -c 5000 /dev/zero | tr '\\0' x");
  ASSERT_FALSE(long_line.ok());
  EXPECT_EQ(long_line.status().code(), Code::kInvalidArgument);
}

// --- The terminal prompt, driven through a pseudo-terminal. ---

struct PtyRun {
  std::string child_result;  // "OK:<passphrase>|echo=<0/1>" or "ERR:<message>|echo=<0/1>"
  std::string transcript;    // everything the child wrote to its terminal
};

// Runs prompt_passphrase in a child whose controlling terminal is a fresh pty. `script`
// says what to type after which prompt text appears.
PtyRun run_prompt(bool confirm, std::vector<std::pair<std::string, std::string>> script) {
  int result_pipe[2];
  EXPECT_EQ(::pipe(result_pipe), 0);
  int master = -1;
  pid_t pid = ::forkpty(&master, nullptr, nullptr, nullptr);
  EXPECT_GE(pid, 0);
  if (pid == 0) {
    ::close(result_pipe[0]);
    auto pw = prompt_passphrase("Passphrase: ", confirm);
    std::string out = pw.ok() ? "OK:" + str(*pw) : "ERR:" + pw.status().message();
    termios t{};
    ::tcgetattr(STDIN_FILENO, &t);
    out += (t.c_lflag & ECHO) ? "|echo=1" : "|echo=0";
    (void)!::write(result_pipe[1], out.data(), out.size());
    ::_exit(0);
  }
  ::close(result_pipe[1]);
  PtyRun run;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  auto read_some = [&]() -> bool {
    pollfd p{master, POLLIN, 0};
    if (::poll(&p, 1, 100) <= 0) return true;
    char buf[256];
    ssize_t n = ::read(master, buf, sizeof buf);
    if (n <= 0) return false;  // EIO once the child is gone
    run.transcript.append(buf, static_cast<size_t>(n));
    return true;
  };
  size_t seen = 0;
  bool typed_all = true;
  for (const auto& [wait_for, type] : script) {
    while (run.transcript.find(wait_for, seen) == std::string::npos &&
           std::chrono::steady_clock::now() < deadline) {
      if (!read_some()) break;
    }
    seen = run.transcript.find(wait_for, seen);
    if (seen == std::string::npos) {
      typed_all = false;
      break;
    }
    seen += wait_for.size();
    (void)!::write(master, type.data(), type.size());
  }
  if (!typed_all) ::kill(pid, SIGKILL);  // it would wait for input forever
  char buf[8192];
  ssize_t n;
  while ((n = ::read(result_pipe[0], buf, sizeof buf)) > 0) run.child_result.append(buf, size_t(n));
  for (;;) {  // what the child wrote after the last prompt (the newline after input)
    pollfd p{master, POLLIN, 0};
    if (::poll(&p, 1, 0) <= 0) break;
    n = ::read(master, buf, sizeof buf);
    if (n <= 0) break;
    run.transcript.append(buf, static_cast<size_t>(n));
  }
  int st = 0;
  ::waitpid(pid, &st, 0);
  ::close(result_pipe[0]);
  ::close(master);
  return run;
}

TEST(PassphrasePrompt, ReadsALineWithEchoOffAndRestoresTheTerminal) {
  PtyRun r = run_prompt(false, {{"Passphrase: ", "hunter2\n"}});
  EXPECT_EQ(r.child_result, "OK:hunter2|echo=1");
  EXPECT_EQ(r.transcript.find("hunter2"), std::string::npos) << r.transcript;
}

TEST(PassphrasePrompt, ConfirmTwice) {
  PtyRun ok = run_prompt(true, {{"Passphrase: ", "same\n"}, {"Repeat", "same\n"}});
  EXPECT_EQ(ok.child_result, "OK:same|echo=1");
  PtyRun bad = run_prompt(true, {{"Passphrase: ", "one\n"}, {"Repeat", "two\n"}});
  EXPECT_EQ(bad.child_result, "ERR:passphrases do not match|echo=1");
}

TEST(PassphrasePrompt, EmptyLineIsRefused) {
  PtyRun r = run_prompt(false, {{"Passphrase: ", "\n"}});
  EXPECT_EQ(r.child_result, "ERR:empty passphrase|echo=1");
}

TEST(PassphrasePrompt, NoTerminal) {
  int result_pipe[2];
  ASSERT_EQ(::pipe(result_pipe), 0);
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::setsid();  // a new session has no controlling terminal
    auto pw = read_passphrase({PassphraseSource::Kind::kPrompt, ""}, "Passphrase: ", true);
    std::string out = pw.ok() ? "OK" : std::string(code_name(pw.status().code())) + ":" +
                                           pw.status().message();
    (void)!::write(result_pipe[1], out.data(), out.size());
    ::_exit(0);
  }
  ::close(result_pipe[1]);
  std::string got;
  char buf[512];
  ssize_t n;
  while ((n = ::read(result_pipe[0], buf, sizeof buf)) > 0) got.append(buf, size_t(n));
  ::close(result_pipe[0]);
  int st = 0;
  ::waitpid(pid, &st, 0);
  EXPECT_EQ(got,
            "invalid argument:no terminal to ask for a passphrase: use --passphrase-file or "
            "--extpass");
}

}  // namespace
}  // namespace kmsfs
