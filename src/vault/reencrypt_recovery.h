// Crash recovery of online re-encryption (FORMAT.md §3.9): if the vault's journal holds
// a chunk whose watermark the file's header never committed, the chunk's old ciphertext
// goes back in place (a block torn by the crash opens under neither key; the journaled
// one opens under the old DEK, which the uncommitted watermark still names). Needs no
// key: file id, watermark and the record's wrap are plaintext in the header.
#pragma once

#include <string>

#include "base/status.h"

namespace kmsfs {

// Run with the vault lock held and before any file of the vault is opened (mount start,
// offline rotation, fsck --repair). Returns a one-line account of what it did ("" when
// the journal held nothing to do), naming backing path, file id and blocks.
Result<std::string> recover_reencryption(const std::string& vault_dir);

}  // namespace kmsfs
