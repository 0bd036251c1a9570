#include "fsck/key_census.h"

#include <fcntl.h>
#include <unistd.h>

#include "format/backing_file.h"
#include "format/header.h"
#include "rotation/tree_walk.h"
#include "vault/config.h"

namespace kmsfs::fsck {

namespace {

enum class Verdict : uint8_t { kNotKmsfs, kUnder, kOther, kUnknown };

// The file `name` in `dirfd`, the directory the walk holds: a deep file's backing path
// is longer than any path syscall takes.
Verdict verdict(int dirfd, std::string_view name, const KeyRef& key) {
  auto f = PosixBackingFile::open_at(dirfd, std::string(name), O_RDONLY, std::string(name));
  if (!f.ok()) return Verdict::kUnknown;
  Bytes raw(header::kSize);
  auto n = (*f)->read_at(raw, 0);
  if (!n.ok()) return Verdict::kUnknown;
  raw.resize(*n);
  if (!has_kmsfs_magic(raw)) return Verdict::kNotKmsfs;
  auto h = parse_header(raw);
  if (!h.ok()) return Verdict::kUnknown;
  for (const auto& s : h->slots)
    if (s && s->key == key) return Verdict::kUnder;
  return Verdict::kOther;
}

}  // namespace

Result<KeyCensus> census_key(const std::string& dir, const KeyRef& key, size_t max_listed) {
  KeyCensus c;
  auto walk = [&](const std::string& root, const std::string& prefix, bool count_unknown) -> Status {
    Status failed;
    RETURN_IF_ERROR(walk_entries(
        root, "",
        [&](const WalkEntry& e) {
          if (e.type != EntryType::kFile) return true;
          const std::string rel = prefix + e.rel;
          switch (verdict(e.dirfd, e.name, key)) {
            case Verdict::kUnder:
              if (c.listed.size() < max_listed) c.listed.push_back(rel);
              ++c.files;
              break;
            case Verdict::kUnknown:
              if (!count_unknown) break;
              if (c.unknown_listed.size() < max_listed) c.unknown_listed.push_back(rel);
              ++c.unknown;
              break;
            case Verdict::kNotKmsfs:
            case Verdict::kOther: break;
          }
          return true;
        },
        // A directory that cannot be read may hold files under the key.
        [&](const std::string& rel, const Status& s) {
          if (failed.ok()) failed = s.with_context(root + "/" + rel);
        }));
    return failed;
  };
  RETURN_IF_ERROR(walk(dir, "", true));
  const std::string quarantine = dir + "/" + kQuarantineDirName;
  if (::access(quarantine.c_str(), F_OK) == 0) RETURN_IF_ERROR(walk(quarantine, std::string(kQuarantineDirName) + "/", false));
  return c;
}

}  // namespace kmsfs::fsck
