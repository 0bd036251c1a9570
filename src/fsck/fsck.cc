#include "fsck/fsck.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>

#include <ctime>
#include <memory>
#include <optional>

#include "base/unique_fd.h"
#include "fsck/file_check.h"
#include "fsck/name_check.h"
#include "fsck/repair.h"
#include "rotation/rotation_state.h"
#include "rotation/tree_walk.h"
#include "vault/name_store.h"
#include "vault/vault.h"
#include "vault/vault_lock.h"

namespace kmsfs::fsck {

namespace {

bool old_enough(const struct stat& st, std::chrono::seconds age) {
  return std::time(nullptr) - st.st_mtim.tv_sec >= age.count();
}

// The vault as far as it opens: authenticated with its filesystem key, or (that key
// disabled or denied) the unauthenticated config, so files can still be checked.
struct Target {
  std::unique_ptr<Vault> vault;
  FsConfig config;
};

Result<Target> open_target(const std::string& dir, KeyProviders& providers, const std::optional<TrustAnchor>& anchor,
                           FsckReport& r) {
  Target t;
  ASSIGN_OR_RETURN(t.config, Vault::peek_config(dir));
  KeyRef auth = t.config.fs_key_ref;
  if (anchor) {
    // A config this host does not accept (replaced, rolled back) is no vault to check.
    providers.set_trust(anchor->record.key_trust());
    ASSIGN_OR_RETURN(auto wrap, trusted_config_wrap(t.config, anchor->record, dir));
    auth = wrap.first;
  }
  // A provider that cannot be set up (no keyring, wrong passphrase) stops the check: every
  // file would fail for the same reason.
  RETURN_IF_ERROR(providers.get(auth.provider).status());
  auto v = anchor ? Vault::open(dir, providers, *anchor) : Vault::open_unanchored(dir, providers);
  if (v.ok()) {
    t.vault = std::move(*v);
    t.config = t.vault->config();
    return t;
  }
  const Code c = v.status().code();
  if (c != Code::kPermissionDenied && c != Code::kNotFound) return v.status();
  r.names_checked = !t.config.encrypted_names();
  r.add(make_finding(FindingKind::kKeyUnavailable, kConfigFileName,
                     v.status().message() + " (the config is not authenticated" +
                         (t.config.encrypted_names() ? " and names are not checked)" : ")"),
                     t.config.fs_key_ref.to_string()));
  return t;
}

void check_rotation(const std::string& dir, bool repair, FsckReport& r) {
  auto st = load_rotation_state(dir);
  if (!st.ok()) {
    r.add(make_finding(FindingKind::kUnreadable, kRotationFileName, st.status().message()));
    return;
  }
  if (!*st) return;
  const RotationState& s = **st;
  r.rotation = RotationSummary{s.id, s.params.to, s.target, rotation_phase_name(s.phase), s.pass};
  auto add = [&](FindingKind k, const std::string& m) {
    r.add(make_finding(k, kRotationFileName, m, s.target));
  };
  const std::string run = "rotation " + s.id + " to " + s.target;
  switch (s.phase) {
    case RotationPhase::kRunning:
      // Beside a mount, the mount's worker is running it.
      if (repair || !r.in_use_by)
        add(FindingKind::kInterruptedRotation,
            run + " stopped in pass " + std::to_string(s.pass) + " (after " + (s.cursor.empty() ? "no file" : s.cursor) +
                "); it continues at the next mount, with kmsfs rotate --offline --resume, or with fsck --repair");
      break;
    case RotationPhase::kPaused: add(FindingKind::kPausedRotation, run + " is paused (kmsfs rotate --resume)"); break;
    case RotationPhase::kFailed: add(FindingKind::kFailedRotation, run + " failed: " + s.message); break;
    case RotationPhase::kCancelled:
    case RotationPhase::kDone: break;
  }
}

// Temporaries of the vault's own files in the root ("kmsfs.conf.tmp.PID.N"): the walk
// leaves the root's vault files out.
void check_root_temporaries(const std::string& dir, const FsckOptions& opts, FsckReport& r) {
  UniqueFd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  DIR* d = fd.valid() ? ::fdopendir(::dup(fd.get())) : nullptr;
  if (!d) return;  // the walk reports an unreadable root
  std::vector<std::string> names;
  while (dirent* e = ::readdir(d))
    if (is_vault_temporary(e->d_name)) names.emplace_back(e->d_name);
  ::closedir(d);
  std::sort(names.begin(), names.end());
  for (const auto& name : names) {
    struct stat st;
    if (::fstatat(fd.get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode)) continue;
    if (!old_enough(st, opts.temporary_age)) continue;
    Finding f = make_finding(FindingKind::kStaleTemporary, name, "a temporary file a crashed writer left behind");
    if (opts.repair) {
      Status s = remove_temporary(dir + "/" + name);
      f.status = s.ok() ? FindingStatus::kRemoved : FindingStatus::kRepairFailed;
      if (!s.ok()) f.repair_error = s.message();
    }
    r.add(std::move(f));
  }
}

bool has(const std::vector<Finding>& fs, FindingKind k) {
  for (const auto& f : fs)
    if (f.kind == k) return true;
  return false;
}

// --repair on one checked file: quarantine what cannot be saved, rewrite the slots of a
// file one slot carries. A file with damaged blocks stays where it is: the rest of it
// reads.
void repair_file(const std::string& dir, const std::string& rel, FileCheck& fc, Vault* vault) {
  auto mark = [&](FindingKind kind, FindingStatus st, const std::string& err, const std::string& to = "") {
    for (auto& f : fc.findings) {
      if (f.kind != kind) continue;
      f.status = st;
      f.repair_error = err;
      f.quarantined_to = to;
    }
  };
  if (has(fc.findings, FindingKind::kDamagedHeader)) {
    auto to = quarantine(dir, rel);
    if (!to.ok()) return mark(FindingKind::kDamagedHeader, FindingStatus::kRepairFailed, to.status().message());
    mark(FindingKind::kDamagedHeader, FindingStatus::kQuarantined, "", *to);
    mark(FindingKind::kOneSlot, FindingStatus::kQuarantined, "", *to);
    return;
  }
  if (has(fc.findings, FindingKind::kInterruptedReencryption) && vault) {
    Status s = finish_reencryption(*vault, rel);
    mark(FindingKind::kInterruptedReencryption, s.ok() ? FindingStatus::kRepaired : FindingStatus::kRepairFailed,
         s.message());
  }
  if (has(fc.findings, FindingKind::kOneSlot)) {
    if (fc.good_slot < 0 || !fc.header)
      return mark(FindingKind::kOneSlot, FindingStatus::kFound, "");  // no slot opens it now: its key is unavailable
    Status s = rewrite_slots(dir, rel, *fc.header, fc.good_slot);
    mark(FindingKind::kOneSlot, s.ok() ? FindingStatus::kRepaired : FindingStatus::kRepairFailed, s.message());
  }
}

class Scan {
 public:
  Scan(const std::string& dir, const Target& t, KeyProviders& providers, const FsckOptions& opts, FsckReport& r)
      : dir_(dir), t_(t), opts_(opts), r_(r), keys_(providers),
        store_(t.vault ? std::make_unique<NameStore>(t.vault->names()) : nullptr),
        ctx_{t.config, r.current_key, keys_, CryptFile::Options{}, opts.max_blocks_listed} {}

