#include "fsck/report.h"

namespace kmsfs::fsck {

using nlohmann::json;

std::string_view outcome_name(Outcome o) noexcept {
  switch (o) {
    case Outcome::kClean: return "clean";
    case Outcome::kRepaired: return "repaired";
    case Outcome::kUncorrected: return "uncorrected";
  }
  return "unknown";
}

uint64_t FsckReport::problems() const {
  uint64_t n = 0;
  for (const auto& f : findings) n += severity(f.kind) == Severity::kProblem;
  return n;
}

uint64_t FsckReport::uncorrected() const {
  uint64_t n = 0;
  for (const auto& f : findings) n += severity(f.kind) == Severity::kProblem && !corrected(f);
  return n;
}

uint64_t FsckReport::notices() const { return findings.size() - problems(); }

Outcome FsckReport::outcome() const {
  if (problems() == 0) return Outcome::kClean;
  return uncorrected() == 0 ? Outcome::kRepaired : Outcome::kUncorrected;
}

namespace {

json key_json(const KeyRef& k) {
  return {{"key", k.to_string()}, {"provider", provider_name(k.provider)}, {"key_id", k.key_id}, {"version", k.version}};
}

json finding_json(const Finding& f) {
  json j{{"kind", kind_name(f.kind)},
         {"severity", severity(f.kind) == Severity::kProblem ? "problem" : "notice"},
         {"path", f.path},
         {"message", f.message},
         {"repairable", repairable(f.kind)},
         {"status", status_name(f.status)}};
  if (f.plain) j["plain_path"] = *f.plain;
  if (!f.file_id.empty()) j["file_id"] = f.file_id;
  if (f.block) j["block"] = *f.block;
  if (!f.key.empty()) j["key"] = f.key;
  if (!f.quarantined_to.empty()) j["quarantined_to"] = f.quarantined_to;
  if (!f.repair_error.empty()) j["repair_error"] = f.repair_error;
  return j;
}

}  // namespace

json report_json(const FsckReport& r) {
  json keys = json::array();
  for (const auto& [name, t] : r.keys) {
    json k = key_json(t.key);
    k["files"] = t.files;
    k["bytes"] = t.bytes;
    k["current"] = r.current_key && *r.current_key == t.key;
    keys.push_back(std::move(k));
  }
  json findings = json::array();
  for (const auto& f : r.findings) findings.push_back(finding_json(f));
  json j{{"fsck_version", 1},
         {"vault", r.vault},
         {"fs_id", r.fs_id},
         {"repair", r.repair},
         {"in_use_by", r.in_use_by ? json(*r.in_use_by) : json(nullptr)},
         {"current_key", r.current_key ? json(r.current_key->to_string()) : json(nullptr)},
         {"current_key_error", r.current_key_error},
         {"filesystem_key", r.filesystem_key.to_string()},
         {"names_checked", r.names_checked},
         {"summary",
          {{"entries", r.entries},
           {"files", r.files},
           {"kmsfs_files", r.kmsfs_files},
           {"bytes", r.bytes},
           {"damaged_blocks", r.damaged_blocks},
           {"problems", r.problems()},
           {"uncorrected", r.uncorrected()},
           {"notices", r.notices()}}},
         {"keys", keys},
         {"rotation", nullptr},
         {"findings", findings},
         {"outcome", outcome_name(r.outcome())}};
  j["scope"] = nullptr;
  if (r.scope)
    j["scope"] = {{"backing_path", r.scope->backing},
                  {"path", r.scope->plain ? json(*r.scope->plain) : json(nullptr)}};
  if (r.rotation)
    j["rotation"] = {{"id", r.rotation->id},
                     {"to", r.rotation->to},
                     {"target", r.rotation->target},
                     {"phase", r.rotation->phase},
                     {"pass", r.rotation->pass}};
  return j;
}

}  // namespace kmsfs::fsck
