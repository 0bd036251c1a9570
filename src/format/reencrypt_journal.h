// The hotzone journal of online re-encryption (FORMAT.md §3.9). Re-sealing a block in
// place overwrites the only copy of data the user already made durable; a crash in the
// middle of that write can tear it, and a torn block opens under neither key. So before a
// chunk of blocks is overwritten, its old ciphertext goes here and is made durable; after
// a crash, recovery (vault/reencrypt_recovery) writes it back unless the file's header
// says the chunk was committed. One journal per vault: one re-encryption runs at a time.
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "base/bytes.h"
#include "base/status.h"
#include "crypto/kdf.h"
#include "format/backing_file.h"
#include "format/key_ref.h"

namespace kmsfs {

struct JournalEntry {
  FileId file_id{};
  // SHA-256 of the file's re-encryption DEK wrap: the entry belongs to that one
  // re-encryption, never to a later one of the same file that reached the same watermark.
  Digest32 next_wrap{};
  uint64_t from_block = 0;  // the watermark before the chunk
  uint64_t to_block = 0;    // the watermark once the chunk is committed
  uint64_t offset = 0;      // backing offset of `data`
  std::string path;         // relative to the vault; a hint (a rename makes recovery search)
  Bytes data;               // the chunk's ciphertext before it was re-sealed
};

// The journal file's bytes (a magic, the entry, its SHA-256). encode is what save()
// writes; parse is what load() reads: nullopt for a torn entry (bad magic, size or
// checksum), kCorrupt for a complete one that is malformed. `name` goes into errors.
Bytes encode_journal_entry(const JournalEntry& e);
Result<std::optional<JournalEntry>> parse_journal_entry(ByteSpan raw, const std::string& name);

class ReencryptJournal {
 public:
  // Opens (creating it, mode 0600) the journal file at `path`.
  static Result<ReencryptJournal> open(const std::string& path);

  // Replaces the journal's content with `e` and makes it durable.
  Status save(const JournalEntry& e);
  // Empties the journal durably (the entry's file finished or was recovered).
  Status clear();
  // The entry, if the journal holds a complete one. A torn entry (crash while saving)
  // is none: nothing was overwritten before the save was durable.
  Result<std::optional<JournalEntry>> load();

 private:
  explicit ReencryptJournal(std::unique_ptr<PosixBackingFile> f) : f_(std::move(f)) {}
  std::unique_ptr<PosixBackingFile> f_;
};

}  // namespace kmsfs