  Status run() {
    return walk_entries(
        dir_, "", [this](const WalkEntry& e) { return visit(e), true; },
        [this](const std::string& rel, const Status& s) {
          r_.add(make_finding(FindingKind::kUnreadable, rel, s.message()));
        });
  }

 private:
  // The walk visits a directory before what it holds, depth first: the plaintext path of
  // an entry's parent is the one last recorded one level up.
  std::optional<std::string> parent_plain(const WalkEntry& e) const {
    if (e.depth == 0) return std::string();
    return e.depth <= dir_plain_.size() ? dir_plain_[e.depth - 1] : std::nullopt;
  }

  void visit(const WalkEntry& e) {
    ++r_.entries;
    const bool in_root = e.rel.find('/') == std::string::npos;
    const NameInfo name = check_name(store_.get(), t_.config.encrypted_names(), e.dirfd, e.name, in_root);
    std::optional<std::string> plain;
    switch (name.kind) {
      case NameKind::kVaultOwn: return;
      case NameKind::kTemporary: return temporary(e);
      case NameKind::kUndecryptable:
        r_.add(make_finding(FindingKind::kUndecryptableName, e.rel, "name does not decrypt: " + name.why));
        break;
      case NameKind::kPlain:
        if (auto parent = parent_plain(e)) plain = parent->empty() ? name.plain : *parent + "/" + name.plain;
        break;
      case NameKind::kUnknown: break;
    }
    if (e.type == EntryType::kDirectory) {
      dir_plain_.resize(e.depth + 1);
      dir_plain_[e.depth] = plain;
    }
    if (e.type != EntryType::kFile) return;
    ++r_.files;
    FileCheck fc = check_file(ctx_, e.dirfd, e.name, dir_ + "/" + e.rel, e.rel);
    if (fc.kmsfs) {
      ++r_.kmsfs_files;
      r_.bytes += fc.backing_size;
    }
    if (fc.ours && fc.header) {
      const KeyRef& k = fc.header->slots[fc.header->active_slot()]->key;
      KeyTotals& tot = r_.keys[k.to_string()];
      tot.key = k;
      ++tot.files;
      tot.bytes += fc.backing_size;
    }
    r_.damaged_blocks += fc.bad_blocks;
    if (opts_.repair) repair_file(dir_, e.rel, fc, t_.vault.get());
    for (auto& f : fc.findings) {
      f.plain = plain;
      r_.add(std::move(f));
    }
  }

