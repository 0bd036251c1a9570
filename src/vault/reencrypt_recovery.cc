#include "vault/reencrypt_recovery.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/dir_walk.h"
#include "base/path_safety.h"
#include "base/unique_fd.h"
#include "format/backing_file.h"
#include "format/header.h"
#include "format/reencrypt_journal.h"
#include "vault/config.h"
#include "vault/vault.h"

namespace kmsfs {

namespace {

// The backing file with this id: at the journaled path unless it was renamed, else
// wherever the tree has it. nullptr if it is gone (deleted: nothing to restore).
Result<std::shared_ptr<BackingFile>> find(const std::string& dir, const JournalEntry& e) {
  auto matches = [&](std::unique_ptr<PosixBackingFile> f) -> std::shared_ptr<BackingFile> {
    auto h = read_header(*f);
    if (!h.ok() || h->file_id != e.file_id) return nullptr;
    return std::shared_ptr<BackingFile>(std::move(f));
  };

  // The journaled path is a hint read from the backing directory: resolved only beneath
  // the vault, through no symlink, so a forged entry cannot point recovery at a file
  // anywhere else (another vault's file with a known id, say). Otherwise: the search.
  UniqueFd root(::open(dir.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!root.valid()) return Status::Io(errno, "vault directory " + dir);
  if (auto fd = open_beneath(root.get(), e.path, O_RDWR); fd.ok())
    if (auto f = matches(std::make_unique<PosixBackingFile>(std::move(*fd), dir + "/" + e.path))) return f;
  // Relative to the directories the walk holds: a deep file's path is longer than any
  // path syscall takes.
  std::shared_ptr<BackingFile> found;
  Status failed;
  DirWalkOptions o;
  o.skip_in_root = [](std::string_view name) { return is_vault_file_name(name); };
  RETURN_IF_ERROR(walk_dir_tree(
      dir, o,
      [&](const WalkEntry& w) {
        if (w.type != EntryType::kFile) return true;
        auto f = PosixBackingFile::open_at(w.dirfd, std::string(w.name), O_RDWR, dir + "/" + w.rel);
        if (f.ok()) found = matches(std::move(*f));
        return !found;
      },
      [&](const std::string& rel, const Status& s) {
        if (failed.ok()) failed = s.with_context("search " + dir + " for the journaled file: " + rel);
      }));
  if (found) return found;
  // A directory it could not read may hold the file: not "gone".
  if (!failed.ok()) return failed;
  return std::shared_ptr<BackingFile>();
}

}  // namespace

Result<std::string> recover_reencryption(const std::string& dir) {
  const std::string path = dir + "/" + kJournalFileName;
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0) return std::string();
  ASSIGN_OR_RETURN(ReencryptJournal journal, ReencryptJournal::open(path));
  ASSIGN_OR_RETURN(auto entry, journal.load());
  if (!entry) return std::string();
  const std::string id = to_hex(entry->file_id);
  ASSIGN_OR_RETURN(auto f, find(dir, *entry));
  if (!f) {
    RETURN_IF_ERROR(journal.clear());
    return "re-encryption journal: file " + id + " is gone; nothing to restore";
  }
  auto h = read_header(*f);
  if (!h.ok()) return h.status().with_context("re-encryption recovery of file " + id);
  const HeaderSlot& s = *h->slots[h->active_slot()];
  std::string done;
  if (s.reencrypt && sha256(s.reencrypt->wrapped_dek) == entry->next_wrap &&
      s.reencrypt->watermark == entry->from_block) {
    // The step never committed: its blocks may be torn. Put the old ones back.
    RETURN_IF_ERROR(f->write_at(entry->data, entry->offset));
    RETURN_IF_ERROR(f->sync(true));
    done = "re-encryption journal: restored blocks " + std::to_string(entry->from_block) + ".." +
           std::to_string(entry->to_block - 1) + " of " + f->name() + " (file " + id + ") after an interrupted step";
  }
  RETURN_IF_ERROR(journal.clear());
  return done;
}

}  // namespace kmsfs
