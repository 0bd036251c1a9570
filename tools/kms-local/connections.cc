#include "connections.h"

#include <dirent.h>
#include <netinet/in.h>
#include <openssl/ssl.h>
#include <sys/socket.h>

#include <cstdlib>
#include <functional>

namespace kmsfs::kms_local {
namespace {

int port_of(const sockaddr_storage& a) {
  if (a.ss_family == AF_INET) return ntohs(reinterpret_cast<const sockaddr_in&>(a).sin_port);
  if (a.ss_family == AF_INET6) return ntohs(reinterpret_cast<const sockaddr_in6&>(a).sin6_port);
  return -1;
}

// Calls visit(fd, peer_port) for every connected socket of ours whose local port is
// `local_port` (the listening socket has no peer and is skipped); stops when it says so.
void for_each_connection(int local_port, const std::function<bool(int, int)>& visit) {
  DIR* dir = ::opendir("/proc/self/fd");
  if (dir == nullptr) return;
  while (dirent* e = ::readdir(dir)) {
    char* end = nullptr;
    long fd = std::strtol(e->d_name, &end, 10);
    if (end == e->d_name || *end != '\0') continue;
    sockaddr_storage local{}, peer{};
    socklen_t ll = sizeof local, pl = sizeof peer;
    if (::getsockname(int(fd), reinterpret_cast<sockaddr*>(&local), &ll) != 0) continue;
    if (port_of(local) != local_port) continue;
    if (::getpeername(int(fd), reinterpret_cast<sockaddr*>(&peer), &pl) != 0) continue;
    if (!visit(int(fd), port_of(peer))) break;
  }
  ::closedir(dir);
}

}  // namespace

bool drop_connection(const void* ssl, int local_port, int remote_port) {
  int fd = -1;
  if (ssl != nullptr) {
    fd = SSL_get_fd(static_cast<const SSL*>(ssl));
  } else {
    for_each_connection(local_port, [&](int candidate, int peer_port) {
      if (peer_port != remote_port) return true;
      fd = candidate;
      return false;
    });
  }
  return fd >= 0 && ::shutdown(fd, SHUT_RDWR) == 0;
}

void end_idle_connections(int local_port) {
  for_each_connection(local_port, [](int fd, int) {
    ::shutdown(fd, SHUT_RD);
    return true;
  });
}

}  // namespace kmsfs::kms_local
