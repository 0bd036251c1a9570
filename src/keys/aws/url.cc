#include "keys/aws/url.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cctype>

namespace kmsfs::aws {

Result<Url> parse_url(std::string_view s) {
  auto bad = [&](std::string_view why) {
    return Status(Code::kInvalidArgument, "endpoint URL '" + std::string(s) + "': " + std::string(why));
  };
  size_t scheme_end = s.find("://");
  if (scheme_end == std::string_view::npos) return bad("no scheme (http:// or https://)");
  std::string_view scheme = s.substr(0, scheme_end);
  if (scheme != "http" && scheme != "https") return bad("scheme must be http or https");
  std::string_view rest = s.substr(scheme_end + 3);
  if (rest.find_first_of("?#") != std::string_view::npos) return bad("no query or fragment allowed");
  size_t slash = rest.find('/');
  std::string_view authority = rest.substr(0, slash);
  if (authority.empty() || authority.find('@') != std::string_view::npos) return bad("no host");
  Url u;
  u.scheme = std::string(scheme);
  if (authority.front() == '[') {
    size_t close = authority.find(']');
    if (close == std::string_view::npos) return bad("unterminated [IPv6 address]");
    u.host = std::string(authority.substr(1, close - 1));
  } else {
    u.host = std::string(authority.substr(0, authority.find(':')));
  }
  if (u.host.empty()) return bad("no host");
  u.origin = std::string(scheme) + "://" + std::string(authority);
  u.host_header = std::string(authority);
  u.path = slash == std::string_view::npos ? "/" : std::string(rest.substr(slash));
  return u;
}

bool is_loopback_host(std::string_view host) {
  std::string h(host);
  std::transform(h.begin(), h.end(), h.begin(), [](unsigned char c) { return std::tolower(c); });
  if (h == "localhost" || h == "localhost.") return true;
  in_addr v4{};
  if (inet_pton(AF_INET, h.c_str(), &v4) == 1) return (ntohl(v4.s_addr) >> 24) == 127;
  in6_addr v6{};
  if (inet_pton(AF_INET6, h.c_str(), &v6) == 1) {
    static const in6_addr loopback = IN6ADDR_LOOPBACK_INIT;
    return std::equal(std::begin(v6.s6_addr), std::end(v6.s6_addr), std::begin(loopback.s6_addr));
  }
  return false;
}

Status check_endpoint_security(const Url& url, bool allow_insecure) {
  if (url.scheme == "https" || allow_insecure || is_loopback_host(url.host)) return Status::Ok();
  return Status(Code::kInvalidArgument,
                "KMS endpoint " + url.origin +
                    " is plain http:// to a host that is not loopback; use https://, or set "
                    "KMSFS_KMS_ALLOW_INSECURE_ENDPOINT=1 to accept it");
}

}  // namespace kmsfs::aws
