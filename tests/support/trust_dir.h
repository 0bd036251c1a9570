// Every test process gets its own kmsfs trust store (KMSFS_TRUST_DIR, a fresh private temp
// directory removed when the process exits), set before the first child is spawned: the
// commands a test runs (init, mount, cat, rotate...) then share one store, as one host
// would, and never read or write the developer's /var/lib/kmsfs/trust. ctest runs each
// test case in its own process, so no two tests see each other's records. A test that
// needs a second host passes its own KMSFS_TRUST_DIR in the child's environment.
#pragma once

#include <string>

namespace kmsfs::testing {

// Creates the directory and sets KMSFS_TRUST_DIR in this process on the first call.
const std::string& private_trust_dir();

}  // namespace kmsfs::testing
