// Keeps the dynamic linker's lazy resolver from copying key bytes onto thread stacks.
//
// The first call of a lazily bound function runs _dl_runtime_resolve, which saves every
// vector register (XSAVE) on the calling thread's stack; and a new thread starts with its
// creator's registers. A key copied through vector registers just before a thread starts
// (the key cache's threads start right after the name keys are derived; libfuse starts
// workers from workers that were just sealing) was found in those stacks, and so in cores
// (tests/integration/secrets_test.cc). Linking with -z now binds kmsfs's own calls
// eagerly, but every shared library keeps its own lazy bindings unless LD_BIND_NOW is set
// when the process starts.
#pragma once

namespace kmsfs {

// Unless LD_BIND_NOW is set, sets it and re-executes /proc/self/exe with the same argv
// (same pid, same open files), so every library is bound at load. In the re-executed
// image it removes the variable again, so programs kmsfs starts do not inherit it. If the
// re-exec fails (no /proc) it returns and kmsfs runs with lazy binding. Call first in the
// main of a long-lived process that holds keys (kmsfs mount); it costs one more exec.
void reexec_with_eager_binding(char** argv) noexcept;

}  // namespace kmsfs
