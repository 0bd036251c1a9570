// kmsfs mount / kmsfs umount.
//
// Daemon start-up, in order: the parent resolves paths and reads the passphrase (the only
// step that may need the terminal), then forks. The child detaches (setsid), opens the
// keyring and the vault, mounts, and reports "ok" or the error over a pipe before it
// starts serving; the parent waits for that report and then for the mount to answer a
// stat, so `kmsfs mount` returns only once the filesystem works, or says why it does not.
// Key material is unwrapped only in the child, so it lives only in the child's locked
// memory (locks do not survive fork).
#include <fcntl.h>
#include <limits.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include <chrono>
#include <filesystem>
#include <algorithm>
#include <cstdio>
#include <fstream>
#include <optional>
#include <sstream>
#include <thread>
#include <vector>

#include "cli/commands.h"
#include "cli/daemon_log.h"
#include "cli/graceful_stop.h"
#include "cli/service_notify.h"
#include "cli/exit_codes.h"
#include "cli/keyring_locator.h"
#include "cli/mount_config.h"
#include "cli/mountinfo.h"
#include "cli/passphrase_options.h"
#include "cli/providers.h"
#include "cli/vault_path.h"
#include "control/audit_log.h"
#include "control/control_socket.h"
#include "control/metrics_http.h"
#include "control/mount_stats.h"
#include "control/rotation_control.h"
#include "fs/mount.h"
#include "fs/mount_options.h"
#include "keys/keyring/keyring_provider.h"
#include "rotation/rotation_worker.h"
#include "vault/vault.h"
#include "vault/reencrypt_recovery.h"
#include "vault/vault_lock.h"

