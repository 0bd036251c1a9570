#include "fs/mount.h"

#include <fcntl.h>
#include <sys/mount.h>
#include <sys/wait.h>

#include <csignal>
#include <sys/stat.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include <cerrno>

#include "fs/fuse_api.h"
#include "fs/fuse_ops.h"

namespace kmsfs {

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

  std::unique_ptr<FuseMount> m(new FuseMount());
  m->fs_ = std::make_unique<Filesystem>(vault, std::move(root), cfg.fs);
  m->mountpoint_ = cfg.mountpoint;
  m->max_threads_ = cfg.max_threads;

  std::string opts = "fsname=kmsfs:" + cfg.backing + ",subtype=kmsfs";
  bool allow_other = false, default_permissions = false;
  for (const auto& o : cfg.options) {
    if (o == "allow_other") allow_other = true;
    if (o == "default_permissions") default_permissions = true;
    opts += "," + o;
  }
  // A root daemon that lets every user in must let the kernel check permissions, or
  // every user could read everything.
  if (allow_other && !default_permissions) opts += ",default_permissions";
  std::vector<std::string> argv_s = {"kmsfs", "-o", opts};
  std::vector<char*> argv;
  for (auto& s : argv_s) argv.push_back(s.data());
  fuse_args args = FUSE_ARGS_INIT(static_cast<int>(argv.size()), argv.data());
  fuse_lowlevel_ops ops = make_fuse_ops();
  m->session_ = fuse_session_new(&args, &ops, sizeof ops, m->fs_.get());
  if (!m->session_) return Status(Code::kInvalidArgument, "FUSE rejected the mount options: " + opts);
  if (fuse_session_mount(m->session_, cfg.mountpoint.c_str()) != 0)
    return Status(Code::kIo, "mounting " + cfg.mountpoint + " failed (is /dev/fuse available, and the mountpoint empty or allowed?)", EIO);
  m->mounted_ = true;
  return m;
}

Status FuseMount::serve() {
  if (fuse_set_signal_handlers(session_) != 0) return Status(Code::kInternal, "cannot install signal handlers");
  fuse_loop_config* lc = fuse_loop_cfg_create();
  fuse_loop_cfg_set_clone_fd(lc, 1);
  fuse_loop_cfg_set_max_threads(lc, max_threads_);
  int rc = fuse_session_loop_mt(session_, lc);
  fuse_loop_cfg_destroy(lc);
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
  if (session_) {
    if (mounted_) fuse_session_unmount(session_);
    fuse_session_destroy(session_);
  }
}

}  // namespace kmsfs
