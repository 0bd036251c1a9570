#include "crypto/secure_buffer.h"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <vector>

#include "vm_flags.h"

namespace kmsfs {
namespace {

bool all_zero(ByteSpan b) {
  for (uint8_t v : b)
    if (v != 0) return false;
  return true;
}

TEST(SecureBuffer, DefaultIsEmpty) {
  SecureBuffer b;
  EXPECT_TRUE(b.empty());
  EXPECT_EQ(b.size(), 0u);
  EXPECT_EQ(b.data(), nullptr);
  SecureBuffer z(0);
  EXPECT_TRUE(z.empty());
}

TEST(SecureBuffer, ZeroFilledForSlabAndLargeSizes) {
  for (size_t n : {1u, 31u, 32u, 33u, 200u, 256u, 257u, 4096u, 100000u}) {
    SecureBuffer b(n);
    ASSERT_EQ(b.size(), n);
    ASSERT_NE(b.data(), nullptr);
    EXPECT_TRUE(all_zero(b.span())) << n;
    std::memset(b.data(), 0xab, n);  // the whole visible range is writable
  }
}

TEST(SecureBuffer, CopyOfAndClone) {
  const uint8_t src[] = {1, 2, 3, 4, 5};
  SecureBuffer a = SecureBuffer::copy_of(src);
  ASSERT_EQ(a.size(), sizeof src);
  EXPECT_EQ(std::memcmp(a.data(), src, sizeof src), 0);
  SecureBuffer c = a.clone();
  EXPECT_NE(c.data(), a.data());
  EXPECT_TRUE(ct_equal(a.span(), c.span()));
  c.data()[0] = 9;
  EXPECT_EQ(a.data()[0], 1);  // deep copy
}

TEST(SecureBuffer, MoveTransfersOwnership) {
  SecureBuffer a = SecureBuffer::copy_of(std::vector<uint8_t>(40, 7));
  const uint8_t* p = a.data();
  SecureBuffer b(std::move(a));
  EXPECT_EQ(b.data(), p);
  EXPECT_EQ(b.size(), 40u);
  EXPECT_EQ(a.data(), nullptr);  // NOLINT(bugprone-use-after-move): moved-from is defined empty
  EXPECT_TRUE(a.empty());

  SecureBuffer c(8);
  c = std::move(b);
  EXPECT_EQ(c.data(), p);
  EXPECT_EQ(c.size(), 40u);
  EXPECT_TRUE(b.empty());  // NOLINT(bugprone-use-after-move)

  SecureBuffer& self = c;
  c = std::move(self);  // self-move keeps the buffer
  EXPECT_EQ(c.data(), p);

  SecureBuffer large(5000);
  const uint8_t* lp = large.data();
  SecureBuffer moved(std::move(large));
  EXPECT_EQ(moved.data(), lp);
}

TEST(SecureBuffer, TruncateZeroesTail) {
  SecureBuffer b = SecureBuffer::copy_of(std::vector<uint8_t>(64, 0xee));
  b.truncate(10);
  EXPECT_EQ(b.size(), 10u);
  EXPECT_EQ(b.data()[9], 0xee);
  EXPECT_EQ(b.data()[10], 0);
  EXPECT_EQ(b.data()[63], 0);
  b.truncate(20);  // never grows
  EXPECT_EQ(b.size(), 10u);
}

TEST(SecureSlab, SlotIsZeroAfterDestruction) {
  const void* p = nullptr;
  {
    SecureBuffer b(48);
    std::memset(b.data(), 0x5a, b.size());
    p = b.data();
    EXPECT_FALSE(secure_slab_slot_is_zero(p, 48));
  }
  EXPECT_TRUE(secure_slab_slot_is_zero(p, 48));
}

TEST(SecureSlab, TruncatedBufferWipesWholeSlot) {
  const void* p = nullptr;
  {
    SecureBuffer b = SecureBuffer::copy_of(std::vector<uint8_t>(100, 0xff));
    b.truncate(1);
    b.data()[0] = 1;
    p = b.data();
  }
  EXPECT_TRUE(secure_slab_slot_is_zero(p, 100));
}

TEST(SecureSlab, UnknownPointerIsNotASlot) {
  int local = 0;
  EXPECT_FALSE(secure_slab_slot_is_zero(&local, sizeof local));
}

TEST(SecureSlab, FreedSlotIsReused) {
  const uint8_t* first = nullptr;
  {
    SecureBuffer b(24);
    first = b.data();
  }
  SecureBuffer again(30);  // same 32-byte class
  EXPECT_EQ(again.data(), first);
  EXPECT_TRUE(all_zero(again.span()));
}

TEST(SecureSlab, ManySmallBuffersShareFewChunks) {
  constexpr size_t kCount = 50000;
  const SecureSlabStats before = secure_slab_stats();
  {
    std::vector<SecureBuffer> bufs;
    bufs.reserve(kCount);
    for (size_t i = 0; i < kCount; ++i) bufs.emplace_back(32);
    const SecureSlabStats during = secure_slab_stats();
    EXPECT_EQ(during.slots_in_use, before.slots_in_use + kCount);
    EXPECT_GE(during.slots_total, during.slots_in_use);
    const size_t added = during.bytes_locked - before.bytes_locked;
    // 50,000 x 32 B = 1.6 MB of slots; one sodium_malloc each would lock >= 50,000 pages.
    EXPECT_LE(added, 2u * 1024 * 1024);
    EXPECT_LT(during.bytes_locked, kCount * 4096 / 50);
    EXPECT_LE(during.chunks - before.chunks, 26u);
  }
  const SecureSlabStats after = secure_slab_stats();
  EXPECT_EQ(after.slots_in_use, before.slots_in_use);
  // Chunks stay mapped and are reused: a second round needs no new ones.
  {
    std::vector<SecureBuffer> bufs;
    bufs.reserve(kCount);
    for (size_t i = 0; i < kCount; ++i) bufs.emplace_back(32);
    EXPECT_EQ(secure_slab_stats().chunks, after.chunks);
  }
}

TEST(SecureBuffer, IsLockedAndLeftOutOfCoreDumpsAlsoInAForkedChild) {
  for (size_t n : {32u, 1000u}) {  // a slab slot, and sodium_malloc
    SecureBuffer b(n);
    const std::string flags = vm_flags_of(b.data());
    if (kMlockWorks) {
      EXPECT_NE(flags.find(" lo "), std::string::npos) << n << ": " << flags;
    }
    EXPECT_NE(flags.find(" dd "), std::string::npos) << n << ": " << flags;
  }
  if (!kMlockWorks) GTEST_SKIP() << "mlock does nothing under AddressSanitizer";
  // `kmsfs mount` forks the daemon after reading a passphrase into a slab slot; the
  // daemon's keys then take slots of the same chunk.
  SecureBuffer before_fork(32);
  const pid_t child = fork();
  if (child == 0) {
    SecureBuffer key(32);
    _exit(vm_flags_of(before_fork.data()).find(" lo ") != std::string::npos &&
                  vm_flags_of(key.data()).find(" lo ") != std::string::npos
              ? 0
              : 1);
  }
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "the child's slab chunk is not locked";
}

TEST(SecureMemory, CtEqual) {
  const uint8_t a[] = {1, 2, 3}, b[] = {1, 2, 3}, c[] = {1, 2, 4};
  EXPECT_TRUE(ct_equal(a, b));
  EXPECT_FALSE(ct_equal(a, c));
  EXPECT_FALSE(ct_equal(ByteSpan(a, 2), ByteSpan(b, 3)));
  EXPECT_TRUE(ct_equal({}, {}));
}

TEST(SecureMemory, SecureZero) {
  uint8_t v[16];
  std::memset(v, 0xcc, sizeof v);
  secure_zero(v, sizeof v);
  EXPECT_TRUE(all_zero(v));
  secure_zero(nullptr, 0);
}

}  // namespace
}  // namespace kmsfs