namespace kmsfs::cli {

namespace {

struct MountArgs {
  std::string backing;
  std::string mountpoint;
  std::optional<std::string> keyring;
  bool foreground = false;
  std::vector<std::string> options;
  double attr_timeout = 1.0;
  double entry_timeout = 1.0;
  bool no_writeback = false;
  unsigned threads = 16;
  double key_ttl = 300;
  size_t max_cached_keys = 10000;
  double stale_if_error = 0;
  std::string metrics_listen;
  std::string log_level;
  size_t key_pool = 512;
  uint64_t intermediate_max_files = 0;
  double intermediate_max_age = 0;
  std::string audit_log;
  uint64_t audit_log_max_size = AuditLogOptions{}.max_size;
  unsigned audit_log_keep = AuditLogOptions{}.keep;
  bool audit_required = false;
  PassphraseOptions pass;
  AwsCliOptions aws;
  std::string config_file;  // only for --help: read before parsing
};

// The backing directory of the kmsfs mount at `mountpoint`, or "" if the top mount there
// is not kmsfs.
std::string backing_of(const std::string& mountpoint) {
  auto m = mount_at(mountpoint);
  return m ? m->kmsfs_backing() : "";
}

// umount returns once the kernel lets go; the daemon still flushes and exits after that,
// holding the vault lock. Waiting for the lock makes `kmsfs umount X && kmsfs mount ...`
// (a restart, a script) work instead of being refused as "in use".
Status umount_and_wait(const std::string& mountpoint) {
  const std::string backing = backing_of(mountpoint);
  RETURN_IF_ERROR(unmount(mountpoint));
  if (backing.empty()) return Status::Ok();
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (std::chrono::steady_clock::now() < until) {
    auto held = VaultLock::holder(backing);
    if (!held.ok() || !*held) return Status::Ok();
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  std::fprintf(stderr, "kmsfs: umount: %s is unmounted; its daemon is still flushing after 60 s\n", mountpoint.c_str());
  return Status::Ok();
}

Result<std::string> absolute(const std::string& p, const char* what) {
  char buf[PATH_MAX];
  if (::realpath(p.c_str(), buf)) return std::string(buf);
  // A mountpoint whose daemon died cannot be resolved (ENOTCONN); its lexical absolute
  // path is what the recovery needs.
  if (errno == ENOTCONN) return std::filesystem::absolute(p).lexically_normal().string();
  return Status::Io(errno, std::string(what) + " " + p);
}

// The audit log's absolute path (its directory resolved), refused inside the backing
// directory or the mount: a log in the vault would sit beside the ciphertext it
// describes (and be copied with it), one in the mount would be written through the
// mount's own key operations.
Result<std::string> audit_log_path(const std::string& p, const std::string& backing, const std::string& mountpoint) {
  const std::filesystem::path given = std::filesystem::absolute(p).lexically_normal();
  if (!given.has_filename()) return Status(Code::kInvalidArgument, "--audit-log " + p + ": a file name is needed");
  ASSIGN_OR_RETURN(std::string dir, absolute(given.parent_path().string(), "--audit-log directory"));
  const std::string path = (std::filesystem::path(dir) / given.filename()).string();
  auto inside = [&path](const std::string& d) { return d == "/" || path == d || path.starts_with(d + "/"); };
  if (inside(backing))
    return Status(Code::kInvalidArgument, "--audit-log " + path + " is inside the backing directory " + backing +
                                              ": put the audit log outside the vault and the mount");
  if (inside(mountpoint))
    return Status(Code::kInvalidArgument, "--audit-log " + path + " is inside the mountpoint " + mountpoint +
                                              ": put the audit log outside the vault and the mount");
  return path;
}


// Everything after the fork (or in the foreground): keys, vault, mount, serve.
// `report` is called once, with ok or the start-up error, before serving begins.
Status mount_and_serve(const MountArgs& a, std::optional<SecureBuffer> passphrase,
                       const std::string& keyring_path, TrustAnchor anchor,
                       const std::function<void(const Status&)>& report) {
  ::umask(0);  // the kernel already applied the caller's umask; ours must not apply twice
  StartupProgress progress;  // systemd's start timeout, extended while a KMS is slow
  auto fail = [&](Status s) {
    progress.finish();
    report(s);
    return s;
  };
  // The AWS provider is made here, after the fork, on first use: libcurl's connections
  // and the credentials refresh thread do not survive a fork. The keyring (if any) is
  // opened up front, with the passphrase read before the fork.
  KeyProviders providers([aws = a.aws](ProviderId id) -> Result<std::unique_ptr<KeyProvider>> {
    if (id == ProviderId::kAwsKms) return make_aws_provider(aws);
    return Status(Code::kInvalidArgument, "a file needs the " + std::string(provider_name(id)) +
                                              " provider: pass --keyring");
  });
  // Only the keys this host trusts for the vault, from the first call on.
  providers.set_trust(anchor.record.key_trust());
  // Before the first key operation (the filesystem key's unwrap), so the log has them all.
  std::shared_ptr<AuditLog> audit_log;
  if (!a.audit_log.empty()) {
    AuditLogOptions ao;
    ao.path = a.audit_log;
    ao.max_size = a.audit_log_max_size;
    ao.keep = a.audit_log_keep;
    ao.required = a.audit_required;
    auto opened = AuditLog::open(ao);
    if (!opened.ok()) return fail(opened.status());
    audit_log = std::move(*opened);
    providers.set_audit(audit_log);
  }
  if (!keyring_path.empty()) {
    // Re-home the passphrase in memory locked by this process before using it.
    std::optional<SecureBuffer> pw;
    if (passphrase) pw = passphrase->clone();
    passphrase.reset();
    progress.step("opening the keyring");
    auto kr = KeyringProvider::open(keyring_path, pw ? &*pw : nullptr);
    if (!kr.ok()) return fail(kr.status());
    providers.add(std::move(*kr));
  }
  // Held until the daemon exits: no second mount and no offline writer meanwhile.
  auto lock = VaultLock::acquire(a.backing, "a kmsfs mount at " + a.mountpoint);
  if (!lock.ok()) return fail(lock.status());
  // Before any file is opened: a re-encryption step cut short by a crash is undone.
  auto recovered = recover_reencryption(a.backing);
  if (!recovered.ok()) return fail(recovered.status());
  if (!recovered->empty()) spdlog::warn("{}", *recovered);
  progress.step("opening the vault (its keys may come from the KMS)");
  auto vault = Vault::open(a.backing, providers, std::move(anchor));
  if (!vault.ok()) return fail(vault.status());
  auto ms = [](double s) { return std::chrono::milliseconds(static_cast<int64_t>(s * 1000)); };
  KeyCacheOptions co;
  co.ttl = ms(a.key_ttl);
  co.max_keys = a.max_cached_keys;
  co.stale_if_error = ms(a.stale_if_error);
  KeyCache cache(providers, co);  // outlives the mount below: declared first
  (*vault)->use_key_cache(&cache);
  KeySourceOptions ko;
  ko.intermediate_max_files = a.intermediate_max_files;
  ko.intermediate_max_age = ms(a.intermediate_max_age);
  ko.pool.max_size = a.key_pool;
  ko.pool.ttl = co.ttl;
  progress.step("starting the key sources");
  if (Status s = (*vault)->start_key_sources(ko); !s.ok()) return fail(s);
  progress.step("mounting " + a.mountpoint);
  MountConfig cfg;
  cfg.backing = a.backing;
  cfg.mountpoint = a.mountpoint;
  cfg.fs.attr_timeout = a.attr_timeout;
  cfg.fs.entry_timeout = a.entry_timeout;
  cfg.fs.writeback_cache = !a.no_writeback;
  for (auto& o : split_mount_options(a.options)) {
    // Ours, not the kernel's: undecryptable names to show (fnmatch pattern).
    if (o.rfind("badname=", 0) == 0) cfg.fs.badname.push_back(o.substr(8));
    else cfg.options.push_back(std::move(o));
  }
  cfg.max_threads = a.threads;
  cfg.key_cache = &cache;
  auto m = FuseMount::mount(**vault, cfg);
  if (!m.ok()) return fail(m.status());
  // Declared after the mount: destroyed (its thread stopped, its progress checkpointed)
  // before the mount goes.
  RotationWorker rotation(**vault);
  if (Status r = rotation.resume_saved(); !r.ok())
    spdlog::error("the interrupted rotation of {} cannot continue: {}", a.backing, r.message());
  MountStatsSources stats{a.mountpoint, a.backing, &providers, &cache, vault->get(), &rotation, audit_log.get()};
  std::unique_ptr<MetricsHttp> metrics;  // before the control socket: its stats name the address
  if (!a.metrics_listen.empty()) {
    auto mh = MetricsHttp::start(a.metrics_listen, [&stats] { return mount_stats_prometheus(stats); });
    if (!mh.ok()) return fail(mh.status());
    metrics = std::move(*mh);
    stats.metrics_url = metrics->url();
    spdlog::info("metrics at {}", stats.metrics_url);
  }
  auto control = ControlServer::start(control_socket_path(a.mountpoint), [&stats, &cache, &vault, &rotation](std::string_view cmd) {
    if (cmd == "ping") return std::string(R"({"ok":true})");
    if (cmd.starts_with("rotate ")) return handle_rotation_command(rotation, cmd.substr(7));
    if (cmd == "stats") return mount_stats_json(stats).dump();
    if (cmd == "flush-keys") {
      const size_t n = cache.stats().keys;
      cache.flush();
      (*vault)->flush_key_sources();
      spdlog::info("flush-keys: dropped {} cached key(s)", n);
      return nlohmann::json{{"flushed", n}}.dump();
    }
    return nlohmann::json{{"error", "unknown command '" + std::string(cmd) + "'"}}.dump();
  });
  // The mount works without it; stats and flush-keys do not.
  if (!control.ok()) spdlog::warn("no control socket: {}", control.status().message());
  progress.finish();
  // The address bound (the port chosen for :0) reaches the mount command's message.
  report(metrics ? Status(Code::kOk, "metrics at " + stats.metrics_url) : Status::Ok());
  spdlog::info("serving {} at {}", a.backing, a.mountpoint);
  Status s;
  {
    GracefulStop stop(a.mountpoint);  // SIGTERM: unmount, writing back cached data first
    ReadinessWatch ready(a.mountpoint, "serving " + a.backing + " at " + a.mountpoint);
    s = (*m)->serve();
  }
  service_notify("STOPPING=1\nSTATUS=stopping: unmounted " + a.mountpoint);
  spdlog::info("unmounted {}", a.mountpoint);
  return s;
}

// Waits until the mountpoint answers as a kmsfs mount (the child serves INIT and stat).
Status wait_until_mounted(const std::string& mp, pid_t child) {
  struct stat parent_st {};
  std::string parent_dir = mp == "/" ? "/" : mp.substr(0, mp.find_last_of('/'));
  if (parent_dir.empty()) parent_dir = "/";
  ::stat(parent_dir.c_str(), &parent_st);
  for (int i = 0; i < 300; ++i) {
    struct stat st {};
    if (::stat(mp.c_str(), &st) == 0 && st.st_dev != parent_st.st_dev) return Status::Ok();
    int wst;
    if (::waitpid(child, &wst, WNOHANG) == child) return Status(Code::kIo, "the daemon exited during start-up", EIO);
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return Status(Code::kUnavailable, "the mount did not answer within 6 s", ETIMEDOUT);
}

Status run_mount(MountArgs& a) {
  ASSIGN_OR_RETURN(a.backing, absolute(a.backing, "backing directory"));
  ASSIGN_OR_RETURN(a.mountpoint, absolute(a.mountpoint, "mountpoint"));
  if (!a.audit_log.empty()) {
    ASSIGN_OR_RETURN(a.audit_log, audit_log_path(a.audit_log, a.backing, a.mountpoint));
  } else if (a.audit_required) {
    return Status(Code::kInvalidArgument, "--audit-required needs --audit-log PATH");
  }
  // This host's trust anchor of the vault: refused here, on the terminal, if there is none.
  ASSIGN_OR_RETURN(TrustAnchor anchor, load_trust_anchor(a.backing, trust_store()));
  // The keyring is needed if the vault trusts a keyring key (a KMS vault, only if asked for).
  std::string keyring_path;
  std::optional<SecureBuffer> passphrase;
  if (anchor.record.key_trust().allows_provider(ProviderId::kKeyring) || a.keyring || a.pass.given()) {
    ASSIGN_OR_RETURN(keyring_path, locate_keyring({a.keyring, anchor.record.keyring, a.backing}));
    ASSIGN_OR_RETURN(passphrase, keyring_passphrase(keyring_path, a.pass.source_or_credential()));
  }

  // Say it here too: a daemonized child's warning goes to syslog only.
  if (is_dead_mount(a.mountpoint)) {
    std::fprintf(stderr, "kmsfs: the daemon of an earlier mount at %s is gone; unmounting it lazily\n",
                 a.mountpoint.c_str());
  } else if (auto m = mount_at(a.mountpoint); m && m->is_fuse()) {
    // Stacking would hide the live mount (and its control socket) under this one. An
    // autofs trigger (systemd's automount) or any other filesystem is mounted over as usual.
    return Status(Code::kAlreadyExists, "a FUSE filesystem (" + m->fstype + ", " + m->source +
                                            ") is already mounted at " + a.mountpoint + ": unmount it first");
  }

  if (a.foreground) {
    ASSIGN_OR_RETURN(std::string logs_to, start_daemon_log({false, a.mountpoint, a.log_level}));
    (void)logs_to;
    return mount_and_serve(a, std::move(passphrase), keyring_path, std::move(anchor), [](const Status&) {});
  }

  int pipefd[2];
  if (::pipe2(pipefd, O_CLOEXEC) != 0) return Status::Io(errno, "pipe");
  std::fflush(nullptr);
  pid_t pid = ::fork();
  if (pid < 0) return Status::Io(errno, "fork");
  if (pid == 0) {
    ::close(pipefd[0]);
    ::setsid();
    auto logs_to = start_daemon_log({true, a.mountpoint, a.log_level});
    auto report = [fd = pipefd[1], where = logs_to.ok() ? *logs_to : ""](const Status& s) {
      std::string msg = s.ok() ? "ok " + where + (s.message().empty() ? "" : "; " + s.message())
                               : std::to_string(exit_code(s)) + " " + s.message();
      ssize_t ignored = ::write(fd, msg.data(), msg.size());
      (void)ignored;
      ::close(fd);
      if (s.ok()) {
        int null = ::open("/dev/null", O_RDWR | O_CLOEXEC);
        if (null >= 0) {
          ::dup2(null, 0), ::dup2(null, 1), ::dup2(null, 2);
          ::close(null);
        }
      }
    };
    if (!logs_to.ok()) {
      report(logs_to.status());
      ::_exit(exit_code(logs_to.status()));
    }
    Status s = mount_and_serve(a, std::move(passphrase), keyring_path, std::move(anchor), report);
    if (!s.ok()) spdlog::error("{}", s.message());
    ::_exit(s.ok() ? 0 : exit_code(s));
  }
  ::close(pipefd[1]);
  passphrase.reset();  // the child has its own copy; wipe ours now
  std::string msg;
  char buf[512];
  ssize_t n;
  while ((n = ::read(pipefd[0], buf, sizeof buf)) > 0) msg.append(buf, static_cast<size_t>(n));
  ::close(pipefd[0]);
  if (!msg.starts_with("ok ")) {
    int wst = 0;
    ::waitpid(pid, &wst, 0);
    if (msg.empty()) return Status(Code::kInternal, "the daemon died during start-up");
    size_t sp = msg.find(' ');
    int code = std::atoi(msg.substr(0, sp).c_str());
    std::string text = sp == std::string::npos ? msg : msg.substr(sp + 1);
    // Re-create a Status with the child's exit code semantics.
    static const std::pair<int, Code> kBack[] = {
        {kExitUsage, Code::kInvalidArgument}, {kExitNotFound, Code::kNotFound}, {kExitPermission, Code::kPermissionDenied},
        {kExitCorrupt, Code::kCorrupt}, {kExitUnsupported, Code::kUnsupported}, {kExitIo, Code::kIo},
        {kExitExists, Code::kAlreadyExists}, {kExitUnavailable, Code::kUnavailable}};
    for (const auto& [ec, c] : kBack)
      if (ec == code) return Status(c, text);
    return Status(Code::kInternal, text);
  }
  RETURN_IF_ERROR(wait_until_mounted(a.mountpoint, pid));
  std::printf("kmsfs: mounted %s at %s (daemon pid %d; logs go to %s)\n", a.backing.c_str(),
              a.mountpoint.c_str(), pid, msg.substr(3).c_str());
  return Status::Ok();
}

}  // namespace

void add_mount_commands(CLI::App& app, Commands& out) {
  auto args = std::make_shared<MountArgs>();
  CLI::App* m = app.add_subcommand("mount", "Mount a vault: a plaintext view of BACKING at MOUNTPOINT");
  // `kmsfs mount NAME` and --config FILE are expanded before parsing (cli/mount_config.h);
  // declared here for --help, and so their names are no mount setting.
  m->add_option("BACKING", args->backing,
                "The vault's backing directory (ciphertext); or a NAME alone: the mount that "
                "/etc/kmsfs/NAME.conf describes")
      ->required();
  m->add_option("MOUNTPOINT", args->mountpoint, "Where the plaintext view appears")->required();
  m->add_option("--keyring", args->keyring, "Keyring file (default: $KMSFS_KEYRING, then the one in the vault's trust record)");
  add_aws_options(*m, args->aws);
  m->add_flag("-f,--foreground", args->foreground, "Stay in the foreground and log to stderr (for systemd and tests)");
  m->add_option("-o", args->options, "Mount options, comma-separated: allow_other (implies default_permissions), default_permissions, ro, badname=PATTERN (show undecryptable names matching the glob, with \" KMSFS_BAD_NAME\" appended), ...")
      ->allow_extra_args(false);
  m->add_option("--attr-timeout", args->attr_timeout, "Seconds the kernel caches attributes (default 1)")->check(CLI::NonNegativeNumber);
  m->add_option("--entry-timeout", args->entry_timeout, "Seconds the kernel caches names (default 1)")->check(CLI::NonNegativeNumber);
  m->add_flag("--no-writeback", args->no_writeback, "Disable the kernel writeback cache");
  m->add_option("--threads", args->threads, "Maximum FUSE worker threads (default 16)")->check(CLI::Range(1, 256));
  m->add_option("--key-ttl", args->key_ttl,
                "Seconds an unwrapped key is cached; a key revoked in the KMS stops working within this (default 300)")
      ->check(CLI::Range(0.1, 86400.0));
  m->add_option("--max-cached-keys", args->max_cached_keys, "Keys cached at most, least recently used go first (default 10000)")
      ->check(CLI::Range(size_t(1), size_t(10'000'000)));
  m->add_option("--stale-if-error", args->stale_if_error,
                "Seconds past its TTL a cached key may still be used while the KMS is unreachable (never when it "
                "refuses; default 0)")
      ->check(CLI::Range(0.0, 86400.0));
  m->add_option("--key-pool", args->key_pool,
                "Per-file mode with AWS KMS: data keys pre-generated in the background so creates do not wait "
                "for the KMS (at most this many; 0 turns the pool off; default 512)")
      ->check(CLI::Range(size_t(0), size_t(100'000)));
  m->add_option("--intermediate-max-files", args->intermediate_max_files,
                "Intermediate mode: roll the intermediate key after this many new files (lower than the "
                "vault's setting only)")
      ->check(CLI::Range(uint64_t(1), uint64_t(1'000'000'000)));
  m->add_option("--intermediate-max-age", args->intermediate_max_age,
                "Intermediate mode: roll the intermediate key after this many seconds (lower than the vault's "
                "setting only; --key-ttl caps it too)")
      ->check(CLI::Range(0.1, 30.0 * 86400));
  m->add_option("--metrics-listen", args->metrics_listen,
                "Serve the mount's stats as Prometheus text at http://HOST:PORT/metrics (e.g. 127.0.0.1:9411)")
      ->type_name("HOST:PORT");
  m->add_option("--log-level", args->log_level,
                "The daemon's log level: trace, debug, info, warning, error, critical or off (default: "
                "$SPDLOG_LEVEL, else info); no level logs a key, a passphrase or a plaintext name")
      ->type_name("LEVEL")
      ->check([](const std::string& v) { return valid_log_level(v) ? std::string() : "unknown log level " + v; });
  m->add_option("--audit-log", args->audit_log,
                "Write every key operation (generate, unwrap, rewrap, cache hit/miss, flush, rotation step) as a "
                "JSON line to PATH, outside the vault and the mount (off by default; docs/OPERATIONS.md)")
      ->type_name("PATH");
  m->add_option("--audit-log-max-size", args->audit_log_max_size,
                "Rotate the audit log to PATH.1 before it grows past this many bytes (suffixes K, M, G; default 64M)")
      ->transform(CLI::AsSizeValue(false))
      ->check(CLI::Range(uint64_t(4096), uint64_t(1) << 50))
      ->type_name("SIZE");
  m->add_option("--audit-log-keep", args->audit_log_keep, "Rotated audit logs kept: PATH.1 .. PATH.N (default 5)")
      ->check(CLI::Range(1u, 1000u))
      ->type_name("N");
  m->add_flag("--audit-required", args->audit_required,
              "Fail a key operation (EIO) whose audit line cannot be written within 5 s, instead of counting the loss");
  add_passphrase_options(*m, args->pass);
  m->add_option("--config", args->config_file,
                "A config file of KEY = VALUE lines (any of these options; backing, mountpoint). Flags and -o "
                "win over KMSFS_<KEY> in the environment, which wins over the file (docs/OPERATIONS.md)");
  out.push_back({"mount", m, [args] { return run_mount(*args); }});

  auto mp = std::make_shared<std::string>();
  CLI::App* u = app.add_subcommand("umount", "Unmount a kmsfs mount (the daemon flushes and exits); same as fusermount3 -u");
  u->add_option("MOUNTPOINT", *mp, "The mountpoint")->required();
  out.push_back({"umount", u, [mp] {
                   auto abs = absolute(*mp, "mountpoint");
                   return umount_and_wait(abs.ok() ? *abs : *mp);
                 }});
}

}  // namespace kmsfs::cli
