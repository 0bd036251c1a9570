#include "fs/inode_table.h"

#include "fs/fuse_api.h"

namespace kmsfs {

InodeTable::InodeTable(UniqueFd root_fd) {
  struct stat st {};
  ::fstat(root_fd.get(), &st);
  root_ = std::make_unique<Inode>(std::make_shared<const UniqueFd>(std::move(root_fd)), O_PATH, st.st_dev, st.st_ino,
                                  S_IFDIR);
  root_->nlookup = 2;  // never forgotten
}

Inode& InodeTable::get(uint64_t id) {
  if (id == FUSE_ROOT_ID) return *root_;
  return *reinterpret_cast<Inode*>(static_cast<uintptr_t>(id));
}

uint64_t InodeTable::id_of(const Inode& in) const {
  if (&in == root_.get()) return FUSE_ROOT_ID;
  return static_cast<uint64_t>(reinterpret_cast<uintptr_t>(&in));
}

Inode& InodeTable::acquire(std::shared_ptr<const UniqueFd> fd, int access, const struct stat& st, const Inode& parent,
                           std::string_view name) {
  if (st.st_dev == root_->dev && st.st_ino == root_->ino) return *root_;
  std::lock_guard lock(mu_);
  auto& slot = inodes_[Key{st.st_dev, st.st_ino}];
  if (!slot) {
    slot = std::make_unique<Inode>(std::move(fd), access, st.st_dev, st.st_ino, st.st_mode & S_IFMT);
    count_.store(inodes_.size(), std::memory_order_relaxed);
  }
  slot->nlookup++;
  slot->parent_dev = parent.dev;
  slot->parent_ino = parent.ino;
  slot->name.assign(name);
  return *slot;  // a surplus fd (inode already known) closes as `fd` goes out of scope
}

void InodeTable::forget(uint64_t id, uint64_t n) {
  if (id == FUSE_ROOT_ID) return;
  std::unique_ptr<Inode> doomed;  // destroyed after the lock is released
  {
    std::lock_guard lock(mu_);
    Inode& in = get(id);
    in.nlookup = in.nlookup > n ? in.nlookup - n : 0;
    if (in.nlookup == 0) {
      auto it = inodes_.find(Key{in.dev, in.ino});
      if (it != inodes_.end()) doomed = std::move(it->second), inodes_.erase(it);
      count_.store(inodes_.size(), std::memory_order_relaxed);
    }
  }
}

std::vector<std::pair<uint64_t, std::string>> InodeTable::evictable(size_t n) {
  std::vector<std::pair<uint64_t, std::string>> out;
  std::lock_guard lock(mu_);
  for (auto& [key, in] : inodes_) {
    if (out.size() >= n) break;
    if (in->name.empty()) continue;
    {
      std::lock_guard file_lock(in->mu);  // lock order: mu_ -> Inode::mu
      if (in->open_count > 0) continue;   // an open file's dentry is busy anyway
    }
    const uint64_t parent = parent_id_locked(*in);
    std::string name = std::move(in->name);
    in->name.clear();
    if (parent != 0) out.emplace_back(parent, std::move(name));
  }
  return out;
}

uint64_t InodeTable::parent_id_locked(const Inode& in) const {
  if (in.parent_dev == root_->dev && in.parent_ino == root_->ino) return FUSE_ROOT_ID;
  if (auto it = inodes_.find(Key{in.parent_dev, in.parent_ino}); it != inodes_.end() && it->second->type == S_IFDIR)
    return id_of(*it->second);
  return 0;
}

std::optional<std::pair<uint64_t, std::string>> InodeTable::entry_of(const Inode& in) const {
  std::lock_guard lock(mu_);
  if (in.name.empty()) return std::nullopt;
  const uint64_t parent = parent_id_locked(in);
  if (parent == 0) return std::nullopt;
  return std::make_pair(parent, in.name);
}

size_t InodeTable::size() const { return count_.load(std::memory_order_relaxed); }

}  // namespace kmsfs
