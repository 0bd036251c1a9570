// Where a keyring passphrase comes from: the terminal, a file, or a command (--extpass).
// The bytes only ever live in SecureBuffers; every intermediate buffer is wiped.
#pragma once

#include <string>
#include <string_view>

#include "base/status.h"
#include "crypto/secure_buffer.h"

namespace kmsfs {

// Longer than any passphrase a person types and than the tty line discipline's buffer.
constexpr size_t kMaxPassphraseSize = 4096;

struct PassphraseSource {
  enum class Kind { kPrompt, kFile, kExtpass };
  Kind kind = Kind::kPrompt;
  std::string arg;  // kFile: the path; kExtpass: a /bin/sh command line
};

// Dispatches on the kind. `prompt` and `confirm_twice` apply to kPrompt only.
Result<SecureBuffer> read_passphrase(const PassphraseSource& src, std::string_view prompt,
                                     bool confirm_twice);

// First line of the file, without its "\n" or "\r\n". kInvalidArgument if empty.
Result<SecureBuffer> read_passphrase_file(const std::string& path);
// First line of `/bin/sh -c command`'s stdout (stderr passes through). Errors name the
// exit status, never the output or the command line (which may embed the secret).
Result<SecureBuffer> run_extpass(const std::string& command);
// Reads a line from /dev/tty with echo off (restored on every path).
Result<SecureBuffer> prompt_passphrase(std::string_view prompt, bool confirm_twice);

}  // namespace kmsfs