  void temporary(const WalkEntry& e) {
    struct stat st;
    if (::fstatat(e.dirfd, std::string(e.name).c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode)) return;
    if (!old_enough(st, opts_.temporary_age)) return;
    Finding f = make_finding(FindingKind::kStaleTemporary, e.rel,
                             "a long name's side file that was never put in place (a crash while it was written)");
    if (opts_.repair) {
      Status s = remove_temporary(e.dirfd, e.name, dir_ + "/" + e.rel);
      f.status = s.ok() ? FindingStatus::kRemoved : FindingStatus::kRepairFailed;
      if (!s.ok()) f.repair_error = s.message();
    }
    r_.add(std::move(f));
  }

  const std::string& dir_;
  const Target& t_;
  const FsckOptions& opts_;
  FsckReport& r_;
  SlotKeys keys_;
  std::unique_ptr<NameStore> store_;
  CheckContext ctx_;
  // The plaintext path of the directories on the walk's current path, by depth (the
  // current path only: a map of every directory would grow with the square of the depth).
  std::vector<std::optional<std::string>> dir_plain_;
};

}  // namespace

Result<FsckReport> run_fsck(const std::string& dir, KeyProviders& providers, const FsckOptions& opts) {
  FsckReport r;
  r.vault = dir;
  r.repair = opts.repair;
  ASSIGN_OR_RETURN(Target t, open_target(dir, providers, opts.anchor, r));
  r.fs_id = t.config.fs_id_hex();
  r.filesystem_key = t.vault ? t.vault->fs_key_ref() : t.config.fs_key_ref;
  // Under --repair the caller holds the lock itself.
  if (!opts.repair) {
    ASSIGN_OR_RETURN(r.in_use_by, VaultLock::holder(dir));
  }
  auto current = [&]() -> Result<KeyRef> {
    ASSIGN_OR_RETURN(KeyProvider * p, providers.get(t.config.provider));
    return p->resolve(t.vault ? t.vault->key_spec() : t.config.key_spec);
  }();
  if (current.ok()) {
    r.current_key = *current;
  } else {
    r.current_key_error = current.status().message();
  }
  if (r.current_key && !(r.filesystem_key == *r.current_key))
    r.add(make_finding(FindingKind::kNotRotated, kConfigFileName,
                       "the filesystem key is wrapped under " + r.filesystem_key.to_string() +
                           ", not the current key " + r.current_key->to_string() + " (kmsfs rotate moves it)",
                       r.filesystem_key.to_string()));
  check_rotation(dir, opts.repair, r);
  // --repair undid a journaled step before anything opened a file (undo_interrupted_step).
  if (!opts.repair)
    if (auto f = pending_step(dir)) r.add(std::move(*f));
  check_root_temporaries(dir, opts, r);
  Scan scan(dir, t, providers, opts, r);
  RETURN_IF_ERROR(scan.run());
  return r;
}

}  // namespace kmsfs::fsck
