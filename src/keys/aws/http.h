// The HTTP transport of the AWS client: an interface (so the KMS client and the credential
// providers can be tested against a scripted transport) and its libcurl implementation.
// libcurl stays inside http.cc: no other file includes <curl/curl.h>.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "base/status.h"
#include "keys/aws/wiped.h"

namespace kmsfs::aws {

struct HttpCall {
  std::string method = "GET";  // GET, POST, PUT
  std::string url;             // absolute http:// or https://
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  // Link-local metadata endpoints (IMDS, ECS) must not go through HTTPS_PROXY.
  bool no_proxy = false;
  // Zero: the transport's defaults.
  std::chrono::milliseconds connect_timeout{0};
  std::chrono::milliseconds timeout{0};
};

struct HttpResponse {
  long status = 0;
  WipedString body;  // wiped when freed: it may hold a base64 plaintext
  std::vector<std::pair<std::string, std::string>> headers;  // names lowercased
  std::string header(std::string_view lname) const;
};

class HttpTransport {
 public:
  virtual ~HttpTransport() = default;
  // An HTTP answer of any status is a value; a failure to get one is a Status:
  // kUnavailable for what a retry may fix (timeouts, refused or reset connections, DNS),
  // kPermissionDenied for TLS verification failures, kInvalidArgument for a bad URL.
  virtual Result<HttpResponse> send(const HttpCall& call) = 0;
};

struct CurlOptions {
  std::chrono::milliseconds connect_timeout{3000};
  std::chrono::milliseconds timeout{10000};
  std::string ca_bundle;  // empty: $AWS_CA_BUNDLE, else the system store
  size_t max_response_bytes = 1 << 20;
};

// Thread-safe. Keeps a pool of easy handles (each keeps its connections alive) and shares
// the DNS cache, TLS sessions and connection cache between them, so a mount's KMS calls
// reuse one TLS connection instead of a handshake per unwrap. Proxies come from the
// environment as libcurl reads it (https_proxy/HTTPS_PROXY, http_proxy, no_proxy/NO_PROXY).
std::unique_ptr<HttpTransport> make_curl_transport(CurlOptions opts = {});

}  // namespace kmsfs::aws
