#include "drop_connection.h"

#include <dirent.h>
#include <netinet/in.h>
#include <openssl/ssl.h>
#include <sys/socket.h>

#include <cstdlib>

namespace kmsfs::kms_local {
namespace {

int port_of(const sockaddr_storage& a) {
  if (a.ss_family == AF_INET) return ntohs(reinterpret_cast<const sockaddr_in&>(a).sin_port);
  if (a.ss_family == AF_INET6) return ntohs(reinterpret_cast<const sockaddr_in6&>(a).sin6_port);
  return -1;
}

int find_socket(int local_port, int remote_port) {
  DIR* dir = ::opendir("/proc/self/fd");
  if (dir == nullptr) return -1;
  int found = -1;
  while (dirent* e = ::readdir(dir)) {
    char* end = nullptr;
    long fd = std::strtol(e->d_name, &end, 10);
    if (end == e->d_name || *end != '\0') continue;
    sockaddr_storage local{}, peer{};
    socklen_t ll = sizeof local, pl = sizeof peer;
    if (::getsockname(int(fd), reinterpret_cast<sockaddr*>(&local), &ll) != 0) continue;
    if (port_of(local) != local_port) continue;
    if (::getpeername(int(fd), reinterpret_cast<sockaddr*>(&peer), &pl) != 0) continue;
    if (port_of(peer) == remote_port) {
      found = int(fd);
      break;
    }
  }
  ::closedir(dir);
  return found;
}

}  // namespace

bool drop_connection(const void* ssl, int local_port, int remote_port) {
  int fd = ssl != nullptr ? SSL_get_fd(static_cast<const SSL*>(ssl))
                          : find_socket(local_port, remote_port);
  return fd >= 0 && ::shutdown(fd, SHUT_RDWR) == 0;
}

}  // namespace kmsfs::kms_local
