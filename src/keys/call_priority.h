// Who a key provider call is for, per thread. A KMS that throttles or fails must not be
// hit harder by kmsfs's own background work, so the AWS client spends its attempts by
// priority (docs/OPERATIONS.md "When the KMS struggles"):
//
// - kUser: a FUSE operation someone waits on. Up to AWS_MAX_ATTEMPTS attempts, but none
//   while the endpoint's circuit breaker is open (the caller gets EIO at once).
// - kRotation: the rotation worker. One attempt; a file the KMS could not serve is
//   deferred and tried again later, so retrying costs no extra attempts in a burst.
// - kBackground: pool fills and key cache refreshes. One attempt, and only while the
//   breaker is closed: work nobody waits on never probes a struggling KMS.
//
// Thread-local because the call crosses the KeyProvider seam, which has no room for it
// (and should not: the keyring ignores it). Set with a CallPriorityScope at the top of the
// thread or around the call.
#pragma once

namespace kmsfs {

enum class CallPriority { kUser, kRotation, kBackground };

namespace detail {
inline thread_local CallPriority current_call_priority = CallPriority::kUser;
}  // namespace detail

inline CallPriority call_priority() { return detail::current_call_priority; }

// Sets this thread's priority until the scope ends, then restores the previous one.
class CallPriorityScope {
 public:
  explicit CallPriorityScope(CallPriority p) : saved_(detail::current_call_priority) {
    detail::current_call_priority = p;
  }
  ~CallPriorityScope() { detail::current_call_priority = saved_; }
  CallPriorityScope(const CallPriorityScope&) = delete;
  CallPriorityScope& operator=(const CallPriorityScope&) = delete;

 private:
  CallPriority saved_;
};

inline const char* call_priority_name(CallPriority p) {
  switch (p) {
    case CallPriority::kUser: return "user";
    case CallPriority::kRotation: return "rotation";
    case CallPriority::kBackground: return "background";
  }
  return "?";
}

}  // namespace kmsfs
