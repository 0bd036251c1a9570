// The admin endpoints tests use to steer and observe the server. Unsigned, and answered
// only to loopback peers (http_server.cc checks). JSON in and out:
//   GET    /__admin/health   {"status": "ok"}
//   GET    /__admin/stats    request counters (stats.h)
//   DELETE /__admin/stats    reset them (and the journal)
//   GET    /__admin/requests the journal of recent requests (stats.h)
//   GET    /__admin/faults   the fault configuration (faults.h)
//   POST   /__admin/faults   replace it ({} clears)
//   DELETE /__admin/faults   clear it
#pragma once

#include <string_view>

#include "dispatcher.h"
#include "faults.h"
#include "stats.h"

namespace kmsfs::kms_local {

HttpReply handle_admin(std::string_view method, std::string_view path, std::string_view body,
                       Faults& faults, Stats& stats);

}  // namespace kmsfs::kms_local
