// Zeroes the calling thread's vector registers (XMM/YMM 0-15, and ZMM 16-31 with
// AVX-512). A core records every thread's registers (NT_X86_XSTATE), and what a thread last
// copied or decoded stays in them while it waits: cores of a KMS-backed daemon held base64
// data keys in the registers of threads idle after parsing a KMS answer. Called after
// handling key material that a thread then leaves in its registers while it sleeps.
#pragma once

namespace kmsfs {

void clear_vector_registers() noexcept;

}  // namespace kmsfs
