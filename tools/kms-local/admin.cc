#include "admin.h"

namespace kmsfs::kms_local {
namespace {

HttpReply json_reply(int status, const nlohmann::json& j) {
  return HttpReply{status, "application/json", j.dump() + "\n", ""};
}

HttpReply error(int status, const std::string& message) {
  return json_reply(status, {{"error", message}});
}

}  // namespace

HttpReply handle_admin(std::string_view method, std::string_view path, std::string_view body,
                       Faults& faults, Stats& stats) {
  if (path == "/__admin/health" && method == "GET") return json_reply(200, {{"status", "ok"}});
  if (path == "/__admin/stats") {
    if (method == "GET") return json_reply(200, stats.to_json());
    if (method == "DELETE") {
      stats.reset();
      return json_reply(200, stats.to_json());
    }
    return error(405, "GET or DELETE");
  }
  if (path == "/__admin/requests") {
    if (method == "GET") return json_reply(200, stats.journal());
    return error(405, "GET");
  }
  if (path == "/__admin/faults") {
    if (method == "GET") return json_reply(200, to_json(faults.get()));
    if (method == "DELETE") {
      faults.set({});
      return json_reply(200, to_json(faults.get()));
    }
    if (method == "POST") {
      auto j = nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
      if (j.is_discarded()) return error(400, "faults: the body is not JSON");
      auto config = fault_config_from_json(j);
      if (!config.ok()) return error(400, config.status().message());
      faults.set(*config);
      return json_reply(200, to_json(faults.get()));
    }
    return error(405, "GET, POST or DELETE");
  }
  return error(404, "no admin endpoint " + std::string(path));
}

}  // namespace kmsfs::kms_local
