// Asking a running mount's daemon over its control socket (stats, flush-keys, rotate).
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "base/status.h"

namespace kmsfs::cli {

// The control socket of the mount at `mountpoint` (resolved to its real path).
Result<std::string> socket_of(const std::string& mountpoint);
// Sends `command`; the daemon's JSON answer, or its {"error", "code"} as a Status.
// `what` names the mount in messages.
Result<nlohmann::json> ask(const std::string& socket, const std::string& what, const std::string& command);

}  // namespace kmsfs::cli
