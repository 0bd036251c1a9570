// A fresh directory per test, removed with its contents at the end of the test. Under
// $TMPDIR (or /tmp) unless a base is given; mount tests use /var/tmp, a disk filesystem
// with xattrs and fallocate.
#pragma once

#include <stdlib.h>

#include <cstdlib>

#include <filesystem>
#include <stdexcept>
#include <string>
#include <system_error>

namespace kmsfs::testing {

class TempDir {
 public:
  explicit TempDir(const std::string& prefix = "kmsfs-test", std::string base = "") {
    if (base.empty()) {
      const char* env = std::getenv("TMPDIR");
      base = env != nullptr && *env != '\0' ? env : "/tmp";
    }
    std::string tmpl = base + "/" + prefix + "-XXXXXX";
    if (!::mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
    // remove_all works by full paths: a tree deeper than PATH_MAX (the deep-tree tests)
    // is left to rm(1), which walks by descriptors. Never across a mount left behind.
    if (ec) {
      const std::string cmd = "rm -rf --one-file-system -- '" + path_ + "'";
      [[maybe_unused]] int rc = std::system(cmd.c_str());
    }
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  std::string operator/(const std::string& sub) const { return path_ + "/" + sub; }

 private:
  std::string path_;
};

}  // namespace kmsfs::testing
