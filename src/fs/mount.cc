#include "fs/mount.h"

#include <fcntl.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/wait.h>

#include <csignal>
#include <sys/stat.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdarg>
#include <cstdio>
#include <fstream>
#include <future>
#include <mutex>
#include <string>
#include <thread>

#include "fs/fd_limit.h"
#include "fs/fuse_api.h"
#include "fs/fuse_ops.h"
#include "fs/mount_options.h"

namespace kmsfs {

namespace {

// libfuse prints its own complaints to stderr ("fuse: unknown option(s) ..."), which made
// a failed mount print two lines. Its messages go to the log instead, and while a mount
// is being set up they are kept for the one error line that says why it failed.
thread_local std::string* t_fuse_setup_messages = nullptr;

void fuse_log_to_spdlog(enum fuse_log_level level, const char* fmt, va_list ap) {
  char buf[1024];
  std::vsnprintf(buf, sizeof buf, fmt, ap);
  std::string msg(buf);
  while (!msg.empty() && (msg.back() == '\n' || msg.back() == ' ')) msg.pop_back();
  if (msg.starts_with("fuse: ")) msg.erase(0, 6);
  if (t_fuse_setup_messages != nullptr) {
    *t_fuse_setup_messages += (t_fuse_setup_messages->empty() ? "" : "; ") + msg;
    return;
  }
  if (level <= FUSE_LOG_ERR) {
    spdlog::error("libfuse: {}", msg);
  } else {
    spdlog::debug("libfuse: {}", msg);
  }
}

// Collects libfuse's messages on this thread for its lifetime.
class FuseSetupMessages {
 public:
  FuseSetupMessages() {
    static std::once_flag once;
    std::call_once(once, [] { fuse_set_log_func(fuse_log_to_spdlog); });
    t_fuse_setup_messages = &text_;
  }
  ~FuseSetupMessages() { t_fuse_setup_messages = nullptr; }
  FuseSetupMessages(const FuseSetupMessages&) = delete;
  FuseSetupMessages& operator=(const FuseSetupMessages&) = delete;
  std::string why(const std::string& fallback) const { return text_.empty() ? fallback : text_; }

 private:
  std::string text_;
};

}  // namespace

bool is_dead_mount(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) != 0 && errno == ENOTCONN;
}

Status unmount(const std::string& mountpoint) {
  if (::umount2(mountpoint.c_str(), 0) == 0) return Status::Ok();
  int e = errno;
  if (e == EPERM) {
    // Not root: fusermount3 is setuid and lets the mounting user unmount.
    pid_t pid = ::fork();
    if (pid == 0) {
      ::execlp("fusermount3", "fusermount3", "-u", "--", mountpoint.c_str(), static_cast<char*>(nullptr));
      ::_exit(127);
    }
    int wst = 0;
    if (pid > 0 && ::waitpid(pid, &wst, 0) == pid && WIFEXITED(wst) && WEXITSTATUS(wst) == 0) return Status::Ok();
    return Status(Code::kIo, "unmount " + mountpoint + ": fusermount3 -u failed", EPERM);
  }
  if (e == EINVAL) return Status(Code::kInvalidArgument, mountpoint + " is not a mountpoint", EINVAL);
  return Status::Io(e, "unmount " + mountpoint);
}

