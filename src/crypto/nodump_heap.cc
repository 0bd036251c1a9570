#include "crypto/nodump_heap.h"

#include <malloc.h>
#include <pthread.h>
#include <sodium.h>
#include <sys/mman.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <vector>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/lsan_interface.h>
#endif

namespace kmsfs {
namespace {

// One reservation, committed (and locked) a page at a time from the bottom: locked memory
// is scarce (RLIMIT_MEMLOCK is 8 MiB for a user without CAP_IPC_LOCK), so a size class
// takes a few pages, not a large chunk. 256 MiB of address space costs nothing until
// used; it bounds the heap far above what the cipher contexts of the key cache's 10,000
// default entries (about 2 KiB each) and libcurl's buffers need.
constexpr size_t kPage = 4096;
constexpr size_t kReserve = size_t{256} << 20;
constexpr size_t kPages = kReserve / kPage;

// Four size classes per doubling from 128 bytes up (at most 25 % slack), 16-byte steps
// below. A class's slots are carved from runs of pages holding at least four of them, so
// every slot is 16-byte aligned; larger requests get pages of their own.
constexpr std::array<uint32_t, 40> kClasses = {
    16,    32,    48,    64,    80,    96,    112,   128,   160,   192,   224,   256,   320,  384,
    448,   512,   640,   768,   896,   1024,  1280,  1536,  1792,  2048,  2560,  3072,  3584, 4096,
    5120,  6144,  7168,  8192,  10240, 12288, 14336, 16384, 20480, 24576, 28672, 32768};
constexpr uint16_t kNoClass = 0xffff;

int class_of(size_t n) noexcept {
  for (size_t i = 0; i < kClasses.size(); ++i)
    if (n <= kClasses[i]) return static_cast<int>(i);
  return -1;
}

class Heap {
 public:
  static Heap& get() {
    // Leaked on purpose: libraries free memory from their own static destructors, after
    // any static Heap would be gone.
    static Heap* h = new Heap();
    return *h;
  }

  bool contains(const void* p) const noexcept {
    const auto a = reinterpret_cast<uintptr_t>(p);
    return a >= base_ && a < base_ + kReserve && base_ != 0;
  }

  void* alloc(size_t n) noexcept {
    std::lock_guard<std::mutex> lock(mu_);
    if (broken_) return nullptr;
    const int c = class_of(n == 0 ? 1 : n);
    void* p = c >= 0 ? alloc_slot(c) : alloc_run((n + kPage - 1) / kPage);
    if (p != nullptr) ++allocations_;
    return p;
  }

  void free(void* p) noexcept {
    const size_t g = page_of(p);
    std::lock_guard<std::mutex> lock(mu_);
    --allocations_;
    if (classes_[g] != kNoClass) {
      const size_t size = kClasses[classes_[g]];
      // Wiped before it can be handed to anyone else; the link below is no secret.
      sodium_memzero(p, size);
      std::memcpy(p, &free_slots_[classes_[g]], sizeof(void*));
      free_slots_[classes_[g]] = p;
      in_use_ -= size;
    } else {
      const size_t pages = runs_[g];
      sodium_memzero(p, pages * kPage);
      free_runs_[pages].push_back(p);
      in_use_ -= pages * kPage;
    }
  }

  // The usable size of a block of this heap.
  size_t size_of(const void* p) const noexcept {
    const size_t g = page_of(p);
    std::lock_guard<std::mutex> lock(mu_);
    return classes_[g] != kNoClass ? kClasses[classes_[g]] : runs_[g] * kPage;
  }

  NoDumpHeapStats stats() const {
    std::lock_guard<std::mutex> lock(mu_);
    return {in_use_, committed_ * kPage, allocations_};
  }

