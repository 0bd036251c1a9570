#include "http_server.h"

#include <httplib.h>

#include <chrono>
#include <cstdio>
#include <thread>

#include "admin.h"
#include "connections.h"

namespace kmsfs::kms_local {
namespace {

constexpr size_t kMaxBody = 1 << 20;  // KMS requests are a few KiB at most

bool is_loopback(const std::string& addr) {
  return addr.starts_with("127.") || addr == "::1" || addr.starts_with("::ffff:127.");
}

// cpp-httplib adds its own pseudo headers for the peer; they were never on the wire.
bool is_pseudo_header(const std::string& name) {
  return name == "REMOTE_ADDR" || name == "REMOTE_PORT" || name == "LOCAL_ADDR" ||
         name == "LOCAL_PORT";
}

// The request as the client signed it: the raw target (cpp-httplib's req.path is already
// percent-decoded, which would break the canonical URI) and every header.
aws::HttpRequest to_signed_form(const httplib::Request& req) {
  aws::HttpRequest out;
  out.method = req.method;
  size_t q = req.target.find('?');
  out.path = req.target.substr(0, q);
  out.query = q == std::string::npos ? "" : req.target.substr(q + 1);
  for (const auto& [name, value] : req.headers) {
    if (!is_pseudo_header(name)) out.headers.emplace_back(name, value);
  }
  out.body = req.body;
  return out;
}

void send(const HttpReply& reply, httplib::Response& res) {
  res.status = reply.status;
  if (!reply.request_id.empty()) res.set_header("x-amzn-RequestId", reply.request_id);
  res.set_content(reply.body, reply.content_type.c_str());
}

}  // namespace

HttpServer::HttpServer(ServerOptions options, Dispatcher& dispatcher, Faults& faults, Stats& stats)
    : options_(std::move(options)), dispatcher_(dispatcher), faults_(faults), stats_(stats) {}

HttpServer::~HttpServer() = default;

Result<int> HttpServer::bind() {
  if (options_.tls_cert.empty() != options_.tls_key.empty()) {
    return Status(Code::kInvalidArgument, "--tls-cert and --tls-key go together");
  }
  if (!options_.tls_cert.empty()) {
    server_ = std::make_unique<httplib::SSLServer>(options_.tls_cert.c_str(),
                                                   options_.tls_key.c_str());
  } else {
    server_ = std::make_unique<httplib::Server>();
  }
  if (!server_->is_valid()) {
    return Status(Code::kInvalidArgument, "cannot load the TLS certificate " + options_.tls_cert +
                                              " or key " + options_.tls_key);
  }
  const size_t threads = options_.threads;
  server_->new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  server_->set_payload_max_length(kMaxBody);
  server_->set_keep_alive_max_count(1000);
  // httplib writes a reply's headers and body separately: with Nagle on, the body waits for
  // the client's delayed ACK, 40 ms per request on Linux loopback.
  server_->set_tcp_nodelay(true);
  install_routes();

  int port = options_.port;
  if (port == 0) {
    port = server_->bind_to_any_port(options_.listen);
  } else if (!server_->bind_to_port(options_.listen, port)) {
    port = -1;
  }
  if (port <= 0) {
    return Status(Code::kIo, "cannot listen on " + options_.listen + ":" +
                                 std::to_string(options_.port));
  }
  port_ = port;
  return port;
}

Status HttpServer::serve() {
  const bool clean = server_->listen_after_bind();
  finished_ = true;
  if (!clean) return Status(Code::kIo, "the HTTP server stopped with an error");
  return Status::Ok();
}

void HttpServer::stop() {
  // cpp-httplib's stop() does nothing until the accept loop runs, so a SIGTERM that came
  // right after the port file appeared would be lost: wait for the loop (or its end).
  while (!server_->is_running()) {
    if (finished_) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  server_->stop();
  // cpp-httplib lets an idle keep-alive connection wait out its timeout (5 s) before its
  // worker ends, and serve() joins the workers: clients that pool connections (boto3 and
  // the AWS CLI do) would hold every stop for 5 s.
  end_idle_connections(port_);
}

void HttpServer::install_routes() {
  auto admin = [this](const httplib::Request& req, httplib::Response& res) {
    if (!is_loopback(req.remote_addr)) {
      send(HttpReply{403, "application/json", "{\"error\":\"admin endpoints are loopback only\"}\n", ""}, res);
      return;
    }
    send(handle_admin(req.method, req.path, req.body, faults_, stats_), res);
  };
  // Registered before the API catch-all: cpp-httplib takes the first matching route.
  server_->Get(R"(/__admin/.*)", admin);
  server_->Post(R"(/__admin/.*)", admin);
  server_->Delete(R"(/__admin/.*)", admin);

  server_->Post(R"(/.*)", [this](const httplib::Request& req, httplib::Response& res) {
    auto start = std::chrono::steady_clock::now();
    Outcome out = dispatcher_.handle(to_signed_form(req));
    if (out.drop) {
#ifdef CPPHTTPLIB_OPENSSL_SUPPORT
      const void* ssl = req.ssl;
#else
      const void* ssl = nullptr;
#endif
      if (!drop_connection(ssl, req.local_port, req.remote_port)) {
        std::fprintf(stderr, "kms-local: could not find the connection to drop\n");
      }
    }
    send(out.reply, res);
    if (options_.log_requests) {
      auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                    std::chrono::steady_clock::now() - start).count();
      std::fprintf(stderr, "kms-local: %s %s %d%s %lldms\n",
                   out.operation.empty() ? "(unknown)" : out.operation.c_str(),
                   out.result.c_str(), out.reply.status, out.drop ? " dropped" : "",
                   static_cast<long long>(ms));
    }
  });
}

}  // namespace kmsfs::kms_local
