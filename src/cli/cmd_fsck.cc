// kmsfs fsck: check every header and block of an unmounted (or, read-only, a mounted)
// vault, and with --repair correct what can be corrected (docs/CLI.md "fsck"). The exit
// status follows fsck(8) (cli/exit_codes.h).
#include <unistd.h>

#include <map>
#include <memory>
#include <optional>

#include <fmt/format.h>

#include "base/encoding.h"
#include "cli/commands.h"
#include "cli/exit_codes.h"
#include "cli/keyring_locator.h"
#include "cli/output.h"
#include "cli/passphrase_options.h"
#include "cli/providers.h"
#include "cli/vault_path.h"
#include "fsck/fsck.h"
#include "fsck/repair.h"
#include "rotation/rotation_state.h"
#include "rotation/rotation_worker.h"
#include "vault/vault.h"
#include "vault/vault_lock.h"

namespace kmsfs::cli {

namespace {

using fsck::Finding;
using fsck::FindingKind;
using fsck::FindingStatus;
using fsck::FsckReport;

// Lines of one kind in the human report; --json lists every finding.
constexpr size_t kListedPerKind = 50;

struct FsckCliOptions {
  std::string backing;
  bool backing_path = false;
  bool json = false;
  bool repair = false;
  std::optional<std::string> keyring;
  PassphraseOptions passphrase;
  AwsCliOptions aws;
  // What the check found, once it ran to the end (for the exit status).
  fsck::Outcome outcome = fsck::Outcome::kClean;
};

// --repair finishes a rotation nobody is running any more (the lock is ours) the way the
// next mount would, before the check, so the check sees the vault as it then is.
std::optional<Finding> finish_rotation(const std::string& dir, KeyProviders& providers, const TrustAnchor& anchor) {
  auto saved = load_rotation_state(dir);
  if (!saved.ok() || !*saved || (*saved)->phase != RotationPhase::kRunning) return std::nullopt;
  auto vault = Vault::open(dir, providers, anchor);
  if (!vault.ok()) return std::nullopt;  // the check reports why
  RotationWorker w(**vault);
  if (!w.resume_saved().ok()) return std::nullopt;
  const RotationStatus st = w.wait();
  if (st.state.phase != RotationPhase::kDone) return std::nullopt;  // the check reports it as it stands
  Finding f = fsck::make_finding(FindingKind::kInterruptedRotation, kRotationFileName,
                                 fmt::format("rotation {} to {} had stopped in pass {}; finished ({} files re-wrapped, "
                                             "{} failed)",
                                             st.state.id, st.state.target, (*saved)->pass, st.state.rotated,
                                             st.state.failed),
                                 st.state.target);
  f.status = FindingStatus::kRepaired;
  return f;
}

std::string where(const Finding& f) {
  std::string t = f.path.empty() ? "." : f.path;
  if (f.plain && *f.plain != f.path) t += " (" + (f.plain->empty() ? std::string("/") : *f.plain) + ")";
  if (!f.file_id.empty()) t += " file " + f.file_id;
  if (f.block) t += fmt::format(" block {}", *f.block);
  return t;
}

std::string outcome_of(const Finding& f) {
  switch (f.status) {
    case FindingStatus::kFound:
      return fsck::repairable(f.kind) && fsck::severity(f.kind) == fsck::Severity::kProblem ? " [--repair fixes this]" : "";
    case FindingStatus::kRepaired: return " [repaired]";
    case FindingStatus::kQuarantined: return " [moved to " + f.quarantined_to + "]";
    case FindingStatus::kRemoved: return " [removed]";
    case FindingStatus::kRepairFailed: return " [repair failed: " + f.repair_error + "]";
  }
  return "";
}

std::string findings_text(const FsckReport& r, fsck::Severity which, const std::string& heading) {
  std::string t;
  std::map<FindingKind, size_t> shown, total;
  uint64_t n = 0;
  for (const auto& f : r.findings) {
    if (fsck::severity(f.kind) != which) continue;
    ++n;
    if (++total[f.kind] > kListedPerKind) continue;
    ++shown[f.kind];
    // Names are escaped (base/encoding.h printable): one with a newline stays on its line.
    t += fmt::format("  {}: {}: {}{}\n", fsck::kind_title(f.kind), printable(where(f)), printable(f.message),
                     printable(outcome_of(f)));
  }
  for (const auto& [kind, count] : total)
    if (count > shown[kind])
      t += fmt::format("  ... and {} more {} (kmsfs fsck --json lists every one)\n", count - shown[kind],
                       fsck::kind_title(kind));
  return n == 0 ? "" : fmt::format("\n{} ({}):\n", heading, n) + t;
}

std::string human_report(const FsckReport& r) {
  std::string t;
  t += fmt::format("vault {} (fs id {}): {} entries, {} files, {} kmsfs files, {}\n", printable(r.vault), r.fs_id,
                   r.entries, r.files, r.kmsfs_files, human_bytes(static_cast<double>(r.bytes)));
  if (r.scope)
    t += r.scope->plain && *r.scope->plain != r.scope->backing
             ? fmt::format("checked: {} only (backing path {})\n", printable(*r.scope->plain),
                           printable(r.scope->backing))
             : fmt::format("checked: {} only\n", printable(r.scope->backing));
  t += fmt::format("current key: {}; filesystem key: {}\n",
                   r.current_key ? r.current_key->to_string() : "unknown (" + r.current_key_error + ")",
                   r.filesystem_key.to_string());
  if (!r.names_checked) t += "names: not checked (the filesystem key is unavailable)\n";
  if (r.rotation)
    t += fmt::format("rotation: {} to {}: {}, pass {}\n", r.rotation->id, r.rotation->target, r.rotation->phase,
                     r.rotation->pass);
  if (!r.keys.empty()) {
    size_t w = 3;
    for (const auto& [name, k] : r.keys) w = std::max(w, name.size());
    t += fmt::format("\n{:<{}}  {:>9}  {:>10}\n", "KEY", w, "FILES", "BYTES");
    for (const auto& [name, k] : r.keys)
      t += fmt::format("{:<{}}  {:>9}  {:>10}{}\n", name, w, k.files, human_bytes(static_cast<double>(k.bytes)),
                       r.current_key && *r.current_key == k.key ? "  current" : "");
  }
  t += findings_text(r, fsck::Severity::kProblem, "problems");
  if (r.damaged_blocks > 0)
    t += "  (a file with damaged blocks stays where it is: every other block of it still reads; restore it from a "
         "backup)\n";
  t += findings_text(r, fsck::Severity::kNotice, "notices");
  t += "\n";
  const uint64_t problems = r.problems(), left = r.uncorrected();
  switch (r.outcome()) {
    case fsck::Outcome::kClean: t += "clean: no problems found\n"; break;
    case fsck::Outcome::kRepaired: t += fmt::format("repaired: {} problem(s) found, all corrected\n", problems); break;
    case fsck::Outcome::kUncorrected: {
      uint64_t fixable = 0;
      for (const auto& f : r.findings)
        fixable += fsck::severity(f.kind) == fsck::Severity::kProblem && !fsck::corrected(f) &&
                   f.status == FindingStatus::kFound && fsck::repairable(f.kind);
      t += fmt::format("{} of {} problem(s) left uncorrected", left, problems);
      if (!r.repair && fixable > 0) t += fmt::format("; kmsfs fsck --repair corrects {} of them", fixable);
      t += "\n";
      break;
    }
  }
  return t;
}

Status run_fsck_command(FsckCliOptions& o) {
  // The vault, or BACKING/PATH: one file or tree in it. Not a vault: say so before the
  // lock would leave a kmsfs.lock behind.
  std::string dir = o.backing;
  std::optional<std::string> scope;
  if (auto whole = Vault::peek_config(o.backing); !whole.ok()) {
    auto vp = split_vault_path(o.backing);
    if (!vp.ok() || vp->rel.empty()) return whole.status();
    RETURN_IF_ERROR(Vault::peek_config(vp->vault_dir).status());
    dir = vp->vault_dir;
    scope = vp->rel;
  } else if (o.backing_path) {
    return Status(Code::kInvalidArgument, "--backing-path: " + o.backing + " is the vault itself, not a path in it",
                  EINVAL);
  }
  std::optional<VaultLock> lock;
  if (o.repair) {
    ASSIGN_OR_RETURN(lock, VaultLock::acquire(dir, "kmsfs fsck --repair"));
  }
  ASSIGN_OR_RETURN(TrustAnchor anchor, load_trust_anchor(dir, trust_store()));
  auto providers = make_providers(
      {[keyring = o.keyring, dir, record = anchor.record.keyring] { return locate_keyring({keyring, record, dir}); },
       o.passphrase.source(), o.aws},
      anchor.record.key_trust());
  std::optional<Finding> finished, undone;
  if (o.repair) {
    // Before any file is opened, as at mount: a re-encryption step a crash cut short.
    ASSIGN_OR_RETURN(undone, fsck::undo_interrupted_step(dir));
    finished = finish_rotation(dir, *providers, anchor);
  }
  fsck::FsckOptions opts;
  opts.repair = o.repair;
  opts.anchor = std::move(anchor);
  opts.scope = scope;
  opts.scope_is_backing = o.backing_path;
  ASSIGN_OR_RETURN(FsckReport report, fsck::run_fsck(dir, *providers, opts));
  if (finished) report.findings.insert(report.findings.begin(), std::move(*finished));
  if (undone) report.findings.insert(report.findings.begin(), std::move(*undone));
  if (report.in_use_by) {
    const std::string warning = "kmsfs: fsck: warning: vault " + dir + " is in use by " + *report.in_use_by +
                                ": a file written while it was read may show as damaged; check it unmounted to be "
                                "sure\n";
    (void)write_all(STDERR_FILENO, as_bytes(warning));
  }
  o.outcome = report.outcome();
  return print(o.json ? fsck::report_json(report).dump(2) + "\n" : human_report(report));
}

}  // namespace

void add_fsck_command(CLI::App& app, Commands& out) {
  auto o = std::make_shared<FsckCliOptions>();
  CLI::App* cmd = app.add_subcommand("fsck", "Check every header and block of a vault; --repair corrects what it can");
  cmd->add_option("BACKING", o->backing,
                  "The vault's backing directory, or BACKING/PLAIN/PATH to check one file or directory tree "
                  "(with --backing-path, BACKING/ENCRYPTED/PATH as fsck prints it)")
      ->required();
  add_backing_path_flag(*cmd, o->backing_path);
  cmd->add_flag("--json", o->json, "Print the report as one JSON object (fields: docs/CLI.md)");
  cmd->add_flag("--repair", o->repair,
                "Correct what can be corrected: rewrite a torn key slot from the good one, move files whose header "
                "cannot be saved to kmsfs.quarantine/ (never deleted), remove stale temporaries, finish an "
                "interrupted rotation. Refused while the vault is mounted");
  cmd->add_option("--keyring", o->keyring, "Keyring file (default: $KMSFS_KEYRING, then the vault's trust record)");
  add_passphrase_options(*cmd, o->passphrase);
  add_aws_options(*cmd, o->aws);
  cmd->footer(
      "Exit status (as fsck(8)): 0 clean, 1 problems found and all corrected, 4 problems left,\n"
      "8 the vault could not be checked.\n\n"
      "Examples:\n"
      "  kmsfs fsck /srv/vault\n"
      "  kmsfs fsck /srv/vault/projects/2026      (one directory tree, by its plaintext path)\n"
      "  kmsfs fsck /srv/vault --json --passphrase-file /run/kmsfs/pw\n"
      "  kmsfs umount /mnt/plain && kmsfs fsck /srv/vault --repair");
  out.push_back({"fsck", cmd, [o] { return run_fsck_command(*o); },
                 [o](const Status& s) { return fsck_exit_code(s, o->outcome); }});
}

}  // namespace kmsfs::cli
