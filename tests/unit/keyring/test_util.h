// Shared fixtures for the keyring tests: a private temp directory and small helpers.
#pragma once

#include <gtest/gtest.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <string>

#include "base/bytes.h"
#include "temp_dir.h"  // TempDir, shared with the other suites
#include "base/file_io.h"
#include "crypto/kdf.h"
#include "crypto/secure_buffer.h"

namespace kmsfs::testing {


inline SecureBuffer pass(std::string_view s) { return SecureBuffer::copy_of(as_bytes(s)); }

// The fast libsodium profile: tests derive many KEKs.
inline Argon2Params fast_kdf() {
  auto p = argon2_profile("interactive");
  EXPECT_TRUE(p.ok());
  return *p;
}

inline Bytes read_all(const std::string& path) {
  auto r = read_file(path, 16 << 20);
  EXPECT_TRUE(r.ok()) << r.status().to_string();
  return r.ok() ? *r : Bytes{};
}

// Plain write, no fsync: the corruption tests write thousands of variants.
inline void write_raw(const std::string& path, ByteSpan data) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  ASSERT_GE(fd, 0) << path;
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    ASSERT_GT(n, 0);
    done += static_cast<size_t>(n);
  }
  ::close(fd);
}

inline bool contains(ByteSpan hay, ByteSpan needle) {
  return std::search(hay.begin(), hay.end(), needle.begin(), needle.end()) != hay.end();
}

inline mode_t file_mode(const std::string& path) {
  struct stat st {};
  EXPECT_EQ(::stat(path.c_str(), &st), 0);
  return st.st_mode & 07777;
}

}  // namespace kmsfs::testing
