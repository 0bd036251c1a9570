// The daemon's control socket: a unix stream socket, mode 0600 in a 0700 directory
// (/run/kmsfs for root, $XDG_RUNTIME_DIR/kmsfs otherwise), named after the mountpoint, so
// `kmsfs stats MOUNTPOINT` finds it and `kmsfs status` lists them all. One request per
// connection: the client writes a command line ("stats", "flush-keys"), the daemon
// answers with one JSON document and closes. Only root and the daemon's own user are
// answered (SO_PEERCRED), whatever the file mode says.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <thread>

#include "base/status.h"
#include "base/unique_fd.h"

namespace kmsfs {

// The directory holding the control sockets of this user's mounts.
std::string control_socket_dir();
// The socket of the mount at `mountpoint` (an absolute, normalised path).
std::string control_socket_path(const std::string& mountpoint);

class ControlServer {
 public:
  using Handler = std::function<std::string(std::string_view command)>;

  // Creates the directory if needed, replaces a stale socket (one nobody answers on) and
  // refuses a live one (another daemon serves that mountpoint).
  static Result<std::unique_ptr<ControlServer>> start(const std::string& path, Handler handler);
  ~ControlServer();  // stops answering and removes the socket
  ControlServer(const ControlServer&) = delete;
  ControlServer& operator=(const ControlServer&) = delete;

  const std::string& path() const { return path_; }

 private:
  ControlServer(std::string path, UniqueFd listen_fd, UniqueFd stop_fd, Handler handler);
  void serve(std::stop_token st);
  void answer(int fd);

  const std::string path_;
  UniqueFd listen_fd_;
  UniqueFd stop_fd_;  // eventfd: wakes the poll at shutdown
  const Handler handler_;
  std::jthread thread_;  // last: joined before the rest goes
};

// Client side: sends `command` to the socket and returns the answer.
Result<std::string> control_request(const std::string& path, std::string_view command);

}  // namespace kmsfs
