#include "trust_dir.h"

#include <stdlib.h>

#include "temp_dir.h"

namespace kmsfs::testing {

const std::string& private_trust_dir() {
  // Function-local: made on first use, removed by its destructor at exit.
  static const TempDir dir("kmsfs-trust");
  static const bool set = [] { return ::setenv("KMSFS_TRUST_DIR", dir.path().c_str(), 1) == 0; }();
  (void)set;
  return dir.path();
}

}  // namespace kmsfs::testing
