// The seam between plaintext names (what applications see) and backing names (what is on
// disk). This version stores names in plaintext; encrypted names plug in here later
// without touching the operations.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "base/status.h"
#include "fs/inode_table.h"

namespace kmsfs {

class NameTransform {
 public:
  virtual ~NameTransform() = default;
  // The backing name for `name` in directory `dir`. kInvalidArgument with ENAMETOOLONG
  // when it does not fit.
  virtual Result<std::string> to_backing(const Inode& dir, std::string_view name) const = 0;
  // The plaintext name of a backing entry, or nullopt if the entry is not shown (the vault
  // config, temporary files, names that do not decode).
  virtual std::optional<std::string> to_plain(const Inode& dir, std::string_view backing) const = 0;
  // Names applications may not create or see (the vault's own files).
  virtual bool reserved(const Inode& dir, std::string_view name) const = 0;
};

class PlaintextNames final : public NameTransform {
 public:
  explicit PlaintextNames(const Inode& root) : root_(root) {}
  Result<std::string> to_backing(const Inode& dir, std::string_view name) const override;
  std::optional<std::string> to_plain(const Inode& dir, std::string_view backing) const override;
  bool reserved(const Inode& dir, std::string_view name) const override;

 private:
  const Inode& root_;
};

}  // namespace kmsfs
