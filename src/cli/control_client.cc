#include "cli/control_client.h"

#include <limits.h>
#include <stdlib.h>

#include "control/control_socket.h"

namespace kmsfs::cli {

using nlohmann::json;

Result<std::string> socket_of(const std::string& mountpoint) {
  char buf[PATH_MAX];
  if (!::realpath(mountpoint.c_str(), buf)) return Status::Io(errno, "mountpoint " + mountpoint);
  return control_socket_path(buf);
}

Result<json> ask(const std::string& socket, const std::string& what, const std::string& command) {
  auto answer = control_request(socket, command);
  if (!answer.ok()) {
    return Status(Code::kNotFound, "no kmsfs daemon answers for " + what + " (" + answer.status().message() + ")",
                  ENOENT);
  }
  json j = json::parse(*answer, nullptr, false);
  if (j.is_discarded()) return Status(Code::kCorrupt, "the daemon of " + what + " sent no JSON");
  if (j.contains("error")) {
    Code c = Code::kPermissionDenied;  // what a daemon of before "code" meant
    const std::string name = j.value("code", "");
    for (Code k : {Code::kInvalidArgument, Code::kNotFound, Code::kAlreadyExists, Code::kPermissionDenied,
                   Code::kCorrupt, Code::kUnsupported, Code::kIo, Code::kUnavailable, Code::kInternal})
      if (name == code_name(k)) c = k;
    return Status(c, what + ": " + j["error"].get<std::string>(), c == Code::kPermissionDenied ? EACCES : 0);
  }
  return j;
}

}  // namespace kmsfs::cli
