#include "rotation/rotation_state.h"

#include <nlohmann/json.hpp>

#include "base/file_io.h"
#include "vault/config.h"

namespace kmsfs {

namespace {

using nlohmann::json;

constexpr RotationPhase kPhases[] = {RotationPhase::kRunning, RotationPhase::kPaused, RotationPhase::kCancelled,
                                     RotationPhase::kDone, RotationPhase::kFailed};

std::string path_of(const std::string& dir) { return dir + "/" + kRotationFileName; }

}  // namespace

const char* rotation_phase_name(RotationPhase p) noexcept {
  switch (p) {
    case RotationPhase::kRunning: return "running";
    case RotationPhase::kPaused: return "paused";
    case RotationPhase::kCancelled: return "cancelled";
    case RotationPhase::kDone: return "done";
    case RotationPhase::kFailed: return "failed";
  }
  return "?";
}

json rotation_state_to_json(const RotationState& s) {
  json errors = json::array();
  for (const auto& e : s.errors) errors.push_back({{"path", e.path}, {"file_id", e.file_id}, {"message", e.message}});
  json j = {
      {"kmsfs_rotation", 1},
      {"id", s.id},
      {"to", s.params.to},
      {"target", s.target},
      {"mode", s.params.reencrypt ? "reencrypt" : "rewrap"},
      {"bytes_per_second", s.params.bytes_per_second},
      {"files_per_second", s.params.files_per_second},
      {"kms_calls_per_second", s.params.kms_calls_per_second},
      {"all", s.params.all},
      {"phase", rotation_phase_name(s.phase)},
      {"started", s.started},
      {"updated", s.updated},
      {"pass", s.pass},
      {"cursor", s.cursor},
      {"total", s.total},
      {"seen", s.seen},
      {"rotated", s.rotated},
      {"pass_rotated", s.pass_rotated},
      {"already", s.already},
      {"skipped", s.skipped},
      {"failed", s.failed},
      {"bytes", s.bytes},
      {"kms_calls", s.kms_calls},
      {"errors", errors},
      {"message", s.message},
      {"paused_for_space", s.paused_for_space},
  };
  return j;
}

Result<RotationState> parse_rotation_state(const std::string& text, const std::string& where) {
  json j = json::parse(text, nullptr, false);
  auto bad = [&](const std::string& why) { return Status(Code::kCorrupt, where + ": " + why); };
  if (j.is_discarded() || !j.is_object()) return bad("not JSON");
  if (j.value("kmsfs_rotation", 0) != 1) return bad("not a kmsfs rotation file of version 1");
  RotationState s;
  try {
    s.id = j.at("id").get<std::string>();
    s.params.to = j.at("to").get<std::string>();
    s.target = j.at("target").get<std::string>();
    const std::string mode = j.value("mode", "rewrap");
    if (mode != "rewrap" && mode != "reencrypt") return bad("unknown mode '" + mode + "'");
    s.params.reencrypt = mode == "reencrypt";
    s.params.bytes_per_second = j.value("bytes_per_second", 0.0);
    s.params.files_per_second = j.value("files_per_second", 0.0);
    s.params.kms_calls_per_second = j.value("kms_calls_per_second", 0.0);
    s.params.all = j.value("all", false);
    const std::string phase = j.at("phase").get<std::string>();
    bool known = false;
    for (RotationPhase p : kPhases)
      if (phase == rotation_phase_name(p)) s.phase = p, known = true;
    if (!known) return bad("unknown phase '" + phase + "'");
    s.started = j.value("started", int64_t{0});
    s.updated = j.value("updated", int64_t{0});
    s.pass = j.value("pass", 1u);
    s.cursor = j.value("cursor", "");
    s.total = j.value("total", uint64_t{0});
    s.seen = j.value("seen", uint64_t{0});
    s.rotated = j.value("rotated", uint64_t{0});
    // Unknown (a file written before the field existed): a pass under way may have moved
    // files, so assume it did; the cost is one more pass of header reads.
    s.pass_rotated = j.value("pass_rotated", uint64_t{s.cursor.empty() ? 0u : 1u});
    s.already = j.value("already", uint64_t{0});
    s.skipped = j.value("skipped", uint64_t{0});
    s.failed = j.value("failed", uint64_t{0});
    s.bytes = j.value("bytes", uint64_t{0});
    s.kms_calls = j.value("kms_calls", uint64_t{0});
    s.message = j.value("message", "");
    s.paused_for_space = j.value("paused_for_space", false);
    for (const auto& e : j.value("errors", json::array()))
      s.errors.push_back({e.value("path", ""), e.value("file_id", ""), e.value("message", "")});
  } catch (const json::exception& e) {
    return bad(e.what());
  }
  return s;
}

Result<std::optional<RotationState>> load_rotation_state(const std::string& vault_dir) {
  auto text = read_file(path_of(vault_dir), 1 << 20);
  if (!text.ok()) {
    if (text.status().code() == Code::kNotFound) return std::optional<RotationState>();
    return text.status();
  }
  ASSIGN_OR_RETURN(RotationState s,
                   parse_rotation_state(std::string(text->begin(), text->end()), path_of(vault_dir)));
  return std::optional<RotationState>(std::move(s));
}

Status save_rotation_state(const std::string& vault_dir, const RotationState& s) {
  const std::string text = rotation_state_to_json(s).dump(2) + "\n";
  return write_file_atomic(path_of(vault_dir), ByteSpan(reinterpret_cast<const uint8_t*>(text.data()), text.size()),
                           0600);
}

}  // namespace kmsfs
