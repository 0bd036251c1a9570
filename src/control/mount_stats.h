// What a running mount reports: its build and start time, its FUSE requests (by operation,
// errno and latency), its KMS requests (by operation and result, retries, latency by
// operation, estimated cost), its key cache and its key rotation. One source for `kmsfs
// stats` (JSON over the control socket) and the Prometheus endpoint, so the two never
// disagree.
#pragma once

#include <chrono>
#include <string>

#include <nlohmann/json.hpp>

#include "control/audit_log.h"
#include "keys/cache/key_cache.h"
#include "keys/key_providers.h"
#include "rotation/rotation_worker.h"
#include "vault/vault.h"

namespace kmsfs {

// AWS KMS list price for symmetric requests: $0.03 per 10,000.
constexpr double kKmsDollarsPerRequest = 0.03 / 10000;

struct MountStatsSources {
  std::string mountpoint;
  std::string backing;
  KeyProviders* providers = nullptr;
  KeyCache* cache = nullptr;  // may be null
  const Vault* vault = nullptr;  // may be null: its key pool and intermediate keys
  const RotationWorker* rotation = nullptr;  // may be null: the vault's key rotation
  const AuditLog* audit_log = nullptr;       // may be null: --audit-log not given
  std::chrono::steady_clock::time_point started = std::chrono::steady_clock::now();
  std::chrono::system_clock::time_point started_wall = std::chrono::system_clock::now();
  std::string metrics_url{};  // "http://127.0.0.1:9411/metrics" once serving; empty: none
};

// kmsfs_build_info's labels: the release and the git commit it was built from ("unknown"
// outside a git checkout; set at configure time, cmake/build_info.cmake).
std::string_view build_version();
std::string_view build_commit();

nlohmann::json mount_stats_json(const MountStatsSources& s);
// Prometheus text exposition format 0.0.4.
std::string mount_stats_prometheus(const MountStatsSources& s);

}  // namespace kmsfs
