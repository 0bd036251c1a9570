#include "format/layout.h"

#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

namespace kmsfs {
namespace {

const Layout kL{4096, 4096, 40};

TEST(Layout, BlockMathAtTheEdges) {
  const uint64_t B = 4096;
  EXPECT_EQ(kL.block_count(0), 1u);  // the empty final block
  EXPECT_EQ(kL.block_count(1), 1u);
  EXPECT_EQ(kL.block_count(B - 1), 1u);
  EXPECT_EQ(kL.block_count(B), 1u);
  EXPECT_EQ(kL.block_count(B + 1), 2u);
  EXPECT_EQ(kL.plain_len(0, 0), 0u);
  EXPECT_EQ(kL.plain_len(1, 0), 1u);
  EXPECT_EQ(kL.plain_len(B, 0), B);
  EXPECT_EQ(kL.plain_len(B + 1, 0), B);
  EXPECT_EQ(kL.plain_len(B + 1, 1), 1u);
  EXPECT_EQ(kL.ciphertext_size(0), 4096u + 40);
  EXPECT_EQ(kL.ciphertext_size(1), 4096u + 41);
  EXPECT_EQ(kL.ciphertext_size(B - 1), 4096u + B - 1 + 40);
  EXPECT_EQ(kL.ciphertext_size(B), 4096u + B + 40);
  EXPECT_EQ(kL.ciphertext_size(B + 1), 4096u + (B + 40) + 1 + 40);
  // Past 4 GiB: 64-bit all the way.
  const uint64_t big = 5ull << 30;  // 5 GiB, block aligned
  EXPECT_EQ(kL.block_count(big), big / B);
  EXPECT_EQ(kL.block_offset(big / B), 4096 + (big / B) * (B + 40));
  EXPECT_EQ(kL.ciphertext_size(big + 3), 4096 + (big / B) * (B + 40) + 3 + 40);
  EXPECT_EQ(kL.plaintext_size(kL.ciphertext_size(big + 3)).plain_size, big + 3);
}

TEST(Layout, MalformedBackingSizes) {
  EXPECT_FALSE(kL.plaintext_size(0).well_formed);
  EXPECT_FALSE(kL.plaintext_size(4096).well_formed);        // header only: no final block
  EXPECT_FALSE(kL.plaintext_size(4096 + 39).well_formed);   // torn empty block
  EXPECT_TRUE(kL.plaintext_size(4096 + 40).well_formed);    // empty file
  // A full block followed by a tail no longer than the overhead.
  auto d = kL.plaintext_size(4096 + 4136 + 40);
  EXPECT_FALSE(d.well_formed);
  EXPECT_EQ(d.plain_size, 4096u);
  d = kL.plaintext_size(4096 + 4136 + 12);
  EXPECT_FALSE(d.well_formed);
  EXPECT_EQ(d.plain_size, 4096u);
}

RC_GTEST_PROP(Layout, CiphertextSizeRoundTrips, (uint64_t p, uint8_t bs_shift)) {
  Layout l{4096, 1ull << (10 + bs_shift % 11), 40};
  p %= (1ull << 50);
  auto d = l.plaintext_size(l.ciphertext_size(p));
  RC_ASSERT(d.well_formed);
  RC_ASSERT(d.plain_size == p);
}

}  // namespace
}  // namespace kmsfs
