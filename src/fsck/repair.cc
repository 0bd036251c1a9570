#include "fsck/repair.h"

#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include "base/path_safety.h"
#include "base/unique_fd.h"
#include "format/backing_file.h"
#include "format/names.h"
#include "format/slot_rewrap.h"
#include "format/reencrypt_journal.h"
#include "rotation/reencryptor.h"
#include "rotation/tree_walk.h"
#include "vault/config.h"
#include "vault/reencrypt_recovery.h"
#include "vault/vault.h"

namespace kmsfs::fsck {

namespace {

bool same_slots(const FileHeader& a, const FileHeader& b) {
  for (int i = 0; i < 2; ++i) {
    if (a.slots[i].has_value() != b.slots[i].has_value()) return false;
    if (a.slots[i] && (a.slots[i]->seq != b.slots[i]->seq || !(wrap_of(*a.slots[i]) == wrap_of(*b.slots[i]))))
      return false;
  }
  return true;
}

std::string parent_of(const std::string& rel) {
  const size_t slash = rel.rfind('/');
  return slash == std::string::npos ? "" : rel.substr(0, slash);
}

std::string base_of(const std::string& rel) {
  const size_t slash = rel.rfind('/');
  return slash == std::string::npos ? rel : rel.substr(slash + 1);
}

// Opens (creating what is missing) the directory `rel` beneath `root`, one component at
// a time relative to the last: quarantine mirrors the tree, so `rel` may be far longer
// than any path syscall takes.
Result<UniqueFd> mkdirs(int root, const std::string& shown, const std::string& rel) {
  UniqueFd dir(::fcntl(root, F_DUPFD_CLOEXEC, 0));
  if (!dir.valid()) return Status::Io(errno, shown);
  size_t start = 0;
  while (start < rel.size()) {
    size_t slash = rel.find('/', start);
    if (slash == std::string::npos) slash = rel.size();
    const std::string part = rel.substr(start, slash - start);
    start = slash + 1;
    if (part.empty()) continue;
    if (::mkdirat(dir.get(), part.c_str(), 0700) != 0 && errno != EEXIST)
      return Status::Io(errno, "mkdir " + shown + "/" + rel.substr(0, slash));
    UniqueFd next(::openat(dir.get(), part.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!next.valid()) return Status::Io(errno, "open " + shown + "/" + rel.substr(0, slash));
    dir = std::move(next);
  }
  return dir;
}

Status sync_dir(int fd, const std::string& shown) {
  if (::fsync(fd) != 0) return Status::Io(errno, "fsync " + shown);
  return Status::Ok();
}

}  // namespace

Status rewrite_slots(const std::string& vault_dir, const std::string& rel, const FileHeader& checked, int good_slot) {
  const std::string path = vault_dir + "/" + rel;  // for messages
  if (good_slot < 0 || good_slot > 1 || !checked.slots[good_slot])
    return Status(Code::kInternal, path + ": no slot to rewrite the header from");
  ASSIGN_OR_RETURN(auto f, open_tree_file(vault_dir, rel, -1, O_RDWR));
  ASSIGN_OR_RETURN(FileHeader h, read_header(*f));
  if (h.immutable_raw != checked.immutable_raw || !same_slots(h, checked))
    return Status(Code::kUnavailable, path + ": header changed since it was checked; check again");
  // The check verified every slot's file state under the good slot's key, so the newest
  // of them is authentic, and the file must not lose it.
  std::optional<SealedFileState> newest;
  for (const auto& s : h.slots)
    if (s && s->state && (!newest || s->state->generation > newest->generation)) newest = s->state;
  // The other slot, if it parsed at all, did not open the file: nothing of it is kept.
  h.slots[1 - good_slot].reset();
  h.slots[good_slot]->state = newest;
  RETURN_IF_ERROR(write_wrap(*f, h, wrap_of(*h.slots[good_slot])));
  RETURN_IF_ERROR(f->sync(/*data_only=*/false));
  ASSIGN_OR_RETURN(FileHeader after, read_header(*f));
  if (!after.slots[0] || !after.slots[1] || !(wrap_of(*after.slots[0]) == wrap_of(*after.slots[1])))
    return Status(Code::kIo, path + ": the rewritten key slots do not read back");
  return Status::Ok();
}

Result<std::string> quarantine(const std::string& vault_dir, const std::string& rel) {
  const std::string dir_rel = std::string(kQuarantineDirName) + (parent_of(rel).empty() ? "" : "/" + parent_of(rel));
  const std::string from = vault_dir + "/" + rel;  // for messages
  // Every path below is opened relative to a directory descriptor: a deep file's is
  // longer than any path syscall takes.
  UniqueFd root(::open(vault_dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!root.valid()) return Status::Io(errno, vault_dir);
  ASSIGN_OR_RETURN(UniqueFd to_dir, mkdirs(root.get(), vault_dir, dir_rel));
  UniqueFd from_dir;
  if (parent_of(rel).empty()) {
    from_dir = std::move(root);
  } else {
    ASSIGN_OR_RETURN(from_dir, open_beneath(root.get(), parent_of(rel), O_RDONLY | O_DIRECTORY));
  }
  const std::string name = base_of(rel);
  std::string to_name;
  for (int n = 0;; ++n) {
    to_name = name + (n == 0 ? "" : "." + std::to_string(n));
    // Never over an earlier quarantined file of the same path.
    if (::renameat2(from_dir.get(), name.c_str(), to_dir.get(), to_name.c_str(), RENAME_NOREPLACE) == 0) break;
    if (errno != EEXIST || n >= 1000)
      return Status::Io(errno, "moving " + from + " to " + vault_dir + "/" + dir_rel + "/" + to_name);
  }
  const std::string to_rel = dir_rel + "/" + to_name;
  if (NameCipher::is_long_name(name)) {
    // The side file holds the entry's encrypted name: keep them together.
    const std::string side = name + std::string(kSideFileSuffix);
    if (::renameat(from_dir.get(), side.c_str(), to_dir.get(), (to_name + std::string(kSideFileSuffix)).c_str()) != 0 &&
        errno != ENOENT)
      return Status::Io(errno, "moving " + from + std::string(kSideFileSuffix));
  }
  RETURN_IF_ERROR(sync_dir(to_dir.get(), vault_dir + "/" + dir_rel));
  RETURN_IF_ERROR(sync_dir(from_dir.get(), parent_of(from)));
  return to_rel;
}

Status remove_temporary(const std::string& path) {
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) return Status::Io(errno, "removing " + path);
  return Status::Ok();
}

Status remove_temporary(int dirfd, std::string_view name, const std::string& path) {
  if (::unlinkat(dirfd, std::string(name).c_str(), 0) != 0 && errno != ENOENT)
    return Status::Io(errno, "removing " + path);
  return Status::Ok();
}

Result<std::optional<Finding>> undo_interrupted_step(const std::string& vault_dir) {
  ASSIGN_OR_RETURN(std::string done, recover_reencryption(vault_dir));
  if (done.empty()) return std::optional<Finding>();
  Finding f = make_finding(FindingKind::kInterruptedReencryption, kJournalFileName, done);
  f.status = FindingStatus::kRepaired;
  return std::optional<Finding>(std::move(f));
}

std::optional<Finding> pending_step(const std::string& vault_dir) {
  const std::string path = vault_dir + "/" + kJournalFileName;
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0 || st.st_size == 0) return std::nullopt;
  auto j = ReencryptJournal::open(path);
  if (!j.ok()) return make_finding(FindingKind::kUnreadable, kJournalFileName, j.status().message());
  auto e = j->load();
  if (!e.ok()) return make_finding(FindingKind::kUnreadable, kJournalFileName, e.status().message());
  if (!*e) return std::nullopt;
  return make_finding(FindingKind::kInterruptedReencryption, kJournalFileName,
                      "the journal holds blocks " + std::to_string((*e)->from_block) + ".." +
                          std::to_string((*e)->to_block - 1) + " of " + (*e)->path +
                          " from a re-encryption step that may not have finished; the next mount or --repair "
                          "puts them back if it did not",
                      "", to_hex((*e)->file_id));
}

Status finish_reencryption(Vault& vault, const std::string& rel) {
  ASSIGN_OR_RETURN(auto backing, open_tree_file(vault.dir(), rel, -1, O_RDONLY));
  ASSIGN_OR_RETURN(auto file, vault.open_file(std::shared_ptr<BackingFile>(std::move(backing))));
  const FileHeader h = file->header();
  const auto& re = h.slots[h.active_slot()]->reencrypt;
  if (!re) return Status::Ok();
  file.reset();
  ASSIGN_OR_RETURN(ReencryptJournal journal, ReencryptJournal::open(vault.dir() + "/" + kJournalFileName));
  Reencryptor::Options o;
  o.run = re->run;
  Reencryptor r(vault, std::move(journal), o);
  ASSIGN_OR_RETURN(ReencryptResult done, r.reencrypt(rel));
  if (done.outcome != ReencryptOutcome::kDone)
    return Status(Code::kInternal, rel + ": re-encryption did not finish");
  return Status::Ok();
}

}  // namespace kmsfs::fsck
