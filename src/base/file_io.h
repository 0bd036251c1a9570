// Whole-file reads and crash-atomic whole-file writes (temp + fsync + rename + fsync dir),
// used for the keyring and the filesystem config.
#pragma once

#include <sys/types.h>

#include <string>

#include "base/bytes.h"
#include "base/status.h"

namespace kmsfs {

// kNotFound if missing; kInvalidArgument if larger than max_size.
Result<Bytes> read_file(const std::string& path, size_t max_size);

// Writes `data` to a temporary file beside `path` (created 0600 or `mode`, O_EXCL),
// fsyncs it, renames it over `path` and fsyncs the directory, so a crash leaves either
// the old or the new file, never a torn one. With exclusive=true refuses to replace an
// existing file (kAlreadyExists), atomically (link(2) instead of rename(2)).
Status write_file_atomic(const std::string& path, ByteSpan data, mode_t mode, bool exclusive = false);

// The current path of an open fd (O_PATH included), from /proc, for messages only:
// "<fd N>" when it cannot be had, and the inode number when the path is too long.
std::string fd_path(int fd);

}  // namespace kmsfs
