// The audit trail of key operations (docs/OPERATIONS.md "The audit log"): one event per
// generate, unwrap, rewrap, key cache hit or miss, flush, per-file key use and rotation
// step, with the key, the encryption context, the file id, the result and, when a FUSE
// request caused it, the requester's uid, gid and pid.
//
// The sink is abstract here, low in the layers, so the key cache, the key pool, the vault
// and rotation can report to it; the file that writes JSON lines is control/audit_log.
// An event never carries a secret (no key bytes, no passphrase) or a plaintext name: only
// key references, encryption contexts (which never hold a path) and file ids.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "base/status.h"
#include "format/key_ref.h"

namespace kmsfs {

// Who asked, as FUSE tells it (fuse_req_ctx): set by the FUSE op wrapper for the time of
// one request, carried by the key cache to the thread that fetches for it.
struct Requester {
  uid_t uid = 0;
  gid_t gid = 0;
  pid_t pid = 0;
};

namespace detail {
inline thread_local std::optional<Requester> current_requester;
}  // namespace detail

inline const std::optional<Requester>& current_requester() { return detail::current_requester; }

// Sets this thread's requester until the scope ends, then restores the previous one
// (thread-local for the reason call_priority.h gives: the KeyProvider seam has no room).
class RequesterScope {
 public:
  explicit RequesterScope(std::optional<Requester> r) : saved_(detail::current_requester) {
    detail::current_requester = r;
  }
  ~RequesterScope() { detail::current_requester = saved_; }
  RequesterScope(const RequesterScope&) = delete;
  RequesterScope& operator=(const RequesterScope&) = delete;

 private:
  std::optional<Requester> saved_;
};

struct AuditEvent {
  std::string op;       // "generate", "unwrap", "rewrap", "cache_hit", ... (OPERATIONS.md)
  std::string result = "ok";  // "ok", "denied" (kPermissionDenied: key disabled, access denied) or "error"
  std::string error;    // the failure's one-line message (provider level only: no paths)
  std::string key;      // KeyRef::to_string() of the key used
  std::string to_key;   // rewrap and rotation: the key moved to
  std::optional<EncryptionContext> context;
  std::string file_id;  // hex; from the context when it names one
  std::string ik_id;    // intermediate key id (hex), in intermediate mode
  std::string detail;   // op-specific: "pool", "stale", a flush's scope, ...
  std::optional<uint64_t> count;  // flush: keys dropped
  std::optional<Requester> requester = current_requester();
  std::string trigger;  // "user", "rotation" or "background" (call_priority.h); set by record()
};

// Fills result/error from `s` ("denied" for a refusal: kPermissionDenied).
void set_result(AuditEvent& e, const Status& s);
// Fills file_id and ik_id from the context's pairs, and keeps the context.
void set_context(AuditEvent& e, const EncryptionContext& ctx);

class AuditSink {
 public:
  virtual ~AuditSink() = default;
  // Records `e`. Ok unless the sink is required (--audit-required) and the event could not
  // be written: the key operation it describes must then fail (its key is not used).
  // Must not block for long (a FUSE worker may be the caller) and is called with no lock
  // of the caller held.
  virtual Status record(AuditEvent e) = 0;
};

// Records through `sink` if there is one; sets the event's trigger from this thread's
// call priority.
Status record_audit(AuditSink* sink, AuditEvent e);

}  // namespace kmsfs
