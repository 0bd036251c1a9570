#include "crypto/random.h"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <set>

namespace kmsfs {
namespace {

TEST(Random, BytesAreNotConstant) {
  std::array<uint8_t, 32> a{}, b{};
  random_bytes(a);
  random_bytes(b);
  EXPECT_NE(a, b);
  random_bytes(MutableByteSpan());  // empty is a no-op
}

TEST(Random, U64Varies) {
  std::set<uint64_t> seen;
  for (int i = 0; i < 100; ++i) seen.insert(random_u64());
  EXPECT_GT(seen.size(), 95u);
}

TEST(Random, UniformStaysInRange) {
  for (uint64_t bound : {uint64_t{1}, uint64_t{2}, uint64_t{7}, uint64_t{1} << 32,
                         (uint64_t{1} << 32) + 1, (uint64_t{1} << 63) + 12345,
                         ~uint64_t{0}}) {
    for (int i = 0; i < 200; ++i) ASSERT_LT(random_uniform(bound), bound) << bound;
  }
  EXPECT_EQ(random_uniform(1), 0u);
}

TEST(Random, UniformLargeBoundHitsBothHalves) {
  // A bound above 2^32 must use all 64 bits, not randombytes_uniform's 32.
  const uint64_t bound = (uint64_t{1} << 40) + 3;
  int high = 0;
  for (int i = 0; i < 1000; ++i) high += random_uniform(bound) >= bound / 2;
  EXPECT_GT(high, 400);
  EXPECT_LT(high, 600);
}

TEST(Random, UniformSmallBoundCoversAllValues) {
  std::set<uint64_t> seen;
  for (int i = 0; i < 1000; ++i) seen.insert(random_uniform(6));
  EXPECT_EQ(seen.size(), 6u);
}

TEST(RandomNonce, DistinctAcrossManyCallsAndRefills) {
  std::set<std::array<uint8_t, 24>> seen;
  for (int i = 0; i < 2000; ++i) {  // > 10 buffer refills
    std::array<uint8_t, 24> n{};
    random_nonce(n);
    EXPECT_TRUE(seen.insert(n).second);
  }
  std::array<uint8_t, 2048> big{};  // larger than the buffer serves: straight through
  random_nonce(big);
  EXPECT_NE(big, (std::array<uint8_t, 2048>{}));
}

// A forked child must not replay the parent's buffered nonces: that would reuse nonces
// under the same key in two processes.
TEST(RandomNonce, ForkedChildDoesNotReuseParentBuffer) {
  std::array<uint8_t, 24> warm{};
  random_nonce(warm);  // the buffer now holds unused bytes that the child inherits
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    std::array<uint8_t, 24> n{};
    random_nonce(n);
    const bool ok = write(fds[1], n.data(), n.size()) == ssize_t(n.size());
    _exit(ok ? 0 : 1);
  }
  close(fds[1]);
  std::array<uint8_t, 24> child{}, parent{};
  ASSERT_EQ(read(fds[0], child.data(), child.size()), ssize_t(child.size()));
  close(fds[0]);
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  random_nonce(parent);
  EXPECT_NE(child, parent);
}

}  // namespace
}  // namespace kmsfs
