#include "vault/open_files.h"

namespace kmsfs {

std::shared_ptr<CryptFile> OpenFiles::claim(std::unique_lock<std::mutex>& lock, const Key& k) {
  cv_.wait(lock, [&] {
    auto it = files_.find(k);
    return it == files_.end() || !it->second.busy;
  });
  Entry& e = files_[k];
  if (auto f = e.file.lock()) return f;
  e.busy = true;
  return nullptr;
}

void OpenFiles::release(const Key& k, std::shared_ptr<CryptFile> opened) {
  {
    std::lock_guard lock(mu_);
    auto it = files_.find(k);
    if (opened) {
      it->second.file = opened;
      it->second.busy = false;
    } else {
      files_.erase(it);
    }
    // Entries of closed files are dropped as they are met, so the map stays as large as
    // the set of open files.
    if (files_.size() > 64 && files_.size() % 64 == 0) {
      for (auto i = files_.begin(); i != files_.end();)
        i = !i->second.busy && i->second.file.expired() ? files_.erase(i) : std::next(i);
    }
  }
  cv_.notify_all();
}

Result<std::shared_ptr<CryptFile>> OpenFiles::get_or_open(dev_t dev, ino_t ino, const Opener& open) {
  const Key k{dev, ino};
  {
    std::unique_lock lock(mu_);
    if (auto f = claim(lock, k)) return f;
  }
  auto f = open();
  release(k, f.ok() ? *f : nullptr);
  return f;
}

Status OpenFiles::with_file(dev_t dev, ino_t ino, const std::function<Status(CryptFile*)>& fn) {
  const Key k{dev, ino};
  std::shared_ptr<CryptFile> f;
  {
    std::unique_lock lock(mu_);
    f = claim(lock, k);
  }
  if (f) return fn(f.get());
  Status s = fn(nullptr);
  release(k, nullptr);
  return s;
}

}  // namespace kmsfs
