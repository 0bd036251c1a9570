#include "crypto/eager_binding.h"

#include <unistd.h>

#include <cstdlib>

namespace kmsfs {

void reexec_with_eager_binding(char** argv) noexcept {
  if (std::getenv("LD_BIND_NOW") != nullptr) {
    ::unsetenv("LD_BIND_NOW");  // the loader has read it; children need not
    return;
  }
  if (::setenv("LD_BIND_NOW", "1", 1) != 0) return;
  ::execv("/proc/self/exe", argv);
  ::unsetenv("LD_BIND_NOW");  // exec failed: go on as we are
}

}  // namespace kmsfs
