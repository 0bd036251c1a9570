#include "control/mount_stats.h"

#include <unistd.h>

#include <fmt/format.h>

#include <algorithm>
#include <cstring>

#ifndef KMSFS_VERSION
#error "KMSFS_VERSION and KMSFS_COMMIT must be defined by the build (src/control/CMakeLists.txt)"
#endif

#include "fs/op_stats.h"
#include "keys/circuit_breaker.h"

#include "control/rotation_control.h"

namespace kmsfs {

namespace {

// Every provider's counters, merged (a mount normally uses one provider).
RequestStats::Snapshot merged(KeyProviders& providers) {
  RequestStats::Snapshot all;
  for (const auto& [id, stats] : providers.request_stats()) {
    RequestStats::Snapshot s = stats->snapshot();
    for (const auto& [k, v] : s.requests) all.requests[k] += v;
    for (const auto& [k, v] : s.retries) all.retries[k] += v;
    for (size_t i = 0; i < all.buckets.size(); ++i) all.buckets[i] += s.buckets[i];
    for (const auto& [op, h] : s.latency_by_operation) {
      RequestStats::Snapshot::Histogram& a = all.latency_by_operation[op];
      for (size_t i = 0; i < a.buckets.size(); ++i) a.buckets[i] += h.buckets[i];
      a.sum += h.sum;
      a.count += h.count;
    }
    all.latency_sum += s.latency_sum;
    all.latency_count += s.latency_count;
    all.throttled += s.throttled;
    all.retries_refused += s.retries_refused;
    all.breaker_opened += s.breaker_opened;
    all.breaker_rejected += s.breaker_rejected;
    if (s.retry_quota >= 0) all.retry_quota = all.retry_quota < 0 ? s.retry_quota : std::min(all.retry_quota, s.retry_quota);
    for (const auto& [k, v] : s.breaker_state) all.breaker_state[k] = std::max(all.breaker_state[k], v);
  }
  return all;
}

// Label values escaped as the exposition format wants (\\, \", \n).
std::string label(std::string_view v) {
  std::string out;
  for (char c : v) {
    if (c == '\\' || c == '"') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out;
}

std::string le(size_t i) {
  return i < RequestStats::kBuckets.size() ? fmt::format("{}", RequestStats::kBuckets[i]) : "+Inf";
}

// A metric's HELP and TYPE lines, and a sample without labels.
void head(std::string& t, std::string_view name, std::string_view type, std::string_view help) {
  t += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
}
template <typename V>
void sample(std::string& t, std::string_view name, std::string_view type, std::string_view help, V v) {
  head(t, name, type, help);
  t += fmt::format("{} {}\n", name, v);
}

double unix_seconds(std::chrono::system_clock::time_point t) {
  return std::chrono::duration<double>(t.time_since_epoch()).count();
}

// One histogram's _bucket, _sum and _count lines; `labels` is empty or `a="x",` (with the
// trailing comma, so that le follows).
template <size_t N>
void histogram(std::string& t, std::string_view name, std::string_view labels, const std::array<uint64_t, N>& buckets,
               const std::array<double, N - 1>& bounds, double sum, uint64_t count) {
  uint64_t cumulative = 0;
  for (size_t i = 0; i < N; ++i) {
    cumulative += buckets[i];
    const std::string bound = i < bounds.size() ? fmt::format("{}", bounds[i]) : "+Inf";
    t += fmt::format("{}_bucket{{{}le=\"{}\"}} {}\n", name, labels, bound, cumulative);
  }
  const std::string plain = labels.empty() ? "" : "{" + std::string(labels.substr(0, labels.size() - 1)) + "}";
  t += fmt::format("{}_sum{} {}\n{}_count{} {}\n", name, plain, sum, name, plain, count);
}

// "ENOENT" rather than 2: what an admin greps for.
std::string errno_name(int e) {
  const char* n = ::strerrorname_np(e);
  return n ? n : std::to_string(e);
}

void fuse_prometheus(std::string& t) {
  const auto ops = fuse_op_stats().snapshot();
  head(t, "kmsfs_fuse_requests_total", "counter", "FUSE requests answered, by operation.");
  for (size_t i = 0; i < ops.size(); ++i)
    if (ops[i].requests)
      t += fmt::format("kmsfs_fuse_requests_total{{op=\"{}\"}} {}\n", fuse_op_name(FuseOp(i)), ops[i].requests);
  head(t, "kmsfs_fuse_request_errors_total", "counter", "FUSE requests answered with an error, by operation and errno.");
  for (size_t i = 0; i < ops.size(); ++i)
    for (const auto& [e, n] : ops[i].errors)
      t += fmt::format("kmsfs_fuse_request_errors_total{{op=\"{}\",errno=\"{}\"}} {}\n", fuse_op_name(FuseOp(i)),
                       errno_name(e), n);
  head(t, "kmsfs_fuse_request_duration_seconds", "histogram", "Time from a FUSE request's arrival to its answer, by operation.");
  for (size_t i = 0; i < ops.size(); ++i)
    if (ops[i].requests)
      histogram(t, "kmsfs_fuse_request_duration_seconds", fmt::format("op=\"{}\",", fuse_op_name(FuseOp(i))),
                ops[i].buckets, FuseOpStats::kBuckets, ops[i].seconds, ops[i].requests);
}

// The latest rotation run of the vault (running, paused or ended). Its counts are gauges:
// they start again from 0 with each run, and some (already, skipped, failed) with each pass.
void rotation_prometheus(const RotationWorker& worker, std::string& t) {
  auto st = worker.status();
  if (!st.ok()) return;  // never rotated
  const RotationState& r = st->state;
  auto gauge = [&t](std::string_view name, std::string_view help, auto v) { sample(t, name, "gauge", help, v); };
  head(t, "kmsfs_rotation_info", "gauge", "The latest rotation run: its id, target key, mode and phase.");
  t += fmt::format("kmsfs_rotation_info{{run=\"{}\",target=\"{}\",mode=\"{}\",phase=\"{}\"}} 1\n", label(r.id),
                   label(r.target), r.params.reencrypt ? "reencrypt" : "rewrap", rotation_phase_name(r.phase));
  gauge("kmsfs_rotation_active", "1 while a rotation is running or paused.", r.active() ? 1 : 0);
  gauge("kmsfs_rotation_pass", "Pass over the tree the run is in (the last finds nothing left to move).", r.pass);
  gauge("kmsfs_rotation_files_rotated", "Files moved to the target key by this run (all passes).", r.rotated);
  head(t, "kmsfs_rotation_pass_files", "gauge",
       "Files of the current pass: in the tree at its start, visited, and by outcome.");
  for (const auto& [what, n] : {std::pair<const char*, uint64_t>{"total", r.total}, {"seen", r.seen},
                                {"already", r.already}, {"skipped", r.skipped}, {"failed", r.failed}})
    t += fmt::format("kmsfs_rotation_pass_files{{state=\"{}\"}} {}\n", what, n);
  gauge("kmsfs_rotation_bytes", "Backing bytes re-wrapped (re-sealed, when re-encrypting) by this run.", r.bytes);
  gauge("kmsfs_rotation_kms_calls", "Key provider calls made by this run.", r.kms_calls);
  if (r.started > 0) gauge("kmsfs_rotation_start_timestamp_seconds", "When the latest rotation run started (unix time).", r.started);
  if (r.updated > 0)
    gauge("kmsfs_rotation_last_progress_timestamp_seconds", "When the latest rotation run last recorded progress or ended (unix time).",
          r.updated);
  gauge("kmsfs_rotation_files_per_second", "Files per second over the last few seconds.", st->files_per_second);
  if (st->eta_seconds >= 0) gauge("kmsfs_rotation_eta_seconds", "Estimated seconds left in the current pass.", st->eta_seconds);
}

}  // namespace

std::string_view build_version() { return KMSFS_VERSION; }
std::string_view build_commit() { return KMSFS_COMMIT; }

nlohmann::json mount_stats_json(const MountStatsSources& s) {
  using nlohmann::json;
  const RequestStats::Snapshot r = merged(*s.providers);
  json requests = json::array();
  for (const auto& [k, v] : r.requests) requests.push_back({{"operation", k.first}, {"result", k.second}, {"count", v}});
  json buckets = json::array();
  uint64_t cumulative = 0;
  for (size_t i = 0; i < r.buckets.size(); ++i) {
    cumulative += r.buckets[i];
    buckets.push_back({{"le", le(i)}, {"count", cumulative}});
  }
  json out = {
      {"mountpoint", s.mountpoint},
      {"backing", s.backing},
      {"pid", ::getpid()},
      {"uptime_seconds", std::chrono::duration<double>(std::chrono::steady_clock::now() - s.started).count()},
      {"start_time_seconds", unix_seconds(s.started_wall)},
      {"version", build_version()},
      {"commit", build_commit()},
      {"metrics", s.metrics_url},
      {"kms",
       {{"requests", requests},
        {"requests_total", r.total_requests()},
        {"retries", r.retries},
        {"latency_seconds", {{"buckets", buckets}, {"sum", r.latency_sum}, {"count", r.latency_count}}},
        {"estimated_cost_usd", static_cast<double>(r.total_requests()) * kKmsDollarsPerRequest},
        {"throttled", r.throttled},
        {"retries_refused", r.retries_refused},
        {"breaker_opened", r.breaker_opened},
        {"breaker_rejected", r.breaker_rejected}}},
  };
  if (r.retry_quota >= 0) out["kms"]["retry_quota"] = r.retry_quota;
  json breakers = json::object();
  for (const auto& [endpoint, state] : r.breaker_state)
    breakers[endpoint] = breaker_state_name(static_cast<BreakerState>(state));
  out["kms"]["breakers"] = breakers;
  if (s.cache) {
    const KeyCacheStats c = s.cache->stats();
    const KeyCacheOptions& o = s.cache->options();
    out["cache"] = {{"keys", c.keys},
                    {"hits", c.hits},
                    {"misses", c.misses},
                    {"coalesced", c.coalesced},
                    {"fetches", c.fetches},
                    {"fetch_failures", c.fetch_failures},
                    {"refreshes", c.refreshes},
                    {"stale_served", c.stale_served},
                    {"evictions", c.evictions},
                    {"timeouts", c.timeouts},
                    {"ttl_seconds", std::chrono::duration<double>(o.ttl).count()},
                    {"max_keys", o.max_keys},
                    {"stale_if_error_seconds", std::chrono::duration<double>(o.stale_if_error).count()}};
  }
  if (s.audit_log) {
    const AuditLogStats a = s.audit_log->stats();
    out["audit_log"] = {{"path", s.audit_log->options().path},
                        {"required", s.audit_log->options().required},
                        {"records", a.records},
                        {"bytes", a.bytes},
                        {"write_failures", a.write_failures},
                        {"dropped", a.dropped},
                        {"rotations", a.rotations},
                        {"last_failure_unix", a.last_failure_unix}};
  }
  if (s.vault) {
    out["key_mode"] = std::string(key_mode_name(s.vault->config().key_mode));
    if (const DataKeyPool* p = s.vault->key_pool()) {
      const DataKeyPoolStats ps = p->stats();
      out["key_pool"] = {{"size", ps.size},         {"target", ps.target},   {"max", p->options().max_size},
                         {"generated", ps.generated}, {"taken", ps.taken},     {"misses", ps.misses},
                         {"expired", ps.expired},     {"discarded", ps.discarded}, {"failures", ps.failures}};
    }
    if (const IntermediateKeys* ik = s.vault->intermediate_keys()) {
      const IntermediateKeyStats is = ik->stats();
      out["intermediate_keys"] = {
          {"generated", is.generated},
          {"failures", is.failures},
          {"files", is.files},
          {"max_files", ik->options().max_files},
          {"max_age_seconds", std::chrono::duration<double>(ik->options().max_age).count()}};
    }
  }
  if (s.rotation) {
    // null until the vault's first rotation
    auto st = s.rotation->status();
    out["rotation"] = st.ok() ? rotation_status_json(*st) : nlohmann::json();
  }
  return out;
}

std::string mount_stats_prometheus(const MountStatsSources& s) {
  const RequestStats::Snapshot r = merged(*s.providers);
  std::string t;
  head(t, "kmsfs_build_info", "gauge", "Always 1; the labels say which kmsfs this is.");
  t += fmt::format("kmsfs_build_info{{version=\"{}\",commit=\"{}\"}} 1\n", label(build_version()), label(build_commit()));
  sample(t, "kmsfs_start_time_seconds", "gauge", "When the mount's daemon started (unix time).", unix_seconds(s.started_wall));
  fuse_prometheus(t);
  head(t, "kmsfs_kms_requests_total", "counter", "KMS requests sent (every attempt), by operation and result.");
  for (const auto& [k, v] : r.requests)
    t += fmt::format("kmsfs_kms_requests_total{{operation=\"{}\",result=\"{}\"}} {}\n", label(k.first), label(k.second), v);
  head(t, "kmsfs_kms_retries_total", "counter", "KMS requests retried after a throttle, 5xx, timeout or connection error.");
  for (const auto& [k, v] : r.retries) t += fmt::format("kmsfs_kms_retries_total{{operation=\"{}\"}} {}\n", label(k), v);
  head(t, "kmsfs_kms_request_duration_seconds", "histogram", "Latency of each KMS request attempt, by operation.");
  for (const auto& [op, h] : r.latency_by_operation)
    histogram(t, "kmsfs_kms_request_duration_seconds", fmt::format("operation=\"{}\",", label(op)), h.buckets,
              RequestStats::kBuckets, h.sum, h.count);
  head(t, "kmsfs_kms_estimated_cost_dollars", "gauge", "KMS requests of this mount priced at $0.03 per 10,000.");
  t += fmt::format("kmsfs_kms_estimated_cost_dollars {}\n", static_cast<double>(r.total_requests()) * kKmsDollarsPerRequest);
  auto counter = [&t](std::string_view name, std::string_view help, uint64_t v) { sample(t, name, "counter", help, v); };
  auto gauge = [&t](std::string_view name, std::string_view help, uint64_t v) { sample(t, name, "gauge", help, v); };
  // How the client spares a struggling KMS (docs/OPERATIONS.md "When the KMS struggles").
  head(t, "kmsfs_kms_breaker_state", "gauge", "Circuit breaker of each KMS endpoint: 0 closed, 1 open, 2 half-open.");
  for (const auto& [endpoint, state] : r.breaker_state)
    t += fmt::format("kmsfs_kms_breaker_state{{endpoint=\"{}\"}} {}\n", label(endpoint), state);
  counter("kmsfs_kms_breaker_opened_total", "Times a KMS endpoint's circuit breaker opened.", r.breaker_opened);
  counter("kmsfs_kms_breaker_rejected_total", "KMS calls failed without being sent: the endpoint's breaker was open.",
          r.breaker_rejected);
  counter("kmsfs_kms_throttled_total", "KMS answers that were throttling errors.", r.throttled);
  if (r.retry_quota >= 0)
    gauge("kmsfs_kms_retry_quota", "Tokens left in the retry quota (500 full; a retry costs 5, 10 after a timeout).",
          static_cast<uint64_t>(r.retry_quota));
  counter("kmsfs_kms_retries_refused_total", "KMS retries not made because the retry quota was spent.", r.retries_refused);
  if (s.cache) {
    const KeyCacheStats c = s.cache->stats();
    counter("kmsfs_key_cache_hits_total", "Key lookups answered from the cache.", c.hits);
    counter("kmsfs_key_cache_misses_total", "Key lookups that waited for the key provider.", c.misses);
    counter("kmsfs_key_cache_coalesced_total", "Misses that joined a fetch already under way.", c.coalesced);
    counter("kmsfs_key_cache_refreshes_total", "Keys in use refreshed before their TTL ended.", c.refreshes);
    counter("kmsfs_key_cache_stale_served_total", "Expired keys served while the KMS was unreachable.", c.stale_served);
    counter("kmsfs_key_cache_evictions_total", "Keys dropped (TTL, LRU, refusal, flush).", c.evictions);
    counter("kmsfs_key_cache_timeouts_total", "Lookups that gave up waiting for the key provider.", c.timeouts);
    gauge("kmsfs_key_cache_keys", "Keys cached now.", c.keys);
    if (c.last_fetch_unix > 0)
      gauge("kmsfs_key_cache_last_fetch_timestamp_seconds", "When the key provider last served a key (unix time).",
            static_cast<uint64_t>(c.last_fetch_unix));
    if (c.last_refresh_unix > 0)
      gauge("kmsfs_key_cache_last_refresh_timestamp_seconds", "When a key in use was last refreshed before its TTL ended (unix time).",
            static_cast<uint64_t>(c.last_refresh_unix));
  }
  if (const DataKeyPool* p = s.vault ? s.vault->key_pool() : nullptr) {
    const DataKeyPoolStats ps = p->stats();
    counter("kmsfs_key_pool_generated_total", "Data keys pre-generated for new files.", ps.generated);
    counter("kmsfs_key_pool_taken_total", "Creates served a pre-generated data key.", ps.taken);
    counter("kmsfs_key_pool_misses_total", "Creates that found the pool empty and asked the KMS themselves.", ps.misses);
    counter("kmsfs_key_pool_expired_total", "Pre-generated data keys dropped unused at their TTL.", ps.expired);
    counter("kmsfs_key_pool_discarded_total", "Pre-generated data keys dropped by flush-keys or a key change.", ps.discarded);
    gauge("kmsfs_key_pool_keys", "Pre-generated data keys waiting now.", ps.size);
    gauge("kmsfs_key_pool_target", "How many pre-generated data keys the pool aims to hold.", ps.target);
    counter("kmsfs_key_pool_failures_total", "Pool fills the KMS did not serve (filling then stops until a create succeeds).",
            ps.failures);
  }
  if (const IntermediateKeys* ik = s.vault ? s.vault->intermediate_keys() : nullptr) {
    const IntermediateKeyStats is = ik->stats();
    counter("kmsfs_intermediate_keys_generated_total", "Intermediate keys generated through the key provider.", is.generated);
    counter("kmsfs_intermediate_key_files_total", "New files whose data key was sealed under an intermediate key.", is.files);
  }
  if (s.audit_log) {
    const AuditLogStats a = s.audit_log->stats();
    counter("kmsfs_audit_records_total", "Audit log lines written.", a.records);
    counter("kmsfs_audit_write_failures_total", "Audit log lines lost to a failed write, open or rotation.",
            a.write_failures);
    counter("kmsfs_audit_dropped_total", "Audit log lines dropped because the writer was not keeping up.", a.dropped);
    counter("kmsfs_audit_rotations_total", "Times the audit log was rotated by size.", a.rotations);
    if (a.last_failure_unix > 0)
      gauge("kmsfs_audit_last_failure_timestamp_seconds", "When an audit log line was last lost (unix time).",
            static_cast<uint64_t>(a.last_failure_unix));
  }
  if (s.rotation) rotation_prometheus(*s.rotation, t);
  return t;
}

}  // namespace kmsfs
