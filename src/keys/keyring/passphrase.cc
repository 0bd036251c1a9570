#include "keys/keyring/passphrase.h"

#include <fcntl.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <optional>

#include "base/file_io.h"
#include "base/unique_fd.h"
#include "keys/keyring/wipe_on_exit.h"

namespace kmsfs {

namespace {

// A passphrase file is one short line; this bounds the (wiped) read buffer.
constexpr size_t kMaxPassphraseFileSize = 64 * 1024;

// Length of the first line of `b`, without "\n" or "\r\n".
size_t first_line_length(ByteSpan b) {
  size_t n = 0;
  while (n < b.size() && b[n] != '\n') ++n;
  if (n > 0 && b[n - 1] == '\r') --n;
  return n;
}

// Collects the first line of a byte stream into locked memory. Bytes after the first
// newline are looked at only to be dropped.
class LineCollector {
 public:
  // Room for a maximal passphrase plus the "\r" of a CRLF ending.
  LineCollector() : buf_(kMaxPassphraseSize + 1) {}

  void feed(ByteSpan chunk) {
    for (uint8_t c : chunk) {
      if (done_) return;
      if (c == '\n') {
        done_ = true;
      } else if (len_ < buf_.size()) {
        buf_.data()[len_++] = c;
      } else {
        overflow_ = true;
      }
    }
  }
  bool done() const { return done_; }
  bool too_long() const { return overflow_ || stripped_length() > kMaxPassphraseSize; }

  // The line without a trailing "\r". Only meaningful if !too_long().
  SecureBuffer take() {
    buf_.truncate(stripped_length());
    return std::move(buf_);
  }

 private:
  size_t stripped_length() const {
    return len_ > 0 && buf_.data()[len_ - 1] == '\r' ? len_ - 1 : len_;
  }

  SecureBuffer buf_;
  size_t len_ = 0;
  bool done_ = false;
  bool overflow_ = false;
};

// A scratch buffer for read(2) that is wiped when it goes out of scope.
struct Scratch {
  uint8_t b[512];
  ~Scratch() { secure_zero(b, sizeof b); }
};

// Restores the terminal's attributes however the prompt ends.
class EchoOff {
 public:
  explicit EchoOff(int fd) : fd_(fd) {}
  Status engage() {
    if (::tcgetattr(fd_, &saved_) != 0) return Status::Io(errno, "tcgetattr /dev/tty");
    termios t = saved_;
    t.c_lflag &= ~static_cast<tcflag_t>(ECHO | ECHOE | ECHOK | ECHONL);
    t.c_lflag |= ICANON;
    // TCSAFLUSH drops type-ahead typed before the prompt, with echo still on.
    if (::tcsetattr(fd_, TCSAFLUSH, &t) != 0) return Status::Io(errno, "tcsetattr /dev/tty");
    engaged_ = true;
    return Status::Ok();
  }
  ~EchoOff() {
    if (engaged_) ::tcsetattr(fd_, TCSANOW, &saved_);
  }
  EchoOff(const EchoOff&) = delete;
  EchoOff& operator=(const EchoOff&) = delete;

