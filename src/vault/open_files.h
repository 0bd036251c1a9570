// One CryptFile per backing file across everything in a daemon that opens files: the
// FUSE layer and the rotation worker. A CryptFile keeps the header in memory and writes
// slots from it, so two of them on one file would undo each other's slot writes (a
// re-wrap reverted by a later sparse-range update). Keyed by the backing (dev, ino), so
// hard links share one entry.
#pragma once

#include <sys/types.h>

#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <utility>

#include "base/status.h"
#include "format/crypt_file.h"

namespace kmsfs {

class OpenFiles {
 public:
  using Opener = std::function<Result<std::shared_ptr<CryptFile>>()>;

  // The file's shared CryptFile, opening it with `open` if nobody has it open. Concurrent
  // first opens of one file wait for a single open (one DEK unwrap).
  Result<std::shared_ptr<CryptFile>> get_or_open(dev_t dev, ino_t ino, const Opener& open);

  // Runs fn with the open CryptFile of (dev, ino), or with nullptr if none is open; in
  // the latter case no open of that file starts until fn returns, so fn may rewrite the
  // header through a descriptor of its own.
  Status with_file(dev_t dev, ino_t ino, const std::function<Status(CryptFile*)>& fn);

 private:
  struct Entry {
    std::weak_ptr<CryptFile> file;
    bool busy = false;  // an open or a with_file(nullptr) is under way
  };
  using Key = std::pair<dev_t, ino_t>;
  // Waits until the entry is not busy; returns its live file or marks it busy.
  std::shared_ptr<CryptFile> claim(std::unique_lock<std::mutex>& lock, const Key& k);
  void release(const Key& k, std::shared_ptr<CryptFile> opened);

  std::mutex mu_;
  std::condition_variable cv_;
  std::map<Key, Entry> files_;
};

}  // namespace kmsfs
