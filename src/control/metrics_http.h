// --metrics-listen ADDR:PORT: the mount's stats as Prometheus text at GET /metrics, over
// plain HTTP (bind it to loopback or a monitoring interface; it reveals counts, never keys
// or names).
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "base/status.h"

namespace httplib {
class Server;
}

namespace kmsfs {

class MetricsHttp {
 public:
  // `listen` is HOST:PORT (port 0 picks one; port() tells which).
  static Result<std::unique_ptr<MetricsHttp>> start(const std::string& listen, std::function<std::string()> render);
  ~MetricsHttp();
  int port() const { return port_; }
  // Where it answers: "http://HOST:PORT/metrics" with the port actually bound (the one
  // chosen for port 0), an IPv6 host in brackets.
  const std::string& url() const { return url_; }

 private:
  MetricsHttp() = default;
  std::unique_ptr<httplib::Server> server_;
  int port_ = 0;
  std::string url_;
  std::thread thread_;
};

}  // namespace kmsfs
