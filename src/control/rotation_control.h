// The rotation commands of the control socket and the one JSON shape of a rotation's
// status, which `kmsfs rotate --status --json` prints whether the run is online (asked of
// the daemon) or offline (read from kmsfs.rotation).
//
//   rotate {"op":"start","to":"main","files_per_second":1000,"kms_calls_per_second":100,"all":false}
//   rotate {"op":"status"} | {"op":"pause"} | {"op":"resume"} | {"op":"cancel"}
#pragma once

#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "rotation/rotation_worker.h"

namespace kmsfs {

nlohmann::json rotation_status_json(const RotationStatus& s);

// Runs one command; the answer is the status JSON, or {"error": ..., "code": ...}.
std::string handle_rotation_command(RotationWorker& worker, std::string_view request);

}  // namespace kmsfs