Result<std::unique_ptr<FuseMount>> FuseMount::mount(Vault& vault, const MountConfig& cfg) {
  if (is_dead_mount(cfg.mountpoint)) {
    spdlog::warn("{}: the daemon of an earlier mount is gone; unmounting it lazily", cfg.mountpoint);
    if (::umount2(cfg.mountpoint.c_str(), MNT_DETACH) != 0)
      return Status::Io(errno, "lazy unmount of the dead mount at " + cfg.mountpoint);
  }
  struct stat st;
  if (::stat(cfg.mountpoint.c_str(), &st) != 0) return Status::Io(errno, "mountpoint " + cfg.mountpoint);
  if (!S_ISDIR(st.st_mode)) return Status(Code::kInvalidArgument, "mountpoint " + cfg.mountpoint + " is not a directory");

  UniqueFd root(::open(cfg.backing.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!root.valid()) return Status::Io(errno, "backing directory " + cfg.backing);

  // Every inode the kernel knows holds a descriptor, and the kernel keeps inodes for as
  // long as its caches do: the more descriptors, the more files clients can hold open and
  // the later the daemon must make the kernel forget inodes. The budget is sized from the
  // limit now in force.
  FsOptions fs_opts = cfg.fs;
  const FdLimit fds = raise_fd_limit();
  fs_opts.fd_limit = fds.limit;
  fs_opts.fd_reserve = kFdReserve + cfg.max_threads;
  FdShortage::process().set_limit(fs_opts.fd_limit, fs_opts.fd_reserve);
  std::unique_ptr<FuseMount> m(new FuseMount());
  m->fs_ = std::make_unique<Filesystem>(vault, std::move(root), fs_opts);
  m->mountpoint_ = cfg.mountpoint;
  m->max_threads_ = cfg.max_threads;

  const std::string opts = fuse_option_string(cfg.backing, cfg.options);
  std::vector<std::string> argv_s = {"kmsfs", "-o", opts};
  std::vector<char*> argv;
  for (auto& s : argv_s) argv.push_back(s.data());
  fuse_args args = FUSE_ARGS_INIT(static_cast<int>(argv.size()), argv.data());
  fuse_lowlevel_ops ops = make_fuse_ops();
  FuseSetupMessages fuse_says;
  m->session_ = fuse_session_new(&args, &ops, sizeof ops, m->fs_.get());
  // libfuse may have copied the arguments into memory it owns (fuse_opt_add_arg).
  fuse_opt_free_args(&args);
  if (!m->session_)
    return Status(Code::kInvalidArgument, "FUSE rejected the mount options (" + fuse_says.why(opts) + ")");
  if (fuse_session_mount(m->session_, cfg.mountpoint.c_str()) != 0)
    return Status(Code::kIo, "mounting " + cfg.mountpoint + " failed (" +
                                 fuse_says.why("is /dev/fuse available, and the mountpoint empty or allowed?") + ")",
                  EIO);
  m->mounted_ = true;
  log_fd_limit(fds);
  // What the kernel was told, for whoever turned debug lines on to find out why a mount
  // behaves as it does (the options say whether writeback, allow_other, ... are on).
  spdlog::debug("FUSE options {}; up to {} worker threads; {} descriptors held in reserve", opts, cfg.max_threads,
                fs_opts.fd_reserve);
  Filesystem* fs = m->fs_.get();
  if (cfg.key_cache) {
    m->key_cache_ = cfg.key_cache;
    cfg.key_cache->set_eviction_listener([fs](const CacheKeyId& id) { fs->key_evicted(id); });
  }
  m->shim_ = std::make_unique<KernelShim>([fs](uint64_t ino) { return fs->kill_suidgid(ino); });
  if (!m->shim_->install(m->session_))
    spdlog::warn("{}: cannot hook the FUSE channel; small writes will be slower", cfg.mountpoint);
  return m;
}

Status FuseMount::serve() {
  if (fuse_set_signal_handlers(session_) != 0) return Status(Code::kInternal, "cannot install signal handlers");
  // Asks the kernel to forget inodes when their fds pile up (Filesystem::await_eviction).
  std::promise<void> evictor_done;
  std::future<void> evictor_finished = evictor_done.get_future();
  std::thread evictor([this, done = std::move(evictor_done)]() mutable {
    while (auto names = fs_->await_eviction()) {
      for (const auto& [parent, name] : *names) {
        if (fs_->eviction_stopped()) break;  // shutting down: the rest does not matter
        // ENOENT (the dentry is gone already) is fine.
        fuse_lowlevel_notify_inval_entry(session_, parent, name.c_str(), name.size());
      }
    }
    done.set_value();
  });
  // Revokes evicted keys from open files: write back and drop the kernel's cached pages
  // first (FUSE_NOTIFY_INVAL_INODE, which writes dirty pages through us while the key still
  // works), then end the file's right to the key.
  std::promise<void> revoker_done;
  std::future<void> revoker_finished = revoker_done.get_future();
  std::thread revoker([this, done = std::move(revoker_done)]() mutable {
    while (auto items = fs_->await_revocations()) {
      for (const auto& [ino, guard] : *items) {
        fuse_lowlevel_notify_inval_inode(session_, ino, 0, 0);  // ENOENT: forgotten meanwhile
        if (auto g = guard.lock()) g->expire();
      }
    }
    done.set_value();
  });
  // Makes the kernel forget what it cached of a file whose write failed: pages, attributes
  // and (through the dentry) the size it set itself (Filesystem::await_invalidations). A
  // thread of its own, as both notifications may wait for requests only the workers answer.
  std::promise<void> invalidator_done;
  std::future<void> invalidator_finished = invalidator_done.get_future();
  std::thread invalidator([this, done = std::move(invalidator_done)]() mutable {
    while (auto items = fs_->await_invalidations()) {
      for (const auto& inv : *items) {
        // ENOENT from either (forgotten or gone meanwhile) is fine: nothing is cached then.
        fuse_lowlevel_notify_inval_inode(session_, inv.ino, 0, 0);
        if (inv.parent != 0) fuse_lowlevel_notify_inval_entry(session_, inv.parent, inv.name.c_str(), inv.name.size());
      }
    }
    done.set_value();
  });
  fuse_loop_config* lc = fuse_loop_cfg_create();
  fuse_loop_cfg_set_clone_fd(lc, 1);
  fuse_loop_cfg_set_max_threads(lc, max_threads_);
  int rc = fuse_session_loop_mt(session_, lc);
  fuse_loop_cfg_destroy(lc);
  // An unmount ends the connection; a worker reading just then may get ECONNABORTED
  // instead of ENODEV (seen on 6.x kernels, more often the more workers are idle), and
  // the loop reports that as its error. Once the mount is gone from the mountpoint that
  // was a clean unmount; a connection aborted under a mount that is still there (fusectl
  // abort) leaves it dead (ENOTCONN), and stays an error.
  if (rc == -ECONNABORTED && !is_dead_mount(mountpoint_)) rc = 0;
  fs_->stop_eviction();
  fs_->stop_revocations();
  fs_->stop_invalidations();
  // After a signal the loop stops with requests still queued, and a notification may be
  // waiting for a directory lock held by a process whose request is among them: it would
  // wait forever, and so would we. Aborting the connection (MNT_FORCE: the kernel fails
  // every pending request) releases it.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  if (evictor_finished.wait_until(deadline) != std::future_status::ready ||
      revoker_finished.wait_until(deadline) != std::future_status::ready ||
      invalidator_finished.wait_until(deadline) != std::future_status::ready) {
    spdlog::warn("{}: an invalidation is stuck behind unanswered requests; aborting the connection", mountpoint_);
    ::umount2(mountpoint_.c_str(), MNT_FORCE);
  }
  evictor.join();
  revoker.join();
  invalidator.join();
  fuse_remove_signal_handlers(session_);
  if (mounted_) {
    fuse_session_unmount(session_);
    mounted_ = false;
  }
  if (rc != 0 && rc != SIGINT && rc != SIGTERM && rc != SIGHUP)
    return Status(Code::kIo, "FUSE session loop ended with error " + std::to_string(rc));
  return Status::Ok();
}

FuseMount::~FuseMount() {
  // The cache outlives us; its listener points into fs_.
  if (key_cache_) key_cache_->set_eviction_listener(nullptr);
  if (session_) {
    if (mounted_) fuse_session_unmount(session_);
    fuse_session_destroy(session_);
  }
}

}  // namespace kmsfs
