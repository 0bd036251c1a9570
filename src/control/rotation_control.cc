#include "control/rotation_control.h"

#include <spdlog/spdlog.h>

namespace kmsfs {

using nlohmann::json;

json rotation_status_json(const RotationStatus& st) {
  const RotationState& s = st.state;
  json j = rotation_state_to_json(s);
  // Files finished in this pass, each counted once ("rotated" adds up every pass, so
  // rotated + already counted a file twice once a second pass found it done).
  j["done"] = s.seen;
  j["files_per_second_now"] = st.files_per_second;
  j["eta_seconds"] = st.eta_seconds;
  return j;
}

std::string handle_rotation_command(RotationWorker& worker, std::string_view request) {
  json req = json::parse(request, nullptr, false);
  auto error = [](const Status& s) { return json{{"error", s.message()}, {"code", code_name(s.code())}}.dump(); };
  if (req.is_discarded() || !req.is_object()) return error(Status(Code::kInvalidArgument, "rotate: malformed request"));
  const std::string op = req.value("op", "");
  Status s;
  if (op == "start") {
    RotationRequest r;
    r.to = req.value("to", "");
    r.files_per_second = req.value("files_per_second", r.files_per_second);
    r.kms_calls_per_second = req.value("kms_calls_per_second", r.kms_calls_per_second);
    r.all = req.value("all", false);
    r.reencrypt = req.value("reencrypt", false);
    r.bytes_per_second = req.value("bytes_per_second", r.bytes_per_second);
    if (r.to.empty()) return error(Status(Code::kInvalidArgument, "rotate: no target key"));
    s = worker.start(r);
    if (s.ok()) spdlog::info("rotation to {} started", r.to);
  } else if (op == "pause") {
    s = worker.pause();
  } else if (op == "resume") {
    s = worker.resume();
  } else if (op == "cancel") {
    s = worker.cancel();
  } else if (op != "status") {
    return error(Status(Code::kInvalidArgument, "rotate: unknown operation '" + op + "'"));
  }
  if (!s.ok()) return error(s);
  auto st = worker.status();
  if (!st.ok()) return error(st.status());
  return rotation_status_json(*st).dump();
}

}  // namespace kmsfs
