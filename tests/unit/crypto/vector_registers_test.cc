#include "crypto/vector_registers.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>

namespace kmsfs {
namespace {

#if defined(__x86_64__)
TEST(VectorRegisters, ClearLeavesXmm0To15Zero) {
  alignas(16) uint8_t pattern[16];
  std::memset(pattern, 0xa5, sizeof pattern);
  alignas(16) uint8_t after[16][16];
  // Fill, clear, read back: nothing between the call and the reads uses vector registers.
  asm volatile("movdqa (%[p]), %%xmm0\n movdqa %%xmm0, %%xmm1\n movdqa %%xmm0, %%xmm7\n movdqa %%xmm0, %%xmm15\n"
               :
               : [p] "r"(pattern)
               : "memory", "xmm0", "xmm1", "xmm7", "xmm15");
  clear_vector_registers();
  asm volatile(
      "movdqu %%xmm0, 0(%[a])\n movdqu %%xmm1, 16(%[a])\n movdqu %%xmm2, 32(%[a])\n movdqu %%xmm3, 48(%[a])\n"
      "movdqu %%xmm4, 64(%[a])\n movdqu %%xmm5, 80(%[a])\n movdqu %%xmm6, 96(%[a])\n movdqu %%xmm7, 112(%[a])\n"
      "movdqu %%xmm8, 128(%[a])\n movdqu %%xmm9, 144(%[a])\n movdqu %%xmm10, 160(%[a])\n movdqu %%xmm11, 176(%[a])\n"
      "movdqu %%xmm12, 192(%[a])\n movdqu %%xmm13, 208(%[a])\n movdqu %%xmm14, 224(%[a])\n movdqu %%xmm15, 240(%[a])\n"
      :
      : [a] "r"(after)
      : "memory");
  for (int r = 0; r < 16; ++r)
    for (int b = 0; b < 16; ++b) EXPECT_EQ(after[r][b], 0) << "xmm" << r;
}
#endif

}  // namespace
}  // namespace kmsfs
