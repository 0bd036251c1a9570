// Everything the CLI prints on stdout goes through here: raw write(2) on fd 1 with EINTR
// and short-write handling, so decrypted bytes and text never sit in a stdio buffer and a
// closed pipe (`kmsfs cat f | head`) is an ordinary Status (kIo, EPIPE) instead of a
// SIGPIPE death.
#pragma once

#include <string>
#include <string_view>

#include "base/bytes.h"
#include "base/status.h"

namespace kmsfs::cli {

// Writes all of `data` to `fd`. kIo with the errno on failure (EPIPE for a closed pipe).
Status write_all(int fd, ByteSpan data);
// write_all to stdout.
Status print(std::string_view text);
// True for the error a closed stdout pipe gives: the command then exits quietly.
bool is_broken_pipe(const Status& s) noexcept;
// "1.5 MiB": a byte count for people.
std::string human_bytes(double bytes);

}  // namespace kmsfs::cli
