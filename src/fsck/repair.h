// What --repair does to one entry: rewrite both key slots of a file one good slot
// carries, move a file whose header cannot be saved to kmsfs.quarantine/, remove a
// temporary a crashed writer left. It never deletes a byte of a file's content and never
// touches a file the check found healthy; the caller holds the vault lock, so nothing
// else writes meanwhile.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "base/status.h"
#include "format/header.h"
#include "fsck/finding.h"
#include "vault/vault.h"

namespace kmsfs::fsck {

// Rewrites both slots of the file `rel` (relative to the vault) from `good_slot` of
// `checked` (the header the check found, which must still be on disk), with the newest
// file state any slot held, then reads them back. The slot rewrite protocol (FORMAT.md
// §3.7) keeps a valid slot at every instant, and the file's mtime is put back.
Status rewrite_slots(const std::string& vault_dir, const std::string& rel, const FileHeader& checked, int good_slot);

// Moves `rel` (and a hashed long name's side file with it) to
// kmsfs.quarantine/<rel>, adding ".1", ".2", ... if that is taken; returns where it went,
// relative to the vault.
Result<std::string> quarantine(const std::string& vault_dir, const std::string& rel);

// Removes a stale temporary (never a file of the tree).
Status remove_temporary(const std::string& path);
// The same, for the entry `name` of the directory `dirfd` (the tree walk's); `path`
// names it in messages.
Status remove_temporary(int dirfd, std::string_view name, const std::string& path);

// Puts back a re-encryption step a crash cut short (vault/reencrypt_recovery.h): the
// journal finding, repaired, or nullopt when the journal held nothing to undo.
Result<std::optional<Finding>> undo_interrupted_step(const std::string& vault_dir);
// Without writing: the journal finding if a step awaits undoing (the next mount or
// --repair does it).
std::optional<Finding> pending_step(const std::string& vault_dir);

// Finishes the re-encryption `rel` was part-way through, under the DEK its record holds.
Status finish_reencryption(Vault& vault, const std::string& rel);

}  // namespace kmsfs::fsck
