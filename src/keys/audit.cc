#include "keys/audit.h"

#include "keys/call_priority.h"

namespace kmsfs {

void set_result(AuditEvent& e, const Status& s) {
  if (s.ok()) {
    e.result = "ok";
    return;
  }
  e.result = s.code() == Code::kPermissionDenied ? "denied" : "error";
  e.error = s.message();
}

void set_context(AuditEvent& e, const EncryptionContext& ctx) {
  if (auto f = ctx.get(EncryptionContext::kFileIdKey)) e.file_id = std::string(*f);
  if (auto ik = ctx.get("kmsfs:ik-id")) e.ik_id = std::string(*ik);
  e.context = ctx;
}

Status record_audit(AuditSink* sink, AuditEvent e) {
  if (sink == nullptr) return Status::Ok();
  if (e.trigger.empty()) e.trigger = call_priority_name(call_priority());
  return sink->record(std::move(e));
}

}  // namespace kmsfs
