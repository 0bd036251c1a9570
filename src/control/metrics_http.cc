#include "control/metrics_http.h"

#include <httplib.h>

namespace kmsfs {

Result<std::unique_ptr<MetricsHttp>> MetricsHttp::start(const std::string& listen, std::function<std::string()> render) {
  const size_t colon = listen.rfind(':');
  if (colon == std::string::npos || colon == 0)
    return Status(Code::kInvalidArgument, "--metrics-listen wants HOST:PORT, got '" + listen + "'");
  std::string host = listen.substr(0, colon);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  int port = 0;
  try {
    port = std::stoi(listen.substr(colon + 1));
  } catch (...) {
    port = -1;
  }
  if (port < 0 || port > 65535) return Status(Code::kInvalidArgument, "--metrics-listen: bad port in '" + listen + "'");
  std::unique_ptr<MetricsHttp> m(new MetricsHttp());
  m->server_ = std::make_unique<httplib::Server>();
  m->server_->Get("/metrics", [render](const httplib::Request&, httplib::Response& res) {
    res.set_content(render(), "text/plain; version=0.0.4; charset=utf-8");
  });
  if (port == 0) {
    m->port_ = m->server_->bind_to_any_port(host);
  } else {
    m->port_ = m->server_->bind_to_port(host, port) ? port : -1;
  }
  if (m->port_ <= 0) return Status(Code::kIo, "--metrics-listen: cannot listen on " + listen, EADDRINUSE);
  m->url_ = "http://" + (host.find(':') != std::string::npos ? "[" + host + "]" : host) + ":" +
            std::to_string(m->port_) + "/metrics";
  m->thread_ = std::thread([s = m->server_.get()] { s->listen_after_bind(); });
  return m;
}

MetricsHttp::~MetricsHttp() {
  if (server_) server_->stop();
  if (thread_.joinable()) thread_.join();
}

}  // namespace kmsfs
