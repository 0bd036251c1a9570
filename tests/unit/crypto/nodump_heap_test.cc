// The no-dump heap and OpenSSL's routing into it. Its own binary with its own main: the
// routing must be installed before OpenSSL's first allocation, as kmsfs's main does it.
#include "crypto/nodump_heap.h"

#include <gtest/gtest.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "crypto/aead.h"
#include "crypto/kdf.h"
#include "crypto/secure_buffer.h"
#include "crypto/siv.h"
#include "vm_flags.h"

namespace kmsfs {
namespace {

bool all_zero(const void* p, size_t n) {
  const auto* b = static_cast<const uint8_t*>(p);
  for (size_t i = 0; i < n; ++i)
    if (b[i] != 0) return false;
  return true;
}

TEST(NoDumpHeap, HandsOutZeroedAlignedMemoryOfEverySize) {
  std::vector<void*> blocks;
  for (size_t n : {0u, 1u, 16u, 17u, 100u, 1000u, 4096u, 16385u, 32768u, 32769u, 70000u, 300000u}) {
    void* p = nodump_alloc(n);
    ASSERT_NE(p, nullptr) << n;
    EXPECT_TRUE(in_nodump_heap(p));
    EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % 16, 0u) << n;
    EXPECT_TRUE(all_zero(p, n)) << n;
    std::memset(p, 0xa5, n);
    blocks.push_back(p);
  }
  for (void* p : blocks) nodump_free(p);
}

TEST(NoDumpHeap, AFreedBlockIsWipedBeforeItIsHandedOutAgain) {
  for (size_t n : {48u, 5000u, 100000u}) {
    void* p = nodump_alloc(n);
    std::memset(p, 0x5a, n);
    nodump_free(p);
    void* q = nodump_alloc(n);  // the same slot or run: freed ones are reused first
    EXPECT_EQ(q, p) << n;
    EXPECT_TRUE(all_zero(q, n)) << n;
    nodump_free(q);
  }
}

TEST(NoDumpHeap, IsLockedAndLeftOutOfCoreDumps) {
  void* p = nodump_alloc(64);
  const std::string flags = vm_flags_of(p);
  EXPECT_NE(flags.find(" dd "), std::string::npos) << flags;
  if (kMlockWorks) {
    EXPECT_NE(flags.find(" lo "), std::string::npos) << flags;
  }
  nodump_free(p);
}

TEST(NoDumpHeap, StaysLockedInAForkedChild) {
  if (!kMlockWorks) GTEST_SKIP() << "mlock does nothing under AddressSanitizer";
  void* p = nodump_alloc(64);
  const pid_t child = fork();
  if (child == 0) _exit(vm_flags_of(p).find(" lo ") != std::string::npos ? 0 : 1);
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "the child's copy of the heap is not locked";
  nodump_free(p);
}

TEST(NoDumpHeap, ReallocKeepsTheBytesAndMovesMallocMemoryIn) {
  auto* p = static_cast<char*>(nodump_realloc(nullptr, 10));
  std::memcpy(p, "0123456789", 10);
  p = static_cast<char*>(nodump_realloc(p, 100000));
  ASSERT_TRUE(in_nodump_heap(p));
  EXPECT_EQ(std::string(p, 10), "0123456789");
  auto* m = static_cast<char*>(std::malloc(20));
  std::memcpy(m, "abcdefghij", 10);
  EXPECT_FALSE(in_nodump_heap(m));
  m = static_cast<char*>(nodump_realloc(m, 30));
  ASSERT_TRUE(in_nodump_heap(m));
  EXPECT_EQ(std::string(m, 10), "abcdefghij");
  EXPECT_EQ(nodump_realloc(p, 0), nullptr);
  nodump_free(m);
  nodump_free(std::malloc(8));  // not ours: handed to free()
}

TEST(NoDumpHeap, CountsWhatIsInUse) {
  const NoDumpHeapStats before = nodump_heap_stats();
  void* p = nodump_alloc(1000);
  const NoDumpHeapStats during = nodump_heap_stats();
  EXPECT_EQ(during.allocations, before.allocations + 1);
  EXPECT_EQ(during.bytes_in_use, before.bytes_in_use + 1024);
  EXPECT_GE(during.bytes_locked, during.bytes_in_use);
  nodump_free(p);
  EXPECT_EQ(nodump_heap_stats().allocations, before.allocations);
}

TEST(OpenSslRouting, KeyedCipherContextsLiveInTheNoDumpHeap) {
  ASSERT_TRUE(openssl_routed_to_nodump_heap());
  auto use_both = [] {
    const SecureBuffer key(32);
    auto aead = Aead::create(CipherId::kAes256Gcm, key.span());
    ASSERT_TRUE(aead.ok());
    const SecureBuffer name_key(64);
    ASSERT_TRUE(Siv::create(name_key.span()).ok());
  };
  // OpenSSL's first use of an algorithm fills process-wide caches for good; let that
  // happen before counting.
  use_both();
  const size_t before = nodump_heap_stats().allocations;
  {
    const SecureBuffer key(32);
    auto aead = Aead::create(CipherId::kAes256Gcm, key.span());
    ASSERT_TRUE(aead.ok());
    EXPECT_GT(nodump_heap_stats().allocations, before) << "XAES contexts were not allocated in the heap";
    std::vector<uint8_t> pt(100), out(pt.size() + kAeadOverhead), back(pt.size());
    ASSERT_TRUE((*aead)->seal(pt, {}, out).ok());
    ASSERT_TRUE((*aead)->open(out, {}, back).ok());

    const SecureBuffer name_key(64);
    auto siv = Siv::create(name_key.span());
    ASSERT_TRUE(siv.ok());
    const ByteSpan ad[] = {as_bytes("label")};
    auto sealed = siv->seal(ad, pt);
    ASSERT_TRUE(sealed.ok());
    ASSERT_TRUE(siv->open(ad, *sealed).ok());
  }
  EXPECT_EQ(nodump_heap_stats().allocations, before) << "contexts freed elsewhere must come back";
}

TEST(OpenSslRouting, OtherOpenSslAllocationsStayOnTheOrdinaryHeap) {
  const size_t before = nodump_heap_stats().allocations;
  NoDumpHeapStats during{};
  {
    (void)sha256(as_bytes("not a secret"));
    during = nodump_heap_stats();
  }
  EXPECT_EQ(during.allocations, before);
}

TEST(SecureMemory, HardenProcess) {
  rlimit saved{};
  ASSERT_EQ(getrlimit(RLIMIT_CORE, &saved), 0);
  const int dumpable = prctl(PR_GET_DUMPABLE, 0, 0, 0, 0);

  ASSERT_TRUE(harden_process().ok());
  ASSERT_TRUE(harden_process().ok());  // idempotent
  rlimit now{};
  ASSERT_EQ(getrlimit(RLIMIT_CORE, &now), 0);
  EXPECT_EQ(now.rlim_cur, 0u);
  EXPECT_EQ(now.rlim_max, 0u);
  EXPECT_EQ(prctl(PR_GET_DUMPABLE, 0, 0, 0, 0), 0);
  EXPECT_TRUE(openssl_routed_to_nodump_heap());

  // Undo what we may: LeakSanitizer needs to ptrace the process at exit. Only root can
  // raise a lowered hard limit, which is fine for a test.
  prctl(PR_SET_DUMPABLE, dumpable, 0, 0, 0);
  (void)setrlimit(RLIMIT_CORE, &saved);
}

}  // namespace
}  // namespace kmsfs

int main(int argc, char** argv) {
  // The hooks went in from .preinit_array, before anything could allocate through OpenSSL.
  if (!kmsfs::route_openssl_to_nodump_heap().ok()) return 2;
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
