// The directory half of file names: plaintext name -> backing entry and back, for the
// mount and for the offline tools alike. With encrypted names a name too long for the
// backing filesystem is stored as "kmsfs.ln.<hash>" with the full encrypted name in the
// side file "kmsfs.ln.<hash>.name" beside it (docs/FORMAT.md §11.4). Side files are
// deterministic (the same name always gives the same bytes), so creating one twice, or a
// sync tool copying one from another host, is harmless; an orphan is harmless too.
#pragma once

#include <array>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

#include "base/status.h"
#include "format/names.h"

namespace kmsfs {

class NameStore {
 public:
  // `names` null = plaintext names.
  explicit NameStore(const NameCipher* names) : names_(names) {}
  bool encrypted() const { return names_ != nullptr; }
  const NameCipher* cipher() const { return names_; }

  // The backing entry for a plaintext name. EPERM for names the vault reserves (its
  // config in the root, with plaintext names); ENAMETOOLONG / EINVAL as for any name.
  Result<BackingName> to_backing(std::string_view plain, bool in_root) const;

  // What a directory entry is called in the plaintext view: nullopt for the vault's own
  // files (config, side files, temporaries); kCorrupt for an entry whose name does not
  // decrypt (a sync tool's conflict copy, a tampered name, a long name without its side
  // file). `dirfd` is the directory (O_PATH is enough).
  Result<std::optional<std::string>> to_plain(int dirfd, std::string_view backing, bool in_root) const;

  // Before an entry is created or renamed to `b`: its side file exists, durably (temp
  // file, fsync, rename, fsync of the directory). No-op for short names.
  Status prepare(int dirfd, const BackingName& b) const;
  // After the entry `b` is gone: removes its side file, best effort.
  void forget(int dirfd, const BackingName& b) const;

  // Serialises prepare+create against remove+forget of the same long name, so a
  // concurrent unlink never deletes the side file a new entry needs. Holds nothing for
  // short names; takes two stripes in a fixed order for a rename.
  struct Guard {
    std::unique_lock<std::mutex> first, second;
  };
  [[nodiscard]] Guard guard(const BackingName& a, const BackingName* b = nullptr) const;

 private:
  const NameCipher* names_;
  mutable std::array<std::mutex, 64> stripes_;
};

}  // namespace kmsfs
