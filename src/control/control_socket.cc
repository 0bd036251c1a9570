#include "control/control_socket.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include <spdlog/spdlog.h>

#include "base/bytes.h"
#include "crypto/kdf.h"

namespace kmsfs {

namespace {

constexpr size_t kMaxCommand = 8192;  // a rotate request names a key ARN (up to 2 KiB)
constexpr int kIoTimeoutMs = 5000;
// The daemon answers some commands after provider calls (rotate start re-wraps the
// filesystem key), so a client waits longer than the daemon waits for a client.
constexpr int kClientTimeoutMs = 60000;

Result<sockaddr_un> address_of(const std::string& path) {
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  if (path.size() >= sizeof a.sun_path) return Status(Code::kInvalidArgument, "socket path too long: " + path);
  std::memcpy(a.sun_path, path.c_str(), path.size() + 1);
  return a;
}

// Writes all of `data`, or fails (a client that stops reading is given up on).
bool send_all(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

void set_timeouts(int fd, int ms = kIoTimeoutMs) {
  timeval tv{ms / 1000, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

}  // namespace

std::string control_socket_dir() {
  if (::geteuid() == 0) return "/run/kmsfs";
  const char* xdg = ::getenv("XDG_RUNTIME_DIR");
  if (xdg && *xdg == '/') return std::string(xdg) + "/kmsfs";
  return "/tmp/kmsfs-" + std::to_string(::geteuid());
}

std::string control_socket_path(const std::string& mountpoint) {
  // A digest, not the path itself: mountpoints can be longer than sun_path allows.
  const Digest32 d = sha256(as_bytes(mountpoint));
  return control_socket_dir() + "/" + to_hex(ByteSpan(d.data(), 8)) + ".sock";
}

Result<std::unique_ptr<ControlServer>> ControlServer::start(const std::string& path, Handler handler) {
  const std::string dir = std::filesystem::path(path).parent_path().string();
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) return Status::Io(errno, "control socket directory " + dir);
  struct stat st {};
  if (::lstat(dir.c_str(), &st) != 0) return Status::Io(errno, "control socket directory " + dir);
  if (!S_ISDIR(st.st_mode) || st.st_uid != ::geteuid() || (st.st_mode & 077) != 0)
    return Status(Code::kPermissionDenied,
                  "control socket directory " + dir + " must be a directory of ours with mode 0700", EACCES);
  ASSIGN_OR_RETURN(sockaddr_un addr, address_of(path));
  if (::access(path.c_str(), F_OK) == 0) {
    if (control_request(path, "ping").ok())
      return Status(Code::kAlreadyExists, "another kmsfs daemon answers on " + path, EEXIST);
    ::unlink(path.c_str());  // left behind by a daemon that died
  }
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return Status::Io(errno, "control socket");
  const mode_t old = ::umask(0177);  // born 0600: no window in which others may connect
  const int rc = ::bind(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr);
  const int bind_errno = errno;
  ::umask(old);
  if (rc != 0) return Status::Io(bind_errno, "control socket " + path);
  if (::listen(fd.get(), 16) != 0) return Status::Io(errno, "control socket " + path);
  UniqueFd stop(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!stop.valid()) return Status::Io(errno, "eventfd");
  std::unique_ptr<ControlServer> s(new ControlServer(path, std::move(fd), std::move(stop), std::move(handler)));
  s->thread_ = std::jthread([p = s.get()](std::stop_token token) { p->serve(token); });
  return s;
}

ControlServer::ControlServer(std::string path, UniqueFd listen_fd, UniqueFd stop_fd, Handler handler)
    : path_(std::move(path)), listen_fd_(std::move(listen_fd)), stop_fd_(std::move(stop_fd)), handler_(std::move(handler)) {}

ControlServer::~ControlServer() {
  if (thread_.joinable()) {
    thread_.request_stop();
    const uint64_t one = 1;
    (void)!::write(stop_fd_.get(), &one, sizeof one);
    thread_.join();
  }
  ::unlink(path_.c_str());
}

void ControlServer::serve(std::stop_token st) {
  while (!st.stop_requested()) {
    pollfd p[2] = {{listen_fd_.get(), POLLIN, 0}, {stop_fd_.get(), POLLIN, 0}};
    if (::poll(p, 2, -1) < 0) {
      if (errno == EINTR) continue;
      spdlog::error("control socket {}: poll: {}", path_, std::strerror(errno));
      return;
    }
    if (p[1].revents) return;
    if (!(p[0].revents & POLLIN)) continue;
    UniqueFd c(::accept4(listen_fd_.get(), nullptr, nullptr, SOCK_CLOEXEC));
    if (!c.valid()) continue;
    answer(c.get());
  }
}

void ControlServer::answer(int fd) {
  set_timeouts(fd);
  ucred cred{};
  socklen_t len = sizeof cred;
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 || (cred.uid != 0 && cred.uid != ::geteuid())) {
    send_all(fd, R"({"error":"permission denied"})" "\n");
    return;
  }
  std::string cmd;
  char buf[kMaxCommand];
  while (cmd.find('\n') == std::string::npos && cmd.size() < kMaxCommand) {
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    cmd.append(buf, static_cast<size_t>(n));
  }
  if (auto nl = cmd.find('\n'); nl != std::string::npos) cmd.resize(nl);
  // The control thread's exception barrier: a failing handler answers an error and the
  // socket keeps serving.
  std::string answer;
  try {
    answer = handler_(cmd);
  } catch (const std::exception& e) {
    answer = std::string(R"({"error":"internal error","code":"internal"})");
    spdlog::error("control socket: internal error answering a command: {}", e.what());
  }
  send_all(fd, answer + "\n");
}

Result<std::string> control_request(const std::string& path, std::string_view command) {
  ASSIGN_OR_RETURN(sockaddr_un addr, address_of(path));
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return Status::Io(errno, "control socket");
  set_timeouts(fd.get(), kClientTimeoutMs);
  if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0)
    return Status::Io(errno, "control socket " + path);
  std::string line(command);
  line += "\n";
  if (!send_all(fd.get(), line)) return Status::Io(errno, "control socket " + path);
  ::shutdown(fd.get(), SHUT_WR);
  std::string out;
  char buf[4096];
  while (true) {
    ssize_t n = ::recv(fd.get(), buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Status::Io(errno, "control socket " + path);
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

}  // namespace kmsfs
