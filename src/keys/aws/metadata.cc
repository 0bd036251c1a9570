// Credentials from the link-local metadata services: ECS/EKS container credentials and
// EC2 IMDSv2. Both bypass HTTP(S)_PROXY and use short timeouts: on a host without them the
// chain must fail fast.
#include <arpa/inet.h>

#include <cctype>

#include "base/file_io.h"
#include "keys/aws/credentials.h"
#include "keys/aws/url.h"

namespace kmsfs::aws {
namespace {

constexpr std::chrono::milliseconds kConnectTimeout{1000};
constexpr std::chrono::milliseconds kTimeout{2000};

std::string_view trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

bool has_crlf(std::string_view s) { return s.find_first_of("\r\n") != std::string_view::npos; }

// The SDKs accept a plain-http FULL_URI only on loopback or the ECS/EKS agent addresses.
bool allowed_http_host(std::string_view authority) {
  std::string host(authority);
  if (host.starts_with("[")) {
    host = host.substr(1, host.find(']') - 1);
  } else if (size_t colon = host.rfind(':'); colon != std::string::npos) {
    host.resize(colon);
  }
  if (host == "localhost" || host == "169.254.170.2" || host == "169.254.170.23" ||
      host == "fd00:ec2::23" || host == "::1") {
    return true;
  }
  in_addr a{};
  return inet_pton(AF_INET, host.c_str(), &a) == 1 && (ntohl(a.s_addr) >> 24) == 127;
}

HttpCall metadata_call(std::string method, std::string url) {
  HttpCall c;
  c.method = std::move(method);
  c.url = std::move(url);
  c.no_proxy = true;
  c.connect_timeout = kConnectTimeout;
  c.timeout = kTimeout;
  return c;
}

// One retry on a dropped connection or a 5xx: metadata services hiccup under load.
Result<HttpResponse> send_twice(HttpTransport& http, const HttpCall& c) {
  Result<HttpResponse> r = http.send(c);
  bool again = (!r.ok() && r.status().code() == Code::kUnavailable) || (r.ok() && r->status >= 500);
  return again ? http.send(c) : std::move(r);
}

}  // namespace

Result<Credentials> credentials_from_container(const Env& env, HttpTransport& http) {
  std::string url;
  if (auto rel = env.get("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI")) {
    url = "http://169.254.170.2" + *rel;
  } else if (auto full = env.get("AWS_CONTAINER_CREDENTIALS_FULL_URI")) {
    ASSIGN_OR_RETURN(Url u, parse_url(*full));
    if (u.origin.starts_with("http://") && !allowed_http_host(u.host_header)) {
      return Status(Code::kInvalidArgument,
                    "AWS_CONTAINER_CREDENTIALS_FULL_URI: plain http is allowed only to loopback "
                    "or the container agent (169.254.170.2, 169.254.170.23, fd00:ec2::23)");
    }
    url = *full;
  } else {
    return Status(Code::kNotFound, "no AWS_CONTAINER_CREDENTIALS_*_URI");
  }

  HttpCall c = metadata_call("GET", url);
  std::string token;
  if (auto file = env.get("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE")) {
    // Read at every fetch: EKS Pod Identity rotates the file.
    Result<Bytes> b = read_file(*file, 16 * 1024);
    if (!b.ok()) return b.status().with_context("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE");
    token = std::string(trim(as_chars(*b)));
    secure_zero(b->data(), b->size());
  } else if (auto t = env.get("AWS_CONTAINER_AUTHORIZATION_TOKEN")) {
    token = *t;
  }
  if (has_crlf(token)) return Status(Code::kInvalidArgument, "container authorization token has a line break");
  if (!token.empty()) c.headers.emplace_back("Authorization", token);
  wipe(token);

  Result<HttpResponse> r = send_twice(http, c);
  for (auto& [k, v] : c.headers) wipe(v);
  if (!r.ok()) return r.status().with_context("container credentials at " + url);
  if (r->status != 200) {
    return Status(r->status >= 500 ? Code::kUnavailable : Code::kPermissionDenied,
                  "container credentials at " + url + ": HTTP " + std::to_string(r->status));
  }
  return parse_metadata_credentials(r->body, "container credentials");
}

Result<Credentials> credentials_from_imds(const Env& env, HttpTransport& http) {
  if (auto off = env.get("AWS_EC2_METADATA_DISABLED")) {
    std::string v = *off;
    for (char& ch : v) ch = char(std::tolower(static_cast<unsigned char>(ch)));
    if (v == "true") return Status(Code::kNotFound, "IMDS disabled by AWS_EC2_METADATA_DISABLED");
  }
  std::string base = env.get("AWS_EC2_METADATA_SERVICE_ENDPOINT").value_or("http://169.254.169.254");
  while (base.ends_with("/")) base.pop_back();

  // IMDSv2 only: a session token from a PUT (which a server-side request forgery through a
  // GET-only proxy cannot obtain), then the role name, then its credentials.
  HttpCall put = metadata_call("PUT", base + "/latest/api/token");
  put.headers.emplace_back("X-aws-ec2-metadata-token-ttl-seconds", "21600");
  Result<HttpResponse> tok = send_twice(http, put);
  if (!tok.ok()) {
    // Not on EC2 (or IMDS blocked): the chain's last source is simply absent.
    return Status(Code::kNotFound, "no instance metadata service at " + base + " (" +
                                       tok.status().message() + ")");
  }
  if (tok->status != 200) {
    return Status(Code::kPermissionDenied,
                  "IMDS token request to " + base + ": HTTP " + std::to_string(tok->status));
  }
  std::string token(trim(std::string_view(tok->body.data(), tok->body.size())));
  wipe(tok->body);
  if (token.empty() || has_crlf(token)) return Status(Code::kUnavailable, "IMDS returned no token");

  auto get = [&](const std::string& path) {
    HttpCall c = metadata_call("GET", base + path);
    c.headers.emplace_back("X-aws-ec2-metadata-token", token);
    return send_twice(http, c);
  };
  const std::string kRoles = "/latest/meta-data/iam/security-credentials/";
  Result<HttpResponse> roles = get(kRoles);
  if (!roles.ok()) return roles.status().with_context("IMDS");
  if (roles->status == 404) return Status(Code::kNotFound, "no IAM role attached to this instance");
  if (roles->status != 200) {
    return Status(Code::kUnavailable, "IMDS role list: HTTP " + std::to_string(roles->status));
  }
  std::string_view list(roles->body.data(), roles->body.size());
  std::string role(trim(list.substr(0, list.find('\n'))));
  if (role.empty() || role.find('/') != std::string::npos) {
    return Status(Code::kUnavailable, "IMDS returned no usable role name");
  }
  Result<HttpResponse> creds = get(kRoles + role);
  wipe(token);
  if (!creds.ok()) return creds.status().with_context("IMDS");
  if (creds->status != 200) {
    return Status(Code::kUnavailable, "IMDS credentials for role " + role + ": HTTP " +
                                          std::to_string(creds->status));
  }
  return parse_metadata_credentials(creds->body, "IMDS");
}

}  // namespace kmsfs::aws
