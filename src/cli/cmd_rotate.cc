// kmsfs rotate: move every file of a vault to another key, online through the daemon's
// control socket or offline on an unmounted backing directory (docs/CLI.md "rotate").
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cmath>
#include <ctime>
#include <memory>
#include <thread>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "base/encoding.h"
#include "cli/commands.h"
#include "cli/control_client.h"
#include "cli/output.h"
#include "cli/vault_path.h"
#include "control/rotation_control.h"
#include "rotation/rotation_state.h"
#include "rotation/rotation_worker.h"
#include "vault/reencrypt_recovery.h"
#include "vault/vault_lock.h"

namespace kmsfs::cli {

namespace {

using nlohmann::json;

struct RotateOptions {
  std::string target;  // mountpoint, or the backing directory with --offline
  std::string to;
  bool all = false;
  bool reencrypt = false;
  double rate_mb = RotationRequest{}.bytes_per_second / (1 << 20);
  double rate = RotationRequest{}.files_per_second;
  double kms_rate = RotationRequest{}.kms_calls_per_second;
  bool status = false, json = false, pause = false, resume = false, cancel = false, wait = false;
  bool offline = false;
  std::optional<std::string> keyring;
  PassphraseOptions passphrase;
  AwsCliOptions aws;
};

std::string when(int64_t t) {
  std::time_t tt = static_cast<std::time_t>(t);
  std::tm tm{};
  gmtime_r(&tt, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string human_status(const json& j) {
  std::string t;
  t += fmt::format("rotation {} to {} ({}): {}, pass {}\n", j.value("id", "?"), j.value("to", "?"), j.value("target", "?"),
                   j.value("phase", "?"), j.value("pass", 1));
  const uint64_t total = j.value("total", uint64_t{0}), seen = j.value("seen", uint64_t{0});
  const bool reencrypt = j.value("mode", "") == "reencrypt";
  const char* moved = reencrypt ? "re-encrypted" : "re-wrapped";
  t += fmt::format("  files: {} of {} in this pass ({:.0f}%); {} {}, {} already under the target, {} skipped "
                   "(not kmsfs files or gone), {} failed\n",
                   seen, total, total ? 100.0 * static_cast<double>(seen) / static_cast<double>(total) : 100.0,
                   j.value("rotated", 0), moved, j.value("already", 0), j.value("skipped", 0), j.value("failed", 0));
  t += fmt::format("  bytes {}: {}; key provider calls: {}\n", moved, human_bytes(j.value("bytes", 0.0)),
                   j.value("kms_calls", 0));
  if (reencrypt) t += fmt::format("  re-encryption limit: {:.0f} MiB/s (0 = none)\n", j.value("bytes_per_second", 0.0) / (1 << 20));
  const double rate = j.value("files_per_second_now", 0.0), eta = j.value("eta_seconds", -1.0);
  t += fmt::format("  rate: {:.0f} files/s (limits: {} files/s, {} provider calls/s; 0 = none)", rate,
                   j.value("files_per_second", 0.0), j.value("kms_calls_per_second", 0.0));
  if (eta >= 0) t += fmt::format("; ETA {:.0f} s", eta);
  t += fmt::format("\n  started {}, last checkpoint {}\n", when(j.value("started", int64_t{0})),
                   when(j.value("updated", int64_t{0})));
  if (!j.value("message", "").empty()) t += "  " + j.value("message", "") + "\n";
  const auto& errors = j["errors"];
  if (!errors.empty()) {
    t += fmt::format("  latest errors ({}):\n", errors.size());
    for (const auto& e : errors)
      t += fmt::format("    {}: {}\n", printable(e.value("path", "")), printable(e.value("message", "")));
  }
  return t;
}

// The end of a run as an exit status: done and clean is success.
Status outcome(const json& j) {
  const std::string phase = j.value("phase", "");
  const uint64_t failed = j.value("failed", uint64_t{0});
  if (phase == "done" && failed == 0) return Status::Ok();
  if (phase == "done")
    return Status(Code::kCorrupt, fmt::format("{} file(s) could not be rotated and are still under their old key "
                                              "(listed by kmsfs rotate --status)",
                                              failed));
  if (phase == "failed") return Status(Code::kIo, "rotation failed: " + j.value("message", ""));
  if (phase == "cancelled") return Status(Code::kUnavailable, "rotation cancelled");
  if (phase == "paused" && j.value("paused_for_space", false))
    return Status(Code::kIo, "rotation " + j.value("message", "paused: out of space"), ENOSPC);
  return Status::Ok();  // paused or running: not an error
}

// One progress line: the pass, files of this pass, rate and ETA. Before the walk has
// counted the pass's files, it says so (never "100% 0/0").
std::string progress_line(const json& j, bool bar) {
  const uint64_t total = j.value("total", uint64_t{0}), seen = j.value("seen", uint64_t{0});
  const uint32_t pass = j.value("pass", 1u);
  const bool counted = total > 0 || j.value("phase", "") != "running";
  const double frac = total ? static_cast<double>(seen) / static_cast<double>(total) : (counted ? 1.0 : 0.0);
  const double eta = j.value("eta_seconds", -1.0);
  std::string t;
  if (bar) {
    const int width = 30, filled = static_cast<int>(std::lround(frac * width));
    t += fmt::format("[{}{}] ", std::string(filled, '#'), std::string(width - filled, '.'));
  }
  t += fmt::format("pass {}: ", pass);
  if (!counted) return t + "counting files...";
  t += fmt::format("{:3.0f}% {}/{} files  {:.0f} files/s  {}", 100 * frac, seen, total,
                   j.value("files_per_second_now", 0.0),
                   eta >= 0 ? fmt::format("ETA {:.0f} s", eta) : std::string("ETA -"));
  return t;
}

// Shows progress until the run is no longer running, as cryptsetup reencrypt does: a bar
// redrawn in place on a terminal (a new line when a pass begins), else a line every 5 s;
// with --json, one JSON object per line every second while it runs.
Result<json> follow(const std::function<Result<json>()>& poll, bool json_lines) {
  const bool tty = ::isatty(1) == 1 && !json_lines;
  const auto every = json_lines ? std::chrono::seconds(1) : std::chrono::seconds(5);
  auto last_line = std::chrono::steady_clock::now() - every;
  uint32_t shown_pass = 0;
  for (;;) {
    ASSIGN_OR_RETURN(json j, poll());
    const bool running = j.value("phase", "") == "running";
    if (!running) {
      if (tty && shown_pass != 0) RETURN_IF_ERROR(print("\n"));
      return j;
    }
    const uint32_t pass = j.value("pass", 1u);
    const auto now = std::chrono::steady_clock::now();
    if (tty) {
      if (shown_pass != 0 && pass != shown_pass) RETURN_IF_ERROR(print("\n"));
      RETURN_IF_ERROR(print("\r" + progress_line(j, true) + "   "));
    } else if (now - last_line >= every || pass != shown_pass) {
      RETURN_IF_ERROR(print((json_lines ? j.dump() : progress_line(j, false)) + "\n"));
      last_line = now;
    }
    shown_pass = pass;
    std::this_thread::sleep_for(std::chrono::milliseconds(tty ? 250 : 500));
  }
}

Status show(const RotateOptions& o, const json& j) {
  return print(o.json ? j.dump(2) + "\n" : human_status(j));
}

// The end of a followed run: with --json, the final object as the last JSON line.
Status show_final(const RotateOptions& o, const json& j) {
  return print(o.json ? j.dump() + "\n" : human_status(j));
}

RotationRequest request_of(const RotateOptions& o) {
  return {o.to, o.rate, o.kms_rate, o.all, o.reencrypt, o.rate_mb * (1 << 20)};
}

Status run_online(const RotateOptions& o) {
  ASSIGN_OR_RETURN(std::string sock, socket_of(o.target));
  auto send = [&](json req) { return ask(sock, o.target, "rotate " + req.dump()); };
  json j;
  if (!o.to.empty()) {
    ASSIGN_OR_RETURN(j, send({{"op", "start"},
                               {"to", o.to},
                               {"files_per_second", o.rate},
                               {"kms_calls_per_second", o.kms_rate},
                               {"all", o.all},
                               {"reencrypt", o.reencrypt},
                               {"bytes_per_second", o.rate_mb * (1 << 20)}}));
  } else if (o.pause) {
    ASSIGN_OR_RETURN(j, send({{"op", "pause"}}));
  } else if (o.resume) {
    ASSIGN_OR_RETURN(j, send({{"op", "resume"}}));
  } else if (o.cancel) {
    ASSIGN_OR_RETURN(j, send({{"op", "cancel"}}));
  } else {
    ASSIGN_OR_RETURN(j, send({{"op", "status"}}));
  }
  if (o.wait) {
    ASSIGN_OR_RETURN(j, follow([&] { return send({{"op", "status"}}); }, o.json));
    RETURN_IF_ERROR(show_final(o, j));
    return outcome(j);
  }
  return show(o, j);
}

Status run_offline(const RotateOptions& o) {
  if (o.status || (o.to.empty() && !o.resume && !o.cancel)) {
    ASSIGN_OR_RETURN(auto saved, load_rotation_state(o.target));
    if (!saved) return Status(Code::kNotFound, o.target + " has no rotation (start one with --to KEY)");
    return show(o, rotation_status_json(RotationStatus{*saved, 0, -1}));
  }
  if (o.pause) return Status(Code::kInvalidArgument, "--pause needs a running mount; an offline run stops with Ctrl-C and continues with --resume");
  ASSIGN_OR_RETURN(VaultLock lock, VaultLock::acquire(o.target, "kmsfs rotate --offline"));
  ASSIGN_OR_RETURN(std::string recovered, recover_reencryption(o.target));
  if (!recovered.empty()) (void)write_all(2, as_bytes(recovered + "\n"));
  ASSIGN_OR_RETURN(OpenedVault ov, open_vault_offline(o.target, o.keyring, o.passphrase, o.aws));
  RotationWorker w(*ov.vault);
  if (o.cancel) {
    RETURN_IF_ERROR(w.load_saved());
    RETURN_IF_ERROR(w.cancel());
  } else if (o.resume) {
    RETURN_IF_ERROR(w.resume_saved());
    auto saved = w.status();
    if (!saved.ok() || !saved->state.active())
      return Status(Code::kNotFound, o.target + " has no interrupted rotation to resume");
    if (saved->state.phase == RotationPhase::kPaused) RETURN_IF_ERROR(w.resume());
  } else {
    RETURN_IF_ERROR(w.start(request_of(o)));
  }
  ASSIGN_OR_RETURN(json j, follow([&]() -> Result<json> {
                     ASSIGN_OR_RETURN(RotationStatus st, w.status());
                     return rotation_status_json(st);
                   }, o.json));
  w.wait();  // its last checkpoint is on disk before we exit
  RETURN_IF_ERROR(show_final(o, j));
  return outcome(j);
}

Status run_rotate(const RotateOptions& o) {
  const int ops = !o.to.empty() + o.pause + o.resume + o.cancel + o.status;
  if (ops > 1) return Status(Code::kInvalidArgument, "give one of --to, --status, --pause, --resume, --cancel");
  if (o.all && o.to.empty()) return Status(Code::kInvalidArgument, "--all goes with --to");
  if (o.reencrypt && o.to.empty()) return Status(Code::kInvalidArgument, "--reencrypt goes with --to");
  return o.offline ? run_offline(o) : run_online(o);
}

}  // namespace

void add_rotate_command(CLI::App& app, Commands& out) {
  auto o = std::make_shared<RotateOptions>();
  CLI::App* cmd = app.add_subcommand("rotate", "Move every file of a vault to another key, in the background");
  cmd->add_option("TARGET", o->target, "The mountpoint (the running daemon does the work), or with --offline the backing directory")
      ->required();
  cmd->add_option("--to", o->to,
                  "The key to move to: a keyring key NAME (its newest version) or NAME:VERSION, or a KMS key "
                  "alias, id or ARN. New files use it at once; the worker moves the others");
  cmd->add_flag("--all", o->all,
                "Re-wrap files already under the target too (after the KMS rotated the key's material)");
  cmd->add_flag("--reencrypt", o->reencrypt,
                "Also give every file a fresh data key and seal all its blocks again (after a suspected data-key "
                "leak); the file stays readable and writable meanwhile");
  cmd->add_option("--rate-mb", o->rate_mb, "With --reencrypt: MiB of ciphertext rewritten per second at most (default 64; 0 = unthrottled)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--rate", o->rate, "Files per second at most (default 1000; 0 = unthrottled)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--kms-rate", o->kms_rate, "Key provider calls per second at most (default 100; 0 = unthrottled)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_flag("--status", o->status, "Show the progress (the default without another action)");
  cmd->add_flag("--json", o->json, "Print the status as one JSON object");
  cmd->add_flag("--pause", o->pause, "Pause the running rotation (it stays paused across remounts)");
  cmd->add_flag("--resume", o->resume, "Resume a paused (or, offline, an interrupted) rotation");
  cmd->add_flag("--cancel", o->cancel, "Stop the rotation; files already moved stay under the new key");
  cmd->add_flag("--wait", o->wait, "Wait until the rotation ends, with a progress bar on a terminal; the exit status says how it ended");
  cmd->add_flag("--offline", o->offline, "Work on an unmounted backing directory (refused while it is mounted)");
  cmd->add_option("--keyring", o->keyring, "Keyring file (--offline; default: $KMSFS_KEYRING, then this host's trust record of the vault)");
  add_passphrase_options(*cmd, o->passphrase);
  add_aws_options(*cmd, o->aws);
  cmd->footer(
      "Examples:\n"
      "  kmsfs keyring rotate /etc/kmsfs/keyring main     # a new version of key main\n"
      "  kmsfs rotate /mnt/data --to main --wait          # move every file to it\n"
      "  kmsfs rotate /mnt/data --status\n"
      "  kmsfs rotate --offline /srv/vault --to alias/new-key");
  out.push_back({"rotate", cmd, [o] { return run_rotate(*o); }});
}

}  // namespace kmsfs::cli