 private:
  int fd_;
  termios saved_{};
  bool engaged_ = false;
};

void write_all(int fd, std::string_view s) {
  while (!s.empty()) {
    ssize_t n = ::write(fd, s.data(), s.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;  // the prompt is a courtesy; reading decides success
    s.remove_prefix(static_cast<size_t>(n));
  }
}

Status no_tty() {
  return Status(Code::kInvalidArgument,
                "no terminal to ask for a passphrase: use --passphrase-file or --extpass");
}

Result<SecureBuffer> prompt_once(int tty, std::string_view prompt) {
  EchoOff echo(tty);
  Status s = echo.engage();
  if (!s.ok()) return s.code() == Code::kIo && s.sys_errno() == ENOTTY ? no_tty() : s;
  write_all(tty, prompt);
  LineCollector line;
  Scratch scratch;
  bool eof = false;
  while (!line.done()) {
    ssize_t n = ::read(tty, scratch.b, sizeof scratch.b);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Status::Io(errno, "reading the passphrase from /dev/tty");
    }
    if (n == 0) {
      eof = true;
      break;
    }
    line.feed({scratch.b, static_cast<size_t>(n)});
  }
  write_all(tty, "\n");  // the user's Enter was not echoed
  if (line.too_long())
    return Status(Code::kInvalidArgument, "passphrase longer than 4096 bytes");
  SecureBuffer pw = line.take();
  if (pw.empty())
    return Status(Code::kInvalidArgument, eof ? "no passphrase entered" : "empty passphrase");
  return pw;
}

}  // namespace

Result<SecureBuffer> read_passphrase_file(const std::string& path) {
  auto read = read_file(path, kMaxPassphraseFileSize);
  if (!read.ok()) return read.status().with_context("passphrase file");
  Bytes bytes = std::move(read).value();
  WipeOnExit wipe(bytes);
  size_t n = first_line_length(bytes);
  if (n == 0) return Status(Code::kInvalidArgument, "passphrase file " + path + " is empty");
  if (n > kMaxPassphraseSize)
    return Status(Code::kInvalidArgument,
                  "passphrase file " + path + ": first line longer than 4096 bytes");
  return SecureBuffer::copy_of({bytes.data(), n});
}

Result<SecureBuffer> run_extpass(const std::string& command) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return Status::Io(errno, "pipe for --extpass");
  UniqueFd rd(fds[0]), wr(fds[1]);
  // Built before fork: the child may only make async-signal-safe calls.
  const char* argv[] = {"/bin/sh", "-c", command.c_str(), nullptr};
  pid_t pid = ::fork();
  if (pid < 0) return Status::Io(errno, "fork for --extpass");
  if (pid == 0) {
    if (wr.get() == STDOUT_FILENO) {
      ::fcntl(STDOUT_FILENO, F_SETFD, 0);
    } else if (::dup2(wr.get(), STDOUT_FILENO) < 0) {
      ::_exit(127);
    }
    ::execv("/bin/sh", const_cast<char* const*>(argv));
    ::_exit(127);
  }
  wr.reset();

  // Read to EOF (not just the first line) so the command never dies of SIGPIPE.
  LineCollector line;
  Scratch scratch;
  Status read_error;
  for (;;) {
    ssize_t n = ::read(rd.get(), scratch.b, sizeof scratch.b);
    if (n < 0) {
      if (errno == EINTR) continue;
      read_error = Status::Io(errno, "reading --extpass output");
      break;
    }
    if (n == 0) break;
    line.feed({scratch.b, static_cast<size_t>(n)});
  }
  rd.reset();
  int wstatus = 0;
  while (::waitpid(pid, &wstatus, 0) < 0) {
    if (errno != EINTR) return Status::Io(errno, "waiting for --extpass");
  }
  if (WIFSIGNALED(wstatus))
    return Status(Code::kUnavailable, "passphrase command (--extpass) was killed by signal " +
                                          std::to_string(WTERMSIG(wstatus)));
  if (!WIFEXITED(wstatus) || WEXITSTATUS(wstatus) != 0)
    return Status(Code::kUnavailable, "passphrase command (--extpass) exited with status " +
                                          std::to_string(WEXITSTATUS(wstatus)));
  if (!read_error.ok()) return read_error;
  if (line.too_long())
    return Status(Code::kInvalidArgument,
                  "passphrase command (--extpass) printed a line longer than 4096 bytes");
  SecureBuffer pw = line.take();
  if (pw.empty())
    return Status(Code::kInvalidArgument,
                  "passphrase command (--extpass) exited with status 0 but printed no passphrase");
  return pw;
}

Result<SecureBuffer> prompt_passphrase(std::string_view prompt, bool confirm_twice) {
  UniqueFd tty(::open("/dev/tty", O_RDWR | O_NOCTTY | O_CLOEXEC));
  if (!tty.valid()) return no_tty();
  ASSIGN_OR_RETURN(SecureBuffer first, prompt_once(tty.get(), prompt));
  if (!confirm_twice) return first;
  ASSIGN_OR_RETURN(SecureBuffer second, prompt_once(tty.get(), "Repeat the passphrase: "));
  if (!ct_equal(first.span(), second.span()))
    return Status(Code::kInvalidArgument, "passphrases do not match");
  return first;
}

Result<SecureBuffer> read_passphrase(const PassphraseSource& src, std::string_view prompt,
                                     bool confirm_twice) {
  switch (src.kind) {
    case PassphraseSource::Kind::kPrompt: return prompt_passphrase(prompt, confirm_twice);
    case PassphraseSource::Kind::kFile: return read_passphrase_file(src.arg);
    case PassphraseSource::Kind::kExtpass: return run_extpass(src.arg);
  }
  return Status(Code::kInternal, "unknown passphrase source");
}

}  // namespace kmsfs