 private:
  Heap() {
    void* m = mmap(nullptr, kReserve, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (m == MAP_FAILED) {
      broken_ = true;
      return;
    }
    // Set once on the whole reservation: the flag stays with every part of it that is
    // committed later. Without it the heap has no reason to exist, so refuse to serve.
    if (madvise(m, kReserve, MADV_DONTDUMP) != 0) {
      munmap(m, kReserve);
      broken_ = true;
      return;
    }
#if defined(__SANITIZE_ADDRESS__)
    // LeakSanitizer does not know this memory, so it would call everything that only
    // blocks here point to (OpenSSL's, libcurl's) leaked.
    __lsan_register_root_region(m, kReserve);
#endif
    classes_.assign(kPages, kNoClass);
    runs_.assign(kPages, 0);
    base_ = reinterpret_cast<uintptr_t>(m);
    // A fork()ed child (the daemon forks after start-up) inherits the pages but not their
    // locks; and mu_ must not be held by some other thread at the fork.
    pthread_atfork([] { get().mu_.lock(); }, [] { get().mu_.unlock(); },
                   [] {
                     get().relock_after_fork();
                     get().mu_.unlock();
                   });
  }

  size_t page_of(const void* p) const noexcept { return (reinterpret_cast<uintptr_t>(p) - base_) / kPage; }

  // Commits `n` pages from the bottom of the reservation; nullptr if they cannot be
  // locked. Caller holds mu_.
  void* commit(size_t n) noexcept {
    if (committed_ + n > kPages) return nullptr;
    auto* p = reinterpret_cast<void*>(base_ + committed_ * kPage);
    if (mprotect(p, n * kPage, PROT_READ | PROT_WRITE) != 0) return nullptr;
    if (mlock(p, n * kPage) != 0) {
      mprotect(p, n * kPage, PROT_NONE);
      return nullptr;
    }
    committed_ += n;
    return p;
  }

  void* alloc_slot(int c) noexcept {
    const size_t size = kClasses[c];
    if (free_slots_[c] == nullptr) {
      const size_t pages = (std::max(kPage, 4 * size) + kPage - 1) / kPage;
      auto* g = static_cast<uint8_t*>(commit(pages));
      if (g == nullptr) return nullptr;
      for (size_t i = 0; i < pages; ++i) classes_[page_of(g) + i] = static_cast<uint16_t>(c);
      // Highest slot pushed first, so the list hands them out in ascending order.
      for (size_t i = pages * kPage / size; i-- > 0;) {
        void* slot = g + i * size;
        std::memcpy(slot, &free_slots_[c], sizeof(void*));
        free_slots_[c] = slot;
      }
    }
    void* p = free_slots_[c];
    std::memcpy(&free_slots_[c], p, sizeof(void*));
    std::memset(p, 0, sizeof(void*));  // handed out all zero: the rest was wiped on free
    in_use_ += size;
    return p;
  }

  void* alloc_run(size_t pages) noexcept {
    void* p = nullptr;
    auto it = free_runs_.find(pages);
    if (it != free_runs_.end() && !it->second.empty()) {
      p = it->second.back();
      it->second.pop_back();
    } else {
      p = commit(pages);
      if (p == nullptr) return nullptr;
      runs_[page_of(p)] = pages;
    }
    in_use_ += pages * kPage;
    return p;
  }

  // In the child, with mu_ held since the fork.
  void relock_after_fork() noexcept {
    if (committed_ != 0 && mlock(reinterpret_cast<void*>(base_), committed_ * kPage) != 0) broken_ = true;
  }

  mutable std::mutex mu_;
  uintptr_t base_ = 0;
  bool broken_ = false;
  size_t committed_ = 0;  // pages
  size_t in_use_ = 0;
  size_t allocations_ = 0;
  std::array<void*, kClasses.size()> free_slots_{};
  std::vector<uint16_t> classes_;  // per page: its slot class, or kNoClass
  std::vector<size_t> runs_;       // per page that starts a run: its length
  std::map<size_t, std::vector<void*>> free_runs_;
};

}  // namespace

void* nodump_alloc(size_t n) noexcept { return Heap::get().alloc(n); }

void nodump_free(void* p) noexcept {
  if (p == nullptr) return;
  if (in_nodump_heap(p)) {
    Heap::get().free(p);
  } else {
    std::free(p);
  }
}

void* nodump_realloc(void* p, size_t n) noexcept {
  if (p == nullptr) return nodump_alloc(n);
  if (n == 0) {
    nodump_free(p);
    return nullptr;
  }
  const bool ours = in_nodump_heap(p);
  const size_t old = ours ? Heap::get().size_of(p) : malloc_usable_size(p);
  if (ours && n <= old) return p;
  void* q = nodump_alloc(n);
  if (q == nullptr) return nullptr;  // p stays valid, as realloc promises
  std::memcpy(q, p, std::min(old, n));
  // A malloc block moved in may have held the same secret: wipe it too.
  if (!ours) sodium_memzero(p, old);
  nodump_free(p);
  return q;
}

bool in_nodump_heap(const void* p) noexcept { return p != nullptr && Heap::get().contains(p); }

NoDumpHeapStats nodump_heap_stats() { return Heap::get().stats(); }

}  // namespace kmsfs
