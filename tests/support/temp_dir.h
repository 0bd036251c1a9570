// A fresh directory per test, removed with its contents at the end of the test.
#pragma once

#include <stdlib.h>

#include <filesystem>
#include <string>

namespace kmsfs::testing {

class TempDir {
 public:
  explicit TempDir(const std::string& prefix = "kmsfs-test") {
    // Under /var/tmp, not /tmp: tests need a disk filesystem with xattrs and fallocate.
    std::string tmpl = "/var/tmp/" + prefix + "-XXXXXX";
    if (!::mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  std::string operator/(const std::string& sub) const { return path_ + "/" + sub; }

 private:
  std::string path_;
};

}  // namespace kmsfs::testing
