// Talking to running mounts over their control sockets: `stats`, `flush-keys`, `status`.
#include <dirent.h>
#include <limits.h>
#include <stdlib.h>

#include <algorithm>
#include <memory>
#include <set>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/mountinfo.h"
#include "cli/control_client.h"
#include "cli/output.h"
#include "control/control_socket.h"

namespace kmsfs::cli {

namespace {

using nlohmann::json;

std::string human_stats(const json& j) {
  std::string t;
  const double up = j.value("uptime_seconds", 0.0);
  t += fmt::format("mount: {} (backing {}, daemon pid {}, up {:.0f} s)\n", j.value("mountpoint", "?"),
                   j.value("backing", "?"), j.value("pid", 0), up);
  const json& k = j["kms"];
  t += fmt::format("KMS requests: {} (estimated cost ${:.6f})\n", k.value("requests_total", 0),
                   k.value("estimated_cost_usd", 0.0));
  for (const auto& r : k["requests"])
    t += fmt::format("  {:<32} {:<28} {}\n", r.value("operation", ""), r.value("result", ""), r.value("count", 0));
  for (const auto& [op, n] : k["retries"].items()) t += fmt::format("  retried {:<24} {}\n", op, n.get<uint64_t>());
  if (k.value("throttled", 0) > 0 || k.value("breaker_opened", 0) > 0 || k.value("retries_refused", 0) > 0)
    t += fmt::format("  throttled {}, retries refused (quota spent) {}, breaker opened {} times, calls not sent {}\n",
                     k.value("throttled", 0), k.value("retries_refused", 0), k.value("breaker_opened", 0),
                     k.value("breaker_rejected", 0));
  if (k.contains("breakers"))
    for (const auto& [endpoint, state] : k["breakers"].items())
      if (state != "closed") t += fmt::format("  circuit breaker {} for {}: calls fail fast\n", state.get<std::string>(), endpoint);
  const json& l = k["latency_seconds"];
  if (l.value("count", 0) > 0)
    t += fmt::format("  mean latency {:.1f} ms over {} requests\n", 1000 * l.value("sum", 0.0) / l.value("count", 1),
                     l.value("count", 0));
  if (j.contains("cache")) {
    const json& c = j["cache"];
    t += fmt::format(
        "key cache: {} keys (TTL {} s, at most {}, stale-if-error {} s)\n"
        "  hits {}, misses {} ({} joined a fetch under way), refreshes {}, served stale {}, evictions {}, "
        "timeouts {}\n",
        c.value("keys", 0), c.value("ttl_seconds", 0.0), c.value("max_keys", 0), c.value("stale_if_error_seconds", 0.0),
        c.value("hits", 0), c.value("misses", 0), c.value("coalesced", 0), c.value("refreshes", 0),
        c.value("stale_served", 0), c.value("evictions", 0), c.value("timeouts", 0));
  }
  if (j.contains("key_mode")) t += fmt::format("key mode: {}\n", j.value("key_mode", "?"));
  if (j.contains("key_pool")) {
    const json& p = j["key_pool"];
    t += fmt::format(
        "key pool: {} keys ready (target {}, at most {})\n"
        "  generated {}, taken by creates {}, creates that found it empty {}, expired {}, discarded {}, failures {}\n",
        p.value("size", 0), p.value("target", 0), p.value("max", 0), p.value("generated", 0), p.value("taken", 0),
        p.value("misses", 0), p.value("expired", 0), p.value("discarded", 0), p.value("failures", 0));
  }
  if (j.contains("intermediate_keys")) {
    const json& i = j["intermediate_keys"];
    t += fmt::format("intermediate keys: {} generated for {} new files (roll after {} files or {} s), failures {}\n",
                     i.value("generated", 0), i.value("files", 0), i.value("max_files", 0),
                     i.value("max_age_seconds", 0.0), i.value("failures", 0));
  }
  if (j.contains("rotation") && j["rotation"].is_object()) {
    const json& r = j["rotation"];
    t += fmt::format("rotation: {} to {} ({}), pass {}, {} files moved, {} failed (kmsfs rotate --status for more)\n",
                     r.value("phase", "?"), r.value("target", "?"), r.value("mode", "") == "reencrypt" ? "re-encrypt" : "re-wrap",
                     r.value("pass", 0), r.value("rotated", 0), r.value("failed", 0));
  }
  return t;
}

struct StatsOptions {
  std::string mountpoint;
  bool json = false;
};

Status run_stats(const StatsOptions& o) {
  ASSIGN_OR_RETURN(std::string sock, socket_of(o.mountpoint));
  ASSIGN_OR_RETURN(json j, ask(sock, o.mountpoint, "stats"));
  return print(o.json ? j.dump(2) + "\n" : human_stats(j));
}

Status run_flush(const std::string& mountpoint) {
  ASSIGN_OR_RETURN(std::string sock, socket_of(mountpoint));
  ASSIGN_OR_RETURN(json j, ask(sock, mountpoint, "flush-keys"));
  return print(fmt::format("{}: dropped {} cached key(s); the next access to each file asks the KMS\n", mountpoint,
                           j.value("flushed", 0)));
}

// Every kmsfs mount this process can reach: the control sockets of this user's mounts
// (answered with their stats), and the kmsfs mounts of this mount namespace that have no
// socket here (another user's, or a daemon whose socket went away), by mountinfo.
Status run_status() {
  const std::string dir = control_socket_dir();
  std::vector<std::string> socks;
  if (DIR* d = ::opendir(dir.c_str())) {
    while (dirent* e = ::readdir(d)) {
      std::string n = e->d_name;
      if (n.size() > 5 && n.ends_with(".sock")) socks.push_back(dir + "/" + n);
    }
    ::closedir(d);
  }
  std::sort(socks.begin(), socks.end());
  std::string t;
  std::set<std::string> answered;
  for (const auto& s : socks) {
    auto j = ask(s, s, "stats");
    if (!j.ok()) {
      t += fmt::format("(no answer)  socket {}\n", s);
      continue;
    }
    answered.insert(j->value("mountpoint", ""));
    const std::string metrics = j->value("metrics", "");
    t += fmt::format("{}  backing {}  pid {}  keys cached {}  KMS requests {}  socket {}{}\n", j->value("mountpoint", "?"),
                     j->value("backing", "?"), j->value("pid", 0),
                     j->contains("cache") ? (*j)["cache"].value("keys", 0) : 0, (*j)["kms"].value("requests_total", 0), s,
                     metrics.empty() ? "" : "  metrics " + metrics);
  }
  for (const auto& m : read_mountinfo()) {
    if (m.fstype != "fuse.kmsfs" || answered.contains(m.mountpoint)) continue;
    t += fmt::format("{}  backing {}  (no control socket in {}: another user's mount, or its daemon is gone)\n",
                     m.mountpoint, m.kmsfs_backing().empty() ? m.source : m.kmsfs_backing(), dir);
  }
  if (t.empty()) t = "no kmsfs mounts (none in this mount namespace, no control sockets in " + dir + ")\n";
  return print(t);
}

}  // namespace

void add_control_commands(CLI::App& app, Commands& out) {
  {
    auto o = std::make_shared<StatsOptions>();
    CLI::App* cmd = app.add_subcommand("stats", "KMS requests and key cache of a running mount");
    cmd->add_option("MOUNTPOINT", o->mountpoint, "The mountpoint")->required();
    cmd->add_flag("--json", o->json, "Print one JSON object (the same fields as --metrics-listen serves)");
    out.push_back({"stats", cmd, [o] { return run_stats(*o); }});
  }
  {
    auto mp = std::make_shared<std::string>();
    CLI::App* cmd = app.add_subcommand(
        "flush-keys", "Drop every cached key of a running mount now; open files ask the KMS again on next access");
    cmd->add_option("MOUNTPOINT", *mp, "The mountpoint")->required();
    out.push_back({"flush-keys", cmd, [mp] { return run_flush(*mp); }});
  }
  {
    CLI::App* cmd = app.add_subcommand("status", "List the running kmsfs mounts: this user's control sockets, and every kmsfs mount of this mount namespace");
    out.push_back({"status", cmd, [] { return run_status(); }});
  }
}

}  // namespace kmsfs::cli
