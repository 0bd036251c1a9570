#include "rotation/reencryptor.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <cerrno>

#include "rotation/tree_walk.h"

namespace kmsfs {

Result<ReencryptResult> Reencryptor::reencrypt(const std::string& rel, int dirfd) {
  const std::string path = vault_.dir() + "/" + rel;  // for messages
  auto opened = open_tree_file(vault_.dir(), rel, dirfd, O_RDWR);
  if (!opened.ok()) {
    if (opened.status().sys_errno() == ENOENT) return ReencryptResult{ReencryptOutcome::kGone, 0};
    return opened.status();
  }
  std::shared_ptr<BackingFile> backing(std::move(*opened));
  struct stat st;
  if (::fstat(static_cast<PosixBackingFile&>(*backing).fd(), &st) != 0) return Status::Io(errno, "stat " + path);
  if (!S_ISREG(st.st_mode)) return ReencryptResult{ReencryptOutcome::kNotKmsfs, 0};
  Bytes magic(sizeof header::kMagic);
  ASSIGN_OR_RETURN(size_t n, backing->read_at(magic, 0));
  if (n < magic.size() || !has_kmsfs_magic(magic)) return ReencryptResult{ReencryptOutcome::kNotKmsfs, 0};

  // The mount's CryptFile if it has the file open, else ours, which the mount then shares.
  ASSIGN_OR_RETURN(std::shared_ptr<CryptFile> f,
                   vault_.open_files().get_or_open(st.st_dev, st.st_ino, [&]() -> Result<std::shared_ptr<CryptFile>> {
                     ASSIGN_OR_RETURN(auto file, vault_.open_file(backing));
                     return std::shared_ptr<CryptFile>(std::move(file));
                   }));
  const FileHeader h = f->header();
  const HeaderSlot& slot = *h.slots[h.active_slot()];
  if (!slot.reencrypt && slot.dek_run == opts_.run) return ReencryptResult{ReencryptOutcome::kAlready, 0};
  if (!slot.reencrypt) {
    // Per-file mode asks the provider for the new DEK; intermediate mode makes it here.
    ASSIGN_OR_RETURN(KeyProvider * p, vault_.providers().get(slot.key.provider));
    if (!slot.intermediate) {
      if (opts_.before_call && p->remote()) opts_.before_call();
      ++calls_;
    }
    RETURN_IF_ERROR(vault_.begin_reencrypt(*f, opts_.run));
  }
  ReencryptResult out{ReencryptOutcome::kDone, 0};
  const uint64_t step_bytes = opts_.step_blocks * f->layout().sealed_block_size();
  for (;;) {
    if (opts_.before_step && !opts_.before_step(std::min(step_bytes, f->layout().ciphertext_size(f->size()))))
      return ReencryptResult{ReencryptOutcome::kStopped, out.bytes};
    ASSIGN_OR_RETURN(CryptFile::ReencryptProgress p, f->reencrypt_step(journal_, rel, opts_.step_blocks));
    out.bytes += p.bytes;
    if (p.finished) break;
  }
  // Best effort: without it the open file renews through the old DEK's wrap, which works
  // for as long as the key does.
  (void)vault_.retarget_guard(*f);
  // Done and on disk: a required log that cannot record it cannot undo it.
  const FileHeader done = f->header();
  (void)audit_file(vault_.providers().audit(), "reencrypt_file", done, *done.slots[done.active_slot()], Status::Ok());
  return out;
}

}  // namespace kmsfs
