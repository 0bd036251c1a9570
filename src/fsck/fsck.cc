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
#include "vault/paths.h"
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
    if (r_.scope) return run_scope(r_.scope->backing);
    return walk_entries(
        dir_, "", [this](const WalkEntry& e) { return visit(e), true; },
        [this](const std::string& rel, const Status& s) {
          r_.add(make_finding(FindingKind::kUnreadable, rel, s.message()));
        });
  }

 private:
  // One file or tree: its ancestors' names are decrypted on the way down (for the
  // plaintext paths of what is reported), then it is checked as the full walk would.
  Status run_scope(const std::string& rel) {
    UniqueFd fd(::open(dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!fd.valid()) return Status::Io(errno, dir_);
    std::string at;
    size_t begin = 0;
    for (size_t depth = 0;; ++depth) {
      const size_t slash = rel.find('/', begin);
      const std::string name = rel.substr(begin, slash == std::string::npos ? std::string::npos : slash - begin);
      const std::string here = at.empty() ? name : at + "/" + name;
      struct stat st;
      if (::fstatat(fd.get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) return Status::Io(errno, dir_ + "/" + here);
      if (slash == std::string::npos) {
        const EntryType type = S_ISREG(st.st_mode)   ? EntryType::kFile
                               : S_ISDIR(st.st_mode) ? EntryType::kDirectory
                                                     : EntryType::kOther;
        visit(WalkEntry{here, name, type, fd.get(), depth});
        if (type != EntryType::kDirectory) return Status::Ok();
        return walk_entries(
            dir_ + "/" + here, "",
            [&](const WalkEntry& e) {
              const std::string full = here + "/" + e.rel;
              return visit(WalkEntry{full, e.name, e.type, e.dirfd, depth + 1 + e.depth}), true;
            },
            [&](const std::string& r, const Status& s) {
              r_.add(make_finding(FindingKind::kUnreadable, here + "/" + r, s.message()));
            });
      }
      if (!S_ISDIR(st.st_mode)) return Status::Io(ENOTDIR, dir_ + "/" + here);
      name_directory(WalkEntry{here, name, EntryType::kDirectory, fd.get(), depth});
      UniqueFd next(::openat(fd.get(), name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
      if (!next.valid()) return Status::Io(errno, dir_ + "/" + here);
      fd = std::move(next);
      at = here;
      begin = slash + 1;
    }
  }

  // An ancestor of the scope: only its plaintext name is wanted, not a check or a count.
  void name_directory(const WalkEntry& e) {
    const bool in_root = e.depth == 0;
    record_dir(e, plain_path(e, check_name(store_.get(), t_.config.encrypted_names(), e.dirfd, e.name, in_root)));
  }

  // The walk visits a directory before what it holds, depth first: the plaintext path of
  // an entry's parent is the one last recorded one level up. The plaintext path of `e`,
  // when its name and every parent's decrypted.
  std::optional<std::string> plain_path(const WalkEntry& e, const NameInfo& name) const {
    if (name.kind != NameKind::kPlain) return std::nullopt;
    if (e.depth == 0) return name.plain;
    if (e.depth > dir_plain_.size() || !dir_plain_[e.depth - 1]) return std::nullopt;
    const std::string& parent = *dir_plain_[e.depth - 1];
    return parent.empty() ? name.plain : parent + "/" + name.plain;
  }

  void record_dir(const WalkEntry& e, std::optional<std::string> plain) {
    dir_plain_.resize(e.depth + 1);
    dir_plain_[e.depth] = std::move(plain);
  }

  void visit(const WalkEntry& e) {
    ++r_.entries;
    const bool in_root = e.depth == 0;
    const NameInfo name = check_name(store_.get(), t_.config.encrypted_names(), e.dirfd, e.name, in_root);
    std::optional<std::string> plain;
    switch (name.kind) {
      case NameKind::kVaultOwn: return;
      case NameKind::kTemporary: return temporary(e);
      case NameKind::kUndecryptable:
        r_.add(make_finding(FindingKind::kUndecryptableName, e.rel, "name does not decrypt: " + name.why));
        break;
      case NameKind::kPlain: plain = plain_path(e, name); break;
      case NameKind::kUnknown: break;
    }
    if (e.type == EntryType::kDirectory) record_dir(e, plain);
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

// The backing path of the scope (FsckOptions::scope), and its plaintext path.
Status resolve_scope(const std::string& dir, const Target& t, const FsckOptions& opts, FsckReport& r) {
  std::string rel = *opts.scope;
  while (!rel.empty() && rel.back() == '/') rel.pop_back();
  if (rel.empty() || rel.front() == '/' || rel == ".." || rel.starts_with("../") || rel.find("/../") != std::string::npos ||
      rel.ends_with("/.."))
    return Status(Code::kInvalidArgument, "'" + *opts.scope + "' is not a path inside the vault", EINVAL);
  FsckReport::Scope scope;
  if (opts.scope_is_backing || !t.config.encrypted_names()) {
    scope.backing = rel;
    if (!t.config.encrypted_names()) scope.plain = rel;
  } else {
    if (!t.vault)
      return Status(Code::kUnavailable,
                    "a path in the plaintext view needs the vault's name key, which is unavailable; name the "
                    "backing path with --backing-path",
                    EACCES);
    ASSIGN_OR_RETURN(scope.backing, encrypt_path(*t.vault, rel));
    scope.plain = rel;
  }
  struct stat st;
  if (::lstat((dir + "/" + scope.backing).c_str(), &st) != 0) {
    // An encrypted name given without the flag: say how to ask for it.
    const bool on_disk = scope.backing != rel && ::lstat((dir + "/" + rel).c_str(), &st) == 0;
    return Status(Code::kNotFound,
                  "'" + rel + "': no such " + (scope.plain ? "path in the vault" : "backing path") +
                      (on_disk ? "; it is a backing path: add --backing-path" : ""),
                  ENOENT);
  }
  r.scope = std::move(scope);
  return Status::Ok();
}

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
  if (opts.scope) {
    RETURN_IF_ERROR(resolve_scope(dir, t, opts, r));
  } else {
    check_root_temporaries(dir, opts, r);
  }
  Scan scan(dir, t, providers, opts, r);
  RETURN_IF_ERROR(scan.run());
  return r;
}

}  // namespace kmsfs::fsck
