#include "crypto/secure_buffer.h"

#include <pthread.h>
#include <sodium.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <iterator>
#include <map>
#include <mutex>
#include <new>
#include <vector>

#include "crypto/detail.h"
#include "crypto/nodump_heap.h"

namespace kmsfs {
namespace {

constexpr size_t kChunkSize = 64 * 1024;
constexpr std::array<size_t, 4> kSlotSizes = {32, 64, 128, 256};
constexpr size_t kMaxSlabSize = kSlotSizes.back();

int class_index(size_t n) noexcept {
  for (size_t i = 0; i < kSlotSizes.size(); ++i)
    if (n <= kSlotSizes[i]) return static_cast<int>(i);
  return -1;
}

class Slab;
Slab& slab();

// Fixed-size slots carved out of locked, non-dumpable 64 KiB mappings. Chunks are never
// unmapped: the working set of cached keys is bounded by the key cache, and keeping the
// mapping alive is what makes secure_slab_slot_is_zero a defined read.
class Slab {
 public:
  Slab() {
    // A fork()ed child inherits the chunks but not their locks: `kmsfs mount` reads the
    // passphrase into a SecureBuffer and then forks the daemon, whose keys would then
    // share an unlocked chunk with it. mu_ is held across the fork so the child gets a
    // consistent slab.
    pthread_atfork([] { slab().mu_.lock(); }, [] { slab().mu_.unlock(); },
                   [] {
                     slab().relock_after_fork();
                     slab().mu_.unlock();
                   });
  }

  uint8_t* allocate(size_t n, size_t& capacity) {
    const int ci = class_index(n);
    std::lock_guard<std::mutex> lock(mu_);
    if (broken_) throw std::bad_alloc();
    std::vector<uint8_t*>& free = free_[ci];
    if (free.empty()) add_chunk(ci);
    uint8_t* p = free.back();
    free.pop_back();
    ++in_use_;
    capacity = kSlotSizes[ci];
    return p;
  }

  void release(uint8_t* p, size_t capacity) noexcept {
    // Wipe before the slot becomes reachable by another owner.
    sodium_memzero(p, capacity);
    const int ci = class_index(capacity);
    std::lock_guard<std::mutex> lock(mu_);
    // Cannot reallocate: add_chunk reserved room for every slot of the class.
    free_[ci].push_back(p);
    --in_use_;
  }

  bool slot_is_zero(const void* p, size_t n) {
    const auto addr = reinterpret_cast<uintptr_t>(p);
    std::lock_guard<std::mutex> lock(mu_);
    auto it = chunks_.upper_bound(addr);
    if (it == chunks_.begin()) return false;
    --it;
    const uintptr_t base = it->first;
    const size_t slot = it->second;
    if (addr >= base + kChunkSize) return false;
    const uintptr_t start = base + (addr - base) / slot * slot;
    if (addr + n > start + slot) return false;
    const auto* s = reinterpret_cast<const uint8_t*>(start);
    uint8_t acc = 0;
    for (size_t i = 0; i < slot; ++i) acc |= s[i];
    return acc == 0;
  }

  SecureSlabStats stats() {
    std::lock_guard<std::mutex> lock(mu_);
    SecureSlabStats s;
    s.slots_in_use = in_use_;
    s.slots_total = total_;
    s.chunks = chunks_.size();
    s.bytes_locked = chunks_.size() * kChunkSize;
    return s;
  }

 private:
  // In the child, mu_ held since the fork. A chunk that cannot be locked again cannot be
  // used: allocations fail from then on (bad_alloc), as when a new chunk cannot be locked.
  void relock_after_fork() noexcept {
    for (const auto& [base, slot] : chunks_)
      if (mlock(reinterpret_cast<void*>(base), kChunkSize) != 0) broken_ = true;
  }

  void add_chunk(int ci) {
    void* m = mmap(nullptr, kChunkSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) throw std::bad_alloc();
    // Unlocked key memory could reach swap; refusing is the only honest option
    // (see the header). Any mlock failure, not just ENOMEM/EPERM, means "not locked".
    if (mlock(m, kChunkSize) != 0) {
      munmap(m, kChunkSize);
      throw std::bad_alloc();
    }
    // Best effort: old kernels lack MADV_DONTDUMP, and harden_process() also turns
    // core dumps off entirely.
    (void)madvise(m, kChunkSize, MADV_DONTDUMP);

    const size_t slot = kSlotSizes[ci];
    const size_t count = kChunkSize / slot;
    auto* base = static_cast<uint8_t*>(m);
    try {
      free_[ci].reserve(slots_of_class_[ci] + count);
      chunks_.emplace(reinterpret_cast<uintptr_t>(base), slot);
    } catch (...) {
      chunks_.erase(reinterpret_cast<uintptr_t>(base));
      munlock(m, kChunkSize);
      munmap(m, kChunkSize);
      throw;
    }
    // Highest address first so allocation hands out ascending addresses.
    for (size_t i = count; i-- > 0;) free_[ci].push_back(base + i * slot);
    slots_of_class_[ci] += count;
    total_ += count;
  }

