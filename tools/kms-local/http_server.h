// The HTTP(S) front end, on Debian's cpp-httplib: converts requests for the Dispatcher and
// replies back, serves the admin endpoints to loopback peers, carries out dropped-
// connection faults, logs one line per request. Binding is separate from serving so the
// bound port (port 0: any free one) can be published before the first request.
#pragma once

#include <atomic>
#include <cstddef>
#include <memory>
#include <string>

#include "base/status.h"
#include "dispatcher.h"

namespace httplib {
class Server;
}

namespace kmsfs::kms_local {

struct ServerOptions {
  std::string listen = "127.0.0.1";
  int port = 0;
  std::string tls_cert;  // PEM; both or neither
  std::string tls_key;
  // Connections served at once: an idle keep-alive connection holds a thread for up to
  // 5 s, and injected latency holds one too.
  size_t threads = 32;
  bool log_requests = true;
};

class HttpServer {
 public:
  HttpServer(ServerOptions options, Dispatcher& dispatcher, Faults& faults, Stats& stats);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // The bound port. kInvalidArgument if the TLS files do not load; kIo if bind fails.
  Result<int> bind();
  // Serves until stop(); then waits for the requests in flight.
  Status serve();
  // Thread-safe, once, from the signal-handling thread, after bind(): returns when the
  // server is stopping (or serve() has returned on its own).
  void stop();

 private:
  void install_routes();

  ServerOptions options_;
  Dispatcher& dispatcher_;
  Faults& faults_;
  Stats& stats_;
  std::unique_ptr<httplib::Server> server_;
  std::atomic<int> port_{0};  // set by bind(), read by stop() on the signal thread
  std::atomic<bool> finished_{false};  // serve() has returned
};

}  // namespace kmsfs::kms_local