  std::mutex mu_;
  std::array<std::vector<uint8_t*>, kSlotSizes.size()> free_;
  std::array<size_t, kSlotSizes.size()> slots_of_class_{};
  std::map<uintptr_t, size_t> chunks_;  // chunk base -> slot size
  size_t in_use_ = 0;
  size_t total_ = 0;
  bool broken_ = false;
};

Slab& slab() {
  // Leaked on purpose: SecureBuffers held by other statics may be destroyed after any
  // static Slab would be, and must still find their slab.
  static Slab* s = new Slab();
  return *s;
}

}  // namespace

SecureBuffer::SecureBuffer(size_t size) {
  if (size == 0) return;
  if (size <= kMaxSlabSize) {
    data_ = slab().allocate(size, capacity_);
    from_slab_ = true;
  } else {
    detail::ensure_sodium();
    auto* p = static_cast<uint8_t*>(sodium_malloc(size));
    if (p == nullptr) throw std::bad_alloc();
    // sodium_malloc ignores its own mlock failure; check it ourselves so large buffers
    // keep the same promise as slab ones. Re-locking locked pages is a no-op.
    if (mlock(p, size) != 0) {
      sodium_free(p);
      throw std::bad_alloc();
    }
    std::memset(p, 0, size);  // sodium_malloc fills with a canary pattern
    data_ = p;
    capacity_ = size;
  }
  size_ = size;
}

SecureBuffer SecureBuffer::copy_of(ByteSpan bytes) {
  SecureBuffer b(bytes.size());
  if (!bytes.empty()) std::memcpy(b.data_, bytes.data(), bytes.size());
  return b;
}

SecureBuffer::~SecureBuffer() { release(); }

SecureBuffer::SecureBuffer(SecureBuffer&& o) noexcept
    : data_(o.data_), size_(o.size_), capacity_(o.capacity_), from_slab_(o.from_slab_) {
  o.data_ = nullptr;
  o.size_ = o.capacity_ = 0;
  o.from_slab_ = false;
}

SecureBuffer& SecureBuffer::operator=(SecureBuffer&& o) noexcept {
  if (this != &o) {
    release();
    data_ = o.data_;
    size_ = o.size_;
    capacity_ = o.capacity_;
    from_slab_ = o.from_slab_;
    o.data_ = nullptr;
    o.size_ = o.capacity_ = 0;
    o.from_slab_ = false;
  }
  return *this;
}

void SecureBuffer::truncate(size_t new_size) noexcept {
  if (new_size >= size_) return;
  // The cut-off tail may hold secret bytes; it will not be reachable through span().
  sodium_memzero(data_ + new_size, size_ - new_size);
  size_ = new_size;
}

void SecureBuffer::release() noexcept {
  if (data_ == nullptr) return;
  if (from_slab_) {
    slab().release(data_, capacity_);
  } else {
    sodium_free(data_);  // zeroes, unlocks and unmaps
  }
  data_ = nullptr;
  size_ = capacity_ = 0;
  from_slab_ = false;
}

SecureSlabStats secure_slab_stats() { return slab().stats(); }

bool secure_slab_slot_is_zero(const void* p, size_t n) { return slab().slot_is_zero(p, n); }

Status harden_process() {
  const rlimit none{0, 0};
  if (setrlimit(RLIMIT_CORE, &none) != 0) return Status::Io(errno, "setrlimit(RLIMIT_CORE, 0)");
  if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) return Status::Io(errno, "prctl(PR_SET_DUMPABLE, 0)");
  // Neither stops root's gcore (CAP_SYS_PTRACE) or a core_pattern pipe with
  // fs.suid_dumpable=2; keeping key memory MADV_DONTDUMP does, OpenSSL's included.
  return route_openssl_to_nodump_heap();
}

bool ct_equal(ByteSpan a, ByteSpan b) noexcept {
  if (a.size() != b.size()) return false;
  if (a.empty()) return true;
  return sodium_memcmp(a.data(), b.data(), a.size()) == 0;
}

void secure_zero(void* p, size_t n) noexcept {
  if (p != nullptr && n != 0) sodium_memzero(p, n);
}

}  // namespace kmsfs
